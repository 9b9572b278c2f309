"""Dask arrays: the same fits as in memory, and the data never at the client."""

import builtins
import subprocess
import sys
import threading

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

from sk_maskid import (  # noqa: E402 - after the importorskip
    MaskedCategoricalHMM,
    MaskedGaussianHMM,
    make_categorical_hmm,
    make_gaussian_hmm,
)
from sk_maskid._statistics import reframe_gaussian_moments  # noqa: E402
from sk_maskid.refinement import baum_welch  # noqa: E402


@pytest.fixture(autouse=True)
def _synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


@pytest.fixture(scope="module")
def categorical():
    X = make_categorical_hmm(3, 6, random_state=0).sample(6000, 5, random_state=0)
    X[::7, 4] = -1  # masked tokens, and trailing ones are padding
    return X


@pytest.fixture(scope="module")
def gaussian():
    return make_gaussian_hmm(3, 3, random_state=2).sample(2000, 6, random_state=2)


def _params(est):
    emission = est.emissionprob_ if hasattr(est, "emissionprob_") else est.means_
    return [est.startprob_, est.transmat_, emission]


def _assert_same_parameters(a, b, atol=1e-10):
    for left, right in zip(_params(a), _params(b), strict=True):
        np.testing.assert_allclose(left, right, rtol=0, atol=atol)


@pytest.mark.parametrize("refine", [None, "em"])
def test_categorical_fit_on_dask_equals_in_memory(categorical, refine):
    # chunked along the columns too: rechunked to whole rows
    Xd = da.from_array(categorical, chunks=(700, 2))
    # two EM starts and a loose tolerance keep the EM short (14 E-steps)
    options = dict(refine=refine, refine_starts=2, refine_tol=1e-5, random_state=0)
    a = MaskedCategoricalHMM(3, **options).fit(categorical)
    b = MaskedCategoricalHMM(3, **options).fit(Xd)
    np.testing.assert_array_equal(a.statistics_["counts"], b.statistics_["counts"])
    assert b.n_symbols_ == a.n_symbols_ == 6  # inferred by a pass over blocks
    assert b.n_features_in_ == 5
    _assert_same_parameters(a, b)
    assert b.n_iter_ == a.n_iter_
    assert b.train_score_ == pytest.approx(a.train_score_, abs=1e-10)
    if refine:
        assert a.n_iter_ > 1
        np.testing.assert_allclose(b.refine_history_, a.refine_history_, atol=1e-10)


@pytest.mark.parametrize("refine", [None, "em"])
def test_gaussian_fit_on_dask_equals_in_memory(gaussian, refine):
    Xd = da.from_array(gaussian, chunks=(300, 6, 3))
    a = MaskedGaussianHMM(3, refine=refine, random_state=0).fit(gaussian)
    b = MaskedGaussianHMM(3, refine=refine, random_state=0).fit(Xd)
    # the moments are summed in the first block's frame: compare in one frame
    same_frame = reframe_gaussian_moments(
        b.statistics_, a.statistics_["offset"], a.statistics_["scale"]
    )
    assert b.statistics_["n"] == a.statistics_["n"]
    for key in ("m3", "m_sq"):
        np.testing.assert_allclose(same_frame[key], a.statistics_[key], rtol=1e-12)
    _assert_same_parameters(a, b)
    np.testing.assert_allclose(b.covars_, a.covars_, rtol=1e-10)
    assert b.n_iter_ == a.n_iter_


def test_gaussian_scalar_tokens_as_2d_dask_array():
    X = make_gaussian_hmm(2, 2, random_state=1).sample(3000, 4, random_state=1)[..., 0]
    a = MaskedGaussianHMM(2, random_state=0).fit(X)
    b = MaskedGaussianHMM(2, random_state=0).fit(da.from_array(X, chunks=(500, 4)))
    assert b.n_token_features_ == 1
    _assert_same_parameters(a, b)


def test_partial_fit_with_dask_chunks_equals_fit(categorical):
    whole = MaskedCategoricalHMM(3, n_features=6, random_state=0).fit(categorical)
    est = MaskedCategoricalHMM(3, n_features=6, random_state=0)
    est.partial_fit(da.from_array(categorical[:2500], chunks=1000))
    est.partial_fit(categorical[2500:4000])  # dask and in-memory chunks mix
    est.partial_fit(da.from_array(categorical[4000:], chunks=600))
    np.testing.assert_array_equal(
        est.statistics_["counts"], whole.statistics_["counts"]
    )
    _assert_same_parameters(whole, est)

    g = make_gaussian_hmm(2, 2, random_state=3).sample(1500, 5, random_state=3)
    whole = MaskedGaussianHMM(2, random_state=0).fit(g)
    est = MaskedGaussianHMM(2, random_state=0)
    est.partial_fit(da.from_array(g[:700], chunks=200)).partial_fit(g[700:])
    _assert_same_parameters(whole, est)


def test_baum_welch_on_dask_equals_in_memory(categorical):
    true = make_categorical_hmm(3, 6, random_state=0)
    start = make_categorical_hmm(3, 6, random_state=5)
    lengths = np.full(len(categorical), 5)
    a = baum_welch(start, categorical, lengths=lengths, n_iter=30, tol=0)
    Xd = da.from_array(categorical, chunks=900)
    b = baum_welch(start, Xd, lengths=da.from_array(lengths, chunks=2000), n_iter=30)
    assert a.n_iter == b.n_iter == 30
    np.testing.assert_allclose(b.model.transmat_, a.model.transmat_, atol=1e-10)
    np.testing.assert_allclose(b.model.emissionprob_, a.model.emissionprob_, atol=1e-10)
    assert a.model.transmat_.shape == true.transmat_.shape
    with pytest.raises(TypeError, match="1-D dask array"):
        baum_welch(start, Xd, lengths=lengths)


def test_inference_on_dask_is_lazy_and_equal(categorical, gaussian):
    est = MaskedCategoricalHMM(3, random_state=0).fit(categorical)
    Xd = da.from_array(categorical, chunks=1000)
    for method, shape in [
        ("transform", (6000, 3)),
        ("score_samples", (6000,)),
        ("predict_proba", (6000, 5, 3)),
    ]:
        lazy = getattr(est, method)(Xd)
        assert isinstance(lazy, da.Array) and lazy.shape == shape
        assert lazy.chunks[0] == Xd.chunks[0]  # one result block per block
        np.testing.assert_allclose(
            lazy.compute(), getattr(est, method)(categorical), rtol=1e-12
        )
    score = est.score(Xd)
    assert isinstance(score, float)
    assert score == pytest.approx(est.score(categorical), rel=1e-12)

    g = MaskedGaussianHMM(3, random_state=0).fit(gaussian)
    Gd = da.from_array(gaussian, chunks=(500, 6, 3))
    np.testing.assert_allclose(
        g.predict_proba(Gd).compute(), g.predict_proba(gaussian), rtol=1e-12
    )
    assert g.score(Gd) == pytest.approx(g.score(gaussian), rel=1e-12)
    with pytest.raises(TypeError, match="does not take a dask array"):
        est.decode(Xd)


# Where each block of the lazily made array was computed: module-level, so
# that the in-process workers append here, not to a pickled copy.
_BLOCK_THREADS = []
_BLOCK_MODEL = make_categorical_hmm(3, 5, random_state=2)


def _make_block(block_id=None):
    _BLOCK_THREADS.append(threading.current_thread() is threading.main_thread())
    return _BLOCK_MODEL.sample(2000, 4, random_state=block_id[0])


class _NoClientArray(da.Array):
    """A dask array that refuses to be computed or converted as a whole."""

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole array was converted on the client")

    def compute(self, *args, **kwargs):
        raise AssertionError("the whole array was computed on the client")

    def __dask_postcompute__(self):
        raise AssertionError("the whole array was computed on the client")


def test_the_client_never_materialises_the_data():
    distributed = pytest.importorskip("distributed")
    n_blocks = 6
    lazy = da.map_blocks(
        _make_block,
        chunks=((2000,) * n_blocks, (4,)),
        meta=np.empty((0, 0), dtype=np.intp),
    )
    X = _NoClientArray(lazy.dask, lazy.name, lazy.chunks, meta=lazy._meta)
    with pytest.raises(AssertionError, match="whole array"):
        np.asarray(X)  # the guard works
    in_memory = np.concatenate(
        [_BLOCK_MODEL.sample(2000, 4, random_state=i) for i in range(n_blocks)]
    )
    options = dict(
        n_features=5, refine="em", refine_starts=1, refine_tol=1e-5, random_state=0
    )
    _BLOCK_THREADS.clear()
    with (
        distributed.LocalCluster(
            n_workers=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        est = MaskedCategoricalHMM(3, **options).fit(X)
        lazy_transform = est.transform(X)
    # blocks were only ever made on the workers' threads, never the client's
    # statistics, head, sample and the E-steps: every block made many times
    assert len(_BLOCK_THREADS) > 3 * n_blocks and not any(_BLOCK_THREADS)
    reference = MaskedCategoricalHMM(3, **options).fit(in_memory)
    assert reference.n_iter_ == est.n_iter_ > 1
    np.testing.assert_array_equal(
        est.statistics_["counts"], reference.statistics_["counts"]
    )
    _assert_same_parameters(reference, est)
    assert isinstance(lazy_transform, da.Array)


def test_bad_values_surface_from_the_blocks(categorical):
    bad = categorical.astype(float)
    bad[5000, 2] = np.nan  # in a block the client never sees
    est = MaskedCategoricalHMM(3, n_features=6)
    with pytest.raises(ValueError, match="NaN"):
        est.fit(da.from_array(bad, chunks=1000))
    out_of_range = categorical.copy()
    out_of_range[5500, 1] = 9
    with pytest.raises(ValueError, match="symbol 9 out of range"):
        est.fit(da.from_array(out_of_range, chunks=1000))
    with pytest.raises(ValueError, match="lengths is not supported"):
        est.fit(da.from_array(categorical, chunks=1000), lengths=[5] * 6000)


def test_posterior_form_refuses_dask(gaussian):
    with pytest.raises(ValueError, match="posterior-form predictor"):
        MaskedGaussianHMM(3, task="1->2").fit(da.from_array(gaussian, chunks=500))


def test_missing_dask_names_the_extra(monkeypatch, categorical):
    Xd = da.from_array(categorical, chunks=1000)
    real_import = builtins.__import__

    def no_dask(name, *args, **kwargs):
        if name == "dask" or name.startswith("dask."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    with pytest.raises(ImportError, match=r"sk_maskid\[dask\]"):
        MaskedCategoricalHMM(3).fit(Xd)
    # the in-memory path does not need dask
    assert MaskedCategoricalHMM(3, random_state=0).fit(categorical).n_symbols_ == 6


def test_importing_the_package_does_not_import_dask():
    code = (
        "import sys, sk_maskid; "
        "print(any(m.split('.')[0] == 'dask' for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
