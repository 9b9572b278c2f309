import argparse
import string
import sys
import warnings
from importlib import resources

import numpy as np
import pytest
from sklearn.model_selection import GroupKFold

from sk_maskid import datasets, make_categorical_hmm, make_gaussian_hmm
from sk_maskid.datasets import (
    STDLIB_TEXT_ALPHABET,
    STDLIB_TEXT_MODULES,
    load_nile,
    load_stdlib_text,
    load_sunspots,
    load_us_macro,
)


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


# ---------------------------------------------------------------------------
# Real data: the standard-library docstring corpus and the shipped time series


def _reference_symbols(text):
    """Independent spelling of the corpus encoding, character by character."""
    out = []
    for c in " ".join(text.split()):
        if c in string.ascii_letters:
            out.append(c.lower())
        elif c == " ":
            out.append(" ")
        else:
            out.append("#")
    return "".join(out)


@pytest.fixture(scope="module")
def corpus():
    return load_stdlib_text()


def test_loaders_are_exported():
    for name in (
        "load_stdlib_text",
        "load_sunspots",
        "load_nile",
        "load_us_macro",
        "make_categorical_hmm",
        "make_gaussian_hmm",
    ):
        assert name in datasets.__all__ and callable(getattr(datasets, name))


def test_stdlib_text_is_deterministic_and_well_formed(corpus):
    again = load_stdlib_text()
    assert len(again.sequences) == len(corpus.sequences)
    for a, b in zip(corpus.sequences, again.sequences, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(corpus.groups, again.groups)
    assert corpus.names == again.names

    assert corpus.alphabet == list(STDLIB_TEXT_ALPHABET)
    assert len(corpus.alphabet) == 28 == len(set(corpus.alphabet))
    assert corpus.alphabet[:26] == list(string.ascii_lowercase)
    assert corpus.alphabet[26] == " "
    assert corpus.module_names == list(STDLIB_TEXT_MODULES)
    assert len(corpus.names) == len(corpus.sequences) == len(corpus.groups)
    assert corpus.groups.dtype == np.intp
    # Modules are read in order, and every default module contributes.
    assert np.all(np.diff(corpus.groups) >= 0)
    np.testing.assert_array_equal(
        np.unique(corpus.groups), np.arange(len(STDLIB_TEXT_MODULES))
    )
    for seq in corpus.sequences:
        assert seq.dtype == np.intp and seq.ndim == 1 and seq.size >= 20
        assert seq.min() >= 0 and seq.max() <= 27
    counts = np.bincount(np.concatenate(corpus.sequences), minlength=28)
    assert counts.size == 28 and counts.min() > 0  # every symbol occurs
    assert counts.sum() == corpus.n_tokens
    # Docstrings change between Python releases: 344162 tokens on 3.11.7.
    assert 150_000 <= corpus.n_tokens <= 600_000
    assert f"{corpus.n_tokens} tokens" in corpus.DESCR


def test_stdlib_text_decodes_the_docstrings(corpus):
    # The first sequence is argparse's module docstring.
    assert corpus.names[0] == "argparse"
    text = corpus.decode(corpus.sequences[0])
    assert text == _reference_symbols(argparse.__doc__)
    assert text.startswith("command#line parsing library this module is an optparse")
    for seq in corpus.sequences[:200]:
        np.testing.assert_array_equal(corpus.encode(corpus.decode(seq)), seq)
    assert corpus.decode(corpus.encode("Hello,\n\t World 42\u00e9 ")) == (
        "hello# world ###"
    )
    np.testing.assert_array_equal(
        corpus.encode("aZ \n#"), np.array([0, 25, 26, 27], dtype=np.intp)
    )
    assert corpus.decode(np.array([[7], [8]])) == "hi"  # an (n, 1) column
    assert corpus.decode(np.array([], dtype=int)) == ""
    with pytest.raises(ValueError, match="0..27"):
        corpus.decode([0, 28])
    with pytest.raises(ValueError, match="1-D"):
        corpus.decode(np.zeros((2, 2), dtype=int))


def test_stdlib_text_return_X_lengths(corpus):
    X, lengths = load_stdlib_text(return_X_lengths=True)
    assert X.shape == (corpus.n_tokens, 1) and X.dtype == np.intp
    assert lengths.dtype == np.intp and lengths.sum() == corpus.n_tokens
    np.testing.assert_array_equal(lengths, [len(s) for s in corpus.sequences])
    for seq, piece in zip(
        corpus.sequences, np.split(X[:, 0], np.cumsum(lengths)[:-1]), strict=True
    ):
        np.testing.assert_array_equal(seq, piece)


def test_stdlib_text_groups_split_by_module(corpus):
    cv = GroupKFold(n_splits=5)
    for train, test in cv.split(corpus.sequences, groups=corpus.groups):
        assert not set(corpus.groups[train]) & set(corpus.groups[test])


def test_stdlib_text_options():
    one = load_stdlib_text("textwrap")
    assert one.module_names == ["textwrap"] and set(one.groups) == {0}
    assert one.names[0] == "textwrap"
    assert one.decode(one.sequences[0]).startswith("text wrapping and filling")
    two = load_stdlib_text(["textwrap", "json"])
    assert two.module_names == ["textwrap", "json"]
    assert set(two.groups) == {0, 1}
    long_ = load_stdlib_text(["textwrap", "json"], min_length=500)
    assert all(len(s) >= 500 for s in long_.sequences)
    assert len(long_.sequences) < len(two.sequences)
    # Reading the corpus raises no warning, even for modules with deprecated names.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_stdlib_text(["unittest", "typing"])
    with pytest.raises(ValueError, match="duplicates"):
        load_stdlib_text(["json", "json"])
    with pytest.raises(ValueError, match="at least one module"):
        load_stdlib_text([])
    with pytest.raises(ValueError, match="min_length must be >= 1"):
        load_stdlib_text(["json"], min_length=0)
    with pytest.raises(ValueError, match="no docstring"):
        load_stdlib_text(["json"], min_length=10**9)
    with pytest.raises(ModuleNotFoundError):
        load_stdlib_text(["no_such_module_sk_maskid"])


# name, loader, shape, first and last time, first and last rows, feature names.
# The values are the published ones (Nile 1871: 1120, sunspots 1700: 5.0, ...), so a
# corrupted CSV fails.
_SERIES = {
    "sunspots": (
        load_sunspots,
        (309, 1),
        (1700, 2008),
        ([5.0], [2.9]),
        ["sunactivity"],
    ),
    "nile": (load_nile, (100, 1), (1871, 1970), ([1120.0], [740.0]), ["volume"]),
    "us_macro": (
        load_us_macro,
        (202, 2),
        (1959.25, 2009.5),
        (
            # 1959Q1 -> Q2 and 2009Q2 -> Q3 of real GDP and CPI (FRED, 2009 vintage)
            100 * np.log([2778.801 / 2710.349, 29.150 / 28.980]),
            100 * np.log([12990.341 / 12901.504, 216.385 / 214.469]),
        ),
        ["gdp_growth", "inflation"],
    ),
}


@pytest.mark.parametrize("name", list(_SERIES))
def test_series_loaders(name):
    loader, shape, (t0, t1), (first, last), features = _SERIES[name]
    bunch = loader()
    assert bunch.data.shape == shape and bunch.data.dtype == np.float64
    assert np.isfinite(bunch.data).all()
    assert bunch.feature_names == features
    assert bunch.time.shape == (shape[0],)
    assert bunch.time[0] == t0 and bunch.time[-1] == t1
    step = 0.25 if name == "us_macro" else 1
    np.testing.assert_allclose(np.diff(bunch.time), step)
    np.testing.assert_allclose(bunch.data[0], first, rtol=1e-12)
    np.testing.assert_allclose(bunch.data[-1], last, rtol=1e-12)
    assert "public domain" in bunch.DESCR.lower()
    # The shipped file itself names its source and licence.
    text = (resources.files("sk_maskid.data") / bunch.filename).read_text()
    assert text.startswith("#") and "Licence: public domain" in text
    np.testing.assert_array_equal(loader().data, bunch.data)  # deterministic


def test_series_published_summaries():
    # Whole-series checks, so a corrupted row in the middle fails too.
    nile = load_nile().data[:, 0]
    assert nile.mean() == pytest.approx(919.35)  # the textbook mean
    assert nile.min() == 456.0 and load_nile().time[nile.argmin()] == 1913
    sun = load_sunspots().data[:, 0]
    assert sun.sum() == pytest.approx(15373.4) and sun.min() == 0.0
    macro = load_us_macro()
    assert macro.time_labels[0] == "1959Q2" and macro.time_labels[-1] == "2009Q3"
    q = macro.time_labels.index("2008Q4")
    np.testing.assert_allclose(macro.data[q], [-1.38048297, -2.19790092], atol=1e-8)
    np.testing.assert_allclose(
        macro.data.sum(axis=0), [156.71286724, 201.04532916], atol=1e-7
    )


@pytest.mark.parametrize("name", list(_SERIES))
def test_series_as_frame(name, monkeypatch):
    loader, shape, _, _, features = _SERIES[name]
    with pytest.raises(TypeError, match="as_frame"):
        loader(as_frame="yes")
    try:
        import pandas as pd
    except ImportError:
        pd = None
    if pd is not None:
        bunch = loader(as_frame=True)
        assert isinstance(bunch.data, pd.DataFrame) and bunch.frame is bunch.data
        assert bunch.frame.shape == shape and list(bunch.frame.columns) == features
        np.testing.assert_array_equal(bunch.frame.to_numpy(), loader().data)
        if name == "us_macro":
            assert str(bunch.frame.index[0]) == "1959Q2"
        else:
            assert bunch.frame.index.name == "year"
            np.testing.assert_array_equal(bunch.frame.index, loader().time)
    # Without pandas: a clear error naming it.
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="requires pandas"):
        loader(as_frame=True)
    assert loader().data.shape == shape


@pytest.mark.parametrize("k", [7, 10, 20])
def test_generators_work_for_many_states(k):
    # Past k=6 the singular-value thresholds shrink like k^-1.5, as the
    # smallest singular value of a random stochastic matrix does.
    factor = (6 / k) ** 1.5
    for seed in range(3):
        cat = make_categorical_hmm(k, k + 1, random_state=seed)
        assert np.linalg.svd(cat.transmat_, compute_uv=False)[-1] >= 0.1 * factor
        assert np.linalg.svd(cat.emissionprob_, compute_uv=False)[-1] >= 0.1 * factor
        assert cat.startprob_.min() >= 0.3 / k
        gau = make_gaussian_hmm(k, k, random_state=seed)
        assert np.linalg.svd(gau.means_, compute_uv=False)[-1] >= 0.6 * factor
