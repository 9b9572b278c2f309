"""Inference under the extracted HMM, on sequences of any length.

The methods an hmmlearn user expects (``decode``, ``predict_proba``,
``score_samples``, ``sample``, ``aic``, ``bic``,
``get_stationary_distribution``) and the scikit-learn face (``transform``,
``score``, feature names). Every method takes the input forms ``fit`` takes,
independent of the training windows' length, and answers per-token results
in the form it was given (padded array, list, or concatenated).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .. import _dask
from .._hmm import smooth
from ..sequences import (
    SequenceLayout,
    as_padded,
    check_y_is_not_lengths,
    mask_value,
)

_DECODERS = ("viterbi", "map")


class _InferenceMixin(TransformerMixin):
    """Inference methods shared by the masked estimators.

    A TransformerMixin itself, so scikit-learn's ``set_output`` wraps the
    ``transform`` defined here.
    """

    def _validated(self, X, y, lengths, *, reset, task, min_rows):
        """Any input form as validated padded sequences: ``(X, layout, state)``.

        The one path of ``fit``, ``partial_fit`` and every inference method:
        the positional-``y`` check, the padding, the token type's validation
        (and, with ``reset``, the data-dependent state), the layout to
        answer in.
        """
        check_y_is_not_lengths(X, y, lengths)
        X, layout = as_padded(X, lengths, categorical=self._emission == "categorical")
        X, state = self._check_windows(X, reset=reset, task=task, min_windows=min_rows)
        return X, layout or SequenceLayout.for_array(X), state

    def _check_sequences(self, X, lengths=None):
        """Validated padded sequences of any length, and their layout."""
        check_is_fitted(self, "statistics_")
        if _dask.is_dask_array(X):
            # converting it would bring all of the data to the client
            raise TypeError(
                "this method does not take a dask array (transform, score, "
                "score_samples and predict_proba do, block by block); map it "
                "over the blocks with X.map_blocks, or pass a computed slice"
            )
        X, layout, _ = self._validated(
            X, None, lengths, reset=False, task=self.task_, min_rows=1
        )
        return X, layout

    def _task_rows(self, X):
        """Rows holding the task's positions: shorter rows padded with masks."""
        span = self.task_.span
        if X.shape[1] >= span:
            return X
        pad = [(0, 0), (0, span - X.shape[1])] + [(0, 0)] * (X.ndim - 2)
        return np.pad(X, pad, constant_values=mask_value(X))

    def transform(self, X, lengths=None):
        """Posterior over hidden states at the task's first target position.

        Computed under the extracted HMM from the task's observed tokens
        of each sequence only (positions counted from its start), so the
        estimator is a self-supervised feature extractor.

        Parameters
        ----------
        X : array-like, list of array-like or dask.array.Array
            Sequences of any length, in any input form of :meth:`fit`.
        lengths : array-like of int, default=None
            hmmlearn's sequence lengths for a concatenated ``X``.

        Returns
        -------
        ndarray of shape (n_sequences, n_components)
            A Dask array, computed block by block, for a Dask ``X``.
        """
        if _dask.is_dask_array(X):
            return _dask.map_inference(
                self, "transform", X, lengths, (self.n_components,)
            )
        X, _ = self._check_sequences(X, lengths)
        B = self.model_._task_emissions(self.task_, self._task_rows(X))
        gamma = smooth(self.model_.startprob_, self.model_.transmat_, B)[3]
        return gamma[:, self.task_.targets[0][0] - 1]

    def get_feature_names_out(self, input_features=None):
        """Names of the :meth:`transform` columns: ``state0``, ``state1``, ...

        Parameters
        ----------
        input_features : None
            Ignored (the columns are hidden states, not input columns).

        Returns
        -------
        ndarray of str objects
        """
        check_is_fitted(self, "statistics_")
        return np.asarray([f"state{i}" for i in range(self.n_components)], dtype=object)

    def score(self, X, y=None, lengths=None):
        """Mean log-likelihood per observed token under the extracted HMM.

        Task-independent, so grid searches can compare masking schemes and
        numbers of states on one scale. (hmmlearn's ``score`` is the total
        log-likelihood: multiply by the number of observed tokens.)

        Parameters
        ----------
        X : array-like, list of array-like or dask.array.Array
            Sequences of any length, in any input form of :meth:`fit`;
            masked tokens are marginalised.
        y : None
            Ignored.
        lengths : array-like of int, default=None
            hmmlearn's sequence lengths for a concatenated ``X``.

        Returns
        -------
        float
            Also for a Dask ``X``: computed from per-block sums (the
            log-likelihood and the observed tokens), as dask-ml's ``score``
            methods compute theirs.
        """
        if _dask.is_dask_array(X):
            return _dask.score(self, X, lengths)
        X, _ = self._check_sequences(X, lengths)
        return self.model_.score(X)

    def score_samples(self, X, lengths=None):
        """Log-likelihood of each sequence under the extracted HMM.

        Parameters
        ----------
        X : array-like, list of array-like or dask.array.Array
            Sequences of any length, in any input form of :meth:`fit`.
        lengths : array-like of int, default=None
            hmmlearn's sequence lengths for a concatenated ``X``.

        Returns
        -------
        ndarray of shape (n_sequences,)
            (hmmlearn's ``score_samples`` returns the total log-likelihood
            and the posteriors; those are :meth:`predict_proba` here.) A
            Dask array, computed block by block, for a Dask ``X``.
        """
        if _dask.is_dask_array(X):
            return _dask.map_inference(self, "score_samples", X, lengths, ())
        X, _ = self._check_sequences(X, lengths)
        return self.model_.log_likelihood(X)

    def predict_proba(self, X, lengths=None):
        """Smoothed posteriors ``P(h_t | all observed tokens)`` per token.

        Parameters
        ----------
        X : array-like, list of array-like or dask.array.Array
            Sequences in any input form of :meth:`fit`.
        lengths : array-like of int, default=None
            hmmlearn's sequence lengths for a concatenated ``X``.

        Returns
        -------
        posteriors : ndarray or list of ndarray
            ``(n_tokens, n_components)`` for a concatenated ``X`` (as
            hmmlearn), a list of ``(T_i, n_components)`` for a list, and
            ``(n_sequences, length, n_components)`` for an array (padding is
            masking: its rows are the predictive state distributions). A
            Dask array of the last form, computed block by block, for a Dask
            ``X``.
        """
        if _dask.is_dask_array(X):
            tail = (X.shape[1], self.n_components)
            return _dask.map_inference(self, "predict_proba", X, lengths, tail)
        X, layout = self._check_sequences(X, lengths)
        posteriors = self.model_.predict_proba(X)
        if layout.form == "array":
            return posteriors
        return layout.restore(posteriors, fill=np.nan)

    def decode(self, X, lengths=None, algorithm="viterbi"):
        """Most likely hidden states, as hmmlearn's ``decode``.

        ``predict`` keeps scikit-learn's masked-predictor meaning here; the
        Viterbi path is this method (hmmlearn's ``predict`` returns its
        states).

        Parameters
        ----------
        X : array-like or list of array-like
            Sequences in any input form of :meth:`fit`. Masked tokens inside
            a sequence are crossed by the path (no emission term); trailing
            masked tokens of a padded array are padding.
        lengths : array-like of int, default=None
            hmmlearn's sequence lengths for a concatenated ``X``.
        algorithm : {"viterbi", "map"}, default="viterbi"
            "viterbi": the jointly most probable path, with ``log p(x, h*)``
            summed over sequences (as hmmlearn); "map": the most probable
            state at each token, with the sum of the logs of those posterior
            probabilities (hmmlearn 0.3 sums the probabilities themselves,
            its issue #188; the states agree).

        Returns
        -------
        log_prob : float
        states : ndarray or list of ndarray
            Concatenated ``(n_tokens,)`` for a concatenated ``X``, a list for
            a list, ``(n_sequences, length)`` with -1 past each sequence's
            end for an array.
        """
        if algorithm not in _DECODERS:
            raise ValueError(f"algorithm must be one of {_DECODERS}, got {algorithm!r}")
        X, layout = self._check_sequences(X, lengths)
        if algorithm == "viterbi":
            log_prob, states = self.model_.decode(X, layout.lengths)
            return float(log_prob.sum()), layout.restore(states, fill=-1)
        posteriors = self.model_.predict_proba(X)
        inside = np.arange(X.shape[1]) < layout.lengths[:, None]
        with np.errstate(divide="ignore"):
            log_prob = float(np.log(posteriors.max(axis=2))[inside].sum())
        return log_prob, layout.restore(posteriors.argmax(axis=2), fill=-1)

    def sample(self, n_samples=1, random_state=None):
        """Sample one sequence from the extracted HMM, as hmmlearn does.

        Parameters
        ----------
        n_samples : int, default=1
            Number of tokens.
        random_state : int, RandomState instance or None, default=None
            ``None`` uses the estimator's ``random_state``.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            hmmlearn's concatenated form: ``(n_samples, 1)`` symbols for
            categorical tokens; ``fit(X, lengths=[n_samples])`` takes it.
        states : ndarray of shape (n_samples,)
        """
        check_is_fitted(self, "statistics_")
        rng = check_random_state(
            self.random_state if random_state is None else random_state
        )
        X, states = self.model_.sample(
            1, n_samples, random_state=rng, return_states=True
        )
        return X.reshape(n_samples, -1), states[0]

    def get_stationary_distribution(self):
        """Stationary distribution of the extracted chain (``pi T = pi``).

        Returns
        -------
        ndarray of shape (n_components,)
        """
        check_is_fitted(self, "statistics_")
        return self.model_.stationary_distribution()

    def _n_parameters(self):
        """Free parameters, counted as hmmlearn counts them."""
        k = self.n_components
        return (k - 1) + k * (k - 1) + self._n_emission_parameters()

    def _information_criterion(self, X, lengths, penalty):
        X, _ = self._check_sequences(X, lengths)
        n_observed = np.count_nonzero(~self.model_._masked(X))
        log_likelihood = float(self.model_.log_likelihood(X).sum())
        return -2 * log_likelihood + penalty(n_observed) * self._n_parameters()

    def aic(self, X, lengths=None):
        """Akaike information criterion of the extracted HMM on ``X``.

        ``-2 log p(X) + 2 p`` with ``p`` the free parameters as hmmlearn
        counts them (lower is better).

        Parameters
        ----------
        X : array-like or list of array-like
        lengths : array-like of int, default=None

        Returns
        -------
        float
        """
        return self._information_criterion(X, lengths, lambda n: 2.0)

    def bic(self, X, lengths=None):
        """Bayesian information criterion of the extracted HMM on ``X``.

        ``-2 log p(X) + p log(n)`` with ``n`` the observed tokens (lower is
        better).

        Parameters
        ----------
        X : array-like or list of array-like
        lengths : array-like of int, default=None

        Returns
        -------
        float
        """
        return self._information_criterion(X, lengths, np.log)
