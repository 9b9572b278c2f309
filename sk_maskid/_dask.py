"""Dask arrays in and out: statistics, EM E-steps and inference per block.

A Dask array of windows or padded sequences, chunked along its rows, stays
where its blocks live. ``fit`` and ``partial_fit`` map the estimator's own
statistics over the blocks and add them up by a tree reduction, so only the
statistics (the count table, the moment tensors) reach the client; each EM
E-step maps the in-memory E-step over the blocks and sums the expected
counts the same way, so the driver holds only the parameters; ``transform``,
``score_samples`` and ``predict_proba`` return Dask arrays computed block by
block. A block is a set of whole rows: every block runs the in-memory code.

What does come to the client is bounded: the first rows (at most
``_HEAD_ROWS``) to validate the input's form, and the quality check's sample
(at most 2e5 tokens, see ``_base._quality_sample``).

Dask is an optional dependency: this module imports it only when a Dask
array is given, and :func:`is_dask_array` recognises one without importing
it.
"""

from __future__ import annotations

import copy

import numpy as np

from ._rows import cut_rows
from .sequences import _masked, check_y_is_not_lengths, observed_lengths

_EXTRA = "pip install 'sk_maskid[dask]'"
# Rows of a Dask X computed on the client to validate its form and set the
# fitted state (dtype, token dimension, feature count).
_HEAD_ROWS = 1000


def is_dask_array(X):
    """Whether ``X`` is a ``dask.array.Array`` (or subclass), without importing dask."""
    return any(
        cls.__name__ == "Array" and cls.__module__.startswith("dask.array")
        for cls in type(X).__mro__
    )


def _import_dask():
    """dask, or an ImportError that names the extra to install."""
    try:
        import dask
        import dask.array  # noqa: F401 - the array collection is what is used
    except ImportError as exc:
        raise ImportError(
            f"X is a dask array but dask cannot be imported ({exc}); install "
            f"the optional dependency: {_EXTRA}"
        ) from exc
    return dask


def _row_chunked(X):
    """``X`` chunked along its rows only (one chunk across the other axes).

    A block must hold whole rows: sequences are not split across blocks.
    """
    if any(len(c) > 1 for c in X.chunks[1:]):
        X = X.rechunk({axis: -1 for axis in range(1, X.ndim)})
    if any(np.isnan(n) for n in X.chunks[0]):
        raise ValueError(
            "X has unknown chunk sizes along its rows; call "
            "X.compute_chunk_sizes() (or build it with known sizes) first"
        )
    return X


def _tree_sum(parts, combine, *extra):
    """Pairwise tree of delayed ``combine(*extra, left, right)``, in block order."""
    from dask import delayed

    combine = delayed(combine, pure=True)
    while len(parts) > 1:
        paired = [
            combine(*extra, parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)
        ]
        parts = paired + parts[len(parts) - len(parts) % 2 :]
    return parts[0]


def _worker_copy(estimator, state):
    """An unfitted copy carrying the data-dependent state: what blocks need.

    The parallelism is the blocks', so the copy runs each one with one job.
    """
    from sklearn.base import clone

    worker = clone(estimator).set_params(n_jobs=None, verbose=0)
    for name, value in state.items():
        setattr(worker, name, value)
    return worker


# --------------------------------------------------------------------------
# fit / partial_fit
# --------------------------------------------------------------------------
class DaskLayout:
    """The layout of a Dask array of padded sequences (trailing masks are padding).

    Attributes
    ----------
    form : "array"
    lengths : dask.array.Array of int
        Each row's length, computed lazily per block.
    summary : dict or None
        ``{"rows", "short", "observed"}`` summed over the blocks by the
        statistics pass: rows, rows shorter than the task's span, observed
        tokens (None before the pass).
    """

    form = "array"

    def __init__(self, X):
        self.lengths = X.map_blocks(
            observed_lengths, drop_axis=list(range(1, X.ndim)), dtype=np.intp
        )
        self.summary = None


def _check_block(block, worker, task, dtype):
    """One block validated by the estimator's own checks (on a worker)."""
    if block.shape[0] == 0:
        return block.astype(dtype)
    return worker._check_windows(block, reset=False, task=task, min_windows=1)[0]


def validated(estimator, X, y, lengths, *, reset, task):
    """A Dask ``X`` validated lazily: ``(X, layout, state)``.

    The first rows are validated on the client (dtype, shape, feature
    names; with ``reset`` they set the fitted state); every block is then
    validated on its worker by the same checks, so a bad value anywhere
    (NaN in categorical data, a symbol out of range) raises when the
    statistics are computed.
    """
    _import_dask()
    if lengths is not None:
        raise ValueError(
            "lengths is not supported with a dask array: pass padded sequences "
            "(trailing masked tokens are padding) or windows, one per row"
        )
    check_y_is_not_lengths(X, y, None)
    X = _row_chunked(X)
    if estimator._emission == "gaussian" and X.ndim == 2:
        X = X[:, :, None]  # scalar tokens, as the in-memory path reads them
    head = X[: min(_HEAD_ROWS, X.shape[0])].compute()
    options = estimator._dask_check_options(X, reset) if reset else {}
    head, state = estimator._check_windows(
        head, reset=reset, task=task, min_windows=1, **options
    )
    if state.get("predictor_form_") == "posterior":
        raise ValueError(
            "the posterior-form predictor is fitted on token pairs, not on "
            "additive statistics, so it cannot be fitted on a dask array; use "
            "a task with three positions (e.g. '1->2*3'), whose moments form is "
            "additive"
        )
    worker = _worker_copy(estimator, state)
    X = X.map_blocks(
        _check_block,
        worker,
        task,
        head.dtype,
        dtype=head.dtype,
        meta=np.empty((0,) * X.ndim, dtype=head.dtype),
    )
    return X, DaskLayout(X), state


def _largest_symbol_of_block(block):
    from ._validation import check_categorical_sequences

    if block.shape[0] == 0:
        return -1
    return int(check_categorical_sequences(block).max())


def largest_symbol(X):
    """The largest symbol of a categorical Dask array: one pass over its blocks."""
    dask = _import_dask()
    from dask import delayed

    parts = [
        delayed(_largest_symbol_of_block, pure=True)(block)
        for block in _row_chunked(X).to_delayed().ravel()
    ]
    return int(dask.compute(_tree_sum(parts, max))[0])


def _block_statistics(worker, task, state, block):
    """Statistics of one (validated) block and its summary, on a worker."""
    if block.shape[0] == 0:
        return None
    lengths = observed_lengths(block)
    summary = {
        "rows": block.shape[0],
        "short": int(np.count_nonzero(lengths < task.span)),
        "observed": int(np.count_nonzero(~_masked(block))),
    }
    return worker._statistics(block, task, state), summary


def _merge_statistics(worker, left, right):
    if left is None or right is None:
        return right if left is None else left
    summary = {key: left[1][key] + right[1][key] for key in left[1]}
    return worker._merge(left[0], right[0]), summary


def statistics(estimator, X, layout, task, state):
    """Sufficient statistics of a validated Dask ``X``: only they come back.

    Fills ``layout.summary`` (rows, short rows, observed tokens) in the
    same pass.
    """
    dask = _import_dask()
    from dask import delayed

    # one graph node for the (small, unfitted) worker copy, shared by blocks
    worker = delayed(_worker_copy(estimator, state), pure=False)
    parts = [
        delayed(_block_statistics, pure=True)(worker, task, state, block)
        for block in X.to_delayed().ravel()
    ]
    stats, layout.summary = dask.compute(_tree_sum(parts, _merge_statistics, worker))[0]
    return stats


def compute_sample(X):
    """A bounded slice of a Dask ``X`` brought to the client."""
    return X.compute()


# --------------------------------------------------------------------------
# EM refinement: the E-step as a map over blocks and a tree sum
# --------------------------------------------------------------------------
def _block_e_step(models, block, lengths):
    from .refinement import _stacked_counts

    X = models[0]._check_X(block)
    if X.shape[0] == 0:
        return None
    if lengths is None:
        lengths = np.full(X.shape[0], X.shape[1])
    return _stacked_counts(models, cut_rows(X, lengths).chunks, None)


def expected_counts_function(X, lengths=None):
    """``models -> their expected counts`` over a Dask ``X``, for the EM loop.

    Each call is one E-step per model, the models together: the in-memory
    E-step on every block (whole sequences, so no message crosses blocks),
    the counts summed by a tree reduction; only the counts and the
    log-likelihoods come back.
    """
    dask = _import_dask()
    from dask import delayed

    from .refinement import _add_counts, _per_model

    X = _row_chunked(X)
    blocks = list(X.to_delayed().ravel())
    if lengths is None:
        length_blocks = [None] * len(blocks)
    else:
        if not is_dask_array(lengths) or lengths.ndim != 1:
            raise TypeError(
                "with a dask X, lengths must be None or a 1-D dask array with "
                "one entry per row of X"
            )
        if lengths.shape[0] != X.shape[0]:
            raise ValueError(
                f"lengths has {lengths.shape[0]} entries for {X.shape[0]} rows of X"
            )
        length_blocks = list(lengths.rechunk((X.chunks[0],)).to_delayed().ravel())

    def expected_counts(models):
        shipped = delayed(list(models), pure=False)  # sent once per E-step
        parts = [
            delayed(_block_e_step, pure=True)(shipped, block, block_lengths)
            for block, block_lengths in zip(blocks, length_blocks, strict=True)
        ]
        return _per_model(dask.compute(_tree_sum(parts, _add_counts))[0])

    return expected_counts


# --------------------------------------------------------------------------
# Inference: lazy per-block results, and the score as a float
# --------------------------------------------------------------------------
def _slim_copy(estimator):
    """The fitted estimator without what inference does not read (the statistics)."""
    slim = copy.copy(estimator)
    slim.statistics_ = {}  # check_is_fitted looks for it; its tables stay home
    return slim


def _call_block(slim, method, tail, block):
    if block.shape[0] == 0:
        return np.zeros((0,) + tail)
    return getattr(slim, method)(block)


def _dask_blocks(estimator, X, lengths):
    from sklearn.utils.validation import check_is_fitted

    _import_dask()
    check_is_fitted(estimator, "statistics_")  # now, not when computed
    if lengths is not None:
        raise ValueError(
            "lengths is not supported with a dask array: pass padded sequences "
            "(trailing masked tokens are padding), one per row"
        )
    return _row_chunked(X)


def map_inference(estimator, method, X, lengths, tail):
    """``estimator.<method>`` on every block of ``X``, as a lazy Dask array.

    ``tail`` is the shape of one row's result (``()`` for one number).
    """
    import dask.array as da
    from dask import delayed

    X = _dask_blocks(estimator, X, lengths)
    slim = delayed(_slim_copy(estimator), pure=False)
    tail = tuple(tail)
    parts = [
        da.from_delayed(
            delayed(_call_block, pure=True)(slim, method, tail, block),
            shape=(n_rows,) + tail,
            dtype=np.float64,
        )
        for block, n_rows in zip(X.to_delayed().ravel(), X.chunks[0], strict=True)
    ]
    return da.concatenate(parts, axis=0)


def _block_score(slim, block):
    if block.shape[0] == 0:
        return 0.0, 0
    X, _ = slim._check_sequences(block)
    n_observed = int(np.count_nonzero(~slim.model_._masked(X)))
    return float(slim.model_.log_likelihood(X).sum()), n_observed


def _add_pairs(left, right):
    return left[0] + right[0], left[1] + right[1]


def score(estimator, X, lengths):
    """Mean log-likelihood per observed token of a Dask ``X``, as a float.

    Computed now, as dask-ml's ``score`` methods do: per-block sums of the
    log-likelihood and of the observed tokens, added by a tree reduction.
    """
    dask = _import_dask()
    from dask import delayed

    X = _dask_blocks(estimator, X, lengths)
    slim = delayed(_slim_copy(estimator), pure=False)
    parts = [
        delayed(_block_score, pure=True)(slim, block)
        for block in X.to_delayed().ravel()
    ]
    loglik, n_observed = dask.compute(_tree_sum(parts, _add_pairs))[0]
    if n_observed == 0:
        raise ValueError("X has no observed token to score")
    return float(loglik / n_observed)
