"""Local identifiability by the complex-step Jacobian, bounded in size.

The numerics behind :mod:`sk_maskid.identifiability`: batched predictors of
a task at a random generic HMM, the exact Jacobian of the predictor by
complex steps, and its rank, on a model reduced to at most a few more symbols
or dimensions than states (the public module's docstring says why that size
answers for the full one).
"""

from __future__ import annotations

import itertools
import math
from collections import namedtuple

import numpy as np
from sklearn.utils import check_random_state
from threadpoolctl import threadpool_limits

from ._hmm import (
    RANK_RTOL,
    STEP,
    softmax_rows,
    stationary,
)
from .datasets import make_categorical_hmm
from .tasks import parse_task

_MAX_PROBES = 2048
# Jacobian rows aimed at per free parameter, and at least: enough for the
# rank, few enough that the SVD stays cheap (its cost grows like rows x
# columns^2).
_ROWS_PER_PARAMETER = 2
_MIN_ROWS = 256
# Working memory of one batch of complex-step perturbations (the Jacobian
# itself is rows x columns float64 on top: 2 n_free^2 x 8 bytes).
_BATCH_BYTES = 32 * 2**20
# fit_verdict skips the numerical check above this many free parameters of
# the reduced model (k about 22): its SVD alone would take seconds.
MAX_FIT_PARAMETERS = 1000
# ... or above this many complex numbers through the predictor (about 1 s
# per 5e7 measured; a three-token product target at k=20 needs 8e8).
MAX_FIT_WORK = 2 * 10**8
# fit_verdict's draws when a discarded singular value is above CLEAR_ZERO
# (relative): complex-step zeros measured at most 3e-16, genuine values down
# to 7e-10 (Gaussian "1->3" with k = d + 1 = 12).
FIT_DRAWS = 3
CLEAR_ZERO = 1e-13

LocalResult = namedtuple(
    "LocalResult",
    [
        "n_free_parameters",
        "jacobian_rank",
        "null_dimension",
        "singular_values",
        "n_features_used",
    ],
    defaults=(None,),
)
LocalResult.__doc__ = """Jacobian rank of the optimal predictor at one generic HMM.

n_free_parameters : int
    Free parameters of the HMM at the full size.
jacobian_rank : int
    ``n_free_parameters - null_dimension``.
null_dimension : int
    Dimension of the family of models that share the predictor.
singular_values : ndarray
    Of the Jacobian that was computed (the reduced model's), largest first.
n_features_used : int
    Alphabet size or token dimension of that model (``<= n_features``).
"""


def logits_to_rows(Z):
    """Rows of a stochastic matrix from ``(..., m - 1)`` free logits."""
    zeros = np.zeros(Z.shape[:-1] + (1,), dtype=Z.dtype)
    return softmax_rows(np.concatenate([Z, zeros], axis=-1))


def _rows_to_logits(P):
    return np.log(P[..., :-1]) - np.log(P[..., -1:])


def as_tasks(task):
    """Tasks of a single or joint task; a joint one may be spelled "a + b"."""
    if isinstance(task, str) and "+" in task:
        task = task.split("+")
    if isinstance(task, list | tuple):
        return [parse_task(t) for t in task]
    return [parse_task(task)]


def n_free_parameters(emission, k, d):
    return k * (k - 1) + (k * (d - 1) if emission == "categorical" else k * d)


def reduced_size(emission, k, d, max_features=None):
    """Alphabet size or dimension ``d' <= d`` at which the Jacobian is built.

    ``max_features=None`` is the thorough default, ``max(k + 2, 8)`` (small
    models are checked at their own size). Never below ``k + 2`` symbols
    (categorical: ``k + 1`` plain symbols for the probes and the merged one)
    or ``k`` dimensions (Gaussian: generic means span ``R^k``); see the module
    docstring for why the answer carries over to ``d``.
    """
    cap = max(k + 2, 8) if max_features is None else int(max_features)
    floor = k + 2 if emission == "categorical" else k
    return min(d, max(cap, floor))


def _projected_dim(target_dim, k):
    """Rows kept per probe: a wide (tensor) target is randomly projected.

    Each projected row is a fixed linear function of the predictor at that
    probe, so full rank of the projected Jacobian still proves local
    identifiability; a null vector of the projected Jacobian that the full
    one lacks needs every probe's image of it in the kernel of one random
    projection, which generic projections rule out once the rows outnumber
    the columns (the rank agreed with the unprojected one on every case
    measured, down to ``k + 1`` coordinates per probe). Targets up to
    ``max(4 k, 64)`` coordinates are kept whole.
    """
    return min(target_dim, max(4 * k, 64))


def _rows(n_free):
    return max(_ROWS_PER_PARAMETER * n_free, _MIN_ROWS)


def _n_probes(total, rows_per_probe, n_free, k):
    """Probes for one task: about ``_ROWS_PER_PARAMETER`` rows per column.

    At least ``k + 2`` (when there are that many): the rows of one probe are
    tied together through its ``k`` posterior probabilities, and too few
    probes showed spurious null directions (one slice of a CP tensor).
    """
    wanted = max(math.ceil(_rows(n_free) / rows_per_probe), k + 2)
    return int(min(total, _MAX_PROBES, wanted))


def _probe_counts(tasks, emission, k, d, reduced):
    """Probes per task; Gaussian tasks share one set of probe points."""
    n_free = n_free_parameters(emission, k, d)
    dims = [_projected_dim(t.target_dim(d), k) for t in tasks]
    if emission == "gaussian":
        return [_n_probes(np.inf, sum(dims), n_free, k)] * len(tasks)
    n_symbols = d - 1 if reduced else d
    return [
        _n_probes(n_symbols ** len(t.observed), dim, n_free, k)
        for t, dim in zip(tasks, dims, strict=True)
    ]


def jacobian_work(tasks, emission, k, d, reduced):
    """Complex numbers the Jacobian pushes through the predictor (about 1 s
    per 5e7 on one core)."""
    counts = _probe_counts(tasks, emission, k, d, reduced)
    span = max(t.span for t in tasks)
    dims = [t.target_dim(d) for t in tasks]
    return (
        n_free_parameters(emission, k, d)
        * _bytes_per_set(tasks, counts, k, span, dims)
        // 16
    )


def _kept_dim(n_probes, target_dim, k, n_free):
    """Coordinates kept per probe: past :func:`_projected_dim` when the probes
    are few (one observed token: ``d`` of them), so that the rows still number
    about ``_ROWS_PER_PARAMETER`` per column."""
    r = max(_projected_dim(target_dim, k), math.ceil(_rows(n_free) / n_probes))
    return min(r, target_dim)


def _projection(n_probes, target_dim, k, n_free, rng):
    """A random ``(target_dim, r)`` projection of a wide target, or None.

    One for all probes: ``target_dim x r`` numbers (7 MB for a three-token
    product at ``k = 20``), a plain matrix product, and as generic as one per
    probe for the argument above.
    """
    r = _kept_dim(n_probes, target_dim, k, n_free)
    if r >= target_dim:
        return None
    return rng.standard_normal((target_dim, r)) / math.sqrt(target_dim)


def _project(out, G):
    """``out (P, n, t) @ G (t, r)``, real and imaginary parts apart (real
    matrix products, no complex copy of ``G``)."""
    if G is None:
        return out
    return out.real @ G + 1j * (out.imag @ G)


def _probe_combos(n_symbols, n_observed, n_probes, rng):
    """``n_probes`` distinct tuples of observed symbols, all if there are few."""
    total = n_symbols**n_observed
    if total <= n_probes:
        return np.array(list(itertools.product(range(n_symbols), repeat=n_observed)))
    if total <= 2**20:
        flat = rng.choice(total, n_probes, replace=False)
    else:  # too many to enumerate: random tuples, duplicates dropped
        flat = np.unique(rng.randint(0, total, size=n_probes))
    return np.stack(np.unravel_index(flat, (n_symbols,) * n_observed), axis=1)


def _batched_expectation(startprob, transmat, B, token_means, task):
    """Exact ``E[target | observed]`` for ``P`` parameter sets and ``n`` probes.

    ``startprob (P, k)``, ``transmat (P, k, k)``, ``B (P, n, span, k)`` (1 at
    every non-observed position), ``token_means (P, k, D)``; returns
    ``(P, n, target_dim)``. The recursions of
    :func:`~sk_maskid._hmm.task_expectation`, with the parameter axis
    broadcast against the probe axis instead of repeated per probe (which
    costs ``P n k (k + D)`` numbers).
    """
    P, n, span, k = B.shape
    Tt = np.swapaxes(transmat, -1, -2)
    dtype = np.result_type(startprob, transmat, B)
    alpha = np.empty(B.shape, dtype=dtype)
    c = np.empty((P, n, span), dtype=dtype)
    a = startprob[:, None] * B[:, :, 0]
    for t in range(span):
        if t:
            a = (alpha[:, :, t - 1] @ transmat) * B[:, :, t]  # P products (n,k)(k,k)
        c[:, :, t] = a.sum(axis=-1)
        alpha[:, :, t] = a / c[:, :, t, None]
    beta = np.empty_like(alpha)
    beta[:, :, -1] = 1.0
    for t in range(span - 2, -1, -1):
        nxt = B[:, :, t + 1] * beta[:, :, t + 1]
        beta[:, :, t] = (nxt @ Tt) / c[:, :, t + 1, None]
    outputs = []
    for target in task.targets:
        order = sorted(target)
        zero_based = [p - 1 for p in order]
        if len(target) == 1:
            post = alpha[:, :, zero_based[0]] * beta[:, :, zero_based[0]]
            outputs.append(post @ token_means)
            continue
        joint = alpha[:, :, zero_based[0]]  # (P, n, k), then one axis per position
        for p, q in zip(zero_based[:-1], zero_based[1:], strict=True):
            carry = np.broadcast_to(np.eye(k, dtype=dtype), (P, n, k, k))
            for t in range(p + 1, q + 1):
                scaled = B[:, :, t] / c[:, :, t, None]
                carry = (carry @ transmat[:, None]) * scaled[:, :, None]
            pad = (1,) * (joint.ndim - 3)
            joint = joint[..., None] * carry.reshape((P, n) + pad + (k, k))
        pad = (1,) * (joint.ndim - 3)
        joint = joint * beta[:, :, zero_based[-1]].reshape((P, n) + pad + (k,))
        total = joint.reshape(P, n, -1).sum(axis=-1)
        joint = joint / total.reshape((P, n) + (1,) * (joint.ndim - 2))
        # hidden axes in spelled order, each contracted in turn with the means
        out = np.moveaxis(
            joint, [2 + order.index(p) for p in target], range(2, 2 + len(target))
        )
        for _ in target:
            # einsum "pnh...,phd->pn...d" as one batched matrix product per
            # parameter set (einsum does not reach BLAS here: 8x slower)
            moved = np.moveaxis(out, 2, -1)
            rest = moved.shape[2:-1]
            out = (moved.reshape(P, -1, k) @ token_means).reshape((P, n) + rest + (-1,))
        outputs.append(out.reshape(P, n, -1))
    return np.concatenate(outputs, axis=2)


def _bytes_per_set(tasks, n_probes, k, span, target_dims):
    """Working memory of one parameter set in :func:`_batched_expectation`."""
    total = 0
    for task, n, dim in zip(tasks, n_probes, target_dims, strict=True):
        joint = max(k ** len(t) for t in task.targets)
        total += n * (6 * span * k + 3 * joint + k * k + 2 * dim)
    return 16 * total  # complex128


_Problem = namedtuple("_Problem", ["predictor", "n_free", "batch", "posterior"])


def _single_target(task):
    """``E[x_q | observed]`` for the first predicted position ``q`` of ``task``."""
    q = task.targets[0][0]
    return parse_task(",".join(map(str, task.observed)) + f"->{q}")


def _categorical_predictor(tasks, k, d, rng, merged_last=False):
    """Batched predictor ``theta (P, n_free) -> (P, n_outputs)``.

    With ``merged_last`` the last symbol stands for the merged cell of the
    reduction (module docstring): probes then avoid it.
    """
    span = max(t.span for t in tasks)
    n_free = n_free_parameters("categorical", k, d)
    n_symbols = d - 1 if merged_last else d
    probe_sets, dims, projections = [], [], []
    counts = _probe_counts(tasks, "categorical", k, d, merged_last)
    for task, n_probes in zip(tasks, counts, strict=True):
        dim = task.target_dim(d)
        n_obs = len(task.observed)
        combos = _probe_combos(n_symbols, n_obs, n_probes, rng)
        probes = -np.ones((len(combos), span), dtype=int)
        probes[:, [p - 1 for p in task.observed]] = combos
        probe_sets.append(probes)
        dims.append(dim)
        projections.append(_projection(len(combos), dim, k, n_free, rng))
    n_trans = k * (k - 1)

    def unpack(theta):
        P = theta.shape[0]
        transmat = logits_to_rows(theta[:, :n_trans].reshape(P, k, k - 1))
        emission = logits_to_rows(theta[:, n_trans:].reshape(P, k, d - 1))
        return stationary(transmat), transmat, emission

    def emissions(emission, probes):
        # B[p, n, t, i] = emission[p, i, probes[n, t]], 1 where a probe is -1
        B = np.swapaxes(emission, 1, 2)[:, np.maximum(probes, 0)]
        return np.where((probes >= 0)[None, :, :, None], B, 1.0)

    def predictor(theta):
        startprob, transmat, emission = unpack(theta)
        outputs = [
            _project(
                _batched_expectation(
                    startprob, transmat, emissions(emission, probes), emission, task
                ),
                G,
            ).reshape(theta.shape[0], -1)
            for task, probes, G in zip(tasks, probe_sets, projections, strict=True)
        ]
        return np.concatenate(outputs, axis=1)

    # The certificate's posteriors may use probes of their own (they are
    # other rows of the full model's Jacobian): enough to span R^k.
    first = tasks[0]
    n_obs = len(first.observed)
    spanning = None
    if merged_last:
        combos = _probe_combos(n_symbols, n_obs, min(n_symbols**n_obs, 4 * k), rng)
        spanning = -np.ones((len(combos), span), dtype=int)
        spanning[:, [p - 1 for p in first.observed]] = combos

    def posterior(theta):
        """``P(h_q | observed)`` over probes that avoid the merged symbol."""
        startprob, transmat, emission = unpack(theta[None])
        B = emissions(emission, spanning)
        single = _single_target(first)
        return _batched_expectation(startprob, transmat, B, np.eye(k)[None], single)[0]

    per_set = _bytes_per_set(tasks, [len(p) for p in probe_sets], k, span, dims)
    return _Problem(
        predictor,
        n_free,
        max(1, _BATCH_BYTES // per_set),
        posterior if merged_last else None,
    )


def _mean_scale(d):
    """Spread of the generic means and of the probes, per coordinate.

    Pairwise distances about 2.8 noise standard deviations at every
    ``d``: farther means saturate the posteriors and shrink the genuine
    singular values towards the rank threshold (measured at k=20: 1e-8 of
    the largest at 2 per coordinate, 1e-6 here).
    """
    return math.sqrt(4.0 / d)


def _gaussian_predictor(tasks, k, d, rng, variance=1.0):
    """Batched Gaussian predictor with known spherical variance."""
    span = max(t.span for t in tasks)
    n_free = n_free_parameters("gaussian", k, d)
    dims = [t.target_dim(d) for t in tasks]
    n_probes = _probe_counts(tasks, "gaussian", k, d, False)[0]
    probes = rng.standard_normal((n_probes, span, d)) * _mean_scale(d)
    projections = [_projection(n_probes, dim, k, n_free, rng) for dim in dims]
    probe_sq = np.sum(probes**2, axis=-1)[None, :, :, None]
    flat_probes = probes.reshape(-1, d)
    n_trans = k * (k - 1)

    def predictor(theta):
        P = theta.shape[0]
        transmat = logits_to_rows(theta[:, :n_trans].reshape(P, k, k - 1))
        means = theta[:, n_trans:].reshape(P, k, d)
        startprob = stationary(transmat)
        # squared distances without a (P, n, span, k, d) intermediate; no
        # complex conjugate anywhere, so the complex step stays analytic
        cross = (flat_probes @ np.swapaxes(means, 1, 2)).reshape(P, n_probes, span, k)
        sq = probe_sq - 2.0 * cross + np.sum(means**2, axis=-1)[:, None, None, :]
        logB = -0.5 * sq / variance
        logB = logB - np.real(logB).max(axis=-1, keepdims=True)
        B = np.exp(logB)  # (P, n, span, k)
        outputs = []
        for task, G in zip(tasks, projections, strict=True):
            keep = np.zeros(span, dtype=bool)
            keep[[p - 1 for p in task.observed]] = True
            Bt = np.where(keep[None, None, :, None], B, 1.0)
            out = _batched_expectation(startprob, transmat, Bt, means, task)
            outputs.append(_project(out, G).reshape(P, -1))
        return np.concatenate(outputs, axis=1)

    per_set = _bytes_per_set(tasks, [n_probes] * len(tasks), k, span, dims)
    per_set += 16 * n_probes * span * k * 3  # the distances
    return _Problem(predictor, n_free, max(1, _BATCH_BYTES // per_set), None)


# Generic parameters are drawn persistent (T = s I + (1 - s) D). Dirichlet
# rows alone put the eigenvalues of T near 0 for large k, and eigenvalue pairs
# with l_i + l_j ~ 0 make T -> T^2 nearly singular: gap tasks then showed
# genuine singular values down to 1e-10 of the largest (k=12), at the rank
# threshold. Still a generic (absolutely continuous) draw.
_SELF_TRANSITION = 0.5


def _fallback_chain(k, draw):
    """A persistent random chain, for when the conditioned generator gives up."""
    s = _SELF_TRANSITION
    return s * np.eye(k) + (1 - s) * draw.dirichlet(np.ones(k), size=k)


def generic_theta(emission, k, d, rng):
    """Free parameters of a random generic, well-conditioned HMM.

    With ``k > d`` no full-column-rank emission exists; the emissions are then
    plain Dirichlet (or Gaussian) draws, still generic.
    """
    seed = int(rng.randint(2**31 - 1))
    draw = np.random.RandomState(seed)
    try:
        chain = make_categorical_hmm(
            k, max(k, d), self_transition=_SELF_TRANSITION, random_state=seed
        )
        transmat, emissions = chain.transmat_, chain.emissionprob_
    except RuntimeError:  # rejection sampling found no well-conditioned draw
        transmat = _fallback_chain(k, draw)
        emissions = draw.dirichlet(np.ones(max(k, d)), size=k)
    logits = _rows_to_logits(transmat).ravel()
    if emission == "categorical":
        if d < k:
            emissions = draw.dirichlet(np.ones(d), size=k)
        return np.concatenate([logits, _rows_to_logits(emissions).ravel()])
    means = _mean_scale(d) * draw.standard_normal((k, d))
    return np.concatenate([logits, means.ravel()])


def jacobian(predictor, theta, batch=None):
    """Exact Jacobian ``(n_outputs, n_parameters)`` by the complex step.

    The perturbations go through ``batch`` at a time (all at once by
    default), which bounds the memory of the batched predictor.
    """
    n = theta.size
    batch = n if batch is None else max(1, int(batch))
    blocks = []
    for start in range(0, n, batch):
        rows = np.arange(start, min(n, start + batch))
        perturbed = np.tile(theta + 0j, (len(rows), 1))
        perturbed[np.arange(len(rows)), rows] += 1j * STEP
        blocks.append(predictor(perturbed).imag / STEP)
    return np.concatenate(blocks, axis=0).T


def _rank(J):
    """Numerical rank and singular values (largest first)."""
    sv = np.linalg.svd(J, compute_uv=False)
    rank = int(np.count_nonzero(sv > RANK_RTOL * sv[0])) if sv.size and sv[0] else 0
    return rank, sv


def _problem(tasks, emission, k, d_used, rng, reduced):
    if emission == "categorical":
        return _categorical_predictor(tasks, k, d_used, rng, merged_last=reduced)
    return _gaussian_predictor(tasks, k, d_used, rng)


def local_identifiability(
    task,
    *,
    emission="categorical",
    n_components,
    n_features,
    random_state=None,
    max_features=None,
):
    """Jacobian rank of the optimal predictor at a random generic HMM.

    Parameters
    ----------
    task : str, MaskedTask, or list of them
        A list, or a string joining spellings with ``+`` (``"1->2 + 2->1"``),
        is the joint task: the predictors are concatenated.
    emission : {"categorical", "gaussian"}, default="categorical"
        Token type; Gaussian tokens have known spherical variance 1.
    n_components : int
    n_features : int
        Alphabet size, or token dimension.
    random_state : int, RandomState instance or None, default=None
        Draws the generic parameter and the probes.
    max_features : int or None, default=None
        Largest alphabet size or dimension at which the Jacobian is built;
        a larger model is reduced to it (never below ``k + 2`` symbols or
        ``k`` dimensions; see the module docstring for why the verdict carries
        over). None means ``max(k + 2, 8)``. Pass ``n_features`` for no
        reduction.

    Returns
    -------
    LocalResult
        ``n_free_parameters`` (at the full size), ``jacobian_rank``,
        ``null_dimension``, the singular values of the computed Jacobian
        (largest first) and ``n_features_used``.

    Raises
    ------
    RuntimeError
        If a reduced categorical check finds posteriors that do not span
        ``R^k`` (a non-generic draw; try another ``random_state``).
    """
    rng = check_random_state(random_state)
    tasks = as_tasks(task)
    k, d = int(n_components), int(n_features)
    if emission not in ("categorical", "gaussian"):
        raise ValueError(
            f"emission must be 'categorical' or 'gaussian', got {emission!r}"
        )
    if k < 2:
        # One hidden state: no transition to identify, emissions are the
        # marginal of any single token; nothing is ambiguous.
        return LocalResult(0, 0, 0, np.zeros(0), d)
    d_used = reduced_size(emission, k, d, max_features)
    reduced = d_used < d
    problem = _problem(tasks, emission, k, d_used, rng, reduced)
    theta = generic_theta(emission, k, d_used, rng)
    # One BLAS thread: these matrices are small, and on a busy machine a
    # threaded SVD of a 1600 x 800 Jacobian took 1-3 s against 0.13 s.
    with threadpool_limits(limits=1, user_api="blas"):
        rank, sv = _rank(jacobian(problem.predictor, theta, problem.batch))
    null = problem.n_free - rank
    if reduced and emission == "categorical" and null == 0:
        # the second half of the certificate: posteriors that span R^k
        if np.linalg.matrix_rank(problem.posterior(theta).real) < k:
            raise RuntimeError(
                "the reduced check drew posteriors that do not span R^k "
                "(a non-generic parameter); try another random_state"
            )
    n_free = n_free_parameters(emission, k, d)
    return LocalResult(n_free, n_free - null, null, sv, d_used)


# --------------------------------------------------------------------------
# The moments form of Gaussian tokens through degree-p features.
# --------------------------------------------------------------------------
FeatureResult = namedtuple(
    "FeatureResult",
    ["n_free_parameters", "jacobian_rank", "null_dimension", "factors"],
)


def feature_means(means, variances, degree):
    """``E[x~ | h]`` for ``x~ = [x, x^2, ..., x^degree, 1]``, x ~ N(mean, var).

    Raw Gaussian moments ``E[x^j] = sum_{i even} C(j, i) mu^(j-i) var^(i/2)
    (i-1)!!``, per coordinate; batched over leading axes, complex-step safe.
    """
    blocks = []
    for j in range(1, degree + 1):
        moment = np.zeros_like(means)
        for i in range(0, j + 1, 2):
            double_factorial = math.prod(range(i - 1, 0, -2))
            moment = moment + (
                math.comb(j, i)
                * double_factorial
                * means ** (j - i)
                * variances ** (i // 2)
            )
        blocks.append(moment)
    blocks.append(np.ones(means.shape[:-1] + (1,), dtype=means.dtype))
    return np.concatenate(blocks, axis=-1)


def feature_moment_identifiability(task, n_components, n_features, degree, rng):
    """Jacobian rank of ``E[x~_{s1} ⊗ x~_{s2} ⊗ x~_{s3}]`` at a generic HMM.

    The statistic the Gaussian moments form fits with degree-``degree``
    features (:func:`feature_means`), as a function of the transition
    logits, the means and the log-variances (diagonal). Outputs are random
    rank-one projections of the tensor (``n + 16`` of them for ``n``
    parameters): the Jacobian's rank is kept with probability one, while the
    ``(d p + 1)^3`` tensor is never formed. Also returns the three CP factors
    at the drawn parameter, for Kruskal's condition.
    """
    k, d = int(n_components), int(n_features)
    s1, s2, s3 = parse_task(task).positions
    g1, g2 = s2 - s1, s3 - s2
    D = d * degree + 1
    n = k * k + 2 * k * d
    theta = np.concatenate(
        [
            rng.standard_normal(k * k),
            rng.standard_normal(k * d),
            np.log(rng.uniform(0.5, 2.0, size=k * d)),
        ]
    )
    U, V, W = (rng.standard_normal((n + 16, D)) for _ in range(3))

    def parts(batch):
        T = softmax_rows(batch[:, : k * k].reshape(-1, k, k))
        means = batch[:, k * k : k * k + k * d].reshape(-1, k, d)
        variances = np.exp(batch[:, k * k + k * d :].reshape(-1, k, d))
        M = feature_means(means, variances, degree)  # (P, k, D)
        return (
            stationary(T),
            M,
            np.linalg.matrix_power(T, g1),
            np.linalg.matrix_power(T, g2),
        )

    def predictor(batch):
        pi, M, T1, T2 = parts(batch)
        a, b, c = (np.einsum("rD,pkD->prk", P, M) for P in (U, V, W))
        left = np.einsum("pk,prk,pkl->prl", pi, a, T1)  # sums over h_{s1}
        right = np.einsum("pkl,prl->prk", T2, c)  # sums over h_{s3}
        return np.einsum("prk,prk,prk->pr", left, b, right)

    # batches of perturbations bound the (P, rows, k) complex arrays
    batch = max(1, _BATCH_BYTES // (16 * (n + 16) * k * 4))
    with threadpool_limits(limits=1, user_api="blas"):
        rank, _ = _rank(jacobian(predictor, theta, batch))
    n_free = k * (k - 1) + 2 * k * d
    pi, M, T1, T2 = (x[0].real for x in parts(theta[None, :]))
    factors = [M.T @ (pi[:, None] * T1), M.T, M.T @ T2.T]
    return FeatureResult(n_free, rank, n_free - rank, factors)
