"""Alignment of hidden states, recovery errors and scorers.

Hidden states are identified only up to a permutation, so every comparison
with a ground-truth model first aligns the states by the Hungarian algorithm
(:func:`scipy.optimize.linear_sum_assignment`) on emission distances.
"""

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["align_states", "recovery_error", "make_recovery_scorer"]


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
