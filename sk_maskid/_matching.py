"""Fitting HMM parameters to a learned predictor by L-BFGS ("matching").

The HMM's exact optimal predictor is the parametric form of the masked
predictor, so the parameters can be fitted to a learned predictor directly:

* :func:`match_categorical_predictor`: any categorical task, cross-entropy
  against the learned conditional table, complex-step gradients;
* :func:`polish_tensor_readout`: the same loss for tensor tasks, from the CP
  read-out, with a closed-form reverse-mode gradient;
* :func:`fit_gaussian_posterior`: the tied posterior form of a one-token
  Gaussian task, squared loss on token pairs, analytic gradient.

All three run scipy's L-BFGS-B through :func:`_best_of_starts`.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import xlogy
from sklearn.utils import check_random_state

from ._hmm import (
    STEP,
    batched_task_expectation,
    categorical_probe_emissions,
    complex_step,
    softmax_rows,
    stationary,
    stationary_system,
)

__all__ = [
    "fit_gaussian_posterior",
    "match_categorical_predictor",
    "polish_tensor_readout",
]


def _best_of_starts(fun, starts, *, args=(), max_iter, tol, gtol):
    """L-BFGS-B from each start; the result with the lowest value.

    ``fun`` returns ``(value, gradient)``.
    """
    best = None
    for x0 in starts:
        res = minimize(
            fun,
            x0,
            args=args,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": max_iter, "ftol": tol, "gtol": gtol},
        )
        if best is None or res.fun < best.fun:
            best = res
    return best


def _unpack(theta, k, d):
    """Batched ``theta (P, k*k + k*d)`` -> ``(startprob, transmat, emission)``.

    Softmax rows keep both matrices stochastic; the start is the stationary
    distribution (the windows are stationary).
    """
    P = theta.shape[0]
    transmat = softmax_rows(theta[:, : k * k].reshape(P, k, k))
    emission = softmax_rows(theta[:, k * k :].reshape(P, k, d))
    return stationary(transmat), transmat, emission


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
    predictor and the HMM's exact predictor (``task_expectation``) by
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
        pred = batched_task_expectation(
            startprob,
            transmat,
            categorical_probe_emissions(emission, probes),
            emission,
            task,
        )
        log_pred = np.log(pred + 1e-300)
        return -np.einsum("n,nc,pnc->p", weights, targets, log_pred) - entropy

    starts = [rng.standard_normal(k * k + k * d) * 0.5 for _ in range(n_init)]
    best = _best_of_starts(
        lambda th: complex_step(loss, th, STEP),
        starts,
        max_iter=max_iter,
        tol=tol,
        gtol=1e-9,
    )
    return _categorical_result(best, k, d)


def _categorical_result(res, k, d):
    """The HMM of a categorical L-BFGS result (row-softmax logits) and its record."""
    transmat = softmax_rows(res.x[: k * k].reshape(k, k))
    emission = softmax_rows(res.x[k * k :].reshape(k, d))
    return {
        "startprob": stationary(transmat),
        "transmat": transmat,
        "emissionprob": emission,
        "loss": float(res.fun),
        "n_iter": int(res.nit),
        "converged": bool(res.status != 1),  # 1: stopped at maxiter
    }


def _stationary_grad(transmat, pi, dpi):
    """Gradient through :func:`stationary`'s linear solve ``A pi = e_k``.

    ``dL/dA = -lam pi^T`` with ``A^T lam = dL/dpi``, and ``A[r, s] = T[s, r]``
    on every row but the last (the normalisation row).
    """
    A = stationary_system(transmat)
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
    transmat = softmax_rows(theta[: k * k].reshape(k, k))
    emission = softmax_rows(theta[k * k :].reshape(k, d))
    pi = stationary(transmat)
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
    res = _best_of_starts(
        _triple_loss,
        [theta0],
        args=(table, observed_freq, (s2 - s1, s3 - s2), k, d, entropy),
        max_iter=max_iter,
        tol=tol,
        gtol=1e-9,
    )
    return _categorical_result(res, k, d)


def _matrix_power_grad(A, g, dP):
    """Gradient of ``A^g`` contracted with ``dP``: sum_i (A^i)^T dP (A^{g-1-i})^T."""
    powers = [np.eye(len(A))]
    for _ in range(g - 1):
        powers.append(powers[-1] @ A)
    return sum(powers[i].T @ dP @ powers[g - 1 - i].T for i in range(g))


def _posterior_form_loss(params, X_in, Y, gap, k, m2, min_covar):
    """Squared loss of the tied posterior-form predictor and its gradient.

    ``f(x) = softmax(M x / s2 + b) T^gap M`` with ``b_h = log pi_h - ||mu_h||^2 / (2
    s2)`` (see the Theory page of the documentation). The variance ``s2`` is pinned by
    the second moment, ``d s2 = E||x||^2 - sum_h pi_h ||mu_h||^2``, which removes the
    one-parameter family the predictor alone leaves when ``s2`` is free; it is floored
    at ``min_covar``. Written with an analytic gradient (one pass over the data per
    call) because complex steps would cost one pass per parameter.
    """
    n, d = X_in.shape
    M = params[: k * d].reshape(k, d)
    beta = params[k * d : k * d + k * k].reshape(k, k)
    alpha = params[k * d + k * k :]
    transmat = softmax_rows(beta)
    pi = softmax_rows(alpha)
    sq_norms = np.sum(M**2, axis=1)
    s2 = (m2 - pi @ sq_norms) / d
    clamped = s2 < min_covar
    s2 = max(s2, min_covar)
    s = 1.0 / s2
    XM = X_in @ M.T
    Z = s * XM + np.log(pi) - 0.5 * s * sq_norms
    p = softmax_rows(Z)
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


def _chunked_loss(params, pairs, gap, k, m2, min_covar):
    """:func:`_posterior_form_loss` over all of ``pairs``, chunk by chunk.

    The loss and its gradient are means over pairs: each chunk's are
    weighted by its share.
    """
    value, grad = 0.0, 0.0
    for earlier, later in pairs.chunks():
        if len(earlier):
            v, g = _posterior_form_loss(params, earlier, later, gap, k, m2, min_covar)
            share = len(earlier) / pairs.count
            value, grad = value + share * v, grad + share * g
    return value, grad


def fit_gaussian_posterior(
    X_in,
    Y,
    gap,
    n_components,
    *,
    m2,
    init_means,
    min_covar=1e-3,
    max_iter=500,
    tol=1e-10,
    all_pairs=None,
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
    min_covar : float, default=1e-3
        Floor on the shared variance, during the fit and in the result.
    max_iter : int, default=500
        L-BFGS iterations per start.
    tol : float, default=1e-10
        L-BFGS ``ftol``.
    all_pairs : TokenPairs, default=None
        If ``X_in, Y`` are a sample of these, the best start then continues
        on all of them, the loss summed chunk by chunk (bounded memory), to
        ``ftol = max(tol, 0.01 / count)``: mean squared errors closer than
        that are far below the sampling noise.

    Returns
    -------
    dict with ``transmat``, ``means``, ``variance``, ``pi_weights``,
    ``loss`` and ``n_iter`` for the best start.
    """
    k, d = init_means[0].shape
    starts = []
    for means0 in init_means:
        # A uniform T makes the predictor constant in x (a saddle where the
        # posterior gets no gradient): start T from nearest-mean transitions.
        a = np.argmin(((X_in[:, None, :] - means0) ** 2).sum(-1), axis=1)
        b = np.argmin(((Y[:, None, :] - means0) ** 2).sum(-1), axis=1)
        trans = np.bincount(a * k + b, minlength=k * k).reshape(k, k) + 1.0
        trans = trans / trans.sum(axis=1, keepdims=True)
        pi0 = np.bincount(a, minlength=k) + 1.0
        starts.append(
            np.concatenate(
                [means0.ravel(), np.log(trans).ravel(), np.log(pi0 / pi0.sum())]
            )
        )
    best = _best_of_starts(
        _posterior_form_loss,
        starts,
        args=(X_in, Y, gap, k, m2, min_covar),
        max_iter=max_iter,
        tol=tol,
        gtol=1e-10,
    )
    if all_pairs is not None:
        n_iter = best.nit
        best = minimize(
            _chunked_loss,
            best.x,
            args=(all_pairs, gap, k, m2, min_covar),
            jac=True,
            method="L-BFGS-B",
            options={
                "maxiter": max_iter,
                "ftol": max(tol, 0.01 / all_pairs.count),
                "gtol": 1e-10,
            },
        )
        best.nit += n_iter
    M = best.x[: k * d].reshape(k, d)
    transmat = softmax_rows(best.x[k * d : k * d + k * k].reshape(k, k))
    pi = softmax_rows(best.x[k * d + k * k :])
    variance = max((m2 - pi @ np.sum(M**2, axis=1)) / d, min_covar)
    return {
        "transmat": transmat,
        "means": M,
        "variance": float(variance),
        "pi_weights": pi,
        "loss": float(best.fun),
        "n_iter": int(best.nit),
        "converged": bool(best.status != 1),  # 1: stopped at maxiter
    }
