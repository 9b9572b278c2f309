"""
Cross-validating masking schemes and numbers of states
======================================================

``score`` is the held-out log-likelihood per token under the extracted HMM,
whatever the task, so one :class:`~sklearn.model_selection.GridSearchCV`
compares masking schemes and numbers of hidden states on one scale. Windows
of one sequence stay together with :class:`~sklearn.model_selection.GroupKFold`.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV, GroupKFold

from sk_maskid import MaskedCategoricalHMM, make_categorical_hmm, make_windows

true = make_categorical_hmm(3, 6, self_transition=0.5, random_state=0)
X, groups = make_windows(true.sample(200, 60, random_state=0), 12, step=12)

tasks = ["1->2", "1,3->2", "1->2*3"]
grid = {"task": tasks, "n_components": [2, 3, 4]}
search = GridSearchCV(
    MaskedCategoricalHMM(n_features=6, n_init=2, max_iter=200, random_state=0),
    grid,
    cv=GroupKFold(3),
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    search.fit(X, groups=groups)
print("best:", search.best_params_)

scores = search.cv_results_["mean_test_score"].reshape(3, 3)  # n_components x task
fig, ax = plt.subplots(figsize=(6, 3.5))
image = ax.imshow(scores, cmap="viridis")
ax.set_xticks(range(3), tasks)
ax.set_yticks(range(3), grid["n_components"])
ax.set_xlabel("task")
ax.set_ylabel("n_components")
for (i, j), value in np.ndenumerate(scores):
    ax.text(j, i, f"{value:.4f}", ha="center", va="center", color="w", fontsize=8)
fig.colorbar(image, label="held-out log-likelihood / token")
ax.set_title(f"best: {search.best_params_}", fontsize=9)
plt.show()
