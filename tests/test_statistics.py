"""Sufficient statistics of windows against brute-force loops over sub-windows."""

import numpy as np
import pytest

from sk_maskid import _statistics
from sk_maskid._statistics import (
    MAX_TABLE_SIZE,
    categorical_counts,
    framed_gaussian_moments,
    gaussian_moments,
    reframe_gaussian_moments,
    sub_window_offsets,
)


def _brute_counts(X, positions, n_symbols):
    """Count every sub-window with one Python loop per window and offset."""
    counts = np.zeros((n_symbols,) * len(positions))
    span = max(positions)
    for window in X:
        for off in range(len(window) - span + 1):
            counts[tuple(window[off + p - 1] for p in positions)] += 1
    return counts


def _augment(x):
    return np.append(x, 1.0)


def _brute_moments(X, positions):
    """m3, m_sq and n summed over every sub-window, one einsum per sub-window."""
    s1, s2, s3 = positions
    D = X.shape[2] + 1
    m3 = np.zeros((D, D, D))
    m_sq = np.zeros((D, D - 1))
    n = 0
    for window in X:
        for off in range(len(window) - s3 + 1):
            a = _augment(window[off + s1 - 1])
            b = _augment(window[off + s2 - 1])
            c = _augment(window[off + s3 - 1])
            m3 += np.einsum("i,j,k->ijk", a, b, c)
            m_sq += np.outer(a, window[off + s2 - 1] ** 2)
            n += 1
    return m3, m_sq, n


def test_sub_window_offsets():
    assert sub_window_offsets(5, 3) == 3
    assert sub_window_offsets(3, 3) == 1
    assert sub_window_offsets(7, 1) == 7


@pytest.mark.parametrize(
    "positions, length, n_symbols",
    [
        ((1, 2), 2, 3),
        ((1, 3), 6, 4),
        ((2, 3), 5, 2),
        ((1, 2, 3), 3, 4),
        ((1, 2, 3), 7, 3),
        ((1, 3, 4), 6, 5),
        ((2, 4, 5), 8, 3),
        ((1, 2, 3, 4), 4, 3),
        ((1, 2, 4, 6), 9, 2),
    ],
)
def test_categorical_counts_match_brute_force(positions, length, n_symbols):
    rng = np.random.default_rng(len(positions) * 100 + length)
    X = rng.integers(0, n_symbols, size=(40, length))
    counts = categorical_counts(X, positions, n_symbols)
    assert counts.shape == (n_symbols,) * len(positions)
    assert counts.dtype == np.float64
    # integer counts: exact equality
    np.testing.assert_array_equal(counts, _brute_counts(X, positions, n_symbols))
    assert counts.sum() == len(X) * sub_window_offsets(length, max(positions))


def test_categorical_counts_are_additive_over_chunks():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 5, size=(1001, 6))
    whole = categorical_counts(X, (1, 2, 4), 5)
    parts = sum(
        categorical_counts(chunk, (1, 2, 4), 5)
        for chunk in np.array_split(X, [1, 17, 500, 999])
    )
    np.testing.assert_array_equal(parts, whole)


def test_categorical_counts_refuse_huge_tables(monkeypatch):
    X = np.zeros((2, 4), dtype=int)
    assert 100**4 > MAX_TABLE_SIZE
    with pytest.raises(ValueError, match="cells"):
        categorical_counts(X, (1, 2, 3, 4), 100)
    # the limit is inclusive: a table of exactly MAX_TABLE_SIZE cells is allowed
    monkeypatch.setattr(_statistics, "MAX_TABLE_SIZE", 27)
    assert categorical_counts(X, (1, 2, 3), 3).shape == (3, 3, 3)
    with pytest.raises(ValueError, match="81 cells"):
        categorical_counts(X, (1, 2, 3, 4), 3)


@pytest.mark.parametrize(
    "positions, length, d",
    [
        ((1, 2, 3), 3, 1),
        ((1, 2, 3), 5, 1),
        ((1, 2, 3), 4, 2),
        ((1, 3, 4), 6, 3),
        ((2, 3, 5), 7, 4),
    ],
)
def test_gaussian_moments_match_brute_force(positions, length, d):
    rng = np.random.default_rng(10 * d + length)
    X = rng.standard_normal((30, length, d))
    stats = gaussian_moments(X, positions)
    m3, m_sq, n = _brute_moments(X, positions)
    assert stats["m3"].shape == (d + 1,) * 3 and stats["m_sq"].shape == (d + 1, d)
    assert stats["n"] == n == 30 * sub_window_offsets(length, positions[-1])
    # sums of ~100 products of O(1) numbers: rounding well below 1e-12
    np.testing.assert_allclose(stats["m3"], m3, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats["m_sq"], m_sq, rtol=1e-12, atol=1e-12)
    # the constant coordinate: lower-order moments are slices of m3
    np.testing.assert_allclose(stats["m3"][-1, -1, -1], n)
    np.testing.assert_allclose(
        stats["m3"][-1, :-1, -1],
        sum(X[:, off + positions[1] - 1].sum(0) for off in range(int(n // 30))),
        rtol=1e-12,
    )


def test_gaussian_moment_blocks_give_the_same_sums(monkeypatch):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((23, 5, 2))
    one_block = gaussian_moments(X, (1, 2, 4))
    monkeypatch.setattr(_statistics, "_MOMENT_BLOCK", 4)  # 6 blocks, last one short
    blocked = gaussian_moments(X, (1, 2, 4))
    m3, m_sq, n = _brute_moments(X, (1, 2, 4))
    for stats in (one_block, blocked):
        np.testing.assert_allclose(stats["m3"], m3, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(stats["m_sq"], m_sq, rtol=1e-12, atol=1e-12)
        assert stats["n"] == n


def test_gaussian_moments_are_additive_over_chunks():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((301, 5, 3))
    whole = gaussian_moments(X, (1, 2, 3))
    chunks = [gaussian_moments(c, (1, 2, 3)) for c in np.array_split(X, 7)]
    # float sums in a different order: equal to rounding, not bit for bit
    for key in ("m3", "m_sq"):
        np.testing.assert_allclose(
            sum(c[key] for c in chunks), whole[key], rtol=1e-12, atol=1e-10
        )
    assert sum(c["n"] for c in chunks) == whole["n"]


def _features(x, degree):
    """[x, x^2, ..., x^degree, 1], the brute-force way."""
    return np.concatenate([x**j for j in range(1, degree + 1)] + [[1.0]])


@pytest.mark.parametrize("degree, d", [(2, 1), (3, 2), (7, 1)])
def test_feature_moments_match_brute_force(degree, d):
    rng = np.random.default_rng(degree)
    X = rng.standard_normal((20, 5, d))
    X[3, 2] = np.nan  # a masked token drops its sub-windows
    stats = gaussian_moments(X, (1, 2, 4), degree)
    D = d * degree + 1
    m3 = np.zeros((D,) * 3)
    m_sq = np.zeros((D, d))
    n = 0
    for window in X:
        for off in range(2):
            a, b, c = (window[off + s - 1] for s in (1, 2, 4))
            if np.isnan(a[0]) or np.isnan(b[0]) or np.isnan(c[0]):
                continue
            fa, fb, fc = (_features(x, degree) for x in (a, b, c))
            m3 += np.einsum("i,j,k->ijk", fa, fb, fc)
            m_sq += np.outer(fa, b**2)
            n += 1
    assert stats["m3"].shape == (D,) * 3 and stats["n"] == n
    np.testing.assert_allclose(stats["m3"], m3, rtol=1e-11, atol=1e-9)
    np.testing.assert_allclose(stats["m_sq"], m_sq, rtol=1e-11, atol=1e-9)


@pytest.mark.parametrize("degree", [1, 3])
def test_reframed_feature_moments_equal_moments_taken_in_the_new_frame(degree):
    # (a z + b)^j expands into the powers of z: exact to rounding
    rng = np.random.default_rng(5)
    X = 3.0 + 2.0 * rng.standard_normal((50, 4, 2))
    stats = framed_gaussian_moments(X, (1, 2, 3), degree)
    offset, scale = np.array([1.0, -2.0]), 4.0
    moved = reframe_gaussian_moments(stats, offset, scale)
    direct = gaussian_moments((X - offset) / scale, (1, 2, 3), degree)
    for key in ("m3", "m_sq"):
        np.testing.assert_allclose(moved[key], direct[key], rtol=1e-10, atol=1e-9)
