"""Brute-force oracles on tiny models: enumerate every hidden path.

Nothing here shares code with the package: these are the definitions, written
as directly as possible, against which the fast recursions are checked.
"""

import itertools

import numpy as np
from scipy.stats import multivariate_normal


def path_probabilities(model, length):
    """All hidden paths of a length and their prior probabilities."""
    k = model.n_components
    paths = np.array(list(itertools.product(range(k), repeat=length)))
    prob = model.startprob_[paths[:, 0]].copy()
    for t in range(1, length):
        prob *= model.transmat_[paths[:, t - 1], paths[:, t]]
    return paths, prob


def categorical_likelihood(model, x):
    """p(x) by summing over paths; -1 tokens are marginalised."""
    paths, prob = path_probabilities(model, len(x))
    for t, s in enumerate(x):
        if s >= 0:
            prob = prob * model.emissionprob_[paths[:, t], s]
    return prob.sum()


def gaussian_likelihood(model, x):
    """p(x) by summing over paths; all-NaN tokens are marginalised."""
    paths, prob = path_probabilities(model, len(x))
    cov = model._full_covars()
    dens = np.array(
        [
            [
                1.0
                if np.isnan(x[t]).all()
                else multivariate_normal(model.means_[i], cov[i]).pdf(x[t])
                for i in range(model.n_components)
            ]
            for t in range(len(x))
        ]
    )
    for t in range(len(x)):
        prob = prob * dens[t, paths[:, t]]
    return prob.sum()


def categorical_joint(model, positions, span):
    """Joint table P(x_p for p in positions) over a window of ``span`` tokens."""
    d = model.n_symbols
    table = np.zeros((d,) * len(positions))
    for values in itertools.product(range(d), repeat=len(positions)):
        x = -np.ones(span, dtype=int)
        for p, v in zip(positions, values, strict=True):
            x[p - 1] = v
        table[values] = categorical_likelihood(model, x)
    return table


def categorical_expectation(model, observed, target, span, x_obs):
    """E[⊗_{p in target} e_{x_p} | x_observed = x_obs], by enumeration."""
    positions = list(observed) + list(target)
    joint = categorical_joint(model, positions, span)
    cond = joint[tuple(x_obs)]
    return (cond / cond.sum()).ravel()


def gaussian_expectation(model, observed, target, x_obs):
    """E[⊗ x_p | observed tokens] for a Gaussian model, by path enumeration.

    Given the path, tokens are independent, so the target's conditional mean
    is the tensor product of state means at the target positions.
    """
    span = max(list(observed) + list(target))
    paths, prob = path_probabilities(model, span)
    cov = model._full_covars()
    for p, x in zip(observed, x_obs, strict=True):
        dens = np.array(
            [
                multivariate_normal(model.means_[i], cov[i]).pdf(x)
                for i in range(model.n_components)
            ]
        )
        prob = prob * dens[paths[:, p - 1]]
    prob = prob / prob.sum()
    out = 0.0
    for path, w in zip(paths, prob, strict=True):
        vec = np.ones(1)
        for p in target:
            vec = np.kron(vec, model.means_[path[p - 1]])
        out = out + w * vec
    return out
