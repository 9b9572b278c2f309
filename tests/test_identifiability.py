"""The paper's landscape, reproduced numerically, and the root ambiguity."""

import itertools

import numpy as np
import pytest

from sk_maskid import CategoricalHMMModel, GaussianHMMModel
from sk_maskid.identifiability import (
    check_task,
    local_identifiability,
    stochastic_roots,
)
from sk_maskid.landscape import format_landscape, landscape

PAIRWISE_3 = ["1->2", "2->1", "1->3", "3->1", "2->3", "3->2"]

# (task, emission, verdict); k=3, d=6 symbols or 4 dimensions
ROWS = [
    ("1->2", "categorical", "not identifiable"),
    ("2->1", "categorical", "not identifiable"),
    ("1->3", "categorical", "not identifiable"),
    ("1->2*3", "categorical", "identifiable"),
    ("2->1*3", "categorical", "identifiable"),
    (PAIRWISE_3, "categorical", "not identifiable"),
    ("1->2", "gaussian", "identifiable"),
    ("2->1", "gaussian", "identifiable"),
    ("1->3", "gaussian", "locally identifiable, finite ambiguity"),
    ("1->2*3", "gaussian", "identifiable"),
    (PAIRWISE_3, "gaussian", "identifiable"),
]


@pytest.mark.parametrize("task, emission, verdict", ROWS)
def test_paper_rows_are_reproduced_for_every_seed(task, emission, verdict):
    d = 6 if emission == "categorical" else 4
    for seed in range(5):
        report = check_task(
            task, emission=emission, n_components=3, n_features=d, random_state=seed
        )
        assert report.verdict == verdict, (seed, str(report))
        if verdict == "not identifiable":
            assert report.null_dimension >= 1
        else:
            assert report.null_dimension == 0
        if report.theory is not None:
            assert report.theory.startswith(verdict)


def test_pair_task_null_space_has_dimension_k_times_k_minus_1():
    # Theorem 2: E[x2|x1] sees only O T diag(pi) O^T, leaving a k(k-1) family
    for k in (2, 3, 4):
        result = local_identifiability(
            "1->2", n_components=k, n_features=2 * k, random_state=0
        )
        assert result.null_dimension == k * (k - 1)
        # the rank gap is wide: the smallest kept singular value is far above
        # the largest discarded one
        sv = result.singular_values
        rank = result.jacobian_rank
        assert sv[rank - 1] / sv[rank] > 1e6


def test_tensor_task_kruskal():
    report = check_task("1->2*3", n_components=3, n_features=6, random_state=0)
    assert report.kruskal.holds and report.kruskal.k_ranks == (3, 3, 3)
    assert "Kruskal's condition holds" in report.reason
    assert "identifiable" in str(report) and "k-ranks (3, 3, 3)" in str(report)


def test_too_many_states_is_a_verdict_not_an_exception():
    report = check_task("1->2*3", n_components=5, n_features=4, random_state=0)
    assert report.verdict == "not identifiable"
    assert report.null_dimension >= 1
    assert report.kruskal.k_ranks[1] == 4  # O is 4 x 5: k-rank at most d
    assert "k-rank" in report.reason


def test_stochastic_square_roots_give_the_same_gap_predictor():
    # Claim 1: T and T' with T^2 == T'^2 share the predictor of "1->3".
    T = np.array([[0.6, 0.4], [0.5, 0.5]])
    roots = stochastic_roots(T, 2)
    assert len(roots) == 1
    T2 = roots[0]
    assert np.abs(T2 - T).max() > 0.1
    np.testing.assert_allclose(T2.sum(axis=1), 1, atol=1e-12)
    assert T2.min() >= 0
    np.testing.assert_allclose(T2 @ T2, T @ T, atol=1e-12)
    O = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    a = CategoricalHMMModel([5 / 9, 4 / 9], T, O)
    b = CategoricalHMMModel(a.stationary_distribution(), T2, O)
    np.testing.assert_allclose(b.stationary_distribution(), a.startprob_, atol=1e-12)
    probes = np.array([[s, -1, -1] for s in range(3)])
    np.testing.assert_allclose(
        a.conditional_expectation("1->3", probes),
        b.conditional_expectation("1->3", probes),
        atol=1e-12,
    )
    # ... but not the predictor of an adjacent pair, which tells them apart
    assert not np.allclose(
        a.conditional_expectation("1->2", probes),
        b.conditional_expectation("1->2", probes),
    )
    # the same pair of chains is equally ambiguous for Gaussian tokens
    means = np.array([[0.0, 1.0], [2.0, -1.0]])
    ga = GaussianHMMModel(a.startprob_, T, means, [1.0, 1.0])
    gb = GaussianHMMModel(a.startprob_, T2, means, [1.0, 1.0])
    X = ga.sample(5, 3, random_state=0)
    np.testing.assert_allclose(
        ga.conditional_expectation("1->3", X), gb.conditional_expectation("1->3", X)
    )


def test_odd_powers_have_no_real_root_ambiguity():
    T = np.array([[0.6, 0.4], [0.5, 0.5]])
    assert stochastic_roots(T, 3) == []


def test_kruskal_rank_brute_force():
    from sk_maskid.identifiability import _krank

    F = np.array([[1.0, 0, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1]])
    # columns 0, 1, 2 are dependent, every pair is independent
    assert _krank(F) == 2
    for cols in itertools.combinations(range(4), 2):
        assert np.linalg.matrix_rank(F[:, cols]) == 2


def test_landscape_rows_and_format():
    rows = landscape(
        tasks=["1->2", "1->2*3"],
        emissions=("categorical",),
        n_tokens=20_000,
        random_state=0,
    )
    assert [r["verdict"] for r in rows] == ["not identifiable", "identifiable"]
    assert all(np.isfinite(r["error_transmat"]) for r in rows)
    text = format_landscape(rows)
    assert len(text.splitlines()) == 4 and "Kruskal" in text


def test_bad_arguments():
    with pytest.raises(ValueError, match="emission must be"):
        check_task("1->2", emission="poisson", n_components=2, n_features=3)
    with pytest.raises(ValueError, match="malformed task"):
        check_task("1->", n_components=2, n_features=3)
