"""One validation layer shared by models and estimators.

Every public entry point funnels its arrays through these helpers, so a bad
input always produces the same kind of message: the argument's name, the form
that was expected and what was seen.
"""

import numbers

import numpy as np
from sklearn.utils.validation import (
    _check_feature_names,
    check_array,
    validate_data,
)

_SUM_ATOL = 1e-8


def check_stochastic(array, name, shape=None):
    """Check a probability vector or a row-stochastic matrix.

    Parameters
    ----------
    array : array-like
        Vector (one distribution) or matrix (one distribution per row).
    name : str
        Argument name used in error messages.
    shape : tuple of int, optional
        Exact shape expected.

    Returns
    -------
    ndarray of float64
    """
    arr = np.asarray(array, dtype=float)
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {arr.shape}")
    if arr.ndim not in (1, 2) or arr.size == 0:
        raise ValueError(
            f"{name} must be a non-empty vector or matrix, got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinity")
    if np.any(arr < 0):
        raise ValueError(f"{name} has negative entries (min {arr.min():.3g})")
    sums = arr.sum(axis=-1)
    bad = np.flatnonzero(np.abs(np.atleast_1d(sums) - 1.0) > _SUM_ATOL)
    if bad.size:
        what = "entries" if arr.ndim == 1 else f"row {bad[0]}"
        value = np.atleast_1d(sums)[bad[0]]
        raise ValueError(f"{name} must sum to 1 along rows; {what} sums to {value!r}")
    return arr


def _check_sequence_array(estimator, X, *, reset, min_rows, **check_params):
    """scikit-learn's validation of a padded array; its length is free after fit.

    ``fit`` (``reset=True``) records ``n_features_in_``, the padded length it
    saw, but an HMM is window-length agnostic: later calls accept sequences
    of any length, so only the feature names are checked against fit's.
    """
    if reset:
        return validate_data(
            estimator, X, reset=True, ensure_min_samples=min_rows, **check_params
        )
    _check_feature_names(estimator, X, reset=False)
    return check_array(X, ensure_min_samples=min_rows, **check_params)


def check_token_array(estimator, X, *, categorical, reset, min_rows, n_features=None):
    """Padded sequences of an estimator's token type, validated.

    scikit-learn's checks (feature names, dtype, minimum rows), then the token
    checks of :func:`check_categorical_sequences` (``-1`` masked; symbols are
    range-checked by the caller, whose alphabet may still be inferred) or
    :func:`check_gaussian_sequences` (all-NaN tokens masked, dimension
    ``n_features`` when given).
    """
    if categorical:
        X = _check_sequence_array(
            estimator, X, reset=reset, min_rows=min_rows, dtype=None
        )
        return check_categorical_sequences(X)
    X = _check_sequence_array(
        estimator,
        X,
        reset=reset,
        min_rows=min_rows,
        dtype="numeric",
        allow_nd=True,
        ensure_all_finite="allow-nan",  # an all-NaN token is masked
    )
    return check_gaussian_sequences(X, n_features)


def check_positive_int(value, name):
    """Check an int >= 1 (numpy integers accepted, bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be an int, got {type(value).__name__} ({value!r})"
        )
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _as_numeric(X):
    """Array view of X; object arrays holding numbers become float."""
    arr = np.asarray(X)
    if arr.dtype == object:
        try:
            arr = arr.astype(float)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"X must hold numbers, got an object array: {exc}"
            ) from None
    return arr


def check_categorical_sequences(X, n_symbols=None, *, allow_masked=True, name="X"):
    """Validate categorical sequences or windows.

    Parameters
    ----------
    X : array-like of shape (n_sequences, length)
        Integer symbols in ``0..n_symbols-1``; ``-1`` marks a masked token
        when ``allow_masked``.
    n_symbols : int, optional
        Size of the alphabet; symbols must be below it.
    allow_masked : bool, default=True
        Whether ``-1`` is accepted.
    name : str, default="X"
        Argument name for error messages.

    Returns
    -------
    ndarray of shape (n_sequences, length), dtype intp
    """
    arr = _as_numeric(X)
    if arr.dtype.kind not in "iubf":
        raise TypeError(
            f"{name} must hold integer symbols, got dtype {arr.dtype} "
            "(encode labels as integers first, e.g. with OrdinalEncoder)"
        )
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D of shape (n_sequences, length), got ndim={arr.ndim}"
            + (
                "; reshape a single sequence with X.reshape(1, -1)"
                if arr.ndim == 1
                else ""
            )
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ValueError(
                f"{name} contains NaN or infinity; categorical tokens are "
                "integers and a masked token is written -1"
            )
        if np.any(arr != np.round(arr)):
            raise ValueError(
                f"{name} has non-integer values; categorical tokens must be "
                "integer symbols"
            )
    arr = arr.astype(np.intp, copy=False)
    low = -1 if allow_masked else 0
    if arr.min() < low:
        raise ValueError(
            f"Negative values in data: {name} has symbol {arr.min()} < {low}; "
            "symbols are 0..n_symbols-1"
            + (" and -1 marks a masked token" if allow_masked else "")
        )
    if n_symbols is not None and arr.max() >= n_symbols:
        raise ValueError(
            f"{name} has symbol {arr.max()} out of range: expected symbols "
            f"0..{n_symbols - 1} (n_symbols={n_symbols})"
        )
    return arr


def check_gaussian_sequences(X, n_features=None, *, allow_masked=True, name="X"):
    """Validate real-valued sequences or windows.

    Parameters
    ----------
    X : array-like of shape (n_sequences, length) or (n_sequences, length, \
            n_features)
        A 2-D array holds scalar tokens. ``NaN`` in every feature of a token
        marks it as masked when ``allow_masked``.
    n_features : int, optional
        Expected token dimension.
    allow_masked : bool, default=True
        Whether fully-NaN tokens are accepted.
    name : str, default="X"
        Argument name for error messages.

    Returns
    -------
    ndarray of shape (n_sequences, length, n_features), float64
    """
    arr = _as_numeric(X)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(
            f"{name} must be 2-D (n_sequences, length) or 3-D (n_sequences, "
            f"length, n_features), got ndim={arr.ndim}"
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    arr = arr.astype(float, copy=False)
    if n_features is not None and arr.shape[2] != n_features:
        raise ValueError(
            f"{name} has tokens of dimension {arr.shape[2]}, expected {n_features}"
        )
    if np.any(np.isinf(arr)):
        raise ValueError(f"{name} contains infinity")
    nan = np.isnan(arr)
    if nan.any():
        if not allow_masked:
            raise ValueError(f"{name} contains NaN")
        partial = nan.any(axis=2) & ~nan.all(axis=2)
        if partial.any():
            raise ValueError(
                f"{name} has tokens with NaN in some features only; a masked "
                "token must be NaN in every feature"
            )
    return arr


__all__ = [
    "check_token_array",
    "check_stochastic",
    "check_positive_int",
    "check_categorical_sequences",
    "check_gaussian_sequences",
]
