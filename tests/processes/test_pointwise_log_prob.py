"""pointwise_log_prob of the sequence distributions: one-step-ahead terms that sum to
log_prob, checked against independent references (enumeration, a joint Gaussian)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from probdyn import DiscreteHMM
from probdyn.processes import LinearSDE, ObservedCTMC


def _pointwise(d, y):
    return jax.jit(lambda d, y: (d.pointwise_log_prob(y), d.log_prob(y)))(d, y)


def test_discrete_hmm_batch_terms_sum_and_match_enumeration():
    rng = np.random.default_rng(0)
    K, T = 2, 5
    pi = rng.dirichlet(np.ones(K))
    A = rng.dirichlet(np.ones(K) * 2, size=K)
    locs = np.array([-1.0, 2.0])
    y = rng.normal(size=(3, T)) * 2.0
    d = DiscreteHMM(jnp.asarray(pi), jnp.asarray(A), dist.Normal(jnp.asarray(locs), 1.0))
    terms, total = _pointwise(d, jnp.asarray(y))
    assert terms.shape == (3, T)
    np.testing.assert_allclose(np.asarray(terms.sum(-1)), np.asarray(total), rtol=1e-5)
    ll = -0.5 * (y[0][:, None] - locs) ** 2 - 0.5 * np.log(2 * np.pi)  # (T, K)
    prefix = [
        logsumexp(
            [
                np.log(pi[p[0]])
                + sum(ll[s, p[s]] for s in range(t + 1))
                + sum(np.log(A[p[s], p[s + 1]]) for s in range(t))
                for p in itertools.product(range(K), repeat=t + 1)
            ]
        )
        for t in range(T)
    ]
    np.testing.assert_allclose(np.asarray(terms[0]), np.diff(prefix, prepend=0.0), rtol=1e-5)


def test_observed_ctmc_terms_sum_to_log_prob_and_mask_gives_zero():
    Q = jnp.array([[-1.0, 1.0], [2.0, -2.0]])
    times = jnp.array([0.0, 0.3, 0.5, 1.4, 2.0, 2.2])
    em = dist.Normal(jnp.array([0.0, 1.0]), 0.3)
    y = jnp.array([0.1, 0.9, 1.2, 0.0, -0.2, 0.8])
    mask = jnp.array([True, True, False, True, True, True])
    d = ObservedCTMC(Q, jnp.array([0.5, 0.5]), times, em, mask=mask)
    terms, total = _pointwise(d, y)
    assert terms.shape == (6,)
    np.testing.assert_allclose(float(terms.sum()), float(total), rtol=1e-5)
    assert abs(float(terms[2])) < 1e-6
    # the first term is the mixture density of y_0 under the initial distribution
    ref0 = np.log(0.5 * np.exp(em.log_prob(y[0])).sum())
    np.testing.assert_allclose(float(terms[0]), ref0, rtol=1e-5)


def _joint_gaussian(d, T):
    """Mean (T*O,) and covariance of all observations of a LinearSDE, in numpy."""
    Phi, c, Qn = (np.asarray(x, np.float64) for x in d.transitions())
    H, R = np.asarray(d.H, np.float64), np.asarray(d.obs_cov, np.float64)
    m, P = np.asarray(d.initial_mean, np.float64), np.asarray(d.initial_cov, np.float64)
    D, O = m.shape[0], H.shape[0]
    means, covs = [m], [P]
    for t in range(T - 1):
        means.append(Phi[t] @ means[-1] + c[t])
        covs.append(Phi[t] @ covs[-1] @ Phi[t].T + Qn[t])
    # Cov(x_s, x_t) = covs[s] (Phi_{t-1} ... Phi_s)^T for s <= t
    C = np.zeros((T * D, T * D))
    for s in range(T):
        M = np.eye(D)
        for t in range(s, T):
            if t > s:
                M = Phi[t - 1] @ M
            block = covs[s] @ M.T
            C[s * D : (s + 1) * D, t * D : (t + 1) * D] = block
            C[t * D : (t + 1) * D, s * D : (s + 1) * D] = block.T
    Hb = np.kron(np.eye(T), H)
    mean = Hb @ np.concatenate(means)
    cov = Hb @ C @ Hb.T + np.kron(np.eye(T), R)
    return mean, cov, O


def test_linear_sde_innovations_match_joint_gaussian():
    times = jnp.array([0.0, 0.4, 0.5, 1.3, 2.0])
    d = LinearSDE(
        jnp.array([[-1.0, 0.5], [-0.3, -0.8]]),
        jnp.array([0.2, 0.0]),
        jnp.array([[0.6], [0.3]]),
        jnp.array([[1.0, 0.0]]),
        jnp.array([[0.1]]),
        times,
    )
    T = len(times)
    y = jnp.array([[0.3], [0.1], [-0.4], [0.5], [0.2]])
    terms, total = _pointwise(d, y)
    assert terms.shape == (T,)
    np.testing.assert_allclose(float(terms.sum()), float(total), rtol=1e-5)
    mean, cov, O = _joint_gaussian(d, T)
    yv = np.asarray(y, np.float64).reshape(-1)
    prefix = [
        multivariate_normal(mean[: (t + 1) * O], cov[: (t + 1) * O, : (t + 1) * O]).logpdf(
            yv[: (t + 1) * O]
        )
        for t in range(T)
    ]
    np.testing.assert_allclose(np.asarray(terms), np.diff(prefix, prepend=0.0), atol=2e-4)
