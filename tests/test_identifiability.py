"""The paper's landscape, reproduced numerically, and the root ambiguity."""

import itertools

import numpy as np
import pytest

from sk_maskid import CategoricalHMMModel, GaussianHMMModel, _jacobian, identifiability
from sk_maskid.identifiability import (
    check_task,
    fit_verdict,
    local_identifiability,
    stochastic_roots,
)
from sk_maskid.landscape import format_landscape, landscape
from sk_maskid.tasks import parse_task

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
    # header, rule, two rows, then a blank line and the legend
    assert text.splitlines()[4] == "" and "Kruskal" in text.splitlines()[0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="emission must be"):
        check_task("1->2", emission="poisson", n_components=2, n_features=3)
    with pytest.raises(ValueError, match="malformed task"):
        check_task("1->", n_components=2, n_features=3)


# --------------------------------------------------------------------------
# The fit-time verdict: the theory where it settles the task, a reduced
# Jacobian elsewhere, bounded at any size and never an exception.
# --------------------------------------------------------------------------
SMALL_TASKS = ["1->2", "2->1", "1->3", "1,3->2", "1->2*3", "2->1*3"]
SMALL_SIZES = [(2, 3), (3, 4), (3, 6), (4, 4)]


@pytest.mark.parametrize("task", SMALL_TASKS)
@pytest.mark.parametrize(
    "emission, k, d",
    [("categorical", k, d) for k, d in SMALL_SIZES + [(4, 3), (5, 3)]]
    + [("gaussian", k, d) for k, d in SMALL_SIZES],
)
def test_fit_verdict_agrees_with_the_full_size_jacobian(task, emission, k, d):
    verdict = fit_verdict(task, emission, k, d)
    full = local_identifiability(
        task,
        emission=emission,
        n_components=k,
        n_features=d,
        random_state=0,
        max_features=d,
    )
    assert full.n_features_used == d
    assert verdict.identifiable == (full.null_dimension == 0), verdict
    if verdict.null_dimension is not None:
        assert verdict.null_dimension == full.null_dimension, verdict
    # every paper task is settled without a Jacobian; "1,3->2" is not covered
    analytic = task != "1,3->2" and (emission == "categorical" or k <= d)
    assert (verdict.method == "theory") == analytic, verdict


def test_pair_task_null_dimension_in_closed_form_beyond_k_equal_d():
    # k > d: every pair table with equal marginals is reached, so the family
    # gains (k - d)(d - 1) dimensions over k(k - 1)
    for k, d in [(3, 2), (5, 3), (5, 4)]:
        verdict = fit_verdict("1->2", "categorical", k, d)
        assert verdict.null_dimension == k * (k - 1) + (k - d) * (d - 1)
        assert (
            local_identifiability(
                "1->2", n_components=k, n_features=d, random_state=1
            ).null_dimension
            == verdict.null_dimension
        )


def test_unequal_gaps_with_more_states_than_symbols_go_to_the_jacobian():
    # "1->2*4" sees T and T^2: identifiable even with k > d, which the
    # equal-gap rule ("1->2*3", "1->3*5") would have missed
    verdict = fit_verdict("1->2*4", "categorical", 4, 3)
    assert verdict.identifiable and verdict.method == "jacobian"
    assert fit_verdict("1->3*5", "categorical", 4, 3).identifiable is False


@pytest.mark.parametrize("emission", ["categorical", "gaussian"])
@pytest.mark.parametrize(
    "task", ["1->2", "1->2*3", "1,3->2", "1->2,3", "1->2*4", "1->2 + 1->3"]
)
def test_reduced_jacobian_agrees_with_the_full_size_one(task, emission):
    for k, d in [(2, 6), (3, 9)]:
        full = local_identifiability(
            task,
            emission=emission,
            n_components=k,
            n_features=d,
            random_state=1,
            max_features=d,
        )
        reduced = local_identifiability(
            task,
            emission=emission,
            n_components=k,
            n_features=d,
            random_state=1,
            max_features=1,  # the smallest the argument allows
        )
        assert reduced.n_features_used == (k + 2 if emission == "categorical" else k)
        assert reduced.n_free_parameters == full.n_free_parameters
        assert reduced.null_dimension == full.null_dimension, (k, d)


def test_projected_wide_targets_keep_the_rank(monkeypatch):
    cases = [
        ("1->2*3", "categorical", 3, 8),
        ("1->2*3", "categorical", 4, 3),  # not identifiable: null 3
        ("1->2*3*4", "categorical", 3, 6),
        ("1,2->3*4", "categorical", 3, 6),
        ("2->1*3", "gaussian", 4, 5),
    ]
    expected = [
        local_identifiability(
            t,
            emission=e,
            n_components=k,
            n_features=d,
            random_state=2,
            max_features=d,
        ).null_dimension
        for t, e, k, d in cases
    ]
    # keep only k + 1 coordinates per probe, far fewer than the target's
    monkeypatch.setattr(_jacobian, "_projected_dim", lambda dim, k: min(dim, k + 1))
    got = [
        local_identifiability(
            t,
            emission=e,
            n_components=k,
            n_features=d,
            random_state=2,
            max_features=d,
        ).null_dimension
        for t, e, k, d in cases
    ]
    assert got == expected and expected[1] == 3


@pytest.mark.parametrize("emission", ["categorical", "gaussian"])
@pytest.mark.parametrize("k, d", [(10, 12), (3, 200)])
def test_check_task_and_fit_verdict_finish_at_ordinary_sizes(emission, k, d):
    # used to raise (k=10, d=12) or to build a 4.5 GiB Jacobian (k=3, d=100)
    report = check_task(
        "1->2*3", emission=emission, n_components=k, n_features=d, random_state=0
    )
    assert report.verdict == "identifiable" and report.null_dimension == 0
    assert report.kruskal.holds
    pair = check_task(
        "1->2", emission=emission, n_components=k, n_features=d, random_state=0
    )
    if emission == "categorical":
        assert pair.verdict == "not identifiable"
        assert pair.null_dimension == k * (k - 1)
        assert fit_verdict("1->2", emission, k, d).null_dimension == k * (k - 1)
    else:
        assert pair.verdict == "identifiable"
    middle = check_task(
        "1,3->2", emission=emission, n_components=k, n_features=d, random_state=0
    )
    assert middle.verdict == "identifiable"
    for task in ("1->2*3", "1,3->2"):
        verdict = fit_verdict(task, emission, k, d)
        assert verdict.identifiable is True and verdict.null_dimension == 0
    if d > 12:
        assert "computed with" in middle.reason


def test_fit_verdict_at_twenty_states():
    # the paper's tasks are free; "1,3->2" runs one reduced Jacobian
    assert fit_verdict("1->2*3", "categorical", 20, 1000).method == "theory"
    assert fit_verdict("1->2", "categorical", 20, 1000).null_dimension == 380
    assert fit_verdict("1->2", "gaussian", 20, 1000).identifiable
    middle = fit_verdict("1,3->2", "categorical", 20, 1000)
    assert middle.identifiable and middle.method == "jacobian"
    assert "22 of 1000" in middle.reason
    # Gaussian tokens with k = d + 1 (the estimator's largest) are numerical
    assert fit_verdict("1->2", "gaussian", 20, 19).identifiable


def test_fit_verdict_never_raises(monkeypatch):
    unknown = fit_verdict("1->2", "poisson", 3, 4)
    assert unknown.identifiable is None and unknown.method == "failed"
    assert "poisson" in unknown.reason
    assert fit_verdict("1->", "categorical", 3, 4).identifiable is None

    # a numerical failure is an unknown verdict, with the reason
    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("SVD did not converge")

    monkeypatch.setattr(identifiability, "local_identifiability", broken)
    identifiability._cached_fit_verdict.cache_clear()
    try:
        failed = fit_verdict("1,3->2", "categorical", 3, 5)
        assert failed.identifiable is None and failed.method == "failed"
        assert "LinAlgError" in failed.reason
        # the theory needs no Jacobian
        assert fit_verdict("1->2*3", "categorical", 3, 5).identifiable
    finally:
        identifiability._cached_fit_verdict.cache_clear()
    # too large for a fit: skipped, not computed
    skipped = fit_verdict("1->2*3*4", "categorical", 30, 100)
    assert skipped.identifiable is None and skipped.method == "skipped"


def test_fit_verdict_is_cached_and_joint_tasks_use_their_parts():
    first = fit_verdict("1,3->2", "categorical", 4, 50)
    assert fit_verdict(parse_task("1,3->2"), "categorical", 4, 50) is first
    # one identifying task identifies the joint task
    joint = fit_verdict("1->2 + 1->2*3", "categorical", 3, 5)
    assert joint.identifiable and joint.method == "theory"
    assert "'1->2*3' alone" in joint.reason
    # all pairwise tasks together still leave k(k - 1)/2 (Theorem 4)
    pairs = fit_verdict(PAIRWISE_3, "categorical", 3, 5)
    assert pairs.identifiable is False and pairs.null_dimension == 3
    # the numbers the estimators read
    assert fit_verdict("1->2", "categorical", 3, 5).null_dimension == 6
    assert fit_verdict("1->2*3", "categorical", 3, 5).null_dimension == 0


def test_kruskal_rank_of_wide_and_tall_factors():
    from sk_maskid.identifiability import _krank

    rng = np.random.RandomState(0)
    assert _krank(rng.rand(1000, 20)) == 20  # full column rank: at once
    # 20 columns in 19 dimensions: too many subsets to try them all
    assert _krank(rng.rand(19, 20)) == 19
    F = rng.rand(6, 4)
    F[:, 3] = F[:, 0] + F[:, 1]  # a dependent triple
    assert _krank(F) == 2
