"""Bad input, degenerate data, determinism, persistence, and a soak test."""

import io
import pickle
import warnings

import joblib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from sk_maskid import (
    CategoricalHMMModel,
    ExtractionWarning,
    MaskedCategoricalHMM,
    MaskedGaussianHMM,
    NonIdentifiabilityWarning,
    make_categorical_hmm,
    make_gaussian_hmm,
    make_windows,
)
from sk_maskid.identifiability import check_task
from sk_maskid.metrics import recovery_error

_RNG = np.random.default_rng(0)
CAT = make_categorical_hmm(2, 4, random_state=0).sample(300, 5, random_state=0)
GAU = make_gaussian_hmm(2, 3, random_state=0).sample(300, 5, random_state=0)


def _fitted_cat():
    return MaskedCategoricalHMM(2, random_state=0).fit(CAT)


def _fitted_gau():
    return MaskedGaussianHMM(2, random_state=0).fit(GAU)


def _baseline(emission="categorical"):
    from sk_maskid.baselines import HMMLearnBaseline

    return HMMLearnBaseline(2, emission=emission, n_restarts=1, n_iter=5)


def _with(array, index, value):
    array = np.array(array, dtype=float if isinstance(value, float) else array.dtype)
    array[index] = value
    return array


# (description, callable, exception, message regex): every public entry point
BAD_INPUTS = [
    (
        "NaN in categorical windows",
        lambda: MaskedCategoricalHMM().fit(_with(CAT, (0, 0), np.nan)),
        ValueError,
        "NaN",
    ),
    (
        "infinity in categorical windows",
        lambda: MaskedCategoricalHMM().fit(_with(CAT, (0, 0), np.inf)),
        ValueError,
        "infinity",
    ),
    (
        "non-integer symbols",
        lambda: MaskedCategoricalHMM().fit(CAT + 0.5),
        ValueError,
        "non-integer",
    ),
    (
        "string symbols",
        lambda: MaskedCategoricalHMM().fit(CAT.astype(str)),
        TypeError,
        "must hold integer symbols",
    ),
    (
        "negative symbol",
        lambda: MaskedCategoricalHMM().fit(_with(CAT, (0, 0), -2)),
        ValueError,
        "Negative values in data",
    ),
    (
        "symbol beyond n_features",
        lambda: MaskedCategoricalHMM(n_features=3).fit(CAT),
        ValueError,
        r"out of range: expected symbols 0..2",
    ),
    (
        "out-of-range symbol at predict",
        lambda: _fitted_cat().predict(np.full((2, 5), 9)),
        ValueError,
        "symbol 9 out of range",
    ),
    (
        "1-D input",
        lambda: MaskedCategoricalHMM().fit(CAT[0]),
        ValueError,
        "Expected 2D array",
    ),
    (
        "3-D categorical input",
        lambda: MaskedCategoricalHMM().fit(CAT[:, :, None]),
        ValueError,
        "dim 3",
    ),
    (
        "window shorter than the task",
        lambda: MaskedCategoricalHMM().fit(CAT[:, :2]),
        ValueError,
        "needs sequences of at least 3 tokens",
    ),
    (
        "empty input",
        lambda: MaskedCategoricalHMM().fit(CAT[:0]),
        ValueError,
        "0 sample",
    ),
    (
        "a single window shorter than the task",
        lambda: MaskedCategoricalHMM().fit(CAT[:1, :2]),
        ValueError,
        "needs sequences of at least 3 tokens",
    ),
    (
        "n_components = 0",
        lambda: MaskedCategoricalHMM(0).fit(CAT),
        ValueError,
        "'n_components' parameter",
    ),
    (
        "n_components negative",
        lambda: MaskedGaussianHMM(-1).fit(GAU),
        ValueError,
        "'n_components' parameter",
    ),
    (
        "n_components not an int",
        lambda: MaskedCategoricalHMM("3").fit(CAT),
        ValueError,
        "'n_components' parameter",
    ),
    (
        "n_components larger than identifiable",
        lambda: MaskedCategoricalHMM(6).fit(CAT),
        ValueError,
        "too large to be identifiable",
    ),
    (
        "n_components beyond d * feature_degree + 1 (Gaussian)",
        lambda: MaskedGaussianHMM(5, feature_degree=1).fit(GAU),
        ValueError,
        "too large for feature_degree=1",
    ),
    (
        "unknown task spelling",
        lambda: MaskedCategoricalHMM(task="1=>2").fit(CAT),
        ValueError,
        "malformed task",
    ),
    (
        "overlapping task",
        lambda: MaskedCategoricalHMM(task="2->2").fit(CAT),
        ValueError,
        "both observed and predicted",
    ),
    (
        "lengths passed positionally as y",
        lambda: MaskedCategoricalHMM().fit(CAT.reshape(-1, 1), [5] * len(CAT)),
        ValueError,
        "sum to the number of rows of X.*lengths=",
    ),
    (
        "lengths that do not sum to the tokens",
        lambda: MaskedCategoricalHMM().fit(CAT.reshape(-1, 1), lengths=[5, 5]),
        ValueError,
        "lengths sum to 10 but X has 1500 tokens",
    ),
    (
        "sequences of mixed token kinds",
        lambda: MaskedGaussianHMM().fit([np.zeros(5), np.zeros((6, 2))]),
        ValueError,
        "all of the same kind",
    ),
    (
        "unknown decoder",
        lambda: _fitted_cat().decode(CAT, algorithm="forward"),
        ValueError,
        "algorithm must be one of",
    ),
    (
        "token dimension differs at predict",
        lambda: _fitted_gau().predict(GAU[:, :, :2]),
        ValueError,
        "dimension 2, expected 3",
    ),
    (
        "predict before fit",
        lambda: MaskedCategoricalHMM().predict(CAT),
        NotFittedError,
        "not fitted yet",
    ),
    (
        "transform before fit",
        lambda: MaskedGaussianHMM().transform(GAU),
        NotFittedError,
        "not fitted yet",
    ),
    (
        "invalid random_state",
        lambda: MaskedCategoricalHMM(random_state="abc").fit(CAT),
        ValueError,
        "'random_state' parameter",
    ),
    (
        "NaN in Gaussian windows",
        lambda: MaskedGaussianHMM().fit(_with(GAU, (0, 0, 0), np.nan)),
        ValueError,
        "NaN",
    ),
    (
        "moments predictor on a pair task",
        lambda: MaskedGaussianHMM(task="1->2", predictor="moments").fit(GAU),
        ValueError,
        "needs three positions: a tensor task",
    ),
    (
        "unsupported Gaussian task",
        lambda: MaskedGaussianHMM(task="1,2,4->3").fit(GAU),
        ValueError,
        "one-token task",
    ),
    (
        "invalid covariance_type",
        lambda: MaskedGaussianHMM(covariance_type="tied").fit(GAU),
        ValueError,
        "'covariance_type' parameter",
    ),
    (
        "n_init = 0",
        lambda: MaskedCategoricalHMM(n_init=0).fit(CAT),
        ValueError,
        "'n_init' parameter",
    ),
    (
        "negative tol",
        lambda: MaskedCategoricalHMM(tol=-1.0).fit(CAT),
        ValueError,
        "'tol' parameter",
    ),
    (
        "task changed between partial_fit calls",
        lambda: _fitted_cat().set_params(task="2->1*3").partial_fit(CAT),
        ValueError,
        "task changed",
    ),
    (
        "new symbol in a later chunk",
        lambda: MaskedCategoricalHMM(2).partial_fit(CAT % 3).partial_fit(CAT),
        ValueError,
        "set n_features to stream chunks",
    ),
    (
        "model with a non-stochastic row",
        lambda: CategoricalHMMModel([1, 0], [[0.5, 0.6], [0.5, 0.5]], [[1, 0], [0, 1]]),
        ValueError,
        "row 0 sums to",
    ),
    (
        "sampling zero sequences",
        lambda: make_categorical_hmm(2, 3).sample(0, 5),
        ValueError,
        "n_sequences must be >= 1",
    ),
    (
        "windows longer than every sequence",
        lambda: make_windows(CAT, 9),
        ValueError,
        "longer than every sequence",
    ),
    (
        "unknown token type in check_task",
        lambda: check_task("1->2", emission="poisson", n_components=2, n_features=3),
        ValueError,
        "emission must be",
    ),
]


@pytest.mark.parametrize(
    "call, exc, match",
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_is_reported(call, exc, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtractionWarning)
        with pytest.raises(exc, match=match):
            call()


def _assert_same_attributes(before, after):
    assert before.keys() == after.keys()
    for name, value in before.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(after[name], value, err_msg=name)
        else:
            assert after[name] is value, name


@pytest.mark.parametrize(
    "fitted, data, bad_inputs",
    [
        (
            _fitted_cat,
            CAT,
            [CAT[:, :2], _with(CAT, (0, 0), -2), CAT + 0.5],
        ),
        (_fitted_gau, GAU, [GAU[:, :2], _with(GAU, (0, 0, 0), np.nan)]),
    ],
)
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_failed_fit_leaves_the_previous_fit_intact(fitted, data, bad_inputs, method):
    # Every attribute (not only the arrays) is exactly as before, after each
    # failure, and the estimator still scores the training data: a fit that
    # failed after validate_data(reset=True) used to leave n_features_in_=2.
    est = fitted()
    before = dict(vars(est))
    score = est.score(data)
    for bad in bad_inputs:
        with pytest.raises((ValueError, TypeError)):
            getattr(est, method)(bad)
        _assert_same_attributes(before, dict(vars(est)))
        assert est.score(data) == score


# -- degenerate data ---------------------------------------------------------
def _valid(est):
    for name in ("startprob_", "transmat_"):
        value = getattr(est, name)
        assert np.all(np.isfinite(value)) and value.min() >= 0
        np.testing.assert_allclose(value.sum(axis=-1), 1, atol=1e-9)
    emission = getattr(est, "emissionprob_", getattr(est, "means_", None))
    assert np.all(np.isfinite(emission))


def test_constant_sequences_warn_and_stay_valid():
    X = np.zeros((100, 5), dtype=int)
    with pytest.warns(ExtractionWarning, match="rank 1 < n_components=2"):
        est = MaskedCategoricalHMM(2, n_features=3, random_state=0).fit(X)
    _valid(est)
    assert est.extraction_method_ == "predictor matching"
    with pytest.warns(ExtractionWarning, match="rank 1 < n_components=2"):
        gest = MaskedGaussianHMM(2, random_state=0).fit(np.ones((100, 5, 2)))
    _valid(gest)
    np.testing.assert_allclose(gest.means_, 1.0)
    assert np.all(gest.covars_ >= gest.min_covar)


def test_unseen_symbol_warns():
    X = make_categorical_hmm(2, 4, random_state=0).sample(500, 5, random_state=0)
    with pytest.warns(ExtractionWarning, match=r"symbol\(s\) \[4, 5\] never observed"):
        est = MaskedCategoricalHMM(2, n_features=6, random_state=0).fit(X)
    _valid(est)
    assert np.all(est.emissionprob_[:, 4:] <= 1e-5)
    assert np.isfinite(est.score(np.full((1, 5), 5)))


def test_too_few_windows_warn():
    X = make_categorical_hmm(2, 6, random_state=0).sample(20, 3, random_state=0)
    with pytest.warns(
        ExtractionWarning, match="only 20 sub-windows for 216 statistics"
    ):
        est = MaskedCategoricalHMM(2, random_state=0).fit(X)
    _valid(est)


def test_rank_deficient_support_warns_for_too_many_states():
    # data from 2 states, asked for 3, with a noiseless alphabet: rank 2 < 3
    O = np.array([[1, 0, 0, 0], [0, 1, 0, 0]], dtype=float)
    model = CategoricalHMMModel([0.5, 0.5], [[0.7, 0.3], [0.3, 0.7]], O)
    X = model.sample(2000, 5, random_state=0)
    with pytest.warns(ExtractionWarning, match="rank 2 < n_components=3"):
        est = MaskedCategoricalHMM(3, n_features=4, n_init=2, random_state=0).fit(X)
    _valid(est)


def test_unreliable_decomposition_warns():
    # independent uniform symbols: nothing for 3 states to explain
    X = np.random.default_rng(0).integers(0, 6, size=(200, 3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = MaskedCategoricalHMM(3, random_state=0).fit(X)
    assert any(issubclass(w.category, ExtractionWarning) for w in caught)
    _valid(est)


# -- determinism and persistence ---------------------------------------------
@pytest.mark.parametrize("make", [_fitted_cat, _fitted_gau])
def test_same_random_state_gives_identical_fits(make):
    a, b = make(), make()
    for name in ("startprob_", "transmat_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_random_state_none_is_allowed():
    est = MaskedCategoricalHMM(2, random_state=None).fit(CAT)
    _valid(est)


@pytest.mark.parametrize("make", [_fitted_cat, _fitted_gau])
def test_pickle_and_joblib_round_trips(make):
    est = make()
    X = CAT if isinstance(est, MaskedCategoricalHMM) else GAU
    buffer = io.BytesIO()
    joblib.dump(est, buffer)
    buffer.seek(0)
    for again in (pickle.loads(pickle.dumps(est)), joblib.load(buffer)):
        np.testing.assert_array_equal(again.predict(X), est.predict(X))
        np.testing.assert_array_equal(again.transform(X), est.transform(X))
        assert again.score(X) == est.score(X)


@pytest.mark.parametrize(
    "make_est, sample",
    [
        (
            lambda: MaskedCategoricalHMM(2, n_features=4, random_state=0),
            lambda n: make_categorical_hmm(2, 4, random_state=0).sample(
                n, 5, random_state=0
            ),
        ),
        (
            lambda: MaskedGaussianHMM(2, random_state=0),
            lambda n: make_gaussian_hmm(2, 3, random_state=0).sample(
                n, 5, random_state=0
            ),
        ),
        (
            lambda: MaskedGaussianHMM(
                2, task="1->2", n_init=1, max_iter=50, random_state=0
            ),
            lambda n: make_gaussian_hmm(2, 3, random_state=0).sample(
                n, 2, random_state=0
            ),
        ),
    ],
)
def test_pickled_size_does_not_grow_with_data(make_est, sample):
    small = len(pickle.dumps(make_est().fit(sample(200))))
    large = len(pickle.dumps(make_est().fit(sample(20_000))))
    assert large <= small * 1.05 + 64


# -- properties --------------------------------------------------------------
_PROPERTY = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@_PROPERTY
@given(seed=st.integers(0, 10_000), k=st.integers(2, 3), extra=st.integers(0, 3))
def test_extracted_parameters_are_always_valid(seed, k, extra):
    model = make_categorical_hmm(k, k + extra, random_state=seed)
    X = model.sample(500, 4, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtractionWarning)
        est = MaskedCategoricalHMM(k, n_features=k + extra, random_state=seed).fit(X)
    _valid(est)
    np.testing.assert_allclose(est.emissionprob_.sum(axis=1), 1, atol=1e-9)
    assert np.isfinite(est.score(X))


@_PROPERTY
@given(seed=st.integers(0, 10_000), data=st.data())
def test_recovery_error_ignores_state_order(seed, data):
    truth = make_categorical_hmm(3, 5, random_state=seed)
    fitted = make_categorical_hmm(3, 5, random_state=seed + 1)
    perm = np.array(data.draw(st.permutations(range(3))))
    permuted = CategoricalHMMModel(
        truth.startprob_[perm],
        truth.transmat_[np.ix_(perm, perm)],
        truth.emissionprob_[perm],
    )
    assert recovery_error(truth, fitted) == pytest.approx(
        recovery_error(permuted, fitted)
    )
    assert max(recovery_error(truth, permuted).values()) == 0.0


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(1, 399), max_size=3))
def test_partial_fit_equals_fit_in_any_chunking(seed, cuts):
    # every partial_fit re-extracts, so few chunks keep this fast; chunks of
    # a single window are allowed. The reference is one partial_fit on all
    # of X: fit equals it too, except when fit repairs a read-out that fails
    # the quality check by EM, which needs the data (seed 196 here).
    X = make_categorical_hmm(2, 4, random_state=seed).sample(400, 4, random_state=seed)
    full = MaskedCategoricalHMM(2, n_features=4, n_init=1, random_state=0)
    parts = MaskedCategoricalHMM(2, n_features=4, n_init=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtractionWarning)
        full.partial_fit(X)
        fitted = clone(full).fit(X)
        if fitted.n_iter_ == 0:  # no repair: fit is the same extraction
            np.testing.assert_array_equal(fitted.transmat_, full.transmat_)
        for chunk in np.split(X, sorted(set(cuts))):
            if len(chunk):
                parts.partial_fit(chunk)
    np.testing.assert_array_equal(
        parts.statistics_["counts"], full.statistics_["counts"]
    )
    np.testing.assert_allclose(parts.transmat_, full.transmat_, atol=1e-10)


# -- soak ----------------------------------------------------------------------
def test_soak_random_small_problems():
    """200 fits with random valid settings: only documented outcomes, no NaN."""
    rng = np.random.default_rng(12345)
    tasks_cat = ["1->2*3", "2->1*3", "1->2", "1,3->2", "1->3"]
    tasks_gau = ["1->2*3", "2->1*3", "1->2", "2->1"]
    for i in range(200):
        k = int(rng.integers(1, 4))
        d = int(rng.integers(max(k, 2), 6))
        n = int(rng.integers(2, 120))
        if rng.random() < 0.6:
            task = tasks_cat[rng.integers(len(tasks_cat))]
            X = make_categorical_hmm(k, d, random_state=i).sample(n, 4, random_state=i)
            est = MaskedCategoricalHMM(
                k, task=task, n_init=1, max_iter=30, random_state=i
            )
        else:
            task = tasks_gau[rng.integers(len(tasks_gau))]
            X = make_gaussian_hmm(k, d, random_state=i).sample(n, 4, random_state=i)
            est = MaskedGaussianHMM(k, task=task, n_init=1, max_iter=30, random_state=i)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExtractionWarning)
            warnings.simplefilter("ignore", NonIdentifiabilityWarning)
            est.fit(X)
        for name in ("startprob_", "transmat_", "emissionprob_", "means_", "covars_"):
            value = getattr(est, name, None)
            if value is not None:
                assert np.all(np.isfinite(value)), (i, task, name)
        _valid(est)
        assert np.isfinite(est.score(X)), (i, task)
