"""Hidden Markov model parameter objects.

The objects here hold parameters, not data: they sample, evaluate
likelihoods with masked tokens, and compute the exact optimal predictor of any
masked-prediction task. Attribute names and orientation follow hmmlearn
(``transmat_[i, j] = P(h_{t+1} = j | h_t = i)``), so a fitted hmmlearn model
and these objects compare without translation.

The numerical core (scaled forward-backward, exact task predictors) lives in
the private module ``_hmm``, written with plain arithmetic only so that it
also runs on complex parameters: identifiability and predictor matching
differentiate it by the complex-step method.
"""

from __future__ import annotations

import copy
from collections import namedtuple

import numpy as np
from sklearn.utils import check_random_state

from ._hmm import forward, smooth, stationary, task_expectation, viterbi
from ._rows import recursions_by_rows, worth_cutting
from ._validation import (
    check_categorical_sequences,
    check_gaussian_sequences,
    check_positive_int,
    check_stochastic,
)
from .sequences import observed_lengths
from .tasks import parse_task

__all__ = ["CategoricalHMMModel", "GaussianHMMModel", "GaussianPredictive"]

GaussianPredictive = namedtuple("GaussianPredictive", ["weights", "mean"])
GaussianPredictive.__doc__ = """Predictive distribution of masked Gaussian tokens.

weights : ndarray of shape (n_sequences, length, n_components)
    Mixture weights ``P(h_t | observed tokens)``; NaN at observed positions.
mean : ndarray of shape (n_sequences, length, n_features)
    Predictive mean ``E[x_t | observed tokens]``; NaN at observed positions.
"""

_COVARIANCE_TYPES = ("spherical", "diag", "full")


# --------------------------------------------------------------------------
# Public model objects.
# --------------------------------------------------------------------------
class _BaseHMMModel:
    """Shared machinery: the hidden chain and every masked computation."""

    _masked_token_doc = ""

    def __init__(self, startprob, transmat):
        transmat = check_stochastic(transmat, "transmat")
        if transmat.ndim != 2 or transmat.shape[0] != transmat.shape[1]:
            raise ValueError(f"transmat must be square, got shape {transmat.shape}")
        k = transmat.shape[0]
        self.startprob_ = check_stochastic(startprob, "startprob", shape=(k,))
        self.transmat_ = transmat

    @property
    def n_components(self):
        """Number of hidden states."""
        return self.transmat_.shape[0]

    def with_startprob(self, startprob):
        """A copy of the model with another initial-state distribution.

        Parameters
        ----------
        startprob : array-like of shape (n_components,)

        Returns
        -------
        model : same type as self
        """
        model = copy.copy(self)
        model.startprob_ = check_stochastic(
            startprob, "startprob", shape=(self.n_components,)
        )
        return model

    def stationary_distribution(self):
        """Stationary distribution ``π`` of the hidden chain (``π T = π``).

        Returns
        -------
        ndarray of shape (n_components,)

        Raises
        ------
        ValueError
            If the chain has no unique stationary distribution (reducible).
        """
        try:
            pi = stationary(self.transmat_)
        except np.linalg.LinAlgError:
            pi = None
        if pi is None or not np.all(np.isfinite(pi)) or np.any(pi < -1e-12):
            raise ValueError(
                "transmat has no unique stationary distribution (the chain is "
                "reducible)"
            )
        pi = np.clip(pi, 0.0, None)
        return pi / pi.sum()

    # -- to be provided by subclasses ------------------------------------
    def _check_X(self, X):  # pragma: no cover - abstract
        raise NotImplementedError

    def _emission_likelihood(self, X):  # pragma: no cover - abstract
        """Return ``(B, log_shift)``: scaled likelihoods and their log-scale."""
        raise NotImplementedError

    def _masked(self, X):  # pragma: no cover - abstract
        raise NotImplementedError

    def _token_means(self):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- likelihoods ------------------------------------------------------
    def log_likelihood(self, X):
        """Log-likelihood of each sequence, masked tokens marginalised.

        Parameters
        ----------
        X : array-like
            Sequences; see the class docstring for shapes and masking.

        Returns
        -------
        ndarray of shape (n_sequences,)
        """
        X = self._check_X(X)
        if worth_cutting(X):
            rows, passes = recursions_by_rows(self, X, backward=False)
            with np.errstate(divide="ignore"):
                per_token = [np.log(c) + log_shift for _, log_shift, _, c, _ in passes]
            return rows.gather(per_token).sum(axis=1)
        B, log_shift = self._emission_likelihood(X)
        _, c = forward(self.startprob_, self.transmat_, B)
        with np.errstate(divide="ignore"):
            return np.log(c).sum(axis=1) + log_shift.sum(axis=1)

    def score(self, X):
        """Mean log-likelihood per observed token.

        Parameters
        ----------
        X : array-like
            Sequences; see the class docstring for shapes and masking.

        Returns
        -------
        float
        """
        X = self._check_X(X)
        n_observed = np.count_nonzero(~self._masked(X))
        if n_observed == 0:
            raise ValueError("X has no observed token to score")
        return float(self.log_likelihood(X).sum() / n_observed)

    def predict_proba(self, X):
        """Posterior ``P(h_t | observed tokens)`` at every position.

        Parameters
        ----------
        X : array-like
            Sequences; see the class docstring for shapes and masking.

        Returns
        -------
        ndarray of shape (n_sequences, length, n_components)
        """
        X = self._check_X(X)
        if worth_cutting(X):
            rows, passes = recursions_by_rows(self, X, backward=True)
            gamma = rows.gather([alpha * beta for *_, alpha, _, beta in passes])
            return gamma / gamma.sum(axis=2, keepdims=True)
        B, _ = self._emission_likelihood(X)
        return smooth(self.startprob_, self.transmat_, B)[3]

    def decode(self, X, lengths=None):
        """Most probable hidden path (Viterbi) of each sequence.

        Masked tokens are crossed by the path with no emission term: the
        result maximises ``p(h, observed tokens)``.

        Parameters
        ----------
        X : array-like
            Sequences; see the class docstring for shapes and masking.
        lengths : array-like of int, default=None
            Length of each row's sequence; ``None`` means up to its last
            observed token (trailing masked tokens are padding).

        Returns
        -------
        log_prob : ndarray of shape (n_sequences,)
            ``log p(x, h*)`` of each sequence's best path.
        states : ndarray of shape (n_sequences, length)
            The best path, -1 past each sequence's end.
        """
        X = self._check_X(X)
        if lengths is None:
            lengths = observed_lengths(X)
            lengths[lengths == 0] = X.shape[1]  # an all-masked row: all of it
        B, log_shift = self._emission_likelihood(X)
        with np.errstate(divide="ignore"):
            log_B = np.log(B) + log_shift[..., None]
            return viterbi(
                np.log(self.startprob_),
                np.log(self.transmat_),
                log_B,
                np.asarray(lengths, dtype=np.intp),
            )

    def masked_log_predictive(self, X, mask):
        """``log p(x_j | tokens outside the mask)`` for every masked token.

        Each masked token is predicted from the unmasked tokens of its
        sequence only (not from the other masked ones), the term of the
        masked-prediction score of Moreno-Munoz et al.

        Parameters
        ----------
        X : array-like
            Complete sequences (no masked tokens).
        mask : array-like of bool, shape (n_sequences, length)
            True where a token is hidden.

        Returns
        -------
        ndarray of shape (n_sequences, length)
            The log predictive density (or probability) of the true token at
            masked positions; NaN elsewhere.
        """
        X = self._check_X(X)
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != X.shape[:2]:
            raise ValueError(
                f"mask must have shape {X.shape[:2]} (n_sequences, length), got "
                f"{mask.shape}"
            )
        if self._masked(X).any():
            raise ValueError("X must be complete: the mask says what is hidden")
        B_true, shift = self._emission_likelihood(X)
        B = np.where(mask[..., None], 1.0, B_true)
        gamma = smooth(self.startprob_, self.transmat_, B)[3]
        with np.errstate(divide="ignore"):
            out = np.log(np.sum(gamma * B_true, axis=2)) + shift
        out[~mask] = np.nan
        return out

    def conditional_expectation(self, task, X):
        """Exact optimal predictor ``E[target | observed]`` of a task.

        Only the task's observed positions of each window are used (the
        predictor of a task sees nothing else); positions are counted from
        the start of the window.

        Parameters
        ----------
        task : str or MaskedTask
            Task spelling, e.g. ``"1->2*3"``.
        X : array-like
            Windows of length at least ``task.span``.

        Returns
        -------
        ndarray of shape (n_windows, target_dim)
            Tensor-product targets are flattened row-major in the spelled
            order; several targets are concatenated.
        """
        task = parse_task(task)
        X = self._check_X(X)
        B = self._task_emissions(task, X)
        return task_expectation(
            self.startprob_, self.transmat_, B, self._token_means(), task
        )

    def _task_emissions(self, task, X):
        """Emission likelihoods of the task's observed tokens, 1 elsewhere."""
        if X.shape[1] < task.span:
            raise ValueError(
                f"windows have {X.shape[1]} tokens but task {task.spec!r} needs "
                f"at least {task.span}"
            )
        B, _ = self._emission_likelihood(X[:, : task.span])
        keep = np.zeros(task.span, dtype=bool)
        keep[[p - 1 for p in task.observed]] = True
        B[:, ~keep] = 1.0
        return B

    def sample(self, n_sequences, length, random_state=None, return_states=False):
        """Sample sequences, vectorised over sequences.

        The first hidden state is drawn from ``startprob_`` (the stationary
        distribution for models from :mod:`sk_maskid.datasets` and from
        extraction, so windows are stationary).

        Parameters
        ----------
        n_sequences : int
            Number of sequences.
        length : int
            Tokens per sequence.
        random_state : int, RandomState instance or None, default=None
            Seed or generator.
        return_states : bool, default=False
            Also return the hidden states.

        Returns
        -------
        X : ndarray
            ``(n_sequences, length)`` integer symbols for categorical tokens,
            ``(n_sequences, length, n_features)`` floats for Gaussian ones.
        states : ndarray of shape (n_sequences, length)
            Only when ``return_states``.
        """
        n_sequences = check_positive_int(n_sequences, "n_sequences")
        length = check_positive_int(length, "length")
        rng = check_random_state(random_state)
        states = self._sample_states(n_sequences, length, rng)
        X = self._emit(states, rng)
        return (X, states) if return_states else X

    def _emit(self, states, rng):  # pragma: no cover - abstract
        """Draw one token per hidden state."""
        raise NotImplementedError

    def _sample_states(self, n_sequences, length, rng):
        # One inverse-CDF draw per sequence and time step: vectorised over
        # sequences, a single loop over time.
        u = rng.random((n_sequences, length))
        states = np.empty((n_sequences, length), dtype=np.intp)
        k = self.n_components
        states[:, 0] = np.minimum(
            np.searchsorted(np.cumsum(self.startprob_), u[:, 0], side="right"), k - 1
        )
        cum_trans = np.cumsum(self.transmat_, axis=1)
        for t in range(1, length):
            rows = cum_trans[states[:, t - 1]]
            states[:, t] = np.minimum((rows <= u[:, t, None]).sum(axis=1), k - 1)
        return states


class CategoricalHMMModel(_BaseHMMModel):
    """HMM with categorical tokens (hmmlearn's ``CategoricalHMM`` parameters).

    Parameters
    ----------
    startprob : array-like of shape (n_components,)
        Distribution of the first hidden state.
    transmat : array-like of shape (n_components, n_components)
        ``transmat[i, j] = P(h_{t+1} = j | h_t = i)``; rows sum to 1.
    emissionprob : array-like of shape (n_components, n_symbols)
        ``emissionprob[i, s] = P(x_t = s | h_t = i)``; rows sum to 1.

    Attributes
    ----------
    startprob_, transmat_, emissionprob_ : ndarray
        The validated parameters.
    n_symbols : int
        Alphabet size.

    Notes
    -----
    Sequences are integer arrays of shape ``(n_sequences, length)``; ``-1``
    marks a masked token, which is marginalised out.
    """

    def __init__(self, startprob, transmat, emissionprob):
        super().__init__(startprob, transmat)
        self.emissionprob_ = check_stochastic(emissionprob, "emissionprob")
        if (
            self.emissionprob_.ndim != 2
            or self.emissionprob_.shape[0] != self.n_components
        ):
            raise ValueError(
                f"emissionprob must have shape (n_components={self.n_components}, "
                f"n_symbols), got {self.emissionprob_.shape}"
            )

    @property
    def n_symbols(self):
        """Alphabet size."""
        return self.emissionprob_.shape[1]

    def __repr__(self):
        return (
            f"CategoricalHMMModel(n_components={self.n_components}, "
            f"n_symbols={self.n_symbols})"
        )

    def _check_X(self, X):
        return check_categorical_sequences(X, self.n_symbols)

    def _masked(self, X):
        return X < 0

    def _emission_likelihood(self, X):
        B = self.emissionprob_.T[np.maximum(X, 0)]
        B[X < 0] = 1.0
        return B, np.zeros(X.shape)

    def _token_means(self):
        return self.emissionprob_

    def masked_predictive(self, X):
        """Predictive distribution of every masked token.

        Parameters
        ----------
        X : array-like of shape (n_sequences, length)
            Symbols, ``-1`` at the masked positions.

        Returns
        -------
        ndarray of shape (n_sequences, length, n_symbols)
            ``P(x_t = s | all observed tokens of the sequence)`` at masked
            positions; NaN at observed positions.
        """
        X = self._check_X(X)
        out = self.predict_proba(X) @ self.emissionprob_
        out[X >= 0] = np.nan
        return out

    def _emit(self, states, rng):
        cum_emit = np.cumsum(self.emissionprob_, axis=1)
        u = rng.random(states.shape)
        X = np.empty(states.shape, dtype=np.intp)
        # Emissions per state keep memory at O(tokens) instead of O(tokens*d).
        for i in range(self.n_components):
            mask = states == i
            X[mask] = np.searchsorted(cum_emit[i], u[mask], side="right")
        np.minimum(X, self.n_symbols - 1, out=X)
        return X


class GaussianHMMModel(_BaseHMMModel):
    """HMM with Gaussian tokens (hmmlearn's ``GaussianHMM`` parameters).

    Parameters
    ----------
    startprob : array-like of shape (n_components,)
        Distribution of the first hidden state.
    transmat : array-like of shape (n_components, n_components)
        ``transmat[i, j] = P(h_{t+1} = j | h_t = i)``; rows sum to 1.
    means : array-like of shape (n_components, n_features)
        ``means[i] = E[x_t | h_t = i]``.
    covars : array-like
        Shape ``(n_components,)`` for "spherical", ``(n_components,
        n_features)`` for "diag", ``(n_components, n_features, n_features)``
        for "full" (hmmlearn's setter shapes).
    covariance_type : {"spherical", "diag", "full"}, default="spherical"
        Form of the per-state covariance.

    Attributes
    ----------
    startprob_, transmat_, means_, covars_ : ndarray
        The validated parameters.
    n_features : int
        Token dimension.

    Notes
    -----
    Sequences are float arrays of shape ``(n_sequences, length,
    n_features)`` (or ``(n_sequences, length)`` when ``n_features == 1``);
    a token that is NaN in every feature is masked and marginalised out.
    """

    def __init__(self, startprob, transmat, means, covars, covariance_type="spherical"):
        super().__init__(startprob, transmat)
        if covariance_type not in _COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type must be one of {_COVARIANCE_TYPES}, got "
                f"{covariance_type!r}"
            )
        k = self.n_components
        means = np.asarray(means, dtype=float)
        if means.ndim != 2 or means.shape[0] != k:
            raise ValueError(
                f"means must have shape (n_components={k}, n_features), got "
                f"{means.shape}"
            )
        if not np.all(np.isfinite(means)):
            raise ValueError("means contains NaN or infinity")
        d = means.shape[1]
        covars = np.asarray(covars, dtype=float)
        expected = {"spherical": (k,), "diag": (k, d), "full": (k, d, d)}[
            covariance_type
        ]
        if covars.shape != expected:
            raise ValueError(
                f"covars must have shape {expected} for covariance_type="
                f"{covariance_type!r}, got {covars.shape}"
            )
        if not np.all(np.isfinite(covars)):
            raise ValueError("covars contains NaN or infinity")
        if covariance_type == "full":
            try:
                self._chol = np.linalg.cholesky(covars)
            except np.linalg.LinAlgError:
                raise ValueError("covars must be symmetric positive definite") from None
        elif np.any(covars <= 0):
            raise ValueError("covars must be positive")
        self.means_ = means
        self.covars_ = covars
        self.covariance_type = covariance_type

    @property
    def n_features(self):
        """Token dimension."""
        return self.means_.shape[1]

    def __repr__(self):
        return (
            f"GaussianHMMModel(n_components={self.n_components}, "
            f"n_features={self.n_features}, "
            f"covariance_type={self.covariance_type!r})"
        )

    def _check_X(self, X):
        return check_gaussian_sequences(X, self.n_features)

    def _masked(self, X):
        return np.isnan(X[..., 0])

    def _token_means(self):
        return self.means_

    def _full_covars(self):
        """Covariances as ``(n_components, n_features, n_features)``."""
        k, d = self.means_.shape
        if self.covariance_type == "spherical":
            return self.covars_[:, None, None] * np.eye(d)
        if self.covariance_type == "diag":
            return self.covars_[:, :, None] * np.eye(d)
        return self.covars_

    def _log_density(self, X):
        """``log N(x_t; mu_i, Sigma_i)`` for every token and state (GEMM form)."""
        masked = np.isnan(X[..., 0])
        Xf = np.where(masked[..., None], 0.0, X)
        d = self.n_features
        if self.covariance_type == "full":
            diff = Xf[..., None, :] - self.means_  # (n, L, k, d)
            sol = np.linalg.solve(self._chol, diff[..., None])[..., 0]
            maha = np.sum(sol**2, axis=-1)
            logdet = 2 * np.log(np.diagonal(self._chol, axis1=1, axis2=2)).sum(1)
        else:
            var = self.covars_
            if self.covariance_type == "spherical":
                var = np.repeat(var[:, None], d, axis=1)
            prec = 1.0 / var
            maha = (
                (Xf**2) @ prec.T
                - 2.0 * Xf @ (self.means_ * prec).T
                + np.sum(self.means_**2 * prec, axis=1)
            )
            logdet = np.log(var).sum(axis=1)
        logp = -0.5 * (maha + logdet + d * np.log(2 * np.pi))
        logp[masked] = 0.0
        return logp

    def _emission_likelihood(self, X):
        logp = self._log_density(X)
        shift = logp.max(axis=2)
        return np.exp(logp - shift[..., None]), shift

    def masked_predictive(self, X):
        """Predictive distribution of every masked token.

        Parameters
        ----------
        X : array-like of shape (n_sequences, length, n_features)
            Tokens, NaN at the masked positions.

        Returns
        -------
        GaussianPredictive
            ``weights`` ``(n_sequences, length, n_components)``: the mixture
            weights ``P(h_t | observed)``, so the predictive density of a
            masked token is ``sum_i weights[i] N(x; means_[i], covars_[i])``;
            ``mean`` ``(n_sequences, length, n_features)``: its mean. Both are
            NaN at observed positions.
        """
        X = self._check_X(X)
        weights = self.predict_proba(X)
        mean = weights @ self.means_
        observed = ~self._masked(X)
        weights[observed] = np.nan
        mean[observed] = np.nan
        return GaussianPredictive(weights, mean)

    def _emit(self, states, rng):
        noise = rng.standard_normal(states.shape + (self.n_features,))
        chol = np.linalg.cholesky(self._full_covars())
        X = self.means_[states]
        # A loop over states (not tokens) keeps memory at O(tokens * d).
        for i in range(self.n_components):
            mask = states == i
            X[mask] += noise[mask] @ chol[i].T
        return X
