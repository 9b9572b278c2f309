"""
Regimes of a real series: US growth and inflation
=================================================

A real, two-dimensional series end to end: quarterly US real GDP growth and
CPI inflation, 1959Q2-2009Q3 (:func:`~sk_maskid.load_us_macro`, 202
quarters, percent per quarter). A 2-state Gaussian HMM is read out of the
masked predictor of the default task ``"1->2*3"`` (the cross-moments of
three consecutive quarters), refined by Baum-Welch (``refine="em"``), and
its Viterbi path marks the regimes. Its held-out fit on the last fifth of
the series is compared with a 1-state Gaussian (no regimes) and with
hmmlearn's EM.

The tensor route reads at most ``d + 1`` states out of ``d``-dimensional
tokens, so 2 or 3 states here. With 3, on so few quarters, the read-out
gives one state a variance at the floor ``min_covar`` (an
:class:`~sk_maskid.ExtractionWarning` says so), so this example keeps 2.
"""

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import norm

from sk_maskid import MaskedGaussianHMM, load_us_macro
from sk_maskid.baselines import HMMLearnBaseline

macro = load_us_macro()
n_times = len(macro.data)
cut = int(0.8 * n_times)  # train on 1959Q2-1999Q2, hold out 1999Q3-2009Q3
print(
    f"{n_times} quarters; held out from {macro.time_labels[cut]} "
    f"({n_times - cut} quarters)"
)
X = macro.data
train = X[:cut]

# %%
# Held-out log-likelihood per quarter. The held-out quarters continue the
# training series, so each model scores them given the quarters before:
# ``log p(all) - log p(train)`` from
# :meth:`~sk_maskid.MaskedGaussianHMM.score_samples` (a list of one
# sequence gives one log-likelihood), divided by the number of held-out
# quarters. Scoring them as a new sequence would also charge each model
# for its ``startprob_``, estimated from the single first quarter of the
# training series. The 1-state Gaussian has no memory: it scores the held-out
# quarters alone.


def held_out_score(est):
    return float(est.score_samples([X])[0] - est.score_samples([train])[0]) / (
        n_times - cut
    )


one_state = norm.logpdf(X[cut:], train.mean(axis=0), train.std(axis=0))
scores = {"1 state (i.i.d. Gaussian)": float(one_state.sum(axis=1).mean())}
models = {
    "masked, k=2": MaskedGaussianHMM(2, random_state=0),
    "masked + EM, k=2": MaskedGaussianHMM(2, refine="em", random_state=0),
    "hmmlearn, k=2": HMMLearnBaseline(
        2, emission="gaussian", n_restarts=5, random_state=0
    ),
}
for name, est in models.items():
    est.fit([train])
    scores[name] = held_out_score(est)
print(f"{'model':<26} {'held-out ll / quarter':>22}")
for name, value in scores.items():
    print(f"{name:<26} {value:22.3f}")
readout, refined, em = models.values()
print("read-out alone: transmat_ =", readout.transmat_.round(3).tolist())
print(
    f"training ll / quarter: masked + EM {refined.score([train]):.4f} "
    f"({refined.n_iter_} EM steps), hmmlearn {em.score([train]):.4f} "
    f"(best of 5 restarts)"
)

# %%
# On the held-out decade hmmlearn's 2-state model scores best (-2.357 per
# quarter), then the 1-state Gaussian (-2.436), with the refined masked model
# just below it (-2.449). The read-out alone is far behind (-2.943): from 160
# training quarters the cross-moments of three consecutive quarters are noisy,
# and its transition matrix is the identity, two states that never switch,
# which is no regime model at all. The EM steps from it repair that, but stop
# at a local optimum of the training likelihood slightly below hmmlearn's best
# of 5 restarts (-2.0505 against -2.0474 per quarter). With so little data,
# and a held-out decade that stays calm until 2008, a regime model gains
# little over a single Gaussian, and only hmmlearn's beats it.

# %%
# The regimes of the whole series: refit on all 202 quarters (a list of one
# sequence) and decode.
est = MaskedGaussianHMM(2, refine="em", random_state=0).fit([X])
log_prob, (states,) = est.decode([X])
means = est.means_
stds = np.sqrt(est.covars_)
np.set_printoptions(precision=3, suppress=True)
for state in range(2):
    print(
        f"state {state}: {np.count_nonzero(states == state):3d} quarters, "
        f"mean (growth, inflation) = {means[state]}, std = {stds[state]}"
    )
print("transmat_ =")
print(est.transmat_)
print(f"{est.n_iter_} EM steps after the read-out, converged={est.converged_}")

reference = HMMLearnBaseline(2, emission="gaussian", n_restarts=5, random_state=0)
reference.fit([X])
other = reference.hmm_.predict(X)
agree = max(np.mean(other == states), np.mean(other != states))  # up to a swap
print(
    f"hmmlearn's Viterbi path agrees on {agree:.0%} of the quarters; ll / quarter: "
    f"masked + EM {est.score([X]):.4f}, hmmlearn {reference.score([X]):.4f}"
)

# %%
# The series with the decoded regimes shaded.
calm = int(np.argmin(stds.sum(axis=1)))  # the low-volatility state
edges = np.flatnonzero(np.diff(states)) + 1
spans = list(zip(np.r_[0, edges], np.r_[edges, n_times], strict=True))
volatile = [
    macro.time_labels[a] + ("" if b == a + 1 else f"-{macro.time_labels[b - 1]}")
    for a, b in spans
    if states[a] != calm
]
print("volatile regime:", ", ".join(volatile))

fig, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=True, constrained_layout=True)
for ax, column, name in zip(axes, macro.data.T, macro.feature_names, strict=True):
    ax.plot(macro.time, column, color="k", lw=1)
    for start, stop in spans:
        if states[start] != calm:
            ax.axvspan(
                macro.time[start] - 0.125,
                macro.time[stop - 1] + 0.125,
                color="C3",
                alpha=0.25,
                lw=0,
            )
    ax.axvline(macro.time[cut], color="C0", ls="--", lw=1)
    ax.set_ylabel(f"{name} (% / quarter)")
axes[0].set_title(
    "Decoded regimes (shaded: the volatile state); dashed: start of the held-out part"
)
axes[1].set_xlabel("year")
plt.show()

# %%
# On the whole series, EM from the read-out reaches the same optimum as
# hmmlearn's best of 5 restarts: the same log-likelihood and the same Viterbi
# path at every quarter. The volatile state (mean growth 0.41 % and
# inflation 1.63 % per quarter, standard deviations about 1.1) covers
# 1969-70, 1973-82, 1989Q4-1991Q1 and 2007Q4-2009Q3: the high inflation of
# the 1970s and every NBER recession of the period except the mild one of
# 2001. Two single quarters, 1986Q1 and 2005Q3, are inflation outliers. The
# calm state (growth 0.96 %, inflation 0.69 %, standard deviations 0.68 and
# 0.35) holds the 1960s and the Great Moderation. Both persist: the expected
# stay is 1 / (1 - 0.904), about 10 quarters, in the volatile state and
# 1 / 0.05 = 20 in the calm one.
