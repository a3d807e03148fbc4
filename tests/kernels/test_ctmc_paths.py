"""Tests for probdyn.kernels.ctmc_paths (simulate_path, sample_bridged_path) and
probdyn.kernels.ctmc.mean_dwell_times: closed forms and path invariants (the processes'
tests compare the same code against enumeration and expected occupations)."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from probdyn.kernels import ctmc as C
from probdyn.kernels import ctmc_paths as CP


def test_mean_dwell_times_closed_form():
    Q = np.array([[-2.0, 2.0, 0.0], [0.5, -1.5, 1.0], [0.0, 0.0, 0.0]])
    d = np.asarray(C.mean_dwell_times(Q))
    np.testing.assert_allclose(d[:2], [0.5, 1 / 1.5])
    assert np.isinf(d[2])  # absorbing (the sign follows the zero's: -1/+0 = -inf)
    batched = np.asarray(C.mean_dwell_times(np.stack([Q, 2 * Q])))
    np.testing.assert_allclose(batched[1, :2], [0.25, 1 / 3.0])
    with pytest.raises(ValueError, match="generator must have shape"):
        C.mean_dwell_times(np.ones(3))


def test_simulate_path_absorption_time_is_exponential():
    """0 -> 1 at rate 1.3, 1 absorbing: one jump at an Exp(1.3) time (censored at t_end)."""
    Q = jnp.array([[-1.3, 1.3], [0.0, 0.0]])
    pi = jnp.array([1.0, 0.0])
    keys = jax.random.split(jax.random.key(0), 2000)
    paths = jax.vmap(CP.simulate_path, (0, None, None, None, None, None))(
        keys, Q, pi, jnp.asarray(0.0), jnp.asarray(4.0), 3
    )
    paths = np.asarray(paths)
    assert paths.shape == (2000, 4, 2) and not np.isnan(paths).any()
    jumped = paths[:, 1, 1] == 1
    t = paths[jumped, 1, 0]
    # censored exponential: P(jump before 4) and the conditional law of the time
    p = 1 - np.exp(-1.3 * 4.0)
    assert abs(jumped.mean() - p) < 4 * np.sqrt(p * (1 - p) / 2000)
    cdf = lambda x: (1 - np.exp(-1.3 * x)) / p  # noqa: E731
    assert scipy.stats.kstest(t, cdf).pvalue > 0.01
    # padding repeats the last state at t_end
    assert np.all(paths[:, 2:, 0] == 4.0) and np.all(paths[:, 2:, 1] == paths[:, 1:2, 1])


def test_simulate_path_overflow_marks_nan():
    Q = jnp.array([[-50.0, 50.0], [50.0, -50.0]])
    out = CP.simulate_path(jax.random.key(1), Q, jnp.array([0.5, 0.5]), 0.0, 10.0, 4)
    assert np.isnan(out[-1, 0])


@pytest.mark.parametrize("t0", [-0.5])  # t0=None: tests/processes/test_observed_ctmc.py
def test_sample_bridged_path_passes_through_states(t0):
    Q = jnp.array([[-1.0, 0.6, 0.4], [0.3, -0.8, 0.5], [0.9, 0.1, -1.0]])
    pi = jnp.array([0.2, 0.3, 0.5])
    times = jnp.array([0.0, 0.4, 1.5, 1.7])
    states = jnp.array([0, 2, 2, 1])
    draw = jax.jit(partial(CP.sample_bridged_path, max_jumps=24, t0=t0))
    value, overflow = draw(jax.random.key(2), Q, pi, times, states)
    assert value.shape == (25, 2) and not bool(overflow)
    t, s = np.asarray(value[:, 0]), np.asarray(value[:, 1]).astype(int)
    assert t[0] == (times[0] if t0 is None else t0) and np.all(np.diff(t) >= 0)
    for tau, z in zip(np.asarray(times), np.asarray(states), strict=True):
        # the state in force at tau (last row entered at or before tau)
        assert s[np.searchsorted(t, tau, side="right") - 1] == z
