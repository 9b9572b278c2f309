"""Masked-prediction estimator for HMMs with categorical tokens."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from scipy.special import xlogy
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from .._statistics import categorical_counts
from .._validation import check_token_array
from ..extraction import extract_categorical, tensor_route
from ..models import CategoricalHMMModel
from ._base import _BaseMaskedHMM

__all__ = ["MaskedCategoricalHMM"]


def _counts_dict(X, positions, n_symbols):
    return {"counts": categorical_counts(X, positions, n_symbols)}


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
        :meth:`partial_fit`, since a later chunk may show new symbols, and
        when fitting a Dask array, whose largest symbol costs a pass over
        the data.
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
        ``"em"``: after extraction, run Baum-Welch on the training sequences
        from the extracted parameters, accelerated by SQUAREM with a
        likelihood safeguard, to convergence (in :meth:`fit` only;
        ``partial_fit`` keeps the statistics-only extraction so chunked fits
        equal ``fit``). The training log-likelihood never decreases.
        ``None`` refines only when the quality check fails (an extracted HMM
        scoring below the i.i.d. model, or degenerate), and says so.
    refine_iter : int, default=1000
        Maximum E-steps (forward-backward passes) of the refinement; a
        :class:`~sklearn.exceptions.ConvergenceWarning` says when it is hit.
    refine_tol : float, default=1e-7
        The refinement has converged when an accepted step gains less than
        this in training log-likelihood per observed token.
    refine_starts : int or "auto", default="auto"
        EM starts of the refinement: the extracted HMM and ``refine_starts - 1``
        others, alternately the unigram frequencies perturbed at random per
        state and hmmlearn's random initialisation. Every start runs 20
        E-steps, the more likely half twice as many more, and so on
        (successive halving) until one is left, which continues to
        convergence (EM climbs to the optimum of its start's basin).
        ``"auto"``: 16 starts below 1e3 observed training tokens, 8 below 1e4,
        4 below 1e5, 1 above. The tensor read-out is consistent, so on much
        data it starts in the best basin; on little data it is noisy,
        likelihoods have many basins, and extra starts cost little.
    check_identifiability : bool, default=True
        Whether each fit asks :func:`sk_maskid.identifiability.fit_verdict`
        if the task identifies the model (free for the paper's tasks, one
        bounded Jacobian otherwise); False skips it (``identifiable_`` None).
    chunk_size : int, default=100_000
        Windows per chunk when accumulating the statistics: bounds memory.
    n_jobs : int, default=None
        Parallel jobs over chunks (joblib; ``None`` means 1 unless in a
        :func:`joblib.parallel_backend` context). Results do not depend on it.
    random_state : int, RandomState instance or None, default=None
        Seeds the random slice combinations and starts.
    verbose : int, default=0
        Verbosity: ``>= 1`` prints each stage (statistics, extraction, EM
        iterations with the per-token gain) on stderr.

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
    identifiable_ : bool or None
        Whether the task's predictor determines the HMM (the paper's
        verdict, or a numerical check); None when not checked.
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
    extraction_n_iter_ : int
        L-BFGS iterations of the extraction's final optimiser: predictor
        matching, or the polish of the tensor read-out under the task's
        log-loss (at most ``max_iter`` either way).
    n_iter_ : int
        E-steps of the EM refinement (0 without ``refine``).
    converged_ : bool
        Whether the last stage converged: the EM refinement, or without it
        the extraction's optimiser (False when a cap was hit, which a
        :class:`~sklearn.exceptions.ConvergenceWarning` also says).
    refine_history_ : list of float
        Training log-likelihood per observed token of the extracted model and
        of every accepted EM step (non-decreasing; empty without
        ``refine``).
    train_score_ : float
        Log-likelihood per observed token of the fitted HMM on (a sample of
        up to 2e5 tokens of) the data of the last ``fit``/``partial_fit``.
    iid_score_ : float
        The same for the i.i.d. (1-state) model fitted to that sample. An
        extracted HMM scoring below it (or with degenerate parameters) is
        reported by an :class:`~sk_maskid.ExtractionWarning` and, in
        :meth:`fit`, refined by EM; a fit to data that are not an HMM may
        keep a large CP residual (``extraction_fit_error_``) and still beat
        it, which is not reported.
    n_features_in_ : int
        Padded length of the sequences seen during fit (later calls accept
        any length).

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
    _size_name = "n_symbols_"

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
        refine_iter=1000,
        refine_tol=1e-7,
        refine_starts="auto",
        check_identifiability=True,
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
            refine_tol=refine_tol,
            refine_starts=refine_starts,
            check_identifiability=check_identifiability,
            chunk_size=chunk_size,
            n_jobs=n_jobs,
            random_state=random_state,
            verbose=verbose,
        )
        self.n_features = n_features

    def _check_windows(self, X, reset, task, min_windows=1, largest=None):
        # Floats are accepted only when they hold whole numbers; -1 is masked.
        # ``largest``: the largest symbol of all the data when X is only its
        # first rows (a Dask array's).
        X = check_token_array(
            self, X, categorical=True, reset=reset, min_rows=min_windows
        )
        if reset:
            largest = int(X.max()) if largest is None else largest
            if self.n_features is None and largest < 0:
                raise ValueError("X has no observed symbol: every token is masked")
            d = self.n_features if self.n_features is not None else largest + 1
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

    def _dask_check_options(self, X, reset):
        if self.n_features is not None:
            return {}
        from .._dask import largest_symbol

        # one pass over the blocks; setting n_features saves it
        return {"largest": largest_symbol(X)}

    def _check_size(self, task, d):
        k = self.n_components
        if tensor_route(task) is not None and k > d:
            raise ValueError(
                f"n_components={k} is too large to be identifiable from "
                f"{d} symbols: the tensor route needs n_components <= n_symbols "
                "(the emission matrix must have full column rank)"
            )

    def _statistics(self, X, task, state):
        return self._sum_over_chunks(
            _counts_dict, X, task.positions, state["n_symbols_"]
        )

    def _start_statistics(self, X, state):
        first = X[:, 0]
        return np.bincount(first[first >= 0], minlength=state["n_symbols_"]).astype(
            float
        )

    def _iid_score(self, X):
        """Log-likelihood per token of the symbol frequencies (1 state)."""
        counts = np.bincount(X[X >= 0])
        return float(xlogy(counts, counts / counts.sum()).sum() / counts.sum())

    def _other_starts(self, model, X, n_starts, random_state):
        # Starts near the read-out fall back into its basin (measured: all of
        # them, on text). Other basins are reached from starts that ignore it:
        # alternately the unigram frequencies perturbed multiplicatively per
        # state (one unit on the log scale) and hmmlearn's random
        # initialisation (uniform random emissions, uniform transitions).
        k, d = model.emissionprob_.shape
        tokens = X[X >= 0]
        unigram = (np.bincount(tokens, minlength=d)[:d] + 1.0) / (tokens.size + d)

        def normalised(P):
            return P / P.sum(axis=1, keepdims=True)

        starts = []
        for i in range(n_starts):
            if i % 2 == 0:
                emission = normalised(
                    unigram * np.exp(random_state.standard_normal((k, d)))
                )
                transmat = normalised(
                    np.exp(0.5 * random_state.standard_normal((k, k)))
                )
            else:
                emission = normalised(random_state.uniform(size=(k, d)))
                transmat = np.full((k, k), 1.0 / k)
            starts.append(CategoricalHMMModel(np.full(k, 1.0 / k), transmat, emission))
        return starts

    def _n_emission_parameters(self):
        return self.n_components * (self.n_symbols_ - 1)

    def _extract(self, stats, task, state):
        return extract_categorical(
            stats["counts"],
            task,
            self.n_components,
            n_init=self.n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=self.random_state,
        )

    def predict(self, X, lengths=None):
        """The learned predictor's output for the task's target.

        Parameters
        ----------
        X : array-like or list of array-like
            Sequences in any input form of :meth:`fit`; only the task's
            observed positions (counted from each sequence's start) are read.
            Where one of them is masked, the extracted HMM's exact predictor
            of the remaining ones answers.
        lengths : array-like of int, default=None
            hmmlearn's sequence lengths for a concatenated ``X``.

        Returns
        -------
        ndarray of shape (n_sequences, target_dim)
            ``E[target | observed]``: probabilities over the target symbols
            (flattened row-major for tensor-product targets).
        """
        X, _ = self._check_sequences(X, lengths)
        X = self._task_rows(X)
        observed = X[:, [p - 1 for p in self.task_.observed]]
        d = self.n_symbols_
        index = np.ravel_multi_index(
            tuple(np.maximum(observed, 0).T), (d,) * len(self.task_.observed)
        )
        out = self.predictor_[index]
        masked = (observed < 0).any(axis=1)
        if masked.any():
            out[masked] = self.model_.conditional_expectation(self.task_, X[masked])
        return out

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
            # the log implementation never underflows on long sequences
            implementation="log",
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
