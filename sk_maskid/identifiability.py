"""Does a masking scheme identify the HMM? Analytic and numerical answers.

Local identifiability (see the Theory page of the documentation): at a random generic
parameter ``theta``, the Jacobian of ``theta -> optimal predictor on a probe set`` is
computed exactly by the complex-step method (batches of perturbations evaluated in one
forward-backward each), on the free parameters only (each stochastic row is
parametrised by ``k - 1`` or ``d - 1`` logits, so simplex constraints add no spurious
null directions). Full column rank means locally identifiable; a rank deficiency is a
continuum of models with the same predictor, of dimension ``null_dimension``.

The rank decision uses singular values relative to the largest: below
``RANK_RTOL`` (1e-10) counts as zero. Complex-step derivatives are exact to
rounding, so true zeros sit near 1e-15 (at most 3e-16 measured up to
``k = 20``) while the smallest genuine singular values on generic models stay
above 1e-7 for a few states; with 20 states they reach 1e-9, and 7e-10 for
the Gaussian gap task ``"1->3"`` with ``k = d + 1``, so :func:`fit_verdict`
redraws the parameter when a discarded value is not a clear zero.

Two entry points:

* :func:`check_task`, the thorough report (several random parameters,
  Kruskal's condition, the paper's verdict);
* :func:`fit_verdict`, what an estimator asks at every fit: the paper's
  verdict where the theory settles it, otherwise one Jacobian on a reduced
  model, cached, and never an exception.

Bounded sizes. The Jacobian has ``k (k - 1) + k (d - 1)`` columns (``k d``
for Gaussian means) and a row per probe and target coordinate, so it is never
built at the full alphabet size or token dimension ``d``: the model is
reduced to ``d' <= d`` symbols or dimensions first (:func:`_reduced_size`),
the probes are capped at about twice as many rows as columns (wide tensor
targets randomly projected, :func:`_projected_dim`), and the perturbations go
through in batches of bounded memory. Why the answer at ``d'`` is the answer
at ``d``:

* Gaussian tokens (spherical known variance): the model is equivariant under
  rotations of the token space, and generic means span a ``k``-dimensional
  subspace, so a generic model is a rotated copy of one whose means lie in the
  first ``d' >= k`` coordinates, the others pure noise independent of the
  chain. There the Jacobian is block triangular: the parameters of the
  ``d'``-model act on the first ``d'`` output coordinates only, and a
  perturbation ``D`` of the means in the other coordinates shows in those
  coordinates as ``D E[e_h | observed]``, injective once the posteriors of
  the hidden state span ``R^k``. So the null dimension at ``d`` is the one at
  ``d'``, exactly (both directions).
* Categorical tokens: take the ``d'``-model and split its last symbol ``c``
  into the ``d - d' + 1`` symbols of a cell, with proportions ``w`` that do
  not depend on the hidden state. At that (special) ``d``-model, the outputs
  for probes that avoid the cell, with the targets summed over the cell, are
  the ``d'``-model's and do not move under the within-cell directions
  ``eps[a, h]`` (``sum_a eps[a, h] = 0``), while the unsummed target
  coordinates see ``eps`` as ``E[e_h | observed] eps[a, :]``. The Jacobian is
  again block triangular, so if the ``d'``-model's Jacobian on probes that avoid
  ``c`` has full column rank and those posteriors span ``R^k``, the
  ``d``-model's Jacobian has full rank at that point, hence at generic points
  (its minors are analytic in the parameters, and one that is non-zero
  somewhere is non-zero almost everywhere). A rank deficiency at ``d'`` is not
  such a proof; it is reported as the generic answer (every task measured keeps
  its null dimension constant once ``d >= k + 1``).
"""

from __future__ import annotations

import itertools
import math
from collections import namedtuple
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from sklearn.utils import check_random_state
from threadpoolctl import threadpool_limits

from ._hmm import (
    stationary,
)
from ._jacobian import (
    CLEAR_ZERO,
    FIT_DRAWS,
    MAX_FIT_PARAMETERS,
    MAX_FIT_WORK,
    as_tasks,
    feature_moment_identifiability,
    generic_theta,
    jacobian_work,
    local_identifiability,
    logits_to_rows,
    n_free_parameters,
    reduced_size,
)
from .tasks import parse_task

__all__ = [
    "FitVerdict",
    "IdentifiabilityReport",
    "KruskalResult",
    "check_task",
    "fit_verdict",
    "local_identifiability",
    "stochastic_roots",
]


# --------------------------------------------------------------------------
# The fit-time verdict: theory first, a reduced Jacobian otherwise.
# --------------------------------------------------------------------------
FitVerdict = namedtuple(
    "FitVerdict", ["identifiable", "null_dimension", "reason", "method"]
)
FitVerdict.__doc__ = """Whether a task identifies the HMM, as an estimator needs it.

identifiable : bool or None
    True: locally identifiable (no continuum of HMMs shares the predictor;
    a finite ambiguity through a power ``T^g`` is the extraction's to report).
    False: a continuum shares it. None: unknown, the check did not run or
    failed (``reason`` says why); nothing was shown either way.
null_dimension : int or None
    Dimension of that continuum (0 when identifiable), None when unknown or
    not known in closed form.
reason : str
    One clause, for messages.
method : {"theory", "jacobian", "skipped", "failed"}
    Where the verdict comes from.
"""


def fit_verdict(task, emission, n_components, n_features, feature_degree=1):
    """Cheap identifiability verdict for a fit; never raises.

    The paper's results settle the common tasks without computation:

    * categorical, one observed token and one single-token target (``"1->2"``,
      ``"2->1"``, ``"1->3"``, ...): not identifiable (Theorem 2). The predictor
      sees the parameters only through the pair table ``O T^g diag(pi) O^T``,
      so the null dimension is ``k (k - 1)`` for ``k <= d`` (the change of
      basis ``O -> O S``, ``1^T S = 1^T``), plus ``(k - d)(d - 1)`` for
      ``k > d`` (then every table with equal marginals is reached);
    * categorical, one observed token and a two-token product target
      (``"1->2*3"``, ``"2->1*3"``, ``"3->1*2"``, ``"1->2*4"``, ...): with
      ``k <= d``, identifiable (Theorem 5: the predictor stacked over the
      observed symbol is a rank-``k`` CP tensor with factors ``O R^a``,
      ``O``, ``O T^b``, all of full column rank, unique by Kruskal; ``T``
      follows from its powers). With ``k > d`` and equal gaps, not
      identifiable (``O`` has rank ``d < k``; measured null dimension >= 1,
      not in closed form); unequal gaps go to the Jacobian;
    * Gaussian, one observed token and a one- or two-token target, ``k <=
      d``: identifiable (the softmax posterior pins linearly independent
      means, the read-out the transition powers);
    * a joint task is identifiable as soon as one of its tasks is.

    Anything else is one complex-step Jacobian at a generic parameter of a
    reduced model (:func:`local_identifiability` with at most ``k + 2``
    symbols or ``k`` dimensions; the module docstring says why that answers
    for the full size), skipped above a thousand free parameters. The
    result is cached, so repeated fits pay nothing.

    Parameters
    ----------
    task : str, MaskedTask, or list of them
    emission : {"categorical", "gaussian"}
    n_components : int
    n_features : int
        Alphabet size or token dimension.
    feature_degree : int, default=1
        Gaussian tensor tasks only: the statistic is the moment tensor of the
        token features ``[x, ..., x^p, 1]`` (what
        :class:`~sk_maskid.MaskedGaussianHMM` fits with ``feature_degree=p``);
        above 1, the verdict is that tensor's Jacobian in the transitions,
        means and variances (:func:`feature_moment_identifiability`).

    Returns
    -------
    FitVerdict
        ``identifiable`` is True, False or None (unknown: the check could
        not run, and ``reason`` says why; an estimator should report the
        verdict as not checked rather than either way).
    """
    try:
        specs = tuple(t.spec for t in as_tasks(task))
        if int(feature_degree) > 1:
            return _cached_feature_verdict(
                specs,
                str(emission),
                int(n_components),
                int(n_features),
                int(feature_degree),
            )
        return _cached_fit_verdict(
            specs, str(emission), int(n_components), int(n_features)
        )
    except Exception as exc:  # a diagnostic must never fail a fit
        return FitVerdict(
            None, None, f"the check failed ({type(exc).__name__}: {exc})", "failed"
        )


@lru_cache(maxsize=256)
def _cached_fit_verdict(specs, emission, k, d):
    try:
        if emission not in ("categorical", "gaussian"):
            raise ValueError(f"unknown token type {emission!r}")
        tasks = [parse_task(s) for s in specs]
        verdict = _analytic_verdict(tasks, emission, k, d)
        return (
            verdict
            if verdict is not None
            else _numerical_verdict(tasks, emission, k, d)
        )
    except Exception as exc:  # LinAlgError, RuntimeError, MemoryError, ...
        return FitVerdict(
            None, None, f"the check failed ({type(exc).__name__}: {exc})", "failed"
        )


def _feature_task(specs, emission):
    """The single tensor task a feature degree applies to, or an error."""
    tasks = [parse_task(s) for s in specs]
    task = tasks[0]
    if (
        emission != "gaussian"
        or len(tasks) != 1
        or len(task.observed) != 1
        or len(task.targets) != 1
        or len(task.targets[0]) != 2
    ):
        raise ValueError(
            "feature_degree > 1 applies to Gaussian tasks with one observed token "
            f"and a two-token product target (e.g. '1->2*3'), got {specs!r}"
        )
    return task


@lru_cache(maxsize=256)
def _cached_feature_verdict(specs, emission, k, d, degree):
    task = _feature_task(specs, emission)
    features = f"degree-{degree} features [x, ..., x^{degree}, 1]"
    if k < 2:
        return FitVerdict(
            True, 0, "one hidden state leaves nothing to identify", "theory"
        )
    n_free = k * (k - 1) + 2 * k * d
    if n_free > MAX_FIT_PARAMETERS:
        return FitVerdict(
            None,
            None,
            f"not checked: the moment tensor of {features} of a {k}-state model "
            f"has {n_free} free parameters, too many for a fit; see check_task",
            "skipped",
        )
    result = feature_moment_identifiability(
        task.spec, k, d, degree, np.random.RandomState(0)
    )
    if result.null_dimension > 0:
        return FitVerdict(
            False,
            result.null_dimension,
            f"the moment tensor of {features} has a Jacobian with a "
            f"{result.null_dimension}-dimensional null space: it tells apart at "
            f"most d * {degree} + 1 = {d * degree + 1} states",
            "jacobian",
        )
    return FitVerdict(
        True,
        0,
        f"the moment tensor of {features} has a full-rank Jacobian (the states' "
        "feature means are linearly independent)",
        "jacobian",
    )


def _gaps(task):
    positions = task.positions
    return [b - a for a, b in zip(positions[:-1], positions[1:], strict=True)]


def _analytic_verdict(tasks, emission, k, d):
    """The theory's verdict as a FitVerdict, or None where it is silent."""
    if k < 2:
        return FitVerdict(
            True, 0, "one hidden state leaves nothing to identify", "theory"
        )
    if emission == "categorical" and d < 2:
        return FitVerdict(
            False,
            k * (k - 1),
            "a one-symbol alphabet says nothing about the hidden chain",
            "theory",
        )
    verdicts = [_single_verdict(t, emission, k, d) for t in tasks]
    if len(tasks) == 1:
        return verdicts[0]
    # the joint predictor contains each task's: one identifying task suffices
    for task, verdict in zip(tasks, verdicts, strict=True):
        if verdict is not None and verdict.identifiable:
            return FitVerdict(
                True,
                0,
                f"{task.spec!r} alone identifies it: {verdict.reason}",
                "theory",
            )
    return None


def _single_verdict(task, emission, k, d):
    if len(task.observed) != 1 or len(task.targets) != 1:
        return None
    width = len(task.targets[0])
    if emission == "gaussian":
        if width <= 2 and k <= d:
            return FitVerdict(
                True,
                0,
                "the softmax posterior pins the (linearly independent) means and "
                "the read-out the transition matrix",
                "theory",
            )
        return None
    if width == 1:
        null = k * (k - 1) + (k - min(k, d)) * (d - 1)
        return FitVerdict(
            False,
            null,
            "the predictor sees the parameters only through the pair table "
            f"O T^g diag(pi) O^T, which a {null}-dimensional family of HMMs "
            "shares (Theorem 2)",
            "theory",
        )
    if width != 2:
        return None
    if k <= d:
        return FitVerdict(
            True,
            0,
            "the predictor is a rank-k CP tensor whose factors have full column "
            "rank, unique by Kruskal's theorem (Theorem 5)",
            "theory",
        )
    gaps = _gaps(task)
    if gaps[0] == gaps[1]:
        return FitVerdict(
            False,
            None,
            f"with k={k} > d={d} the emission matrix has rank d < k, so the "
            "transition matrix cannot be read off O T",
            "theory",
        )
    return None


def _numerical_verdict(tasks, emission, k, d):
    """One Jacobian at a generic parameter of the fit-time reduced model."""
    cap = k + 2 if emission == "categorical" else k
    d_used = reduced_size(emission, k, d, cap)
    n_free = n_free_parameters(emission, k, d_used)
    work = jacobian_work(tasks, emission, k, d_used, d_used < d)
    if n_free > MAX_FIT_PARAMETERS or work > MAX_FIT_WORK:
        return FitVerdict(
            None,
            None,
            f"not checked: the numerical check of a {k}-state model is too large "
            f"for a fit ({n_free} free parameters after reduction); see check_task",
            "skipped",
        )
    # Full rank at one parameter proves generic full rank; a deficiency may
    # be a draw that is merely ill-conditioned (a discarded singular value
    # well above rounding, 1e-13 of the largest): then other draws decide,
    # the generic null dimension being the smallest.
    null = None
    for seed in range(FIT_DRAWS):
        result = local_identifiability(
            tasks,
            emission=emission,
            n_components=k,
            n_features=d,
            random_state=seed,
            max_features=cap,
        )
        null = (
            result.null_dimension if null is None else min(null, result.null_dimension)
        )
        sv = result.singular_values
        rank = n_free - result.null_dimension
        if null == 0 or rank >= sv.size or sv[rank] <= CLEAR_ZERO * sv[0]:
            break
    where = "" if d_used == d else f" (computed with {d_used} of {d} features)"
    if null > 0:
        return FitVerdict(
            False,
            null,
            f"the predictor's Jacobian has a {null}-dimensional null space{where}: "
            "a continuum of HMMs gives the same predictor",
            "jacobian",
        )
    return FitVerdict(
        True, 0, f"the predictor's Jacobian has full rank{where}", "jacobian"
    )


# --------------------------------------------------------------------------
# Global questions: Kruskal's condition and finite (root) ambiguities.
# --------------------------------------------------------------------------
# Column subsets _krank tries per size before it samples them instead.
_MAX_KRANK_SUBSETS = 5000


def _krank(F, rtol=1e-9):
    """Kruskal rank: the largest r such that every r columns are independent.

    Full column rank settles it at once (every subset is independent);
    otherwise brute force over column subsets (no library computes k-ranks),
    sampling ``_MAX_KRANK_SUBSETS`` of them at sizes with more (``k`` around
    20 and ``d < k``): the value is then an upper bound, exact for generic
    factors.
    """
    m, k = F.shape
    if m > k:  # the same independences in a k x k basis of the column space
        F = np.linalg.qr(F, mode="r")
        m = k
    sv = np.linalg.svd(F, compute_uv=False)
    scale = sv[0] if sv.size and sv[0] else 1.0
    if k <= m and sv[-1] > rtol * scale:
        return k
    draw = np.random.RandomState(0)
    for r in range(1, k + 1):
        if r > m:
            return r - 1  # more columns than dimensions: always dependent
        if math.comb(k, r) <= _MAX_KRANK_SUBSETS:
            subsets = np.array(list(itertools.combinations(range(k), r)))
        else:
            subsets = np.argsort(draw.rand(_MAX_KRANK_SUBSETS, k), axis=1)[:, :r]
        smallest = np.linalg.svd(F[:, subsets].transpose(1, 0, 2), compute_uv=False)
        if smallest[:, -1].min() <= rtol * scale:
            return r - 1
    return k


KruskalResult = namedtuple("KruskalResult", ["k_ranks", "bound", "holds"])
KruskalResult.__doc__ = """Kruskal's condition for a 3-way CP tensor.

k_ranks : tuple of 3 int
    k-ranks of the three factors (observed-token posterior, then the two
    predicted tokens' conditional means).
bound : int
    ``2 * n_components + 2``.
holds : bool
    ``sum(k_ranks) >= bound``: the decomposition is unique.
"""


def _tensor_factors(task, emission, k, d, rng):
    """Factors of the predictor tensor of a one-observed, two-target task.

    Stacking ``E[x_q ⊗ x_r | x_p]`` over values (categorical) or probe points
    (Gaussian) of the observed token gives factors: the posterior of the
    hidden state at the middle position given ``x_p``, and the conditional
    means of the two predicted tokens given that hidden state.
    """
    theta = generic_theta(emission, k, d, rng)
    chain = logits_to_rows(theta[: k * (k - 1)].reshape(k, k - 1))
    if emission == "categorical":
        emission_means = logits_to_rows(theta[k * (k - 1) :].reshape(k, d - 1))
    else:
        emission_means = theta[k * (k - 1) :].reshape(k, d)
    pi = stationary(chain)
    reverse = (chain.T * pi[None, :]) / pi[
        :, None
    ]  # reverse[h, i] = P(h_{t-1}=i|h_t=h)
    s1, s2, s3 = task.positions

    def given_middle(position):
        gap = position - s2
        step = chain if gap > 0 else reverse
        return np.linalg.matrix_power(step, abs(gap)) @ emission_means  # (k, D)

    p = task.observed[0]
    # posterior of h_{s2} given x_p: rows over observed values / probe points
    like = given_middle(p)  # (k, D): categorical P(x_p | h), Gaussian mean
    if emission == "categorical":
        post = like.T * pi
    else:
        probes = rng.standard_normal((max(3 * k, 10), d)) * 2.0
        logp = -0.5 * ((probes[:, None, :] - like[None]) ** 2).sum(-1) + np.log(pi)
        post = np.exp(logp - logp.max(axis=1, keepdims=True))
    post = post / post.sum(axis=1, keepdims=True)
    targets = [q for q in task.positions if q != p]
    return [post] + [given_middle(q).T for q in targets]


def _kruskal(task, emission, k, d, rng):
    factors = _tensor_factors(task, emission, k, d, rng)
    with threadpool_limits(limits=1, user_api="blas"):  # small matrices
        ranks = tuple(_krank(F) for F in factors)
    return KruskalResult(ranks, 2 * k + 2, sum(ranks) >= 2 * k + 2)


def stochastic_roots(transmat, power, tol=1e-9):
    """Other stochastic matrices ``T'`` with ``T'^power == transmat^power``.

    Candidates come from the eigendecomposition ``T = V diag(l) V^-1``: each
    eigenvalue may be replaced by another real ``power``-th root of
    ``l**power`` (a sign flip for even powers) while the eigenvalue 1 and the
    eigenvectors stay. A candidate is kept when it is real, non-negative and
    differs from ``transmat``: the finite ambiguity of the paper's Claim 1.

    Parameters
    ----------
    transmat : ndarray of shape (k, k)
        Row-stochastic matrix.
    power : int
        The power through which a task sees the chain (the gap).
    tol : float
        Tolerance for "real", "non-negative" and "different".

    Returns
    -------
    list of ndarray of shape (k, k)
    """
    if power < 2 or power % 2:
        return []  # odd real roots are unique
    vals, vecs = np.linalg.eig(transmat)
    inv = np.linalg.inv(vecs)
    flippable = [
        i
        for i in range(len(vals))
        if abs(vals[i] - 1) > tol and abs(vals[i].imag) <= tol
    ]
    roots = []
    for r in range(1, len(flippable) + 1):
        for subset in itertools.combinations(flippable, r):
            new = vals.copy()
            new[list(subset)] *= -1
            cand = vecs @ np.diag(new) @ inv
            if np.abs(cand.imag).max() > tol:
                continue
            cand = cand.real
            if cand.min() >= -tol and np.abs(cand - transmat).max() > tol:
                roots.append(np.clip(cand, 0, None))
    return roots


def _min_gap(task):
    positions = task.positions
    return min(b - a for a, b in zip(positions[:-1], positions[1:], strict=True))


# --------------------------------------------------------------------------
# The report.
# --------------------------------------------------------------------------
_THEORY = {
    # (canonical spec, emission) -> the paper's verdict (the Theory page of
    # the documentation states each result and its theorem).
    ("1->2", "categorical"): "not identifiable (Theorem 2)",
    ("2->1", "categorical"): "not identifiable (Theorem 2)",
    ("1->3", "categorical"): "not identifiable (a continuum, like 1->2)",
    ("1->2*3", "categorical"): "identifiable when k <= d (Theorem 5, Kruskal)",
    ("2->1*3", "categorical"): "identifiable when k <= d (Theorem 5, Kruskal)",
    ("1->2", "gaussian"): "identifiable",
    ("2->1", "gaussian"): "identifiable",
    ("1->3", "gaussian"): "locally identifiable, finite ambiguity (Claim 1)",
    ("1->2*3", "gaussian"): "identifiable",
    ("2->1*3", "gaussian"): "identifiable",
}
_PAIRWISE_3 = frozenset(["1->2", "2->1", "1->3", "3->1", "2->3", "3->2"])


def _theory(tasks, emission, k, d):
    specs = [t.spec for t in tasks]
    if len(specs) > 1:
        if frozenset(specs) == _PAIRWISE_3:
            return (
                "not identifiable (Theorem 4)"
                if emission == "categorical"
                else "identifiable"
            )
        return None
    verdict = _THEORY.get((specs[0], emission))
    if verdict and emission == "categorical" and "k <= d" in verdict and k > d:
        return (
            "not identifiable (k > d: the emission matrix cannot have full column rank)"
        )
    if verdict and emission == "gaussian" and k > d:
        # the paper's standing assumption: linearly independent means
        return "not covered (the paper assumes k <= d, independent means)"
    return verdict


@dataclass(frozen=True)
class IdentifiabilityReport:
    """Whether a masking scheme identifies the HMM, and why.

    Attributes
    ----------
    task : str
        The task (several, joined by " + ", for a joint task).
    emission : str
    n_components, n_features : int
    verdict : str
        One of "identifiable", "not identifiable", "locally identifiable,
        finite ambiguity", "inconclusive".
    n_free_parameters : int
        Free parameters of the HMM (simplex constraints removed).
    jacobian_rank : int
        Rank of the predictor's Jacobian (the smallest over trials).
    null_dimension : int
        ``n_free_parameters - jacobian_rank``: the dimension of the family
        of models that share the predictor.
    kruskal : KruskalResult or None
        For tensor-product targets.
    reason : str
        One sentence.
    theory : str or None
        The paper's verdict where the paper covers the task.
    """

    task: str
    emission: str
    n_components: int
    n_features: int
    verdict: str
    n_free_parameters: int
    jacobian_rank: int
    null_dimension: int
    kruskal: KruskalResult | None
    reason: str
    theory: str | None

    def __str__(self):
        lines = [
            f"task {self.task!r}, {self.emission} tokens, "
            f"k={self.n_components}, d={self.n_features}: {self.verdict}",
            f"  Jacobian rank {self.jacobian_rank} of {self.n_free_parameters} "
            f"free parameters (null dimension {self.null_dimension})",
        ]
        if self.kruskal is not None:
            holds = "holds" if self.kruskal.holds else "fails"
            lines.append(
                f"  Kruskal: k-ranks {self.kruskal.k_ranks}, sum "
                f"{sum(self.kruskal.k_ranks)} vs {self.kruskal.bound}: {holds}"
            )
        lines.append(f"  reason: {self.reason}")
        if self.theory is not None:
            lines.append(f"  theory: {self.theory}")
        return "\n".join(lines)


def check_task(
    task,
    *,
    emission="categorical",
    n_components,
    n_features,
    n_trials=3,
    feature_degree=1,
    random_state=None,
):
    """Does the optimal predictor of ``task`` determine the HMM?

    Parameters
    ----------
    task : str, MaskedTask, or list of them
        A list, or a string joining spellings with ``+`` as the report
        prints them, is the joint task (predictors concatenated), e.g. all
        pairwise tasks on three tokens for the paper's Theorem 4.
    emission : {"categorical", "gaussian"}, default="categorical"
    n_components : int
        Number of hidden states ``k``.
    n_features : int
        Alphabet size or token dimension ``d``.
    n_trials : int, default=3
        Random generic parameters at which the Jacobian rank is computed; the
        verdict is "inconclusive" if they disagree.
    feature_degree : int, default=1
        Gaussian tensor tasks: above 1, the question is asked of the
        statistic :class:`~sk_maskid.MaskedGaussianHMM` fits with that
        ``feature_degree``, the moment tensor of the token features ``[x,
        ..., x^p, 1]``, with per-state diagonal variances among the
        parameters (its Jacobian through random rank-one projections, and
        Kruskal's condition on its CP factors).
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    IdentifiabilityReport

    Notes
    -----
    Bounded at any size: above ``max(k + 2, 8)`` symbols or dimensions the
    Jacobian is computed on a reduced model (see
    :func:`local_identifiability` and the module docstring), wide targets are
    randomly projected and the perturbations batched (measured at ``k=20``,
    ``d=1000``: 1-4 s and under 60 MB for the default tasks). For the cheap,
    cached verdict an estimator needs at fit time, see :func:`fit_verdict`.
    """
    if emission not in ("categorical", "gaussian"):
        raise ValueError(
            f"emission must be 'categorical' or 'gaussian', got {emission!r}"
        )
    tasks = as_tasks(task)
    k, d = int(n_components), int(n_features)
    if k < 1 or d < 1:
        raise ValueError("n_components and n_features must be >= 1")
    if emission == "categorical" and d < 2:
        raise ValueError("a categorical alphabet needs n_features >= 2")
    rng = check_random_state(random_state)
    if int(feature_degree) > 1:
        return _feature_report(tasks, k, d, int(feature_degree), n_trials, rng)
    results = [
        local_identifiability(
            tasks, emission=emission, n_components=k, n_features=d, random_state=rng
        )
        for _ in range(n_trials)
    ]
    nulls = {r.null_dimension for r in results}
    worst = max(results, key=lambda r: r.null_dimension)
    single = tasks[0] if len(tasks) == 1 else None
    kruskal = None
    if (
        single is not None
        and len(single.observed) == 1
        and len(single.targets) == 1
        and len(single.targets[0]) == 2
        and k >= 2
    ):
        kruskal = _kruskal(single, emission, k, d, rng)
    name = " + ".join(t.spec for t in tasks)
    if len(nulls) > 1:
        verdict = "inconclusive"
        reason = (
            f"the Jacobian rank differs between trials (null dimensions "
            f"{sorted(nulls)}): the parameters drawn may be non-generic"
        )
    elif worst.null_dimension > 0:
        verdict = "not identifiable"
        reason = (
            f"a {worst.null_dimension}-dimensional family of HMMs gives the same "
            "optimal predictor (rank-deficient Jacobian)"
        )
        if kruskal is not None and emission == "categorical" and k > d:
            reason += (
                f"; with k={k} > d={d} the emission matrix has k-rank "
                f"{kruskal.k_ranks[1]} < k, so T cannot be read off O T"
            )
    elif min(_min_gap(t) for t in tasks) >= 2 and k >= 2:
        verdict = "locally identifiable, finite ambiguity"
        reason = (
            "the Jacobian has full rank, but the task never sees two adjacent "
            "tokens, so T enters only through a power T^g whose other "
            "stochastic roots give the same predictor"
        )
    else:
        verdict = "identifiable"
        reason = "the predictor's Jacobian has full rank"
        if kruskal is not None:
            reason += (
                " and Kruskal's condition holds"
                if kruskal.holds
                else (", although Kruskal's sufficient condition fails")
            )
    d_used = results[0].n_features_used
    if d_used is not None and d_used < d:
        unit = "symbols" if emission == "categorical" else "dimensions"
        if emission == "gaussian":
            why = "the null dimension is the same"
        elif worst.null_dimension == 0:
            why = "full rank there proves it at the full size"
        else:
            why = "the generic answer"
        reason += f"; the Jacobian was computed with {d_used} of the {d} {unit} ({why})"
    return _report(
        worst,
        name,
        emission,
        k,
        d,
        verdict,
        kruskal,
        reason,
        _theory(tasks, emission, k, d),
    )


def _report(worst, task, emission, k, d, verdict, kruskal, reason, theory):
    """An :class:`IdentifiabilityReport` with ``worst``'s Jacobian figures."""
    return IdentifiabilityReport(
        task=task,
        emission=emission,
        n_components=k,
        n_features=d,
        verdict=verdict,
        n_free_parameters=worst.n_free_parameters,
        jacobian_rank=worst.jacobian_rank,
        null_dimension=worst.null_dimension,
        kruskal=kruskal,
        reason=reason,
        theory=theory,
    )


def _feature_report(tasks, k, d, degree, n_trials, rng):
    """:func:`check_task` for the moment tensor of degree-``degree`` features."""
    task = _feature_task(tuple(t.spec for t in tasks), "gaussian")
    results = [
        feature_moment_identifiability(task.spec, k, d, degree, rng)
        for _ in range(n_trials)
    ]
    nulls = {r.null_dimension for r in results}
    worst = max(results, key=lambda r: r.null_dimension)
    with threadpool_limits(limits=1, user_api="blas"):  # small matrices
        ranks = tuple(_krank(F) for F in worst.factors)
    kruskal = KruskalResult(ranks, 2 * k + 2, sum(ranks) >= 2 * k + 2)
    statistic = f"the moment tensor of degree-{degree} features [x, ..., x^{degree}, 1]"
    if len(nulls) > 1:
        verdict = "inconclusive"
        reason = f"the Jacobian rank of {statistic} differs between trials"
    elif worst.null_dimension > 0:
        verdict = "not identifiable"
        reason = (
            f"a {worst.null_dimension}-dimensional family of HMMs shares {statistic} "
            f"(its feature means span at most d * {degree} + 1 = {d * degree + 1} "
            "dimensions)"
        )
    elif _min_gap(task) >= 2:
        verdict = "locally identifiable, finite ambiguity"
        reason = (
            f"{statistic} has a full-rank Jacobian, but T enters only through a "
            "power T^g whose other stochastic roots give the same tensor"
        )
    else:
        verdict = "identifiable"
        reason = f"{statistic} has a full-rank Jacobian" + (
            " and Kruskal's condition holds"
            if kruskal.holds
            else ", although Kruskal's sufficient condition fails"
        )
    return _report(worst, task.spec, "gaussian", k, d, verdict, kruskal, reason, None)
