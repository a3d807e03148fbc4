"""Autoregressive rollouts against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probdyn.nn import rollout


def test_deterministic_rollout_with_members_matches_closed_form():
    # u_{t+1} = a_s u_t + t : sample s uses member a_s
    a = jnp.array([0.5, 1.0, 2.0])
    u0 = jnp.array([[1.0], [-2.0]])

    def step(member, t, u, key):
        return member * u + t

    ens = rollout(step, u0, 4, rng_key=jax.random.PRNGKey(0), members=a, t0=1, dt=0.5)
    assert ens.samples.shape == (3, 2, 4, 1)
    np.testing.assert_allclose(ens.times, [0.5, 1.0, 1.5, 2.0])
    for s, a_s in enumerate(np.asarray(a)):
        for i, x0 in enumerate(np.asarray(u0[:, 0])):
            want = [x0]
            for t in range(1, 4):
                want.append(a_s * want[-1] + t)
            np.testing.assert_allclose(ens.samples[s, i, :, 0], want, rtol=1e-6)


def test_noise_per_step_and_per_trajectory():
    def step(member, t, u, key):
        return u + jax.random.normal(key, u.shape)

    u0 = jnp.zeros((2, 3))
    fixed = rollout(
        step, u0, 5, rng_key=jax.random.PRNGKey(1), num_samples=4, noise="per_trajectory"
    )
    inc = np.diff(np.asarray(fixed.samples), axis=2)
    np.testing.assert_allclose(inc, np.broadcast_to(inc[:, :, :1], inc.shape), atol=1e-6)
    fresh = rollout(step, u0, 5, rng_key=jax.random.PRNGKey(1), num_samples=4)
    inc = np.diff(np.asarray(fresh.samples), axis=2)
    assert np.all(np.abs(inc[:, :, 1:] - inc[:, :, :1]) > 0)
    # samples and trajectories get different noise
    assert np.all(np.abs(inc[0] - inc[1]) > 0) and np.all(np.abs(inc[:, 0] - inc[:, 1]) > 0)


def test_initial_noise_scale():
    u0 = jnp.array([[2.0, -4.0, 1.0]])
    ens = rollout(
        lambda m, t, u, k: u,
        u0,
        2,
        rng_key=jax.random.PRNGKey(2),
        num_samples=4000,
        initial_noise=0.01,
    )
    dev = np.asarray(ens.samples[:, 0, 0] - u0[0])
    # sd 0.01 * max|u0| = 0.04; standard error of the sd estimate ~ 0.04 / sqrt(2 * 12000)
    assert abs(dev.std() - 0.04) < 5 * 0.04 / np.sqrt(2 * dev.size)
    np.testing.assert_allclose(ens.mean.shape, (1, 2, 3))


def test_rollout_errors():
    step = lambda m, t, u, k: u  # noqa: E731
    with pytest.raises(ValueError, match="noise="):
        rollout(step, jnp.zeros((1, 2)), 3, rng_key=jax.random.PRNGKey(0), noise="never")
    with pytest.raises(ValueError, match="num_samples=2 differs"):
        rollout(
            step,
            jnp.zeros((1, 2)),
            3,
            rng_key=jax.random.PRNGKey(0),
            num_samples=2,
            members=jnp.ones(3),
        )
    with pytest.raises(ValueError, match="num_timesteps=0"):
        rollout(step, jnp.zeros((1, 2)), 0, rng_key=jax.random.PRNGKey(0))


def test_second_call_reuses_the_compiled_rollout():
    traces = []

    def step(member, t, u, key):
        traces.append(1)  # runs only while tracing
        return member * u + jax.random.normal(key, u.shape)

    u0 = jnp.ones((2, 3))
    first = rollout(step, u0, 4, rng_key=jax.random.PRNGKey(0), members=jnp.array([0.5, 2.0]))
    assert len(traces) == 1
    # new member values and key, same shapes: no new trace, and the new values are used
    second = rollout(step, u0, 4, rng_key=jax.random.PRNGKey(1), members=jnp.array([1.0, 3.0]))
    assert len(traces) == 1
    assert not np.allclose(first.samples, second.samples)
    # a different length is a new program
    rollout(step, u0, 5, rng_key=jax.random.PRNGKey(0), members=jnp.array([0.5, 2.0]))
    assert len(traces) == 2
