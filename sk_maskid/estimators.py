"""Masked-prediction estimators that read the HMM back out of the predictor.

``MaskedCategoricalHMM`` and ``MaskedGaussianHMM`` learn the optimal
predictor of one masked-prediction task from windows of a sequence, then
extract ``startprob_``, ``transmat_`` and ``emissionprob_`` / ``means_`` +
``covars_`` (hmmlearn's names and orientation) from it.

Fitting is a two-step affair, as in the paper: (1) learn the masked predictor
(counting for categorical tokens, which *is* the squared-loss optimum;
cross-moments or the tied posterior form for Gaussian tokens); (2)
:meth:`extract_parameters_` decomposes it. Step (1) keeps only additive
sufficient statistics, so :meth:`partial_fit` over chunks equals :meth:`fit`
on their concatenation.

A failed ``fit`` leaves a previously fitted estimator untouched: every new
attribute is computed first and assigned only once everything succeeded.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._validation import check_categorical_sequences, check_gaussian_sequences
from .exceptions import ExtractionWarning, NonIdentifiabilityWarning
from .extraction import (
    cp_decompose,
    fit_gaussian_posterior,
    match_categorical_predictor,
    polish_tensor_readout,
    project_simplex,
    readout_categorical,
    readout_gaussian,
)
from .identifiability import _cached_null_dimension
from .models import (
    CategoricalHMMModel,
    GaussianHMMModel,
    _smooth,
    _stationary,
)
from .refinement import baum_welch
from .tasks import (
    MaskedTask,
    _categorical_counts,
    _gaussian_moments,
    _sub_window_offsets,
    parse_task,
)

__all__ = ["MaskedCategoricalHMM", "MaskedGaussianHMM"]

# ALS tolerance before the categorical log-loss polish. ALS only selects the
# basin; the polish is the estimator. k=4, d=12, 1e6 tokens, 10 models: the
# median fit went 0.40 -> 0.31 s (slowest 0.86 -> 0.45 s) at the same errors
# (1e-6 let one emission error past 0.01).
_ALS_TOL = 1e-7

# Diagnostics beyond which extraction is reported as unreliable.
_MAX_FIT_ERROR = 0.25
_MIN_CONDITION = 1e-3


_RANK_RTOL = 1e-10


def _unfolding_rank(tensor):
    """Smallest numerical rank over the mode unfoldings of a 3-way tensor.

    A CP decomposition of rank k needs every unfolding to have rank >= k;
    constant or too-regular data (one symbol, one repeated token) fall short.
    """
    ranks = []
    for mode in range(tensor.ndim):
        unfolded = np.moveaxis(tensor, mode, 0).reshape(tensor.shape[mode], -1)
        sv = np.linalg.svd(unfolded, compute_uv=False)
        ranks.append(int(np.count_nonzero(sv > _RANK_RTOL * sv[0])) if sv[0] > 0 else 0)
    return min(ranks)


def _thin_message(n, n_statistics):
    return (
        f"only {int(n)} sub-windows for {n_statistics} statistics: the estimates "
        "will be very noisy"
    )


def _rank_message(rank, k):
    return (
        f"the statistics have rank {rank} < n_components={k} (constant or "
        "too regular sequences): the data support at most "
        f"{max(rank, 1)} states, so the extracted HMM is a placeholder"
    )


def _counts_dict(X, positions, n_symbols):
    return {"counts": _categorical_counts(X, positions, n_symbols)}


def _observed_windows(index, task, d):
    """Windows holding the observed-symbol combinations ``index`` (row-major).

    The task's observed positions get the symbols, every other position -1
    (masked): the form both predictor matching and the model expect.
    """
    windows = -np.ones((len(index), task.span), dtype=np.intp)
    combos = np.unravel_index(index, (d,) * len(task.observed))
    windows[:, [p - 1 for p in task.observed]] = np.array(combos).T
    return windows


def _check_span(X, task):
    if X.shape[1] < task.span:
        raise ValueError(
            f"windows have n_features={X.shape[1]} tokens but task {task.spec!r} "
            f"needs windows of at least {task.span} tokens"
        )


def _cp_route(task):
    """Positions ``(s1, s2, s3)`` if the tensor route applies, else None.

    It applies when one token is observed and the single target is the
    tensor product of two others: the predictor stacked over the observed
    value is then a rank-k CP tensor.
    """
    if len(task.observed) == 1 and len(task.targets) == 1 and len(task.targets[0]) == 2:
        return task.positions
    return None


class _BaseMaskedHMM(TransformerMixin, BaseEstimator):
    """Shared fit/partial_fit/predict/transform/score plumbing."""

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "task": [str, MaskedTask],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "refine": [StrOptions({"em"}), None],
        "refine_iter": [Interval(Integral, 1, None, closed="left")],
        "chunk_size": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    _emission = None  # "categorical" or "gaussian"

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
        self.chunk_size = chunk_size
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # -- subclass hooks ---------------------------------------------------
    def _check_windows(self, X, reset, task, min_windows=1):  # pragma: no cover
        raise NotImplementedError

    def _statistics(self, X, task, state):  # pragma: no cover - abstract
        raise NotImplementedError

    def _extract(self, stats, task, state, warm):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- fitting ----------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the masked predictor from windows, then extract the HMM.

        Parameters
        ----------
        X : array-like
            Windows of consecutive tokens; every sub-window of length
            ``task.span`` contributes (the process is stationary).
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        task = parse_task(self.task)
        X, state = self._check_windows(X, reset=True, task=task, min_windows=2)
        stats = self._statistics(X, task, state)
        self._commit(stats, task, state, warm=False, windows=X)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Add a chunk of windows to the statistics and re-extract.

        Statistics are sums over sub-windows, so any chunking of the data
        gives the same statistics as one :meth:`fit`.

        Parameters
        ----------
        X : array-like
            A chunk of windows, of the same window length as earlier chunks.
        y : None
            Ignored.

        Returns
        -------
        self : object
        """
        first = not hasattr(self, "statistics_")
        task = parse_task(self.task) if first else self.task_
        if not first and parse_task(self.task) != self.task_:
            raise ValueError(
                f"task changed from {self.task_.spec!r} to {self.task!r} between "
                "partial_fit calls; call fit to start over"
            )
        X, state = self._check_windows(X, reset=first, task=task)
        stats = self._statistics(X, task, state)
        if not first:
            stats = self._merge(self.statistics_, stats)
        self._commit(stats, task, state, warm=not first)
        return self

    def _merge(self, old, new):
        return {key: old[key] + new[key] for key in old}

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

    def _commit(self, stats, task, state, warm=False, windows=None):
        """Extract from ``stats`` and only then write the fitted attributes.

        ``warm`` lets an iterative extraction continue from the current fit
        (partial_fit); ``fit`` never depends on a previous fit. ``windows``
        are the training windows, given by ``fit`` for EM refinement.
        """
        attrs = self._extract(stats, task, state, warm)
        attrs["refine_iter_"] = 0
        attrs["refine_history_"] = []
        if self.refine == "em" and windows is not None:
            attrs.update(self._refine(attrs["model_"], windows))
        attrs.update(state)
        # keys starting with "_" are data handed to _extract (the Gaussian
        # posterior form's pairs), not statistics to keep
        attrs["statistics_"] = {k: v for k, v in stats.items() if not k.startswith("_")}
        attrs["task_"] = task
        for name, value in attrs.items():
            setattr(self, name, value)
        self._warn(attrs)

    def _refine(self, model, windows):
        """Baum-Welch from the extracted HMM; returns the attributes to update."""
        model, history = baum_welch(
            model,
            windows,
            n_iter=self.refine_iter,
            tol=_REFINE_TOL,
            min_covar=getattr(self, "min_covar", 1e-3),
            floor=_PROB_FLOOR,
        )
        attrs = {
            "model_": model,
            "startprob_": model.startprob_,
            "transmat_": model.transmat_,
            "refine_iter_": len(history) - 1,
            "refine_history_": history,
        }
        for name in ("emissionprob_", "means_", "covars_"):
            if hasattr(model, name):
                attrs[name] = getattr(model, name)
        return attrs

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
        state = {k: getattr(self, k) for k in self._state_names}
        self._commit(self.statistics_, self.task_, state, warm=False)
        return self

    def _warn(self, attrs):
        for message in attrs["extraction_warnings_"]:
            warnings.warn(message, ExtractionWarning, stacklevel=3)
        if not attrs["identifiable_"]:
            warnings.warn(
                f"task {attrs['task_'].spec!r} does not identify a "
                f"{self.n_components}-state {self._emission} HMM: "
                f"{attrs['identifiability_reason_']}. The extracted parameters "
                "are one HMM consistent with the fitted predictor.",
                NonIdentifiabilityWarning,
                stacklevel=3,
            )
        if attrs["extraction_method_"] == "cp" and (
            attrs["extraction_fit_error_"] > _MAX_FIT_ERROR
            or attrs["extraction_condition_"] < _MIN_CONDITION
        ):
            warnings.warn(
                "the tensor decomposition looks unreliable (relative fit error "
                f"{attrs['extraction_fit_error_']:.3g}, condition "
                f"{attrs['extraction_condition_']:.3g}); more data or fewer "
                "n_components may help",
                ExtractionWarning,
                stacklevel=3,
            )

    def _identifiability(self, task, n_features, finite_ambiguity):
        """``(identifiable, reason)`` for this task and model size."""
        k = self.n_components
        null = _cached_null_dimension(task.spec, self._emission, k, n_features)
        if null > 0:
            return False, (
                f"the predictor's Jacobian has a {null}-dimensional null space, "
                "a continuum of HMMs gives the same predictor"
            )
        if finite_ambiguity:
            return False, (
                "the predictor sees the transition matrix only through a power "
                "T^g, whose roots are a finite ambiguity"
            )
        return True, "the predictor's Jacobian has full rank"

    # -- prediction -------------------------------------------------------
    def _check_predict_windows(self, X):
        check_is_fitted(self, "statistics_")
        X, _ = self._check_windows(X, reset=False, task=self.task_)
        return X

    def transform(self, X):
        """Posterior over hidden states at the task's first target position.

        Computed under the extracted HMM from the task's observed tokens
        only, so the estimator is a self-supervised feature extractor.

        Parameters
        ----------
        X : array-like
            Windows, as in :meth:`fit`.

        Returns
        -------
        ndarray of shape (n_windows, n_components)
        """
        X = self._check_predict_windows(X)
        B = self.model_._task_emissions(self.task_, X)
        gamma = _smooth(self.model_.startprob_, self.model_.transmat_, B)[3]
        return gamma[:, self.task_.targets[0][0] - 1]

    def score(self, X, y=None):
        """Mean log-likelihood per token of the windows under the extracted HMM.

        Task-independent, so grid searches can compare masking schemes and
        numbers of states on one scale.

        Parameters
        ----------
        X : array-like
            Windows, as in :meth:`fit`.
        y : None
            Ignored.

        Returns
        -------
        float
        """
        X = self._check_predict_windows(X)
        return self.model_.score(X)

    def score_samples(self, X):
        """Log-likelihood of each window under the extracted HMM.

        Parameters
        ----------
        X : array-like
            Windows, as in :meth:`fit`.

        Returns
        -------
        ndarray of shape (n_windows,)
        """
        X = self._check_predict_windows(X)
        return self.model_.log_likelihood(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags


class MaskedCategoricalHMM(_BaseMaskedHMM):
    """Masked-prediction estimator for HMMs with categorical tokens.

    The predictor of the task is learned by counting (for one-hot tokens the
    table of conditional frequencies is the exact squared-loss optimum), then
    the HMM is extracted: by CP decomposition for tasks that predict the
    tensor product of two tokens from a third (``"1->2*3"``, ``"2->1*3"``),
    which identify the model when ``n_components <= n_symbols``; by
    predictor matching otherwise.

    Parameters
    ----------
    n_components : int, default=2
        Number of hidden states (hmmlearn's name).
    task : str or MaskedTask, default="1->2*3"
        Masked-prediction task, e.g. ``"1->2"``, ``"1,3->2"``, ``"1->2*3"``.
    n_features : int, default=None
        Alphabet size (hmmlearn's name). ``None`` infers it from the first
        fit as the largest symbol plus one; set it when streaming chunks with
        :meth:`partial_fit`, since a later chunk may show new symbols.
    n_init : int, default=5
        Starts of the decomposition (Jennrich + ALS) or of predictor matching;
        the best is kept.
    max_iter : int, default=500
        Iterations per start (ALS or L-BFGS).
    tol : float, default=1e-10
        Stopping tolerance per start. The ALS before the log-loss polish of
        a tensor task stops at ``max(tol, 1e-7)``: it only has to find the
        basin the polish then descends.
    refine : {"em"} or None, default=None
        ``"em"``: after extraction, run Baum-Welch on the training windows
        from the extracted parameters (in :meth:`fit` only; ``partial_fit``
        keeps the statistics-only extraction so chunked fits equal ``fit``).
        The training log-likelihood never decreases.
    refine_iter : int, default=20
        Maximum EM iterations of the refinement.
    chunk_size : int, default=100_000
        Windows per chunk when accumulating the statistics: bounds memory.
    n_jobs : int, default=None
        Parallel jobs over chunks (joblib; ``None`` means 1 unless in a
        :func:`joblib.parallel_backend` context). Results do not depend on it.
    random_state : int, RandomState instance or None, default=None
        Seeds the random slice combinations and starts.
    verbose : int, default=0
        Verbosity (reserved; extraction is quiet).

    Attributes
    ----------
    startprob_ : ndarray of shape (n_components,)
        Stationary distribution of the extracted chain.
    transmat_ : ndarray of shape (n_components, n_components)
        ``transmat_[i, j] = P(h_{t+1} = j | h_t = i)``.
    emissionprob_ : ndarray of shape (n_components, n_symbols)
        ``emissionprob_[i, s] = P(x_t = s | h_t = i)``.
    model_ : CategoricalHMMModel
        The extracted HMM.
    predictor_ : ndarray of shape (n_symbols ** n_observed, target_dim)
        Learned predictor, one row per combination of observed symbols
        (row-major); rows never seen in training hold the extracted HMM's
        prediction.
    statistics_ : dict
        ``{"counts": joint counts of the task's positions}``, summed over
        sub-windows (additive across chunks).
    task_ : MaskedTask
        Parsed task.
    n_symbols_ : int
        Alphabet size.
    identifiable_ : bool
        Whether the task's predictor determines the HMM (numerical check).
    identifiability_reason_ : str
        Why.
    extraction_method_ : {"cp", "predictor matching"}
        "cp" for tensor tasks; tensor tasks whose statistics have rank below
        ``n_components`` fall back on predictor matching.
    extraction_warnings_ : list of str
        Problems found in the data (never-seen symbols, too few sub-windows,
        rank-deficient statistics); each was also raised as an
        :class:`~sk_maskid.ExtractionWarning`.
    extraction_fit_error_ : float
        Relative reconstruction error of the CP decomposition, or the excess
        cross-entropy of predictor matching.
    extraction_condition_ : float
        Smallest singular value of the column-normalised CP factors (NaN for
        predictor matching).
    n_iter_ : int
        L-BFGS iterations of the final optimiser: predictor matching, or the
        polish of the tensor read-out under the task's log-loss (at most
        ``max_iter`` either way).
    refine_iter_ : int
        EM iterations kept by ``refine="em"`` (0 without refinement).
    refine_history_ : list of float
        Training log-likelihood before and after each kept EM iteration.
    n_features_in_ : int
        Window length seen during fit.

    See Also
    --------
    MaskedGaussianHMM : The same for Gaussian tokens.

    Examples
    --------
    >>> from sk_maskid import MaskedCategoricalHMM, make_categorical_hmm
    >>> true = make_categorical_hmm(3, 6, random_state=0)
    >>> X = true.sample(20000, 5, random_state=0)
    >>> est = MaskedCategoricalHMM(n_components=3, random_state=0).fit(X)
    >>> est.transmat_.shape
    (3, 3)
    """

    _parameter_constraints: dict = {
        **_BaseMaskedHMM._parameter_constraints,
        "n_features": [Interval(Integral, 1, None, closed="left"), None],
    }
    _emission = "categorical"
    _state_names = ("n_symbols_",)

    def __init__(
        self,
        n_components=2,
        *,
        task="1->2*3",
        n_features=None,
        n_init=5,
        max_iter=500,
        tol=1e-10,
        refine=None,
        refine_iter=20,
        chunk_size=100_000,
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        super().__init__(
            n_components,
            task=task,
            n_init=n_init,
            max_iter=max_iter,
            tol=tol,
            refine=refine,
            refine_iter=refine_iter,
            chunk_size=chunk_size,
            n_jobs=n_jobs,
            random_state=random_state,
            verbose=verbose,
        )
        self.n_features = n_features

    def _check_windows(self, X, reset, task, min_windows=1):
        # fit needs two windows at least; a partial_fit chunk may hold one
        X = validate_data(
            self, X, reset=reset, dtype=None, ensure_min_samples=min_windows
        )
        # Floats are accepted only when they hold whole numbers.
        X = check_categorical_sequences(X, allow_masked=False)
        _check_span(X, task)
        if reset:
            d = self.n_features if self.n_features is not None else int(X.max()) + 1
            self._check_size(task, d)
        else:
            d = self.n_symbols_
        if X.max() >= d:
            raise ValueError(
                f"X has symbol {X.max()} out of range: expected symbols 0..{d - 1} "
                f"(n_symbols={d}"
                + (
                    ", inferred at the first fit; set n_features to stream chunks"
                    if self.n_features is None
                    else ""
                )
                + ")"
            )
        return X, {"n_symbols_": d}

    def _check_size(self, task, d):
        k = self.n_components
        if _cp_route(task) is not None and k > d:
            raise ValueError(
                f"n_components={k} is too large to be identifiable from "
                f"{d} symbols: the tensor route needs n_components <= n_symbols "
                "(the emission matrix must have full column rank)"
            )

    def _statistics(self, X, task, state):
        return self._sum_over_chunks(
            _counts_dict, X, task.positions, state["n_symbols_"]
        )

    def _predictor_table(self, counts, task, d):
        """Conditional tables per target from the joint counts.

        Returns ``(table, seen, weights)``: ``table`` is ``(d**m_obs,
        target_dim)``, ``seen`` marks observed combinations with data,
        ``weights`` their frequencies.
        """
        positions = task.positions
        obs_axes = [positions.index(p) for p in task.observed]
        n_obs = d ** len(task.observed)
        tables = []
        for target in task.targets:
            axes = obs_axes + [positions.index(p) for p in target]
            drop = tuple(i for i in range(len(positions)) if i not in axes)
            marginal = counts.sum(axis=drop) if drop else counts
            # order the remaining axes as (observed..., target in spelled order)
            kept = sorted(axes)
            marginal = np.transpose(marginal, [kept.index(a) for a in axes])
            tables.append(marginal.reshape(n_obs, -1))
        totals = tables[0].sum(axis=1)
        seen = totals > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            table = np.hstack([t / totals[:, None] for t in tables])
        return table, seen, totals / totals.sum()

    def _extract(self, stats, task, state, warm):
        d = state["n_symbols_"]
        k = self.n_components
        counts = stats["counts"]
        rng = check_random_state(self.random_state)
        if counts.sum() == 0:
            raise ValueError("no complete window to learn from")
        messages = []
        axes = range(counts.ndim)
        present = np.zeros(d, dtype=bool)
        for axis in axes:
            present |= counts.sum(axis=tuple(a for a in axes if a != axis)) > 0
        if not present.all():
            messages.append(
                f"symbol(s) {np.flatnonzero(~present).tolist()} never observed: "
                "their emission probabilities are at the floor "
                f"{_PROB_FLOOR:g}"
            )
        if counts.sum() < counts.size:
            messages.append(_thin_message(counts.sum(), counts.size))
        route = _cp_route(task)
        finite_ambiguity = False
        if route is not None and k > 1:
            rank = _unfolding_rank(counts)
            if rank < k:
                messages.append(_rank_message(rank, k))
                route = None  # no CP of rank k exists: fall back to matching
        joint = counts / counts.sum()
        if route is not None:
            cp = cp_decompose(
                joint,
                k,
                n_init=self.n_init,
                max_iter=self.max_iter,
                tol=max(self.tol, _ALS_TOL),
                random_state=rng,
            )
            out = readout_categorical(cp, route)
            finite_ambiguity = out["finite_ambiguity"]
            # The CP read-out (least squares) is identifiable but not
            # efficient; polishing it under the task's own log-loss keeps its
            # basin and lowers the error (see the module docstring).
            start = (_floor(out["transmat"]), _floor(out["emissionprob"]))
            method, fit_error, condition = "cp", cp.fit_error, cp.condition
        else:
            start = None
            method, condition = "predictor matching", np.nan
        table, seen, weights = self._predictor_table(counts, task, d)
        if start is not None:
            out = polish_tensor_readout(
                joint,
                route,
                task.observed[0],
                *start,
                max_iter=self.max_iter,
                tol=self.tol,
            )
        else:
            out = match_categorical_predictor(
                task,
                _observed_windows(np.flatnonzero(seen), task, d),
                table[seen],
                weights[seen],
                k,
                d,
                n_init=self.n_init,
                max_iter=self.max_iter,
                tol=self.tol,
                random_state=rng,
            )
        transmat, emission = out["transmat"], out["emissionprob"]
        n_iter = out["n_iter"]
        if start is None:
            fit_error = out["loss"]
        transmat, emission = _floor(transmat), _floor(emission)
        startprob = _stationary_or_uniform(transmat)
        model = CategoricalHMMModel(startprob, transmat, emission)
        if not seen.all():
            # Unseen inputs: fall back on the extracted HMM's exact predictor.
            table[~seen] = model.conditional_expectation(
                task, _observed_windows(np.flatnonzero(~seen), task, d)
            )
        identifiable, reason = self._identifiability(task, d, finite_ambiguity)
        return {
            "extraction_warnings_": messages,
            "startprob_": startprob,
            "transmat_": transmat,
            "emissionprob_": emission,
            "model_": model,
            "predictor_": table,
            "identifiable_": identifiable,
            "identifiability_reason_": reason,
            "extraction_method_": method,
            "extraction_fit_error_": float(fit_error),
            "extraction_condition_": float(condition),
            "n_iter_": int(n_iter),
        }

    def predict(self, X):
        """The learned predictor's output for the task's target.

        Parameters
        ----------
        X : array-like of shape (n_windows, window_length)
            Windows; only the task's observed positions are read.

        Returns
        -------
        ndarray of shape (n_windows, target_dim)
            ``E[target | observed]``: probabilities over the target symbols
            (flattened row-major for tensor-product targets).
        """
        X = self._check_predict_windows(X)
        d = self.n_symbols_
        index = np.zeros(len(X), dtype=np.intp)
        for p in self.task_.observed:
            index = index * d + X[:, p - 1]
        return self.predictor_[index]

    def to_hmmlearn(self):
        """An hmmlearn ``CategoricalHMM`` holding the extracted parameters.

        Returns
        -------
        hmmlearn.hmm.CategoricalHMM
            With ``init_params=""`` so a later ``fit`` refines these values.
        """
        check_is_fitted(self, "statistics_")
        from hmmlearn.hmm import CategoricalHMM

        hmm = CategoricalHMM(
            n_components=self.n_components,
            n_features=self.n_symbols_,
            init_params="",
            implementation="scaling",
            random_state=self.random_state,
        )
        hmm.startprob_ = self.startprob_
        hmm.transmat_ = self.transmat_
        hmm.emissionprob_ = self.emissionprob_
        return hmm

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = True
        tags.input_tags.positive_only = True
        return tags


_PROB_FLOOR = 1e-6
# EM stops when the mean log-likelihood per token gains less than this
# (0.01 nats in total on 1e6 tokens).
_REFINE_TOL = 1e-8


def _floor(P):
    """Lift exact zeros left by the simplex projection to ``_PROB_FLOOR``.

    A zero emission probability makes one held-out symbol an impossible
    event (log-likelihood -inf), which breaks scoring and model selection;
    the change to any entry is at most ``_PROB_FLOOR``.
    """
    P = np.maximum(P, _PROB_FLOOR)
    return P / P.sum(axis=1, keepdims=True)


def _stationary_or_uniform(transmat):
    """Stationary distribution; uniform if the extracted chain is reducible."""
    try:
        pi = np.real(_stationary(transmat))
    except np.linalg.LinAlgError:
        pi = None
    if pi is None or not np.all(np.isfinite(pi)) or pi.min() < -1e-9:
        return np.full(len(transmat), 1.0 / len(transmat))
    return project_simplex(pi[None])[0]


class MaskedGaussianHMM(_BaseMaskedHMM):
    """Masked-prediction estimator for HMMs with Gaussian tokens.

    Two predictors, chosen by ``predictor``:

    * ``"moments"`` (tensor tasks such as ``"1->2*3"``): the predictor of the
      tensor product is summarised by the cross-moment tensor
      ``E[x~_{s1} ⊗ x~_{s2} ⊗ x~_{s3}]`` of augmented tokens ``x~ = [x; 1]``,
      whose CP decomposition gives means and transitions; per-state variances
      come from ``E[x~_{s1} ⊗ x_{s2}^2]``.
    * ``"posterior"`` (one token from another, e.g. ``"1->2"``, ``"2->1"``,
      ``"1->3"``): the paper's tied parametric form
      ``E[x_b | x_a] = M T^g softmax(M^T x_a / s2 + b)``, fitted by L-BFGS
      from ``n_init`` k-means++ starts, with the variance pinned by the
      second moment (the predictor alone leaves a one-parameter family).

    Parameters
    ----------
    n_components : int, default=2
        Number of hidden states.
    task : str or MaskedTask, default="1->2*3"
        Masked-prediction task.
    predictor : {"auto", "moments", "posterior"}, default="auto"
        Predictor form; "auto" picks "moments" for tensor tasks and
        "posterior" for single-token tasks.
    covariance_type : {"spherical", "diag"}, default="diag"
        Form of ``covars_`` (hmmlearn's setter shapes). The posterior form
        estimates one shared variance.
    min_covar : float, default=1e-3
        Floor on the variances.
    n_init : int, default=5
        Starts of the decomposition or of L-BFGS; the best is kept.
    max_iter : int, default=500
        Iterations per start.
    tol : float, default=1e-10
        Stopping tolerance per start.
    refine : {"em"} or None, default=None
        ``"em"``: after extraction, run Baum-Welch on the training windows
        from the extracted parameters (in :meth:`fit` only; ``partial_fit``
        keeps the statistics-only extraction so chunked fits equal ``fit``).
        The training log-likelihood never decreases.
    refine_iter : int, default=20
        Maximum EM iterations of the refinement.
    chunk_size : int, default=100_000
        Windows per chunk when accumulating the statistics: bounds memory.
    n_jobs : int, default=None
        Parallel jobs over chunks (joblib; ``None`` means 1 unless in a
        :func:`joblib.parallel_backend` context). Results do not depend on it.
    random_state : int, RandomState instance or None, default=None
        Seeds starts and slice combinations.
    verbose : int, default=0
        Verbosity (reserved).

    Attributes
    ----------
    startprob_ : ndarray of shape (n_components,)
    transmat_ : ndarray of shape (n_components, n_components)
    means_ : ndarray of shape (n_components, n_token_features)
    covars_ : ndarray
        ``(n_components,)`` (spherical) or ``(n_components,
        n_token_features)`` (diag).
    model_ : GaussianHMMModel
    statistics_ : dict
        Additive sums (cross-moments and counts) for the moment route; for
        the posterior form, the number of pairs and ``sum ||x||^2``.
    task_ : MaskedTask
    n_token_features_ : int
        Token dimension.
    identifiable_, identifiability_reason_, extraction_fit_error_, \
extraction_condition_, extraction_warnings_, n_iter_, refine_iter_, \
refine_history_ :
        As in :class:`MaskedCategoricalHMM`; the posterior form reports its
        final squared loss as ``extraction_fit_error_``.
    extraction_method_ : {"cp", "posterior", "degenerate"}
        "degenerate" when the data support fewer than ``n_components``
        distinct states (e.g. constant tokens): every state then emits the
        token mean and variance, and an ExtractionWarning says so.
    n_features_in_ : int
        Window length seen during fit.

    See Also
    --------
    MaskedCategoricalHMM : The same for categorical tokens.
    """

    _parameter_constraints: dict = {
        **_BaseMaskedHMM._parameter_constraints,
        "predictor": [StrOptions({"auto", "moments", "posterior"})],
        "covariance_type": [StrOptions({"spherical", "diag"})],
        "min_covar": [Interval(Real, 0, None, closed="neither")],
    }
    _emission = "gaussian"
    _state_names = ("n_token_features_", "predictor_form_")

    def __init__(
        self,
        n_components=2,
        *,
        task="1->2*3",
        predictor="auto",
        covariance_type="diag",
        min_covar=1e-3,
        n_init=5,
        max_iter=500,
        tol=1e-10,
        refine=None,
        refine_iter=20,
        chunk_size=100_000,
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        super().__init__(
            n_components,
            task=task,
            n_init=n_init,
            max_iter=max_iter,
            tol=tol,
            refine=refine,
            refine_iter=refine_iter,
            chunk_size=chunk_size,
            n_jobs=n_jobs,
            random_state=random_state,
            verbose=verbose,
        )
        self.predictor = predictor
        self.covariance_type = covariance_type
        self.min_covar = min_covar

    def _resolve_predictor(self, task):
        route = _cp_route(task)
        form = self.predictor
        if form == "auto":
            form = "moments" if route is not None else "posterior"
        single = (
            len(task.observed) == 1
            and len(task.targets) == 1
            and len(task.targets[0]) == 1
        )
        if form == "moments" and route is None:
            raise ValueError(
                f"predictor='moments' needs a tensor task with one observed token "
                f"and a two-token product target (e.g. '1->2*3'), got {task.spec!r}"
            )
        if form == "posterior" and not single:
            raise ValueError(
                f"predictor='posterior' needs a one-token task such as '1->2', "
                f"got {task.spec!r}; Gaussian tokens support one-token tasks and "
                "tensor tasks with one observed token"
            )
        return form

    def _check_windows(self, X, reset, task, min_windows=1):
        X = validate_data(
            self,
            X,
            reset=reset,
            dtype="numeric",
            allow_nd=True,
            ensure_min_samples=min_windows,
        )
        X = check_gaussian_sequences(
            X, None if reset else self.n_token_features_, allow_masked=False
        )
        _check_span(X, task)
        if reset:
            form = self._resolve_predictor(task)
            d = X.shape[2]
            # With the constant coordinate x~ = [x; 1] the means need only be
            # affinely independent: at most d + 1 states. Whether a given
            # size is identified is then the numerical check's call.
            if self.n_components > d + 1:
                raise ValueError(
                    f"n_components={self.n_components} is too large to be "
                    f"identifiable from {d}-dimensional tokens: at most {d + 1} "
                    "states have affinely independent means"
                )
            return X, {"n_token_features_": d, "predictor_form_": form}
        return X, {
            "n_token_features_": self.n_token_features_,
            "predictor_form_": self.predictor_form_,
        }

    def _statistics(self, X, task, state):
        if state["predictor_form_"] == "moments":
            return self._sum_over_chunks(_gaussian_moments, X, task.positions)
        # The posterior form is fitted on data, not on sums; keep the sums
        # that pin the variance, and hand the (earlier, later) token pairs to
        # _extract. A backward task ("2->1") sees the same pairs: its HMM is
        # fitted through the forward form E[later | earlier].
        a, b = task.observed[0], task.targets[0][0]
        n_off = _sub_window_offsets(X.shape[1], max(a, b))
        lo = min(a, b) - 1
        gap = abs(b - a)
        starts = X[:, lo : lo + n_off].reshape(-1, X.shape[2])
        ends = X[:, lo + gap : lo + gap + n_off].reshape(-1, X.shape[2])
        return {
            "n": float(len(starts)),
            "sq": float(np.sum(X**2)),
            "n_tokens": float(X.shape[0] * X.shape[1]),
            "_pairs": (starts, ends),
        }

    def _merge(self, old, new):
        merged = super()._merge(old, new)
        if "_pairs" in new:  # the posterior form warm-starts on the new chunk
            merged["_pairs"] = new["_pairs"]
        return merged

    def extract_parameters_(self):  # noqa: D102 - documented on the base
        check_is_fitted(self, "statistics_")
        if self.predictor_form_ == "posterior":
            raise ValueError(
                "the posterior-form predictor is fitted on data; call fit or "
                "partial_fit to re-extract"
            )
        return super().extract_parameters_()

    extract_parameters_.__doc__ = _BaseMaskedHMM.extract_parameters_.__doc__

    def _extract(self, stats, task, state, warm):
        k = self.n_components
        d = state["n_token_features_"]
        rng = check_random_state(self.random_state)
        finite_ambiguity = False
        messages = []
        degenerate = False
        if state["predictor_form_"] == "moments":
            if stats["n"] < 1:
                raise ValueError("no complete window to learn from")
            if stats["n"] < stats["m3"].size:
                messages.append(_thin_message(stats["n"], stats["m3"].size))
            rank = _unfolding_rank(stats["m3"] / stats["n"])
            degenerate = rank < k
            if degenerate:
                messages.append(_rank_message(rank, k))
                mean = stats["m3"][-1, :-1, -1] / stats["n"]
                second = stats["m_sq"][-1] / stats["n"]
        else:
            earlier, later = stats["_pairs"]
            # observed tokens first: the k-means++ seeds depend on row order
            backward = task.targets[0][0] < task.observed[0]
            tokens = np.vstack([later, earlier] if backward else [earlier, later])
            mean, second = tokens.mean(axis=0), (tokens**2).mean(axis=0)
            spread = np.linalg.matrix_rank(
                tokens - mean, tol=1e-10 * (1 + np.abs(tokens).max())
            )
            degenerate = spread + 1 < k
            if degenerate:
                messages.append(_rank_message(spread + 1, k))
        if degenerate:
            # A placeholder HMM that is valid and honest about the data: every
            # state emits the token mean with the token variance.
            transmat = np.full((k, k), 1.0 / k)
            means = np.tile(mean, (k, 1))
            variances = np.tile(np.maximum(second - mean**2, self.min_covar), (k, 1))
            method, fit_error, condition, n_iter = "degenerate", np.nan, np.nan, 0
        elif state["predictor_form_"] == "moments":
            cp = cp_decompose(
                stats["m3"] / stats["n"],
                k,
                n_init=self.n_init,
                max_iter=self.max_iter,
                tol=self.tol,
                random_state=rng,
            )
            out = readout_gaussian(
                cp, task.positions, stats["m_sq"], stats["n"], self.min_covar
            )
            transmat, means, variances = out["transmat"], out["means"], out["variances"]
            finite_ambiguity = out["finite_ambiguity"]
            method, fit_error, condition = "cp", cp.fit_error, cp.condition
            n_iter = cp.n_iter
        else:
            init = self._init_means(tokens, rng, warm)
            gap = abs(task.targets[0][0] - task.observed[0])
            out = fit_gaussian_posterior(
                earlier,
                later,
                gap,
                k,
                m2=stats["sq"] / stats["n_tokens"],
                init_means=init,
                max_iter=self.max_iter,
                tol=self.tol,
            )
            transmat, means = out["transmat"], out["means"]
            variances = np.full((k, d), max(out["variance"], self.min_covar))
            finite_ambiguity = gap > 1
            method, fit_error, condition = "posterior", out["loss"], np.nan
            n_iter = out["n_iter"]
        transmat = _floor(transmat)
        startprob = _stationary_or_uniform(transmat)
        covars = (
            variances.mean(axis=1) if self.covariance_type == "spherical" else variances
        )
        model = GaussianHMMModel(
            startprob, transmat, means, covars, self.covariance_type
        )
        identifiable, reason = self._identifiability(task, d, finite_ambiguity)
        return {
            "extraction_warnings_": messages,
            "startprob_": startprob,
            "transmat_": transmat,
            "means_": means,
            "covars_": covars,
            "model_": model,
            "identifiable_": identifiable,
            "identifiability_reason_": reason,
            "extraction_method_": method,
            "extraction_fit_error_": float(fit_error),
            "extraction_condition_": float(condition),
            "n_iter_": int(n_iter),
        }

    def _init_means(self, tokens, rng, warm):
        """k-means++ seeds on the tokens, one per start (+ the last fit if warm)."""
        from sklearn.cluster import kmeans_plusplus

        sample = tokens[
            rng.choice(len(tokens), min(len(tokens), 20_000), replace=False)
        ]
        starts = []
        if warm:
            starts.append(self.means_)  # partial_fit: continue from the last fit
        while len(starts) < self.n_init:
            centers, _ = kmeans_plusplus(
                sample, self.n_components, random_state=rng.randint(2**31 - 1)
            )
            starts.append(centers)
        return starts

    def predict(self, X):
        """The fitted predictor's output for the task's target.

        The Gaussian predictor is the extracted HMM's exact conditional
        expectation (the parametric form both predictors take).

        Parameters
        ----------
        X : array-like of shape (n_windows, window_length[, n_features])

        Returns
        -------
        ndarray of shape (n_windows, target_dim)
        """
        X = self._check_predict_windows(X)
        return self.model_.conditional_expectation(self.task_, X)

    def to_hmmlearn(self):
        """An hmmlearn ``GaussianHMM`` holding the extracted parameters.

        Returns
        -------
        hmmlearn.hmm.GaussianHMM
            With ``init_params=""`` so a later ``fit`` refines these values.
        """
        check_is_fitted(self, "statistics_")
        from hmmlearn.hmm import GaussianHMM

        hmm = GaussianHMM(
            n_components=self.n_components,
            covariance_type=self.covariance_type,
            init_params="",
            implementation="scaling",
            random_state=self.random_state,
        )
        hmm.n_features = self.n_token_features_
        hmm.startprob_ = self.startprob_
        hmm.transmat_ = self.transmat_
        hmm.means_ = self.means_
        hmm.covars_ = self.covars_
        return hmm
