"""Extraction: simplex projection, CP read-outs, the recipe on exact statistics.

Exact population statistics come from path enumeration (tests/oracles.py and
the Gaussian moment oracle below), so on them every read-out must return the
true model up to rounding and a permutation of the states.
"""

import itertools

import numpy as np
import pytest
from oracles import categorical_expectation, categorical_joint, path_probabilities

from sk_maskid import GaussianHMMModel, make_categorical_hmm, make_gaussian_hmm
from sk_maskid._cp import cp_decompose
from sk_maskid._statistics import TokenPairs, gaussian_moments
from sk_maskid.extraction import (
    PROB_FLOOR,
    _floor,
    _predictor_table,
    _project_rows,
    _unfolding_rank,
    extract_categorical,
    extract_gaussian,
    readout_categorical,
    readout_gaussian,
    tensor_route,
)
from sk_maskid.metrics import align_states
from sk_maskid.tasks import parse_task


# --------------------------------------------------------------------------
# Simplex projection
# --------------------------------------------------------------------------
def _duchi_projection(v):
    """Euclidean projection of one vector on the simplex (Duchi et al., 2008)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    rho = np.flatnonzero(u - css / np.arange(1, len(v) + 1) > 0)[-1]
    return np.maximum(v - css[rho] / (rho + 1), 0.0)


@pytest.mark.parametrize("shape", [(7, 4), (3, 9), (20, 2)])
def test_project_rows_equals_the_sort_algorithm(shape):
    rng = np.random.default_rng(shape[0])
    V = rng.standard_normal(shape) * rng.uniform(0.1, 3.0, size=(shape[0], 1))
    P = _project_rows(V)
    assert P.shape == shape
    expected = np.array([_duchi_projection(v) for v in V])
    np.testing.assert_allclose(P, expected, rtol=0, atol=1e-14)
    assert np.all(P >= 0)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-14)


def test_project_rows_is_the_nearest_point_of_the_simplex():
    # optimality: no random point of the simplex is closer to v than P
    rng = np.random.default_rng(1)
    V = rng.standard_normal((5, 4))
    P = _project_rows(V)
    others = rng.dirichlet(np.ones(4) * 0.3, size=2000)
    for v, p in zip(V, P, strict=True):
        assert np.sum((v - p) ** 2) <= np.min(np.sum((v - others) ** 2, axis=1))


def test_project_rows_keeps_points_of_the_simplex_and_shapes():
    rng = np.random.default_rng(2)
    S = rng.dirichlet(np.ones(5), size=6)
    S[0] = np.eye(5)[2]  # a vertex
    np.testing.assert_allclose(_project_rows(S), S, rtol=0, atol=1e-15)
    one = _project_rows(np.array([[0.2, -0.5, 1.1]]))
    assert one.shape == (1, 3)
    np.testing.assert_allclose(one[0], _duchi_projection(np.array([0.2, -0.5, 1.1])))
    assert _project_rows(np.array([0.5, 0.6])).shape == (1, 2)  # 1-D input: one row
    np.testing.assert_array_equal(_project_rows(np.array([[3.0], [-2.0]])), [[1], [1]])


def test_floor_lifts_zeros_and_renormalises():
    P = np.array([[0.0, 0.3, 0.7], [1.0, 0.0, 0.0]])
    F = _floor(P)
    # zeros are lifted to the floor, then rows renormalised (closed form)
    lifted = np.where(P == 0, PROB_FLOOR, P)
    np.testing.assert_allclose(F, lifted / lifted.sum(1, keepdims=True), rtol=1e-15)
    assert F.min() >= PROB_FLOOR / (1 + 3 * PROB_FLOOR)
    np.testing.assert_allclose(F.sum(axis=1), 1.0, rtol=1e-15)
    # the renormalisation moves an entry by at most (d - 1) floors: here the
    # 1.0 of the second row loses two (the docstring's "at most PROB_FLOOR" is
    # only true for one lifted entry per row)
    assert np.abs(F - P).max() <= 2 * PROB_FLOOR
    assert np.abs(F - P).max() > 1.9 * PROB_FLOOR


# --------------------------------------------------------------------------
# Helpers: exact population statistics
# --------------------------------------------------------------------------
def _aligned(true_model, transmat, emission):
    """Fitted parameters with their states put in the truth's order."""

    class Fitted:
        emissionprob_ = emission
        means_ = emission

    perm = align_states(true_model, Fitted)
    return transmat[np.ix_(perm, perm)], emission[perm], perm


def _gaussian_population_moments(model, positions):
    """Exact E[x~_a ⊗ x~_b ⊗ x~_c] and E[x~_a ⊗ (x_b ∘ x_b)] by path enumeration.

    Given the hidden path, tokens at distinct positions are independent, so
    each path contributes the tensor product of its augmented state means.
    """
    a, b, c = (p - 1 for p in positions)
    paths, prob = path_probabilities(model, positions[-1])
    aug = np.hstack([model.means_, np.ones((model.n_components, 1))])
    m3 = np.einsum(
        "n,ni,nj,nk->ijk", prob, aug[paths[:, a]], aug[paths[:, b]], aug[paths[:, c]]
    )
    second = model.means_**2 + model.covars_  # diag covariances
    m_sq = np.einsum("n,ni,nj->ij", prob, aug[paths[:, a]], second[paths[:, b]])
    return m3, m_sq


def _gaussian_model(seed, k=3, d=4):
    base = make_gaussian_hmm(k, d, self_transition=0.5, random_state=seed)
    covars = np.random.default_rng(seed).uniform(0.5, 1.5, size=(k, d))
    return GaussianHMMModel(
        base.startprob_, base.transmat_, base.means_, covars, "diag"
    )


# --------------------------------------------------------------------------
# Read-outs from CP factors
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "positions, ambiguous",
    [
        ((1, 2, 3), False),  # T from the factor after the latent position
        ((1, 3, 4), False),  # gaps (2, 1): still one step after
        ((1, 2, 4), False),  # gaps (1, 2): the reverse kernel, one step before
        ((1, 3, 5), True),  # gaps (2, 2): the principal square root of T^2
    ],
)
def test_readout_categorical_is_exact_on_the_population_tensor(positions, ambiguous):
    # self_transition=0.5 keeps T's eigenvalues in the right half-plane, so
    # the principal square root of T^2 is T itself.
    model = make_categorical_hmm(3, 4, self_transition=0.5, random_state=0)
    joint = categorical_joint(model, positions, positions[-1])
    out = readout_categorical(cp_decompose(joint, 3, random_state=0), positions)
    transmat, emission, perm = _aligned(model, out["transmat"], out["emissionprob"])
    # rounding of an exact CP fit (relative error ~1e-15) through pinv and root
    np.testing.assert_allclose(transmat, model.transmat_, rtol=0, atol=1e-8)
    np.testing.assert_allclose(emission, model.emissionprob_, rtol=0, atol=1e-8)
    np.testing.assert_allclose(out["pi_weights"][perm], model.startprob_, atol=1e-8)
    assert out["finite_ambiguity"] is ambiguous


@pytest.mark.parametrize("positions", [(1, 2, 3), (2, 3, 4), (1, 2, 4)])
def test_readout_gaussian_is_exact_on_population_moments(positions):
    model = _gaussian_model(1)
    m3, m_sq = _gaussian_population_moments(model, positions)
    cp = cp_decompose(m3, 3, random_state=0)
    # n=1: the moments are already means; the variances never reach the floor
    out = readout_gaussian(cp, positions, m_sq, 1.0, min_covar=1e-3)
    transmat, means, perm = _aligned(model, out["transmat"], out["means"])
    np.testing.assert_allclose(transmat, model.transmat_, rtol=0, atol=1e-8)
    np.testing.assert_allclose(means, model.means_, rtol=0, atol=1e-8)
    np.testing.assert_allclose(out["variances"][perm], model.covars_, atol=1e-8)
    np.testing.assert_allclose(out["pi_weights"][perm], model.startprob_, atol=1e-8)


def test_gaussian_moment_oracle_agrees_with_sampled_moments():
    # guards the oracle above: 2e5 windows, standard error ~ 0.01 per entry
    model = _gaussian_model(2, k=2, d=2)
    m3, m_sq = _gaussian_population_moments(model, (1, 2, 3))
    stats = gaussian_moments(model.sample(200_000, 3, random_state=0), (1, 2, 3))
    np.testing.assert_allclose(stats["m3"] / stats["n"], m3, rtol=0, atol=0.06)
    np.testing.assert_allclose(stats["m_sq"] / stats["n"], m_sq, rtol=0, atol=0.06)


# --------------------------------------------------------------------------
# The recipe
# --------------------------------------------------------------------------
def test_tensor_route():
    assert tensor_route(parse_task("1->2*3")) == (1, 2, 3)
    assert tensor_route(parse_task("3->1*2")) == (1, 2, 3)
    assert tensor_route(parse_task("2->1*4")) == (1, 2, 4)
    for spec in ("1->2", "1,3->2", "1->2,3", "1->2*3*4"):
        assert tensor_route(parse_task(spec)) is None


def test_unfolding_rank():
    rng = np.random.default_rng(0)
    F = [rng.standard_normal((4, 2)) for _ in range(3)]
    assert _unfolding_rank(np.einsum("ir,jr,kr->ijk", *F)) == 2
    assert _unfolding_rank(np.einsum("i,j,k->ijk", *[f[:, 0] for f in F])) == 1
    assert _unfolding_rank(np.zeros((3, 3, 3))) == 0
    assert _unfolding_rank(rng.standard_normal((3, 4, 5))) == 3


@pytest.mark.parametrize("spec", ["1,3->2", "2->1,3", "1->3*2"])
def test_predictor_table_is_the_exact_conditional(spec):
    task = parse_task(spec)
    model = make_categorical_hmm(2, 3, random_state=4)
    counts = 1e6 * categorical_joint(model, task.positions, task.span)
    table, seen, weights = _predictor_table(counts, task, 3)
    assert seen.all()
    combos = list(itertools.product(range(3), repeat=len(task.observed)))
    expected = [
        np.concatenate(
            [
                categorical_expectation(model, task.observed, t, task.span, x)
                for t in task.targets
            ]
        )
        for x in combos
    ]
    np.testing.assert_allclose(table, expected, rtol=0, atol=1e-13)
    marginal = [categorical_joint(model, task.observed, task.span)[x] for x in combos]
    np.testing.assert_allclose(weights, marginal, rtol=1e-13)


@pytest.mark.parametrize("spec", ["1->2*3", "2->1*3"])
def test_extract_categorical_recovers_the_model_from_population_counts(spec):
    task = parse_task(spec)
    model = make_categorical_hmm(3, 5, random_state=1)
    counts = 1e7 * categorical_joint(model, task.positions, task.span)
    ex = extract_categorical(counts, task, 3, random_state=0)
    assert ex.method == "cp" and ex.messages == ()
    transmat, emission, perm = _aligned(
        model, ex.model.transmat_, ex.model.emissionprob_
    )
    np.testing.assert_allclose(transmat, model.transmat_, rtol=0, atol=1e-6)
    np.testing.assert_allclose(emission, model.emissionprob_, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ex.model.startprob_[perm], model.startprob_, atol=1e-6)
    assert ex.fit_error < 1e-8 and ex.condition > 0.01
    assert not ex.finite_ambiguity
    # the learned predictor is the exact one, row per observed symbol
    probes = np.zeros((5, task.span), dtype=int)
    probes[:, task.observed[0] - 1] = np.arange(5)
    np.testing.assert_allclose(
        ex.predictor, model.conditional_expectation(task, probes), atol=1e-12
    )


def test_extract_categorical_falls_back_on_a_rank_deficient_table():
    # i.i.d. tokens: the joint table is p ⊗ p ⊗ p, of rank 1 < 2 states
    p = np.array([0.2, 0.3, 0.5])
    counts = 1e5 * np.einsum("i,j,k->ijk", p, p, p)
    ex = extract_categorical(
        counts, parse_task("1->2*3"), 2, n_init=2, max_iter=200, random_state=0
    )
    assert ex.method == "predictor matching"
    assert any("rank 1 < n_components=2" in m for m in ex.messages)
    # whatever states it picks, the fitted HMM predicts tokens with p
    np.testing.assert_allclose(
        ex.model.startprob_ @ ex.model.emissionprob_, p, atol=1e-4
    )
    assert np.isfinite(ex.fit_error) and ex.fit_error < 1e-6


def test_extract_gaussian_recovers_the_model_from_population_moments():
    model = _gaussian_model(3)
    task = parse_task("1->2*3")
    m3, m_sq = _gaussian_population_moments(model, task.positions)
    stats = {"m3": 1e6 * m3, "m_sq": 1e6 * m_sq, "n": 1e6}
    ex = extract_gaussian(stats, task, 3, form="moments", random_state=0)
    assert ex.method == "cp" and ex.messages == ()
    transmat, means, perm = _aligned(model, ex.model.transmat_, ex.model.means_)
    np.testing.assert_allclose(transmat, model.transmat_, rtol=0, atol=1e-6)
    np.testing.assert_allclose(means, model.means_, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ex.model.covars_[perm], model.covars_, atol=1e-6)
    assert ex.fit_error < 1e-10


@pytest.mark.parametrize("form", ["moments", "posterior"])
def test_extract_gaussian_is_degenerate_on_constant_tokens(form):
    X = np.tile([1.5, -2.0], (500, 4, 1))  # every token the same
    if form == "moments":
        task = parse_task("1->2*3")
        stats = gaussian_moments(X, task.positions)
    else:
        task = parse_task("1->2")
        pairs = TokenPairs(X, np.zeros(2), 1.0, 0, 1, 1)  # tokens 1 and 2
        stats = {"pairs": pairs, "sq": pairs.sum_sq, "n_tokens": pairs.n_tokens}
    ex = extract_gaussian(stats, task, 2, form=form, min_covar=1e-3, random_state=0)
    assert ex.method == "degenerate" and np.isnan(ex.fit_error)
    assert any("rank 1 < n_components=2" in m for m in ex.messages)
    np.testing.assert_allclose(ex.model.means_, [[1.5, -2.0]] * 2, rtol=1e-12)
    np.testing.assert_allclose(ex.model.covars_, 1e-3, rtol=1e-12)  # at the floor
    np.testing.assert_allclose(ex.model.transmat_, 0.5, rtol=1e-12)
