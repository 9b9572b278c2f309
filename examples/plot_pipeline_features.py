"""
Self-supervised features for a downstream classifier
====================================================

``transform`` returns the posterior over the hidden state at the masked
position given the visible tokens, under the HMM extracted from unlabelled
windows. A logistic regression on these three numbers reaches the accuracy
of the Bayes rule of the true model once it has enough labels. (With three
symbols on each side, the one-hot tokens carry the same information, and a
linear model on them does as well here: the features are compact, not
magic.)
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder

from sk_maskid import MaskedCategoricalHMM, make_categorical_hmm

true = make_categorical_hmm(3, 6, self_transition=0.6, random_state=4)
X, states = true.sample(40_000, 3, random_state=0, return_states=True)
y = states[:, 1]  # the hidden state behind the masked middle token
unlabelled, X_test, y_test = X[:30_000], X[35_000:], y[35_000:]

ssl = MaskedCategoricalHMM(3, task="1,3->2", n_features=6, n_init=2, random_state=0)
ssl.fit(unlabelled)  # self-supervised: no labels
results = {}
for n_labels in (30, 100, 1000):
    labelled, labels = X[30_000 : 30_000 + n_labels], y[30_000 : 30_000 + n_labels]
    features = Pipeline([("ssl", ssl), ("clf", LogisticRegression())])
    features.named_steps["clf"].fit(ssl.transform(labelled), labels)
    raw = make_pipeline(OneHotEncoder(handle_unknown="ignore"), LogisticRegression())
    raw.fit(labelled[:, [0, 2]], labels)
    results[n_labels] = (
        features.score(X_test, y_test),
        raw.score(X_test[:, [0, 2]], y_test),
    )
posterior = true.predict_proba(np.where([True, False, True], X_test, -1))[:, 1]
bayes = np.mean(posterior.argmax(axis=1) == y_test)
for n_labels, (ssl_acc, raw_acc) in results.items():
    print(
        f"{n_labels:>5} labels: masked-HMM features {ssl_acc:.3f}, "
        f"one-hot {raw_acc:.3f}"
    )
print(f"Bayes rule of the true model: {bayes:.3f}")

fig, ax = plt.subplots(figsize=(6, 3.5))
labels = [str(n) for n in results]
ax.plot(labels, [r[0] for r in results.values()], "-o", label="masked-HMM features")
ax.plot(labels, [r[1] for r in results.values()], "-s", label="one-hot tokens")
ax.axhline(bayes, color="k", ls=":", label="Bayes rule (true model)")
ax.set_xlabel("labelled windows")
ax.set_ylabel("accuracy on the hidden state")
ax.legend(fontsize=8)
plt.show()
