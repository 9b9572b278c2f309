"""hmmlearn's EM (Baum-Welch) as a scikit-learn estimator on sequences.

The baseline the masked estimators are compared with, run fairly (the evaluation
protocol on the Theory page of the documentation): the fast
``implementation="scaling"``, many iterations, a tight tolerance, several random
restarts keeping the best training likelihood, and the real iteration count. hmmlearn is
an optional dependency (the ``test`` extra installs it).
"""

import copy
from numbers import Integral, Real

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._validation import check_token_array
from .models import CategoricalHMMModel, GaussianHMMModel
from .sequences import (
    SequenceLayout,
    as_padded,
    check_y_is_not_lengths,
)

__all__ = ["HMMLearnBaseline"]


def _fit_restart(emission, n_components, d, params, seed, flat, lengths):
    """One EM run from hmmlearn's random initialisation (a joblib task)."""
    from hmmlearn import hmm

    if emission == "categorical":
        model = hmm.CategoricalHMM(
            n_components, n_features=d, random_state=seed, **params
        )
    else:
        model = hmm.GaussianHMM(n_components, random_state=seed, **params)
    model.fit(flat, lengths)
    return model.score(flat, lengths), model


class HMMLearnBaseline(BaseEstimator):
    """Best-of-restarts hmmlearn EM on the same windows as the masked estimators.

    Parameters
    ----------
    n_components : int, default=2
        Number of hidden states.
    emission : {"categorical", "gaussian"}, default="categorical"
        Token type (``CategoricalHMM`` or ``GaussianHMM``).
    n_restarts : int, default=5
        Random restarts; the one with the best training log-likelihood is kept.
    n_iter : int, default=500
        Maximum EM iterations per restart.
    tol : float, default=1e-4
        EM stops when the training log-likelihood gains less than this.
    covariance_type : {"spherical", "diag"}, default="diag"
        Gaussian covariance form.
    n_jobs : int, default=None
        Restarts run in parallel with joblib (``None`` means 1 unless in a
        :func:`joblib.parallel_backend` context, ``-1`` all processors). The
        restarts' seeds are drawn first, so the result does not depend on it.
    random_state : int, RandomState instance or None, default=None
        Seeds the restarts.

    Attributes
    ----------
    startprob_, transmat_ : ndarray
    emissionprob_ : ndarray of shape (n_components, n_symbols)
        Categorical tokens only.
    means_, covars_ : ndarray
        Gaussian tokens only (``covars_`` in hmmlearn's setter shape).
    model_ : CategoricalHMMModel or GaussianHMMModel
    hmm_ : hmmlearn model
        The kept restart.
    n_iter_ : int
        EM iterations the kept restart ran.
    converged_ : bool
        True only if the tolerance was met, not when ``n_iter`` ran out
        (hmmlearn's own monitor reports both as converged).
    restart_log_likelihoods_ : ndarray of shape (n_restarts,)
        Final training log-likelihood of each restart.
    n_features_in_ : int
        Padded length of the sequences seen during fit (scoring accepts any
        length).
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "emission": [StrOptions({"categorical", "gaussian"})],
        "n_restarts": [Interval(Integral, 1, None, closed="left")],
        "n_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "covariance_type": [StrOptions({"spherical", "diag"})],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        n_components=2,
        *,
        emission="categorical",
        n_restarts=5,
        n_iter=500,
        tol=1e-4,
        covariance_type="diag",
        n_jobs=None,
        random_state=None,
    ):
        self.n_components = n_components
        self.emission = emission
        self.n_restarts = n_restarts
        self.n_iter = n_iter
        self.tol = tol
        self.covariance_type = covariance_type
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _sequences(self, X, y=None, lengths=None, *, reset):
        """Padded, validated sequences of any input form, and their layout."""
        check_y_is_not_lengths(X, y, lengths)
        categorical = self.emission == "categorical"
        X, layout = as_padded(X, lengths, categorical=categorical)
        X = check_token_array(
            self,
            X,
            categorical=categorical,
            reset=reset,
            min_rows=2 if reset and layout is None else 1,
            n_features=None if reset or categorical else self.means_.shape[1],
        )
        if categorical and not reset and X.max() >= self.n_symbols_:
            raise ValueError(
                f"X has symbol {X.max()} out of range: expected symbols "
                f"0..{self.n_symbols_ - 1}"
            )
        return X, layout or SequenceLayout.for_array(X)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, lengths=None):
        """Fit hmmlearn from ``n_restarts`` random starts, keep the best.

        Parameters
        ----------
        X : array-like or list of array-like
            Sequences in any input form of the masked estimators (windows or
            padded sequences, a list, or a concatenated array with
            ``lengths``); each row is one sequence for hmmlearn. hmmlearn
            cannot marginalise a masked token inside a sequence; trailing
            masked tokens of a padded array are padding.
        y : None
            Ignored.
        lengths : array-like of int, default=None
            hmmlearn's sequence lengths for a concatenated ``X``.

        Returns
        -------
        self : object
        """
        X, layout = self._sequences(X, y, lengths, reset=True)
        if X.shape[1] < 2:
            raise ValueError(
                f"X has n_features={X.shape[1]} tokens per sequence: EM needs "
                "sequences of at least 2 tokens to see a transition"
            )
        keep = layout.lengths > 0
        pieces = [row[:n] for row, n in zip(X[keep], layout.lengths[keep], strict=True)]
        flat = np.concatenate(pieces)
        masked = flat < 0 if self.emission == "categorical" else np.isnan(flat[:, 0])
        if masked.any():
            raise ValueError(
                "hmmlearn cannot marginalise masked tokens (-1, or NaN in every "
                "feature) inside a sequence; only trailing ones (padding) are "
                "allowed"
            )
        if layout.lengths.max() < 2:
            raise ValueError(
                f"sequences have at most {layout.lengths.max()} tokens: EM needs "
                "sequences of at least 2 tokens to see a transition"
            )
        rng = check_random_state(self.random_state)
        lengths = layout.lengths[keep]
        if self.emission == "categorical":
            flat, d = flat.reshape(-1, 1), int(flat.max()) + 1
        else:
            d = None
        params = {"n_iter": self.n_iter, "tol": self.tol, "implementation": "scaling"}
        if self.emission == "gaussian":
            params["covariance_type"] = self.covariance_type
        seeds = [rng.randint(2**31 - 1) for _ in range(self.n_restarts)]
        runs = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_restart)(
                self.emission, self.n_components, d, params, seed, flat, lengths
            )
            for seed in seeds
        )
        scores = [score for score, _ in runs]
        model = runs[int(np.argmax(scores))][1]  # the first of equal scores
        history = list(model.monitor_.history)
        self.hmm_ = model
        self.n_iter_ = int(model.monitor_.iter)
        self.converged_ = bool(
            len(history) >= 2 and history[-1] - history[-2] < self.tol
        )
        self.restart_log_likelihoods_ = np.array(scores)
        self.startprob_ = model.startprob_
        self.transmat_ = model.transmat_
        if self.emission == "categorical":
            self.n_symbols_ = d
            self.emissionprob_ = model.emissionprob_
            self.model_ = CategoricalHMMModel(
                model.startprob_, model.transmat_, model.emissionprob_
            )
        else:
            self.means_ = model.means_
            self.covars_ = model._covars_
            self.model_ = GaussianHMMModel(
                model.startprob_,
                model.transmat_,
                model.means_,
                model._covars_,
                self.covariance_type,
            )
        return self

    def score(self, X, y=None, lengths=None):
        """Mean log-likelihood per observed token (as the masked estimators).

        Parameters
        ----------
        X : array-like or list of array-like
            Sequences of any length in any input form; masked tokens are
            marginalised.
        y : None
            Ignored.
        lengths : array-like of int, default=None
            hmmlearn's sequence lengths for a concatenated ``X``.

        Returns
        -------
        float
        """
        check_is_fitted(self, "model_")
        return self.model_.score(self._sequences(X, y, lengths, reset=False)[0])

    def score_samples(self, X, lengths=None):
        """Log-likelihood of each sequence.

        Parameters
        ----------
        X : array-like or list of array-like
        lengths : array-like of int, default=None

        Returns
        -------
        ndarray of shape (n_sequences,)
        """
        check_is_fitted(self, "model_")
        X, _ = self._sequences(X, None, lengths, reset=False)
        return self.model_.log_likelihood(X)

    def to_hmmlearn(self):
        """The kept hmmlearn model, switched to the log implementation.

        The log implementation never underflows on long sequences.

        Returns
        -------
        hmmlearn model
            A copy of ``hmm_``.
        """
        check_is_fitted(self, "model_")
        hmm = copy.deepcopy(self.hmm_)
        hmm.implementation = "log"
        return hmm

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        if self.emission == "categorical":
            tags.input_tags.categorical = True
            tags.input_tags.positive_only = True
        return tags
