"""The Gaussian posterior form ("1->2") at scale: recovery, time and memory.

For each number of training tokens and ``--seeds`` Gaussian models
(``benchmark_model("gaussian", seed)``: k=3, d=6), fits
``MaskedGaussianHMM(3, task="1->2", random_state=0)`` on sequences of 500
tokens in a fresh process (so peak memory is the fit's own) and prints the
median over seeds of the max-abs means and transition errors (states aligned),
the median fit time and the largest peak resident memory of a fitting process.
The starts run on at most 1e5 token pairs; the best then continues on all of
them, chunk by chunk.

Run: python benchmarks/bench_posterior.py [--seeds 5] [--sizes 1e5 1e6 1e7]
"""

import argparse
import json
import subprocess
import sys

import numpy as np
from _common import print_header

LENGTH = 500

_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {here!r})
from _common import benchmark_model
from sk_maskid import MaskedGaussianHMM
from sk_maskid.metrics import recovery_error
seed, n_tokens = {seed}, {n_tokens}
truth = benchmark_model("gaussian", seed)
X = truth.sample(n_tokens // {length}, {length}, random_state=seed)
start = time.perf_counter()
est = MaskedGaussianHMM(3, task="1->2", random_state=0).fit(X)
elapsed = time.perf_counter() - start
err = recovery_error(truth, est)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps([err["emission"], err["transmat"], elapsed, peak, X.nbytes / 2**20]))
"""


def _fit(seed, n_tokens):
    here = sys.path[0]
    code = _CHILD.format(here=here, seed=seed, n_tokens=int(n_tokens), length=LENGTH)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e5, 1e6, 1e7])
    args = parser.parse_args(argv)
    print_header(
        f"{'tokens':>10}{'means err':>12}{'transmat err':>14}{'fit time s':>12}",
        f"{'peak RSS MiB':>14}{'data MiB':>10}",
    )
    for n_tokens in args.sizes:
        rows = np.array([_fit(seed, n_tokens) for seed in range(args.seeds)])
        med = np.median(rows, axis=0)
        print(
            f"{n_tokens:>10.0e}{med[0]:>12.4f}{med[1]:>14.4f}{med[2]:>12.2f}"
            f"{rows[:, 3].max():>14.0f}{rows[0, 4]:>10.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
