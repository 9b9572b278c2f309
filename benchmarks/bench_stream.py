"""Streaming fit: 1e8 tokens through ``partial_fit`` in bounded memory.

Windows are generated chunk by chunk from the package's own sampler (nothing
is held but the current chunk and the additive statistics) and fed to
``partial_fit``. Prints, per emission type, the tokens seen, wall time (the
sampling included), peak resident memory of the process and the max-abs
recovery errors after the last chunk. Models: categorical k=4, d=12 and
Gaussian k=3, d=6 (sigma=1), task "1->2*3", windows of 5 tokens.

Run: python benchmarks/bench_stream.py [--tokens 1e8] [--chunk 1e7] [--seed 0]
(the default chunk gives 10 chunks; the table in docs/comparison.rst was
measured with --chunk 2e6, 50 chunks).
"""

import argparse
import resource
import time

from _common import benchmark_model, print_header

from sk_maskid import MaskedCategoricalHMM, MaskedGaussianHMM
from sk_maskid.metrics import recovery_error

WINDOW = 5


def _peak_rss_mib():
    # ru_maxrss is in KiB on Linux: the high-water mark of the whole process
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=float, default=1e8)
    parser.add_argument("--chunk", type=float, default=1e7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--emissions", nargs="+", default=["categorical", "gaussian"])
    args = parser.parse_args(argv)
    n_chunks = int(round(args.tokens / args.chunk))
    windows = int(args.chunk) // WINDOW
    print_header(
        f"{'emission':<12}{'tokens':>8}{'chunks':>8}{'time s':>9}",
        f"{'peak RSS MiB':>14}{'err emis':>10}{'err trans':>11}",
    )
    for emission in args.emissions:
        model = benchmark_model(emission, args.seed)
        if emission == "categorical":
            est = MaskedCategoricalHMM(4, n_features=12, random_state=0)
        else:
            est = MaskedGaussianHMM(3, random_state=0)
        start = time.perf_counter()
        for i in range(n_chunks):
            X = model.sample(windows, WINDOW, random_state=args.seed * 10**6 + i)
            est.partial_fit(X)
            del X
        elapsed = time.perf_counter() - start
        err = recovery_error(model, est)
        print(
            f"{emission:<12}{n_chunks * windows * WINDOW:>8.0e}{n_chunks:>8}"
            f"{elapsed:>9.1f}{_peak_rss_mib():>14.0f}{err['emission']:>10.4f}"
            f"{err['transmat']:>11.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
