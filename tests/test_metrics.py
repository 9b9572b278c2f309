"""State alignment, recovery errors and the recovery scorer.

Masked scores (``cumulative_masked_score``, ``masked_score_curve``) are in
tests/test_masked_score.py.
"""

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from sk_maskid import make_categorical_hmm, make_gaussian_hmm
from sk_maskid.metrics import align_states, make_recovery_scorer, recovery_error


def _relabelled(model, order, **changes):
    """The same HMM with fitted state j being true state ``order[j]``."""
    params = {
        "startprob_": model.startprob_[order],
        "transmat_": model.transmat_[np.ix_(order, order)],
    }
    name = "emissionprob_" if hasattr(model, "emissionprob_") else "means_"
    params[name] = getattr(model, name)[order]
    params.update(changes)
    return SimpleNamespace(**params)


@pytest.mark.parametrize(
    "make", [make_categorical_hmm, make_gaussian_hmm], ids=["categorical", "gaussian"]
)
def test_align_states_inverts_every_permutation(make):
    model = make(4, 6, random_state=0)
    for order in itertools.permutations(range(4)):
        order = np.array(order)
        perm = align_states(model, _relabelled(model, order))
        # fitted state perm[i] is true state i
        np.testing.assert_array_equal(order[perm], np.arange(4))
        np.testing.assert_array_equal(perm, np.argsort(order))


def test_align_states_minimises_the_total_distance():
    # Against brute force over all permutations, on unrelated emissions.
    rng = np.random.default_rng(0)
    for _ in range(20):
        E_true = rng.dirichlet(np.ones(5), size=5)
        E_fit = rng.dirichlet(np.ones(5), size=5)
        perm = align_states(
            SimpleNamespace(emissionprob_=E_true), SimpleNamespace(emissionprob_=E_fit)
        )

        costs = {
            p: np.linalg.norm(E_true - E_fit[list(p)], axis=1).sum()
            for p in itertools.permutations(range(5))
        }
        assert costs[tuple(perm)] == pytest.approx(min(costs.values()), rel=1e-12)


def test_align_states_refuses_mismatched_or_missing_emissions():
    a = make_categorical_hmm(3, 4, random_state=0)
    with pytest.raises(ValueError, match="cannot align"):
        align_states(a, make_categorical_hmm(2, 4, random_state=0))
    with pytest.raises(TypeError, match="neither emissionprob_ nor means_"):
        align_states(a, SimpleNamespace(transmat_=a.transmat_))


def test_recovery_error_is_the_max_abs_error_after_alignment():
    model = make_categorical_hmm(3, 5, random_state=1)
    order = np.array([1, 2, 0])
    assert recovery_error(model, _relabelled(model, order)) == {
        "startprob": 0.0,
        "transmat": 0.0,
        "emission": 0.0,
    }
    # known perturbations, applied in the fitted (relabelled) order
    fitted = _relabelled(model, order)
    fitted.transmat_ = fitted.transmat_ + np.array(
        [[0.0, 0.02, -0.02], [0.0, 0.0, 0.0], [-0.01, 0.0, 0.01]]
    )
    fitted.emissionprob_ = fitted.emissionprob_.copy()
    fitted.emissionprob_[2, :2] += [0.003, -0.003]
    fitted.startprob_ = fitted.startprob_ + [0.001, -0.001, 0.0]
    errors = recovery_error(model, fitted)
    assert errors["transmat"] == pytest.approx(0.02, abs=1e-15)
    assert errors["emission"] == pytest.approx(0.003, abs=1e-15)
    assert errors["startprob"] == pytest.approx(0.001, abs=1e-15)


def test_recovery_error_uses_means_for_gaussian_models():
    model = make_gaussian_hmm(2, 3, random_state=2)
    fitted = _relabelled(model, np.array([1, 0]), means_=model.means_[::-1] + 0.1)
    errors = recovery_error(model, fitted)
    assert errors["emission"] == pytest.approx(0.1, abs=1e-14)
    assert errors["transmat"] == 0.0 and errors["startprob"] == 0.0


def test_recovery_scorer_is_the_negated_error():
    model = make_categorical_hmm(3, 5, random_state=3)
    close = _relabelled(model, np.array([2, 0, 1]))
    close.transmat_ = close.transmat_ + np.array(
        [[0.01, -0.01, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    )
    far = _relabelled(model, np.array([2, 0, 1]))
    far.transmat_ = far.transmat_ + np.array(
        [[0.1, -0.1, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    )
    errors = recovery_error(model, close)
    assert make_recovery_scorer(model)(close, None) == -max(errors.values())
    for which in ("startprob", "transmat", "emission"):
        assert make_recovery_scorer(model, which)(close) == -errors[which]
    # greater is better, as scikit-learn scorers require
    scorer = make_recovery_scorer(model, "transmat")
    assert scorer(model) == 0.0 > scorer(close) > scorer(far)
    assert scorer(close) == pytest.approx(-0.01, abs=1e-15)
    # a different number of states cannot be compared: the worst score
    assert scorer(make_categorical_hmm(2, 5, random_state=0)) == -np.inf
    with pytest.raises(ValueError, match="unknown error"):
        make_recovery_scorer(model, "means")
