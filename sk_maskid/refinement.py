"""Baum-Welch (EM) refinement of an extracted HMM.

The tensor route gives identifiable, globally sound parameters cheaply; a few EM
iterations started there reach the likelihood optimum of that basin (the evaluation
protocol on the Theory page of the documentation: EM from the tensor estimate beat EM
from random starts). Written here, vectorised across windows with the package's scaled
recursions, because hmmlearn's EM works on one concatenated sequence with per-sequence
Python overhead and is an optional dependency.
"""

import sys

import numpy as np

from ._hmm import smooth
from .models import CategoricalHMMModel, GaussianHMMModel

__all__ = ["baum_welch"]


def _e_step(model, X):
    """Posteriors, summed transition posteriors and the log-likelihood."""
    B, log_shift = model._emission_likelihood(X)
    alpha, beta, c, gamma = smooth(model.startprob_, model.transmat_, B)
    with np.errstate(divide="ignore"):
        loglik = float(np.log(c).sum() + log_shift.sum())
    k = model.n_components
    # sum_t xi_t(i, j) = T_ij * sum_t alpha_t(i) [B_{t+1} beta_{t+1} / c_{t+1}](j)
    left = alpha[:, :-1].reshape(-1, k)
    right = (B[:, 1:] * beta[:, 1:] / c[:, 1:, None]).reshape(-1, k)
    xi = (left.T @ right) * model.transmat_
    return gamma, xi, loglik


def _m_step(model, X, gamma, xi, min_covar, floor):
    startprob = gamma[:, 0].sum(axis=0)
    startprob /= startprob.sum()
    transmat = xi / xi.sum(axis=1, keepdims=True)
    # masked tokens (padding included) carry no emission information
    observed = ~model._masked(X).ravel()
    weights = gamma.reshape(-1, model.n_components)[observed]
    if isinstance(model, CategoricalHMMModel):
        d = model.n_symbols
        flat = X.ravel()[observed]
        emission = np.stack(
            [np.bincount(flat, weights=w, minlength=d) for w in weights.T]
        )  # one bincount per state, not per token
        emission = np.maximum(emission / emission.sum(axis=1, keepdims=True), floor)
        emission /= emission.sum(axis=1, keepdims=True)
        return CategoricalHMMModel(startprob, transmat, emission)
    tokens = X.reshape(-1, X.shape[-1])[observed]
    total = weights.sum(axis=0)[:, None]
    means = weights.T @ tokens / total
    variances = np.maximum(weights.T @ tokens**2 / total - means**2, min_covar)
    if model.covariance_type == "spherical":
        covars = variances.mean(axis=1)
    else:
        covars = variances
    return GaussianHMMModel(startprob, transmat, means, covars, model.covariance_type)


def baum_welch(model, X, *, n_iter=20, tol=1e-6, min_covar=1e-3, floor=1e-6, verbose=0):
    """Refine an HMM by EM on windows, never lowering the log-likelihood.

    Parameters
    ----------
    model : CategoricalHMMModel or GaussianHMMModel
        Starting point (e.g. the tensor route's read-out).
    X : ndarray
        Training windows or padded sequences (each row an independent
        sequence; masked tokens are marginalised).
    n_iter : int, default=20
        Maximum EM iterations.
    tol : float, default=1e-6
        Stop when the mean log-likelihood per token improves by less.
    min_covar : float, default=1e-3
        Floor on Gaussian variances.
    floor : float, default=1e-6
        Floor on emission probabilities (keeps unseen symbols finite).
    verbose : int, default=0
        ``>= 1`` prints the log-likelihood per token and its gain after each
        iteration on stderr.

    Returns
    -------
    model : the refined model (the best one seen)
    history : list of float
        Training log-likelihood of the start and after each kept iteration;
        non-decreasing by construction (an iteration that would lower it,
        which only the floors can cause, ends the refinement).
    """
    X = model._check_X(X)
    n_tokens = max(np.count_nonzero(~model._masked(X)), 1)
    gamma, xi, loglik = _e_step(model, X)
    history = [loglik]
    for _ in range(n_iter):
        candidate = _m_step(model, X, gamma, xi, min_covar, floor)
        new_gamma, new_xi, new_loglik = _e_step(candidate, X)
        if new_loglik < loglik:
            break
        model, gamma, xi = candidate, new_gamma, new_xi
        improvement = (new_loglik - loglik) / n_tokens
        loglik = new_loglik
        history.append(loglik)
        if verbose:
            print(
                f"[baum_welch] iteration {len(history) - 1}: "
                f"{loglik / n_tokens:.6f} per token (gain {improvement:.3g})",
                file=sys.stderr,
                flush=True,
            )
        if improvement < tol:
            break
    return model, history
