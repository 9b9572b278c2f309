"""Models against brute force, hmmlearn and Monte Carlo."""

import numpy as np
import pytest
from oracles import (
    categorical_expectation,
    categorical_likelihood,
    gaussian_expectation,
    gaussian_likelihood,
)
from scipy.stats import multivariate_normal

from sk_maskid import (
    CategoricalHMMModel,
    GaussianHMMModel,
    make_categorical_hmm,
    make_gaussian_hmm,
)
from sk_maskid._hmm import forward, smooth
from sk_maskid._rows import worth_cutting


def _tiny_categorical(seed, k=2, d=3):
    return make_categorical_hmm(k, d, random_state=seed)


def _tiny_gaussian(seed, k=2, d=2, covariance_type="diag"):
    rng = np.random.default_rng(seed)
    model = make_gaussian_hmm(k, d, random_state=seed, covariance_type="diag")
    covars = rng.uniform(0.5, 2.0, size=(k, d))
    if covariance_type == "spherical":
        covars = covars[:, 0]
    if covariance_type == "full":
        A = rng.normal(size=(k, d, d))
        covars = A @ A.transpose(0, 2, 1) + np.eye(d)
    return GaussianHMMModel(
        model.startprob_, model.transmat_, model.means_, covars, covariance_type
    )


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("length", [1, 4, 6])
def test_categorical_likelihood_matches_brute_force(k, length):
    model = _tiny_categorical(k, k=k, d=3)
    rng = np.random.default_rng(length)
    X = rng.integers(0, 3, size=(6, length))
    X[1, rng.integers(length)] = -1  # masked tokens are marginalised
    X[2, :] = -1
    X[3, ::2] = -1
    expected = np.log([categorical_likelihood(model, x) for x in X])
    np.testing.assert_allclose(model.log_likelihood(X), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("covariance_type", ["spherical", "diag", "full"])
def test_gaussian_likelihood_matches_brute_force(covariance_type):
    k, d = 3, 3
    base = _tiny_gaussian(0, k=k, d=d, covariance_type="diag")
    covars = {
        "spherical": np.array([0.5, 1.0, 1.5]),
        "diag": base.covars_,
        "full": _tiny_gaussian(0, k=k, d=d, covariance_type="full").covars_,
    }[covariance_type]
    model = GaussianHMMModel(
        base.startprob_, base.transmat_, base.means_, covars, covariance_type
    )
    X = model.sample(5, 5, random_state=1)
    X[0, 2] = np.nan
    X[1, [0, 4]] = np.nan
    expected = np.log([gaussian_likelihood(model, x) for x in X])
    np.testing.assert_allclose(model.log_likelihood(X), expected, rtol=0, atol=1e-10)


def test_categorical_score_matches_hmmlearn():
    hmm = pytest.importorskip("hmmlearn.hmm")
    model = make_categorical_hmm(3, 5, random_state=0)
    X = model.sample(4, 200, random_state=1)
    ref = hmm.CategoricalHMM(n_components=3, n_features=5, implementation="scaling")
    ref.startprob_ = model.startprob_
    ref.transmat_ = model.transmat_
    ref.emissionprob_ = model.emissionprob_
    expected = ref.score(X.reshape(-1, 1), lengths=[200] * 4)
    np.testing.assert_allclose(
        model.log_likelihood(X).sum(), expected, rtol=0, atol=1e-8
    )
    np.testing.assert_allclose(model.score(X), expected / X.size, rtol=0, atol=1e-12)


@pytest.mark.parametrize("covariance_type", ["spherical", "diag", "full"])
def test_gaussian_score_matches_hmmlearn(covariance_type):
    hmm = pytest.importorskip("hmmlearn.hmm")
    model = _tiny_gaussian(3, k=3, d=3, covariance_type=covariance_type)
    X = model.sample(3, 200, random_state=2)
    ref = hmm.GaussianHMM(
        n_components=3, covariance_type=covariance_type, implementation="scaling"
    )
    ref.n_features = 3
    ref.startprob_ = model.startprob_
    ref.transmat_ = model.transmat_
    ref.means_ = model.means_
    ref.covars_ = model.covars_
    expected = ref.score(X.reshape(-1, 3), lengths=[200] * 3)
    np.testing.assert_allclose(
        model.log_likelihood(X).sum(), expected, rtol=0, atol=1e-8
    )


@pytest.mark.parametrize(
    "task, observed, target",
    [
        ("1->2", (1,), (2,)),
        ("1,3->2", (1, 3), (2,)),
        ("1->2*3", (1,), (2, 3)),
        ("2->3*1", (2,), (3, 1)),
        ("1->3", (1,), (3,)),
    ],
)
def test_categorical_conditional_expectation_matches_brute_force(
    task, observed, target
):
    model = _tiny_categorical(7, k=3, d=3)
    span = max(observed + target)
    X = model.sample(20, span + 1, random_state=0)  # longer windows are fine
    got = model.conditional_expectation(task, X)
    expected = np.array(
        [
            categorical_expectation(
                model, observed, target, span, x[list(np.subtract(observed, 1))]
            )
            for x in X
        ]
    )
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "task, observed, target",
    [("1->2", (1,), (2,)), ("1,3->2", (1, 3), (2,)), ("1->2*3", (1,), (2, 3))],
)
def test_gaussian_conditional_expectation_matches_brute_force(task, observed, target):
    model = _tiny_gaussian(5, k=2, d=2)
    X = model.sample(8, 3, random_state=0)
    got = model.conditional_expectation(task, X)
    expected = np.array(
        [
            gaussian_expectation(
                model, observed, target, x[list(np.subtract(observed, 1))]
            )
            for x in X
        ]
    )
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


def test_several_targets_are_concatenated():
    model = _tiny_categorical(1)
    X = model.sample(5, 4, random_state=0)
    both = model.conditional_expectation("1->2,3*4", X)
    np.testing.assert_allclose(
        both,
        np.hstack(
            [
                model.conditional_expectation("1->2", X),
                model.conditional_expectation("1->3*4", X),
            ]
        ),
    )


def test_conditional_expectation_matches_monte_carlo():
    # 2e5 windows, d=3: each cell of P(x2, x3 | x1) has standard error below
    # 0.5 / sqrt(2e5 * min P(x1)) < 0.003, so 0.015 is a 5-sigma tolerance.
    model = _tiny_categorical(3, k=2, d=3)
    X = model.sample(200_000, 3, random_state=4)
    exact = model.conditional_expectation(
        "1->2*3", np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]])
    )
    for a in range(3):
        rows = X[X[:, 0] == a]
        freq = np.bincount(rows[:, 1] * 3 + rows[:, 2], minlength=9) / len(rows)
        np.testing.assert_allclose(freq, exact[a], atol=0.015)
    # and the BERT-style middle, E[e_x2 | x1, x3]
    exact = model.conditional_expectation("1,3->2", np.array([[1, 0, 2]]))[0]
    rows = X[(X[:, 0] == 1) & (X[:, 2] == 2)]
    np.testing.assert_allclose(
        np.bincount(rows[:, 1], minlength=3) / len(rows), exact, atol=0.015
    )


def _chain_rule_orderings(model, x, log_density, n_orderings=5, seed=0):
    """Σ_t log p(x_σ(t) | x_σ(>t)) for random orderings σ, via masked_predictive."""
    rng = np.random.default_rng(seed)
    length = len(x)
    totals = []
    for _ in range(n_orderings):
        order = rng.permutation(length)
        # Row t hides order[:t+1] and keeps order[t+1:] visible.
        batch = np.repeat(x[None], length, axis=0).astype(float if x.ndim == 2 else int)
        for t in range(length):
            batch[t, order[: t + 1]] = np.nan if x.ndim == 2 else -1
        pred = model.masked_predictive(batch)
        totals.append(sum(log_density(pred, t, order[t]) for t in range(length)))
    return np.array(totals)


def test_chain_rule_categorical():
    model = make_categorical_hmm(3, 6, random_state=2)
    x = model.sample(1, 50, random_state=3)[0]
    totals = _chain_rule_orderings(
        model, x, lambda p, t, pos: np.log(p[t, pos, x[pos]])
    )
    np.testing.assert_allclose(
        totals, model.log_likelihood(x[None])[0], rtol=0, atol=1e-8
    )


def test_chain_rule_gaussian():
    model = _tiny_gaussian(4, k=3, d=3)
    x = model.sample(1, 50, random_state=5)[0]
    cov = model._full_covars()

    def log_density(pred, t, pos):
        dens = [
            multivariate_normal(model.means_[i], cov[i]).pdf(x[pos]) for i in range(3)
        ]
        return np.log(pred.weights[t, pos] @ dens)

    totals = _chain_rule_orderings(model, x, log_density)
    np.testing.assert_allclose(
        totals, model.log_likelihood(x[None])[0], rtol=0, atol=1e-8
    )


def test_masked_predictive_is_nan_at_observed_positions():
    model = _tiny_categorical(0)
    X = np.array([[0, -1, 2, -1]])
    pred = model.masked_predictive(X)
    assert np.isnan(pred[0, [0, 2]]).all()
    np.testing.assert_allclose(pred[0, [1, 3]].sum(axis=1), 1.0)
    gmodel = _tiny_gaussian(0)
    Y = gmodel.sample(1, 4, random_state=0)
    Y[0, 1] = np.nan
    gpred = gmodel.masked_predictive(Y)
    assert np.isnan(gpred.mean[0, 0]).all() and np.isfinite(gpred.mean[0, 1]).all()
    np.testing.assert_allclose(gpred.mean[0, 1], gpred.weights[0, 1] @ gmodel.means_)


def test_sampling_statistics_categorical():
    # 1e6 tokens; the worst cell has standard error about 0.5/sqrt(1e6*0.1/4)
    # = 0.003, so 0.01 is a 3-sigma bound on the maximum over cells.
    model = make_categorical_hmm(4, 12, random_state=1)
    X, S = model.sample(10_000, 100, random_state=0, return_states=True)
    k, d = 4, 12
    trans = np.zeros((k, k))
    np.add.at(trans, (S[:, :-1].ravel(), S[:, 1:].ravel()), 1)
    emit = np.zeros((k, d))
    np.add.at(emit, (S.ravel(), X.ravel()), 1)
    assert np.abs(trans / trans.sum(1, keepdims=True) - model.transmat_).max() < 0.01
    assert np.abs(emit / emit.sum(1, keepdims=True) - model.emissionprob_).max() < 0.01
    start = np.bincount(S[:, 0], minlength=k) / len(S)
    assert np.abs(start - model.startprob_).max() < 0.02  # 1e4 draws


def test_sampling_statistics_gaussian():
    model = make_gaussian_hmm(3, 4, random_state=1)
    X, S = model.sample(2_500, 100, random_state=0, return_states=True)
    for i in range(3):
        tokens = X[S == i]
        # standard error sigma/sqrt(n_i) < 1/sqrt(5e4) = 0.0045 per coordinate
        assert np.abs(tokens.mean(0) - model.means_[i]).max() < 0.02
        assert np.abs(tokens.var(0) - model.covars_[i]).max() < 0.03
    trans = np.zeros((3, 3))
    np.add.at(trans, (S[:, :-1].ravel(), S[:, 1:].ravel()), 1)
    assert np.abs(trans / trans.sum(1, keepdims=True) - model.transmat_).max() < 0.01


def test_sampling_is_reproducible_and_vectorised_shapes():
    model = make_gaussian_hmm(2, 3, random_state=0)
    a = model.sample(4, 7, random_state=3)
    b = model.sample(4, 7, random_state=3)
    assert a.shape == (4, 7, 3)
    np.testing.assert_array_equal(a, b)


def test_stationary_distribution():
    model = make_categorical_hmm(4, 5, random_state=3)
    pi = model.stationary_distribution()
    np.testing.assert_allclose(pi @ model.transmat_, pi, atol=1e-14)
    np.testing.assert_allclose(pi, model.startprob_, atol=1e-14)
    reducible = CategoricalHMMModel([0.5, 0.5], np.eye(2), np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="reducible"):
        reducible.stationary_distribution()


def test_scalar_gaussian_tokens_accept_2d_arrays():
    model = GaussianHMMModel(
        [0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]], [[-1.0], [1.0]], [1.0, 1.0]
    )
    X = model.sample(3, 10, random_state=0)
    np.testing.assert_allclose(model.log_likelihood(X[..., 0]), model.log_likelihood(X))


GOOD = dict(
    startprob=[0.5, 0.5],
    transmat=[[0.9, 0.1], [0.2, 0.8]],
    emissionprob=[[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]],
)


@pytest.mark.parametrize(
    "changes, match",
    [
        (
            dict(transmat=[[0.9, 0.2], [0.2, 0.8]]),
            "transmat must sum to 1 along rows; row 0",
        ),
        (dict(startprob=[0.6, 0.5]), "startprob must sum to 1"),
        (dict(startprob=[0.5, 0.25, 0.25]), r"startprob must have shape \(2,\)"),
        (
            dict(emissionprob=[[0.5, 0.5], [1.0, 0.0], [0.0, 1.0]]),
            "emissionprob must have shape",
        ),
        (dict(transmat=[[1.1, -0.1], [0.2, 0.8]]), "transmat has negative entries"),
        (
            dict(emissionprob=[[np.nan, 0.5, 0.5], [0.1, 0.1, 0.8]]),
            "emissionprob contains NaN",
        ),
    ],
)
def test_bad_parameters(changes, match):
    with pytest.raises(ValueError, match=match):
        CategoricalHMMModel(**{**GOOD, **changes})


def test_bad_gaussian_parameters():
    with pytest.raises(ValueError, match=r"covars must have shape \(2, 1\)"):
        GaussianHMMModel([0.5, 0.5], np.eye(2), [[0.0], [1.0]], [1.0, 1.0], "diag")
    with pytest.raises(ValueError, match="covars must be positive"):
        GaussianHMMModel([0.5, 0.5], np.eye(2), [[0.0], [1.0]], [1.0, -1.0])
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        GaussianHMMModel([0.5, 0.5], np.eye(2), [[0.0], [1.0]], [1.0, 1.0], "tied")


@pytest.mark.parametrize(
    "X, exc, match",
    [
        ([[0, 1, 3]], ValueError, "symbol 3 out of range: expected symbols 0..2"),
        ([[0, -2, 1]], ValueError, "Negative values in data: X has symbol -2 < -1"),
        ([[0.0, np.nan, 1.0]], ValueError, "contains NaN"),
        ([[0.5, 1.0]], ValueError, "non-integer"),
        (
            [0, 1, 2],
            ValueError,
            r"must be 2-D of shape \(n_sequences, length\), got ndim=1",
        ),
        (np.empty((0, 3), dtype=int), ValueError, "is empty"),
        ([["a", "b"]], TypeError, "must hold integer symbols"),
    ],
)
def test_bad_categorical_sequences(X, exc, match):
    model = CategoricalHMMModel(**GOOD)
    with pytest.raises(exc, match=match):
        model.log_likelihood(np.asarray(X))


def test_bad_gaussian_sequences():
    model = GaussianHMMModel(
        [0.5, 0.5], np.eye(2) * 0.5 + 0.25, [[0.0, 0], [1, 1]], [1.0, 1.0]
    )
    with pytest.raises(ValueError, match="dimension 3, expected 2"):
        model.score(np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match="NaN in some features only"):
        model.score(np.array([[[0.0, np.nan]]]))
    with pytest.raises(ValueError, match="infinity"):
        model.score(np.array([[[0.0, np.inf]]]))
    with pytest.raises(ValueError, match="needs at least 3"):
        model.conditional_expectation("1->2*3", np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="n_sequences must be >= 1"):
        model.sample(0, 3)


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_long_sequences_cut_into_rows_give_the_one_pass_values(kind):
    # Rows of ~300 tokens joined by transfer maps: the same log-likelihoods
    # and posteriors as one forward-backward pass over each whole sequence.
    if kind == "categorical":
        model = make_categorical_hmm(3, 6, random_state=0)
        X = model.sample(3, 30_000, random_state=0)
        X[1, 25_000:] = -1  # a padded tail
        X[2, 100:200] = -1  # masked tokens inside
    else:
        model = make_gaussian_hmm(3, 3, random_state=0)
        X = model.sample(3, 30_000, random_state=0)
        X[1, 25_000:] = np.nan
        X[2, 100:200] = np.nan
    assert worth_cutting(X)
    B, log_shift = model._emission_likelihood(X)
    _, c = forward(model.startprob_, model.transmat_, B)
    expected = np.log(c).sum(axis=1) + log_shift.sum(axis=1)
    np.testing.assert_allclose(model.log_likelihood(X), expected, rtol=1e-12)
    np.testing.assert_allclose(
        model.predict_proba(X),
        smooth(model.startprob_, model.transmat_, B)[3],
        rtol=0,
        atol=1e-10,
    )
