"""
Self-supervised features for a downstream classifier
====================================================

``transform`` returns the posterior over the hidden state at the masked
position given the visible tokens, under the HMM extracted from unlabelled
windows. Here the masked estimator is fitted once, on 30 000 unlabelled
windows, and then frozen (:class:`~sklearn.frozen.FrozenEstimator`) as the
first step of a :class:`~sklearn.pipeline.Pipeline`: the pipeline's ``fit``
trains only the logistic regression on the few labelled windows, and its
``predict`` and ``score`` run the windows through both steps.

The label is the hidden state behind the middle token, which the task
``"1,3->2"`` hides. With enough labels the pipeline reaches the accuracy of
the Bayes rule of the true model, which is right on only about two windows
in three: two visible neighbours leave the middle state ambiguous. The
baseline is a logistic regression on the one-hot encoded visible tokens: the
posterior log-odds of the middle state are a sum of one term per visible
token, so that linear model can represent the Bayes rule too, and with few
labels it does about as well here (slightly better in the output below). The
masked-HMM features are compact (three numbers per window), not magic.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.compose import make_column_transformer
from sklearn.frozen import FrozenEstimator
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
    features = Pipeline(
        [("ssl", FrozenEstimator(ssl)), ("clf", LogisticRegression())]
    ).fit(labelled, labels)  # fits the classifier only: the HMM stays frozen
    raw = make_pipeline(
        # one-hot of the visible tokens x1 and x3; the middle column is dropped
        make_column_transformer((OneHotEncoder(handle_unknown="ignore"), [0, 2])),
        LogisticRegression(),
    ).fit(labelled, labels)
    results[n_labels] = (features.score(X_test, y_test), raw.score(X_test, y_test))

# the last pipeline (1000 labels) on the first test windows
print("predicted states:", features.predict(X_test[:12]).tolist())
print("true states:     ", y_test[:12].tolist())
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
