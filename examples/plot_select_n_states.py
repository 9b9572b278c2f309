"""
Choosing the number of states: held-out masked score versus AIC and BIC
=======================================================================

The cumulative masked-prediction score (Moreno-Munoz et al., 2023) sums the
masked-prediction score over masking rates; its expectation is the
log-likelihood. Scored on held-out sequences it estimates the predictive
fit of each number of states; in-sample it is just the training likelihood,
which never falls as states are added, so it is no selection criterion.
hmmlearn's AIC and BIC penalise the in-sample likelihood instead.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np

from sk_maskid import make_gaussian_hmm
from sk_maskid.baselines import HMMLearnBaseline
from sk_maskid.metrics import cumulative_masked_score

true = make_gaussian_hmm(3, 3, self_transition=0.6, random_state=4)
train = true.sample(20, 100, random_state=0)
held_out = true.sample(20, 100, random_state=1)
flat = train.reshape(-1, 3)
lengths = [100] * 20

ks = range(1, 7)
held, in_sample, aic, bic = [], [], [], []
for k in ks:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = HMMLearnBaseline(
            k, emission="gaussian", n_restarts=4, n_iter=300, random_state=0
        ).fit(train)
    held.append(cumulative_masked_score(est, held_out, random_state=0)[0])
    in_sample.append(cumulative_masked_score(est, train, random_state=0)[0])
    aic.append(est.hmm_.aic(flat, lengths))
    bic.append(est.hmm_.bic(flat, lengths))
    print(
        f"k={k}: held-out CMS {held[-1]:9.1f}  in-sample {in_sample[-1]:9.1f}"
        f"  AIC {aic[-1]:9.1f}  BIC {bic[-1]:9.1f}"
    )

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
axes[0].plot(ks, held, "-o", label="held-out cumulative masked score")
axes[0].plot(ks, in_sample, "--x", label="in-sample (never a criterion)")
axes[0].axvline(3, color="k", ls=":", lw=1)
axes[0].set_xlabel("n_components")
axes[0].legend(fontsize=8)
axes[1].plot(ks, aic, "-o", label="AIC")
axes[1].plot(ks, bic, "-s", label="BIC")
axes[1].axvline(3, color="k", ls=":", lw=1)
axes[1].set_xlabel("n_components")
axes[1].legend(fontsize=8)
best = {
    "held-out score": ks[int(np.argmax(held))],
    "AIC": ks[int(np.argmin(aic))],
    "BIC": ks[int(np.argmin(bic))],
}
fig.suptitle(
    ", ".join(f"{name} picks k={k}" for name, k in best.items()) + " (truth: 3)"
)
plt.show()
