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
    # (k, n) layout: the softmax over k states reduces across k contiguous
    # rows, elementwise, instead of over k-wide rows (several times faster)
    XM = M @ X_in.T
    Z = s * XM + (np.log(pi) - 0.5 * s * sq_norms)[:, None]
    p = np.exp(Z - Z.max(axis=0))
    p /= p.sum(axis=0)
    Tg = np.linalg.matrix_power(transmat, gap)
    C = Tg @ M
    R = C.T @ p - Y.T
    value = 0.5 * np.sum(R * R) / n  # not vdot: it conjugates complex steps
    dY = R / n
    dC = p @ dY.T
    dp = C @ dY
    dZ = p * (dp - np.sum(p * dp, axis=0))
    db = dZ.sum(axis=1)
    dM = Tg.T @ dC + s * dZ @ X_in - s * db[:, None] * M
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


# Pairs on which the Newton steps' Hessian is taken by finite differences
# (2 * n_params gradient passes, so on a sample). A Hessian off in the loss's
# flat directions never moves the optimum but makes full Newton steps
# overshoot, and each halving of the step costs a pass over all pairs:
# measured at 1e7 tokens, 2e4 pairs took 38 passes, 1e5 pairs 13.
_HESSIAN_PAIRS = 100_000

# Damping of the Newton step that combines partial_fit chunks (see
# solve_quadratic): curvature floor (relative) and largest step.
_DAMPING, _MAX_STEP = 1e-2, 0.5

# L-BFGS iterations each start gets on the sample before the best continues.
_PROBE_ITER = 30


def _hessian(theta, X_in, Y, gap, k, m2, min_covar):
    """Hessian of :func:`_posterior_form_loss` on the first
    ``_HESSIAN_PAIRS`` pairs, by central differences of its analytic
    gradient, symmetrised."""
    X_in, Y = X_in[:_HESSIAN_PAIRS], Y[:_HESSIAN_PAIRS]
    P = len(theta)
    H = np.empty((P, P))
    for i in range(P):
        step = np.zeros(P)
        step[i] = 1e-5 * (1.0 + abs(theta[i]))
        up = _posterior_form_loss(theta + step, X_in, Y, gap, k, m2, min_covar)[1]
        down = _posterior_form_loss(theta - step, X_in, Y, gap, k, m2, min_covar)[1]
        H[i] = (up - down) / (2 * step[i])
    H = 0.5 * (H + H.T)
    # Adding a constant to a row of softmax logits changes nothing: those
    # gauge directions get the Hessian's largest curvature, so that no step
    # wanders along them (finite differences leave them slightly nonzero)
    G = np.zeros((P, k + 1))
    d = (P - k * k - k) // k
    for row in range(k):
        G[k * d + row * k : k * d + (row + 1) * k, row] = 1 / np.sqrt(k)
    G[k * d + k * k :, k] = 1 / np.sqrt(k)
    return H + np.abs(H).max() * (G @ G.T)


def _newton_solve(H, b, floor=1e-9):
    """``H^+ b`` with eigenvalues replaced by their magnitudes, floored at
    ``floor`` times the largest.

    Away from the optimum the loss may be concave along some directions:
    absolute values keep every step a descent direction (saddle-free
    Newton); the floor keeps near-zero curvatures from blowing it up.
    """
    w, V = np.linalg.eigh(H)
    w = np.maximum(np.abs(w), floor * max(np.abs(w).max(), 1e-300))
    return V @ ((V.T @ b) / w)


def _newton(theta, loss, hessian, *, ftol, max_steps):
    """Damped Newton descent on ``loss`` (``(value, gradient)``), monotone.

    Each step halves until the loss does not increase; stops when the
    relative gain falls below ``ftol``, a step cannot decrease the loss, or
    after ``max_steps`` steps. Returns ``(theta, value, n_steps,
    converged)``.
    """
    value, grad = loss(theta)
    for n_steps in range(1, max_steps + 1):
        direction = -_newton_solve(hessian(theta), grad)
        t = min(1.0, _MAX_STEP / max(np.abs(direction).max(), 1e-300))
        for _ in range(30):
            new_value, new_grad = loss(theta + t * direction)
            if new_value <= value:
                break
            t /= 2
        else:  # no decrease along the Newton direction: at the optimum
            return theta, value, n_steps, True
        gain = value - new_value
        theta, value, grad = theta + t * direction, new_value, new_grad
        if gain <= ftol * max(abs(value), 1.0):
            return theta, value, n_steps, True
    return theta, value, max_steps, False


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
    """Fit the tied posterior-form predictor ``E[x_{t+gap} | x_t]``.

    Every start runs ``_PROBE_ITER`` L-BFGS iterations on the pairs ``X_in,
    Y``; the best one converges there by L-BFGS, then, if they are a sample
    of ``all_pairs``, takes damped Newton steps on all pairs: each step is
    one pass over the data (chunk by chunk, bounded memory), with the
    Hessian of the sample (a few passes where L-BFGS, on a loss this flat
    along the trade-off between means and transitions, would take dozens).

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
        Cap on the L-BFGS iterations on the sample and on the Newton steps
        on all pairs.
    tol : float, default=1e-10
        L-BFGS ``ftol`` on the sample; the Newton steps stop at a relative
        gain of ``max(tol, 1 / n_pairs)`` (changes worth less than about a
        nat of likelihood are below the sampling noise).
    all_pairs : TokenPairs, default=None
        All the pairs, when ``X_in, Y`` are a sample of them.

    Returns
    -------
    dict with ``theta`` (the predictor's parameters), ``transmat``,
    ``means``, ``variance``, ``pi_weights``, ``loss``, ``n_iter`` (L-BFGS
    iterations and Newton steps), ``converged``, and the loss's mean
    ``hessian`` at ``theta`` (on the sample; see
    :func:`posterior_quadratic`).
    """
    k, d = init_means[0].shape
    args = (gap, k, m2, min_covar)
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
        args=(X_in, Y, *args),
        max_iter=_PROBE_ITER,
        tol=tol,
        gtol=1e-10,
    )
    # the best probe converges on the sample by L-BFGS; the rest of the way
    # to the optimum on all pairs is short and flat
    best = minimize(
        _posterior_form_loss,
        best.x,
        args=(X_in, Y, *args),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "ftol": tol, "gtol": 1e-10},
    )
    theta, value = best.x, best.fun
    n_iter, converged = _PROBE_ITER + best.nit, best.status != 1

    def hessian(theta):
        return _hessian(theta, X_in, Y, *args)

    if all_pairs is not None:
        theta, value, steps, converged = _newton(
            theta,
            lambda theta: _chunked_loss(theta, all_pairs, *args),
            hessian,
            ftol=max(tol, 1.0 / all_pairs.count),
            max_steps=max_iter,
        )
        n_iter += steps
    return {
        **posterior_parameters(theta, k, d, m2, min_covar),
        "theta": theta,
        "loss": float(value),
        "n_iter": int(n_iter),
        "converged": bool(converged),
        "hessian": hessian(theta),
    }


def posterior_parameters(theta, k, d, m2, min_covar):
    """``transmat``, ``means``, ``variance`` and ``pi_weights`` of the
    posterior-form parameters ``theta``."""
    M = theta[: k * d].reshape(k, d)
    pi = softmax_rows(theta[k * d + k * k :])
    variance = max((m2 - pi @ np.sum(M**2, axis=1)) / d, min_covar)
    return {
        "transmat": softmax_rows(theta[k * d : k * d + k * k].reshape(k, k)),
        "means": M,
        "variance": float(variance),
        "pi_weights": pi,
    }


def posterior_quadratic(theta, pairs, sample, gap, k, m2, min_covar):
    """The loss's quadratic model at ``theta``, summed over ``pairs``.

    ``hessian = n H`` and ``target = n (H theta - g)``, with ``g`` the mean
    gradient over all ``n`` pairs (one pass) and ``H`` the Hessian on the
    ``sample`` pairs. Quadratic models of several chunks add up; the sum's
    minimiser :func:`solve_quadratic` is one Newton step on the union from
    each chunk's point, so ``partial_fit`` can combine chunks it no longer
    holds.
    """
    H = _hessian(theta, *sample, gap, k, m2, min_covar)
    _, g = _chunked_loss(theta, pairs, gap, k, m2, min_covar)
    return {"hessian": pairs.count * H, "target": pairs.count * (H @ theta - g)}


def solve_quadratic(hessian, target, theta):
    """The minimiser of a summed quadratic model (see
    :func:`posterior_quadratic`), as one damped saddle-free Newton step from
    the last point ``theta`` where a model was taken (the model's gradient
    there is ``hessian @ theta - target``).

    The models come from Hessians of a sample, which are least reliable
    along the loss's flat directions (and may even curve down there): the
    curvature is floored at ``_DAMPING`` times the largest, and the step
    is kept within ``_MAX_STEP`` (standardised units), so a chunk moves the
    predictor where its data pin it and leaves it along the flat valley.
    """
    step = _newton_solve(hessian, hessian @ theta - target, floor=_DAMPING)
    return theta - step * min(1.0, _MAX_STEP / max(np.abs(step).max(), 1e-300))
