"""Dask: 1e9 categorical tokens made and reduced on the workers of a LocalCluster.

The windows are a ``dask.array`` whose blocks are drawn on the workers by the
package's own sampler, seeded per block, so no process ever holds the data:
each worker makes a block, adds its statistics, and drops it. For 1 and 2
workers (one thread each) it prints the tensor route's fit (task "1->2*3",
windows of 5 tokens, benchmark model k=4, d=12) on ``--tokens`` tokens, then
the EM refinement (``refine="em"``, one start, ``--refine-iter`` E-steps) on
``--refine-tokens`` tokens, whose blocks are made again at every E-step:
wall time, throughput, peak resident memory per worker and the max-abs
recovery errors of the transition and emission matrices. The refinement's
throughput is per E-step: tokens times E-steps over the time the refinement
added to the tensor fit of the same data.

Each run has a fresh cluster, so the peak memory is that run's. The EM rows
follow a tensor row on the same data (the time EM adds is measured against
it); their blocks are smaller (``--refine-block-tokens``) so that both
workers have blocks to share.

Run: python benchmarks/bench_dask.py [--tokens 1e9] [--refine-tokens 1e7]
[--refine-iter 10] [--block-tokens 5e6] [--refine-block-tokens 1e6]
[--workers 1 2] [--seed 0]   (a smoke run: --tokens 2e7 --refine-tokens 2e6).
"""

import argparse
import resource
import time
import warnings

import dask.array as da
import numpy as np
from _common import benchmark_model, print_header
from distributed import Client, LocalCluster
from sklearn.exceptions import ConvergenceWarning

from sk_maskid import MaskedCategoricalHMM
from sk_maskid.metrics import recovery_error

WINDOW = 5


def _block(model, seed, rows, block_id=None):
    """One block of windows, drawn where it is computed (seeded by its index)."""
    i = block_id[0]
    state = np.random.SeedSequence([seed, i]).generate_state(1)[0]
    return model.sample(rows[i], WINDOW, random_state=int(state))


def lazy_windows(model, n_tokens, block_tokens, seed):
    """A Dask array of ``n_tokens`` tokens in windows, made block by block."""
    n_rows = int(n_tokens) // WINDOW
    per_block = max(1, int(block_tokens) // WINDOW)
    rows = [per_block] * (n_rows // per_block)
    if n_rows % per_block:
        rows.append(n_rows % per_block)
    return da.map_blocks(
        _block,
        model,
        seed,
        rows,
        chunks=(tuple(rows), (WINDOW,)),
        meta=np.empty((0, 0), dtype=np.intp),
    )


def _peak_rss_mib():
    # ru_maxrss is in KiB on Linux: the high-water mark of the worker process
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fit(X, true, **options):
    est = MaskedCategoricalHMM(4, n_features=12, random_state=0, **options)
    start = time.perf_counter()
    with warnings.catch_warnings():
        # the fixed number of E-steps is the point, not a convergence failure
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X)
    seconds = time.perf_counter() - start
    errors = recovery_error(true, est)
    return est, seconds, errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=float, default=1e9)
    parser.add_argument("--refine-tokens", type=float, default=1e7)
    parser.add_argument("--refine-iter", type=int, default=10)
    parser.add_argument("--block-tokens", type=float, default=5e6)
    parser.add_argument("--refine-block-tokens", type=float, default=1e6)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    true = benchmark_model("categorical", args.seed)
    print_header(
        f"{'workers':>8}",
        f"{'route':>8}",
        f"{'tokens':>10}",
        f"{'E-steps':>8}",
        f"{'wall s':>9}",
        f"{'tokens/s':>11}",
        f"{'peak MiB/worker':>16}",
        f"{'err T':>9}",
        f"{'err O':>9}",
    )
    runs = [("tensor", args.tokens, args.block_tokens, {})]
    if args.refine_tokens > 0:
        em = dict(
            refine="em",
            refine_starts=1,
            refine_iter=args.refine_iter,
            refine_tol=0.0,  # a fixed number of E-steps
        )
        block = args.refine_block_tokens
        runs += [
            ("tensor", args.refine_tokens, block, {}),
            ("em", args.refine_tokens, block, em),
        ]
    for n_workers in args.workers:
        base = None
        for route, tokens, block_tokens, options in runs:
            # a fresh cluster per run: its peak memory is this run's
            with (
                LocalCluster(
                    n_workers=n_workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=40,
                ) as cluster,
                Client(cluster) as client,
            ):
                X = lazy_windows(true, tokens, block_tokens, args.seed)
                est, seconds, errors = _fit(X, true, **options)
                peak = max(client.run(_peak_rss_mib).values())
            if route == "em":
                # per E-step: the time the refinement added to the tensor fit
                throughput = tokens * est.n_iter_ / (seconds - base)
            else:
                throughput, base = tokens / seconds, seconds
            print(
                f"{n_workers:>8}{route:>8}{tokens:>10.2g}{est.n_iter_:>8}"
                f"{seconds:>9.1f}{throughput:>11.3g}{peak:>16.0f}"
                f"{errors['transmat']:>9.4f}{errors['emission']:>9.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
