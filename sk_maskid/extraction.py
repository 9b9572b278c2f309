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
  read-outs are then polished under the task's own log-loss
  (:func:`polish_tensor_readout`, L-BFGS with a closed-form gradient).

* **Predictor matching** (every other task). The HMM's own optimal predictor
  is the parametric form of the masked predictor; the parameters are fitted
  to the learned predictor by L-BFGS (cross-entropy for categorical tables,
  squared loss on data for Gaussian pairs) from several starts. For tasks
  that do not identify the model this returns *one* HMM consistent with the
  predictor.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import tensorly as tl
from scipy.linalg import fractional_matrix_power
from scipy.optimize import minimize
from scipy.special import xlogy
from sklearn.utils import check_random_state
from tensorly.cp_tensor import CPTensor
from tensorly.decomposition import parafac

from .models import (
    _batched_task_expectation,
    _categorical_probe_emissions,
    _complex_step,
    _softmax_rows,
    _stationary,
    _stationary_system,
)

__all__ = ["CPResult", "cp_decompose", "project_simplex"]

CPResult = namedtuple(
    "CPResult", ["weights", "factors", "fit_error", "condition", "n_iter"]
)
CPResult.__doc__ = """Result of :func:`cp_decompose`.

weights : ndarray of shape (rank,)
factors : list of 3 ndarrays of shape (dim_m, rank)
fit_error : float
    Relative reconstruction error ``||W - W_hat|| / ||W||``.
condition : float
    Smallest singular value over the three factors after scaling every
    column to unit norm (1 for orthogonal factors, 0 for collinear ones).
n_iter : int
    ALS iterations of the kept start.
"""


def project_simplex(V):
    """Euclidean projection of each row of ``V`` onto the probability simplex.

    The sort-based algorithm of Duchi et al. (2008), vectorised over rows; no
    well-kept library exposes it, hence written here.

    Parameters
    ----------
    V : array-like of shape (n_rows, n)

    Returns
    -------
    ndarray of shape (n_rows, n)
    """
    V = np.atleast_2d(np.asarray(V, dtype=float))
    n = V.shape[1]
    U = -np.sort(-V, axis=1)
    css = np.cumsum(U, axis=1) - 1.0
    ind = np.arange(1, n + 1)
    rho = np.count_nonzero(U - css / ind > 0, axis=1)
    theta = css[np.arange(len(V)), rho - 1] / rho
    return np.maximum(V - theta[:, None], 0.0)


# --------------------------------------------------------------------------
# CP decomposition: Jennrich start, tensorly ALS refinement.
# --------------------------------------------------------------------------
def _jennrich(tensor, rank, rng):
    """Closed-form CP factors by simultaneous diagonalisation.

    Two random combinations of the mode-3 slices, ``Wa = A diag(C^T a) B^T``
    and ``Wb``, are projected on the leading singular subspaces of modes 1
    and 2; the eigenvectors of ``Ma Mb^-1`` give ``A``. Then each row of
    ``A^+ W`` is a rank-1 matrix ``B[:, h] C[:, h]^T`` (one SVD each).
    """
    I, J, K = tensor.shape
    U = np.linalg.svd(tensor.reshape(I, J * K), full_matrices=False)[0][:, :rank]
    V = np.linalg.svd(np.moveaxis(tensor, 1, 0).reshape(J, I * K), full_matrices=False)[
        0
    ][:, :rank]
    a, b = rng.standard_normal((2, K))
    Ma = U.T @ (tensor @ a) @ V
    Mb = U.T @ (tensor @ b) @ V
    vals, vecs = np.linalg.eig(Ma @ np.linalg.pinv(Mb))
    # Noise can turn two real eigenvalues into a conjugate pair; their real
    # and imaginary parts span the same plane, and keep A full rank.
    basis = np.real(vecs)
    pair = np.flatnonzero(vals.imag > 1e-12 * np.abs(vals).max())
    basis[:, pair] = np.real(vecs[:, pair])
    conj = [np.flatnonzero(np.isclose(vals, np.conj(vals[i])))[0] for i in pair]
    basis[:, conj] = np.imag(vecs[:, pair])
    A = U @ basis
    Z = np.einsum("hi,ijk->hjk", np.linalg.pinv(A), tensor)
    B = np.empty((J, rank))
    C = np.empty((K, rank))
    for h in range(rank):  # a loop over components, not over data
        u, s, vt = np.linalg.svd(Z[h], full_matrices=False)
        B[:, h] = u[:, 0] * s[0]
        C[:, h] = vt[0]
    return [A, B, C]


def _condition(factors):
    normalised = [f / np.linalg.norm(f, axis=0) for f in factors]
    return float(min(np.linalg.svd(f, compute_uv=False)[-1] for f in normalised))


def cp_decompose(tensor, rank, *, n_init=5, max_iter=500, tol=1e-12, random_state=None):
    """Rank-``rank`` CP decomposition of a 3-way tensor, best of ``n_init``.

    Each start is a Jennrich step on random slice combinations (random
    factors when ``rank`` exceeds a mode's dimension), refined by
    :func:`tensorly.decomposition.parafac` (ALS with line search).

    Parameters
    ----------
    tensor : ndarray of shape (I, J, K)
    rank : int
    n_init : int, default=5
        Number of starts; the one with the smallest reconstruction error is
        kept.
    max_iter : int, default=500
        ALS iterations per start.
    tol : float, default=1e-12
        ALS stopping tolerance on the change of reconstruction error.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    CPResult
    """
    rng = check_random_state(random_state)
    tensor = np.asarray(tensor, dtype=float)
    norm = np.linalg.norm(tensor)
    if norm == 0:
        raise ValueError("cannot decompose an all-zero tensor")
    best = None
    for _ in range(n_init):
        if rank <= min(tensor.shape[:2]):
            init = _jennrich(tensor, rank, rng)
        else:
            init = [rng.standard_normal((n, rank)) for n in tensor.shape]
        try:
            cp, errors = parafac(
                tl.tensor(tensor),
                rank,
                n_iter_max=max_iter,
                init=CPTensor((np.ones(rank), init)),
                tol=tol,
                # Line search extrapolates across ALS swamps: measured 184
                # iterations to tol=1e-10 instead of 500 without reaching it
                # (k=4, d=12, 1e6 tokens), at a lower residual.
                linesearch=True,
                random_state=rng,
                return_errors=True,
            )
        except np.linalg.LinAlgError:
            continue  # a degenerate start (collinear factors); try another
        if not all(np.all(np.isfinite(f)) for f in cp[1]):
            continue
        weights, factors = cp
        error = np.linalg.norm(tl.cp_to_tensor(cp) - tensor) / norm
        if best is None or error < best[0]:
            best = (
                error,
                np.asarray(weights),
                [np.asarray(f) for f in factors],
                len(errors),
            )
    if best is None:
        raise ValueError(
            f"the rank-{rank} CP decomposition failed from all {n_init} starts "
            "(singular normal equations): the data do not support this many "
            "components"
        )
    error, weights, factors, n_iter = best
    return CPResult(weights, factors, float(error), _condition(factors), n_iter)


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
    root is taken, a finite ambiguity (DESIGN.md, Claim 1).

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
    transmat = project_simplex(T_col.T)
    emissionprob = project_simplex(factors[1].T)
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
    transmat = project_simplex(T_col.T)
    means = factors[1][:-1].T
    pi = np.clip(w / w.sum(), 1e-12, None)
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
# Predictor matching (non-tensor tasks).
# --------------------------------------------------------------------------
_STEP = 1e-20  # complex step: exact derivatives, no cancellation


def _unpack(theta, k, d):
    """Batched ``theta (P, k*k + k*d)`` -> ``(startprob, transmat, emission)``.

    Softmax rows keep both matrices stochastic; the start is the stationary
    distribution (the windows are stationary).
    """
    P = theta.shape[0]
    transmat = _softmax_rows(theta[:, : k * k].reshape(P, k, k))
    emission = _softmax_rows(theta[:, k * k :].reshape(P, k, d))
    return _stationary(transmat), transmat, emission


def match_categorical_predictor(
    task,
    probes,
    targets,
    weights,
    n_components,
    n_symbols,
    *,
    n_init=5,
    max_iter=500,
    tol=1e-10,
    random_state=None,
):
    """Fit HMM parameters whose exact predictor matches a learned one.

    Minimises the input-frequency-weighted cross-entropy between the learned
    predictor and the HMM's exact predictor (``_task_expectation``) by
    L-BFGS with complex-step gradients, best of ``n_init`` random starts.

    Parameters
    ----------
    task : MaskedTask
    probes : ndarray of shape (n_probes, span)
        Observed symbols at the task's observed positions, -1 elsewhere.
    targets : ndarray of shape (n_probes, target_dim)
        The learned predictor at each probe.
    weights : ndarray of shape (n_probes,)
        Frequency of each probe (sums to 1).

    Returns
    -------
    dict with ``startprob``, ``transmat``, ``emissionprob``, ``loss`` (the
    excess cross-entropy over the learned predictor's entropy).
    """
    rng = check_random_state(random_state)
    k, d = n_components, n_symbols
    log_targets = np.log(np.where(targets > 0, targets, 1.0))
    entropy = -np.sum(weights[:, None] * targets * log_targets)

    def loss(theta_batch):
        startprob, transmat, emission = _unpack(theta_batch, k, d)
        pred = _batched_task_expectation(
            startprob,
            transmat,
            _categorical_probe_emissions(emission, probes),
            emission,
            task,
        )
        log_pred = np.log(pred + 1e-300)
        return -np.einsum("n,nc,pnc->p", weights, targets, log_pred) - entropy

    starts = [rng.standard_normal(k * k + k * d) * 0.5 for _ in range(n_init)]
    best = None
    for theta0 in starts:
        res = minimize(
            lambda th: _complex_step(loss, th, _STEP),
            theta0,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": max_iter, "ftol": tol, "gtol": 1e-9},
        )
        if best is None or res.fun < best.fun:
            best = res
    startprob, transmat, emission = (a[0].real for a in _unpack(best.x[None], k, d))
    return {
        "startprob": startprob,
        "transmat": transmat,
        "emissionprob": emission,
        "loss": float(best.fun),
        "n_iter": int(best.nit),
    }


def _stationary_grad(transmat, pi, dpi):
    """Gradient through :func:`_stationary`'s linear solve ``A pi = e_k``.

    ``dL/dA = -lam pi^T`` with ``A^T lam = dL/dpi``, and ``A[r, s] = T[s, r]``
    on every row but the last (the normalisation row).
    """
    A = _stationary_system(transmat)
    dA = -np.outer(np.linalg.solve(A.T, dpi), pi)
    dA[-1, :] = 0.0
    return dA.T


def _softmax_rows_grad(P, dP):
    """Pull a gradient on row-softmax outputs ``P`` back to their logits."""
    return P * (dP - np.sum(dP * P, axis=-1, keepdims=True))


def _triple_loss(theta, table, observed, gaps, k, d, entropy):
    """Excess log-loss of a tensor task's predictor, with its gradient.

    ``table`` is the joint frequency table of positions ``s1 < s2 < s3``
    (``gaps = (s2 - s1, s3 - s2)``) and the predictor is the conditional of
    the two target tokens given the observed one, whose marginal frequencies
    are ``observed``. The HMM's
    table is ``sum_h A[:, h] ⊗ B[:, h] ⊗ C[:, h]`` with
    ``A = O^T diag(pi) T^g1``, ``B = O^T``, ``C = (T^g2 O)^T``, so the loss
    is ``-sum W log J + sum W_obs log(pi^T O) - entropy``: the same number
    :func:`match_categorical_predictor` minimises for this task. Written with
    a reverse-mode gradient because complex steps cost one evaluation per
    parameter (measured 7 ms against 0.3 ms per gradient at k=4, d=12).
    """
    g1, g2 = gaps
    transmat = _softmax_rows(theta[: k * k].reshape(k, k))
    emission = _softmax_rows(theta[k * k :].reshape(k, d))
    pi = _stationary(transmat)
    P1 = np.linalg.matrix_power(transmat, g1)
    P2 = np.linalg.matrix_power(transmat, g2)
    A = emission.T @ (pi[:, None] * P1)
    B = emission.T
    C = (P2 @ emission).T
    J = np.maximum(np.einsum("ah,bh,ch->abc", A, B, C), 1e-300)
    marginal = pi @ emission
    value = (
        -np.sum(table * np.log(J))
        + np.sum(observed * np.log(np.maximum(marginal, 1e-300)))
        - entropy
    )
    G = -table / J
    dA = np.einsum("abc,bh,ch->ah", G, B, C)
    dB = np.einsum("abc,ah,ch->bh", G, A, C)
    dC = np.einsum("abc,ah,bh->ch", G, A, B)
    dm = observed / np.maximum(marginal, 1e-300)
    OdA = emission @ dA
    d_emission = pi[:, None] * (P1 @ dA.T) + dB.T + P2.T @ dC.T + np.outer(pi, dm)
    dpi = np.sum(OdA * P1, axis=1) + emission @ dm
    d_trans = (
        _matrix_power_grad(transmat, g1, pi[:, None] * OdA)
        + _matrix_power_grad(transmat, g2, dC.T @ emission.T)
        + _stationary_grad(transmat, pi, dpi)
    )
    grad = np.concatenate(
        [
            _softmax_rows_grad(transmat, d_trans).ravel(),
            _softmax_rows_grad(emission, d_emission).ravel(),
        ]
    )
    return value, grad


def polish_tensor_readout(
    table, positions, observed, transmat, emissionprob, *, max_iter=500, tol=1e-10
):
    """Polish a tensor-route read-out under the task's own log-loss.

    The objective is the excess cross-entropy that
    :func:`match_categorical_predictor` minimises, restricted to tensor tasks,
    where its gradient has a closed form; L-BFGS runs from the CP read-out,
    whose basin it keeps.

    Parameters
    ----------
    table : ndarray of shape (d, d, d)
        Joint frequencies of the task's positions (sums to 1).
    positions : tuple of 3 int
        Sorted positions ``s1 < s2 < s3``.
    observed : int
        The observed position (one of ``positions``).
    transmat : ndarray of shape (k, k)
    emissionprob : ndarray of shape (k, d)
        The start, with entries floored away from 0.

    Returns
    -------
    dict with ``startprob``, ``transmat``, ``emissionprob``, ``loss``,
    ``n_iter``.
    """
    k, d = emissionprob.shape
    s1, s2, s3 = positions
    axis = positions.index(observed)
    observed_freq = table.sum(axis=tuple(a for a in range(3) if a != axis))
    # conditional entropy of the table: the loss is reported in excess of it
    entropy = xlogy(observed_freq, observed_freq).sum() - xlogy(table, table).sum()
    theta0 = np.concatenate([np.log(transmat).ravel(), np.log(emissionprob).ravel()])
    res = minimize(
        _triple_loss,
        theta0,
        args=(table, observed_freq, (s2 - s1, s3 - s2), k, d, entropy),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "ftol": tol, "gtol": 1e-9},
    )
    transmat = _softmax_rows(res.x[: k * k].reshape(k, k))
    emission = _softmax_rows(res.x[k * k :].reshape(k, d))
    return {
        "startprob": _stationary(transmat),
        "transmat": transmat,
        "emissionprob": emission,
        "loss": float(res.fun),
        "n_iter": int(res.nit),
    }


def _matrix_power_grad(A, g, dP):
    """Gradient of ``A^g`` contracted with ``dP``: sum_i (A^i)^T dP (A^{g-1-i})^T."""
    powers = [np.eye(len(A))]
    for _ in range(g - 1):
        powers.append(powers[-1] @ A)
    return sum(powers[i].T @ dP @ powers[g - 1 - i].T for i in range(g))


def _posterior_form_loss(params, X_in, Y, gap, k, m2):
    """Squared loss of the tied posterior-form predictor and its gradient.

    ``f(x) = softmax(M x / s2 + b) T^gap M`` with
    ``b_h = log pi_h - ||mu_h||^2 / (2 s2)`` (DESIGN.md section 2). The
    variance ``s2`` is pinned by the second moment,
    ``d s2 = E||x||^2 - sum_h pi_h ||mu_h||^2``, which removes the
    one-parameter family the predictor alone leaves when ``s2`` is free.
    Written with an analytic gradient (one pass over the data per call)
    because complex steps would cost one pass per parameter.
    """
    n, d = X_in.shape
    M = params[: k * d].reshape(k, d)
    beta = params[k * d : k * d + k * k].reshape(k, k)
    alpha = params[k * d + k * k :]
    transmat = _softmax_rows(beta)
    pi = _softmax_rows(alpha)
    sq_norms = np.sum(M**2, axis=1)
    s2 = (m2 - pi @ sq_norms) / d
    floor = 1e-3
    clamped = s2 < floor
    s2 = max(s2, floor)
    s = 1.0 / s2
    XM = X_in @ M.T
    Z = s * XM + np.log(pi) - 0.5 * s * sq_norms
    p = _softmax_rows(Z)
    Tg = np.linalg.matrix_power(transmat, gap)
    C = Tg @ M
    R = p @ C - Y
    value = 0.5 * np.sum(R**2) / n
    dY = R / n
    dC = p.T @ dY
    dp = dY @ C.T
    dZ = p * (dp - np.sum(p * dp, axis=1, keepdims=True))
    db = dZ.sum(axis=0)
    dM = Tg.T @ dC + s * dZ.T @ X_in - s * db[:, None] * M
    ds = np.sum(dZ * XM) - 0.5 * db @ sq_norms
    dpi = db / pi
    if not clamped:
        ds2 = -ds * s**2
        dM += ds2 * (-2.0 * pi[:, None] * M / d)
        dpi += ds2 * (-sq_norms / d)
    dtrans = _matrix_power_grad(transmat, gap, dC @ M.T)
    dbeta = _softmax_rows_grad(transmat, dtrans)
    dalpha = _softmax_rows_grad(pi, dpi)
    return value, np.concatenate([dM.ravel(), dbeta.ravel(), dalpha])


def fit_gaussian_posterior(
    X_in, Y, gap, n_components, *, m2, init_means, max_iter=500, tol=1e-10
):
    """Fit the tied posterior-form predictor ``E[x_{t+gap} | x_t]`` by L-BFGS.

    Parameters
    ----------
    X_in, Y : ndarray of shape (n_pairs, n_features)
        Observed tokens and the tokens ``gap`` steps later.
    gap : int
        Time offset of the target (>= 1).
    n_components : int
    m2 : float
        ``E||x||^2`` over tokens (pins the variance).
    init_means : list of ndarray of shape (n_components, n_features)
        One start per entry (e.g. k-means++ seeds).

    Returns
    -------
    dict with ``transmat``, ``means``, ``variance``, ``pi_weights``,
    ``loss`` for the best start.
    """
    k, d = init_means[0].shape
    best = None
    for means0 in init_means:
        # A uniform T makes the predictor constant in x (a saddle where the
        # posterior gets no gradient): start T from nearest-mean transitions.
        a = np.argmin(((X_in[:, None, :] - means0) ** 2).sum(-1), axis=1)
        b = np.argmin(((Y[:, None, :] - means0) ** 2).sum(-1), axis=1)
        trans = np.bincount(a * k + b, minlength=k * k).reshape(k, k) + 1.0
        trans = trans / trans.sum(axis=1, keepdims=True)
        pi0 = np.bincount(a, minlength=k) + 1.0
        params0 = np.concatenate(
            [means0.ravel(), np.log(trans).ravel(), np.log(pi0 / pi0.sum())]
        )
        res = minimize(
            _posterior_form_loss,
            params0,
            args=(X_in, Y, gap, k, m2),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": max_iter, "ftol": tol, "gtol": 1e-10},
        )
        if best is None or res.fun < best.fun:
            best = res
    M = best.x[: k * d].reshape(k, d)
    transmat = _softmax_rows(best.x[k * d : k * d + k * k].reshape(k, k))
    pi = _softmax_rows(best.x[k * d + k * k :])
    variance = max((m2 - pi @ np.sum(M**2, axis=1)) / d, 1e-3)
    return {
        "transmat": transmat,
        "means": M,
        "variance": float(variance),
        "pi_weights": pi,
        "loss": float(best.fun),
        "n_iter": int(best.nit),
    }
