"""Gaussian tokens with more states than dimensions + 1: the feature route.

The moments form fits the third moment tensor of the token features
``[x, x^2, ..., x^p, 1]``; with ``p = feature_degree`` it tells apart
``d p + 1`` states. Recovery on synthetic data, and agreement with
``check_task``, the one source of truth for what is identifiable.
"""

import numpy as np
import pytest

from sk_maskid import GaussianHMMModel, MaskedGaussianHMM
from sk_maskid.identifiability import check_task
from sk_maskid.metrics import recovery_error


def _sticky(k, stay=0.7):
    T = np.full((k, k), (1 - stay) / (k - 1))
    np.fill_diagonal(T, stay)
    return T


def _model(means, variance=0.5):
    k, d = means.shape
    return GaussianHMMModel(
        np.full(k, 1 / k), _sticky(k), means, np.full((k, d), variance), "diag"
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scalar_hmm_with_four_states(seed):
    # 1e6 tokens (2000 sequences of 500); measured means errors 0.007-0.033
    model = _model(np.linspace(-3, 3, 4)[:, None])
    X = model.sample(2000, 500, random_state=seed)
    est = MaskedGaussianHMM(4, random_state=0).fit(X)
    assert est.feature_degree_ == 3 and est.identifiable_ is True
    errors = recovery_error(model, est)
    assert errors["emission"] <= 0.1, errors
    assert errors["transmat"] <= 0.05, errors


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_dimensional_hmm_with_five_states(seed):
    means = np.array([[-2.5, 0.4], [-1.0, -2.0], [0.3, 1.8], [1.6, -0.7], [3.0, 1.2]])
    model = _model(means)
    X = model.sample(2000, 500, random_state=seed)
    est = MaskedGaussianHMM(5, random_state=0).fit(X)
    assert est.feature_degree_ == 2 and est.identifiable_ is True
    errors = recovery_error(model, est)
    assert errors["emission"] <= 0.1, errors


@pytest.mark.filterwarnings("ignore::sk_maskid.ExtractionWarning")  # 5000 tokens
@pytest.mark.parametrize(
    "k, d",
    [(2, 1), (3, 1), (4, 1), (6, 1), (3, 2), (4, 2), (5, 2), (6, 3), (7, 2)],
)
def test_check_task_and_the_estimator_agree(k, d):
    # What the estimator fits (task "1->2*3", feature_degree auto) is what
    # check_task calls identifiable for that degree, and the fitted
    # identifiable_ says the same.
    rng = np.random.default_rng(k * 10 + d)
    model = _model(3 * rng.standard_normal((k, d)))
    X = model.sample(100, 50, random_state=0)
    est = MaskedGaussianHMM(k, random_state=0).fit(X)
    report = check_task(
        "1->2*3",
        emission="gaussian",
        n_components=k,
        n_features=d,
        feature_degree=est.feature_degree_,
        random_state=0,
    )
    assert report.verdict == "identifiable", str(report)
    assert est.identifiable_ is True


def test_too_few_features_is_an_error_naming_the_fix():
    X = _model(np.linspace(-3, 3, 4)[:, None]).sample(50, 20, random_state=0)
    with pytest.raises(ValueError, match="feature_degree=2.*at most 3 states"):
        MaskedGaussianHMM(4, feature_degree=2).fit(X)
    report = check_task(
        "1->2*3", emission="gaussian", n_components=4, n_features=1, feature_degree=2
    )
    assert report.verdict == "not identifiable"
    with pytest.raises(ValueError, match="posterior form.*'1->2\\*3'"):
        MaskedGaussianHMM(4, task="1->2").fit(X)


@pytest.mark.filterwarnings("ignore::sk_maskid.ExtractionWarning")  # small chunks
def test_partial_fit_equals_fit_with_features():
    model = _model(np.linspace(-3, 3, 4)[:, None])
    X = model.sample(400, 100, random_state=3)
    full = MaskedGaussianHMM(4, random_state=0).fit(X)
    parts = MaskedGaussianHMM(4, random_state=0)
    for chunk in np.array_split(X, 10):
        parts.partial_fit(chunk)
    assert parts.feature_degree_ == full.feature_degree_ == 3
    order = np.argsort(full.means_[:, 0])
    np.testing.assert_allclose(
        np.sort(parts.means_[:, 0]), full.means_[order, 0], atol=1e-6
    )


@pytest.mark.parametrize("scale, shift", [(1e-6, 0.0), (1e3, 0.0), (1.0, 1e4)])
def test_feature_route_is_equivariant(scale, shift):
    # standardised internally: scaling or shifting the data moves the fit
    model = _model(np.linspace(-3, 3, 4)[:, None])
    X = model.sample(400, 100, random_state=4)
    base = MaskedGaussianHMM(4, random_state=0).fit(X)
    moved = MaskedGaussianHMM(4, random_state=0, min_covar=1e-3 * scale**2).fit(
        X * scale + shift
    )
    np.testing.assert_allclose(moved.means_, base.means_ * scale + shift, rtol=1e-6)
    np.testing.assert_allclose(moved.covars_, base.covars_ * scale**2, rtol=1e-6)
    np.testing.assert_allclose(moved.transmat_, base.transmat_, atol=1e-8)


def test_two_observed_one_target_task_reads_the_same_moments():
    # E[x~_1 ⊗ E[x_2 | x_1, x_3] ⊗ x~_3] is the third moment of the three
    # positions: "1,3->2" is fitted from exactly the statistic of "1->2*3"
    model = _model(np.array([[-2.0, 0.5], [0.0, -1.5], [2.0, 1.0]]))
    X = model.sample(2000, 100, random_state=0)
    middle = MaskedGaussianHMM(3, task="1,3->2", random_state=0).fit(X)
    tensor = MaskedGaussianHMM(3, task="1->2*3", random_state=0).fit(X)
    assert middle.predictor_form_ == "moments" and middle.identifiable_ is True
    np.testing.assert_array_equal(middle.means_, tensor.means_)
    np.testing.assert_array_equal(middle.transmat_, tensor.transmat_)
    assert recovery_error(model, middle)["emission"] <= 0.1
    assert middle.predict(X[:5]).shape == (5, 2)
    with pytest.raises(ValueError, match="linear in the predicted token"):
        MaskedGaussianHMM(4, task="1,3->2").fit(X)
