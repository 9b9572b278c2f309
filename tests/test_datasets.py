import numpy as np
import pytest

from sk_maskid import make_categorical_hmm, make_gaussian_hmm


@pytest.mark.parametrize("seed", range(10))
def test_random_models_are_non_degenerate(seed):
    cat = make_categorical_hmm(4, 12, random_state=seed)
    gau = make_gaussian_hmm(3, 6, random_state=seed)
    for model, emission in ((cat, cat.emissionprob_), (gau, gau.means_)):
        assert np.linalg.svd(model.transmat_, compute_uv=False)[-1] >= 0.1
        assert np.linalg.matrix_rank(emission) == model.n_components
        pi = model.stationary_distribution()
        assert pi.min() > 0
        np.testing.assert_allclose(model.startprob_, pi)


def test_self_transition_and_determinism():
    a = make_categorical_hmm(3, 5, self_transition=0.8, random_state=0)
    b = make_categorical_hmm(3, 5, self_transition=0.8, random_state=0)
    np.testing.assert_array_equal(a.transmat_, b.transmat_)
    assert np.diag(a.transmat_).min() >= 0.8
    g = make_gaussian_hmm(2, 3, covariance_type="diag", covars=0.5, random_state=1)
    assert g.covars_.shape == (2, 3) and np.all(g.covars_ == 0.5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_components=5 > n_symbols=4"):
        make_categorical_hmm(5, 4)
    with pytest.raises(ValueError, match="n_components must be >= 1"):
        make_gaussian_hmm(0, 4)
    with pytest.raises(ValueError, match="self_transition"):
        make_categorical_hmm(2, 4, self_transition=1.0)
    with pytest.raises(ValueError, match="emission_concentration must be positive"):
        make_categorical_hmm(2, 4, emission_concentration=0.0)


def test_emission_concentration_peaks_the_emissions():
    # Dirichlet(a) rows over d symbols: the largest entry grows as a falls.
    # For a=1 (uniform on the simplex) E[max] = H_d / d = 0.2586 at d=12;
    # measured 0.2555 over 80 rows (rejection of ill-conditioned draws
    # barely moves it) and 0.581 for a=0.1.
    peaks = {
        a: np.mean(
            [
                make_categorical_hmm(
                    4, 12, emission_concentration=a, random_state=s
                ).emissionprob_.max(axis=1)
                for s in range(20)
            ]
        )
        for a in (0.1, 1.0)
    }
    assert abs(peaks[1.0] - np.sum(1.0 / np.arange(1, 13)) / 12) < 0.02, peaks
    assert peaks[0.1] > 0.5, peaks
