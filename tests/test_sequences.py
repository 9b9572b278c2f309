"""Sequences as users hold them: input forms, converters, every sub-window."""

import itertools
import warnings

import numpy as np
import pytest

from sk_maskid import (
    ExtractionWarning,
    MaskedCategoricalHMM,
    MaskedGaussianHMM,
    make_categorical_hmm,
    make_gaussian_hmm,
    pad_sequences,
    split_lengths,
    unpad,
)
from sk_maskid._statistics import reframe_gaussian_moments

_RNG = np.random.default_rng(0)
_LENGTHS = [3, 4, 5, 17, 100, 499, 500] + list(_RNG.integers(3, 501, size=13))
_CAT_MODEL = make_categorical_hmm(3, 5, random_state=0)
_GAU_MODEL = make_gaussian_hmm(2, 2, random_state=0)
CAT_SEQS = [
    _CAT_MODEL.sample(1, int(n), random_state=i)[0] for i, n in enumerate(_LENGTHS)
]
GAU_SEQS = [
    _GAU_MODEL.sample(1, int(n), random_state=i)[0] for i, n in enumerate(_LENGTHS)
]


def _brute_force_counts(seqs, positions, d):
    """Joint counts over every sub-window of every sequence, token by token."""
    counts = np.zeros((d,) * len(positions))
    span = max(positions)
    for seq in seqs:
        for start in range(len(seq) - span + 1):
            values = tuple(seq[start + p - 1] for p in positions)
            if min(values) >= 0:
                counts[values] += 1
    return counts


def _brute_force_m3(seqs, positions):
    s1, s2, s3 = positions
    total, n = 0.0, 0
    for seq in seqs:
        aug = np.hstack([seq, np.ones((len(seq), 1))])
        for start in range(len(seq) - s3 + 1):
            a, b, c = (aug[start + p - 1] for p in positions)
            if np.isnan(a).any() or np.isnan(b).any() or np.isnan(c).any():
                continue
            total = total + np.einsum("i,j,k->ijk", a, b, c)
            n += 1
    return total, n


# -- converters --------------------------------------------------------------
def test_pad_split_unpad_round_trip():
    padded = pad_sequences(CAT_SEQS)
    assert padded.shape == (len(CAT_SEQS), max(_LENGTHS)) and padded.dtype == np.intp
    for row, seq in zip(unpad(padded), CAT_SEQS, strict=True):
        np.testing.assert_array_equal(row, seq)
    concat = np.concatenate(CAT_SEQS)
    for piece, seq in zip(split_lengths(concat, _LENGTHS), CAT_SEQS, strict=True):
        np.testing.assert_array_equal(piece, seq)
    real = pad_sequences(GAU_SEQS)
    assert real.shape == (len(GAU_SEQS), max(_LENGTHS), 2)
    assert np.isnan(real[0, 3:]).all() and not np.isnan(real[0, :3]).any()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: split_lengths(np.zeros(10), [3, 3]), "sum to 6 but X has 10"),
        (lambda: split_lengths(np.zeros(10), [5, -5, 10]), ">= 1"),
        (lambda: split_lengths(np.zeros(10), [2.5, 7.5]), "integers"),
        (lambda: pad_sequences([]), "empty"),
        (lambda: pad_sequences([np.zeros((3, 2)), np.zeros((3, 3))]), "dimensions"),
        (lambda: pad_sequences([[1, 2, 3]], length=2), "shorter than the longest"),
    ],
)
def test_converters_refuse_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# -- every sub-window, whatever the form ---------------------------------------
@pytest.mark.parametrize("task", ["1->2*3", "1,3->2", "1->2"])
def test_categorical_forms_give_identical_statistics(task):
    est = MaskedCategoricalHMM(3, task=task, n_features=5, n_init=1, max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        as_list = est.fit(CAT_SEQS).statistics_
        padded = est.fit(pad_sequences(CAT_SEQS)).statistics_
        concat = est.fit(
            np.concatenate(CAT_SEQS)[:, None], lengths=_LENGTHS
        ).statistics_
    np.testing.assert_array_equal(as_list["counts"], padded["counts"])
    np.testing.assert_array_equal(as_list["counts"], concat["counts"])
    positions = est.task_.positions
    np.testing.assert_array_equal(
        as_list["counts"], _brute_force_counts(CAT_SEQS, positions, 5)
    )
    # no token dropped: every sub-window of every sequence is counted once
    assert as_list["counts"].sum() == sum(n - max(positions) + 1 for n in _LENGTHS)


def test_gaussian_forms_give_identical_statistics():
    est = MaskedGaussianHMM(2, n_init=1, max_iter=5)
    as_list = est.fit(GAU_SEQS).statistics_
    padded = est.fit(pad_sequences(GAU_SEQS)).statistics_
    concat = est.fit(np.concatenate(GAU_SEQS), lengths=_LENGTHS).statistics_
    for key in ("m3", "m_sq", "n"):
        np.testing.assert_array_equal(as_list[key], padded[key])
        np.testing.assert_array_equal(as_list[key], concat[key])
    m3, n = _brute_force_m3(GAU_SEQS, (1, 2, 3))
    assert as_list["n"] == n == sum(L - 2 for L in _LENGTHS)
    # the sums are taken in the data's frame: move them to raw units
    raw = reframe_gaussian_moments(as_list, np.zeros(2), 1.0)
    np.testing.assert_allclose(raw["m3"], m3, rtol=1e-11, atol=1e-8)


def test_masked_tokens_drop_out_of_the_windows_they_touch():
    X = _CAT_MODEL.sample(300, 9, random_state=3)
    mask = np.random.default_rng(1).random(X.shape) < 0.1
    Xm = np.where(mask, -1, X)
    est = MaskedCategoricalHMM(3, n_features=5, n_init=1, max_iter=5).fit(Xm)
    np.testing.assert_array_equal(
        est.statistics_["counts"], _brute_force_counts(list(Xm), (1, 2, 3), 5)
    )
    Y = _GAU_MODEL.sample(300, 9, random_state=3)
    Ym = np.where(mask[..., None], np.nan, Y)
    gau = MaskedGaussianHMM(2, n_init=1, max_iter=5).fit(Ym)
    m3, n = _brute_force_m3(list(Ym), (1, 2, 3))
    assert gau.statistics_["n"] == n
    raw = reframe_gaussian_moments(gau.statistics_, np.zeros(2), 1.0)
    np.testing.assert_allclose(raw["m3"], m3, rtol=1e-11, atol=1e-8)
    # the posterior form drops the pairs with a masked token
    pairs = MaskedGaussianHMM(2, task="1->2", n_init=1, max_iter=5).fit(Ym)
    observed = ~np.isnan(Ym[..., 0])
    assert pairs.statistics_["n"] == np.count_nonzero(
        observed[:, 1:] & observed[:, :-1]
    )
    assert pairs.statistics_["n_tokens"] == np.count_nonzero(observed)


def test_partial_fit_over_sequence_chunks_of_any_length_equals_fit():
    full = MaskedCategoricalHMM(3, n_features=5, random_state=0).fit(CAT_SEQS)
    parts = MaskedCategoricalHMM(3, n_features=5, random_state=0)
    middle = CAT_SEQS[5:12]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtractionWarning)  # thin first chunks
        parts.partial_fit(CAT_SEQS[:5])
        parts.partial_fit(np.concatenate(middle)[:, None], lengths=_LENGTHS[5:12])
        parts.partial_fit(CAT_SEQS[12:])
    np.testing.assert_array_equal(
        parts.statistics_["counts"], full.statistics_["counts"]
    )
    np.testing.assert_array_equal(parts.statistics_["first"], full.statistics_["first"])
    np.testing.assert_allclose(parts.transmat_, full.transmat_, atol=1e-12)
    np.testing.assert_allclose(parts.startprob_, full.startprob_, atol=1e-12)


def test_short_sequences_contribute_nothing_and_warn_when_most_are_short():
    seqs = [np.array([0, 1]), np.array([1]), np.array([2, 0])] + CAT_SEQS[:2]
    with pytest.warns(ExtractionWarning, match="3 of 5 sequences are shorter"):
        est = MaskedCategoricalHMM(2, n_features=5, n_init=1).fit(seqs)
    assert est.statistics_["counts"].sum() == (3 - 2) + (4 - 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MaskedCategoricalHMM(2, n_features=5, n_init=1).fit(CAT_SEQS[:4] + seqs[:1])
    assert not [w for w in caught if "shorter than the task" in str(w.message)]
    with pytest.raises(ValueError, match="no complete window"):
        MaskedCategoricalHMM(2, n_features=5).fit([[0, 1], np.array([1, -1, 2])])


# -- any-length inference -------------------------------------------------------
def test_scores_any_length_after_fitting_on_windows():
    X = _CAT_MODEL.sample(4000, 5, random_state=0)
    est = MaskedCategoricalHMM(3, random_state=0).fit(X)
    long = _CAT_MODEL.sample(1, 7441, random_state=1)
    per_token = est.score(long)
    assert np.isfinite(per_token)
    np.testing.assert_allclose(per_token, est.model_.score(long), rtol=1e-12)
    # the same sequence as a list, and as hmmlearn's column with lengths
    assert est.score([long[0]]) == per_token
    assert est.score(long[0][:, None], lengths=[7441]) == per_token
    assert est.score_samples(long).shape == (1,)
    assert est.transform(long).shape == (1, 3)
    assert est.predict(long[:, :1]).shape == (1, 25)  # a 1-token row: padded
    # exact likelihood of a 2-token row against enumeration
    row = long[:, :2]
    brute = sum(
        est.startprob_[a]
        * est.emissionprob_[a, row[0, 0]]
        * est.transmat_[a, b]
        * est.emissionprob_[b, row[0, 1]]
        for a, b in itertools.product(range(3), repeat=2)
    )
    np.testing.assert_allclose(est.score_samples(row)[0], np.log(brute), rtol=1e-12)


def test_masked_tokens_are_accepted_everywhere():
    X = _CAT_MODEL.sample(2000, 6, random_state=0)
    Xm = X.copy()
    Xm[::7, 2] = -1
    Xm[::5, -2:] = -1  # trailing masks: padding
    est = MaskedCategoricalHMM(3, task="1->2", n_init=1, random_state=0).fit(Xm)
    for method in ("score", "score_samples", "transform", "predict", "predict_proba"):
        out = getattr(est, method)(Xm)
        assert np.all(np.isfinite(out)), method
    # a masked observed token: the HMM's exact predictor of what is left
    row = np.array([[-1, 0, 1]])
    np.testing.assert_allclose(
        est.predict(row), est.model_.conditional_expectation("1->2", row), atol=1e-12
    )
    Y = _GAU_MODEL.sample(500, 6, random_state=0)
    Y[::3, 1] = np.nan
    gau = MaskedGaussianHMM(2, random_state=0).fit(Y)
    for method in ("score", "score_samples", "transform", "predict", "predict_proba"):
        out = getattr(gau, method)(Y)
        assert np.all(np.isfinite(out)), method
