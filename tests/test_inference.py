"""Inference on sequences: hmmlearn parity, brute force on masked tokens, forms.

``decode``, ``predict_proba``, ``score_samples``, ``aic`` and ``bic`` are
checked against hmmlearn's log implementation on ``to_hmmlearn()``, and
sequences with masked tokens against enumeration of every hidden path
(tests/oracles.py). Then the input forms (list, padded array, concatenated
with ``lengths=``), sampling, pandas output, grid search over sequences,
``startprob_`` from sequence starts and the ``lengths=`` keyword.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from oracles import categorical_likelihood, gaussian_likelihood, path_probabilities
from scipy.stats import multivariate_normal
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline

from sk_maskid import (
    CategoricalHMMModel,
    MaskedCategoricalHMM,
    MaskedGaussianHMM,
    make_categorical_hmm,
    make_gaussian_hmm,
    pad_sequences,
)
from sk_maskid.metrics import align_states

LENGTHS = [1, 7, 30, 120, 5]


def _fit(est, X, **kwargs):
    with warnings.catch_warnings():
        # small samples: extraction diagnostics are beside the point here
        warnings.simplefilter("ignore")
        return est.fit(X, **kwargs)


def _models(kind, small=False):
    """(true model, fitted estimator) of a token type, persistent chains."""
    if kind == "categorical":
        k, d, seed, n = (2, 3, 1, 4000) if small else (3, 5, 1, 20_000)
        true = make_categorical_hmm(k, d, self_transition=0.6, random_state=seed)
        est = MaskedCategoricalHMM(k, random_state=0)
    else:
        k, d, seed, n = (2, 2, 0, 4000) if small else (3, 3, 0, 4000)
        true = make_gaussian_hmm(
            k, d, self_transition=0.6, covariance_type="diag", random_state=seed
        )
        est = MaskedGaussianHMM(k, covariance_type="diag", random_state=0)
    est = _fit(est, true.sample(n, 5, random_state=0))
    # a non-degenerate extraction, so that paths and posteriors are not trivial
    assert est.transmat_.min() > 0.01
    return true, est


@pytest.fixture(scope="module", params=["categorical", "gaussian"])
def fitted(request):
    return _models(request.param)


@pytest.fixture(scope="module", params=["categorical", "gaussian"])
def tiny(request):
    return _models(request.param, small=True)


def _sequences(true, lengths, seed=0):
    return [true.sample(1, n, random_state=seed + i)[0] for i, n in enumerate(lengths)]


def _concat(seqs):
    """hmmlearn's concatenated array: a column of symbols, rows of vectors."""
    X = np.concatenate(seqs)
    return X[:, None] if X.ndim == 1 else X


def _mask(seqs, where):
    """Copies of the sequences with the tokens at ``where[i]`` masked."""
    out = []
    for seq, positions in zip(seqs, where, strict=True):
        seq = seq.astype(float) if seq.ndim == 2 else seq.copy()
        seq[list(positions)] = np.nan if seq.ndim == 2 else -1
        out.append(seq)
    return out


# -- brute force: enumerate every hidden path --------------------------------
def _emission_table(model, x):
    """(T, k) emission likelihoods, 1 at masked tokens."""
    k = model.n_components
    table = np.ones((len(x), k))
    for t, token in enumerate(x):
        if np.ndim(token) == 0:
            if token >= 0:
                table[t] = model.emissionprob_[:, token]
        elif not np.isnan(token).all():
            cov = model._full_covars()
            table[t] = [
                multivariate_normal(model.means_[i], cov[i]).pdf(token)
                for i in range(k)
            ]
    return table


def _joint(model, x):
    """Every hidden path and p(h, observed tokens of x)."""
    paths, prob = path_probabilities(model, len(x))
    table = _emission_table(model, x)
    for t in range(len(x)):
        prob = prob * table[t, paths[:, t]]
    return paths, prob


def _brute_viterbi(model, x):
    paths, prob = _joint(model, x)
    best = np.argmax(prob)
    return np.log(prob[best]), paths[best]


def _brute_posteriors(model, x):
    paths, prob = _joint(model, x)
    k = model.n_components
    gamma = np.array(
        [[prob[paths[:, t] == i].sum() for i in range(k)] for t in range(len(x))]
    )
    return gamma / prob.sum()


def _brute_likelihood(model, x):
    if np.ndim(x) == 1:
        return categorical_likelihood(model, x)
    return gaussian_likelihood(model, x)


# -- 1. parity with hmmlearn -------------------------------------------------
def test_viterbi_equals_hmmlearn(fitted):
    true, est = fitted
    X, hmm = _concat(_sequences(true, LENGTHS)), est.to_hmmlearn()
    log_prob, states = est.decode(X, lengths=LENGTHS)
    ref_log_prob, ref_states = hmm.decode(X, LENGTHS, algorithm="viterbi")
    assert states.shape == (sum(LENGTHS),)
    assert abs(log_prob - ref_log_prob) <= 1e-8
    np.testing.assert_array_equal(states, ref_states)


def test_map_decoding_equals_hmmlearn(fitted):
    true, est = fitted
    X, hmm = _concat(_sequences(true, LENGTHS)), est.to_hmmlearn()
    log_prob, states = est.decode(X, lengths=LENGTHS, algorithm="map")
    _, ref_states = hmm.decode(X, LENGTHS, algorithm="map")
    np.testing.assert_array_equal(states, ref_states)
    # hmmlearn returns the sum of the max posteriors, not of their logs
    # (hmmlearn issue #188, open); ours is the log-probability
    ref_posteriors = hmm.predict_proba(X, LENGTHS)
    expected = np.log(ref_posteriors.max(axis=1)).sum()
    assert abs(log_prob - expected) <= 1e-8
    assert log_prob <= 0


def test_predict_proba_equals_hmmlearn(fitted):
    true, est = fitted
    X, hmm = _concat(_sequences(true, LENGTHS)), est.to_hmmlearn()
    posteriors = est.predict_proba(X, lengths=LENGTHS)
    assert posteriors.shape == (sum(LENGTHS), est.n_components)
    np.testing.assert_allclose(posteriors, hmm.predict_proba(X, LENGTHS), atol=1e-10)


def test_log_likelihood_equals_hmmlearn_without_underflow(fitted):
    true, est = fitted
    lengths = LENGTHS + [5000]
    seqs = _sequences(true, lengths)
    X, hmm = _concat(seqs), est.to_hmmlearn()
    per_sequence = est.score_samples(X, lengths=lengths)
    assert per_sequence.shape == (len(lengths),)
    assert np.all(np.isfinite(per_sequence))
    assert abs(per_sequence.sum() - hmm.score(X, lengths)) <= 1e-8
    # the long sequence alone, and the per-token mean
    assert abs(per_sequence[-1] - hmm.score(_concat(seqs[-1:]))) <= 1e-8
    np.testing.assert_allclose(
        est.score(X, lengths=lengths), hmm.score(X, lengths) / len(X), rtol=1e-12
    )
    # the Viterbi path of the long sequence too
    log_prob, states = est.decode(_concat(seqs[-1:]), lengths=[5000])
    ref_log_prob, ref_states = hmm.decode(_concat(seqs[-1:]))
    assert abs(log_prob - ref_log_prob) <= 1e-8
    np.testing.assert_array_equal(states, ref_states)


def test_aic_bic_equal_hmmlearn(fitted):
    true, est = fitted
    X, hmm = _concat(_sequences(true, LENGTHS)), est.to_hmmlearn()
    n_params = sum(hmm._get_n_fit_scalars_per_param().values())
    assert est._n_parameters() == n_params
    assert abs(est.aic(X, lengths=LENGTHS) - hmm.aic(X, LENGTHS)) <= 1e-8
    assert abs(est.bic(X, lengths=LENGTHS) - hmm.bic(X, LENGTHS)) <= 1e-8
    log_likelihood = hmm.score(X, LENGTHS)
    np.testing.assert_allclose(
        est.bic(X, lengths=LENGTHS),
        -2 * log_likelihood + n_params * np.log(sum(LENGTHS)),
        rtol=1e-12,
    )


# -- 2. masked tokens against brute force ------------------------------------
MASKED_AT = [(1, 3), (0,), (1, 2, 3), (2,)]
MASKED_LENGTHS = [6, 4, 5, 3]


def _masked_sequences(true):
    return _mask(_sequences(true, MASKED_LENGTHS, seed=10), MASKED_AT)


def test_viterbi_with_masked_tokens_is_the_best_path(tiny):
    true, est = tiny
    seqs = _masked_sequences(true)
    log_prob, states = est.decode(seqs)
    total = 0.0
    for seq, path in zip(seqs, states, strict=True):
        ref_log_prob, ref_path = _brute_viterbi(est.model_, seq)
        np.testing.assert_array_equal(path, ref_path)
        one_log_prob, _ = est.decode([seq])
        assert abs(one_log_prob - ref_log_prob) <= 1e-10
        total += ref_log_prob
    assert abs(log_prob - total) <= 1e-10
    # the same sequences concatenated, masked tokens and all
    lengths = [len(seq) for seq in seqs]
    cat_log_prob, cat_states = est.decode(_concat(seqs), lengths=lengths)
    assert abs(cat_log_prob - total) <= 1e-10
    np.testing.assert_array_equal(cat_states, np.concatenate(states))


def test_posteriors_and_likelihood_with_masked_tokens(tiny):
    true, est = tiny
    seqs = _masked_sequences(true)
    posteriors = est.predict_proba(seqs)
    log_likelihood = est.score_samples(seqs)
    for i, seq in enumerate(seqs):
        np.testing.assert_allclose(
            posteriors[i], _brute_posteriors(est.model_, seq), atol=1e-10
        )
        expected = np.log(_brute_likelihood(est.model_, seq))
        assert abs(log_likelihood[i] - expected) <= 1e-10
    n_observed = sum(len(s) for s in seqs) - sum(len(m) for m in MASKED_AT)
    np.testing.assert_allclose(
        est.score(seqs), log_likelihood.sum() / n_observed, rtol=1e-12
    )


def test_trailing_masked_tokens_are_padding_in_arrays_only(tiny):
    # In a padded array the trailing masks are padding (state -1, no term);
    # in a list they belong to the sequence, crossed by the best path.
    true, est = tiny
    (seq,) = _mask(_sequences(true, [5], seed=20), [(1, 4)])
    log_prob, (path,) = est.decode([seq])
    ref_log_prob, ref_path = _brute_viterbi(est.model_, seq)
    assert abs(log_prob - ref_log_prob) <= 1e-10
    np.testing.assert_array_equal(path, ref_path)

    log_prob, states = est.decode(pad_sequences([seq]))
    ref_log_prob, ref_path = _brute_viterbi(est.model_, seq[:4])
    assert abs(log_prob - ref_log_prob) <= 1e-10
    np.testing.assert_array_equal(states[0], list(ref_path) + [-1])


def _task_windows(true, seed):
    """Windows of 4 tokens: one complete, then each position masked in turn."""
    X = true.sample(5, 4, random_state=seed)
    if X.ndim == 2:
        X[np.arange(1, 5), np.arange(4)] = -1
    else:
        X[np.arange(1, 5), np.arange(4)] = np.nan
    return X


def _brute_transform(model, task, row):
    """P(h at the first target | the task's observed tokens of the row)."""
    kept = _mask(
        [row[: task.span]], [set(range(task.span)) - {p - 1 for p in task.observed}]
    )
    gamma = _brute_posteriors(model, kept[0])
    return gamma[task.targets[0][0] - 1]


@pytest.mark.parametrize("task", ["1->2*3", "2->1*3", "1,3->2", "1->2"])
def test_transform_of_masked_windows_categorical(task):
    true = make_categorical_hmm(2, 3, random_state=0)
    est = _fit(
        MaskedCategoricalHMM(2, task=task, random_state=0),
        true.sample(3000, 4, random_state=0),
    )
    X = _task_windows(true, seed=1)
    features = est.transform(X)
    assert features.shape == (len(X), 2)
    for row, feature in zip(X, features, strict=True):
        expected = _brute_transform(est.model_, est.task_, row)
        np.testing.assert_allclose(feature, expected, atol=1e-10)


def test_transform_of_masked_windows_gaussian():
    true = make_gaussian_hmm(2, 2, covariance_type="diag", random_state=0)
    est = _fit(
        MaskedGaussianHMM(2, covariance_type="diag", random_state=0),
        true.sample(3000, 4, random_state=0),
    )
    X = _task_windows(true, seed=1)
    features = est.transform(X)
    for row, feature in zip(X, features, strict=True):
        expected = _brute_transform(est.model_, est.task_, row)
        np.testing.assert_allclose(feature, expected, atol=1e-10)


def test_transform_uses_only_the_tasks_observed_positions():
    # task "1->2" on [x0, -1, x2]: only x0 counts, x2 changes nothing
    true = make_categorical_hmm(2, 3, random_state=0)
    est = _fit(
        MaskedCategoricalHMM(2, task="1->2", random_state=0),
        true.sample(3000, 3, random_state=0),
    )
    X = np.array([[0, -1, 0], [0, -1, 1], [0, -1, 2], [0, -1, -1]])
    features = est.transform(X)
    np.testing.assert_allclose(features, features[[0, 0, 0, 0]], atol=1e-15)
    expected = _brute_posteriors(est.model_, np.array([0, -1]))[1]
    np.testing.assert_allclose(features[0], expected, atol=1e-10)


# -- 3. the input forms agree ------------------------------------------------
def test_forms_give_the_same_states_and_posteriors(fitted):
    true, est = fitted
    lengths = [3, 11, 6, 20]
    seqs = _sequences(true, lengths, seed=30)
    padded, concat = pad_sequences(seqs), _concat(seqs)
    assert padded.shape[:2] == (4, 20)
    for algorithm in ("viterbi", "map"):
        lp_list, st_list = est.decode(seqs, algorithm=algorithm)
        lp_pad, st_pad = est.decode(padded, algorithm=algorithm)
        lp_cat, st_cat = est.decode(concat, lengths=lengths, algorithm=algorithm)
        assert isinstance(st_list, list)
        assert st_pad.shape == (4, 20)
        assert st_cat.shape == (sum(lengths),)
        np.testing.assert_allclose([lp_pad, lp_cat], lp_list, rtol=1e-12)
        np.testing.assert_array_equal(np.concatenate(st_list), st_cat)
        for i, n in enumerate(lengths):
            np.testing.assert_array_equal(st_pad[i, :n], st_list[i])
            assert np.all(st_pad[i, n:] == -1)

    pp_list = est.predict_proba(seqs)
    pp_pad = est.predict_proba(padded)
    pp_cat = est.predict_proba(concat, lengths=lengths)
    assert pp_pad.shape == (4, 20, est.n_components)
    assert [p.shape for p in pp_list] == [(n, est.n_components) for n in lengths]
    np.testing.assert_allclose(np.concatenate(pp_list), pp_cat, atol=1e-12)
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(pp_pad[i, :n], pp_list[i], atol=1e-12)
    # padding is masking: its rows are predictive distributions
    np.testing.assert_allclose(pp_pad.sum(axis=2), 1.0, atol=1e-12)

    for method in ("score_samples", "transform"):
        ref = getattr(est, method)(seqs)
        np.testing.assert_allclose(getattr(est, method)(padded), ref, rtol=1e-12)
        np.testing.assert_allclose(
            getattr(est, method)(concat, lengths=lengths), ref, rtol=1e-12
        )


# -- 4. sampling --------------------------------------------------------------
def test_sample_shapes_and_reproducibility(fitted):
    _, est = fitted
    X, states = est.sample(20_000, random_state=0)
    d = 1 if isinstance(est, MaskedCategoricalHMM) else est.n_token_features_
    assert X.shape == (20_000, d)
    assert states.shape == (20_000,)
    assert X.dtype.kind == ("i" if d == 1 else "f")
    X2, states2 = est.sample(20_000, random_state=0)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(states, states2)
    assert not np.array_equal(est.sample(20_000, random_state=1)[1], states)
    # random_state=None falls back on the estimator's (an int here)
    np.testing.assert_array_equal(est.sample(50)[0], est.sample(50)[0])
    # tokens follow the emissions of their states
    for i in range(est.n_components):
        tokens = X[states == i]
        if d == 1:
            freq = np.bincount(tokens[:, 0], minlength=est.n_symbols_) / len(tokens)
            np.testing.assert_allclose(freq, est.emissionprob_[i], atol=0.03)
        else:
            np.testing.assert_allclose(tokens.mean(axis=0), est.means_[i], atol=0.1)


def test_fit_takes_sampled_sequences_in_two_pieces(fitted):
    _, est = fitted
    X, _ = est.sample(4000, random_state=0)
    refit = _fit(type(est)(est.n_components, random_state=0), X, lengths=[2000, 2000])
    assert np.isfinite(refit.score(X, lengths=[4000]))


def test_fit_takes_the_output_of_sample(fitted):
    _, est = fitted
    X, _ = est.sample(4000, random_state=0)
    refit = _fit(type(est)(est.n_components, random_state=0), X, lengths=[4000])
    assert np.isfinite(refit.score(X, lengths=[4000]))


# -- 5. pandas output ----------------------------------------------------------
def _window_frame():
    true = make_categorical_hmm(2, 3, self_transition=0.6, random_state=1)
    X = true.sample(3000, 4, random_state=0)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(4)])
    frame["other"] = np.arange(len(frame), dtype=float)
    return frame


def test_column_transformer_with_pandas_output():
    frame = _window_frame()
    columns = ["x0", "x1", "x2", "x3"]
    est = MaskedCategoricalHMM(2, random_state=0)
    ct = ColumnTransformer([("hmm", est, columns)], remainder="passthrough").set_output(
        transform="pandas"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = ct.fit_transform(frame)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == [
        "hmm__state0",
        "hmm__state1",
        "remainder__other",
    ]
    fitted = ct.named_transformers_["hmm"]
    np.testing.assert_array_equal(fitted.get_feature_names_out(), ["state0", "state1"])
    np.testing.assert_allclose(
        out[["hmm__state0", "hmm__state1"]].to_numpy(),
        fitted.transform(frame[columns]),
        rtol=1e-12,
    )
    np.testing.assert_array_equal(out.index, frame.index)
    again = ct.transform(frame.iloc[:10])
    assert isinstance(again, pd.DataFrame)
    np.testing.assert_allclose(again.to_numpy(), out.iloc[:10].to_numpy(), rtol=1e-12)


def test_set_config_transform_output_pandas_fit_transform():
    frame = _window_frame()[["x0", "x1", "x2", "x3"]]
    with sklearn.config_context(transform_output="pandas"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = MaskedCategoricalHMM(2, random_state=0).fit_transform(frame)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["state0", "state1"]
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)


def test_transform_honours_pandas_output():
    frame = _window_frame()[["x0", "x1", "x2", "x3"]]
    est = _fit(MaskedCategoricalHMM(2, random_state=0), frame)
    with sklearn.config_context(transform_output="pandas"):
        out = est.transform(frame)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["state0", "state1"]
    assert isinstance(est.transform(frame), np.ndarray)  # outside the context
    out = est.set_output(transform="pandas").transform(frame)
    assert isinstance(out, pd.DataFrame)
    np.testing.assert_array_equal(out.index, frame.index)


# -- 6. grid search over sequences ---------------------------------------------
def test_grid_search_over_sequences_of_unequal_lengths():
    true = make_categorical_hmm(3, 5, random_state=2)
    rng = np.random.default_rng(0)
    lengths = rng.integers(40, 400, size=36)
    seqs = _sequences(true, lengths, seed=100)
    train, held_out = seqs[:30], seqs[30:]
    groups = np.arange(len(train))
    search = GridSearchCV(
        MaskedCategoricalHMM(random_state=0),
        {"n_components": [2, 3]},
        cv=GroupKFold(3),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(train, groups=groups)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert np.isfinite(search.best_score_)
    assert search.best_params_["n_components"] in (2, 3)
    # mean log-likelihood per token: above uniform guessing over 5 symbols
    assert search.best_score_ > -np.log(5)
    score = search.score(held_out)
    assert np.isfinite(score)
    n_tokens = sum(len(s) for s in held_out)
    best = search.best_estimator_
    np.testing.assert_allclose(
        score, best.score_samples(held_out).sum() / n_tokens, rtol=1e-12
    )


# -- 7. startprob_ from sequence starts ---------------------------------------
def test_startprob_from_sequence_starts_or_stationary():
    model = CategoricalHMMModel(
        startprob=[0.9, 0.05, 0.05],
        transmat=[[0.6, 0.2, 0.2], [0.2, 0.7, 0.1], [0.2, 0.1, 0.7]],
        emissionprob=[
            [0.85, 0.05, 0.05, 0.05],
            [0.05, 0.85, 0.05, 0.05],
            [0.05, 0.05, 0.05, 0.85],
        ],
    )
    stationary = model.stationary_distribution()
    assert np.abs(stationary - model.startprob_).max() > 0.5
    X = model.sample(10_000, 20, random_state=0)

    est = _fit(MaskedCategoricalHMM(3, random_state=0), list(X))
    perm = align_states(model, est)
    # measured: max error 0.0096 (10000 sequence starts)
    assert np.abs(est.startprob_[perm] - model.startprob_).max() < 0.03
    assert np.abs(est.get_stationary_distribution()[perm] - stationary).max() < 0.03

    windows = _fit(MaskedCategoricalHMM(3, random_state=0), X)
    np.testing.assert_allclose(
        windows.startprob_, windows.get_stationary_distribution(), atol=1e-8
    )
    perm = align_states(model, windows)
    assert np.abs(windows.startprob_[perm] - stationary).max() < 0.03

    # hmmlearn's concatenated form estimates it from the starts as well
    concat = _fit(
        MaskedCategoricalHMM(3, random_state=0),
        X.reshape(-1, 1),
        lengths=[20] * 10_000,
    )
    np.testing.assert_allclose(concat.startprob_, est.startprob_, atol=1e-12)


# -- 8. lengths is a keyword; y per sequence is accepted -----------------------
@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_positional_lengths_raise(kind):
    if kind == "categorical":
        true, est = make_categorical_hmm(2, 3, random_state=0), MaskedCategoricalHMM()
    else:
        true, est = make_gaussian_hmm(2, 3, random_state=0), MaskedGaussianHMM()
    lengths = [50, 70, 40]
    X = _concat(_sequences(true, lengths))
    with pytest.raises(ValueError, match="lengths="):
        est.fit(X, lengths)
    with pytest.raises(ValueError, match="lengths="):
        est.partial_fit(X, lengths)
    assert not hasattr(est, "statistics_")
    # one target per sequence (as a Pipeline passes) is accepted and ignored
    est = _fit(est, X, y=np.array([0, 1, 0]), lengths=lengths)
    assert np.isfinite(est.score(X, lengths=lengths))


def test_y_with_one_entry_per_sequence_is_accepted():
    true = make_categorical_hmm(2, 3, random_state=0)
    lengths = [50, 70, 40, 90]
    seqs = _sequences(true, lengths)
    labels = np.array([0, 1, 0, 1])
    a = _fit(MaskedCategoricalHMM(random_state=0), seqs, y=labels)
    b = _fit(
        MaskedCategoricalHMM(random_state=0), _concat(seqs), y=labels, lengths=lengths
    )
    c = _fit(MaskedCategoricalHMM(random_state=0), seqs)
    np.testing.assert_array_equal(a.transmat_, c.transmat_)
    np.testing.assert_array_equal(b.transmat_, c.transmat_)

    # labels of windows in a Pipeline
    X = true.sample(2000, 4, random_state=0)
    y = (X[:, 1] == 0).astype(int)
    pipe = Pipeline(
        [
            ("hmm", MaskedCategoricalHMM(2, random_state=0)),
            ("clf", LogisticRegression()),
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.fit(X, y)
    assert pipe.predict_proba(X).shape == (2000, 2)
