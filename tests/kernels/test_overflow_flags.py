"""Counts never wrap, runaway paths are flagged (issue 9, item 6).

References: exact integer arithmetic (the int32 limit), and the explicit definitions of
the flags: ``overflow`` True and no row past the int32 range for Gillespie; rows of -1
after the flag for tau-leaping; NaN rows and the flag for the chemical Langevin and SDE
simulators.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from probdyn.kernels import sde as S
from probdyn.processes.reaction import ReactionNetwork

KEY = jax.random.PRNGKey(0)
BIRTH = ReactionNetwork.from_equations(["A -> 2 A"])
INT_MAX = np.iinfo(np.int32).max


def test_tau_leap_issue_reproduction_is_flagged():
    states, over = BIRTH.tau_leap(KEY, [1], [1.0, 2.0, 3.0], [10.0], tau=0.01, return_overflow=True)
    states = np.asarray(states)
    assert bool(over)
    assert states[0, 0] > 0 and states[-1, 0] == -1  # -1 marks rows after the overflow
    assert np.all((states >= 0) | (states == -1))  # never a wrapped negative count
    # a modest run is untouched
    ok, over = BIRTH.tau_leap(KEY, [1], [1.0, 2.0], [1.0], tau=0.01, return_overflow=True)
    assert not bool(over) and np.all(np.asarray(ok) > 0)


def test_gillespie_stops_at_the_int32_limit():
    path = BIRTH.gillespie(KEY, [INT_MAX - 4], 1.0, [1.0], max_jumps=20)
    x = np.asarray(path.states[:, 0]).astype(np.int64)
    assert bool(path.overflow)
    assert int(path.num_jumps) == 4 and x.max() == INT_MAX and x.min() == INT_MAX - 4
    states, over = BIRTH.gillespie_at(KEY, [INT_MAX - 4], [0.5, 1.0], [1.0], max_jumps=20)
    assert bool(over) and np.all(np.asarray(states) > 0)


def test_invalid_rates_and_tau_under_jit_are_flagged():
    run = jax.jit(lambda r: BIRTH.gillespie(KEY, [10], 1.0, r, max_jumps=20).overflow)
    assert bool(run(jnp.array([jnp.nan]))) and bool(run(jnp.array([-1.0])))
    assert not bool(run(jnp.array([1.0])))
    at = jax.jit(lambda r: BIRTH.gillespie_at(KEY, [10], [0.5, 1.0], r, max_jumps=50)[1])
    assert bool(at(jnp.array([jnp.nan]))) and not bool(at(jnp.array([1.0])))
    leap = jax.jit(lambda t, r: BIRTH.tau_leap(KEY, [10], [1.0], r, tau=t, return_overflow=True))
    for tau, r in [(-0.1, 1.0), (jnp.nan, 1.0), (0.1, jnp.nan), (0.1, -1.0)]:
        states, over = leap(jnp.float32(tau), jnp.array([r], jnp.float32))
        assert bool(over) and np.all(np.asarray(states) == -1), (tau, r)


def test_chemical_langevin_explosion_is_flagged():
    out, over = BIRTH.chemical_langevin(
        KEY, [1.0], [1.0, 5.0, 10.0], [20.0], dt=0.01, return_overflow=True
    )
    out = np.asarray(out)
    assert bool(over) and np.isnan(out[-1]).all() and np.isfinite(out[0]).all()
    _, over = BIRTH.chemical_langevin(KEY, [1.0], [1.0, 2.0], [1.0], dt=0.01, return_overflow=True)
    assert not bool(over)


def test_sde_reaching_inf_is_nan_and_flagged():
    sde = S.SDE(drift=lambda t, y, p: y**3, diffusion=lambda t, y, p: jnp.ones_like(y))
    times = jnp.linspace(0.0, 2.0, 21)
    path, over = S.simulate(KEY, sde, jnp.array([2.0]), times, None, return_overflow=True)
    path = np.asarray(path)
    first = np.argmax(~np.isfinite(path[:, 0]))
    assert bool(over) and first > 0
    assert np.isnan(path[first:]).all()  # NaN for good, never inf
    assert np.isfinite(path[:first]).all()
    calm = S.SDE(drift=lambda t, y, p: -y, diffusion=lambda t, y, p: jnp.ones_like(y))
    _, over = S.simulate(KEY, calm, jnp.array([2.0]), times, None, return_overflow=True)
    assert not bool(over)


def test_sde_path_names_the_site_and_step_that_blew_up():
    import pytest
    from numpyro.handlers import seed

    from probdyn.processes import sde_path

    sde = S.SDE(drift=lambda t, y, p: y**3, diffusion=lambda t, y, p: jnp.ones_like(y))
    with seed(rng_seed=0), pytest.warns(RuntimeWarning, match=r"sde_path 'x'.*grid step \d+"):
        path = sde_path("x", sde, jnp.array([2.0]), jnp.linspace(0.0, 2.0, 21))
    assert np.isnan(np.asarray(path)[-1]).all()
