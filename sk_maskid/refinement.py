"""Baum-Welch (EM) refinement of an extracted HMM, accelerated and streamed.

The tensor route gives identifiable, globally sound parameters cheaply; EM
started there climbs to the likelihood optimum of that basin (the evaluation
protocol on the Theory page of the documentation). Three things make it
practical on real data:

* **Streaming E-steps.** The expected counts are additive over sequences, so
  each E-step runs over chunks of sequences (bounded memory, parallel with
  joblib) and keeps only the counts.
* **Rows of one length** (:mod:`sk_maskid._rows`): long sequences cut into
  rows joined exactly by ``k x k`` transfer maps, short ones packed whole,
  so an E-step loops over about ``sqrt(n_tokens)`` positions, never over a
  whole long sequence, and a padded corpus costs its tokens, not its
  padding.
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

import functools
import sys
from dataclasses import dataclass

import numpy as np
from joblib import Parallel, delayed

from ._dask import is_dask_array
from ._rows import cut_rows, row_maps, rows_forward_backward, split_messages
from .models import CategoricalHMMModel, GaussianHMMModel

__all__ = ["Refinement", "baum_welch"]


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
# E-step: additive expected counts per chunk of rows.
# --------------------------------------------------------------------------
def _e_step(model, X, starts, inside, alpha_in, beta_end):
    """Expected counts of one chunk of rows, and its log-likelihood."""
    T = model.transmat_
    k = model.n_components
    B, log_shift, alpha, c, beta = rows_forward_backward(
        model, X, starts, alpha_in, beta_end
    )
    with np.errstate(divide="ignore"):
        loglik = float(np.log(c).sum() + log_shift.sum())
    # From here on the chunk is one stretch of the stream: contiguous
    # (tokens, k) arrays, no boolean gathers.
    alpha, beta = alpha.reshape(-1, k), beta.reshape(-1, k)
    arriving = B.reshape(-1, k) * beta
    arriving /= np.where(c == 0, 1.0, c).reshape(-1, 1)
    # a transition t -> t + 1 counts unless t + 1 begins a sequence or is
    # padding; the chunk's first token may continue the chunk before it
    follows = (inside & ~starts).ravel()
    trans = alpha[:-1].T @ (arriving[1:] * follows[1:, None])
    if follows[0]:
        trans += np.outer(alpha_in[0], arriving[0])
    gamma = alpha * beta  # sums to 1 per token by the scaling
    observed = (~model._masked(X) & inside).ravel()
    stats = {
        "start": gamma[starts.ravel()].sum(axis=0),
        "trans": trans * T,
        "loglik": loglik,
        "n_tokens": float(np.count_nonzero(observed)),
    }
    if isinstance(model, CategoricalHMMModel):
        d = model.n_symbols
        # one bincount over (token, state) cells; unobserved ones go to d
        token = np.where(observed, X.ravel(), d)
        cells = (token[:, None] * k + np.arange(k)).ravel()
        counts = np.bincount(cells, weights=gamma.ravel(), minlength=(d + 1) * k)
        stats["counts"] = counts[: d * k].reshape(d, k).T
    else:
        tokens = np.where(observed[:, None], X.reshape(len(observed), -1), 0.0)
        weights = gamma * observed[:, None]
        stats["weight"] = weights.sum(axis=0)
        stats["sum"] = weights.T @ tokens
        stats["sum_sq"] = weights.T @ tokens**2
    return stats


def _expected_counts(model, chunks, n_jobs):
    parallel = Parallel(n_jobs=n_jobs)
    maps = parallel(
        delayed(row_maps)(model, X, starts, chained) for X, starts, _, chained in chunks
    )
    per_chunk = split_messages(maps, chunks)
    parts = parallel(
        delayed(_e_step)(model, X, starts, inside, *chunk_messages)
        for (X, starts, inside, _), chunk_messages in zip(
            chunks, per_chunk, strict=True
        )
    )
    # in chunk order: results do not depend on n_jobs
    return functools.reduce(_add_counts, parts)


def _add_counts(left, right):
    """Sum of two expected-count dicts; ``None`` (no data) adds nothing."""
    if left is None or right is None:
        return right if left is None else left
    return {key: left[key] + right[key] for key in left}


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
    n_probe=20,
    n_jobs=None,
    verbose=0,
):
    """Refine an HMM by EM, never lowering the log-likelihood.

    Parameters
    ----------
    model : CategoricalHMMModel or GaussianHMMModel, or a list of them
        Starting point (e.g. the tensor route's read-out). With several,
        they compete by successive halving: each runs ``n_probe`` E-steps,
        the more likely half twice as many more, and so on; the last one
        continues (EM converges to the optimum of its start's basin; the
        starts try several basins).
    X : ndarray or dask.array.Array
        Padded sequences or windows, one sequence per row; masked tokens
        (``-1``, all-NaN) are marginalised. A Dask array (chunked along its
        rows only) stays on the cluster: each E-step maps over its blocks
        and sums their counts by a tree reduction, and only the counts come
        back (see the "Scaling out" page of the documentation).
    lengths : array-like of int, default=None
        Length of each row's sequence; ``None`` means the whole row. With a
        Dask ``X``, a Dask array chunked as ``X``'s rows (or ``None``).
    n_iter : int, default=1000
        Maximum E-steps (forward-backward passes), probes included.
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
    n_probe : int, default=20
        E-steps each start runs in the first round of successive halving
        (only with several starts).
    n_jobs : int, default=None
        Parallel E-step chunks (joblib); results do not depend on it.
    verbose : int, default=0
        ``>= 1`` prints the log-likelihood per token and its gain after each
        accepted step on stderr.

    Returns
    -------
    Refinement
        The kept start's path: ``history`` from its start, ``n_iter`` the
        E-steps of all starts.
    """
    if acceleration not in ("squarem", None):
        raise ValueError(
            f"acceleration must be 'squarem' or None, got {acceleration!r}"
        )
    starts = list(model) if isinstance(model, (list, tuple)) else [model]
    if is_dask_array(X):
        from ._dask import expected_counts_function

        expected_counts = expected_counts_function(X, lengths)
    else:
        X = starts[0]._check_X(X)
        if lengths is None:
            lengths = np.full(X.shape[0], X.shape[1])
        chunks = cut_rows(X, lengths).chunks

        def expected_counts(candidate):
            return _expected_counts(candidate, chunks, n_jobs)

    return _em_from_starts(
        starts,
        expected_counts,
        n_iter=n_iter,
        n_probe=n_probe,
        tol=tol,
        acceleration=acceleration,
        min_covar=min_covar,
        floor=floor,
        verbose=verbose,
    )


def _em_from_starts(starts, expected_counts, *, n_iter, n_probe, **options):
    """EM from several starts by successive halving, then the best to the end.

    Every start runs ``n_probe`` E-steps; the more likely half runs twice as
    many more, and so on until one is left, which climbs to convergence.
    Keeping the start that leads after one probe alone picks the fastest
    climber, not the best basin (on text and short series the leader at 20
    E-steps often ends lower). ``expected_counts(model)`` is the E-step: the
    counts summed over the data, wherever they live (chunks of rows in
    memory, blocks on a Dask cluster); only this loop and the M-steps run on
    the driver.
    """
    verbose = options["verbose"]
    if len(starts) == 1:
        return _climb(starts[0], expected_counts, n_iter=n_iter, **options)
    spent = 0

    def run(path, budget):
        nonlocal spent
        budget = min(budget, n_iter - spent)
        if path.converged or budget < 1:
            return path
        more = _climb(path.model, expected_counts, n_iter=budget, **options)
        spent += more.n_iter
        return Refinement(
            more.model,
            path.history[:-1] + more.history,
            path.n_iter + more.n_iter,
            more.converged,
        )

    alive = []
    for i, start in enumerate(starts):
        if spent >= n_iter:
            break
        if verbose:
            print(f"[baum_welch] start {i + 1}/{len(starts)}", file=sys.stderr)
        alive.append(run(Refinement(start, [], 0, False), n_probe))
    budget = n_probe
    while len(alive) > 1:
        alive.sort(key=lambda p: p.history[-1], reverse=True)
        alive = alive[: (len(alive) + 1) // 2]
        budget *= 2
        if verbose:
            print(f"[baum_welch] {len(alive)} start(s) kept", file=sys.stderr)
        alive = [run(path, budget if len(alive) > 1 else n_iter) for path in alive]
    best = alive[0]
    return Refinement(best.model, best.history, spent, best.converged)


def _climb(
    model, expected_counts, *, n_iter, tol, acceleration, min_covar, floor, verbose
):
    """EM (SQUAREM-accelerated) from one start, E-steps by ``expected_counts``."""
    state = {"e_steps": 0}

    def e_step(candidate):
        state["e_steps"] += 1
        return expected_counts(candidate)

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
