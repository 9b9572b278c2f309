"""Predictor matching: losses against the HMM's exact predictor, gradients against
complex steps.

The closed-form gradient of the tensor polish (``_triple_loss``) is checked in
tests/test_estimators.py (``test_tensor_polish_loss_and_gradient_are_exact``).
"""

import itertools

import numpy as np
import pytest
from oracles import categorical_joint

from sk_maskid import CategoricalHMMModel, GaussianHMMModel, make_categorical_hmm
from sk_maskid._hmm import STEP, complex_step, softmax_rows, stationary
from sk_maskid._matching import (
    _best_of_starts,
    _posterior_form_loss,
    match_categorical_predictor,
    polish_tensor_readout,
)
from sk_maskid.tasks import parse_task


# --------------------------------------------------------------------------
# Gaussian posterior form
# --------------------------------------------------------------------------
def _posterior_problem(seed, k=3, d=2, n=60):
    rng = np.random.default_rng(seed)
    X_in = rng.standard_normal((n, d)) * 1.5
    Y = rng.standard_normal((n, d)) * 1.5
    params = rng.standard_normal(k * d + k * k + k)
    return X_in, Y, params


def _variance(params, k, d, m2):
    M = params[: k * d].reshape(k, d)
    pi = softmax_rows(params[k * d + k * k :])
    return (m2 - pi @ np.sum(M**2, axis=1)) / d


@pytest.mark.parametrize("gap", [1, 2])
@pytest.mark.parametrize(
    "m2, min_covar",
    [
        (12.0, 1e-3),  # the variance is pinned by m2, far above the floor
        (0.0, 0.5),  # m2 = 0 gives a negative variance: clamped at the floor
    ],
)
def test_posterior_form_gradient_equals_complex_steps(gap, m2, min_covar):
    k, d = 3, 2
    X_in, Y, params = _posterior_problem(gap)
    clamped = _variance(params, k, d, m2) < min_covar
    assert clamped == (m2 == 0.0)  # the two cases are the ones named

    def batched(theta):  # (P, n_params) -> (P,), complex-safe arithmetic
        return np.array(
            [_posterior_form_loss(t, X_in, Y, gap, k, m2, min_covar)[0] for t in theta]
        )

    value, grad = _posterior_form_loss(params, X_in, Y, gap, k, m2, min_covar)
    cs_value, cs_grad = complex_step(batched, params, STEP)
    assert value == pytest.approx(cs_value, rel=1e-14)
    assert np.abs(grad).max() > 1e-3  # not a stationary point: a real test
    # complex steps are exact to rounding; so is the reverse-mode gradient
    np.testing.assert_allclose(grad, cs_grad, rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("gap", [1, 2])
def test_posterior_form_loss_is_the_exact_predictor_loss(gap):
    # With pi the stationary distribution and a spherical variance s2, the
    # posterior form is the HMM's exact E[x_{1+gap} | x_1].
    k, d = 3, 2
    X_in, Y, params = _posterior_problem(10 + gap)
    M = params[: k * d].reshape(k, d)
    T = softmax_rows(params[k * d : k * d + k * k].reshape(k, k))
    pi = stationary(T)
    params[k * d + k * k :] = np.log(pi)
    s2 = 0.8
    m2 = d * s2 + pi @ np.sum(M**2, axis=1)  # pins the variance at s2
    model = GaussianHMMModel(pi, T, M, np.full(k, s2), "spherical")
    windows = np.full((len(X_in), 1 + gap, d), np.nan)
    windows[:, 0] = X_in
    pred = model.conditional_expectation(f"1->{1 + gap}", windows)
    value = _posterior_form_loss(params, X_in, Y, gap, k, m2, 1e-3)[0]
    expected = 0.5 * np.mean(np.sum((pred - Y) ** 2, axis=1))
    np.testing.assert_allclose(value, expected, rtol=1e-12)


# --------------------------------------------------------------------------
# Categorical predictor matching
# --------------------------------------------------------------------------
def _probe_problem(model, task):
    """Exact predictor of ``task`` on every observed combination, with weights."""
    d = model.n_symbols
    combos = np.array(list(itertools.product(range(d), repeat=len(task.observed))))
    probes = -np.ones((len(combos), task.span), dtype=int)
    probes[:, [p - 1 for p in task.observed]] = combos
    targets = model.conditional_expectation(task, probes)
    weights = np.exp(model.log_likelihood(probes))
    return probes, targets, weights / weights.sum()


def _excess_cross_entropy(params, task, probes, targets, weights):
    """The matching loss, evaluated with the public model's exact predictor."""
    startprob, transmat, emission = params
    model = CategoricalHMMModel(startprob, transmat, emission)
    pred = model.conditional_expectation(task, probes)
    return float(np.sum(weights[:, None] * targets * np.log(targets / pred)))


def test_match_categorical_predictor_reaches_the_exact_predictor():
    task = parse_task("1,3->2")
    truth = make_categorical_hmm(2, 3, random_state=0)
    probes, targets, weights = _probe_problem(truth, task)
    out = match_categorical_predictor(
        task, probes, targets, weights, 2, 3, n_init=3, max_iter=300, random_state=0
    )
    params = (out["startprob"], out["transmat"], out["emissionprob"])
    # the reported loss is the excess cross-entropy of the returned parameters
    excess = _excess_cross_entropy(params, task, probes, targets, weights)
    np.testing.assert_allclose(out["loss"], excess, rtol=0, atol=1e-12)
    # the truth has loss 0, the optimiser gets there (L-BFGS ftol 1e-10)
    assert 0 <= excess < 1e-8
    truth_params = (truth.startprob_, truth.transmat_, truth.emissionprob_)
    assert (
        abs(_excess_cross_entropy(truth_params, task, probes, targets, weights)) < 1e-15
    )
    # an excess of 1e-8 allows predictor differences of order 1e-4
    fitted = CategoricalHMMModel(*params)
    np.testing.assert_allclose(
        fitted.conditional_expectation(task, probes), targets, atol=1e-3
    )
    np.testing.assert_allclose(out["startprob"], stationary(out["transmat"]))
    # a perturbed truth is strictly worse
    T = truth.transmat_ + np.array([[-0.05, 0.05], [0.05, -0.05]])
    worse = (stationary(T), T, truth.emissionprob_)
    assert _excess_cross_entropy(worse, task, probes, targets, weights) > 1e-5


def _triple_excess(out, table):
    """Excess cross-entropy of ``x2 ⊗ x3 | x1`` under the returned HMM."""
    d = table.shape[0]
    model = CategoricalHMMModel(out["startprob"], out["transmat"], out["emissionprob"])
    probes = np.zeros((d, 3), dtype=int)
    probes[:, 0] = np.arange(d)
    pred = model.conditional_expectation("1->2*3", probes)
    cond = table.reshape(d, d * d)
    weights = cond.sum(axis=1)
    cond = cond / weights[:, None]
    return float(np.sum(weights[:, None] * cond * np.log(cond / pred)))


def test_polish_tensor_readout_keeps_and_finds_the_truth():
    truth = make_categorical_hmm(3, 4, random_state=2)
    table = categorical_joint(truth, (1, 2, 3), 3)
    # the truth is a stationary point of the polish: it stays there
    out = polish_tensor_readout(
        table, (1, 2, 3), 1, truth.transmat_, truth.emissionprob_
    )
    np.testing.assert_allclose(out["transmat"], truth.transmat_, atol=1e-8)
    np.testing.assert_allclose(out["emissionprob"], truth.emissionprob_, atol=1e-8)
    assert abs(out["loss"]) < 1e-13
    # from a perturbed truth it descends back
    rng = np.random.default_rng(0)
    T0 = truth.transmat_ * np.exp(0.1 * rng.standard_normal((3, 3)))
    O0 = truth.emissionprob_ * np.exp(0.1 * rng.standard_normal((3, 4)))
    T0, O0 = T0 / T0.sum(1, keepdims=True), O0 / O0.sum(1, keepdims=True)
    out = polish_tensor_readout(table, (1, 2, 3), 1, T0, O0, max_iter=2000, tol=1e-14)
    # the reported loss is the excess cross-entropy of the returned HMM
    np.testing.assert_allclose(out["loss"], _triple_excess(out, table), atol=1e-13)
    assert out["loss"] < 1e-11 and out["n_iter"] > 0
    # The loss is flat near the truth (measured: excess 3e-9 still 4e-3 away
    # at tol=1e-10, 1e-12 at 7e-5 away at tol=1e-14): parameters to 1e-3.
    np.testing.assert_allclose(out["transmat"], truth.transmat_, atol=1e-3)
    np.testing.assert_allclose(out["emissionprob"], truth.emissionprob_, atol=1e-3)
    np.testing.assert_allclose(out["startprob"], truth.startprob_, atol=1e-3)


def test_best_of_starts_keeps_the_lowest_minimum():
    # (x^2 - 1)^2 + 0.3 x: a local minimum near x = +0.96, the global near -1.04
    def fun(x):
        return (x[0] ** 2 - 1) ** 2 + 0.3 * x[0], np.array(
            [4 * x[0] * (x[0] ** 2 - 1) + 0.3]
        )

    # the stationary points are the roots of 4x^3 - 4x + 0.3
    low, _, high = np.sort(np.roots([4.0, 0.0, -4.0, 0.3]).real)
    for starts in ([[2.0], [-2.0]], [[-2.0], [2.0]]):
        best = _best_of_starts(fun, starts, max_iter=100, tol=1e-15, gtol=1e-12)
        assert best.x[0] == pytest.approx(low, abs=1e-6)
    local = _best_of_starts(fun, [[2.0]], max_iter=100, tol=1e-15, gtol=1e-12)
    assert local.x[0] == pytest.approx(high, abs=1e-6) and local.fun > best.fun
