"""Does a masking scheme identify the HMM? Numerical answers.

Local identifiability (see the Theory page of the documentation): at a random generic
parameter ``theta``, the Jacobian of ``theta -> optimal predictor on a probe set`` is
computed exactly by the complex-step method (every perturbation evaluated in one batched
forward-backward), on the free parameters only (each stochastic row is parametrised by
``k - 1`` or ``d - 1`` logits, so simplex constraints add no spurious null directions).
Full column rank means locally identifiable; a rank deficiency is a continuum of models
with the same predictor, of dimension ``null_dimension``.

The rank decision uses singular values relative to the largest: below
``RANK_RTOL`` counts as zero. Complex-step derivatives are exact to
rounding, so true zeros sit near 1e-15 while the smallest genuine singular
values on generic models stay above 1e-7: the gap is wide.
"""

from __future__ import annotations

import itertools
from collections import namedtuple
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from sklearn.utils import check_random_state

from ._hmm import (
    RANK_RTOL,
    STEP,
    batched_task_expectation,
    categorical_probe_emissions,
    complex_step,
    softmax_rows,
    stationary,
)
from .datasets import make_categorical_hmm
from .tasks import parse_task

__all__ = [
    "IdentifiabilityReport",
    "KruskalResult",
    "check_task",
    "local_identifiability",
    "stochastic_roots",
]

_MAX_PROBES = 2048

LocalResult = namedtuple(
    "LocalResult",
    ["n_free_parameters", "jacobian_rank", "null_dimension", "singular_values"],
)


def _logits_to_rows(Z):
    """Rows of a stochastic matrix from ``(..., m - 1)`` free logits."""
    zeros = np.zeros(Z.shape[:-1] + (1,), dtype=Z.dtype)
    return softmax_rows(np.concatenate([Z, zeros], axis=-1))


def _rows_to_logits(P):
    return np.log(P[..., :-1]) - np.log(P[..., -1:])


def _tasks(task):
    """Tasks of a single or joint task; a joint one may be spelled "a + b"."""
    if isinstance(task, str) and "+" in task:
        task = task.split("+")
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
        startprob = stationary(transmat)
        outputs = [
            batched_task_expectation(
                startprob,
                transmat,
                categorical_probe_emissions(emission, probes),
                emission,
                task,
            ).reshape(P, -1)
            for task, probes in zip(tasks, probe_sets, strict=True)
        ]
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
        startprob = stationary(transmat)
        outputs = []
        for task in tasks:
            sq = np.sum((probes[None, :, :, None, :] - means[:, None, None]) ** 2, -1)
            logB = -0.5 * sq / variance
            logB = logB - np.real(logB).max(axis=-1, keepdims=True)
            B = np.exp(logB)  # (P, n, span, k)
            keep = np.zeros(span, dtype=bool)
            keep[[p - 1 for p in task.observed]] = True
            B = np.where(keep[None, None, :, None], B, 1.0)
            out = batched_task_expectation(startprob, transmat, B, means, task)
            outputs.append(out.reshape(P, -1))
        return np.concatenate(outputs, axis=1)

    return predictor, n_trans + k * d


def _generic_theta(emission, k, d, rng):
    """Free parameters of a random generic, well-conditioned HMM.

    With ``k > d`` no full-column-rank emission exists; the emissions are then
    plain Dirichlet (or Gaussian) draws, still generic.
    """
    seed = int(rng.randint(2**31 - 1))
    draw = np.random.RandomState(seed)
    chain = make_categorical_hmm(k, max(k, d), random_state=seed)
    transmat = _rows_to_logits(chain.transmat_).ravel()
    if emission == "categorical":
        emissions = (
            chain.emissionprob_ if d >= k else draw.dirichlet(np.ones(d), size=k)
        )
        return np.concatenate([transmat, _rows_to_logits(emissions).ravel()])
    means = 2.0 * draw.standard_normal((k, d))
    return np.concatenate([transmat, means.ravel()])


def jacobian(predictor, theta):
    """Exact Jacobian ``(n_outputs, n_parameters)`` by the complex step."""
    return complex_step(predictor, theta, STEP)[1]


def local_identifiability(
    task, *, emission="categorical", n_components, n_features, random_state=None
):
    """Jacobian rank of the optimal predictor at a random generic HMM.

    Parameters
    ----------
    task : str, MaskedTask, or list of them
        A list, or a string joining spellings with ``+`` (``"1->2 + 2->1"``),
        is the joint task: the predictors are concatenated.
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
    rank = int(np.count_nonzero(sv > RANK_RTOL * sv[0])) if sv.size else 0
    return LocalResult(n_free, rank, n_free - rank, sv)


@lru_cache(maxsize=128)
def cached_null_dimension(spec, emission, k, d):
    """Null dimension of a task, deterministic (seeded), for estimators."""
    return local_identifiability(
        spec, emission=emission, n_components=k, n_features=d, random_state=0
    ).null_dimension


# --------------------------------------------------------------------------
# Global questions: Kruskal's condition and finite (root) ambiguities.
# --------------------------------------------------------------------------
def _krank(F, rtol=1e-9):
    """Kruskal rank: the largest r such that every r columns are independent.

    Brute force over column subsets; fine for the handful of hidden states
    these models have (no library computes k-ranks).
    """
    k = F.shape[1]
    scale = np.linalg.norm(F, 2) or 1.0
    for r in range(1, k + 1):
        if r > F.shape[0]:
            return r - 1  # more columns than dimensions: always dependent
        for cols in itertools.combinations(range(k), r):
            sv = np.linalg.svd(F[:, cols], compute_uv=False)
            if sv[-1] <= rtol * scale:
                return r - 1
    return k


KruskalResult = namedtuple("KruskalResult", ["k_ranks", "bound", "holds"])
KruskalResult.__doc__ = """Kruskal's condition for a 3-way CP tensor.

k_ranks : tuple of 3 int
    k-ranks of the three factors (observed-token posterior, then the two
    predicted tokens' conditional means).
bound : int
    ``2 * n_components + 2``.
holds : bool
    ``sum(k_ranks) >= bound``: the decomposition is unique.
"""


def _tensor_factors(task, emission, k, d, rng):
    """Factors of the predictor tensor of a one-observed, two-target task.

    Stacking ``E[x_q ⊗ x_r | x_p]`` over values (categorical) or probe points
    (Gaussian) of the observed token gives factors: the posterior of the
    hidden state at the middle position given ``x_p``, and the conditional
    means of the two predicted tokens given that hidden state.
    """
    theta = _generic_theta(emission, k, d, rng)
    chain = _logits_to_rows(theta[: k * (k - 1)].reshape(k, k - 1))
    if emission == "categorical":
        emission_means = _logits_to_rows(theta[k * (k - 1) :].reshape(k, d - 1))
    else:
        emission_means = theta[k * (k - 1) :].reshape(k, d)
    pi = stationary(chain)
    reverse = (chain.T * pi[None, :]) / pi[
        :, None
    ]  # reverse[h, i] = P(h_{t-1}=i|h_t=h)
    s1, s2, s3 = task.positions

    def given_middle(position):
        gap = position - s2
        step = chain if gap > 0 else reverse
        return np.linalg.matrix_power(step, abs(gap)) @ emission_means  # (k, D)

    p = task.observed[0]
    # posterior of h_{s2} given x_p: rows over observed values / probe points
    like = given_middle(p)  # (k, D): categorical P(x_p | h), Gaussian mean
    if emission == "categorical":
        post = like.T * pi
    else:
        probes = rng.standard_normal((max(3 * k, 10), d)) * 2.0
        logp = -0.5 * ((probes[:, None, :] - like[None]) ** 2).sum(-1) + np.log(pi)
        post = np.exp(logp - logp.max(axis=1, keepdims=True))
    post = post / post.sum(axis=1, keepdims=True)
    targets = [q for q in task.positions if q != p]
    return [post] + [given_middle(q).T for q in targets]


def _kruskal(task, emission, k, d, rng):
    factors = _tensor_factors(task, emission, k, d, rng)
    ranks = tuple(_krank(F) for F in factors)
    return KruskalResult(ranks, 2 * k + 2, sum(ranks) >= 2 * k + 2)


def stochastic_roots(transmat, power, tol=1e-9):
    """Other stochastic matrices ``T'`` with ``T'^power == transmat^power``.

    Candidates come from the eigendecomposition ``T = V diag(l) V^-1``: each
    eigenvalue may be replaced by another real ``power``-th root of
    ``l**power`` (a sign flip for even powers) while the eigenvalue 1 and the
    eigenvectors stay. A candidate is kept when it is real, non-negative and
    differs from ``transmat``: the finite ambiguity of the paper's Claim 1.

    Parameters
    ----------
    transmat : ndarray of shape (k, k)
        Row-stochastic matrix.
    power : int
        The power through which a task sees the chain (the gap).
    tol : float
        Tolerance for "real", "non-negative" and "different".

    Returns
    -------
    list of ndarray of shape (k, k)
    """
    if power < 2 or power % 2:
        return []  # odd real roots are unique
    vals, vecs = np.linalg.eig(transmat)
    inv = np.linalg.inv(vecs)
    flippable = [
        i
        for i in range(len(vals))
        if abs(vals[i] - 1) > tol and abs(vals[i].imag) <= tol
    ]
    roots = []
    for r in range(1, len(flippable) + 1):
        for subset in itertools.combinations(flippable, r):
            new = vals.copy()
            new[list(subset)] *= -1
            cand = vecs @ np.diag(new) @ inv
            if np.abs(cand.imag).max() > tol:
                continue
            cand = cand.real
            if cand.min() >= -tol and np.abs(cand - transmat).max() > tol:
                roots.append(np.clip(cand, 0, None))
    return roots


def _min_gap(task):
    positions = task.positions
    return min(b - a for a, b in zip(positions[:-1], positions[1:], strict=True))


# --------------------------------------------------------------------------
# The report.
# --------------------------------------------------------------------------
_THEORY = {
    # (canonical spec, emission) -> the paper's verdict (the Theory page of
    # the documentation states each result and its theorem).
    ("1->2", "categorical"): "not identifiable (Theorem 2)",
    ("2->1", "categorical"): "not identifiable (Theorem 2)",
    ("1->3", "categorical"): "not identifiable (a continuum, like 1->2)",
    ("1->2*3", "categorical"): "identifiable when k <= d (Theorem 5, Kruskal)",
    ("2->1*3", "categorical"): "identifiable when k <= d (Theorem 5, Kruskal)",
    ("1->2", "gaussian"): "identifiable",
    ("2->1", "gaussian"): "identifiable",
    ("1->3", "gaussian"): "locally identifiable, finite ambiguity (Claim 1)",
    ("1->2*3", "gaussian"): "identifiable",
    ("2->1*3", "gaussian"): "identifiable",
}
_PAIRWISE_3 = frozenset(["1->2", "2->1", "1->3", "3->1", "2->3", "3->2"])


def _theory(tasks, emission, k, d):
    specs = [t.spec for t in tasks]
    if len(specs) > 1:
        if frozenset(specs) == _PAIRWISE_3:
            return (
                "not identifiable (Theorem 4)"
                if emission == "categorical"
                else "identifiable"
            )
        return None
    verdict = _THEORY.get((specs[0], emission))
    if verdict and emission == "categorical" and "k <= d" in verdict and k > d:
        return (
            "not identifiable (k > d: the emission matrix cannot have full column rank)"
        )
    if verdict and emission == "gaussian" and k > d:
        # the paper's standing assumption: linearly independent means
        return "not covered (the paper assumes k <= d, independent means)"
    return verdict


@dataclass(frozen=True)
class IdentifiabilityReport:
    """Whether a masking scheme identifies the HMM, and why.

    Attributes
    ----------
    task : str
        The task (several, joined by " + ", for a joint task).
    emission : str
    n_components, n_features : int
    verdict : str
        One of "identifiable", "not identifiable", "locally identifiable,
        finite ambiguity", "inconclusive".
    n_free_parameters : int
        Free parameters of the HMM (simplex constraints removed).
    jacobian_rank : int
        Rank of the predictor's Jacobian (the smallest over trials).
    null_dimension : int
        ``n_free_parameters - jacobian_rank``: the dimension of the family
        of models that share the predictor.
    kruskal : KruskalResult or None
        For tensor-product targets.
    reason : str
        One sentence.
    theory : str or None
        The paper's verdict where the paper covers the task.
    """

    task: str
    emission: str
    n_components: int
    n_features: int
    verdict: str
    n_free_parameters: int
    jacobian_rank: int
    null_dimension: int
    kruskal: KruskalResult | None
    reason: str
    theory: str | None

    def __str__(self):
        lines = [
            f"task {self.task!r}, {self.emission} tokens, "
            f"k={self.n_components}, d={self.n_features}: {self.verdict}",
            f"  Jacobian rank {self.jacobian_rank} of {self.n_free_parameters} "
            f"free parameters (null dimension {self.null_dimension})",
        ]
        if self.kruskal is not None:
            holds = "holds" if self.kruskal.holds else "fails"
            lines.append(
                f"  Kruskal: k-ranks {self.kruskal.k_ranks}, sum "
                f"{sum(self.kruskal.k_ranks)} vs {self.kruskal.bound}: {holds}"
            )
        lines.append(f"  reason: {self.reason}")
        if self.theory is not None:
            lines.append(f"  theory: {self.theory}")
        return "\n".join(lines)


def check_task(
    task,
    *,
    emission="categorical",
    n_components,
    n_features,
    n_trials=3,
    random_state=None,
):
    """Does the optimal predictor of ``task`` determine the HMM?

    Parameters
    ----------
    task : str, MaskedTask, or list of them
        A list, or a string joining spellings with ``+`` as the report
        prints them, is the joint task (predictors concatenated), e.g. all
        pairwise tasks on three tokens for the paper's Theorem 4.
    emission : {"categorical", "gaussian"}, default="categorical"
    n_components : int
        Number of hidden states ``k``.
    n_features : int
        Alphabet size or token dimension ``d``.
    n_trials : int, default=3
        Random generic parameters at which the Jacobian rank is computed; the
        verdict is "inconclusive" if they disagree.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    IdentifiabilityReport
    """
    if emission not in ("categorical", "gaussian"):
        raise ValueError(
            f"emission must be 'categorical' or 'gaussian', got {emission!r}"
        )
    tasks = _tasks(task)
    k, d = int(n_components), int(n_features)
    if k < 1 or d < 1:
        raise ValueError("n_components and n_features must be >= 1")
    if emission == "categorical" and d < 2:
        raise ValueError("a categorical alphabet needs n_features >= 2")
    rng = check_random_state(random_state)
    results = [
        local_identifiability(
            tasks, emission=emission, n_components=k, n_features=d, random_state=rng
        )
        for _ in range(n_trials)
    ]
    nulls = {r.null_dimension for r in results}
    worst = max(results, key=lambda r: r.null_dimension)
    single = tasks[0] if len(tasks) == 1 else None
    kruskal = None
    if (
        single is not None
        and len(single.observed) == 1
        and len(single.targets) == 1
        and len(single.targets[0]) == 2
        and k >= 2
    ):
        kruskal = _kruskal(single, emission, k, d, rng)
    name = " + ".join(t.spec for t in tasks)
    if len(nulls) > 1:
        verdict = "inconclusive"
        reason = (
            f"the Jacobian rank differs between trials (null dimensions "
            f"{sorted(nulls)}): the parameters drawn may be non-generic"
        )
    elif worst.null_dimension > 0:
        verdict = "not identifiable"
        reason = (
            f"a {worst.null_dimension}-dimensional family of HMMs gives the same "
            "optimal predictor (rank-deficient Jacobian)"
        )
        if kruskal is not None and emission == "categorical" and k > d:
            reason += (
                f"; with k={k} > d={d} the emission matrix has k-rank "
                f"{kruskal.k_ranks[1]} < k, so T cannot be read off O T"
            )
    elif min(_min_gap(t) for t in tasks) >= 2 and k >= 2:
        verdict = "locally identifiable, finite ambiguity"
        reason = (
            "the Jacobian has full rank, but the task never sees two adjacent "
            "tokens, so T enters only through a power T^g whose other "
            "stochastic roots give the same predictor"
        )
    else:
        verdict = "identifiable"
        reason = "the predictor's Jacobian has full rank"
        if kruskal is not None:
            reason += (
                " and Kruskal's condition holds"
                if kruskal.holds
                else (", although Kruskal's sufficient condition fails")
            )
    return IdentifiabilityReport(
        task=name,
        emission=emission,
        n_components=k,
        n_features=d,
        verdict=verdict,
        n_free_parameters=worst.n_free_parameters,
        jacobian_rank=worst.jacobian_rank,
        null_dimension=worst.null_dimension,
        kruskal=kruskal,
        reason=reason,
        theory=_theory(tasks, emission, k, d),
    )
