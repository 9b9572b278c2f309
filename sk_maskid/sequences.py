"""Sequences as users hold them: lists, hmmlearn's ``lengths``, padded arrays.

Every estimator method accepts the same input forms and turns them into one
padded array, one row per sequence, whose masked tokens (``-1`` for symbols,
all-NaN for real-valued tokens) are marginalised exactly by the
forward-backward recursions and drop out of the statistics of the windows
they touch:

* windows or padded sequences: ``(n_sequences, length)`` symbols padded
  with ``-1``, or ``(n_sequences, length, d)`` real tokens padded with NaN
  (a 2-D real array holds scalar tokens);
* a list of sequences of any lengths: 1-D symbol arrays, or ``(T_i, d)`` (or
  1-D scalar) real arrays;
* hmmlearn's concatenated array ``(n_tokens,)`` / ``(n_tokens, 1)`` symbols
  or ``(n_tokens, d)`` real tokens, with ``lengths=[T_1, T_2, ...]``.

:func:`pad_sequences`, :func:`split_lengths` and :func:`unpad` convert between
the forms.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.utils.validation import _num_samples

from ._validation import check_positive_int

__all__ = ["make_windows", "pad_sequences", "split_lengths", "unpad"]


def _is_float_kind(arrays):
    return any(np.asarray(a).dtype.kind == "f" for a in arrays)


def pad_sequences(sequences, *, length=None):
    """Stack sequences of unequal lengths into one padded array.

    Parameters
    ----------
    sequences : list of array-like
        1-D sequences (symbols, or scalar real tokens) or 2-D ``(T_i, d)``
        real-valued sequences.
    length : int, default=None
        Padded length; ``None`` means the longest sequence.

    Returns
    -------
    ndarray
        ``(n_sequences, length)`` integers padded with ``-1`` when every
        sequence holds integers; otherwise floats padded with NaN, of shape
        ``(n_sequences, length)`` for 1-D sequences and ``(n_sequences,
        length, d)`` for 2-D ones.
    """
    seqs = [np.asarray(s) for s in sequences]
    if not seqs:
        raise ValueError("sequences is empty: at least one sequence is needed")
    ndims = {s.ndim for s in seqs}
    if len(ndims) != 1 or ndims.pop() not in (1, 2):
        raise ValueError(
            "every sequence must be 1-D (symbols or scalar tokens) or 2-D "
            "(length, n_features), all of the same kind"
        )
    longest = max(len(s) for s in seqs)
    length = longest if length is None else check_positive_int(length, "length")
    if length < longest:
        raise ValueError(f"length={length} is shorter than the longest sequence")
    if seqs[0].ndim == 2:
        dims = {s.shape[1] for s in seqs}
        if len(dims) != 1:
            raise ValueError(
                f"sequences have tokens of different dimensions {sorted(dims)}"
            )
        out = np.full((len(seqs), length, dims.pop()), np.nan)
    elif _is_float_kind(seqs):
        out = np.full((len(seqs), length), np.nan)
    else:
        for s in seqs:
            if s.dtype.kind not in "iub" and s.size:
                raise TypeError(
                    f"sequences must hold numbers, got dtype {s.dtype} (encode "
                    "labels as integers first, e.g. with OrdinalEncoder)"
                )
        out = np.full((len(seqs), length), -1, dtype=np.intp)
    for i, s in enumerate(seqs):  # a loop over sequences, not tokens
        out[i, : len(s)] = s
    return out


def split_lengths(X, lengths):
    """Split hmmlearn's concatenated array into a list of sequences.

    Parameters
    ----------
    X : array-like of shape (n_tokens,) or (n_tokens, n_features)
        Sequences one after the other. Categorical tokens may be given as a
        column ``(n_tokens, 1)``, as hmmlearn's ``CategoricalHMM`` takes them.
    lengths : array-like of int
        Length of each sequence; they must sum to ``n_tokens``.

    Returns
    -------
    list of ndarray
    """
    X = np.asarray(X)
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or lengths.size == 0:
        raise ValueError(f"lengths must be a non-empty 1-D array, got {lengths!r}")
    if lengths.dtype.kind not in "iu" and not (
        lengths.dtype.kind == "f" and np.all(lengths == np.round(lengths))
    ):
        raise TypeError(f"lengths must hold integers, got dtype {lengths.dtype}")
    lengths = lengths.astype(np.intp)
    if np.any(lengths < 1):
        raise ValueError("lengths must be >= 1")
    if X.ndim not in (1, 2):
        raise ValueError(
            "with lengths=, X must be hmmlearn's concatenated array of shape "
            f"(n_tokens,) or (n_tokens, n_features), got ndim={X.ndim}"
        )
    if lengths.sum() != len(X):
        raise ValueError(
            f"lengths sum to {lengths.sum()} but X has {len(X)} tokens (rows)"
        )
    return np.split(X, np.cumsum(lengths)[:-1])


def unpad(X):
    """Sequences of a padded array, each cut after its last observed token.

    Parameters
    ----------
    X : ndarray
        Padded array from :func:`pad_sequences` (``-1`` or all-NaN padding).

    Returns
    -------
    list of ndarray
    """
    X = np.asarray(X)
    lengths = observed_lengths(X)
    return [row[:n] for row, n in zip(X, lengths, strict=True)]


def _masked(X):
    """Masked tokens of a padded array: ``-1`` symbols or all-NaN tokens."""
    if X.dtype.kind == "f":
        return np.isnan(X).all(axis=2) if X.ndim == 3 else np.isnan(X)
    return X < 0


def mask_value(X):
    """The masked token of ``X``'s type: NaN for real tokens, -1 for symbols."""
    return np.nan if X.dtype.kind == "f" else -1


def observed_lengths(X):
    """Index after the last observed token of each row (trailing masks = padding)."""
    observed = ~_masked(X)
    last = X.shape[1] - np.argmax(observed[:, ::-1], axis=1)
    return np.where(observed.any(axis=1), last, 0)


class SequenceLayout:
    """How the user's input was laid out, to give per-token results back alike.

    Attributes
    ----------
    form : {"array", "list", "lengths"}
    lengths : ndarray of shape (n_sequences,)
        True length of each sequence (for arrays: up to the last observed
        token; trailing masked tokens are padding).
    """

    def __init__(self, form, lengths):
        self.form = form
        self.lengths = np.asarray(lengths, dtype=np.intp)

    @classmethod
    def for_array(cls, X):
        """The layout of a validated padded array: trailing masks are padding."""
        return cls("array", observed_lengths(X))

    def restore(self, per_token, fill):
        """Per-token results ``(n, T, ...)`` in the input's form.

        Positions past a sequence's length get ``fill`` in the array form.
        """
        if self.form == "array":
            out = per_token.copy()
            beyond = np.arange(out.shape[1]) >= self.lengths[:, None]
            out[beyond] = fill
            return out
        pieces = [row[:n] for row, n in zip(per_token, self.lengths, strict=True)]
        return pieces if self.form == "list" else np.concatenate(pieces)


def as_padded(X, lengths=None, *, categorical):
    """The padded array behind any input form, and its :class:`SequenceLayout`.

    An array is returned as it is, with layout None (the caller validates it
    and takes trailing masked tokens as padding).

    Parameters
    ----------
    X : array-like or list of array-like
    lengths : array-like of int, default=None
        hmmlearn's sequence lengths for a concatenated ``X``.
    categorical : bool
        Token type: a concatenated categorical column ``(n_tokens, 1)`` is
        one symbol per row, and a Gaussian 1-D sequence holds scalar tokens.
    """
    if lengths is not None:
        X = np.asarray(X)
        if categorical and X.ndim == 2 and X.shape[1] != 1:
            raise ValueError(
                "with lengths=, categorical X must be hmmlearn's column of "
                f"symbols (n_tokens,) or (n_tokens, 1), got shape {X.shape}"
            )
        pieces = split_lengths(X, lengths)
        if categorical:
            pieces = [p.reshape(-1) for p in pieces]
        elif X.ndim == 1:
            pieces = [p[:, None] for p in pieces]
        padded = pad_sequences(pieces)
        return padded, SequenceLayout("lengths", [len(p) for p in pieces])
    if isinstance(X, list | tuple) and len(X) and _is_sequence_list(X):
        padded = pad_sequences(X)
        return padded, SequenceLayout("list", [len(s) for s in X])
    return X, None  # an array (or DataFrame): validated by scikit-learn


def _is_sequence_list(X):
    """A list of array-like sequences (not a nested list holding a 2-D array)."""
    first = X[0]
    if isinstance(first, numbers.Number) or isinstance(first, str):
        return False
    lengths = {len(s) for s in X}
    return len(lengths) > 1 or any(isinstance(s, np.ndarray) for s in X)


def check_y_is_not_lengths(X, y, lengths):
    """Refuse a positional ``y`` that cannot be a target for ``X``.

    hmmlearn users write ``fit(X, lengths)``; here the second positional
    argument is scikit-learn's ``y``. A ``y`` with one entry per sequence is
    a valid (ignored) target, as a Pipeline passes; anything else is a
    misreading, never silently swallowed.
    """
    if y is None:
        return
    n_rows = len(lengths) if lengths is not None else _num_samples(X)
    n_y = len(y) if hasattr(y, "__len__") else None
    if n_y == n_rows:
        return
    hint = ""
    values = np.asarray(y)
    if (
        values.ndim == 1
        and values.dtype.kind in "iu"
        and values.sum() == _num_samples(X)
    ):
        hint = " (they sum to the number of rows of X: sequence lengths?)"
    raise ValueError(
        f"the second positional argument has {n_y} entries but X has {n_rows} "
        f"rows (one per sequence){hint}: the estimators take no target y; pass "
        "hmmlearn's sequence lengths as the keyword lengths=..."
    )


def make_windows(sequences, window_length, step=1):
    """Cut sequences into overlapping windows of consecutive tokens.

    The estimators take whole sequences directly (every sub-window of every
    sequence contributes to their statistics); windows are for experiments
    that need fixed-length rows.

    Parameters
    ----------
    sequences : array-like or list of array-like
        Either an array of shape ``(n_sequences, length)`` or
        ``(n_sequences, length, n_features)``, or a list of sequences of
        varying lengths (each 1-D for categorical or scalar tokens, 2-D
        ``(length, n_features)`` for vector tokens).
    window_length : int
        Number of tokens per window.
    step : int, default=1
        Offset between the starts of consecutive windows of one sequence.

    Returns
    -------
    windows : ndarray of shape (n_windows, window_length) or \
            (n_windows, window_length, n_features)
        The windows, in sequence order.
    groups : ndarray of shape (n_windows,)
        Index of the sequence each window came from, for
        :class:`sklearn.model_selection.GroupKFold` (overlapping windows of
        one sequence must not straddle a train/test split).
    """
    window_length = check_positive_int(window_length, "window_length")
    step = check_positive_int(step, "step")
    if isinstance(sequences, np.ndarray) and sequences.ndim in (2, 3):
        seqs = list(sequences)
    elif isinstance(sequences, list | tuple):
        seqs = [np.asarray(s) for s in sequences]
    else:
        arr = np.asarray(sequences)
        if arr.ndim not in (2, 3):
            raise ValueError(
                "sequences must be a 2-D/3-D array or a list of sequences, got "
                f"an array with ndim={arr.ndim}"
            )
        seqs = list(arr)
    if not seqs:
        raise ValueError("sequences is empty: at least one sequence is needed")
    token_ndim = {s.ndim for s in seqs}
    if len(token_ndim) != 1 or token_ndim.pop() not in (1, 2):
        raise ValueError(
            "every sequence must be 1-D (categorical or scalar tokens) or 2-D "
            "(length, n_features), all of the same kind"
        )
    windows, groups = [], []
    for i, seq in enumerate(seqs):
        if len(seq) < window_length:
            continue
        view = np.lib.stride_tricks.sliding_window_view(seq, window_length, axis=0)
        if seq.ndim == 2:  # sliding_window_view puts the window axis last
            view = np.moveaxis(view, -1, 1)
        view = view[::step]
        windows.append(view)
        groups.append(np.full(len(view), i, dtype=np.intp))
    if not windows:
        longest = max(len(s) for s in seqs)
        raise ValueError(
            f"window_length={window_length} is longer than every sequence "
            f"(longest has {longest} tokens)"
        )
    return np.concatenate(windows), np.concatenate(groups)
