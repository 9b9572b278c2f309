"""Masked estimators versus hmmlearn's EM: time, iterations, errors, held-out fit.

For a categorical (k=4, d=12) and a Gaussian (k=3, d=6, sigma=1) model and
each number of training tokens, prints one row per method:

* ``hmmlearn``: best of ``--restarts`` random restarts, ``implementation=
  "scaling"``, ``n_iter=500``, ``tol=1e-4`` (the fair-baseline protocol of
  the documentation's Theory page, section "Evaluation");
* ``masked``: the tensor route (task "1->2*3");
* ``masked+em``: the same followed by ``refine="em"``.

Columns: wall time (s), iterations (EM iterations of the kept restart, or of
the refinement), max-abs recovery errors (states aligned) and held-out mean
log-likelihood per token on 2e5 fresh tokens. Medians over ``--runs`` seeds.
Sequences have ``--window`` tokens (default 500: hmmlearn pays a Python-level
cost per sequence, so short windows would make it look slower than it is;
the masked estimators use every sub-window either way). Sizes above
``--baseline-max`` skip hmmlearn. hmmlearn's restarts run in ``--n-jobs``
processes (default 2, so the whole table fits in 30 minutes on 2 cores): its
time column is wall time, which favours the baseline over the single-process
masked estimators.

Run: python benchmarks/compare_hmmlearn.py [--runs 3] [--sizes 1e4 1e5 1e6 1e7]
"""

import argparse
import time
import warnings

import numpy as np
from _common import benchmark_model, print_header

from sk_maskid import MaskedCategoricalHMM, MaskedGaussianHMM
from sk_maskid.baselines import HMMLearnBaseline
from sk_maskid.metrics import recovery_error

HELD_OUT = 200_000


def _methods(emission, restarts, n_jobs):
    if emission == "categorical":
        return {
            "hmmlearn": lambda s: HMMLearnBaseline(
                4, n_restarts=restarts, n_jobs=n_jobs, random_state=s
            ),
            "masked": lambda s: MaskedCategoricalHMM(4, n_features=12, random_state=s),
            "masked+em": lambda s: MaskedCategoricalHMM(
                4, n_features=12, refine="em", random_state=s
            ),
        }
    return {
        "hmmlearn": lambda s: HMMLearnBaseline(
            3, emission="gaussian", n_restarts=restarts, n_jobs=n_jobs, random_state=s
        ),
        "masked": lambda s: MaskedGaussianHMM(3, random_state=s),
        "masked+em": lambda s: MaskedGaussianHMM(3, refine="em", random_state=s),
    }


def _iterations(est):
    if isinstance(est, HMMLearnBaseline):
        return est.n_iter_
    return est.n_iter_


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e4, 1e5, 1e6, 1e7])
    parser.add_argument("--baseline-max", type=float, default=1e6)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--emissions", nargs="+", default=["categorical", "gaussian"])
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args(argv)
    print_header(
        f"{'emission':<12}{'tokens':>8}  {'method':<10}{'time s':>9}{'iters':>7}",
        f"{'err emis':>10}{'err trans':>11}{'held-out ll':>13}",
    )
    for emission in args.emissions:
        for n_tokens in args.sizes:
            for name, make in _methods(emission, args.restarts, args.n_jobs).items():
                if name == "hmmlearn" and n_tokens > args.baseline_max:
                    continue
                rows = []
                for seed in range(args.runs):
                    model = benchmark_model(emission, seed)
                    window = min(args.window, int(n_tokens) // 2)
                    X = model.sample(int(n_tokens) // window, window, random_state=seed)
                    test = model.sample(
                        HELD_OUT // args.window, args.window, random_state=10_000 + seed
                    )
                    est = make(seed)
                    start = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        est.fit(X)
                    elapsed = time.perf_counter() - start
                    err = recovery_error(model, est)
                    rows.append(
                        [
                            elapsed,
                            _iterations(est),
                            err["emission"],
                            err["transmat"],
                            est.score(test),
                        ]
                    )
                med = np.median(np.array(rows, dtype=float), axis=0)
                print(
                    f"{emission:<12}{n_tokens:>8.0e}  {name:<10}{med[0]:>9.2f}"
                    f"{med[1]:>7.0f}{med[2]:>10.4f}{med[3]:>11.4f}{med[4]:>13.4f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
