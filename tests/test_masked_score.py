"""The cumulative masked score: exact identity, unbiasedness, model selection."""

import warnings

import numpy as np
import pytest

from sk_maskid import GaussianHMMModel, make_categorical_hmm, make_gaussian_hmm
from sk_maskid.metrics import cumulative_masked_score, masked_score_curve


def _all_masks(length):
    codes = np.arange(1, 2**length)
    return (codes[:, None] >> np.arange(length)) & 1 == 1


@pytest.mark.parametrize(
    "model",
    [
        make_categorical_hmm(3, 5, random_state=0),
        GaussianHMMModel(
            [0.3, 0.3, 0.4],
            [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6]],
            [[0.0, 1.0], [2.0, -1.0], [-1.5, 0.5]],
            [[1.0, 0.5], [0.7, 1.2], [0.9, 0.9]],
            covariance_type="diag",
        ),
    ],
)
def test_exhaustive_masks_grouped_by_size_give_the_log_likelihood(model):
    # all 1023 non-empty masks of T=10 tokens, averaged within each size and
    # summed over sizes (Moreno-Munoz et al.): log p(x), to 1e-9
    x = model.sample(1, 10, random_state=1)
    masks = _all_masks(10)
    logp = model.masked_log_predictive(np.repeat(x, len(masks), axis=0), masks)
    per_mask = np.nansum(logp, axis=1) / masks.sum(axis=1)
    sizes = masks.sum(axis=1)
    total = sum(per_mask[sizes == t].mean() for t in range(1, 11))
    np.testing.assert_allclose(total, model.log_likelihood(x)[0], rtol=0, atol=1e-9)


def test_monte_carlo_estimate_is_unbiased_and_shrinks():
    model = make_categorical_hmm(3, 5, random_state=2)
    x = model.sample(1, 100, random_state=3)
    truth = model.log_likelihood(x)[0]
    rng = np.random.RandomState(0)
    single = np.array(
        [
            cumulative_masked_score(model, x, n_orderings=1, random_state=rng)[0]
            for _ in range(300)
        ]
    )
    se = single.std(ddof=1) / np.sqrt(len(single))
    assert abs(single.mean() - truth) <= 4 * se, (single.mean(), truth, se)
    sixteen = np.array(
        [
            cumulative_masked_score(model, x, n_orderings=16, random_state=rng)[0]
            for _ in range(60)
        ]
    )
    ratio = sixteen.std(ddof=1) / single.std(ddof=1)
    assert 0.15 <= ratio <= 0.40, ratio  # 1/sqrt(16) = 0.25 in theory
    # the reported standard error matches the spread of the estimates
    _, reported = cumulative_masked_score(model, x, n_orderings=16, random_state=1)
    assert 0.5 <= reported / sixteen.std(ddof=1) <= 2.0


def test_held_out_masked_score_selects_the_number_of_states():
    pytest.importorskip("hmmlearn")
    from sk_maskid.baselines import HMMLearnBaseline

    truth = make_gaussian_hmm(3, 3, self_transition=0.6, mean_scale=2.0, random_state=4)
    train = truth.sample(20, 100, random_state=0)
    held_out = truth.sample(20, 100, random_state=1)
    held, in_sample, likelihood = [], [], []
    for k in range(1, 7):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = HMMLearnBaseline(
                k, emission="gaussian", n_restarts=4, n_iter=300, random_state=0
            ).fit(train)
        held.append(cumulative_masked_score(est, held_out, random_state=0)[0])
        in_sample.append(cumulative_masked_score(est, train, random_state=0)[0])
        likelihood.append(est.model_.log_likelihood(train).sum())
    assert int(np.argmax(held)) + 1 == 3, held
    # In-sample the score estimates the training likelihood, which more
    # states never lower (measured gaps >= 10 nats, standard errors ~2.5):
    # it cannot select a model.
    assert np.all(np.diff(likelihood) >= 0), likelihood
    assert np.all(np.diff(in_sample) >= 0), in_sample


def test_masked_score_curve_shape_and_order():
    model = make_categorical_hmm(3, 5, self_transition=0.7, random_state=0)
    X = model.sample(10, 50, random_state=0)
    curve = masked_score_curve(model, X, rates=(0.1, 0.5, 0.9), random_state=0)
    assert curve.shape == (3,)
    # hiding more leaves less to predict from: the score falls with the rate
    assert curve[0] > curve[2]


def test_bad_masks():
    model = make_categorical_hmm(2, 3, random_state=0)
    X = model.sample(2, 5, random_state=0)
    with pytest.raises(ValueError, match="mask must have shape"):
        model.masked_log_predictive(X, np.ones((2, 4), bool))
    with pytest.raises(ValueError, match="rates must lie in"):
        masked_score_curve(model, X, rates=(0.0,))
