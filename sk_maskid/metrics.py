"""Alignment of hidden states, recovery errors and scorers.

Hidden states are identified only up to a permutation, so every comparison
with a ground-truth model first aligns the states by the Hungarian algorithm
(:func:`scipy.optimize.linear_sum_assignment`) on emission distances.
"""

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.utils import check_random_state

__all__ = [
    "align_states",
    "cumulative_masked_score",
    "make_recovery_scorer",
    "masked_score_curve",
    "recovery_error",
]


def _emission(model):
    for name in ("emissionprob_", "means_"):
        value = getattr(model, name, None)
        if value is not None:
            return np.asarray(value, dtype=float)
    raise TypeError(
        f"{type(model).__name__} has neither emissionprob_ nor means_; pass a "
        "fitted estimator or an HMM model object"
    )


def align_states(true_model, fitted):
    """Permutation of the fitted states that best matches the true ones.

    Parameters
    ----------
    true_model : model or fitted estimator
        Anything with ``emissionprob_`` or ``means_``.
    fitted : model or fitted estimator
        Same number of states and same token dimension.

    Returns
    -------
    perm : ndarray of shape (n_components,)
        ``fitted`` state ``perm[i]`` corresponds to true state ``i``.
    """
    E_true, E_fit = _emission(true_model), _emission(fitted)
    if E_true.shape != E_fit.shape:
        raise ValueError(
            f"cannot align: true emissions have shape {E_true.shape}, fitted "
            f"{E_fit.shape}"
        )
    cost = np.linalg.norm(E_true[:, None, :] - E_fit[None, :, :], axis=2)
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)]


def recovery_error(true_model, fitted):
    """Max-abs parameter errors after aligning hidden states.

    Parameters
    ----------
    true_model : model or fitted estimator
    fitted : model or fitted estimator

    Returns
    -------
    dict
        ``"startprob"``, ``"transmat"`` and ``"emission"`` (emissionprob or
        means) max-abs errors.
    """
    perm = align_states(true_model, fitted)
    return {
        "startprob": float(
            np.abs(np.asarray(fitted.startprob_)[perm] - true_model.startprob_).max()
        ),
        "transmat": float(
            np.abs(
                np.asarray(fitted.transmat_)[np.ix_(perm, perm)] - true_model.transmat_
            ).max()
        ),
        "emission": float(
            np.abs(_emission(fitted)[perm] - _emission(true_model)).max()
        ),
    }


def make_recovery_scorer(true_model, which="max"):
    """Scorer for model selection against a known ground truth.

    Parameters
    ----------
    true_model : model
        The HMM that generated the data.
    which : {"max", "startprob", "transmat", "emission"}, default="max"
        Which error to report; "max" is the largest of the three.

    Returns
    -------
    callable
        ``scorer(estimator, X, y=None)`` returning the negated error (greater
        is better, as scikit-learn scorers require). A fit whose number of
        states differs from the truth scores ``-inf``.
    """
    if which not in ("max", "startprob", "transmat", "emission"):
        raise ValueError(f"unknown error {which!r}")

    def scorer(estimator, X=None, y=None):
        if len(estimator.startprob_) != len(true_model.startprob_):
            return -np.inf
        errors = recovery_error(true_model, estimator)
        return -(max(errors.values()) if which == "max" else errors[which])

    return scorer


# --------------------------------------------------------------------------
# Masked scores and the marginal likelihood (Theory page, "Evaluation").
# --------------------------------------------------------------------------
def _hmm(model):
    """The HMM object behind a fitted estimator, or the model itself."""
    return getattr(model, "model_", model)


def _random_masks(rng, n_sequences, length, sizes):
    """One uniformly random mask of each size per sequence: (len(sizes), n, T)."""
    keys = rng.random((len(sizes), n_sequences, length))
    ranks = keys.argsort(axis=2).argsort(axis=2)
    return ranks < np.asarray(sizes)[:, None, None]


def _mean_masked_log_predictive(model, X, masks):
    """Per mask: mean over masked tokens of log p(x_j | unmasked), (m, n)."""
    m, n, length = masks.shape
    Xr = np.broadcast_to(X, (m,) + X.shape).reshape((m * n,) + X.shape[1:])
    logp = model.masked_log_predictive(Xr, masks.reshape(m * n, length))
    logp = logp.reshape(m, n, length)
    return np.nansum(logp, axis=2) / masks.sum(axis=2)


def cumulative_masked_score(model, X, *, n_orderings=16, random_state=None):
    """Monte-Carlo cumulative masked-prediction score of sequences.

    For a sequence of ``T`` tokens, the masked score at size ``t`` is the mean
    over masked tokens of ``log p(x_j | x outside the mask)`` for a random
    mask of ``t`` tokens; summed over ``t = 1..T`` and averaged over masks,
    it equals ``log p(x)`` exactly (Moreno-Munoz et al., 2023: the chain
    rule over a random ordering, grouped by the size of the conditioning
    set). Each of the ``n_orderings`` replicates draws one independent mask
    per size and sequence.

    Parameters
    ----------
    model : HMM model or fitted estimator
        Anything with ``masked_log_predictive`` (or a ``model_`` that has it).
    X : array-like
        Complete sequences.
    n_orderings : int, default=16
        Replicates averaged.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    estimate : float
        Estimated total log-likelihood of ``X`` (sum over sequences).
    standard_error : float
        Standard error of ``estimate`` over replicates (NaN for one).
    """
    model = _hmm(model)
    X = model._check_X(X)
    if n_orderings < 1:
        raise ValueError(f"n_orderings must be >= 1, got {n_orderings}")
    rng = check_random_state(random_state)
    n, length = X.shape[:2]
    sizes = np.arange(1, length + 1)
    totals = np.empty(n_orderings)
    for r in range(n_orderings):  # a loop over replicates, not tokens
        masks = _random_masks(rng, n, length, sizes)
        totals[r] = _mean_masked_log_predictive(model, X, masks).sum()
    se = totals.std(ddof=1) / np.sqrt(n_orderings) if n_orderings > 1 else np.nan
    return float(totals.mean()), float(se)


def masked_score_curve(
    model,
    X,
    rates=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    *,
    n_masks=8,
    random_state=None,
):
    """Masked-prediction score per token at fixed masking rates.

    Parameters
    ----------
    model : HMM model or fitted estimator
    X : array-like
        Complete sequences.
    rates : sequence of float in (0, 1]
        Fractions of tokens hidden (at least one token).
    n_masks : int, default=8
        Random masks per rate and sequence.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    ndarray of shape (len(rates),)
        Mean of ``log p(x_j | unmasked tokens)`` over masked tokens, masks and
        sequences, for each rate.
    """
    model = _hmm(model)
    X = model._check_X(X)
    rates = np.asarray(rates, dtype=float)
    if np.any((rates <= 0) | (rates > 1)):
        raise ValueError("rates must lie in (0, 1]")
    rng = check_random_state(random_state)
    n, length = X.shape[:2]
    sizes = np.maximum(1, np.round(rates * length).astype(int))
    scores = np.zeros(len(rates))
    for _ in range(n_masks):
        masks = _random_masks(rng, n, length, sizes)
        scores += _mean_masked_log_predictive(model, X, masks).mean(axis=1)
    return scores / n_masks
