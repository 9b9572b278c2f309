"""The private HMM kernels against path enumeration and closed forms.

tests/test_models.py checks the public model methods built on these kernels;
here the kernels are called directly, with arbitrary positive emission
likelihoods ``B`` (not necessarily from a model), batched parameters and
complex arguments.
"""

from types import SimpleNamespace

import numpy as np
import pytest
from oracles import categorical_expectation, path_probabilities

from sk_maskid import make_categorical_hmm
from sk_maskid._hmm import (
    STEP,
    backward,
    batched_task_expectation,
    categorical_probe_emissions,
    complex_step,
    forward,
    joint_posterior,
    smooth,
    softmax_rows,
    stationary,
    stationary_system,
    task_expectation,
    transfer,
)
from sk_maskid.tasks import parse_task


def _chain(k, seed):
    rng = np.random.default_rng(seed)
    startprob = rng.dirichlet(np.ones(k))
    transmat = rng.dirichlet(np.ones(k), size=k)
    return startprob, transmat


def _random_B(n, length, k, seed, masked=()):
    """Positive emission likelihoods; ``masked`` lists (sequence, time) set to 1."""
    B = np.random.default_rng(seed).uniform(0.05, 2.0, size=(n, length, k))
    for i, t in masked:
        B[i, t] = 1.0
    return B


def _path_weights(startprob, transmat, B_seq):
    """Every hidden path and its weight p(path) * prod_t B[t, path_t]."""
    chain = SimpleNamespace(
        n_components=len(startprob), startprob_=startprob, transmat_=transmat
    )
    paths, prob = path_probabilities(chain, len(B_seq))
    for t in range(len(B_seq)):
        prob = prob * B_seq[t, paths[:, t]]
    return paths, prob


# masked tokens: a whole sequence, its first and last token, every other token
_MASKED = [(1, 0), (1, 3), (2, 0), (2, 1), (2, 2), (2, 3), (3, 1), (3, 3)]


@pytest.mark.parametrize("k", [2, 3])
def test_forward_likelihood_is_the_sum_over_paths(k):
    startprob, transmat = _chain(k, k)
    B = _random_B(4, 4, k, seed=k, masked=_MASKED)
    alpha, c = forward(startprob, transmat, B)
    expected = [np.log(_path_weights(startprob, transmat, b)[1].sum()) for b in B]
    np.testing.assert_allclose(np.log(c).sum(axis=1), expected, rtol=0, atol=1e-12)
    assert np.log(c[2]).sum() == pytest.approx(0.0, abs=1e-14)  # all masked: p = 1
    # alpha_t is the filtered posterior P(h_t | x_1..t)
    for n, b in enumerate(B):
        for t in range(4):
            paths, w = _path_weights(startprob, transmat, b[: t + 1])
            filt = np.bincount(paths[:, t], weights=w, minlength=k)
            np.testing.assert_allclose(
                alpha[n, t], filt / filt.sum(), rtol=0, atol=1e-13
            )


def test_forward_accepts_per_sequence_parameters():
    # (n, k) starts and (n, k, k) transitions equal one call per sequence
    k, n = 3, 4
    chains = [_chain(k, seed) for seed in range(n)]
    B = _random_B(n, 5, k, seed=0)
    alpha, c = forward(
        np.stack([s for s, _ in chains]), np.stack([T for _, T in chains]), B
    )
    for i, (s, T) in enumerate(chains):
        a_i, c_i = forward(s, T, B[i : i + 1])
        np.testing.assert_allclose(alpha[i], a_i[0], rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(c[i], c_i[0], rtol=1e-14)


def test_forward_stays_finite_on_an_impossible_observation():
    startprob, transmat = _chain(2, 0)
    B = _random_B(2, 3, 2, seed=0)
    B[0, 1] = 0.0  # token 2 of sequence 1 has probability 0 in every state
    alpha, c = forward(startprob, transmat, B)
    assert c[0, 1] == 0.0 and np.all(np.isfinite(alpha))
    with np.errstate(divide="ignore"):
        assert np.log(c[0]).sum() == -np.inf
    assert np.isfinite(np.log(c[1]).sum())


@pytest.mark.parametrize("with_starts", [False, True])
def test_transfer_is_the_rescaled_product_of_step_matrices(with_starts):
    # F[n, i] exp(log_g[n, i]) = e_i T D_0 T D_1 ... with D_t = diag(B[n, t]),
    # and at a sequence start the chain forgets: the product restarts from
    # startprob D_t. 30 steps cross three rescalings (every 8 steps).
    rng = np.random.default_rng(0)
    n, length, k = 4, 30, 3
    model = make_categorical_hmm(k, 5, random_state=0)
    s, T = model.startprob_, model.transmat_
    B = rng.uniform(0.01, 1.0, size=(n, length, k))
    starts = np.zeros((n, length), dtype=bool)
    if with_starts:
        starts[0, 0] = starts[1, 7] = starts[2, [3, 29]] = True
    F, log_g = transfer(s, T, B, starts if with_starts else None)
    for row in range(n):
        M = np.eye(k)
        for t in range(length):
            if starts[row, t]:
                M = np.tile(s, (k, 1)) * M.sum(axis=1, keepdims=True)
            else:
                M = M @ T
            M = M * B[row, t]
        total = M.sum(axis=1)
        np.testing.assert_allclose(F[row], M / total[:, None], rtol=1e-12)
        np.testing.assert_allclose(log_g[row], np.log(total), rtol=1e-12)


@pytest.mark.parametrize("k", [2, 3])
def test_smooth_posteriors_match_brute_force(k):
    startprob, transmat = _chain(k, 10 + k)
    B = _random_B(4, 4, k, seed=10 + k, masked=_MASKED)
    alpha, beta, c, gamma = smooth(startprob, transmat, B)
    # the scaling makes sum_i alpha_t(i) beta_t(i) = 1 at every step
    np.testing.assert_allclose((alpha * beta).sum(axis=2), 1.0, rtol=1e-13)
    np.testing.assert_allclose(
        beta, backward(transmat, B, c), rtol=0, atol=0
    )  # smooth is forward then backward
    for n, b in enumerate(B):
        paths, w = _path_weights(startprob, transmat, b)
        for t in range(4):
            post = np.bincount(paths[:, t], weights=w, minlength=k) / w.sum()
            np.testing.assert_allclose(gamma[n, t], post, rtol=0, atol=1e-13)


@pytest.mark.parametrize("positions", [(0, 1), (0, 3), (1, 2, 3), (0, 2, 4)])
def test_joint_posterior_matches_brute_force(positions):
    k = 3
    startprob, transmat = _chain(k, 5)
    B = _random_B(3, 5, k, seed=5, masked=[(1, 2), (2, 0), (2, 4)])
    alpha, beta, c, _ = smooth(startprob, transmat, B)
    joint = joint_posterior(transmat, B, alpha, beta, c, list(positions))
    assert joint.shape == (3,) + (k,) * len(positions)
    for n, b in enumerate(B):
        paths, w = _path_weights(startprob, transmat, b)
        expected = np.zeros((k,) * len(positions))
        np.add.at(expected, tuple(paths[:, p] for p in positions), w)
        np.testing.assert_allclose(joint[n], expected / w.sum(), rtol=0, atol=1e-13)


def _task_windows(model, task, seed):
    """Random observed symbols at the task's observed positions, -1 elsewhere."""
    rng = np.random.default_rng(seed)
    windows = -np.ones((6, task.span), dtype=int)
    for p in task.observed:
        windows[:, p - 1] = rng.integers(0, model.n_symbols, size=6)
    return windows


def _task_B(model, windows):
    B = model.emissionprob_.T[np.maximum(windows, 0)]
    B[windows < 0] = 1.0
    return B


@pytest.mark.parametrize("spec", ["1->2", "1,3->2", "1->2*3", "2->3*1", "1->3,2"])
def test_task_expectation_matches_enumeration(spec):
    task = parse_task(spec)
    model = make_categorical_hmm(3, 4, random_state=3)
    windows = _task_windows(model, task, seed=0)
    out = task_expectation(
        model.startprob_,
        model.transmat_,
        _task_B(model, windows),
        model.emissionprob_,
        task,
    )
    assert out.shape == (6, task.target_dim(4))
    for row, w in zip(out, windows, strict=True):
        expected = np.concatenate(
            [
                categorical_expectation(
                    model,
                    task.observed,
                    target,
                    task.span,
                    w[[p - 1 for p in task.observed]],
                )
                for target in task.targets
            ]
        )
        np.testing.assert_allclose(row, expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("spec", ["1,3->2", "1->2*3"])
def test_batched_task_expectation_equals_one_call_per_parameter_set(spec):
    task = parse_task(spec)
    models = [make_categorical_hmm(2, 3, random_state=s) for s in range(3)]
    windows = _task_windows(models[0], task, seed=1)
    B = np.stack([_task_B(m, windows) for m in models])
    out = batched_task_expectation(
        np.stack([m.startprob_ for m in models]),
        np.stack([m.transmat_ for m in models]),
        B,
        np.stack([m.emissionprob_ for m in models]),
        task,
    )
    for p, m in enumerate(models):
        single = task_expectation(
            m.startprob_, m.transmat_, B[p], m.emissionprob_, task
        )
        np.testing.assert_allclose(out[p], single, rtol=1e-13, atol=1e-15)


def test_categorical_probe_emissions_is_a_lookup():
    rng = np.random.default_rng(0)
    emission = rng.dirichlet(np.ones(4), size=(2, 3))  # (P=2, k=3, d=4)
    probes = rng.integers(-1, 4, size=(5, 3))
    B = categorical_probe_emissions(emission, probes)
    assert B.shape == (2, 5, 3, 3)
    for p, n, t, i in np.ndindex(B.shape):
        s = probes[n, t]
        assert B[p, n, t, i] == (1.0 if s < 0 else emission[p, i, s])


def test_stationary_solves_the_balance_equations():
    rng = np.random.default_rng(0)
    T = rng.dirichlet(np.ones(4), size=(5, 4))  # a batch of 5 chains
    pi = stationary(T)
    assert pi.shape == (5, 4)
    np.testing.assert_allclose(np.einsum("nk,nkj->nj", pi, T), pi, atol=1e-14)
    np.testing.assert_allclose(pi.sum(axis=1), 1.0, rtol=1e-14)
    A = stationary_system(T[0])
    np.testing.assert_allclose(A @ pi[0], np.eye(4)[-1], atol=1e-14)
    # closed form for two states: pi = (b, a) / (a + b)
    a, b = 0.3, 0.1
    np.testing.assert_allclose(
        stationary(np.array([[1 - a, a], [b, 1 - b]])), [0.25, 0.75], rtol=1e-14
    )
    # the leading left eigenvector, computed independently
    vals, vecs = np.linalg.eig(T[1].T)
    lead = np.real(vecs[:, np.argmax(np.real(vals))])
    np.testing.assert_allclose(pi[1], lead / lead.sum(), rtol=1e-12)


def test_complex_step_gives_the_exact_jacobian():
    def f(theta):  # batched: (P, 3) -> (P, 2)
        x, y, z = theta.T
        return np.stack([np.sin(x) * np.exp(y), x**2 * z + np.log(1 + y**2)], axis=1)

    theta = np.array([0.7, -0.4, 1.3])
    x, y, z = theta
    value, J = complex_step(f, theta, STEP)
    np.testing.assert_allclose(value, f(theta[None])[0], rtol=1e-15)
    expected = np.array(
        [
            [np.cos(x) * np.exp(y), np.sin(x) * np.exp(y), 0.0],
            [2 * x * z, 2 * y / (1 + y**2), x**2],
        ]
    )
    assert J.shape == (2, 3)
    np.testing.assert_allclose(J, expected, rtol=1e-14, atol=1e-16)


def test_complex_step_through_the_forward_pass_matches_finite_differences():
    # d log p(x) / d (emission likelihoods), through forward's complex arithmetic
    k = 3
    startprob, transmat = _chain(k, 7)
    B0 = _random_B(1, 4, k, seed=7, masked=[(0, 2)])

    def loglik(theta):  # (P, 12) -> (P,)
        B = np.broadcast_to(B0, (len(theta), 4, k)) * np.exp(theta.reshape(-1, 4, k))
        return np.log(forward(startprob, transmat, B)[1]).sum(axis=1)

    theta = np.zeros(4 * k)
    value, J = complex_step(loglik, theta, STEP)
    h = 1e-6
    fd = np.array(
        [
            (loglik((theta + h * e)[None]) - loglik((theta - h * e)[None]))[0] / (2 * h)
            for e in np.eye(4 * k)
        ]
    )
    # central differences: O(h^2) truncation plus 1e-16/h rounding ~ 1e-10
    np.testing.assert_allclose(J, fd, rtol=0, atol=1e-8)
    # d log p / d log B[t, i] is the posterior gamma[t, i]; 0 at the masked token
    gamma = smooth(startprob, transmat, B0)[3][0]
    np.testing.assert_allclose(J.reshape(4, k)[[0, 1, 3]], gamma[[0, 1, 3]], atol=1e-13)
    assert value == pytest.approx(np.log(forward(startprob, transmat, B0)[1]).sum())


def test_softmax_rows_invariances():
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((4, 5))
    P = softmax_rows(Z)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(
        P, np.exp(Z) / np.exp(Z).sum(1, keepdims=True), rtol=1e-14
    )
    # invariant to a constant added to each row, stable for huge logits
    shift = rng.standard_normal((4, 1)) * 1e3
    np.testing.assert_allclose(softmax_rows(Z + shift), P, rtol=1e-12)
    assert np.all(np.isfinite(softmax_rows(Z * 1e4)))
    # equivariant under permutations of the columns; batched leading axes
    perm = rng.permutation(5)
    np.testing.assert_allclose(softmax_rows(Z[:, perm]), P[:, perm], rtol=1e-15)
    np.testing.assert_allclose(
        softmax_rows(np.stack([Z, 2 * Z]))[1], softmax_rows(2 * Z), rtol=1e-15
    )
    # complex step: the derivative along V is P * (V - sum(P * V))
    V = rng.standard_normal((4, 5))
    dP = softmax_rows(Z + 1j * STEP * V).imag / STEP
    np.testing.assert_allclose(
        dP, P * (V - np.sum(P * V, axis=1, keepdims=True)), rtol=1e-13, atol=1e-16
    )
