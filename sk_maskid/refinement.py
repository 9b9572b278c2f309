"""Baum-Welch (EM) refinement of an extracted HMM, accelerated and streamed.

The tensor route gives identifiable, globally sound parameters cheaply; EM
started there climbs to the likelihood optimum of that basin (the evaluation
protocol on the Theory page of the documentation). Three things make it
practical on real data:

* **Streaming E-steps.** The expected counts are additive over sequences, so
  each E-step runs over chunks of sequences (bounded memory, parallel with
  joblib) and keeps only the counts.
* **Packed lanes.** Sequences of unequal lengths are packed end to end into
  lanes of the longest sequence's length, with the chain restarting at each
  sequence start, so a padded corpus costs its tokens, not its padding.
* **SQUAREM acceleration** (Varadhan & Roland, 2008) with a likelihood
  safeguard: an extrapolated point is kept only if it is at least as likely
  as the plain EM step it replaces, so the accepted log-likelihoods never
  decrease. EM's linear convergence on flat likelihoods (hundreds to
  thousands of iterations on text) is what it shortens.

Written here, vectorised across sequences with the package's scaled
recursions, because hmmlearn's EM loops over sequences in Python, has no
acceleration, cannot marginalise masked tokens and is an optional dependency.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
from joblib import Parallel, delayed

from ._hmm import backward, forward
from .models import CategoricalHMMModel, GaussianHMMModel
from .sequences import mask_value

__all__ = ["Refinement", "baum_welch"]

# Token cells per E-step chunk: bounds the forward-backward arrays' memory
# (about 100 MB at k=4).
_CHUNK_TOKENS = 2_000_000


@dataclass(frozen=True)
class Refinement:
    """Result of :func:`baum_welch`.

    Attributes
    ----------
    model : CategoricalHMMModel or GaussianHMMModel
        The refined model (the most likely one seen).
    history : list of float
        Training log-likelihood per observed token of the start and of every
        accepted point; non-decreasing.
    n_iter : int
        E-steps run (each one forward-backward pass over the data).
    converged : bool
        Whether the gain per token fell below ``tol`` before ``n_iter`` ran
        out.
    """

    model: CategoricalHMMModel | GaussianHMMModel
    history: list
    n_iter: int
    converged: bool


# --------------------------------------------------------------------------
# Packing sequences into lanes.
# --------------------------------------------------------------------------
def _pack(X, lengths):
    """Chunks ``(lanes, starts, inside)``, each sequence whole in one lane.

    Rows that their sequences fill (windows) stay as they are (``starts``
    and ``inside`` None). Otherwise the sequences are packed
    first-fit-decreasing into lanes as long as the longest one; ``starts``
    marks where each begins and ``inside`` the tokens that belong to one (a
    lane's unused tail is masked, and no transition is counted into it).
    """
    n, width = X.shape[:2]
    lengths = np.asarray(lengths, dtype=np.intp)
    if np.all(lengths == width):
        lanes, starts, inside = X, None, None
    else:
        capacity = int(lengths.max())
        fill = np.zeros(0, dtype=np.intp)  # tokens used per lane
        where = np.full(n, -1, dtype=np.intp)
        offset = np.zeros(n, dtype=np.intp)
        for i in np.argsort(-lengths, kind="stable"):  # sequences, not tokens
            if lengths[i] == 0:
                continue
            fits = np.flatnonzero(fill + lengths[i] <= capacity)
            if fits.size:
                lane = fits[0]
            else:
                lane = len(fill)
                fill = np.append(fill, 0)
            where[i], offset[i] = lane, fill[lane]
            fill[lane] += lengths[i]
        lanes = np.full(
            (len(fill), capacity) + X.shape[2:], mask_value(X), dtype=X.dtype
        )
        starts = np.zeros((len(fill), capacity), dtype=bool)
        inside = np.zeros((len(fill), capacity), dtype=bool)
        for i in np.flatnonzero(where >= 0):
            span = slice(offset[i], offset[i] + lengths[i])
            lanes[where[i], span] = X[i, : lengths[i]]
            starts[where[i], offset[i]] = True
            inside[where[i], span] = True
    per_chunk = max(1, _CHUNK_TOKENS // max(lanes.shape[1], 1))
    return [
        (
            lanes[lo : lo + per_chunk],
            None if starts is None else starts[lo : lo + per_chunk],
            None if inside is None else inside[lo : lo + per_chunk],
        )
        for lo in range(0, len(lanes), per_chunk)
    ]


# --------------------------------------------------------------------------
# E-step: additive expected counts of one chunk.
# --------------------------------------------------------------------------
def _e_step(model, X, starts, inside):
    """Expected counts of one chunk of lanes, and its log-likelihood."""
    B, log_shift = model._emission_likelihood(X)
    alpha, c = forward(model.startprob_, model.transmat_, B, starts)
    beta = backward(model.transmat_, B, c, starts)
    gamma = alpha * beta
    gamma /= gamma.sum(axis=2, keepdims=True)
    observed = ~model._masked(X)
    with np.errstate(divide="ignore"):
        loglik = float(np.log(c).sum() + log_shift.sum())
    k = model.n_components
    first = starts if starts is not None else np.arange(X.shape[1]) == 0
    first = np.broadcast_to(first, X.shape[:2])
    # transitions within a sequence: t -> t + 1, t + 1 neither a start nor
    # past the sequence's end
    within = ~first[:, 1:] if inside is None else inside[:, 1:] & ~first[:, 1:]
    left = alpha[:, :-1][within].reshape(-1, k)
    right = (B[:, 1:] * beta[:, 1:] / c[:, 1:, None])[within].reshape(-1, k)
    stats = {
        "start": gamma[first].sum(axis=0),
        "trans": (left.T @ right) * model.transmat_,
        "loglik": loglik,
        "n_tokens": float(np.count_nonzero(observed)),
    }
    weights = gamma[observed]
    tokens = X[observed]
    if isinstance(model, CategoricalHMMModel):
        d = model.n_symbols
        stats["counts"] = np.stack(
            [np.bincount(tokens, weights=w, minlength=d) for w in weights.T]
        )  # one bincount per state, not per token
    else:
        stats["weight"] = weights.sum(axis=0)
        stats["sum"] = weights.T @ tokens
        stats["sum_sq"] = weights.T @ tokens**2
    return stats


def _expected_counts(model, chunks, n_jobs):
    parts = Parallel(n_jobs=n_jobs)(
        delayed(_e_step)(model, X, starts, inside) for X, starts, inside in chunks
    )
    total = parts[0]
    for part in parts[1:]:  # in chunk order: results do not depend on n_jobs
        total = {key: total[key] + part[key] for key in total}
    return total


# --------------------------------------------------------------------------
# M-step, with floors so that every result is a valid model.
# --------------------------------------------------------------------------
def _normalise_rows(counts, previous, floor):
    """Rows of ``counts`` normalised; an empty row keeps its previous value."""
    totals = counts.sum(axis=-1, keepdims=True)
    empty = totals <= 1e-300
    rows = np.where(empty, previous, counts / np.where(empty, 1.0, totals))
    rows = np.maximum(rows, floor)
    return rows / rows.sum(axis=-1, keepdims=True)


def _m_step(model, stats, min_covar, floor):
    startprob = _normalise_rows(stats["start"], model.startprob_, 0.0)
    # a zero-mass state keeps its row; the floor keeps the chain irreducible
    transmat = _normalise_rows(stats["trans"], model.transmat_, floor)
    if isinstance(model, CategoricalHMMModel):
        emission = _normalise_rows(stats["counts"], model.emissionprob_, floor)
        return CategoricalHMMModel(startprob, transmat, emission)
    weight = stats["weight"][:, None]
    empty = weight <= 1e-300
    safe = np.where(empty, 1.0, weight)
    means = np.where(empty, model.means_, stats["sum"] / safe)
    variances = np.where(
        empty,
        _diag_covars(model),
        np.maximum(stats["sum_sq"] / safe - means**2, min_covar),
    )
    if model.covariance_type == "spherical":
        covars = variances.mean(axis=1)
    else:
        covars = variances
    return GaussianHMMModel(startprob, transmat, means, covars, model.covariance_type)


def _diag_covars(model):
    return np.diagonal(model._full_covars(), axis1=1, axis2=2)


# --------------------------------------------------------------------------
# SQUAREM on an unconstrained parameter vector.
# --------------------------------------------------------------------------
def _log(P):
    return np.log(np.maximum(P, 1e-300))  # exact zeros stay finite


def _to_vector(model):
    parts = [_log(model.startprob_), _log(model.transmat_).ravel()]
    if isinstance(model, CategoricalHMMModel):
        parts.append(_log(model.emissionprob_).ravel())
    else:
        parts += [model.means_.ravel(), np.log(_diag_covars(model)).ravel()]
    return np.concatenate(parts)


def _from_vector(theta, like, min_covar, floor):
    """A valid model from an extrapolated vector (rows renormalised)."""
    k = like.n_components

    def rows(block, shape):
        block = block.reshape(shape)
        P = np.exp(block - block.max(axis=-1, keepdims=True))
        P = np.maximum(P / P.sum(axis=-1, keepdims=True), floor)
        return P / P.sum(axis=-1, keepdims=True)

    startprob = rows(theta[:k], (k,))
    transmat = rows(theta[k : k + k * k], (k, k))
    rest = theta[k + k * k :]
    if isinstance(like, CategoricalHMMModel):
        emission = rows(rest, (k, like.n_symbols))
        return CategoricalHMMModel(startprob, transmat, emission)
    d = like.n_features
    means = rest[: k * d].reshape(k, d)
    variances = np.maximum(np.exp(rest[k * d :].reshape(k, d)), min_covar)
    covars = (
        variances.mean(axis=1) if like.covariance_type == "spherical" else variances
    )
    return GaussianHMMModel(startprob, transmat, means, covars, like.covariance_type)


def baum_welch(
    model,
    X,
    *,
    lengths=None,
    n_iter=1000,
    tol=1e-7,
    acceleration="squarem",
    min_covar=1e-3,
    floor=1e-6,
    n_jobs=None,
    verbose=0,
):
    """Refine an HMM by EM, never lowering the log-likelihood.

    Parameters
    ----------
    model : CategoricalHMMModel or GaussianHMMModel
        Starting point (e.g. the tensor route's read-out).
    X : ndarray
        Padded sequences or windows, one sequence per row; masked tokens
        (``-1``, all-NaN) are marginalised.
    lengths : array-like of int, default=None
        Length of each row's sequence; ``None`` means the whole row.
    n_iter : int, default=1000
        Maximum E-steps (forward-backward passes).
    tol : float, default=1e-7
        Converged when an accepted step gains less than this in
        log-likelihood per observed token.
    acceleration : {"squarem", None}, default="squarem"
        SQUAREM extrapolation with a likelihood safeguard, or plain EM.
    min_covar : float, default=1e-3
        Floor on Gaussian variances.
    floor : float, default=1e-6
        Floor on emission and transition probabilities (keeps unseen
        symbols finite and empty states valid).
    n_jobs : int, default=None
        Parallel E-step chunks (joblib); results do not depend on it.
    verbose : int, default=0
        ``>= 1`` prints the log-likelihood per token and its gain after each
        accepted step on stderr.

    Returns
    -------
    Refinement
    """
    if acceleration not in ("squarem", None):
        raise ValueError(
            f"acceleration must be 'squarem' or None, got {acceleration!r}"
        )
    X = model._check_X(X)
    if lengths is None:
        lengths = np.full(X.shape[0], X.shape[1])
    chunks = _pack(X, lengths)
    state = {"e_steps": 0}

    def e_step(candidate):
        state["e_steps"] += 1
        return _expected_counts(candidate, chunks, n_jobs)

    def em(stats, current):
        return _m_step(current, stats, min_covar, floor)

    stats = e_step(model)
    n_tokens = max(stats["n_tokens"], 1.0)
    # SQUAREM's step-length control (Varadhan & Roland): extrapolation starts
    # at the plain EM step (1) and may grow fourfold after each success.
    step_max = 1.0
    history = [stats["loglik"] / n_tokens]
    converged = False

    def accept(candidate, candidate_stats):
        gain = candidate_stats["loglik"] / n_tokens - history[-1]
        history.append(candidate_stats["loglik"] / n_tokens)
        if verbose:
            print(
                f"[baum_welch] E-step {state['e_steps']}: {history[-1]:.6f} per "
                f"token (gain {gain:.3g})",
                file=sys.stderr,
                flush=True,
            )
        return gain < tol

    while state["e_steps"] < n_iter:
        theta0 = model
        theta1 = em(stats, theta0)
        stats1 = e_step(theta1)
        if stats1["loglik"] < stats["loglik"]:
            break  # only the floors can cause it: keep the best model
        if acceleration is None or state["e_steps"] + 2 > n_iter:
            model, stats = theta1, stats1
            if accept(model, stats):
                converged = True
                break
            continue
        theta2 = em(stats1, theta1)
        r = _to_vector(theta1) - _to_vector(theta0)
        v = _to_vector(theta2) - _to_vector(theta1) - r
        # step 1 is theta2 itself; longer steps extrapolate along the path
        alpha = float(
            np.clip(np.sqrt(r @ r) / max(np.sqrt(v @ v), 1e-300), 1, step_max)
        )
        jump = _to_vector(theta0) + 2 * alpha * r + alpha**2 * v
        candidate = _from_vector(jump, theta0, min_covar, floor)
        candidate_stats = e_step(candidate)
        # the safeguard: keep the jump only if it beats the EM step theta1
        if candidate_stats["loglik"] >= stats1["loglik"]:
            model, stats = candidate, candidate_stats
            if alpha == step_max:
                step_max *= 4.0
        else:
            model, stats = theta1, stats1
            if alpha == step_max:
                step_max = max(1.0, step_max / 4.0)
        if accept(model, stats):
            converged = True
            break
    return Refinement(model, history, state["e_steps"], converged)
