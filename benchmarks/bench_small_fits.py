"""Small fits, as a grid search runs dozens of them: masked versus hmmlearn.

For ``--seeds`` categorical models (k=4, d=12, ``benchmark_model``) and
2e5 training tokens (400 sequences of 500), prints per seed the fit time of
``MaskedCategoricalHMM(4)`` (tensor route, task "1->2*3") and of hmmlearn's
``CategoricalHMM`` with 2 random restarts of at most 100 iterations
(``implementation="scaling"``, one process, the best training likelihood
kept), their max-abs recovery errors (states aligned) and held-out
log-likelihoods per token on 2e5 fresh tokens, then the medians and the time
ratio hmmlearn / masked. The masked time is the median of 3 fits.

Run: python benchmarks/bench_small_fits.py [--seeds 3] [--tokens 2e5]
"""

import argparse
import logging
import time

import numpy as np
from _common import benchmark_model, print_header

from sk_maskid import MaskedCategoricalHMM
from sk_maskid.metrics import recovery_error

LENGTH = 500


def _hmmlearn(X, seed):
    from hmmlearn import hmm

    best = None
    for restart in range(2):
        model = hmm.CategoricalHMM(
            4,
            n_features=12,
            n_iter=100,
            implementation="scaling",
            random_state=100 * seed + restart,
        )
        model.fit(X.reshape(-1, 1), [X.shape[1]] * X.shape[0])
        score = model.score(X.reshape(-1, 1), [X.shape[1]] * X.shape[0])
        if best is None or score > best[0]:
            best = (score, model)
    return best[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tokens", type=float, default=2e5)
    args = parser.parse_args(argv)
    logging.getLogger("hmmlearn").setLevel(logging.ERROR)
    print_header(
        f"{'seed':>4}  {'method':<10}{'fit time s':>12}{'emission err':>14}",
        f"{'transmat err':>14}{'held-out ll/tok':>17}",
    )
    rows = {"masked": [], "hmmlearn": []}
    for seed in range(args.seeds):
        truth = benchmark_model("categorical", seed)
        X = truth.sample(int(args.tokens) // LENGTH, LENGTH, random_state=seed)
        test = truth.sample(int(2e5) // LENGTH, LENGTH, random_state=seed + 1000)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            est = MaskedCategoricalHMM(4, random_state=0).fit(X)
            times.append(time.perf_counter() - start)
        masked = (np.median(times), est.model_)
        start = time.perf_counter()
        ref = _hmmlearn(X, seed)
        baseline = (time.perf_counter() - start, ref)
        for name, (elapsed, model) in (("masked", masked), ("hmmlearn", baseline)):
            err = recovery_error(truth, model)
            if name == "masked":
                held_out = model.score(test)
            else:  # hmmlearn: total log-likelihood of the concatenated tokens
                lengths = [LENGTH] * len(test)
                held_out = model.score(test.reshape(-1, 1), lengths) / test.size
            row = (elapsed, err["emission"], err["transmat"], held_out)
            rows[name].append(row)
            print(
                f"{seed:>4}  {name:<10}{row[0]:>12.3f}{row[1]:>14.4f}{row[2]:>14.4f}"
                f"{row[3]:>17.5f}",
                flush=True,
            )
    print()
    for name, values in rows.items():
        med = np.median(np.array(values), axis=0)
        print(
            f"{'med':>4}  {name:<10}{med[0]:>12.3f}{med[1]:>14.4f}{med[2]:>14.4f}"
            f"{med[3]:>17.5f}"
        )
    ratio = np.median([b[0] / m[0] for m, b in zip(*rows.values(), strict=True)])
    print(f"\ntime ratio hmmlearn / masked (median over seeds): {ratio:.0f}x")


if __name__ == "__main__":
    main()
