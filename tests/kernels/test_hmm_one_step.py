"""hmm_one_step_log_predictives against brute-force enumeration and the sequence value."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from probdyn.kernels import hmm_log_likelihood as _loglik
from probdyn.kernels import hmm_one_step_log_predictives as _one_step

# compiled: eager dispatch of every small op is what costs time here
hmm_one_step_log_predictives = jax.jit(_one_step, static_argnames=("parallel", "robust"))
hmm_log_likelihood = jax.jit(_loglik, static_argnames=("parallel", "robust"))

PATHS = [
    {"parallel": False, "robust": None},
    {"parallel": True, "robust": None},
    {"parallel": False, "robust": True},  # log-domain recursion
]


def _brute_prefix_logliks(pi, A, ll):
    """log p(y_{0:t}) for every t by enumerating all K^(t+1) state paths."""
    T, K = ll.shape
    out = []
    for t in range(T):
        terms = []
        for path in itertools.product(range(K), repeat=t + 1):
            lp = np.log(pi[path[0]]) + sum(ll[s, path[s]] for s in range(t + 1))
            lp += sum(np.log(A[path[s], path[s + 1]]) for s in range(t))
            terms.append(lp)
        out.append(logsumexp(terms))
    return np.asarray(out)


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(3)
    K, T = 3, 6
    pi = rng.dirichlet(np.ones(K))
    A = rng.dirichlet(np.ones(K) * 2, size=K)
    ll = rng.normal(size=(T, K)) * 2.0
    return pi, A, ll


@pytest.mark.parametrize("kw", PATHS)
def test_one_step_terms_match_enumeration(tiny, kw):
    pi, A, ll = tiny
    prefix = _brute_prefix_logliks(pi, A, ll)
    ref = np.diff(prefix, prepend=0.0)  # log p(y_t | y_{0:t-1})
    got = hmm_one_step_log_predictives(jnp.asarray(pi), jnp.asarray(A), jnp.asarray(ll), **kw)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kw", [PATHS[0], PATHS[2]])
def test_one_step_terms_sum_to_log_likelihood_with_mask_and_length(kw):
    rng = np.random.default_rng(4)
    K, T = 4, 30
    pi = jnp.asarray(rng.dirichlet(np.ones(K)))
    A = jnp.asarray(rng.dirichlet(np.ones(K), size=(T - 1, K)))  # time-varying
    ll = jnp.asarray(rng.normal(size=(T, K)) * 3.0)
    mask = jnp.asarray(rng.random(T) > 0.2)
    terms = hmm_one_step_log_predictives(pi, A, ll, mask=mask, length=22, **kw)
    total = hmm_log_likelihood(pi, A, ll, mask=mask, length=22, **kw)
    assert terms.shape == (T,)
    np.testing.assert_allclose(float(jnp.sum(terms)), float(total), rtol=1e-5)
    # no emission at masked steps and none past the length: those terms are 0
    t = np.arange(T)
    zero = ~np.asarray(mask) | (t >= 22)
    np.testing.assert_allclose(np.asarray(terms)[zero], 0.0, atol=1e-6)
    assert np.all(np.abs(np.asarray(terms)[~zero]) > 1e-3)


def test_underflow_fallback_matches_enumeration():
    # identity transitions: state 1 falls to e^-200 after step 0 (0 in float32) and then
    # explains step 1 alone; the fast pass fails its checks and the log domain answers
    pi = np.array([0.5, 0.5])
    A = np.eye(2)
    ll = np.array([[0.0, -200.0], [-300.0, 0.0], [0.0, 0.0]])
    with np.errstate(divide="ignore"):
        ref = np.diff(_brute_prefix_logliks(pi, A, ll), prepend=0.0)
    args = (jnp.asarray(pi), jnp.asarray(A), jnp.asarray(ll))
    got = hmm_one_step_log_predictives(*args)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5)
    assert not np.isfinite(float(hmm_one_step_log_predictives(*args, robust=False)[1]))


def test_one_step_rejects_bad_shapes():
    with pytest.raises(ValueError, match="initial_probs"):
        _one_step(jnp.ones(3) / 3, jnp.eye(2), jnp.zeros((4, 2)))
