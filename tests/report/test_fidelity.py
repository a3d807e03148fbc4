"""Fidelity metrics against brute-force enumeration, closed forms and hand counts."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from probdyn import DiscreteHMM
from probdyn.report import (
    block_entropy,
    dwell_times,
    empirical_ngram_probs,
    fidelity_summary,
    hmm_ngram_probs,
    log_loss,
    match_states,
    ngram_kl,
    output_transition_matrix,
    sequence_sinkhorn,
    symbol_frequencies,
    volatility,
)

PI = np.array([0.6, 0.4])
A = np.array([[0.8, 0.2], [0.3, 0.7]])
B = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])


def _hmm(T, pi=PI, A=A, B=B):
    return DiscreteHMM(
        jnp.asarray(pi), jnp.asarray(A), dist.Categorical(probs=jnp.asarray(B)), num_timesteps=T
    )


def _brute_probs(T, pi=PI, A=A, B=B):
    """p(y) for every y in S^T by summing over every state path (no forward algorithm)."""
    K, S = B.shape
    seqs = list(itertools.product(range(S), repeat=T))
    p = np.zeros(len(seqs))
    for z in itertools.product(range(K), repeat=T):
        pz = pi[z[0]] * np.prod([A[z[t - 1], z[t]] for t in range(1, T)])
        for i, y in enumerate(seqs):
            p[i] += pz * np.prod([B[z[t], y[t]] for t in range(T)])
    return np.array(seqs), p


def test_block_entropy_matches_brute_force():
    T = 4
    _, p = _brute_probs(T)
    expect = -(p * np.log2(p)).sum() / T
    assert block_entropy(_hmm(T), T) == pytest.approx(expect, rel=1e-5)


def test_block_entropy_markov_chain_closed_form():
    """Identity emissions: the output is the Markov chain itself, H_T = H(pi) + (T-1) h."""
    T = 6
    A2 = np.array([[0.9, 0.1], [0.1, 0.9]])
    hmm = _hmm(T, np.array([0.5, 0.5]), A2, np.eye(2))
    h = -(0.9 * math.log2(0.9) + 0.1 * math.log2(0.1))
    assert block_entropy(hmm, T) == pytest.approx((1.0 + (T - 1) * h) / T, rel=1e-5)


@pytest.mark.slow
def test_log_loss_monte_carlo_short_and_long():
    # short: MC estimate of H_T / T against enumeration
    T = 5
    hmm = _hmm(T)
    y = hmm.sample(jax.random.PRNGKey(0), (2000,))
    est = log_loss(hmm, y)
    assert abs(est.mean - block_entropy(hmm, T)) < 4 * est.se
    # long: identical transition rows make the output i.i.d. with marginal row @ B, whose
    # entropy is the exact entropy rate at every T
    row = np.array([0.3, 0.7])
    T_long = 200
    iid = _hmm(T_long, row, np.stack([row, row]), B)
    m = row @ B
    y = iid.sample(jax.random.PRNGKey(1), (300,))
    est = log_loss(iid, y)
    assert abs(est.mean - (-(m * np.log2(m)).sum())) < 4 * est.se


def test_ngram_probs_match_enumeration():
    T, n = 4, 2
    seqs, p = _brute_probs(T)
    expect = np.zeros((3, 3))
    for start in range(T - n + 1):
        for s, ps in zip(seqs, p, strict=True):
            expect[s[start], s[start + 1]] += ps / (T - n + 1)
    np.testing.assert_allclose(hmm_ngram_probs(_hmm(T), n), expect, rtol=1e-6)
    np.testing.assert_allclose(hmm_ngram_probs(_hmm(T), 3).sum(), 1.0)


def test_ngram_kl_zero_for_identical_and_positive_otherwise():
    hmm = _hmm(30)
    p = hmm_ngram_probs(hmm, 3)
    assert ngram_kl(p, p) == 0.0
    y = np.asarray(hmm.sample(jax.random.PRNGKey(2), (400,)))
    q_same = empirical_ngram_probs(y, 3, 3)
    assert ngram_kl(q_same, q_same) == 0.0
    other = _hmm(30, PI, A, B[:, ::-1])
    q_other = empirical_ngram_probs(np.asarray(other.sample(jax.random.PRNGKey(3), (400,))), 3, 3)
    kl_same, kl_other = ngram_kl(p, q_same), ngram_kl(p, q_other)
    # a same-source sample has KL of order (#cells - 1) / (2 N ln 2) (plug-in bias)
    assert 0 < kl_same < 5 * 26 / (2 * y.size * math.log(2))
    assert kl_other > 20 * kl_same


def test_sample_statistics_by_hand():
    s = np.array([[0, 0, 1, 1, 2], [2, 2, 2, 0, 0]])
    np.testing.assert_allclose(symbol_frequencies(s, 3), [4 / 10, 2 / 10, 4 / 10])
    assert volatility(s) == 1.5
    tm = output_transition_matrix(s, 3)
    np.testing.assert_allclose(tm[0], [2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(tm[2], [1 / 3, 0, 2 / 3])
    with pytest.raises(ValueError, match="num_symbols=3"):
        symbol_frequencies(s + 1, 3)


def test_dwell_times_interior_runs():
    z = np.array([[0, 0, 1, 1, 1, 0, 1], [1, 1, 1, 1, 1, 1, 1]])
    d = dwell_times(z, 2)
    np.testing.assert_array_equal(d[0], [1])  # the first and last runs are censored
    np.testing.assert_array_equal(d[1], [3])


def test_match_states_recovers_permutation():
    perm = match_states(B[::-1], B)
    np.testing.assert_array_equal(B[::-1][perm], B)


@pytest.mark.slow
def test_summary_of_hmm_samples_matches_baseline():
    hmm = _hmm(20)
    y = np.asarray(hmm.sample(jax.random.PRNGKey(4), (300,)))
    out = fidelity_summary(jax.random.PRNGKey(5), hmm, y, max_ngram=2, sinkhorn_size=100)
    gap = out["cross_entropy_gap_bits"]
    assert abs(gap["mean"]) < 4 * gap["se"]
    assert out["ngram_kl_bits"]["emulator"][2] < 0.05
    assert 0 < out["sinkhorn"]["emulator"] < 2 * out["sinkhorn"]["baseline"]
    # a source that ignores the hidden state is far off
    iid = np.asarray(jax.random.categorical(jax.random.PRNGKey(6), jnp.zeros(3), shape=(300, 20)))
    bad = fidelity_summary(jax.random.PRNGKey(5), hmm, iid, max_ngram=2, sinkhorn_size=100)
    assert bad["cross_entropy_gap_bits"]["mean"] > 10 * bad["cross_entropy_gap_bits"]["se"]
    assert bad["ngram_kl_bits"]["emulator"][2] > 10 * out["ngram_kl_bits"]["emulator"][2]
    assert bad["sinkhorn"]["emulator"] > out["sinkhorn"]["emulator"]
    assert sequence_sinkhorn(y[:50], y[:50], 3) < 1e-3
