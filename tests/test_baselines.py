"""The hmmlearn baseline, and cross-validation side by side."""

import warnings

import numpy as np
import pytest
from sklearn.model_selection import GroupKFold, cross_validate
from sklearn.utils.estimator_checks import parametrize_with_checks

pytest.importorskip("hmmlearn")

from sk_maskid import (  # noqa: E402
    MaskedCategoricalHMM,
    make_categorical_hmm,
    make_gaussian_hmm,
    make_windows,
)
from sk_maskid.baselines import HMMLearnBaseline  # noqa: E402
from sk_maskid.estimators import expected_failed_checks  # noqa: E402
from sk_maskid.metrics import make_recovery_scorer, recovery_error  # noqa: E402


@parametrize_with_checks(
    [
        HMMLearnBaseline(n_restarts=1, n_iter=5, random_state=0),
        HMMLearnBaseline(emission="gaussian", n_restarts=1, n_iter=5, random_state=0),
    ],
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hmmlearn's convergence chatter
        check(estimator)


def test_converged_is_false_when_iterations_run_out():
    X = make_categorical_hmm(3, 6, random_state=0).sample(300, 20, random_state=0)
    short = HMMLearnBaseline(3, n_restarts=1, n_iter=3, tol=1e-12, random_state=0).fit(
        X
    )
    assert short.n_iter_ == 3 and not short.converged_
    long = HMMLearnBaseline(3, n_restarts=1, n_iter=500, tol=1e-1, random_state=0).fit(
        X
    )
    assert long.converged_ and long.n_iter_ < 500


def test_best_restart_is_kept_and_recovers_gaussian():
    model = make_gaussian_hmm(2, 3, random_state=0)
    X = model.sample(500, 10, random_state=0)
    est = HMMLearnBaseline(2, emission="gaussian", n_restarts=3, random_state=0).fit(X)
    assert len(est.restart_log_likelihoods_) == 3
    total = est.model_.log_likelihood(X).sum()
    np.testing.assert_allclose(total, est.restart_log_likelihoods_.max(), rtol=1e-9)
    assert recovery_error(model, est)["emission"] < 0.1


def test_parallel_restarts_equal_sequential():
    X = make_categorical_hmm(3, 6, random_state=0).sample(200, 20, random_state=0)
    fits = [
        HMMLearnBaseline(3, n_restarts=3, n_iter=20, n_jobs=n_jobs, random_state=0).fit(
            X
        )
        for n_jobs in (1, 2)
    ]
    np.testing.assert_array_equal(*(f.restart_log_likelihoods_ for f in fits))
    np.testing.assert_array_equal(*(f.transmat_ for f in fits))
    np.testing.assert_array_equal(*(f.emissionprob_ for f in fits))
    # three distinct restarts, the best one kept
    assert len(set(fits[0].restart_log_likelihoods_)) == 3
    assert fits[0].model_.log_likelihood(X).sum() == pytest.approx(
        fits[0].restart_log_likelihoods_.max(), rel=1e-9
    )


def test_cross_validate_masked_and_baseline_with_one_scorer():
    model = make_categorical_hmm(3, 6, self_transition=0.5, random_state=0)
    seqs = model.sample(300, 40, random_state=0)
    X, groups = make_windows(seqs, 8, step=8)
    cv = list(GroupKFold(3).split(X, groups=groups))
    scoring = {"loglik": None, "recovery": make_recovery_scorer(model)}
    results = {}
    for name, est in [
        ("masked", MaskedCategoricalHMM(3, n_features=6, random_state=0)),
        ("hmmlearn", HMMLearnBaseline(3, n_restarts=2, n_iter=100, random_state=0)),
    ]:
        scores = cross_validate(
            est,
            X,
            cv=cv,
            scoring={
                "loglik": lambda e, X, y=None: e.score(X),
                "recovery": scoring["recovery"],
            },
        )
        results[name] = scores
        assert np.all(np.isfinite(scores["test_loglik"]))
        assert np.all(scores["test_recovery"] <= 0)
    # the same splits and the same scorer for both: comparable on one scale
    gap = abs(
        results["masked"]["test_loglik"].mean()
        - results["hmmlearn"]["test_loglik"].mean()
    )
    assert gap < 0.05
