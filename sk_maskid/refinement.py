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
* **Starts in lockstep.** Several starts (successive halving, below) climb
  side by side, and each E-step evaluates all of them in one pass over the
  data: on short series that pass costs its per-position overhead, not its
  arithmetic, so 16 starts cost little more than one.
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
from joblib import Parallel, delayed, effective_n_jobs

from ._dask import is_dask_array
from ._rows import (
    _CHUNK_TOKENS,
    cut_rows,
    row_maps,
    rows_forward_backward,
    split_messages,
)
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
# E-step: additive expected counts per chunk of rows, for several models.
# --------------------------------------------------------------------------
def _e_step(models, X, starts, inside, alpha_in, beta_end):
    """Expected counts of one chunk of rows under each of ``models``.

    Returns one dict of counts with a leading model axis (``n_tokens`` is
    shared): the models go through the recursions together.
    """
    S, k = len(models), models[0].n_components
    B, log_shift, alpha, c, beta = rows_forward_backward(
        models, X, starts, alpha_in, beta_end
    )
    with np.errstate(divide="ignore"):
        loglik = np.log(c).sum(axis=(1, 2)) + log_shift.sum(axis=(1, 2))
    # From here on the chunk is one stretch of the stream per model:
    # contiguous (S, tokens, k) arrays, no boolean gathers.
    alpha, beta = alpha.reshape(S, -1, k), beta.reshape(S, -1, k)
    arriving = B.reshape(S, -1, k) * beta
    arriving /= np.where(c == 0, 1.0, c).reshape(S, -1, 1)
    # a transition t -> t + 1 counts unless t + 1 begins a sequence or is
    # padding; the chunk's first token may continue the chunk before it
    follows = (inside & ~starts).ravel()
    trans = np.swapaxes(alpha[:, :-1], 1, 2) @ (arriving[:, 1:] * follows[1:, None])
    if follows[0]:
        trans += alpha_in[:, 0, :, None] * arriving[:, 0, None, :]
    gamma = alpha * beta  # sums to 1 per token by the scaling
    observed = (~models[0]._masked(X) & inside).ravel()
    stats = {
        "start": gamma[:, starts.ravel()].sum(axis=1),
        "trans": trans * np.array([m.transmat_ for m in models]),
        "loglik": loglik,
        "n_tokens": float(np.count_nonzero(observed)),
    }
    if isinstance(models[0], CategoricalHMMModel):
        d = models[0].n_symbols
        # one bincount over (model, token, state) cells; unobserved tokens
        # go to symbol d
        token = np.where(observed, X.ravel(), d)
        if S > 1:
            token = token + (d + 1) * np.arange(S)[:, None]
        cells = (token[..., None] * k + np.arange(k)).ravel()
        counts = np.bincount(cells, weights=gamma.ravel(), minlength=S * (d + 1) * k)
        stats["counts"] = np.swapaxes(counts.reshape(S, d + 1, k)[:, :d], 1, 2)
    else:
        tokens = np.where(observed[:, None], X.reshape(len(observed), -1), 0.0)
        weights = np.swapaxes(gamma * observed[:, None], 1, 2)  # (S, k, tokens)
        stats["weight"] = weights.sum(axis=2)
        stats["sum"] = weights @ tokens
        stats["sum_sq"] = weights @ tokens**2
    return stats


def _expected_counts(models, chunks, n_jobs):
    """Expected counts of every model summed over the ``chunks`` of rows:
    a list of dicts, one per model."""
    return _per_model(_stacked_counts(models, chunks, n_jobs))


def _stacked_counts(models, chunks, n_jobs):
    """Expected counts of every model summed over the ``chunks`` of rows:
    one dict, each count with a leading model axis (additive across data).

    The models go through each chunk in groups whose forward-backward
    arrays together stay within one chunk's bound (all of them at once on
    short data, where a pass costs its per-position overhead; one at a
    time on chunks of a million tokens).
    """
    size = max(chunk[0].shape[0] * chunk[0].shape[1] for chunk in chunks)
    group = max(1, _CHUNK_TOKENS // max(size, 1))
    parts = [
        _summed_counts(models[lo : lo + group], chunks, n_jobs)
        for lo in range(0, len(models), group)
    ]
    if len(parts) == 1:
        return parts[0]
    return {
        key: np.concatenate([p[key] for p in parts]) if key != "n_tokens" else value
        for key, value in parts[0].items()
    }


def _summed_counts(models, chunks, n_jobs):
    parallel = _runner(len(chunks), n_jobs)
    maps = parallel(
        delayed(row_maps)(models, X, starts, chained)
        for X, starts, _, chained in chunks
    )
    per_chunk = split_messages(maps, chunks)
    parts = parallel(
        delayed(_e_step)(models, X, starts, inside, *chunk_messages)
        for (X, starts, inside, _), chunk_messages in zip(
            chunks, per_chunk, strict=True
        )
    )
    # in chunk order: results do not depend on n_jobs
    return functools.reduce(_add_counts, parts)


def _runner(n_tasks, n_jobs):
    """joblib's ``Parallel``, or a plain loop where it would run one task or
    one job (its dispatch costs more than a short E-step)."""
    if n_tasks > 1 and effective_n_jobs(n_jobs) > 1:
        return Parallel(n_jobs=n_jobs)
    return lambda tasks: [function(*args, **kwargs) for function, args, kwargs in tasks]


def _per_model(stats):
    """A stacked dict of counts (leading model axis) as one dict per model."""
    n = len(stats["loglik"])
    return [
        {key: value if key == "n_tokens" else value[i] for key, value in stats.items()}
        for i in range(n)
    ]


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

        def expected_counts(candidates):
            return _expected_counts(candidates, chunks, n_jobs)

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
    E-steps often ends lower). The starts of a round climb in lockstep, so
    that each E-step evaluates all of them in one pass over the data
    (:func:`_lockstep`). ``expected_counts(models)`` is that E-step: the
    counts summed over the data, wherever they live (chunks of rows in
    memory, blocks on a Dask cluster); only this loop and the M-steps run
    on the driver. ``n_iter`` caps the E-steps of all starts together.
    """
    # per start: its path so far, the counts of its last E-step (a continued
    # climb needs no E-step to resume) and its name in the progress lines
    n = len(starts)
    alive = [
        (Refinement(start, [], 0, False), None, f"start {i + 1}/{n}, " if n > 1 else "")
        for i, start in enumerate(starts)
    ]
    spent, budget = 0, n_probe
    while True:
        climbing = [i for i, (path, _, _) in enumerate(alive) if not path.converged]
        share = n_iter - spent
        if len(alive) > 1:
            if share < len(climbing):  # too few E-steps left: the first starts
                climbing = climbing[:share]
            share = min(budget, share // max(len(climbing), 1))
        if options["verbose"] and n > 1:
            print(
                f"[baum_welch] {len(alive)} start(s), up to {share} E-steps each",
                file=sys.stderr,
            )
        if climbing and share >= 1:
            climbs = [
                _climb(path.model, stats, n_iter=share, label=label, **options)
                for path, stats, label in (alive[i] for i in climbing)
            ]
            for i, (more, stats) in zip(
                climbing, _lockstep(climbs, expected_counts), strict=True
            ):
                path, _, label = alive[i]
                spent += more.n_iter
                alive[i] = (
                    Refinement(
                        more.model,
                        path.history[:-1] + more.history,
                        path.n_iter + more.n_iter,
                        more.converged,
                    ),
                    stats,
                    label,
                )
        if len(alive) == 1:
            best = alive[0][0]
            return Refinement(best.model, best.history, spent, best.converged)
        alive.sort(key=_last_likelihood, reverse=True)
        alive = alive[: (len(alive) + 1) // 2]
        budget *= 2


def _last_likelihood(entry):
    """A start's latest log-likelihood per token; -inf before its first E-step."""
    history = entry[0].history
    return history[-1] if history else -np.inf


def _lockstep(climbs, expected_counts):
    """Run the ``climbs`` (generators of :func:`_climb`) side by side.

    Each climb yields the model whose expected counts it needs next; the
    requests of all unfinished climbs go to ``expected_counts`` together
    (one pass over the data for all of them). Returns each climb's result.
    """
    results = [None] * len(climbs)
    requests = {}

    def advance(i, stats=None):
        try:
            requests[i] = climbs[i].send(stats)
        except StopIteration as stop:
            results[i] = stop.value
            requests.pop(i, None)

    for i in range(len(climbs)):
        advance(i)
    while requests:
        waiting = list(requests)
        counts = expected_counts([requests[i] for i in waiting])
        for i, stats in zip(waiting, counts, strict=True):
            advance(i, stats)
    return results


def _climb(
    model,
    stats,
    *,
    n_iter,
    tol,
    acceleration,
    min_covar,
    floor,
    verbose,
    label,
):
    """EM (SQUAREM-accelerated) from one start, as a generator.

    Yields each model whose expected counts it needs and receives them;
    returns ``(Refinement, counts of its model)``. ``stats`` are the
    start's counts if already known (a continued climb), else None.
    ``n_iter`` caps the E-steps this climb runs.
    """
    e_steps = 0
    if stats is None:
        stats = yield model
        e_steps += 1

    def em(stats, current):
        return _m_step(current, stats, min_covar, floor)

    n_tokens = max(stats["n_tokens"], 1.0)
    # SQUAREM's step-length control (Varadhan & Roland): extrapolation starts
    # at the plain EM step (1) and may grow fourfold after each success.
    step_max = 1.0
    history = [stats["loglik"] / n_tokens]
    converged = False

    def accept(candidate_stats):
        gain = candidate_stats["loglik"] / n_tokens - history[-1]
        history.append(candidate_stats["loglik"] / n_tokens)
        if verbose:
            print(
                f"[baum_welch] {label}E-step {e_steps}: {history[-1]:.6f} per "
                f"token (gain {gain:.3g})",
                file=sys.stderr,
                flush=True,
            )
        return gain < tol

    while e_steps < n_iter:
        theta0 = model
        theta1 = em(stats, theta0)
        stats1 = yield theta1
        e_steps += 1
        if stats1["loglik"] < stats["loglik"]:
            break  # only the floors can cause it: keep the best model
        if acceleration is None or e_steps + 2 > n_iter:
            model, stats = theta1, stats1
            if accept(stats):
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
        candidate_stats = yield candidate
        e_steps += 1
        # the safeguard: keep the jump only if it beats the EM step theta1
        if candidate_stats["loglik"] >= stats1["loglik"]:
            model, stats = candidate, candidate_stats
            if alpha == step_max:
                step_max *= 4.0
        else:
            model, stats = theta1, stats1
            if alpha == step_max:
                step_max = max(1.0, step_max / 4.0)
        if accept(stats):
            converged = True
            break
    return Refinement(model, history, e_steps, converged), stats
