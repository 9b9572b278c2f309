"""Baum-Welch refinement against hmmlearn's EM from the same start."""

import numpy as np
import pytest

from sk_maskid import (
    CategoricalHMMModel,
    GaussianHMMModel,
    make_categorical_hmm,
    make_gaussian_hmm,
)
from sk_maskid.refinement import baum_welch

hmm = pytest.importorskip("hmmlearn.hmm")

# The windows are independent sequences for both implementations: hmmlearn
# gets them concatenated with ``lengths``, so its start probabilities are
# re-estimated from the window starts exactly as ours are.
_N_WINDOWS, _LENGTH = 150, 8


def _set_chain(ref, model):
    ref.startprob_ = model.startprob_.copy()
    ref.transmat_ = model.transmat_.copy()


def _hmmlearn_em(start, X, lengths, n_iter):
    """hmmlearn's categorical EM from ``start``, ``n_iter`` iterations."""
    ref = hmm.CategoricalHMM(
        n_components=start.n_components,
        n_features=start.n_symbols,
        n_iter=n_iter,
        tol=0,
        params="ste",
        init_params="",
        implementation="scaling",
    )
    _set_chain(ref, start)
    ref.emissionprob_ = start.emissionprob_.copy()
    return ref.fit(X, lengths=lengths)


def test_categorical_em_matches_hmmlearn():
    truth = make_categorical_hmm(3, 4, self_transition=0.5, random_state=0)
    X = truth.sample(_N_WINDOWS, _LENGTH, random_state=0)
    start = make_categorical_hmm(3, 4, random_state=1)
    # hmmlearn has no floor on emissions: ours (1e-12) must never bind
    # 6 E-steps: the start's and 5 EM iterations' (plain EM, as hmmlearn)
    res = baum_welch(start, X, n_iter=6, tol=0, acceleration=None, floor=1e-12)
    model, history = res.model, np.array(res.history) * X.size
    assert len(history) == 6 and model.emissionprob_.min() > 1e-6

    ref = _hmmlearn_em(start, X.reshape(-1, 1), [_LENGTH] * _N_WINDOWS, n_iter=5)
    assert ref.monitor_.iter == 5

    # same E-steps and M-steps: equal up to rounding (measured <= 6e-16)
    np.testing.assert_allclose(model.startprob_, ref.startprob_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.transmat_, ref.transmat_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        model.emissionprob_, ref.emissionprob_, rtol=0, atol=1e-12
    )
    # hmmlearn records the log-likelihood before each M-step
    np.testing.assert_allclose(history[:5], ref.monitor_.history, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_gaussian_em_matches_hmmlearn(covariance_type):
    k, d = 3, 3
    truth = make_gaussian_hmm(k, d, self_transition=0.5, random_state=2)
    X = truth.sample(_N_WINDOWS, _LENGTH, random_state=2)
    rng = np.random.default_rng(0)
    covars = rng.uniform(0.7, 1.5, size=(k, d))
    if covariance_type == "spherical":
        covars = covars[:, 0]
    start = GaussianHMMModel(
        np.full(k, 1 / k),
        make_categorical_hmm(k, k, random_state=3).transmat_,
        truth.means_ + 0.5 * rng.standard_normal((k, d)),
        covars,
        covariance_type,
    )
    res = baum_welch(start, X, n_iter=6, tol=0, acceleration=None, min_covar=1e-3)
    model, history = res.model, np.array(res.history) * X.shape[0] * X.shape[1]
    # hmmlearn applies min_covar only at initialisation: ours must not bind
    assert len(history) == 6 and model.covars_.min() > 0.1

    ref = hmm.GaussianHMM(
        n_components=k,
        covariance_type=covariance_type,
        # hmmlearn's default covars_prior=1e-2 adds 0.01 to every variance
        # numerator (a MAP estimate); 0 gives the maximum-likelihood M-step
        covars_prior=0.0,
        n_iter=5,
        tol=0,
        params="stmc",
        init_params="",
        implementation="scaling",
    )
    ref.n_features = d
    _set_chain(ref, start)
    ref.means_ = start.means_.copy()
    ref.covars_ = start.covars_.copy()
    ref.fit(X.reshape(-1, d), lengths=[_LENGTH] * _N_WINDOWS)
    assert ref.monitor_.iter == 5

    # same E-steps and M-steps: equal up to rounding (measured <= 4e-14)
    np.testing.assert_allclose(model.startprob_, ref.startprob_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.transmat_, ref.transmat_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.means_, ref.means_, rtol=0, atol=1e-12)
    # hmmlearn's covars_ property expands to full matrices; after its M-step,
    # _covars_ holds one variance per state and feature ("spherical": tiled)
    ref_covars = ref._covars_ if covariance_type == "diag" else ref._covars_[:, 0]
    np.testing.assert_allclose(model.covars_, ref_covars, rtol=0, atol=1e-12)
    np.testing.assert_allclose(history[:5], ref.monitor_.history, rtol=1e-12)


def _categorical_problem():
    truth = make_categorical_hmm(3, 5, self_transition=0.5, random_state=4)
    X = truth.sample(400, 6, random_state=4)
    start = make_categorical_hmm(3, 5, random_state=5)
    return start, X


def test_history_is_non_decreasing_and_ends_at_the_returned_model():
    start, X = _categorical_problem()
    for acceleration in (None, "squarem"):
        res = baum_welch(start, X, n_iter=40, tol=0, acceleration=acceleration)
        history = np.array(res.history) * X.size  # per token -> total
        assert len(history) > 10 and res.n_iter == 40 and not res.converged
        assert np.all(np.diff(history) >= 0)
        np.testing.assert_allclose(
            history[0], start.log_likelihood(X).sum(), rtol=1e-12
        )
        np.testing.assert_allclose(
            history[-1], res.model.log_likelihood(X).sum(), rtol=1e-12
        )
        assert history[-1] > history[0] + 1.0  # EM did move from a random start


def test_tol_stops_at_the_first_small_gain():
    start, X = _categorical_problem()
    tol = 1e-4
    res = baum_welch(start, X, n_iter=500, tol=tol, acceleration=None)
    gains = np.diff(res.history)  # per-token gains, as tol is stated
    assert res.converged and len(gains) < 499
    assert gains[-1] < tol and np.all(gains[:-1] >= tol)
    # a huge tol stops after one iteration; n_iter=1 returns the start
    assert len(baum_welch(start, X, n_iter=500, tol=1.0).history) == 2
    res = baum_welch(start, X, n_iter=1)
    assert res.model is start and len(res.history) == 1 and not res.converged


def test_squarem_reaches_the_em_optimum_in_fewer_e_steps():
    # Persistent states and a random start: plain EM crawls for hundreds of
    # E-steps; SQUAREM reaches the same optimum (to 1e-6 per token).
    truth = make_categorical_hmm(3, 4, self_transition=0.8, random_state=3)
    X = truth.sample(300, 30, random_state=3)
    start = make_categorical_hmm(3, 4, random_state=7)
    plain = baum_welch(start, X, n_iter=5000, tol=1e-10, acceleration=None)
    fast = baum_welch(start, X, n_iter=5000, tol=1e-10, acceleration="squarem")
    assert plain.converged and fast.converged
    assert abs(plain.history[-1] - fast.history[-1]) < 1e-6
    assert fast.n_iter < plain.n_iter / 2, (fast.n_iter, plain.n_iter)


def test_packed_sequences_give_hmmlearns_em_on_the_sequences():
    # Sequences of unequal lengths are packed end to end into lanes, the
    # chain restarting at each start: EM on them equals hmmlearn's EM on the
    # sequences one by one, and the padding adds nothing.
    truth = make_categorical_hmm(3, 5, random_state=1)
    lengths = [3, 17, 40, 8, 40, 25, 2, 12]
    seqs = [truth.sample(1, n, random_state=i)[0] for i, n in enumerate(lengths)]
    padded = np.full((len(seqs), 40), -1)
    for i, seq in enumerate(seqs):
        padded[i, : len(seq)] = seq
    start = make_categorical_hmm(3, 5, random_state=2)
    res = baum_welch(
        start,
        padded,
        lengths=lengths,
        n_iter=4,
        tol=0,
        acceleration=None,
        floor=1e-12,
    )
    ll = sum(start.log_likelihood(seq[None])[0] for seq in seqs)
    np.testing.assert_allclose(res.history[0] * sum(lengths), ll, rtol=1e-12)
    ref = _hmmlearn_em(start, np.concatenate(seqs)[:, None], lengths, n_iter=3)
    np.testing.assert_allclose(res.model.transmat_, ref.transmat_, atol=1e-12)
    np.testing.assert_allclose(res.model.emissionprob_, ref.emissionprob_, atol=1e-12)
    np.testing.assert_allclose(res.model.startprob_, ref.startprob_, atol=1e-12)


def test_near_empty_state_gives_a_valid_model():
    # A state the data never visit (stationary mass ~1e-7) used to give NaN
    # transition rows; its rows are kept and floored instead.
    T = np.array([[0.9, 0.1 - 1e-7, 1e-7], [0.1, 0.9 - 1e-7, 1e-7], [0.5, 0.5, 0.0]])
    O = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.25] * 4])
    start = CategoricalHMMModel([0.5, 0.5, 0.0], T, O)
    data = CategoricalHMMModel([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], O[:2])
    X = data.sample(200, 10, random_state=0)
    res = baum_welch(start, X, n_iter=30, tol=0)
    for P in (res.model.transmat_, res.model.emissionprob_):
        assert np.all(np.isfinite(P)) and np.allclose(P.sum(axis=1), 1.0)
    assert np.all(np.diff(res.history) >= 0)


def test_result_is_a_valid_model_with_floors():
    start, X = _categorical_problem()
    X = np.where(X == 4, 0, X)  # symbol 4 never seen
    model = baum_welch(start, X, n_iter=10, floor=1e-6).model
    np.testing.assert_allclose(model.transmat_.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(model.startprob_.sum(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(model.emissionprob_.sum(axis=1), 1.0, rtol=1e-12)
    # the unseen symbol keeps the floor (renormalised), so it stays possible
    np.testing.assert_allclose(model.emissionprob_[:, 4], 1e-6, rtol=1e-5)
    assert np.isfinite(model.log_likelihood(np.array([[4, 4, 1]]))).all()

    # a constant feature drives the variance to min_covar, never below
    truth = make_gaussian_hmm(2, 2, random_state=6)
    Xg = truth.sample(100, 5, random_state=6)
    Xg[..., 1] = 0.25
    g = baum_welch(
        GaussianHMMModel(
            truth.startprob_, truth.transmat_, truth.means_, np.ones((2, 2)), "diag"
        ),
        Xg,
        n_iter=3,
        min_covar=1e-3,
    ).model
    np.testing.assert_allclose(g.covars_[:, 1], 1e-3, rtol=1e-12)
    np.testing.assert_allclose(g.means_[:, 1], 0.25, rtol=1e-12)
    assert g.covariance_type == "diag" and np.all(g.covars_[:, 0] > 1e-3)


def test_verbose_reports_each_accepted_step(capsys):
    start, X = _categorical_problem()
    res = baum_welch(start, X, n_iter=4, tol=0, acceleration=None, verbose=1)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == len(res.history) - 1 == 3
    assert lines[0].startswith("[baum_welch] E-step 2:")
    assert f"{res.history[-1]:.6f} per token" in lines[-1]
