"""Sequences laid out as rows of one length, for fast scaled recursions.

numpy's forward and backward passes loop over positions in Python, vectorised
across rows, so their cost is the row length times a per-step overhead. One
long sequence (a series of 1e6 observations, a book) would loop 1e6 times.
Here every sequence's tokens go into rows of about ``sqrt(n_tokens)``:

* sequences longer than a row run end to end and are cut into rows that are
  *chained*: each row's forward map from the state before it to its last
  state (:func:`sk_maskid._hmm.transfer`, ``k x k``) carries the messages
  across the cuts exactly (:func:`chain`, by prefix and suffix products of
  the maps: ``log2(rows)`` batched products, no loop over rows);
* shorter sequences are packed whole into rows of their own, which need no
  chaining.

Several models (the starts of a multi-start EM) go through the same rows
together: every array carries a leading model axis, and the recursions run
on the models' copies of the rows in one loop over positions, each model's
parameters applied to its own group of rows.

Everything is exact: the same ``alpha``, ``beta`` and scaling factors as
one pass over each whole sequence, up to rounding. Written here because no
maintained library offers masked, batched HMM recursions on numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._hmm import _vecmat, backward, forward, per_row, transfer
from .sequences import mask_value

# Token cells per chunk of rows: bounds the forward-backward arrays' memory
# (about 50 MB at k=4; measured on 1e7 Gaussian tokens, d=6, k=3: peak 908
# MiB with 1e6, 1152 MiB with 2e6, and 15% faster).
_CHUNK_TOKENS = 1_000_000


def _row_length(n_tokens):
    """Row length balancing the two loops over rows and over positions.

    The recursions loop over a row's positions and :func:`chain` loops over
    the rows, so about ``sqrt(n_tokens)`` of each.
    """
    return int(np.clip(np.sqrt(n_tokens), 64, 4096))


def worth_cutting(X):
    """Whether rows beat one pass over ``X``'s full width (long sequences)."""
    return X.shape[1] > _row_length(X.shape[0] * X.shape[1])


def _next_fit(lengths, capacity):
    """Row and offset of each sequence packed whole, in order, into rows."""
    if lengths.size and np.all(lengths == lengths[0]):  # windows: closed form
        per_row = capacity // lengths[0]
        index = np.arange(lengths.size)
        return index // per_row, (index % per_row) * lengths[0]
    row = np.empty(lengths.size, dtype=np.intp)
    offset = np.empty(lengths.size, dtype=np.intp)
    current, used = 0, 0
    for i, n in enumerate(lengths.tolist()):  # sequences, not tokens
        if used + n > capacity:
            current, used = current + 1, 0
        row[i], offset[i] = current, used
        used += n
    return row, offset


@dataclass(frozen=True)
class Rows:
    """Sequences laid out in rows.

    Attributes
    ----------
    chunks : list of tuple
        ``(rows, starts, inside, chained)`` per chunk of consecutive rows:
        the tokens (masked past the sequences), where each sequence begins,
        which cells hold a token, and which rows continue into the next or
        from the previous one (long sequences).
    keep : ndarray of bool, shape (n_sequences, width)
        The cells of the input that are sequence tokens.
    position : ndarray of int
        Flat position in the rows of each ``keep`` cell, in row-major order.
    """

    chunks: list
    keep: np.ndarray
    position: np.ndarray

    def gather(self, values):
        """Per-cell ``values`` of the rows (concatenated chunks) back in input
        order: an array ``(n_sequences, width, ...)``, zero outside ``keep``."""
        flat = np.concatenate([v.reshape((-1,) + v.shape[2:]) for v in values])
        out = np.zeros(self.keep.shape + flat.shape[1:], dtype=flat.dtype)
        out[self.keep] = flat[self.position]
        return out


def cut_rows(X, lengths):
    """Lay out padded sequences ``X`` (``lengths`` tokens each) in rows.

    Returns
    -------
    Rows
    """
    width = X.shape[1]
    lengths = np.asarray(lengths, dtype=np.intp)
    keep = np.arange(width) < lengths[:, None]
    length = _row_length(int(lengths.sum()))
    if lengths.size and lengths.max() <= 2 * length:
        length = max(length, int(lengths.max()))  # every sequence whole
    if width and np.all(lengths == width) and width <= length:
        return _whole_rows(X)
    long = lengths > length
    n_long_rows = -(-int(lengths[long].sum()) // length)
    short = np.flatnonzero(~long & (lengths > 0))
    row, offset = _next_fit(lengths[short], length)
    n_rows = max(1, n_long_rows + (int(row[-1]) + 1 if short.size else 0))
    # flat position of every token: long sequences end to end, then the
    # packed ones at their row and offset
    starts_at = np.zeros(X.shape[0], dtype=np.intp)
    starts_at[long] = np.cumsum(lengths[long]) - lengths[long]
    starts_at[short] = (n_long_rows + row) * length + offset
    position = (starts_at[:, None] + np.arange(width))[keep]
    size = n_rows * length
    rows = np.full((size,) + X.shape[2:], mask_value(X), dtype=X.dtype)
    rows[position] = X[keep]
    starts = np.zeros(size, dtype=bool)
    starts[starts_at[lengths > 0]] = True
    starts[0] = True  # the first row begins a sequence even if empty
    inside = np.zeros(size, dtype=bool)
    inside[position] = True
    rows = rows.reshape((n_rows, length) + X.shape[2:])
    starts, inside = starts.reshape(n_rows, length), inside.reshape(n_rows, length)
    chained = np.arange(n_rows) < n_long_rows
    per_chunk = max(1, _CHUNK_TOKENS // length)
    chunks = [
        tuple(a[lo : lo + per_chunk] for a in (rows, starts, inside, chained))
        for lo in range(0, n_rows, per_chunk)
    ]
    return Rows(chunks, keep, position)


def _whole_rows(X):
    """Full sequences of one length, each a row of its own: views of ``X``.

    Packing them into longer rows would copy the data (twice, with the
    gather) and lengthen the loop over positions; one row per sequence
    needs neither, the recursions being vectorised across rows.
    """
    n, width = X.shape[:2]
    starts = np.zeros((n, width), dtype=bool)
    starts[:, 0] = True
    inside = np.ones((n, width), dtype=bool)
    chained = np.zeros(n, dtype=bool)
    per_chunk = max(1, _CHUNK_TOKENS // width)
    chunks = [
        tuple(a[lo : lo + per_chunk] for a in (X, starts, inside, chained))
        for lo in range(0, n, per_chunk)
    ]
    return Rows(chunks, inside, np.arange(n * width))


def _emissions(models, X):
    """``(B, log_shift)`` of every model on rows ``X``, a leading model axis."""
    if len(models) == 1:  # a view, no copy: the common case of one model
        B, log_shift = models[0]._emission_likelihood(X)
        return B[None], log_shift[None]
    pairs = [model._emission_likelihood(X) for model in models]
    return np.stack([B for B, _ in pairs]), np.stack([shift for _, shift in pairs])


def _parameters(models):
    """``startprob`` and ``transmat`` for the recursions on the models'
    copies of the rows, stacked model by model: one model's own, or one set
    per model (per group of rows, see :func:`~sk_maskid._hmm.forward`)."""
    if len(models) == 1:
        return models[0].startprob_, models[0].transmat_
    return (
        np.array([m.startprob_ for m in models]),
        np.array([m.transmat_ for m in models]),
    )


def _flat(a):
    """``(S, rows, ...)`` as ``(S * rows, ...)``: every model's copy of the rows."""
    return a.reshape((-1,) + a.shape[2:])


def row_maps(models, X, starts, chained):
    """Transfer maps of the chained rows under each of ``models``; a
    stand-in for the others.

    Returns ``F`` ``(S, rows, k, k)`` and ``log_g`` ``(S, rows, k)``. A row
    packed with whole sequences begins and ends its own: nothing crosses
    it, so its map is not needed. The stand-in (uniform rows, log 1) makes
    :func:`chain` pass a backward message of ones over it, which is exact,
    and a forward message that no row uses.
    """
    S, k = len(models), models[0].n_components
    F = np.full((S, len(X), k, k), 1.0 / k)
    log_g = np.zeros((S, len(X), k))
    if chained.any():
        n = int(np.count_nonzero(chained))
        B, _ = _emissions(models, X[chained])
        maps, logs = transfer(
            *_parameters(models), _flat(B), np.tile(starts[chained], (S, 1))
        )
        F[:, chained] = maps.reshape(S, n, k, k)
        log_g[:, chained] = logs.reshape(S, n, k)
    return F, log_g


def chain(maps):
    """Messages entering each row and leaving it, from all rows' maps.

    Returns ``alpha_in`` (the normalised forward vector at the token before
    each row) and ``beta_end`` (the backward vector at each row's last
    token, scaled as :func:`~sk_maskid._hmm.backward` scales it, so that
    ``alpha_end[j] @ beta_end[j] == 1``), each ``(S, rows, k)``: one set
    per model. Row ``j`` moves the forward message by ``M_j = diag(g_j)
    F_j`` (and the backward one by the same matrix from the right), so the
    messages are normalised prefix and suffix products of the maps:
    :func:`_scan` forms them in ``log2(rows)`` batched products instead of
    a loop over rows.
    """
    F = np.concatenate([m[0] for m in maps], axis=1)
    log_g = np.concatenate([m[1] for m in maps], axis=1)
    with np.errstate(invalid="ignore"):
        g = np.exp(log_g - log_g.max(axis=2, keepdims=True))
    g = np.nan_to_num(g)  # a row impossible from every state (zero weight)
    M = g[..., None] * F
    S, n, k = log_g.shape
    with np.errstate(invalid="ignore", divide="ignore"):
        prefix, suffix = _scan(M, reverse=False), _scan(M, reverse=True)
        alpha_end = prefix.sum(axis=2)  # the uniform vector times each prefix
        alpha_end /= alpha_end.sum(axis=2, keepdims=True)
        after = np.ones((S, n, k))
        after[:, :-1] = suffix[:, 1:].sum(axis=3)  # each suffix times ones
        beta_end = after / np.sum(alpha_end * after, axis=2, keepdims=True)
    if not (np.all(np.isfinite(alpha_end)) and np.all(np.isfinite(beta_end))):
        # a row impossible after the rows before it: the loop keeps the
        # last possible message instead
        alpha_end, beta_end = _chain_by_loop(M)
    alpha_in = np.concatenate([np.full((S, 1, k), 1.0 / k), alpha_end[:, :-1]], axis=1)
    return alpha_in, beta_end


def _scan(M, reverse):
    """Normalised inclusive products ``M_0 ... M_j`` (``M_j ... M_last`` if
    ``reverse``) of the maps ``M (S, rows, k, k)``, by doubling: each pass
    multiplies every product by the one ``step`` rows away (Hillis-Steele),
    rescaled to sum 1 (positive matrices: no cancellation, no underflow of
    the product as a whole)."""
    P = M / M.sum(axis=(2, 3), keepdims=True)
    step = 1
    while step < P.shape[1]:
        product = P[:, :-step] @ P[:, step:]
        product /= product.sum(axis=(2, 3), keepdims=True)
        if reverse:
            P[:, :-step] = product
        else:
            P[:, step:] = product
        step *= 2
    return P


def _chain_by_loop(M):
    """:func:`chain`'s messages row by row, keeping the last possible forward
    message (and a unit backward one) across a row of zero weight."""
    S, n, k = M.shape[:3]
    alpha_end = np.empty((S, n, k))
    beta_end = np.empty((S, n, k))
    a = np.full((S, 1, k), 1.0 / k)  # row 0 starts a sequence: any value does
    for j in range(n):
        a_next = a @ M[:, j]
        total = a_next.sum(axis=2, keepdims=True)
        a = np.where(total > 0, a_next / np.where(total > 0, total, 1.0), a)
        alpha_end[:, j] = a[:, 0]
    b = np.ones((S, k, 1))
    beta_end[:, -1] = 1.0
    for j in range(n - 1, 0, -1):
        b_next = M[:, j] @ b
        total = alpha_end[:, j - 1, None] @ b_next
        b = np.where(total > 0, b_next / np.where(total > 0, total, 1.0), 1.0)
        beta_end[:, j - 1] = b[..., 0]
    return alpha_end, beta_end


def rows_forward_backward(models, X, starts, alpha_in, beta_end=None):
    """Scaled recursions of each of ``models`` on one chunk of rows, given
    its entering messages (``(S, rows, k)``).

    Returns ``(B, log_shift, alpha, c, beta)``, each with a leading model
    axis (``beta`` None when ``beta_end`` is None: the forward pass alone).
    The models' copies of the rows go through the recursions together, one
    loop over positions for all of them: with short data that loop's
    per-step overhead, not arithmetic, is the cost, so ``S`` models cost
    little more than one.
    """
    S = len(models)
    B, log_shift = _emissions(models, X)
    startprob, transmat = _parameters(models)
    every = np.tile(starts, (S, 1))
    entering = _vecmat(_flat(alpha_in), transmat)
    initial = np.where(every[:, :1], per_row(startprob, len(every)), entering)
    alpha, c = forward(startprob, transmat, _flat(B), every, initial=initial)
    beta = None
    if beta_end is not None:
        beta = backward(transmat, _flat(B), c, every, last=_flat(beta_end))
        beta = beta.reshape(B.shape)
    return B, log_shift, alpha.reshape(B.shape), c.reshape(B.shape[:-1]), beta


def split_messages(maps, chunks):
    """:func:`chain` the rows' ``maps``; its messages cut per chunk."""
    S, _, k = maps[0][1].shape
    if not any(chunk[3].any() for chunk in chunks):
        # no row continues another: chain's loop over rows would return
        # uniform forward and unit backward messages (its stand-in maps)
        return [
            (np.full((S, len(chunk[0]), k), 1.0 / k), np.ones((S, len(chunk[0]), k)))
            for chunk in chunks
        ]
    alpha_in, beta_end = chain(maps)
    bounds = np.cumsum([0] + [len(chunk[0]) for chunk in chunks])
    return [
        (alpha_in[:, lo:hi], beta_end[:, lo:hi])
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def messages(models, rows):
    """Per-chunk ``(alpha_in, beta_end)`` of laid-out ``rows``, per model."""
    maps = [
        row_maps(models, X, starts, chained) for X, starts, _, chained in rows.chunks
    ]
    return split_messages(maps, rows.chunks)


def recursions_by_rows(model, X, *, backward):
    """``(rows, passes)`` for full-width sequences ``X`` laid out in rows.

    ``passes`` yields :func:`rows_forward_backward`'s results for ``model``
    chunk by chunk (``beta`` None unless ``backward``), for
    :meth:`Rows.gather` to put per-token values back in ``X``'s order.
    """
    rows = cut_rows(X, np.full(X.shape[0], X.shape[1]))
    passes = (
        tuple(
            None if a is None else a[0]
            for a in rows_forward_backward(
                [model], chunk, starts, alpha_in, beta_end if backward else None
            )
        )
        for (chunk, starts, _, _), (alpha_in, beta_end) in zip(
            rows.chunks, messages([model], rows), strict=True
        )
    )
    return rows, passes
