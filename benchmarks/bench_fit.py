"""Fit time and recovery error of the masked estimators versus data size.

Prints one row per (emission, tokens): time to accumulate the statistics,
time to extract the HMM, total, and max-abs recovery errors. Models:
categorical k=4, d=12 and Gaussian k=3, d=6 (sigma=1), task "1->2*3",
windows of 5 tokens, seeds 0..(n_seeds-1); the median over seeds is shown.

Run: python benchmarks/bench_fit.py [--n-seeds 3] [--sizes 1e5 1e6 1e7]
"""

import argparse
import time

import numpy as np
from _common import benchmark_model, print_header

from sk_maskid import MaskedCategoricalHMM, MaskedGaussianHMM
from sk_maskid._statistics import categorical_counts, gaussian_moments
from sk_maskid.metrics import recovery_error

WINDOW = 5


def _run(emission, n_tokens, seed):
    model = benchmark_model(emission, seed)
    if emission == "categorical":
        est = MaskedCategoricalHMM(4, n_features=12, random_state=0)
    else:
        est = MaskedGaussianHMM(3, random_state=0)
    X = model.sample(int(n_tokens) // WINDOW, WINDOW, random_state=seed)
    start = time.perf_counter()
    est.fit(X)
    total = time.perf_counter() - start
    # the statistics alone, timed on their own (the rest of fit is extraction)
    start = time.perf_counter()
    if emission == "categorical":
        categorical_counts(X, (1, 2, 3), 12)
    else:
        gaussian_moments(X, (1, 2, 3))
    stats = time.perf_counter() - start
    errors = recovery_error(model, est)
    return stats, total - stats, total, errors["emission"], errors["transmat"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-seeds", type=int, default=3)
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e5, 1e6, 1e7])
    args = parser.parse_args(argv)
    print_header(
        f"{'emission':<12}{'tokens':>10}{'stats s':>10}{'extract s':>11}",
        f"{'total s':>10}{'err emis':>10}{'err trans':>11}",
    )
    for emission in ("categorical", "gaussian"):
        for n_tokens in args.sizes:
            rows = np.array([_run(emission, n_tokens, s) for s in range(args.n_seeds)])
            med = np.median(rows, axis=0)
            print(
                f"{emission:<12}{n_tokens:>10.0e}{med[0]:>10.2f}{med[1]:>11.2f}"
                f"{med[2]:>10.2f}{med[3]:>10.4f}{med[4]:>11.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
