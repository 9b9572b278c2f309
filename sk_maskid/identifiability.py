"""Does a masking scheme identify the HMM? Numerical answers.

Local identifiability (DESIGN.md section 5): at a random generic parameter
``theta``, the Jacobian of ``theta -> optimal predictor on a probe set`` is
computed exactly by the complex-step method (every perturbation evaluated in
one batched forward-backward), on the free parameters only (each stochastic
row is parametrised by ``k - 1`` or ``d - 1`` logits, so simplex constraints
add no spurious null directions). Full column rank means locally
identifiable; a rank deficiency is a continuum of models with the same
predictor, of dimension ``null_dimension``.

The rank decision uses singular values relative to the largest: below
``_RANK_RTOL`` counts as zero. Complex-step derivatives are exact to
rounding, so true zeros sit near 1e-15 while the smallest genuine singular
values on generic models stay above 1e-7: the gap is wide.
"""

from __future__ import annotations

import itertools
from collections import namedtuple
from functools import lru_cache

import numpy as np
from sklearn.utils import check_random_state

from .models import _stationary, _task_expectation
from .tasks import parse_task

__all__ = ["local_identifiability"]

_RANK_RTOL = 1e-10
_STEP = 1e-30
_MAX_PROBES = 2048

LocalResult = namedtuple(
    "LocalResult",
    ["n_free_parameters", "jacobian_rank", "null_dimension", "singular_values"],
)


def _logits_to_rows(Z):
    """Rows of a stochastic matrix from ``(..., m - 1)`` free logits."""
    Z = np.concatenate([Z, np.zeros(Z.shape[:-1] + (1,), dtype=Z.dtype)], axis=-1)
    Z = Z - np.real(Z).max(axis=-1, keepdims=True)
    E = np.exp(Z)
    return E / E.sum(axis=-1, keepdims=True)


def _rows_to_logits(P):
    return np.log(P[..., :-1]) - np.log(P[..., -1:])


def _tasks(task):
    if isinstance(task, list | tuple):
        return [parse_task(t) for t in task]
    return [parse_task(task)]


def _categorical_predictor(tasks, k, d, rng):
    """Batched predictor ``theta (P, n_free) -> (P, n_outputs)``, and theta0."""
    span = max(t.span for t in tasks)
    probe_sets = []
    for task in tasks:
        combos = np.array(list(itertools.product(range(d), repeat=len(task.observed))))
        if len(combos) > _MAX_PROBES:
            combos = combos[rng.choice(len(combos), _MAX_PROBES, replace=False)]
        probes = -np.ones((len(combos), span), dtype=int)
        probes[:, [p - 1 for p in task.observed]] = combos
        probe_sets.append(probes)
    n_trans = k * (k - 1)

    def predictor(theta):
        P = theta.shape[0]
        transmat = _logits_to_rows(theta[:, :n_trans].reshape(P, k, k - 1))
        emission = _logits_to_rows(theta[:, n_trans:].reshape(P, k, d - 1))
        startprob = _stationary(transmat)
        outputs = []
        for task, probes in zip(tasks, probe_sets, strict=True):
            n = len(probes)
            B = np.swapaxes(emission, 1, 2)[:, np.maximum(probes, 0)]
            B = np.where((probes >= 0)[None, :, :, None], B, 1.0)
            out = _task_expectation(
                np.repeat(startprob, n, axis=0),
                np.repeat(transmat, n, axis=0),
                B.reshape(P * n, span, k),
                np.repeat(emission, n, axis=0),
                task,
            )
            outputs.append(out.reshape(P, -1))
        return np.concatenate(outputs, axis=1)

    return predictor, n_trans + k * (d - 1)


def _gaussian_predictor(tasks, k, d, rng, variance=1.0, n_probes=40):
    """Batched Gaussian predictor with known spherical variance."""
    span = max(t.span for t in tasks)
    probes = rng.standard_normal((n_probes, span, d)) * 2.0
    n_trans = k * (k - 1)

    def predictor(theta):
        P = theta.shape[0]
        transmat = _logits_to_rows(theta[:, :n_trans].reshape(P, k, k - 1))
        means = theta[:, n_trans:].reshape(P, k, d)
        startprob = _stationary(transmat)
        outputs = []
        for task in tasks:
            sq = np.sum((probes[None, :, :, None, :] - means[:, None, None]) ** 2, -1)
            logB = -0.5 * sq / variance
            logB = logB - np.real(logB).max(axis=-1, keepdims=True)
            B = np.exp(logB)  # (P, n, span, k)
            keep = np.zeros(span, dtype=bool)
            keep[[p - 1 for p in task.observed]] = True
            B = np.where(keep[None, None, :, None], B, 1.0)
            out = _task_expectation(
                np.repeat(startprob, n_probes, axis=0),
                np.repeat(transmat, n_probes, axis=0),
                B.reshape(P * n_probes, span, k),
                np.repeat(means, n_probes, axis=0),
                task,
            )
            outputs.append(out.reshape(P, -1))
        return np.concatenate(outputs, axis=1)

    return predictor, n_trans + k * d


def _generic_theta(emission, k, d, rng):
    """Free parameters of a random generic, well-conditioned HMM."""
    from .datasets import make_categorical_hmm

    seed = int(rng.randint(2**31 - 1))
    chain = make_categorical_hmm(k, max(k, d), random_state=seed)
    transmat = _rows_to_logits(chain.transmat_).ravel()
    if emission == "categorical":
        return np.concatenate([transmat, _rows_to_logits(chain.emissionprob_).ravel()])
    means = 2.0 * np.random.RandomState(seed).standard_normal((k, d))
    return np.concatenate([transmat, means.ravel()])


def jacobian(predictor, theta):
    """Exact Jacobian of a batched analytic map by the complex step."""
    n = theta.size
    batch = theta[None, :] + 1j * _STEP * np.eye(n)
    return (predictor(batch).imag / _STEP).T


def local_identifiability(
    task, *, emission="categorical", n_components, n_features, random_state=None
):
    """Jacobian rank of the optimal predictor at a random generic HMM.

    Parameters
    ----------
    task : str, MaskedTask, or list of them
        A list is the joint task: the predictors are concatenated.
    emission : {"categorical", "gaussian"}, default="categorical"
        Token type; Gaussian tokens have known spherical variance 1.
    n_components : int
    n_features : int
        Alphabet size, or token dimension.
    random_state : int, RandomState instance or None, default=None
        Draws the generic parameter and the probes.

    Returns
    -------
    LocalResult
        ``n_free_parameters``, ``jacobian_rank``, ``null_dimension`` and the
        singular values (largest first).
    """
    rng = check_random_state(random_state)
    tasks = _tasks(task)
    k, d = int(n_components), int(n_features)
    if k < 2:
        # One hidden state: no transition to identify, emissions are the
        # marginal of any single token; nothing is ambiguous.
        return LocalResult(0, 0, 0, np.zeros(0))
    if emission == "categorical":
        predictor, n_free = _categorical_predictor(tasks, k, d, rng)
    elif emission == "gaussian":
        predictor, n_free = _gaussian_predictor(tasks, k, d, rng)
    else:
        raise ValueError(
            f"emission must be 'categorical' or 'gaussian', got {emission!r}"
        )
    theta = _generic_theta(emission, k, d, rng)
    J = jacobian(predictor, theta)
    sv = np.linalg.svd(J, compute_uv=False)
    rank = int(np.count_nonzero(sv > _RANK_RTOL * sv[0])) if sv.size else 0
    return LocalResult(n_free, rank, n_free - rank, sv)


@lru_cache(maxsize=128)
def _cached_null_dimension(spec, emission, k, d):
    """Null dimension of a task, deterministic (seeded), for estimators."""
    return local_identifiability(
        spec, emission=emission, n_components=k, n_features=d, random_state=0
    ).null_dimension
