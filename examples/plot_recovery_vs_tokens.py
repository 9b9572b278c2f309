"""
Recovery error versus data: identifiable and non-identifiable tasks
===================================================================

For categorical tokens, predicting one token from another (``"1->2"``) or
across a gap (``"1->3"``) never identifies the HMM: a continuum of models
shares the optimal predictor, so the error of the extracted parameters stalls
however much data there is. Predicting the tensor product of two tokens from a
third (``"1->2*3"``) identifies it (Kruskal): its error shrinks with the
number of tokens. The BERT-style middle ``"1,3->2"`` is identifiable by the
numerical check as well, but its extraction (fitting the HMM's predictor by
L-BFGS) is much noisier at these sizes.
"""

import warnings

import matplotlib.pyplot as plt

from sk_maskid import MaskedCategoricalHMM, make_categorical_hmm
from sk_maskid.identifiability import check_task
from sk_maskid.metrics import recovery_error

true = make_categorical_hmm(3, 6, self_transition=0.5, random_state=0)
sizes = [1e4, 3e4, 1e5, 3e5, 1e6]
tasks = ["1->2", "1->3", "1,3->2", "1->2*3"]

fig, ax = plt.subplots(figsize=(6.5, 4))
for task in tasks:
    verdict = check_task(task, n_components=3, n_features=6, random_state=0).verdict
    errors = []
    for n_tokens in sizes:
        X = true.sample(int(n_tokens) // 5, 5, random_state=1)
        est = MaskedCategoricalHMM(3, task=task, n_features=6, n_init=2, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the non-identifiability warnings
            est.fit(X)
        errors.append(max(recovery_error(true, est).values()))
    style = "-o" if verdict == "identifiable" else "--x"
    ax.loglog(sizes, errors, style, label=f"{task}: {verdict}")
    print(f"{task:<8} {verdict:<18}", " ".join(f"{e:.3f}" for e in errors))
ax.set_xlabel("training tokens")
ax.set_ylabel("max-abs recovery error")
ax.set_title("Identifiable tasks converge; the others stall")
ax.legend(fontsize=8)
ax.grid(True, which="both", alpha=0.3)
plt.show()
