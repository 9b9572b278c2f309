"""Baum-Welch refinement against hmmlearn's EM from the same start."""

import numpy as np
import pytest

from sk_maskid import (
    CategoricalHMMModel,
    GaussianHMMModel,
    _rows,
    make_categorical_hmm,
    make_gaussian_hmm,
    pad_sequences,
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
@pytest.mark.parametrize("lengths", [[_LENGTH] * _N_WINDOWS, [700, 8, 300, 192]])
def test_gaussian_em_matches_hmmlearn(covariance_type, lengths):
    # the same 1200 tokens as windows (packed whole into rows of 64) or as
    # long sequences (cut into rows joined by transfer maps)
    k, d = 3, 3
    truth = make_gaussian_hmm(k, d, self_transition=0.5, random_state=2)
    tokens = truth.sample(_N_WINDOWS, _LENGTH, random_state=2).reshape(-1, d)
    X = pad_sequences(np.split(tokens, np.cumsum(lengths)[:-1]))
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
    res = baum_welch(
        start, X, lengths=lengths, n_iter=6, tol=0, acceleration=None, min_covar=1e-3
    )
    model, history = res.model, np.array(res.history) * len(tokens)
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
    ref.fit(tokens, lengths=lengths)
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


def test_several_starts_keep_the_most_likely_and_count_every_e_step():
    # A poor start and the truth: after their probes the truth's path is
    # kept and continued; n_iter counts the probes of both.
    truth = make_categorical_hmm(3, 4, self_transition=0.8, random_state=3)
    X = truth.sample(300, 30, random_state=3)
    poor = make_categorical_hmm(3, 4, random_state=7)
    alone = baum_welch(truth, X, n_iter=5000, tol=1e-9)
    both = baum_welch([poor, truth], X, n_iter=5000, tol=1e-9, n_probe=5)
    probe = baum_welch(poor, X, n_iter=5, tol=1e-9)
    assert both.converged
    assert both.n_iter > probe.n_iter
    assert both.history[0] == alone.history[0]  # the truth's path
    assert np.all(np.diff(both.history) >= 0)
    assert both.history[-1] == pytest.approx(alone.history[-1], abs=1e-7)
    # the E-step budget covers the probes: 7 E-steps stop during the second
    capped = baum_welch([poor, truth], X, n_iter=7, tol=1e-9, n_probe=5)
    assert capped.n_iter == 7 and not capped.converged


def test_several_starts_compete_by_successive_halving(capsys):
    # Four starts: all run 5 E-steps, the better two 10 more, the better of
    # those to convergence; the result is that path, replayed start by start
    # (a replayed continuation spends one more E-step, on its start, whose
    # counts the lockstep run kept).
    truth = make_categorical_hmm(3, 4, self_transition=0.8, random_state=3)
    X = truth.sample(300, 30, random_state=3)
    starts = [make_categorical_hmm(3, 4, random_state=s) for s in (7, 8, 9, 10)]
    both = baum_welch(starts, X, n_iter=5000, tol=1e-6, n_probe=5, verbose=1)
    logs = capsys.readouterr().err
    for line in ("4 start(s), up to 5 ", "2 start(s), up to 10 ", "1 start(s), up to"):
        assert line in logs
    first = [baum_welch(s, X, n_iter=5, tol=1e-6) for s in starts]
    top = sorted(first, key=lambda p: p.history[-1], reverse=True)[:2]
    second = [baum_welch(p.model, X, n_iter=11, tol=1e-6) for p in top]
    kept = max(second, key=lambda p: p.history[-1])
    rest = baum_welch(kept.model, X, n_iter=5000, tol=1e-6)
    assert both.converged and rest.converged
    assert both.n_iter == 4 * 5 + 2 * 10 + rest.n_iter - 1
    # the starts' E-steps in lockstep equal their own: the kept path's
    # history is the replay's, step for step
    origin = top[second.index(kept)]
    expected = origin.history + kept.history[1:] + rest.history[1:]
    np.testing.assert_allclose(both.history, expected, rtol=1e-12)


_LENGTHS = [3, 170, 17, 1000, 40, 8, 65, 64, 40, 129, 25, 2, 12, 1]


def _long_and_short_sequences():
    truth = make_categorical_hmm(3, 5, random_state=1)
    seqs = [truth.sample(1, n, random_state=i)[0] for i, n in enumerate(_LENGTHS)]
    padded = np.full((len(seqs), max(_LENGTHS)), -1)
    for i, seq in enumerate(seqs):
        padded[i, : len(seq)] = seq
    return seqs, padded, make_categorical_hmm(3, 5, random_state=2)


def _em(start, X, lengths=None, n_iter=4):
    return baum_welch(
        start,
        X,
        lengths=lengths,
        n_iter=n_iter,
        tol=0,
        acceleration=None,
        floor=1e-12,
    )


@pytest.mark.parametrize("chunk_tokens", [None, 200])
def test_cut_and_packed_sequences_give_hmmlearns_em(monkeypatch, chunk_tokens):
    # With 1716 tokens rows are 64 long: the longer sequences are cut into
    # rows joined by transfer maps (the longest spans 16 rows; rows hold the
    # end of one and the start of the next), the shorter ones packed whole;
    # with chunk_tokens=200 the chunks (3 rows) cut sequences too. EM on
    # that layout equals hmmlearn's EM on the sequences one by one.
    if chunk_tokens is not None:
        monkeypatch.setattr(_rows, "_CHUNK_TOKENS", chunk_tokens)
    seqs, padded, start = _long_and_short_sequences()
    assert _rows._row_length(sum(_LENGTHS)) == 64
    res = _em(start, padded, _LENGTHS)
    ll = sum(start.log_likelihood(seq[None])[0] for seq in seqs)
    np.testing.assert_allclose(res.history[0] * sum(_LENGTHS), ll, rtol=1e-12)
    ref = _hmmlearn_em(start, np.concatenate(seqs)[:, None], _LENGTHS, n_iter=3)
    np.testing.assert_allclose(res.model.transmat_, ref.transmat_, atol=1e-12)
    np.testing.assert_allclose(res.model.emissionprob_, ref.emissionprob_, atol=1e-12)
    np.testing.assert_allclose(res.model.startprob_, ref.startprob_, atol=1e-12)


def test_masked_tokens_in_cut_sequences_match_whole_rows(monkeypatch):
    # hmmlearn cannot marginalise masked tokens; the reference is the same
    # EM with rows long enough to hold every sequence whole (no joins).
    seqs, padded, start = _long_and_short_sequences()
    padded[3, 500:530] = -1  # across a row boundary of the cut sequence
    padded[1, 60:70] = -1
    cut = _em(start, padded, _LENGTHS)
    monkeypatch.setattr(_rows, "_row_length", lambda n_tokens: 4096)
    whole = _em(start, padded, _LENGTHS)
    np.testing.assert_allclose(cut.history, whole.history, rtol=1e-13)
    for name in ("startprob_", "transmat_", "emissionprob_"):
        np.testing.assert_allclose(
            getattr(cut.model, name), getattr(whole.model, name), atol=1e-13
        )


@pytest.mark.parametrize("chunk_tokens", [None, 200])
@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_models_in_one_pass_get_their_own_expected_counts(
    monkeypatch, chunk_tokens, kind
):
    # Several models' E-steps in one pass over the rows (the starts of a
    # lockstep climb) equal each model's E-step alone, on rows that chain
    # long sequences, pack short ones and (chunk_tokens=200) cross chunks.
    from sk_maskid.refinement import _expected_counts

    if chunk_tokens is not None:
        monkeypatch.setattr(_rows, "_CHUNK_TOKENS", chunk_tokens)
    seqs, padded, _ = _long_and_short_sequences()
    if kind == "categorical":
        models = [make_categorical_hmm(3, 5, random_state=s) for s in range(4)]
        X = padded
    else:
        models = [make_gaussian_hmm(3, 3, random_state=s) for s in range(4)]
        X = models[0].sample(len(_LENGTHS), max(_LENGTHS), random_state=0)
        X[np.arange(X.shape[1]) >= np.array(_LENGTHS)[:, None]] = np.nan
        X[0, 1] = np.nan  # a masked token inside a sequence
    chunks = _rows.cut_rows(X, np.array(_LENGTHS)).chunks
    assert any(chunk[3].any() for chunk in chunks)  # some rows are chained
    together = _expected_counts(models, chunks, None)
    for model, got in zip(models, together, strict=True):
        (alone,) = _expected_counts([model], chunks, None)
        assert got.keys() == alone.keys()
        for key in alone:
            np.testing.assert_allclose(got[key], alone[key], rtol=1e-12, err_msg=key)


def test_starts_in_lockstep_do_not_depend_on_n_jobs(monkeypatch):
    # Three starts, chunks of 200 tokens run by joblib on 2 workers: the
    # counts are summed in chunk order, so the result equals the sequential
    # one exactly.
    monkeypatch.setattr(_rows, "_CHUNK_TOKENS", 200)
    _, padded, _ = _long_and_short_sequences()
    starts = [make_categorical_hmm(3, 5, random_state=s) for s in (2, 3, 4)]
    runs = [
        baum_welch(starts, padded, lengths=_LENGTHS, n_iter=40, n_probe=4, n_jobs=n)
        for n in (1, 2)
    ]
    assert len(_rows.cut_rows(padded, np.array(_LENGTHS)).chunks) > 1
    assert runs[0].n_iter == runs[1].n_iter
    np.testing.assert_array_equal(runs[0].history, runs[1].history)


def test_windows_of_one_length_are_rows_without_copies(monkeypatch):
    # Full windows of one length are rows of their own, views of the data;
    # EM on them equals hmmlearn's and EM on the windows cut into rows of 3
    # joined by transfer maps.
    truth = make_categorical_hmm(3, 4, random_state=0)
    X = truth.sample(300, 7, random_state=0)
    monkeypatch.setattr(_rows, "_CHUNK_TOKENS", 700)
    rows = _rows.cut_rows(X, np.full(300, 7))
    assert len(rows.chunks) == 3
    assert all(np.shares_memory(chunk[0], X) for chunk in rows.chunks)
    start = make_categorical_hmm(3, 4, random_state=1)
    whole = _em(start, X)
    ref = _hmmlearn_em(start, X.reshape(-1, 1), [7] * 300, n_iter=3)
    np.testing.assert_allclose(whole.model.transmat_, ref.transmat_, atol=1e-12)
    np.testing.assert_allclose(whole.model.emissionprob_, ref.emissionprob_, atol=1e-12)
    monkeypatch.setattr(_rows, "_row_length", lambda n_tokens: 3)
    assert not np.shares_memory(_rows.cut_rows(X, np.full(300, 7)).chunks[0][0], X)
    cut = _em(start, X)
    np.testing.assert_allclose(whole.history, cut.history, rtol=1e-13)


def test_chain_by_doubling_equals_the_loop_over_rows():
    # chain's prefix and suffix products (log2(rows) batched products) give
    # the row-by-row loop's messages; a row of zero weight (impossible after
    # the rows before it) falls back to the loop, which keeps the last
    # possible forward message.
    rng = np.random.default_rng(0)
    S, n, k = 2, 37, 3
    F = rng.dirichlet(np.ones(k), size=(S, n, k))
    F[:, 5] = F[:, 5, :1]  # row 5 begins a sequence: every state restarts alike
    log_g = rng.normal(scale=3.0, size=(S, n, k))
    maps = [(F[:, :20], log_g[:, :20]), (F[:, 20:], log_g[:, 20:])]
    alpha_in, beta_end = _rows.chain(maps)
    g = np.exp(log_g - log_g.max(axis=2, keepdims=True))
    alpha_end, loop_beta = _rows._chain_by_loop(g[..., None] * F)
    np.testing.assert_allclose(alpha_in[:, 1:], alpha_end[:, :-1], rtol=1e-12)
    np.testing.assert_allclose(beta_end, loop_beta, rtol=1e-12)
    np.testing.assert_allclose(np.sum(alpha_end * beta_end, axis=2), 1.0, rtol=1e-12)
    log_g[1, 9] = -np.inf
    alpha_in, beta_end = _rows.chain([(F, log_g)])
    assert np.all(np.isfinite(alpha_in)) and np.all(np.isfinite(beta_end))
    np.testing.assert_array_equal(alpha_in[1, 10], alpha_in[1, 9])


def test_rows_that_chain_nothing_skip_the_loop_over_rows():
    # Without chained rows the messages are chain's own result on its
    # stand-in maps (uniform forward, unit backward), without its loop.
    truth = make_categorical_hmm(3, 5, random_state=0)
    X = truth.sample(50, 9, random_state=0)
    for lengths in (np.full(50, 9), np.r_[np.full(49, 9), 8]):  # whole, packed
        rows = _rows.cut_rows(X, lengths)
        maps = [_rows.row_maps([truth], *c[:2], c[3]) for c in rows.chunks]
        parts = _rows.split_messages(maps, rows.chunks)
        for got, want in zip(zip(*parts, strict=True), _rows.chain(maps), strict=True):
            np.testing.assert_array_equal(np.concatenate(got), want)


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
