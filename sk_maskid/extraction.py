"""Reading an HMM back out of a fitted masked predictor.

Two routes, chosen by what the task's predictor holds:

* **Tensor route** (one observed token, one target that is the tensor
  product of two tokens, e.g. ``"1->2*3"``, ``"2->1*3"``). Stacking the
  predictor over the values of the observed token, each slice weighted by the
  frequency of that value, gives the joint moment of three positions
  ``s1 < s2 < s3``::

      W = sum_h pi_h  F1[:, h] ⊗ F2[:, h] ⊗ F3[:, h],
      F1 = E[x_{s1} | h_{s2}],  F2 = E[x_{s2} | h_{s2}],  F3 = E[x_{s3} | h_{s2}],

  a rank-k CP tensor, unique by Kruskal when ``F2`` and ``F3`` have full
  column rank. (Weighting slices of the observed mode only rescales rows of
  one factor, so it never changes the other two, which carry the
  parameters.) It is decomposed with a Jennrich (simultaneous
  diagonalisation) start refined by tensorly's ALS, best of ``n_init``.

  Scale equations. CP factors are defined up to column scales; the model
  fixes them: categorical factors are conditional distributions, so every
  column of ``F1, F2, F3`` sums to 1; Gaussian tokens are augmented with a
  constant coordinate ``x~ = [x; 1]``, so the last entry of every column is 1.
  What is left of the scale is the weight ``pi_h``, and signs are fixed by
  the same normalisation. Then ``F2`` is the emission matrix,
  ``T^g = F2^+ F3`` (or the reverse kernel from ``F1``), and ``pi`` is
  ``T``'s stationary distribution; ``pi`` from the weights is a free check.
  The least-squares CP fit is consistent but not efficient, so categorical
  read-outs are then polished under the task's own log-loss (L-BFGS with a
  closed-form gradient).

* **Predictor matching** (every other task). The HMM's own optimal predictor
  is the parametric form of the masked predictor; the parameters are fitted
  to the learned predictor by L-BFGS (cross-entropy for categorical tables,
  squared loss on data for Gaussian pairs) from several starts. For tasks
  that do not identify the model this returns *one* HMM consistent with the
  predictor.

:func:`extract_categorical` and :func:`extract_gaussian` run the whole recipe
on a fitted estimator's statistics and return one :class:`Extraction`; the
estimators only turn it into fitted attributes. The science behind both
routes is on the Theory page of the documentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial

import numpy as np
from numpy.polynomial import hermite_e
from scipy.linalg import fractional_matrix_power
from sklearn.cluster import kmeans_plusplus
from sklearn.utils import check_random_state
from tensorly.tenalg.proximal import simplex_prox

from ._cp import CPResult, cp_decompose
from ._hmm import RANK_RTOL, stationary
from ._matching import (
    fit_gaussian_posterior,
    match_categorical_predictor,
    polish_tensor_readout,
    posterior_parameters,
    solve_quadratic,
)
from .models import CategoricalHMMModel, GaussianHMMModel

__all__ = [
    "CPResult",
    "Extraction",
    "cp_decompose",
    "extract_categorical",
    "extract_gaussian",
    "readout_categorical",
    "readout_gaussian",
    "start_distribution",
    "tensor_route",
]

# Floor on extracted probabilities: a zero emission probability makes one
# held-out symbol impossible (log-likelihood -inf).
PROB_FLOOR = 1e-6

# ALS tolerance before the categorical log-loss polish: ALS only selects the
# basin, the polish is the estimator (k=4, d=12, 1e6 tokens, 10 models: the
# median fit went 0.40 -> 0.31 s at the same errors; 1e-6 let one emission
# error past 0.01).
_ALS_TOL = 1e-7

# The Gaussian moment tensor's ALS stops once an iteration changes the
# relative fit error by less than this over the number of windows: far below
# the tensor's sampling noise (order 1/sqrt(n)). Iterating on to 1e-10 only
# fits the noise of short series: measured on sunspots, nile and US macro
# series (80-230 windows, k=2..4), 2-6 times fewer ALS iterations (0.36 ->
# 0.06 s at nile k=4) and the same or better likelihood after refinement.
_ALS_NOISE_TOL = 0.01

# Further CP starts are skipped once one fits the empirical joint table to
# within this many times its sampling noise (misspecified data, whose misfit
# dwarfs the noise, still get every start).
_NOISE_MARGIN = 1.5


def _relative_noise(joint, n):
    """Expected ``||p_hat - p|| / ||p||`` of a table of ``n`` counts.

    Multinomial sampling: ``E ||p_hat - p||^2 = (1 - sum p^2) / n``
    (overlapping windows are dependent; this is the order of magnitude).
    """
    power = float(np.sum(joint**2))
    return float(np.sqrt(max(1.0 - power, 0.0) / n / power))


# The posterior form's starts are fitted on at most this many token pairs; the
# best then runs on all of them, chunk by chunk (benchmarks/bench_posterior.py).
_PAIR_BUDGET = 100_000

# k-means++ seeds of the posterior form are drawn from at most this many tokens.
_SEED_SAMPLE = 20_000


@dataclass(frozen=True)
class Extraction:
    """An HMM read out of a fitted predictor, with its diagnostics.

    Attributes
    ----------
    model : CategoricalHMMModel or GaussianHMMModel
        The extracted HMM (``startprob_`` is the stationary distribution).
    method : {"cp", "predictor matching", "posterior", "degenerate"}
        The route taken.
    fit_error : float
        Relative CP reconstruction error ("cp" on Gaussian tokens), excess
        cross-entropy (categorical) or squared loss ("posterior"); NaN for
        "degenerate".
    condition : float
        Smallest singular value of the column-normalised CP factors (NaN off
        the CP route).
    n_iter : int
        Iterations of the final optimiser (L-BFGS, or ALS on Gaussian CP).
    converged : bool
        False when that optimiser stopped at its iteration cap.
    finite_ambiguity : bool
        Whether the task sees the transition matrix only through a power
        ``T^g`` (whose other stochastic roots are equally good).
    messages : tuple of str
        Problems found in the data (unseen symbols, thin or rank-deficient
        statistics).
    predictor : ndarray or None
        Categorical tasks: the learned predictor table, one row per
        combination of observed symbols (unseen rows filled with the
        extracted HMM's exact prediction). None for Gaussian tokens.
    """

    model: CategoricalHMMModel | GaussianHMMModel
    method: str
    fit_error: float
    condition: float
    n_iter: int
    converged: bool
    finite_ambiguity: bool
    messages: tuple[str, ...]
    predictor: np.ndarray | None = None


def tensor_route(task):
    """Positions ``(s1, s2, s3)`` if the tensor route applies, else None.

    It applies when one token is observed and the single target is the
    tensor product of two others: the predictor stacked over the observed
    value is then a rank-k CP tensor.
    """
    if len(task.observed) == 1 and len(task.targets) == 1 and len(task.targets[0]) == 2:
        return task.positions
    return None


def _project_rows(V):
    """Euclidean projection of each row of ``V`` onto the probability simplex.

    tensorly projects columns, and returns a vector for a single column.
    """
    V = np.atleast_2d(V)
    return simplex_prox(V.T, 1.0).reshape(V.shape[::-1]).T


def _floor(P):
    """Lift exact zeros left by the simplex projection to ``PROB_FLOOR``.

    After renormalising, an entry of a row of ``d`` moves by at most
    ``(d - 1) * PROB_FLOOR``.
    """
    P = np.maximum(P, PROB_FLOOR)
    return P / P.sum(axis=1, keepdims=True)


def _stationary_or_uniform(transmat):
    """Stationary distribution; uniform if the extracted chain is reducible."""
    try:
        pi = np.real(stationary(transmat))
    except np.linalg.LinAlgError:
        pi = None
    if pi is None or not np.all(np.isfinite(pi)) or pi.min() < -1e-9:
        return np.full(len(transmat), 1.0 / len(transmat))
    return _project_rows(pi[None])[0]


def _unfolding_rank(tensor):
    """Smallest numerical rank over the mode unfoldings of a 3-way tensor.

    A CP decomposition of rank k needs every unfolding to have rank >= k;
    constant or too-regular data (one symbol, one repeated token) fall short.
    """
    ranks = []
    for mode in range(tensor.ndim):
        unfolded = np.moveaxis(tensor, mode, 0).reshape(tensor.shape[mode], -1)
        sv = np.linalg.svd(unfolded, compute_uv=False)
        ranks.append(int(np.count_nonzero(sv > RANK_RTOL * sv[0])) if sv[0] > 0 else 0)
    return min(ranks)


def _thin_message(n, n_statistics):
    return (
        f"only {int(n)} sub-windows for {n_statistics} statistics: the estimates "
        "will be very noisy"
    )


def _rank_message(rank, k):
    return (
        f"the statistics have rank {rank} < n_components={k} (constant or "
        "too regular sequences): the data support at most "
        f"{max(rank, 1)} states, so the extracted HMM is a placeholder"
    )


# --------------------------------------------------------------------------
# Read-out of HMM parameters from CP factors.
# --------------------------------------------------------------------------
def _normalise_columns(factors, weights, scale_rows):
    """Divide each column by its scale (sum, or last entry); fold into weights."""
    out = []
    weights = np.array(weights, dtype=float)
    for f in factors:
        scale = scale_rows(f)
        scale = np.where(np.abs(scale) < 1e-300, 1e-300, scale)
        out.append(f / scale)
        weights = weights * scale
    return out, weights


def _transmat_from_factors(F_before, F_mid, F_after, gaps, pi_weights):
    """Transition matrix from the factors around the latent position.

    ``gaps = (s2 - s1, s3 - s2)``. A neighbour one step ahead gives
    ``T`` directly, one step behind gives the reverse kernel (converted with
    the weights' ``pi``); larger gaps give a power of ``T`` whose principal
    root is taken, a finite ambiguity (Claim 1 of the paper).

    Returns ``(transmat, finite_ambiguity)``.
    """
    pinv = np.linalg.pinv(F_mid)
    if gaps[1] == 1:
        return pinv @ F_after, False  # columns P(h_{t+1} | h_t) = T_col
    if gaps[0] == 1:
        Rc = pinv @ F_before  # Rc[i, h] = P(h_{t-1} = i | h_t = h)
        pi = np.clip(pi_weights, 1e-12, None)
        transmat = Rc * pi[None, :] / pi[:, None]  # transmat[i, h]
        return transmat.T, False  # returned as columns like the other branch
    power = pinv @ F_after
    return np.real(fractional_matrix_power(power, 1.0 / gaps[1])), True


def readout_categorical(cp, positions):
    """HMM parameters from the CP factors of a categorical joint tensor.

    Parameters
    ----------
    cp : CPResult
        Decomposition of the joint table of positions ``s1 < s2 < s3``.
    positions : tuple of 3 int

    Returns
    -------
    dict with ``startprob``, ``transmat``, ``emissionprob``, ``pi_weights``,
    ``finite_ambiguity``.
    """
    factors, w = _normalise_columns(cp.factors, cp.weights, lambda f: f.sum(axis=0))
    s1, s2, s3 = positions
    T_col, ambiguous = _transmat_from_factors(
        factors[0], factors[1], factors[2], (s2 - s1, s3 - s2), w
    )
    transmat = _project_rows(T_col.T)
    emissionprob = _project_rows(factors[1].T)
    return {
        "transmat": transmat,
        "emissionprob": emissionprob,
        "pi_weights": w / w.sum(),
        "finite_ambiguity": ambiguous,
    }


def readout_gaussian(cp, positions, m_sq, n, min_covar):
    """HMM parameters from the CP factors of the augmented cross-moment tensor.

    Parameters
    ----------
    cp : CPResult
        Decomposition of ``E[x~_{s1} ⊗ x~_{s2} ⊗ x~_{s3}]``.
    positions : tuple of 3 int
    m_sq : ndarray of shape (d+1, d)
        ``sum x~_{s1} ⊗ (x_{s2} ∘ x_{s2})``; with ``F1`` and ``pi`` known,
        ``m_sq / n = F1 diag(pi) S`` is linear in ``S[h] = mu_h^2 + var_h``.
    n : float
        Number of sub-windows behind the sums.
    min_covar : float
        Floor on the variances.

    Returns
    -------
    dict with ``transmat``, ``means``, ``variances`` (per state and feature),
    ``pi_weights``, ``finite_ambiguity``.
    """
    factors, w = _normalise_columns(cp.factors, cp.weights, lambda f: f[-1])
    s1, s2, s3 = positions
    T_col, ambiguous = _transmat_from_factors(
        factors[0], factors[1], factors[2], (s2 - s1, s3 - s2), w
    )
    transmat = _project_rows(T_col.T)
    d = m_sq.shape[1]
    means = factors[1][:d].T
    pi = np.clip(w / w.sum(), 1e-12, None)
    if len(factors[1]) > d + 1:  # the squares are features: read them off
        second = factors[1][d : 2 * d].T
    else:
        second = np.linalg.lstsq(factors[0] * pi, m_sq / n, rcond=None)[0]
    variances = np.maximum(second - means**2, min_covar)
    return {
        "transmat": transmat,
        "means": means,
        "variances": variances,
        "pi_weights": pi,
        "finite_ambiguity": ambiguous,
    }


# --------------------------------------------------------------------------
# The whole recipe, from a fitted estimator's statistics.
# --------------------------------------------------------------------------
def _observed_windows(index, task, d):
    """Windows holding the observed-symbol combinations ``index`` (row-major).

    The task's observed positions get the symbols, every other position -1
    (masked): the form both predictor matching and the model expect.
    """
    windows = -np.ones((len(index), task.span), dtype=np.intp)
    combos = np.unravel_index(index, (d,) * len(task.observed))
    windows[:, [p - 1 for p in task.observed]] = np.array(combos).T
    return windows


def _predictor_table(counts, task, d):
    """Conditional tables per target from the joint counts.

    Returns ``(table, seen, weights)``: ``table`` is ``(d**m_obs,
    target_dim)``, ``seen`` marks observed combinations with data,
    ``weights`` their frequencies.
    """
    positions = task.positions
    obs_axes = [positions.index(p) for p in task.observed]
    n_obs = d ** len(task.observed)
    tables = []
    for target in task.targets:
        axes = obs_axes + [positions.index(p) for p in target]
        drop = tuple(i for i in range(len(positions)) if i not in axes)
        marginal = counts.sum(axis=drop) if drop else counts
        # order the remaining axes as (observed..., target in spelled order)
        kept = sorted(axes)
        marginal = np.transpose(marginal, [kept.index(a) for a in axes])
        tables.append(marginal.reshape(n_obs, -1))
    totals = tables[0].sum(axis=1)
    seen = totals > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        table = np.hstack([t / totals[:, None] for t in tables])
    return table, seen, totals / totals.sum()


def _categorical_messages(counts, d):
    """What the count table says about the data, before any fitting."""
    messages = []
    axes = range(counts.ndim)
    present = np.zeros(d, dtype=bool)
    for axis in axes:
        present |= counts.sum(axis=tuple(a for a in axes if a != axis)) > 0
    if not present.all():
        messages.append(
            f"symbol(s) {np.flatnonzero(~present).tolist()} never observed: "
            f"their emission probabilities are at the floor {PROB_FLOOR:g}"
        )
    if counts.sum() < counts.size:
        messages.append(_thin_message(counts.sum(), counts.size))
    return messages


def extract_categorical(
    counts, task, n_components, *, n_init=5, max_iter=500, tol=1e-10, random_state=None
):
    """Read a categorical HMM out of the joint counts of a task's positions.

    Tensor tasks go through the CP decomposition of the joint table, polished
    under the task's log-loss; every other task, or a tensor task whose
    statistics have rank below ``n_components``, through predictor matching.

    Parameters
    ----------
    counts : ndarray of shape (n_symbols,) * len(task.positions)
        Joint counts of the symbols at the task's positions.
    task : MaskedTask
    n_components : int
    n_init : int, default=5
        Starts of the CP decomposition or of predictor matching.
    max_iter : int, default=500
        Iterations per start (ALS or L-BFGS).
    tol : float, default=1e-10
        Stopping tolerance (ALS stops at ``max(tol, 1e-7)``: it only selects
        the basin the polish descends).
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    Extraction
    """
    d = counts.shape[0]
    k = n_components
    if counts.sum() == 0:
        raise ValueError("no complete window to learn from")
    rng = check_random_state(random_state)
    messages = _categorical_messages(counts, d)
    route = tensor_route(task)
    if route is not None and k > 1:
        rank = _unfolding_rank(counts)
        if rank < k:
            messages.append(_rank_message(rank, k))
            route = None  # no CP of rank k exists: fall back to matching
    joint = counts / counts.sum()
    table, seen, weights = _predictor_table(counts, task, d)
    finite_ambiguity = False
    if route is not None:
        cp = cp_decompose(
            joint,
            k,
            n_init=n_init,
            max_iter=max_iter,
            tol=max(tol, _ALS_TOL),
            good_enough=_NOISE_MARGIN * _relative_noise(joint, counts.sum()),
            random_state=rng,
        )
        out = readout_categorical(cp, route)
        finite_ambiguity = out["finite_ambiguity"]
        # The least-squares CP read-out is identifiable but not efficient;
        # polishing it under the task's own log-loss keeps its basin.
        out = polish_tensor_readout(
            joint,
            route,
            task.observed[0],
            _floor(out["transmat"]),
            _floor(out["emissionprob"]),
            max_iter=max_iter,
            # differences in mean log-loss below 1% of one window's share
            # are far below the sampling noise: not worth iterations
            tol=max(tol, 0.01 / counts.sum()),
        )
        method, fit_error, condition = "cp", cp.fit_error, cp.condition
    else:
        out = match_categorical_predictor(
            task,
            _observed_windows(np.flatnonzero(seen), task, d),
            table[seen],
            weights[seen],
            k,
            d,
            n_init=n_init,
            max_iter=max_iter,
            tol=tol,
            random_state=rng,
        )
        method, fit_error, condition = "predictor matching", out["loss"], np.nan
    transmat = _floor(out["transmat"])
    model = CategoricalHMMModel(
        _stationary_or_uniform(transmat), transmat, _floor(out["emissionprob"])
    )
    if not seen.all():
        # Unseen inputs: fall back on the extracted HMM's exact predictor.
        table[~seen] = model.conditional_expectation(
            task, _observed_windows(np.flatnonzero(~seen), task, d)
        )
    return Extraction(
        model=model,
        method=method,
        fit_error=float(fit_error),
        condition=float(condition),
        n_iter=int(out["n_iter"]),
        converged=out["converged"],
        finite_ambiguity=finite_ambiguity,
        messages=tuple(messages),
        predictor=table,
    )


def _seed_means(tokens, n_components, n_init, rng):
    """k-means++ seeds on (a sample of) the tokens, one per start."""
    sample = tokens[
        rng.choice(len(tokens), min(len(tokens), _SEED_SAMPLE), replace=False)
    ]
    return [
        kmeans_plusplus(sample, n_components, random_state=rng.randint(2**31 - 1))[0]
        for _ in range(n_init)
    ]


def _hermite_basis(n_features, degree):
    """``C`` with ``C x~`` the scaled Hermite features of ``x~ = [z, ...,
    z^degree, 1]``: ``He_j(z) / sqrt(j!)`` per coordinate, the constant last.

    Degree 1 is the identity (``He_1(z) = z``), so that route is unchanged.
    """
    d = n_features
    C = np.zeros((d * degree + 1,) * 2)
    C[-1, -1] = 1.0
    for j in range(1, degree + 1):
        unit = np.zeros(j + 1)
        unit[j] = 1.0
        coef = hermite_e.herme2poly(unit) / np.sqrt(factorial(j))
        rows = slice((j - 1) * d, j * d)
        C[rows, -1] = coef[0]
        for i in range(1, j + 1):
            C[rows, (i - 1) * d : i * d] += coef[i] * np.eye(d)
    return C


def _gaussian_model(transmat, means, variances, covariance_type):
    transmat = _floor(transmat)
    covars = variances.mean(axis=1) if covariance_type == "spherical" else variances
    return GaussianHMMModel(
        _stationary_or_uniform(transmat), transmat, means, covars, covariance_type
    )


def extract_gaussian(
    stats,
    task,
    n_components,
    *,
    form,
    covariance_type="diag",
    min_covar=1e-3,
    n_init=5,
    max_iter=500,
    tol=1e-10,
    random_state=None,
):
    """Read a Gaussian HMM out of a fitted estimator's statistics.

    Parameters
    ----------
    stats : dict
        ``form="moments"``: ``m3``, ``m_sq`` and ``n`` (see
        :func:`readout_gaussian`); ``form="posterior"``: the sums ``sq``
        and ``n_tokens`` that pin the variance, the frame's ``offset``, and
        either the token ``pairs`` (a
        :class:`~sk_maskid._statistics.TokenPairs`: the predictor is fitted
        on them) or the summed quadratic models ``hessian`` and ``target``
        of the loss (chunks combined by ``partial_fit``: their minimiser is
        read out). The posterior form writes the fitted predictor's
        parameters (``theta``) and, after a fit on pairs, the quadratic
        model of the loss at them (``hessian``, ``target``) into ``stats``.
    task : MaskedTask
    n_components : int
    form : {"moments", "posterior"}
        The predictor form.
    covariance_type : {"spherical", "diag"}, default="diag"
    min_covar : float, default=1e-3
        Floor on the variances.
    n_init, max_iter, tol, random_state
        As in :func:`extract_categorical` (the moments form's ALS stops at
        ``max(tol, 0.01 / n_windows)``, below the tensor's sampling noise).

    Returns
    -------
    Extraction
        ``method`` is "degenerate" when the data support fewer than
        ``n_components`` distinct states: every state then emits the token
        mean and variance.
    """
    k = n_components
    rng = check_random_state(random_state)
    messages = []
    if form == "moments":
        if stats["n"] < 1:
            raise ValueError("no complete window to learn from")
        if stats["n"] < stats["m3"].size:
            messages.append(_thin_message(stats["n"], stats["m3"].size))
        rank = _unfolding_rank(stats["m3"] / stats["n"])
        if rank < k:
            messages.append(_rank_message(rank, k))
            mean = stats["m3"][-1, : stats["m_sq"].shape[1], -1] / stats["n"]
            second = stats["m_sq"][-1] / stats["n"]
            return _placeholder(mean, second, k, min_covar, covariance_type, messages)
        d = stats["m_sq"].shape[1]
        degree = (stats["m3"].shape[0] - 1) // d
        # Jennrich and ALS work in a basis of scaled Hermite polynomials,
        # orthonormal for standard normal tokens; the raw powers' scales
        # grow like (2j - 1)!! and would swamp the low-order features.
        tensor = stats["m3"]
        if degree > 1:
            basis = _hermite_basis(d, degree)
            tensor = np.einsum("ia,jb,kc,abc->ijk", basis, basis, basis, tensor)
        cp = cp_decompose(
            tensor / stats["n"],
            k,
            n_init=n_init,
            max_iter=max_iter,
            tol=max(tol, _ALS_NOISE_TOL / stats["n"]),
            random_state=rng,
        )
        if degree > 1:
            cp = cp._replace(factors=[np.linalg.solve(basis, f) for f in cp.factors])
        out = readout_gaussian(cp, task.positions, stats["m_sq"], stats["n"], min_covar)
        return Extraction(
            model=_gaussian_model(
                out["transmat"], out["means"], out["variances"], covariance_type
            ),
            method="cp",
            fit_error=float(cp.fit_error),
            condition=float(cp.condition),
            n_iter=int(cp.n_iter),
            converged=cp.n_iter < max_iter,
            finite_ambiguity=out["finite_ambiguity"],
            messages=tuple(messages),
        )
    gap = abs(task.targets[0][0] - task.observed[0])
    m2 = stats["sq"] / stats["n_tokens"]
    if "pairs" in stats:
        pairs = stats["pairs"]
        # L-BFGS from every start on at most _PAIR_BUDGET pairs, then the
        # best on all of them (Newton steps, one pass each)
        earlier, later = pairs.sample(_PAIR_BUDGET, rng)
        # observed tokens first: the k-means++ seeds depend on row order
        backward = task.targets[0][0] < task.observed[0]
        tokens = np.vstack([later, earlier] if backward else [earlier, later])
        mean, second = tokens.mean(axis=0), (tokens**2).mean(axis=0)
        spread = np.linalg.matrix_rank(
            tokens - mean, tol=1e-10 * (1 + np.abs(tokens).max())
        )
        if spread + 1 < k:
            messages.append(_rank_message(spread + 1, k))
            return _placeholder(mean, second, k, min_covar, covariance_type, messages)
        out = fit_gaussian_posterior(
            earlier,
            later,
            gap,
            k,
            m2=m2,
            init_means=_seed_means(tokens, k, n_init, rng),
            min_covar=min_covar,
            max_iter=max_iter,
            tol=tol,
            all_pairs=pairs if pairs.count > len(earlier) else None,
        )
        # the loss's quadratic model at the fit, summed over all pairs, with
        # its minimum at the fit (the optimum to within the sampling noise):
        # what partial_fit adds the next chunks' models to
        H, n = out["hessian"], stats["n"]
        stats.update(hessian=n * H, target=n * (H @ out["theta"]))
    else:
        # chunks combined by partial_fit: the minimiser of their summed
        # quadratic models (see _matching.posterior_quadratic)
        theta = solve_quadratic(stats["hessian"], stats["target"], stats["theta"])
        d = stats["offset"].shape[0]
        out = posterior_parameters(theta, k, d, m2, min_covar)
        out.update(theta=theta, loss=np.nan, n_iter=0, converged=True)
    # the fitted predictor: where the next chunk's quadratic model is taken
    stats["theta"] = out["theta"]
    return Extraction(
        model=_gaussian_model(
            out["transmat"],
            out["means"],
            np.full(out["means"].shape, out["variance"]),
            covariance_type,
        ),
        method="posterior",
        fit_error=out["loss"],
        condition=np.nan,
        n_iter=out["n_iter"],
        converged=out["converged"],
        finite_ambiguity=gap > 1,
        messages=tuple(messages),
    )


def _placeholder(mean, second, k, min_covar, covariance_type, messages):
    """A valid HMM that is honest about degenerate data.

    Every state emits the token mean with the token variance, and the chain
    is uniform: no state structure is claimed that the data do not show.
    """
    variances = np.tile(np.maximum(second - mean**2, min_covar), (k, 1))
    return Extraction(
        model=_gaussian_model(
            np.full((k, k), 1.0 / k), np.tile(mean, (k, 1)), variances, covariance_type
        ),
        method="degenerate",
        fit_error=np.nan,
        condition=np.nan,
        n_iter=0,
        converged=True,
        finite_ambiguity=False,
        messages=tuple(messages),
    )


def start_distribution(model, first, *, max_iter=500, tol=1e-12):
    """Initial-state distribution fitted to the first tokens of sequences.

    The maximum-likelihood mixture weights of the first tokens under the
    extracted emissions (EM on the weights alone, from the stationary
    distribution): the same quantity hmmlearn's ``startprob_`` estimates, from
    statistics that add up over chunks.

    Parameters
    ----------
    model : CategoricalHMMModel or GaussianHMMModel
    first : ndarray
        Categorical: counts of each symbol at sequence starts, ``(n_symbols,)``;
        Gaussian: the first tokens, ``(n_sequences, n_features)``.
    max_iter : int, default=500
    tol : float, default=1e-12
        Stop when no weight moves by more than this.

    Returns
    -------
    ndarray of shape (n_components,)
    """
    if isinstance(model, CategoricalHMMModel):
        likelihood, weights = model.emissionprob_.T, np.asarray(first, dtype=float)
    else:
        likelihood = model._emission_likelihood(np.asarray(first)[None])[0][0]
        weights = np.ones(len(likelihood))
    keep = weights > 0
    likelihood, weights = likelihood[keep], weights[keep] / weights[keep].sum()
    pi = model.startprob_
    for _ in range(max_iter):
        posterior = pi * likelihood
        posterior /= posterior.sum(axis=1, keepdims=True)
        new = weights @ posterior
        done = np.abs(new - pi).max() < tol
        pi = new
        if done:
            break
    return _project_rows(pi)[0]
