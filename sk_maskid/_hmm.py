"""Numerical kernels of the HMM: scaled recursions, exact task predictors.

Everything here is plain arithmetic, so it runs on complex parameters too:
the identifiability check and predictor matching differentiate these
functions by the complex-step method (:func:`complex_step`), which is exact
to rounding. Vectorised over sequences; the only loops run over time steps.
"""

from __future__ import annotations

import numpy as np

# Complex step: exact first derivatives, no cancellation, for any step small
# enough that O(step^2) terms vanish in double precision.
STEP = 1e-20

# Relative singular-value threshold below which a rank counts a direction as
# zero (Jacobian ranks, unfolding ranks of moment tensors).
RANK_RTOL = 1e-10


def _vecmat(a, M):
    """Row vectors times matrices: ``a (n, k)`` with ``M (k, m)`` or ``(G, k, m)``.

    A batch of ``G`` matrices applies to ``G`` consecutive equal groups of
    rows; ``G = n`` gives every row its own, which is how the complex-step
    derivatives evaluate many perturbations at once. Fewer groups (the
    copies of the data under each of several models) stay one BLAS product
    per group.
    """
    if M.ndim == 2:
        return a @ M
    if len(M) == len(a):
        return np.einsum("nk,nkm->nm", a, M)
    return (a.reshape(len(M), -1, a.shape[-1]) @ M).reshape(len(a), -1)


def per_row(parameters, n):
    """Per-group ``parameters`` (``(G, ...)``) as one entry per row of ``n``;
    a single vector (shared by all rows) as it is."""
    if parameters.ndim == 1 or len(parameters) == n:
        return parameters
    return np.repeat(parameters, n // len(parameters), axis=0)


def forward(startprob, transmat, B, starts=None, initial=None):
    """Scaled forward pass.

    Returns ``alpha`` (each row sums to 1) and the scaling factors ``c`` with
    ``log p(x) = sum(log c)``. ``B[n, t, i]`` is the (scaled) emission
    likelihood, 1 for a masked token. ``startprob`` may be ``(k,)`` or
    ``(G, k)`` and ``transmat`` ``(k, k)`` or ``(G, k, k)``: the rows in
    ``G`` consecutive equal groups, one set of parameters each (``G = n``:
    every row its own). ``starts``
    (boolean ``(n, length)``) marks where a new sequence begins inside a row
    (several sequences packed in one lane): the chain restarts there from
    ``startprob``. ``initial`` (``(n, k)``), if given, replaces
    ``startprob`` at each row's first position only: the predictive
    distribution of a row that continues a sequence cut before it.
    """
    n, length, k = B.shape
    dtype = np.result_type(startprob, transmat, B)
    startprob = per_row(startprob, n)
    alpha = np.empty((n, length, k), dtype=dtype)
    c = np.empty((n, length), dtype=dtype)
    restarts = _restarts(starts, length)
    a = (startprob if initial is None else initial) * B[:, 0]
    for t in range(length):
        if t:
            a = _vecmat(alpha[:, t - 1], transmat)
            if restarts[t]:  # few rows begin a sequence here: assign, not where
                begin = starts[:, t]
                a[begin] = startprob if startprob.ndim == 1 else startprob[begin]
            a *= B[:, t]
        total = a.sum(axis=1)
        c[:, t] = total
        # An impossible observation gives c = 0 (log-likelihood -inf); keep
        # the recursion finite instead of spreading NaN.
        np.divide(a, np.where(total == 0, 1.0, total)[:, None], out=alpha[:, t])
    return alpha, c


def backward(transmat, B, c, starts=None, last=None):
    """Scaled backward pass matching :func:`forward`'s scaling.

    With ``starts``, a token followed by a sequence start ends its sequence:
    its ``beta`` is 1. ``last`` (``(n, k)``), if given, is each row's
    ``beta`` at its last position (a sequence cut after it), 1 otherwise.
    """
    n, length, k = B.shape
    beta = np.empty((n, length, k), dtype=np.result_type(c, transmat, B))
    beta[:, -1] = 1.0 if last is None else last
    transposed = np.swapaxes(transmat, -1, -2)
    scaled = B / np.where(c == 0, 1.0, c)[..., None]
    restarts = _restarts(starts, length)
    for t in range(length - 2, -1, -1):
        beta[:, t] = _vecmat(scaled[:, t + 1] * beta[:, t + 1], transposed)
        if restarts[t + 1]:
            beta[starts[:, t + 1], t] = 1.0
    return beta


def _restarts(starts, length):
    """Positions where some row begins a sequence (the rest skip the test)."""
    if starts is None:
        return np.zeros(length, dtype=bool)
    return starts.any(axis=0)


def transfer(startprob, transmat, B, starts=None):
    """Each row's forward map from the state before it to its last state.

    Returns ``F`` (``(n, k, k)``, rows summing to 1) and ``log_g``
    (``(n, k)``) with ``P(x_row, h_last = j | h_before = i) = exp(log_g[n,
    i]) F[n, i, j]``: the forward pass run from each of the ``k`` states at
    once. A sequence start inside the row (``starts``) restarts every one of
    them from ``startprob``. Rows cut from one long sequence chain through
    these ``k x k`` maps, which is what lets :func:`forward` and
    :func:`backward` run on short rows instead of looping over the whole
    sequence. Parameters as in :func:`forward` (one set, or one per group
    of rows).
    """
    n, length, k = B.shape
    # per-row parameters broadcast against the (n, from, to) maps
    startprob = per_row(startprob, n)
    start_rows = startprob if startprob.ndim == 1 else startprob[:, None, :]
    first = transmat if transmat.ndim == 2 else per_row(transmat, n)
    if starts is not None:
        first = np.where(starts[:, 0, None, None], start_rows, first)
    a = first * B[:, 0, None, :]
    log_g = np.zeros((n, k))
    restarts = _restarts(starts, length)
    for t in range(1, length):
        # one BLAS product for the k starts of all rows (of each group)
        a = (
            a.reshape(-1, k) @ transmat
            if transmat.ndim == 2
            else a.reshape(len(transmat), -1, k) @ transmat
        ).reshape(n, k, k)
        if restarts[t]:  # keep the mass of the stretch since the rescale
            begin = starts[:, t]
            restart = start_rows if startprob.ndim == 1 else start_rows[begin]
            a[begin] = restart * a[begin].sum(axis=2, keepdims=True)
        a *= B[:, t, None, :]
        if t % _RESCALE_EVERY == 0:
            a = _rescale(a, log_g)
    return _rescale(a, log_g), log_g


# Steps between rescalings of the transfer maps: emission likelihoods are at
# least the probability floor (1e-6 and up), so 8 unscaled steps stay far
# above the smallest double.
_RESCALE_EVERY = 8


def _rescale(a, log_g):
    """Rows of ``a`` normalised to sum 1, their log-sums added to ``log_g``."""
    total = a.sum(axis=2)
    with np.errstate(divide="ignore"):
        log_g += np.log(total)
    return a / np.where(total == 0, 1.0, total)[..., None]


def smooth(startprob, transmat, B):
    """Forward-backward: ``alpha``, ``beta``, ``c`` and the posteriors ``gamma``.

    ``gamma[n, t, i] = P(h_t = i | observed tokens)``, renormalised per step.
    """
    alpha, c = forward(startprob, transmat, B)
    beta = backward(transmat, B, c)
    gamma = alpha * beta
    gamma /= gamma.sum(axis=2, keepdims=True)
    return alpha, beta, c, gamma


def softmax_rows(Z):
    """Row-wise softmax, stable for complex-step arguments (real-part shift)."""
    Z = Z - np.real(Z).max(axis=-1, keepdims=True)
    E = np.exp(Z)
    return E / E.sum(axis=-1, keepdims=True)


def complex_step(function, theta, step):
    """Value at ``theta`` and exact Jacobian of a batched analytic map.

    ``function`` maps a batch of parameter vectors ``(P, n)`` to outputs
    ``(P, ...)``; the base point and its ``n`` imaginary perturbations go
    through in one batch. Returns ``(f(theta), J)`` with ``J`` of shape
    ``f.shape + (n,)``; no subtraction, so no cancellation error.
    """
    n = theta.size
    batch = np.vstack([theta[None, :] + 0j, theta[None, :] + 1j * step * np.eye(n)])
    values = function(batch)
    return values[0].real, np.moveaxis(values[1:].imag / step, 0, -1)


def _expand(a, ndim):
    """Reshape ``(n, ...)`` so its trailing axes line up with an ndim array."""
    return a.reshape(a.shape[:1] + (1,) * (ndim - a.ndim) + a.shape[1:])


def joint_posterior(transmat, B, alpha, beta, c, positions):
    """``P(h_{p_1}, ..., h_{p_m} | observed)`` for sorted 0-based positions.

    Returns an array of shape ``(n, k, ..., k)`` (one axis per position). The
    chain between consecutive positions is propagated with the emissions in
    between, rescaled by the forward factors so long gaps stay finite.
    """
    n, _, k = B.shape
    joint = alpha[:, positions[0]]  # (n, k)
    for p, q in zip(positions[:-1], positions[1:], strict=True):
        # carry[n, i, j] = P(h_q = j, x_{p+1..q} | h_p = i) / prod c
        carry = np.broadcast_to(np.eye(k, dtype=c.dtype), (n, k, k))
        for t in range(p + 1, q + 1):
            carry = (carry @ transmat) * (B[:, t] / c[:, t, None])[:, None, :]
        joint = joint[..., None] * _expand(carry, joint.ndim + 1)
    joint = joint * _expand(beta[:, positions[-1]], joint.ndim)
    total = joint.reshape(n, -1).sum(axis=1)
    return joint / _expand(total, joint.ndim)


def task_expectation(startprob, transmat, B, token_means, task):
    """Exact ``E[target | observed]`` for windows already masked to the task.

    ``B`` has shape ``(n, span, k)`` with 1 at every non-observed position;
    ``token_means[i]`` is ``E[x_t | h_t = i]`` (a row of ``emissionprob_`` or
    ``means_``), shape ``(k, D)`` or batched ``(n, k, D)``. Targets are
    flattened row-major in spelled order and concatenated.
    """
    alpha, c = forward(startprob, transmat, B)
    beta = backward(transmat, B, c)
    n = B.shape[0]
    contract = "nh...,hd->n...d" if token_means.ndim == 2 else "nh...,nhd->n...d"
    outputs = []
    for target in task.targets:
        order = sorted(target)
        zero_based = [p - 1 for p in order]
        if len(target) == 1:
            posterior = alpha[:, zero_based[0]] * beta[:, zero_based[0]]
            outputs.append(_vecmat(posterior, token_means))
            continue
        joint = joint_posterior(transmat, B, alpha, beta, c, zero_based)
        # Put the hidden axes in spelled order, then contract each in turn
        # with the means (the feature axes accumulate at the end).
        out = np.moveaxis(
            joint, [1 + order.index(p) for p in target], range(1, len(target) + 1)
        )
        for _ in target:
            out = np.einsum(contract, out, token_means)
        outputs.append(out.reshape(n, -1))
    return np.concatenate(outputs, axis=1)


def batched_task_expectation(startprob, transmat, B, token_means, task):
    """:func:`task_expectation` for ``P`` parameter sets at once.

    ``startprob (P, k)``, ``transmat (P, k, k)``, ``token_means (P, k, D)``
    and ``B (P, n, span, k)``; returns ``(P, n, target_dim)``. Used for
    complex-step derivatives, one perturbation per parameter set.
    """
    P, n = B.shape[:2]
    out = task_expectation(
        np.repeat(startprob, n, axis=0),
        np.repeat(transmat, n, axis=0),
        B.reshape((P * n,) + B.shape[2:]),
        np.repeat(token_means, n, axis=0),
        task,
    )
    return out.reshape(P, n, -1)


def categorical_probe_emissions(emission, probes):
    """``B[p, n, t, i] = emission[p, i, probes[n, t]]``, 1 where a probe is -1."""
    B = np.swapaxes(emission, 1, 2)[:, np.maximum(probes, 0)]
    return np.where((probes >= 0)[None, :, :, None], B, 1.0)


def stationary_system(transmat):
    """``A`` with ``A pi = e_k``: ``T^T - I`` with its last row set to ones.

    One balance equation is replaced by the normalisation. Shared by
    :func:`stationary` and the gradient through it.
    """
    A = np.swapaxes(transmat, -1, -2) - np.eye(transmat.shape[-1])
    A[..., -1, :] = 1.0
    return A


def stationary(transmat):
    """Stationary distribution by a linear solve (complex-step safe).

    ``transmat`` may be ``(k, k)`` or a batch ``(n, k, k)``.
    """
    A = stationary_system(transmat)
    b = np.zeros(A.shape[:-1] + (1,), dtype=A.dtype)
    b[..., -1, 0] = 1.0
    return np.linalg.solve(A, b)[..., 0]


def viterbi(log_startprob, log_transmat, log_B, lengths):
    """Most probable hidden path of each sequence, vectorised over sequences.

    ``log_B[n, t, i]`` is the log emission likelihood (0 for a masked token,
    which the path still crosses); sequence ``n`` ends after ``lengths[n]``
    tokens. Returns the path log-probabilities ``(n,)`` (``log p(x, h*)``)
    and the states ``(n, T)``, -1 past each sequence's end. Ties go to the
    lowest state, as in hmmlearn.
    """
    n, T, k = log_B.shape
    rows = np.arange(n)
    delta = log_startprob + log_B[:, 0]
    back = np.zeros((n, T, k), dtype=np.intp)
    for t in range(1, T):
        scores = delta[:, :, None] + log_transmat  # (n, from, to)
        back[:, t] = scores.argmax(axis=1)
        step = scores.max(axis=1) + log_B[:, t]
        delta = np.where((t < lengths)[:, None], step, delta)
    states = np.full((n, T), -1, dtype=np.intp)
    last = delta.argmax(axis=1)
    log_prob = delta[rows, last]
    ends = np.maximum(lengths - 1, 0)
    states[rows, ends] = last
    current = last
    for t in range(T - 1, 0, -1):
        inside = t <= ends
        previous = back[rows, t, current]
        current = np.where(inside, previous, current)
        states[inside, t - 1] = current[inside]
    return log_prob, states
