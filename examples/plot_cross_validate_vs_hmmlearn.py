"""
Masked prediction versus hmmlearn, cross-validated on the same splits
=====================================================================

The masked estimator and hmmlearn's EM are both scikit-learn estimators on
windows of a sequence, so :func:`~sklearn.model_selection.cross_validate`
runs them on the same :class:`~sklearn.model_selection.GroupKFold` splits
(windows of one sequence never straddle a split) with the same scorers: the
held-out log-likelihood per token, and the recovery error against the model
that generated the data.
"""

import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GroupKFold, cross_validate

from sk_maskid import MaskedCategoricalHMM, make_categorical_hmm, make_windows
from sk_maskid.baselines import HMMLearnBaseline
from sk_maskid.metrics import make_recovery_scorer

true = make_categorical_hmm(3, 6, self_transition=0.5, random_state=0)
sequences = true.sample(40, 2000, random_state=0)
X, groups = make_windows(sequences, 200, step=200)
splits = list(GroupKFold(n_splits=4).split(X, groups=groups))
scoring = {
    "held-out log-likelihood / token": lambda est, X, y=None: est.score(X),
    "minus recovery error": make_recovery_scorer(true),
}

estimators = {
    "masked (1->2*3)": MaskedCategoricalHMM(3, n_features=6, random_state=0),
    "masked + EM": MaskedCategoricalHMM(3, n_features=6, refine="em", random_state=0),
    "hmmlearn, best of 2": HMMLearnBaseline(
        3, n_restarts=2, n_iter=200, random_state=0
    ),
}
results = {}
for name, est in estimators.items():
    start = time.perf_counter()
    results[name] = cross_validate(est, X, cv=splits, scoring=scoring)
    print(f"{name:<22} {time.perf_counter() - start:6.1f} s", end="")
    for key in scoring:
        values = results[name][f"test_{key}"]
        print(f"   {key}: {values.mean():.4f} ± {values.std():.4f}", end="")
    print()

fig, axes = plt.subplots(1, 3, figsize=(12, 3.5), constrained_layout=True)
names = list(results)
for ax, key in zip(axes[:2], scoring, strict=True):
    means = [results[n][f"test_{key}"].mean() for n in names]
    stds = [results[n][f"test_{key}"].std() for n in names]
    ax.bar(range(len(names)), means, yerr=stds, color=["C0", "C1", "C2"])
    ax.set_xticks(range(len(names)), names, rotation=15, fontsize=8)
    ax.set_title(key, fontsize=9)
    low = min(m - s for m, s in zip(means, stds, strict=True))
    high = max(m + s for m, s in zip(means, stds, strict=True))
    ax.set_ylim(low - 0.1 * (high - low + 1e-9), high + 0.1 * (high - low + 1e-9))
axes[2].bar(
    range(len(names)),
    [np.mean(results[n]["fit_time"]) for n in names],
    color=["C0", "C1", "C2"],
)
axes[2].set_xticks(range(len(names)), names, rotation=15, fontsize=8)
axes[2].set_yscale("log")
axes[2].set_title("fit time per fold (s)", fontsize=9)
plt.show()
