"""MarkovJumpProcess (processes/mjp.py) against the path kernel, closed forms, Monte Carlo."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import scipy.linalg
import scipy.stats
from numpyro.infer.util import log_density

from probdyn.kernels.ctmc import path_log_likelihood
from probdyn.processes.mjp import MarkovJumpProcess, mean_dwell_times


def _occupation(value, K, t_end):
    """Time in each state of encoded paths (..., M+1, 2) over [value[0, 0], t_end]."""
    t, s = np.asarray(value[..., 0]), np.asarray(value[..., 1]).astype(int)
    nxt = np.concatenate([t[..., 1:], np.full(t.shape[:-1] + (1,), t_end)], -1)
    return np.stack([((nxt - t) * (s == k)).sum(-1) for k in range(K)], -1)


def test_mjp_log_prob_matches_kernel_and_closed_form(x64):
    Q = np.array([[-1.5, 1.0, 0.5], [0.3, -0.5, 0.2], [2.0, 1.0, -3.0]])
    pi = np.array([0.2, 0.5, 0.3])
    d = MarkovJumpProcess(jnp.asarray(Q), jnp.asarray(pi), t_end=4.0, max_jumps=6, t0=1.0)
    # no jump: exp holding censored at t_end
    v0 = MarkovJumpProcess.encode([1], [], t_end=4.0, max_jumps=6, t0=1.0)
    np.testing.assert_allclose(float(d.log_prob(v0)), np.log(0.5) - 0.5 * 3.0, rtol=1e-12)
    states, jt = [2, 0, 1, 2], [1.5, 2.0, 3.25]
    v = MarkovJumpProcess.encode(states, jt, t_end=4.0, max_jumps=6, t0=1.0)
    closed = np.log(0.3) + np.log(2.0 * 1.0 * 0.2) - 3.0 * 0.5 - 1.5 * 0.5 - 0.5 * 1.25 - 3.0 * 0.75
    np.testing.assert_allclose(float(d.log_prob(v)), closed, rtol=1e-12)
    ker = path_log_likelihood(
        Q,
        pi,
        jnp.array(states + [2] * 3),
        jnp.array([0.0] + [t - 1 for t in jt] + [3.0] * 3),
        3.0,
        3,
    )
    np.testing.assert_allclose(float(d.log_prob(v)), float(ker), rtol=1e-12)
    dec = MarkovJumpProcess.decode(v)
    np.testing.assert_array_equal(dec.states, [2, 0, 1, 2, 2, 2, 2])
    np.testing.assert_allclose(dec.times, [1.0, 1.5, 2.0, 3.25, 4.0, 4.0, 4.0])
    assert int(dec.num_jumps) == 3 and not bool(dec.overflow)
    # a virtual row (no state change) in the middle changes nothing
    vv = v.at[2:].set(v[1:-1]).at[2, 0].set(1.7)
    np.testing.assert_allclose(float(d.log_prob(vv)), closed, rtol=1e-12)
    # batched generator, gradient w.r.t. the generator matches the closed form
    db = MarkovJumpProcess(jnp.stack([Q, 2 * Q]), jnp.asarray(pi), 4.0, 6, t0=1.0)
    assert db.batch_shape == (2,) and db.log_prob(v).shape == (2,)
    np.testing.assert_allclose(db.log_prob(v)[1], closed + 3 * np.log(2) - 5.125, rtol=1e-12)
    g = jax.grad(
        lambda s: d.__class__(jnp.asarray(Q) * s, jnp.asarray(pi), 4.0, 6, t0=1.0).log_prob(v)
    )(1.0)
    np.testing.assert_allclose(g, 3.0 - 5.125, rtol=1e-12)


def test_mjp_samples_dwell_times_jumps_and_occupation():
    Q = np.array([[-1.5, 1.0, 0.5], [0.3, -0.5, 0.2], [2.0, 1.0, -3.0]])
    pi_st = np.asarray(mean_dwell_times(jnp.asarray(Q)))  # smoke: 1/q_i
    np.testing.assert_allclose(pi_st, 1 / np.array([1.5, 0.5, 3.0]), rtol=1e-6)
    # first holding time from state 0 ~ Exp(1.5) (t_end >> 1/1.5: censoring ~ e^-30)
    d = MarkovJumpProcess(jnp.asarray(Q), jnp.array([1.0, 0.0, 0.0]), 20.0, 64)
    x = d.sample(jax.random.PRNGKey(0), (4000,))
    dec = MarkovJumpProcess.decode(x)
    assert not np.any(dec.overflow)
    first = np.asarray(dec.times[:, 1])
    assert scipy.stats.kstest(first, scipy.stats.expon(scale=1 / 1.5).cdf).pvalue > 1e-3
    # first destination ~ q_0j / q_0
    dest = np.bincount(np.asarray(dec.states[:, 1]), minlength=3) / 4000
    p = np.array([0.0, 1.0, 0.5]) / 1.5
    assert np.all(np.abs(dest - p) <= 5 * np.sqrt(p * (1 - p) / 4000))
    # stationary start: expected occupation fractions are exactly the stationary dist
    stat = np.asarray(d.stationary_distribution, np.float64)
    np.testing.assert_allclose(stat @ Q, 0.0, atol=1e-6)
    ds = MarkovJumpProcess(jnp.asarray(Q), jnp.asarray(stat), 30.0, 128)
    xs = ds.sample(jax.random.PRNGKey(1), (1000,))
    assert not np.any(MarkovJumpProcess.decode(xs).overflow)
    frac = _occupation(np.asarray(xs, np.float64), 3, 30.0) / 30.0
    se = frac.std(0) / np.sqrt(1000)
    assert np.all(np.abs(frac.mean(0) - stat) < 5 * se)
    # samples evaluate to finite log-densities under jit/vmap
    lp = jax.jit(ds.log_prob)(xs[:10])
    assert lp.shape == (10,) and np.all(np.isfinite(lp))


def test_mjp_overflow_nan_and_validation():
    Q = jnp.array([[-5.0, 5.0], [5.0, -5.0]])
    d = MarkovJumpProcess(Q, jnp.array([0.5, 0.5]), 10.0, 8, validate_args=False)
    x = d.sample(jax.random.PRNGKey(0), (3,))
    assert np.all(MarkovJumpProcess.decode(x).overflow)
    assert np.all(np.isnan(np.asarray(x[:, -1, 0])))
    assert np.all(np.isnan(np.asarray(d.log_prob(x))))
    dv = MarkovJumpProcess(Q, jnp.array([0.5, 0.5]), 10.0, 8, validate_args=True)
    with pytest.raises(ValueError, match="truncated"):
        dv.log_prob(x)
    assert np.all(np.isnan(np.asarray(jax.jit(dv.log_prob)(x))))  # traced: NaN, no raise
    ok = MarkovJumpProcess.encode([0, 1], [2.0], t_end=10.0, max_jumps=8)
    with pytest.raises(ValueError, match="t0"):
        dv.log_prob(ok.at[0, 0].set(0.5))
    with pytest.raises(ValueError, match="states"):
        dv.log_prob(ok.at[1, 1].set(2.0))
    with pytest.raises(ValueError, match="non-decreasing"):
        dv.log_prob(ok.at[1, 0].set(11.0))
    with pytest.raises(ValueError, match="shape"):
        dv.log_prob(ok[:5])
    with pytest.raises(ValueError, match="max_jumps"):
        MarkovJumpProcess.encode([0, 1, 0], [1.0, 2.0], t_end=10.0, max_jumps=1)
    with pytest.raises(ValueError, match="jump_times"):
        MarkovJumpProcess.encode([0, 1, 0], [2.0, 1.0], t_end=10.0, max_jumps=4)


def test_mjp_grad_through_log_density(x64):
    v = MarkovJumpProcess.encode([0, 1, 0, 1], [0.4, 1.0, 2.2], t_end=3.0, max_jumps=8)

    def model(value):
        log_k = numpyro.sample("log_k", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        k = jnp.exp(log_k)
        Q = jnp.array([[-k[0], k[0]], [k[1], -k[1]]])
        numpyro.sample("path", MarkovJumpProcess(Q, jnp.array([1.0, 0.0]), 3.0, 8), obs=value)

    def lj(x):
        return log_density(model, (v,), {}, {"log_k": x})[0]

    x = jnp.array([0.1, -0.3])
    g = jax.grad(lj)(x)
    # d/dlog k0 of [2 log k0 - k0 * 1.6] and of [log k1 - k1 * 1.4], minus the prior's x
    k = np.exp(np.asarray(x))
    np.testing.assert_allclose(g, [2 - k[0] * 1.6 - x[0], 1 - k[1] * 1.4 - x[1]], rtol=1e-10)
