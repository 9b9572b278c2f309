"""The Gaussian posterior form ("1->2") at scale: recovery, time and memory.

For each number of training tokens and ``--seeds`` Gaussian models
(``benchmark_model("gaussian", seed)``: k=3, d=6), draws sequences of 500
tokens, saves them, and fits ``MaskedGaussianHMM(3, task="1->2",
random_state=0)`` in a fresh process that loads them (so its peak resident
memory is the data's plus the fit's, not the sampler's). Prints the median
over seeds of the max-abs means and transition errors (states aligned), the
median fit time and the largest peak resident memory of a fitting process;
``--chunks 10`` fits with ``partial_fit`` over 10 chunks instead and adds the
median max-abs difference of its means from ``fit``'s. ``--same-model``
draws every seed's sequences from the seed-0 model and adds the median
max-abs difference between the fits' means (states aligned): the
estimator's own spread from sample to sample, against its error.

The starts run L-BFGS on at most 1e5 token pairs; the best then takes Newton
steps on all of them (one pass each, chunk by chunk).

Run: python benchmarks/bench_posterior.py [--seeds 5] [--sizes 1e5 1e6 1e7]
     [--chunks 10] [--same-model]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from types import SimpleNamespace

import numpy as np
from _common import benchmark_model, print_header

from sk_maskid.metrics import align_states

LENGTH = 500

_CHILD = """
import json, sys, time
import numpy as np
sys.path.insert(0, {here!r})
from _common import benchmark_model
from sk_maskid import MaskedGaussianHMM
from sk_maskid.metrics import recovery_error
truth = benchmark_model("gaussian", {model})
X = np.load({path!r})
start = time.perf_counter()
est = MaskedGaussianHMM(3, task="1->2", random_state=0)
if {chunks} > 1:
    for part in np.array_split(X, {chunks}):
        est.partial_fit(part)
else:
    est.fit(X)
elapsed = time.perf_counter() - start
err = recovery_error(truth, est)
# VmHWM, not ru_maxrss: the latter keeps the parent's size across fork+exec
status = open("/proc/self/status").read()
peak = int(status.split("VmHWM:")[1].split()[0]) / 1024
print(json.dumps([err["emission"], err["transmat"], elapsed, peak, X.nbytes / 2**20,
                  est.means_.tolist()]))
"""


def _fit(path, model, chunks):
    here = sys.path[0]
    code = _CHILD.format(here=here, model=model, path=path, chunks=chunks)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _aligned_gap(a, b):
    """Max-abs difference of two sets of means, states aligned as the
    recovery errors are (:func:`sk_maskid.metrics.align_states`)."""
    a, b = np.asarray(a), np.asarray(b)
    perm = align_states(SimpleNamespace(means_=a), SimpleNamespace(means_=b))
    return np.abs(a - b[perm]).max()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e5, 1e6, 1e7])
    parser.add_argument("--chunks", type=int, default=1)
    parser.add_argument("--same-model", action="store_true")
    args = parser.parse_args(argv)
    extra = f"{'pf - fit':>10}" if args.chunks > 1 else ""
    extra += f"{'spread':>10}" if args.same_model else ""
    print_header(
        f"{'tokens':>10}{'means err':>12}{'transmat err':>14}{'fit time s':>12}",
        f"{'peak RSS MiB':>14}{'data MiB':>10}{extra}",
    )
    with tempfile.TemporaryDirectory() as tmp:
        for n_tokens in args.sizes:
            rows, gaps = [], []
            for seed in range(args.seeds):
                path = os.path.join(tmp, "X.npy")
                model = 0 if args.same_model else seed
                truth = benchmark_model("gaussian", model)
                X = truth.sample(int(n_tokens) // LENGTH, LENGTH, random_state=seed)
                np.save(path, X)
                del X
                rows.append(_fit(path, model, args.chunks))
                if args.chunks > 1:
                    gaps.append(_aligned_gap(rows[-1][5], _fit(path, model, 1)[5]))
            table = np.array([row[:5] for row in rows])
            med = np.median(table, axis=0)
            gap = f"{np.median(gaps):>10.4f}" if gaps else ""
            if args.same_model:
                spread = [
                    _aligned_gap(a[5], b[5])
                    for i, a in enumerate(rows)
                    for b in rows[i + 1 :]
                ]
                gap += f"{np.median(spread):>10.4f}"
            print(
                f"{n_tokens:>10.0e}{med[0]:>12.4f}{med[1]:>14.4f}{med[2]:>12.2f}"
                f"{table[:, 3].max():>14.0f}{table[0, 4]:>10.0f}{gap}",
                flush=True,
            )


if __name__ == "__main__":
    main()
