"""Chemical master equation on a box: against dense generators and scipy.linalg.expm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import linalg, stats

from probdyn.kernels.cme import (
    boundary_mass,
    box_states,
    cme_apply,
    cme_log_likelihood,
    cme_transient,
    uniformization_terms,
)

# SIR: S + I -> 2 I (rate b), I -> R (rate g); species (S, I)
SIR_V = np.array([[-1, 1], [0, -1]])
SIR_R = np.array([[1, 1], [0, 1]])
# immigration-death: 0 -> X (a), X -> 0 (d)
ID_V = np.array([[1], [-1]])
ID_R = np.array([[0], [1]])


def dense_generator(V, R, rates, m):
    """Reference: dense Q on the box, leaving reactions switched off."""
    states = box_states(m)
    K = len(states)
    index = {tuple(s): k for k, s in enumerate(states)}
    Q = np.zeros((K, K))
    for k, x in enumerate(states):
        for v, r, c in zip(V, R, rates, strict=True):
            y = tuple(x + v)
            if y not in index:
                continue
            h = c * np.prod([np.prod(x[s] - np.arange(r[s])) for s in range(len(x))])
            Q[k, index[y]] += h
            Q[k, k] -= h
    return Q


def test_uniformization_terms_bound_the_tail():
    for mu in (0.1, 5.0, 80.0, 900.0):
        n = uniformization_terms(mu, tol=1e-10)
        assert stats.poisson.sf(n - 1, mu) <= 1e-10 < stats.poisson.sf(n - 2, mu)


def test_box_states_order():
    s = box_states((1, 2))
    assert s.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]


def test_apply_matches_dense(x64):
    m, rates = (6, 5), np.array([0.3, 0.7])
    rng = np.random.default_rng(0)
    p = rng.random((7, 6))
    p /= p.sum()
    out = cme_apply(p, rates, SIR_V, reactants=SIR_R, max_counts=m)
    ref = p.reshape(-1) @ dense_generator(SIR_V, SIR_R, rates, m)
    np.testing.assert_allclose(np.asarray(out).reshape(-1), ref, atol=1e-12)
    assert abs(float(out.sum())) < 1e-12


@pytest.mark.parametrize("t", [0.0, 0.3, 2.5])
def test_transient_matches_scipy_expm(x64, t):
    m, rates = (8, 6), np.array([0.4, 0.9])
    p0 = np.zeros((9, 7))
    p0[8, 1] = 1.0
    pt, tail = cme_transient(p0, t, rates, SIR_V, reactants=SIR_R, max_counts=m, num_terms=160)
    ref = p0.reshape(-1) @ linalg.expm(dense_generator(SIR_V, SIR_R, rates, m) * t)
    np.testing.assert_allclose(np.asarray(pt).reshape(-1), ref, atol=1e-10)
    assert float(tail) < 1e-10


def test_immigration_death_stationary_is_poisson(x64):
    a, d, m = 4.0, 1.0, 40
    p0 = np.zeros(m + 1)
    p0[0] = 1.0
    N = uniformization_terms(44 * 20.0)
    pt, _ = cme_transient(p0, 20.0, [a, d], ID_V, reactants=ID_R, max_counts=(m,), num_terms=N)
    np.testing.assert_allclose(pt, stats.poisson.pmf(np.arange(m + 1), a / d), atol=1e-8)
    assert float(boundary_mass(pt)) < 1e-12


def _sir_obs(m, y, rho=0.6):
    states = box_states(m)
    lp = stats.binom.logpmf(y[:, None], states[None, :, 1], rho)
    return lp.reshape((len(y), *(v + 1 for v in m)))


def _brute_force_ll(p0, times, obs_lp, Q):
    alpha = p0.reshape(-1) * np.exp(obs_lp[0].reshape(-1))
    ll = np.log(alpha.sum())
    alpha /= alpha.sum()
    for i in range(1, len(times)):
        alpha = alpha @ linalg.expm(Q * (times[i] - times[i - 1]))
        alpha *= np.exp(obs_lp[i].reshape(-1))
        ll += np.log(alpha.sum())
        alpha /= alpha.sum()
    return ll


def test_log_likelihood_matches_dense_forward_and_gradient(x64):
    m = (10, 10)
    times = np.array([0.0, 0.4, 1.1, 1.5, 2.7])
    y = np.array([1, 2, 3, 2, 1])
    obs = _sir_obs(m, y)
    p0 = np.zeros((11, 11))
    p0[9, 1] = 1.0
    rates = np.array([0.35, 0.5])
    N = uniformization_terms(1.001 * (0.35 * 100 + 0.5 * 10) * 1.2, tol=1e-12)

    def ll(r):
        return cme_log_likelihood(
            p0, times, obs, r, SIR_V, reactants=SIR_R, max_counts=m, num_terms=N
        )

    ref = _brute_force_ll(p0, times, obs, dense_generator(SIR_V, SIR_R, rates, m))
    np.testing.assert_allclose(float(ll(jnp.asarray(rates))), ref, rtol=1e-9)
    g = jax.grad(ll)(jnp.asarray(rates))
    eps = 1e-6
    for j in range(2):
        e = np.zeros(2)
        e[j] = eps
        fd = (
            _brute_force_ll(p0, times, obs, dense_generator(SIR_V, SIR_R, rates + e, m))
            - _brute_force_ll(p0, times, obs, dense_generator(SIR_V, SIR_R, rates - e, m))
        ) / (2 * eps)
        np.testing.assert_allclose(float(g[j]), fd, rtol=1e-5)
    # t0 before the first observation propagates p0 first
    ll_t0 = cme_log_likelihood(
        p0, times + 0.5, obs, rates, SIR_V, reactants=SIR_R, max_counts=m, num_terms=N, t0=0.0
    )
    Q = dense_generator(SIR_V, SIR_R, rates, m)
    p_start = (p0.reshape(-1) @ linalg.expm(Q * 0.5)).reshape(p0.shape)
    np.testing.assert_allclose(float(ll_t0), _brute_force_ll(p_start, times, obs, Q), rtol=1e-9)


def test_too_few_terms_is_nan_and_impossible_data_is_minus_inf(x64):
    m = (10, 10)
    times = np.array([0.0, 0.5])
    p0 = np.zeros((11, 11))
    p0[9, 1] = 1.0
    kw = dict(reactants=SIR_R, max_counts=m)
    obs = _sir_obs(m, np.array([1, 1]))
    assert np.isnan(float(cme_log_likelihood(p0, times, obs, [2.0, 1.0], SIR_V, num_terms=5, **kw)))
    impossible = _sir_obs(m, np.array([5, 1]))  # 5 detected of 1 infected
    val = cme_log_likelihood(p0, times, impossible, [0.3, 0.5], SIR_V, num_terms=60, **kw)
    assert float(val) == -np.inf


def test_bad_input():
    p0 = np.zeros((11, 11))
    p0[9, 1] = 1.0
    kw = dict(reactants=SIR_R, max_counts=(10, 10))
    with pytest.raises(ValueError, match="p0"):
        cme_transient(np.ones((11, 11)), 1.0, [0.3, 0.5], SIR_V, **kw)
    with pytest.raises(ValueError, match="max_counts"):
        cme_transient(p0, 1.0, [0.3, 0.5], SIR_V, reactants=SIR_R, max_counts=(10,))
    with pytest.raises(ValueError, match="rates"):
        cme_transient(p0, 1.0, [-0.3, 0.5], SIR_V, **kw)
    with pytest.raises(ValueError, match="times"):
        cme_log_likelihood(p0, [0.0, 0.0], np.zeros((2, 11, 11)), [0.3, 0.5], SIR_V, **kw)
    with pytest.raises(ValueError, match="obs_log_probs"):
        cme_log_likelihood(p0, [0.0, 1.0], np.zeros((3, 11, 11)), [0.3, 0.5], SIR_V, **kw)
    with pytest.raises(TypeError, match="num_terms"):
        cme_transient(p0, 1.0, [0.3, 0.5], SIR_V, num_terms=2.5, **kw)


def test_domain_shrinks_the_uniformization_rate_and_float32_works():
    # SIR never leaves S + I <= N; the box's corner (S, I) = (N, N) has a large exit rate
    N = 20
    m = (N - 2, N)
    states = box_states(m)
    domain = (states.sum(1) <= N).reshape(N - 1, N + 1)
    p0 = np.zeros((N - 1, N + 1), np.float32)
    p0[N - 2, 2] = 1.0
    rates = np.array([0.8 / N, 0.3], np.float32)
    times = np.arange(1.0, 8.0, dtype=np.float32)
    obs = _sir_obs(m, np.array([1, 2, 2, 3, 2, 1, 1])).astype(np.float32)
    lam_domain = 0.8 / N * (N / 2) ** 2 + 0.3 * N  # 8
    N_terms = uniformization_terms(lam_domain, tol=1e-7)
    kw = dict(reactants=SIR_R, max_counts=m, num_terms=N_terms, t0=0.0, tail_tol=1e-7)
    with_domain = cme_log_likelihood(p0, times, obs, rates, SIR_V, domain=domain, **kw)
    without = cme_log_likelihood(p0, times, obs, rates, SIR_V, **kw)
    assert np.isfinite(float(with_domain)) and np.isnan(float(without))
    Q = dense_generator(SIR_V, SIR_R, rates.astype(float), m)
    p_start = (p0.astype(float).reshape(-1) @ linalg.expm(Q * times[0])).reshape(p0.shape)
    ref = _brute_force_ll(p_start, times, obs.astype(float), Q)
    np.testing.assert_allclose(float(with_domain), ref, rtol=2e-5)
    with pytest.raises(ValueError, match="domain"):
        cme_log_likelihood(p0, times, obs, rates, SIR_V, domain=domain[:-1], **kw)
