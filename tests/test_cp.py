"""CP decomposition (Jennrich start, tensorly ALS) on tensors of known rank."""

import numpy as np
import pytest
import tensorly as tl
from scipy.optimize import linear_sum_assignment

from sk_maskid import _cp
from sk_maskid._cp import _jennrich, cp_decompose


def _random_cp(shape, rank, seed):
    rng = np.random.default_rng(seed)
    factors = [rng.standard_normal((n, rank)) for n in shape]
    return np.einsum("ir,jr,kr->ijk", *factors), factors


def _unit_columns(F):
    return F / np.linalg.norm(F, axis=0)


def _match_columns(true, found):
    """Permutation and scales with found[:, perm] * scale = true (least squares)."""
    U, V = _unit_columns(true), _unit_columns(found)
    rows, cols = linear_sum_assignment(-np.abs(U.T @ V))
    perm = cols[np.argsort(rows)]
    scale = np.sum(found[:, perm] * true, axis=0) / np.sum(found[:, perm] ** 2, axis=0)
    return perm, scale


def _condition(factors):
    """Smallest singular value over the column-normalised factors."""
    return min(np.linalg.svd(_unit_columns(f), compute_uv=False)[-1] for f in factors)


@pytest.mark.parametrize(
    "shape, rank, seed", [((5, 6, 4), 3, 0), ((4, 4, 4), 4, 1), ((8, 3, 5), 2, 2)]
)
def test_exact_low_rank_tensor_is_recovered(shape, rank, seed):
    tensor, true = _random_cp(shape, rank, seed)
    cp = cp_decompose(tensor, rank, random_state=seed)
    assert cp.fit_error < 1e-10
    recon = tl.cp_to_tensor((cp.weights, cp.factors))
    np.testing.assert_allclose(recon, tensor, rtol=0, atol=1e-10 * np.abs(tensor).max())
    # every factor equals the truth up to one common permutation and scales
    perm = _match_columns(true[0], cp.factors[0] * cp.weights)[0]
    for F_true, F in zip(true, cp.factors, strict=True):
        perm_f, scale = _match_columns(F_true, F)
        np.testing.assert_array_equal(perm_f, perm)
        np.testing.assert_allclose(F[:, perm] * scale, F_true, rtol=0, atol=1e-8)
    # the condition is scale- and permutation-free, so it equals the truth's
    assert cp.condition == pytest.approx(_condition(true), rel=1e-8)
    assert 0 <= cp.n_iter <= 500


def test_jennrich_alone_is_exact_on_an_exact_tensor():
    tensor, true = _random_cp((6, 5, 4), 3, seed=3)
    factors = _jennrich(tensor, 3, np.random.RandomState(0))
    recon = np.einsum("ir,jr,kr->ijk", *factors)
    np.testing.assert_allclose(recon, tensor, rtol=0, atol=1e-9)


def test_rank_above_the_mode_dimension_uses_random_starts():
    # rank 3 > min(I, J) = 2: no Jennrich start; Kruskal still holds
    # (k-ranks 2 + 3 + 3 >= 2 * 3 + 2), so ALS from random factors fits exactly.
    tensor, _ = _random_cp((2, 5, 5), 3, seed=4)
    cp = cp_decompose(tensor, 3, n_init=5, max_iter=2000, random_state=0)
    assert cp.fit_error < 1e-8


def test_n_iter_counts_als_iterations():
    rng = np.random.default_rng(5)
    noisy = _random_cp((5, 5, 5), 3, seed=5)[0] + 0.1 * rng.standard_normal((5, 5, 5))
    # a noisy tensor never reaches a tolerance of 1e-300: the cap binds
    for max_iter in (1, 4, 9):
        cp = cp_decompose(
            noisy, 3, n_init=1, max_iter=max_iter, tol=1e-300, random_state=0
        )
        assert cp.n_iter == max_iter
    cp = cp_decompose(noisy, 3, n_init=1, max_iter=500, tol=1e-6, random_state=0)
    assert 0 < cp.n_iter < 500


def test_tol_zero_runs_every_iteration():
    # tensorly 0.10's parafac with a callback and tol=0 read an unset error
    # (UnboundLocalError, so MaskedGaussianHMM(tol=0) crashed).
    tensor = _random_cp((4, 4, 4), 2, seed=7)[0]
    cp = cp_decompose(tensor, 2, n_init=1, max_iter=3, tol=0, random_state=0)
    assert cp.n_iter == 3


def test_all_zero_tensor_raises():
    with pytest.raises(ValueError, match="all-zero"):
        cp_decompose(np.zeros((3, 3, 3)), 2)


def test_best_of_starts_keeps_the_smallest_error(monkeypatch):
    # Record the reconstruction error and iteration count of every start.
    real_parafac = _cp.parafac
    starts = []

    def recording_parafac(tensor, rank, **kwargs):
        cp = real_parafac(tensor, rank, **kwargs)
        err = np.linalg.norm(tl.cp_to_tensor(cp) - tensor) / np.linalg.norm(tensor)
        starts.append((err, len(kwargs["callback"]) - 1))
        return cp

    monkeypatch.setattr(_cp, "parafac", recording_parafac)
    rng = np.random.default_rng(6)
    # a generic 4x4x4 tensor has no exact rank-3 CP: starts end in different places
    tensor = rng.standard_normal((4, 4, 4))
    cp = cp_decompose(tensor, 3, n_init=6, max_iter=30, tol=1e-300, random_state=0)
    errors = [e for e, _ in starts]
    assert len(starts) == 6 and max(errors) - min(errors) > 1e-6
    best = int(np.argmin(errors))
    assert cp.fit_error == pytest.approx(errors[best], rel=1e-12)
    assert cp.n_iter == starts[best][1]


def test_parafac_called_with_a_callback_not_return_errors(monkeypatch):
    # tensorly announced the removal of return_errors; the iteration count
    # comes from a callback instead.
    import sk_maskid._cp as cp_module

    calls = []
    original = cp_module.parafac

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(cp_module, "parafac", spy)
    tensor = _random_cp((4, 4, 4), 2, seed=3)[0]
    cp = cp_decompose(tensor, 2, n_init=2, max_iter=50, random_state=0)
    assert len(calls) == 2
    assert all("return_errors" not in kw and callable(kw["callback"]) for kw in calls)
    assert 0 < cp.n_iter <= 50
