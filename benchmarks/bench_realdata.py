"""Masked estimators versus hmmlearn on real data: held-out fit and time.

On the package's real-data loaders (``load_stdlib_text``: 28-symbol
characters of docstrings; ``load_sunspots``, ``load_nile``,
``load_us_macro``: Gaussian series) and on ``co2``, the weekly changes of
the Mauna Loa CO2 series (statsmodels' public-domain data set, a
benchmark-only dependency: 2283 changes, 1958-2001, 59 missing weeks), for
each number of states ``k``, prints one row per method:

* ``masked``: ``MaskedCategoricalHMM(k, n_features=28)`` /
  ``MaskedGaussianHMM(k)``, the tensor route (task "1->2*3"; Gaussian
  tokens through features ``[x, ..., x^p, 1]`` with ``p`` chosen from k and
  d);
* ``masked+refine``: the same with ``refine="em"`` (SQUAREM-accelerated EM
  to ``refine_tol=1e-7`` per token, ``refine_iter=1000``);
* ``HMMLearnBaseline``: the package's wrapper of hmmlearn, best of
  ``--restarts`` restarts, ``n_iter=--n-iter``, run in one process;
* ``hmmlearn``: plain ``hmmlearn.hmm.CategoricalHMM`` /
  ``GaussianHMM(covariance_type="diag")``, ``implementation="scaling"``,
  random_state 0..restarts-1, fitted on the concatenated training sequences
  with ``lengths``, the best training log-likelihood kept.

Columns: held-out log-likelihood per token, fit wall time (s, one process;
a masked fit includes its identifiability diagnostic, cached per task and
size within the process), E-steps (the refinement's, also for ``masked``
when its quality check refined the read-out; or EM iterations of the kept
hmmlearn restart) and converged (the refinement's flag; for hmmlearn,
the tolerance met before ``n_iter`` ran out). Each data set starts with the
i.i.d. (1-state) model's held-out figure. Splits: the text by modules
(``GroupShuffleSplit(test_size=0.25, random_state=0)``); a series' first 80%
trains, its last 20% tests (one sequence each; co2's missing changes are
NaN for the masked estimators, which marginalise them, and cut the series
into separate sequences for hmmlearn, which cannot). A row that raises prints the
exception in place of its figures; warnings raised by a fit are listed after
the table. The last column is each model's log-likelihood per token on its own
training data. The summary gives, per data set and k, masked+refine minus
hmmlearn best-of-restarts (nats/token), the time ratio hmmlearn /
masked+refine, and whether the issue's target holds (difference >= -0.002
and ratio >= 5), and whether masked alone is at least the i.i.d. model on
the training data and held out.

Run: python benchmarks/bench_realdata.py [--datasets text sunspots nile us_macro
     co2] [--k 2 3 4] [--restarts 5] [--n-iter 500] [--quick]
``--quick`` (under a minute on 2 cores): text k in {2, 4} on ~5e4
training characters, series k=2, hmmlearn 2 restarts of at most 100
iterations. Without ``--k``, text runs k=2..8 and the series k=2..4.
"""

import argparse
import logging
import time
import warnings

import numpy as np
from _common import print_header
from sklearn.model_selection import GroupShuffleSplit

from sk_maskid import (
    MaskedCategoricalHMM,
    MaskedGaussianHMM,
    load_nile,
    load_stdlib_text,
    load_sunspots,
    load_us_macro,
)
from sk_maskid.baselines import HMMLearnBaseline

DATASETS = ("text", "sunspots", "nile", "us_macro", "co2")
SERIES = {"sunspots": load_sunspots, "nile": load_nile, "us_macro": load_us_macro}
N_SYMBOLS = 28
QUICK_TEXT_TOKENS = 50_000
TARGET_GAP = -0.002  # nats/token
TARGET_SPEEDUP = 5.0
METHODS = ("masked", "masked+refine", "HMMLearnBaseline", "hmmlearn")


def _text_split(quick):
    """Training and test sequences of the text, split by module."""
    text = load_stdlib_text()
    split = GroupShuffleSplit(n_splits=1, test_size=0.25, random_state=0)
    train_idx, test_idx = next(split.split(text.sequences, groups=text.groups))
    train = [text.sequences[i] for i in train_idx]
    test = [text.sequences[i] for i in test_idx]
    if quick:
        order = np.random.RandomState(0).permutation(len(train))
        sizes = np.cumsum([len(train[i]) for i in order])
        keep = order[: int(np.searchsorted(sizes, QUICK_TEXT_TOKENS)) + 1]
        train = [train[i] for i in np.sort(keep)]
    return train, test


def _co2_changes():
    """Weekly changes of the Mauna Loa CO2 series (ppm), NaN where missing.

    statsmodels' ``co2`` data set (public domain; a benchmark-only
    dependency): 2284 weeks, 1958-2001, 59 of them missing. A change is
    missing when either of its weeks is.
    """
    try:
        from statsmodels.datasets import co2
    except ImportError as exc:  # pragma: no cover - benchmark dependency
        raise SystemExit("the co2 data set needs statsmodels") from exc
    level = co2.load_pandas().data["co2"].to_numpy(dtype=float)
    return np.diff(level)[:, None]


def _series_split(name):
    """The first 80% of a series to train, the rest to test: one sequence each."""
    data = _co2_changes() if name == "co2" else np.asarray(SERIES[name]().data, float)
    cut = int(round(0.8 * len(data)))
    return [data[:cut]], [data[cut:]]


def _observed_segments(sequences):
    """Sequences cut at their missing (NaN) tokens: what hmmlearn can take."""
    segments = []
    for seq in sequences:
        missing = np.isnan(seq).any(axis=1) if seq.ndim > 1 else np.zeros(0, bool)
        if not missing.any():
            segments.append(seq)
            continue
        bounds = np.flatnonzero(np.diff(np.r_[True, missing, True]))
        segments += [seq[a:b] for a, b in zip(bounds[::2], bounds[1::2], strict=True)]
    return segments


def _iid_score(train, test, categorical):
    """Log-likelihood per token on test of the 1-state model fitted on train."""
    if categorical:
        counts = np.bincount(np.concatenate(train), minlength=N_SYMBOLS)
        log_p = np.log(counts / counts.sum())
        return float(log_p[np.concatenate(test)].mean())
    X, Y = np.concatenate(train), np.concatenate(test)  # one diagonal Gaussian
    X, Y = X[~np.isnan(X).any(axis=1)], Y[~np.isnan(Y).any(axis=1)]
    mean, var = X.mean(axis=0), X.var(axis=0)
    return float(
        np.mean(-0.5 * np.sum(np.log(2 * np.pi * var) + (Y - mean) ** 2 / var, axis=1))
    )


def _hmmlearn_best(k, train, test, categorical, restarts, n_iter):
    """Plain hmmlearn, best training likelihood of ``restarts`` seeds."""
    from hmmlearn import hmm

    X, lengths = np.concatenate(train), [len(s) for s in train]
    X_test, lengths_test = np.concatenate(test), [len(s) for s in test]
    if categorical:
        X, X_test = X.reshape(-1, 1), X_test.reshape(-1, 1)
    best = None
    for seed in range(restarts):
        if categorical:
            model = hmm.CategoricalHMM(
                k,
                n_features=N_SYMBOLS,
                n_iter=n_iter,
                implementation="scaling",
                random_state=seed,
            )
        else:
            model = hmm.GaussianHMM(
                k,
                covariance_type="diag",
                n_iter=n_iter,
                implementation="scaling",
                random_state=seed,
            )
        model.fit(X, lengths)
        train_ll = model.score(X, lengths) / len(X)
        if best is None or train_ll > best[0]:
            best = (train_ll, model)
    model = best[1]
    history = list(model.monitor_.history)
    converged = len(history) >= 2 and history[-1] - history[-2] < model.tol
    score = model.score(X_test, lengths_test) / len(X_test)
    return score, best[0], int(model.monitor_.iter), bool(converged)


def _run(method, k, train, test, categorical, args):
    """``(held-out ll/token, fit time s, E-steps, converged)`` of one method."""
    if method in ("hmmlearn", "HMMLearnBaseline") and not categorical:
        # hmmlearn cannot marginalise missing tokens: it gets the observed
        # stretches as separate sequences (the masked estimators take NaN)
        train, test = _observed_segments(train), _observed_segments(test)
    if method == "hmmlearn":
        start = time.perf_counter()
        score, train_ll, n_iter, converged = _hmmlearn_best(
            k, train, test, categorical, args.restarts, args.n_iter
        )
        return score, time.perf_counter() - start, n_iter, converged, train_ll
    if method == "HMMLearnBaseline":
        est = HMMLearnBaseline(
            k,
            emission="categorical" if categorical else "gaussian",
            n_restarts=args.restarts,
            n_iter=args.n_iter,
            random_state=0,
        )
    else:
        options = {}
        if method == "masked+refine":
            options = {"refine": "em", "refine_tol": 1e-7, "refine_iter": 1000}
        if categorical:
            est = MaskedCategoricalHMM(
                k, n_features=N_SYMBOLS, random_state=0, **options
            )
        else:
            est = MaskedGaussianHMM(k, random_state=0, **options)
    start = time.perf_counter()
    est.fit(train)
    elapsed = time.perf_counter() - start
    train_ll = est.score(train)
    return est.score(test), elapsed, int(est.n_iter_), bool(est.converged_), train_ll


def _observed(sequences, categorical):
    return sequences if categorical else _observed_segments(sequences)


def _row(name, k, method, cells):
    print(f"{name:<10}{k:>3}  {method:<18}{cells}", flush=True)


def _short(text, limit=240):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=DATASETS)
    parser.add_argument("--k", type=int, nargs="+", default=None)
    parser.add_argument("--restarts", type=int, default=None)
    parser.add_argument("--n-iter", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.restarts is None:
        args.restarts = 2 if args.quick else 5
    if args.n_iter is None:
        args.n_iter = 100 if args.quick else 500
    # hmmlearn logs non-monotone steps and degenerate-size notes on stderr
    logging.getLogger("hmmlearn").setLevel(logging.ERROR)

    print(
        f"hmmlearn: best of {args.restarts} restarts, n_iter={args.n_iter}"
        + (
            f"; quick: text ~{QUICK_TEXT_TOKENS:.0e} training tokens"
            if args.quick
            else ""
        ),
        flush=True,
    )
    print_header(
        f"{'dataset':<10}{'k':>3}  {'method':<18}",
        f"{'held-out ll/tok':>16}{'fit time s':>12}{'E-steps':>9}{'converged':>11}",
        f"{'train ll/tok':>14}",
    )
    results, findings, cases = {}, [], []
    for name in args.datasets:
        categorical = name == "text"
        train, test = _text_split(args.quick) if categorical else _series_split(name)
        if args.k is not None:
            ks = args.k
        elif categorical:
            ks = [2, 4] if args.quick else list(range(2, 9))
        else:
            ks = [2] if args.quick else [2, 3, 4]
        n_train = sum(len(s) for s in _observed(train, categorical))
        n_test = sum(len(s) for s in _observed(test, categorical))
        iid = _iid_score(train, test, categorical)
        iid_train = _iid_score(train, train, categorical)
        results[name, 1, "iid"] = (iid, None, iid_train)
        _row(name, 1, "iid (1 state)", f"{iid:>16.4f}{'':>32}{iid_train:>14.4f}")
        print(
            f"  ({len(train)} train seqs / {n_train} tokens, "
            f"{len(test)} test seqs / {n_test} tokens)",
            flush=True,
        )
        for k in ks:
            cases.append((name, k))
            for method in METHODS:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    try:
                        score, elapsed, n_iter, converged, train_ll = _run(
                            method, k, train, test, categorical, args
                        )
                    except Exception as exc:  # a finding, reported
                        message = f"{type(exc).__name__}: {_short(exc, 100)}"
                        _row(name, k, method, f"  error: {message}")
                        findings.append(f"[{name} k={k} {method}] raised {message}")
                        continue
                results[name, k, method] = (score, elapsed, train_ll)
                _row(
                    name,
                    k,
                    method,
                    f"{score:>16.4f}{elapsed:>12.2f}{n_iter:>9d}{str(converged):>11}"
                    f"{train_ll:>14.4f}",
                )
                seen = set()
                for w in caught:
                    text = f"{w.category.__name__}: {_short(w.message)}"
                    if text not in seen:
                        seen.add(text)
                        findings.append(f"[{name} k={k} {method}] {text}")

    print()
    print_header(
        f"{'dataset':<10}{'k':>3}  {'refine - hmmlearn':>18}{'time ratio':>12}",
        f"{'target':>8}{'masked >= iid (train/test)':>28}",
    )
    for name, k in cases:
        iid = results[name, 1, "iid"]
        masked = results.get((name, k, "masked"))
        above = "n/a"
        if masked is not None:  # on the training data / held out
            above = "/".join("yes" if masked[i] >= iid[i] else "NO" for i in (2, 0))
        refined = results.get((name, k, "masked+refine"))
        baseline = results.get((name, k, "hmmlearn"))
        if refined is None or baseline is None:
            print(f"{name:<10}{k:>3}  {'n/a':>18}{'n/a':>12}{'n/a':>8}{above:>28}")
            continue
        gap = refined[0] - baseline[0]
        ratio = baseline[1] / refined[1]
        met = "yes" if gap >= TARGET_GAP and ratio >= TARGET_SPEEDUP else "NO"
        print(f"{name:<10}{k:>3}  {gap:>+18.4f}{ratio:>12.1f}{met:>8}{above:>28}")
    print()
    print("Warnings and exceptions:" if findings else "No warning or exception.")
    for line in findings:
        print("  " + line)


if __name__ == "__main__":
    main()
