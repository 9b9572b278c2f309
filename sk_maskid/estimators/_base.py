"""The shared estimator: fit, partial_fit, scoring and the fitted-attribute contract.

Fitting is a two-step affair, as in the paper: (1) learn the masked predictor
as additive sufficient statistics of the windows (:meth:`_statistics`); (2)
read the HMM back out of them (:meth:`_extract`, which delegates to
:mod:`sk_maskid.extraction`). Because step (1) keeps only sums,
:meth:`partial_fit` over chunks equals :meth:`fit` on their concatenation.

A failed ``fit`` leaves a previously fitted estimator exactly as it was:
every attribute is restored when any step raises.
"""

from __future__ import annotations

import sys
import time
import warnings
from abc import ABCMeta, abstractmethod
from contextlib import contextmanager
from dataclasses import replace
from numbers import Integral, Real

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from .. import _dask
from .._dask import is_dask_array
from ..exceptions import ExtractionWarning, NonIdentifiabilityWarning
from ..extraction import PROB_FLOOR, start_distribution
from ..identifiability import fit_verdict
from ..refinement import baum_welch
from ..tasks import MaskedTask, parse_task
from ._inference import _InferenceMixin

# An extracted HMM is reported (and refined) when it scores below the
# i.i.d. model on its training data by more than this, per token.
_IID_MARGIN = 1e-3
# The quality check scores at most this many tokens, in rows cut to at most
# _SAMPLE_LENGTH tokens (the forward pass loops over time).
_SAMPLE_TOKENS = 200_000
_SAMPLE_LENGTH = 2_000


def _quality_sample(X):
    """The first rows of the data, cut short: a cheap stand-in for all of it.

    For a Dask array, this bounded slice is all of the data that comes to
    the client.
    """
    width = min(X.shape[1], _SAMPLE_LENGTH)
    rows = max(1, -(-_SAMPLE_TOKENS // width))
    sample = X[:rows, :width]
    return _dask.compute_sample(sample) if is_dask_array(sample) else sample


# scikit-learn's checks that build sequences of exactly 2 tokens.
_TWO_TOKEN_CHECKS = (
    "check_estimators_overwrite_params",
    "check_estimators_fit_returns_self",
    "check_readonly_memmap_input",
    "check_fit_idempotent",
    "check_fit_check_is_fitted",
    "check_n_features_in",
)


def expected_failed_checks(estimator):
    """scikit-learn estimator checks that cannot apply, with the reason.

    For :func:`sklearn.utils.estimator_checks.check_estimator` and
    ``parametrize_with_checks(..., expected_failed_checks=...)``.

    Parameters
    ----------
    estimator : MaskedCategoricalHMM, MaskedGaussianHMM or HMMLearnBaseline

    Returns
    -------
    dict
        ``{check name: reason}``.
    """
    agnostic = (
        "the model is window-length agnostic: sequences of any length are "
        "scored and transformed after fit, so a different number of columns "
        "is not an error"
    )
    checks = dict.fromkeys(
        (
            "check_n_features_in_after_fitting",
            "check_transformer_general",
            "check_transformer_general(readonly_memmap=True)",
            "check_transformer_data_not_an_array",
        ),
        agnostic,
    )
    if getattr(estimator, "refine", "em") is None:
        checks["check_transformer_n_iter"] = (
            "n_iter_ counts the EM refinement's E-steps: 0 without refine "
            "unless the quality check repairs the fit by EM (then this passes); "
            "the extraction's iterations are extraction_n_iter_"
        )
    task = getattr(estimator, "task", None)  # HMMLearnBaseline has none
    span = 2 if task is None else parse_task(task).span
    if span > 2:
        reason = (
            f"the check fits sequences of 2 tokens, shorter than task "
            f"{parse_task(task).spec!r}'s span of {span}"
        )
        checks.update(dict.fromkeys(_TWO_TOKEN_CHECKS, reason))
    return checks


def _model_attributes(model):
    """hmmlearn-named fitted attributes of an HMM model object."""
    attrs = {"model_": model}
    for name in ("startprob_", "transmat_", "emissionprob_", "means_", "covars_"):
        if hasattr(model, name):
            attrs[name] = getattr(model, name)
    return attrs


class _BaseMaskedHMM(_InferenceMixin, BaseEstimator, metaclass=ABCMeta):
    """Shared fit/partial_fit/predict/transform/score plumbing.

    Subclasses declare their token type and implement three hooks:

    * ``_check_windows(X, reset, task, min_windows)`` validates the windows
      and returns them with the *state*: the fitted attributes fixed by the
      data (alphabet size, token dimension, ...), named by ``_state_names``;
    * ``_statistics(X, task, state)`` returns additive sums over sub-windows
      (``_merge`` adds two of them);
    * ``_extract(stats, task, state)`` returns an
      :class:`~sk_maskid.extraction.Extraction`.
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "task": [str, MaskedTask],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "refine": [StrOptions({"em"}), None],
        "refine_iter": [Interval(Integral, 1, None, closed="left")],
        "refine_tol": [Interval(Real, 0, None, closed="left")],
        "refine_starts": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "check_identifiability": ["boolean"],
        "chunk_size": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    #: Token type, "categorical" or "gaussian" (messages, identifiability).
    _emission: str
    #: Fitted attributes set from the data by ``_check_windows``.
    _state_names: tuple[str, ...]
    #: The one of ``_state_names`` that is the token size (alphabet or dimension).
    _size_name: str

    def __init__(
        self,
        n_components,
        *,
        task,
        n_init,
        max_iter,
        tol,
        refine,
        refine_iter,
        refine_tol,
        refine_starts,
        check_identifiability,
        chunk_size,
        n_jobs,
        random_state,
        verbose,
    ):
        # The parameters both estimators share, stored unchanged (as
        # sklearn.mixture's BaseMixture does for its subclasses).
        self.n_components = n_components
        self.task = task
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.refine = refine
        self.refine_iter = refine_iter
        self.refine_tol = refine_tol
        self.refine_starts = refine_starts
        self.check_identifiability = check_identifiability
        self.chunk_size = chunk_size
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # -- subclass hooks ---------------------------------------------------
    @abstractmethod
    def _check_windows(self, X, reset, task, min_windows=1):
        """Validated windows and the data-dependent state ``{name: value}``."""

    @abstractmethod
    def _statistics(self, X, task, state):
        """Additive sufficient statistics of the windows (a dict)."""

    @abstractmethod
    def _extract(self, stats, task, state):
        """An :class:`~sk_maskid.extraction.Extraction` from the statistics."""

    @abstractmethod
    def _start_statistics(self, X, state):
        """Additive statistics of the sequences' first tokens."""

    def _dask_check_options(self, X, reset):
        """Keyword arguments of ``_check_windows`` that a Dask ``X`` needs.

        Its first rows are checked on the client; a state that depends on all
        of the data (the categorical alphabet) is computed here on the blocks.
        """
        return {}

    def _merge(self, old, new):
        """Statistics of the union of two chunks (a key may be in one only)."""
        merged = {**old, **new}
        for key in old.keys() & new.keys():
            merged[key] = self._combine(key, old[key], new[key])
        return merged

    def _combine(self, key, old, new):
        """One statistic of the union of two chunks: sums add up."""
        return old + new

    def _persistent_statistics(self, stats):
        """The part of ``stats`` kept as ``statistics_`` (bounded in size)."""
        return stats

    @abstractmethod
    def _other_starts(self, model, X, n_starts, random_state):
        """``n_starts`` EM starts unlike ``model``, drawn from the data ``X``."""

    def _refine_options(self):
        """Keyword arguments of :func:`~sk_maskid.refinement.baum_welch`."""
        return {"floor": PROB_FLOOR}

    # -- fitting ----------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, lengths=None):
        """Learn the masked predictor from sequences, then extract the HMM.

        Parameters
        ----------
        X : array-like, list of array-like or dask.array.Array
            Sequences in any of the input forms (see the user guide):
            windows or padded sequences, one row each; a list of sequences
            of any lengths; or hmmlearn's concatenated array with
            ``lengths``. A Dask array of windows or padded sequences is
            processed where its blocks live: only the statistics come back
            (see the "Scaling out" page). Every sub-window of length
            ``task.span`` along every sequence contributes; masked tokens
            drop out of the sub-windows they touch.
        y : None
            Ignored; present for API consistency (a ``y`` with one entry per
            sequence, as a Pipeline passes, is accepted and ignored).
        lengths : array-like of int, default=None
            hmmlearn's sequence lengths for a concatenated ``X``. When
            sequences are given (a list or ``lengths``), ``startprob_`` is
            estimated from their first tokens; for an array of windows it is
            the stationary distribution.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        with self._rollback_on_error():
            task = parse_task(self.task)
            X, layout, state = self._validate_fit(
                X, y, lengths, reset=True, task=task, min_rows=1
            )
            stats = self._timed_statistics(X, layout, task, state)
            pending = self._commit(stats, task, state, data=(X, layout), refinable=True)
        self._emit(self._short_sequence_warnings(layout, task) + pending, depth=2)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None, lengths=None):
        """Add a chunk of sequences to the statistics and re-extract.

        Statistics are sums over sub-windows, so any chunking of the data
        gives the same statistics, and the same extraction, as one
        :meth:`fit` on the concatenated chunks (EM runs in :meth:`fit` only:
        ``refine="em"``, or the repair of a read-out that fails the quality
        check, which is then only reported).

        Parameters
        ----------
        X : array-like, list of array-like or dask.array.Array
            A chunk of sequences, in any input form of :meth:`fit` (lengths
            may differ between chunks).
        y : None
            Ignored.
        lengths : array-like of int, default=None
            hmmlearn's sequence lengths for a concatenated ``X``.

        Returns
        -------
        self : object
        """
        with self._rollback_on_error():
            first = not hasattr(self, "statistics_")
            task = parse_task(self.task) if first else self.task_
            if not first and parse_task(self.task) != self.task_:
                raise ValueError(
                    f"task changed from {self.task_.spec!r} to {self.task!r} between "
                    "partial_fit calls; call fit to start over"
                )
            # a partial_fit chunk may hold a single sequence
            X, layout, state = self._validate_fit(
                X, y, lengths, reset=first, task=task, min_rows=1
            )
            stats = self._timed_statistics(X, layout, task, state)
            if not first:
                stats = self._merge(self.statistics_, stats)
            pending = self._commit(stats, task, state, data=(X, layout))
        self._emit(self._short_sequence_warnings(layout, task) + pending, depth=2)
        return self

    def _validate_fit(self, X, y, lengths, *, reset, task, min_rows):
        """Padded sequences, their layout and the data-dependent state."""
        if is_dask_array(X):  # validated lazily, block by block
            X, layout, state = _dask.validated(
                self, X, y, lengths, reset=reset, task=task
            )
        else:
            X, layout, state = self._validated(
                X, y, lengths, reset=reset, task=task, min_rows=min_rows
            )
        if X.shape[1] < task.span:
            raise ValueError(
                f"X has n_features={X.shape[1]} tokens per sequence but task "
                f"{task.spec!r} needs sequences of at least {task.span} tokens"
            )
        return X, layout, state

    @staticmethod
    def _short_sequence_warnings(layout, task):
        if isinstance(layout, _dask.DaskLayout):  # counted in the statistics pass
            short, total = layout.summary["short"], layout.summary["rows"]
        else:
            short = np.count_nonzero(layout.lengths < task.span)
            total = len(layout.lengths)
        if short * 2 <= total:
            return []
        return [
            (
                f"{short} of {total} sequences are shorter than the "
                f"task's span ({task.span} tokens) and contribute nothing to the "
                "statistics",
                ExtractionWarning,
            )
        ]

    def extract_parameters_(self):
        """Re-run the extraction from the stored statistics.

        Runs the tensor decomposition (or predictor matching) with the
        current ``n_init``, ``max_iter``, ``tol`` and ``random_state`` and
        stores ``startprob_``, ``transmat_``, the emission parameters and
        the diagnostics ``identifiable_``, ``extraction_fit_error_`` and
        ``extraction_condition_``. :meth:`fit` calls it; call it again to
        re-extract without touching the data.

        Returns
        -------
        self : object
        """
        check_is_fitted(self, "statistics_")
        with self._rollback_on_error():
            state = {name: getattr(self, name) for name in self._state_names}
            pending = self._commit(self.statistics_, self.task_, state)
        self._emit(pending, depth=1)
        return self

    @contextmanager
    def _rollback_on_error(self):
        """Restore every attribute if the block raises.

        ``validate_data`` resets ``n_features_in_`` before the task-specific
        checks can fail; a failed fit must not leave a half-updated model.
        """
        saved = dict(self.__dict__)
        try:
            yield
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    def _log(self, message):
        if self.verbose:
            print(f"[{type(self).__name__}] {message}", file=sys.stderr, flush=True)

    def _timed_statistics(self, X, layout, task, state):
        start = time.perf_counter()
        if is_dask_array(X):  # on the blocks' workers; only the sums come back
            stats = _dask.statistics(self, X, layout, task, state)
        else:
            stats = self._statistics(X, task, state)
        if layout.form != "array":
            # sequences, not windows cut from their middle: their starts
            # estimate startprob_
            stats["first"] = self._start_statistics(X, state)
        self._log(
            f"statistics of {X.shape[0]} sequences for task {task.spec!r} "
            f"({time.perf_counter() - start:.2f} s)"
        )
        return stats

    def _sum_over_chunks(self, function, X, *args):
        """Sum ``function(chunk, *args)`` over chunks of ``chunk_size`` windows.

        Chunks bound the memory of the statistics (a chunk's temporaries, not
        the whole data set's) and run in parallel with joblib, so a Dask or
        Ray joblib backend spreads them over a cluster. The chunking does not
        depend on ``n_jobs`` and the sums are taken in chunk order, so every
        ``n_jobs`` gives bit-identical statistics.
        """
        starts = range(0, len(X), self.chunk_size)
        parts = Parallel(n_jobs=self.n_jobs)(
            delayed(function)(X[start : start + self.chunk_size], *args)
            for start in starts
        )
        total = parts[0]
        for part in parts[1:]:
            total = self._merge(total, part)
        return total

    def _commit(self, stats, task, state, data=None, refinable=False):
        """Extract from ``stats`` and only then write the fitted attributes.

        ``data`` (padded sequences and their layout) is what this call saw:
        the quality check scores the extracted HMM on (a sample of) it
        against the i.i.d. model, and ``fit`` (``refinable``) refines on it.
        Returns the warnings to raise, as ``(message, category)`` pairs, for
        the public method to raise at the user's line.
        """
        start = time.perf_counter()
        # The extraction multiplies k x d matrices thousands of times: BLAS
        # threads only add overhead (measured 7.9 s instead of 0.25 s for one
        # text fit with OpenBLAS's 2 threads on a busy 2-core machine).
        with threadpool_limits(limits=1, user_api="blas"):
            result = self._extract(stats, task, state)
        if "first" in stats:
            result = replace(
                result,
                model=result.model.with_startprob(
                    start_distribution(result.model, stats["first"])
                ),
            )
        self._log(
            f"extraction: {result.method}, fit error {result.fit_error:.4g}, "
            f"{result.n_iter} iterations ({time.perf_counter() - start:.2f} s)"
        )
        identifiable, reason = self._identifiability(
            task, state, result.finite_ambiguity
        )
        attrs = {
            **_model_attributes(result.model),
            "identifiable_": identifiable,
            "identifiability_reason_": reason,
            "extraction_method_": result.method,
            "extraction_fit_error_": result.fit_error,
            "extraction_condition_": result.condition,
            "extraction_warnings_": list(result.messages),
            "extraction_n_iter_": result.n_iter,
            "n_iter_": 0,
            "converged_": result.converged,
            "refine_history_": [],
        }
        if result.predictor is not None:
            attrs["predictor_"] = result.predictor
        pending = []
        refine = self.refine == "em" and refinable
        attrs["train_score_"] = attrs["iid_score_"] = np.nan
        if data is not None:
            sample = _quality_sample(data[0])
            attrs["iid_score_"] = self._iid_score(sample)
            attrs["train_score_"] = result.model.score(sample)
            problems = self._quality_problems(
                result.model, sample, attrs["train_score_"], attrs["iid_score_"]
            )
            if problems:
                repair = "; refined by EM" if refinable and not refine else ""
                pending.append(
                    (
                        "the extracted HMM " + "; ".join(problems) + repair,
                        ExtractionWarning,
                    )
                )
                refine = refinable
        if refine:
            refined_attrs, refine_pending = self._refine(result.model, data)
            attrs.update(refined_attrs)
            pending += refine_pending
            attrs["train_score_"] = attrs["model_"].score(sample)
        attrs.update(state)
        attrs["statistics_"] = self._persistent_statistics(stats)
        attrs["task_"] = task
        for name, value in attrs.items():
            setattr(self, name, value)
        # a converged EM refinement replaces the read-out: the extraction's
        # optimiser cap no longer bears on the returned parameters
        superseded = bool(attrs["refine_history_"]) and bool(attrs["converged_"])
        return (
            self._pending_warnings(result, task, identifiable, reason, superseded)
            + pending
        )

    def _refine(self, model, data):
        """EM from the extracted model: the attributes to update, and warnings."""
        X, layout = data
        starts = [model]
        n_starts = self.refine_starts
        if n_starts == "auto":
            if isinstance(layout, _dask.DaskLayout):
                n_tokens = layout.summary["observed"]  # counted with the statistics
            else:
                n_tokens = np.count_nonzero(~model._masked(X)) if X.size else 0
            # below 1e3, 1e4, 1e5 observed tokens: 16, 8, 4 starts; then 1
            band = int(np.searchsorted((1e3, 1e4, 1e5), n_tokens, side="right"))
            n_starts = (16, 8, 4, 1)[band]
        if n_starts > 1:
            random_state = check_random_state(self.random_state)
            sample = _quality_sample(X)
            starts += self._other_starts(model, sample, n_starts - 1, random_state)
        refined = baum_welch(
            starts,
            X,
            lengths=layout.lengths,
            n_iter=self.refine_iter,
            tol=self.refine_tol,
            n_jobs=self.n_jobs,
            verbose=self.verbose,
            **self._refine_options(),
        )
        attrs = {
            **_model_attributes(refined.model),
            "n_iter_": refined.n_iter,
            "converged_": refined.converged,
            "refine_history_": refined.history,
        }
        pending = []
        if not refined.converged:
            pending.append(
                (
                    f"EM refinement stopped at refine_iter={self.refine_iter} "
                    "E-steps before the gain per token fell below "
                    f"refine_tol={self.refine_tol:g}; raise refine_iter",
                    ConvergenceWarning,
                )
            )
        return attrs, pending

    def _pending_warnings(self, result, task, identifiable, reason, superseded):
        pending = [(message, ExtractionWarning) for message in result.messages]
        if not result.converged and not superseded:
            pending.append(
                (
                    f"the extraction's optimiser stopped at max_iter={self.max_iter} "
                    "iterations before converging; raise max_iter",
                    ConvergenceWarning,
                )
            )
        if identifiable is False:
            pending.append(
                (
                    f"task {task.spec!r} does not identify a "
                    f"{self.n_components}-state {self._emission} HMM: {reason}. "
                    "The extracted parameters are one HMM consistent with the "
                    "fitted predictor.",
                    NonIdentifiabilityWarning,
                )
            )
        return pending

    def _quality_problems(self, model, sample, score, iid_score):
        """What makes an extracted HMM worse than useless, in words.

        ``score`` and ``iid_score`` are the model's and the i.i.d. model's
        log-likelihood per token on ``sample``. A fit to data that are not an
        HMM can leave a large CP residual and still beat the i.i.d. model:
        that is a useful fit, not a problem.
        """
        problems = []
        if not score >= iid_score - _IID_MARGIN:
            problems.append(
                f"scores {score:.4g} per token on the training data, below the "
                f"i.i.d. (1-state) model's {iid_score:.4g}"
            )
        return problems + self._degenerate_parameters(model, sample)

    def _degenerate_parameters(self, model, sample):
        """Parameters at floors or absurd scales (token-type specific)."""
        return []

    @staticmethod
    def _emit(pending, depth):
        """Raise the pending warnings at the user's line.

        ``depth`` counts the frames between the public method and its caller
        (2 under scikit-learn's ``_fit_context`` wrapper, 1 otherwise).
        """
        for message, category in pending:
            warnings.warn(message, category, stacklevel=depth + 2)

    def _verdict_options(self, state):
        """Keyword arguments of :func:`fit_verdict` beyond the sizes."""
        return {}

    def _identifiability(self, task, state, finite_ambiguity):
        """``(identifiable, reason)``: True, False or None (not checked)."""
        if not self.check_identifiability:
            return None, "not checked (check_identifiability=False)"
        verdict = fit_verdict(
            task.spec,
            self._emission,
            self.n_components,
            state[self._size_name],
            **self._verdict_options(state),
        )
        if verdict.identifiable is None:
            return None, f"not checked: {verdict.reason}"
        if not verdict.identifiable:
            return False, verdict.reason
        if finite_ambiguity:
            return False, (
                "the predictor sees the transition matrix only through a power "
                "T^g, whose roots are a finite ambiguity"
            )
        return True, verdict.reason

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags
