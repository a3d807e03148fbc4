"""Poisson tau-leaping of reaction networks (Gillespie 2001): pure JAX, no NumPyro.

Conventions (network, rates, dtypes, static structure) as in :mod:`probdyn.kernels.ssa`,
which re-exports :func:`tau_leap`.

:func:`tau_leap` is fixed-step Poisson tau-leaping (Gillespie 2001): over a step
:math:`\\tau` each reaction fires :math:`\\mathrm{Poisson}(h_j(x)\\tau)` times. Counts
that would go negative are clipped to zero, the simplest fix (it biases the mean upwards
where it triggers, and it can break conservation laws). The weak error is
:math:`O(\\tau)`; for networks with linear propensities the mean follows exactly the
explicit Euler scheme of the mean ODE (as long as clipping does not trigger).

References
----------
D. T. Gillespie, "Approximate accelerated stochastic simulation of chemically reacting
systems", J. Chem. Phys. 115(4), 1716-1733, 2001.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from probdyn.kernels._checks import check_times, concrete
from probdyn.kernels.network import (
    Network,
    PropensityFn,
    check_obs_times,
    check_simulation_inputs,
)

Array = jax.Array

__all__ = ["tau_leap"]

# tau-leap updates are checked in floating point: below this bound an int32 sum cannot wrap
_TAU_SAFE = 2.0e9


@partial(jax.jit, static_argnames=("net",))
def _tau_leap(rng_key, x0, t0, times, rates, tau, *, net):
    V = jnp.asarray(net.stoichiometry, jnp.int32)
    Vf = jnp.asarray(net.stoichiometry, rates.dtype)
    prop = net.propensity
    starts = jnp.concatenate([t0[None], times[:-1]])
    tau_ok = (tau > 0) & jnp.isfinite(tau)  # checked eagerly when concrete

    def interval(carry, xs):
        x, step, bad = carry
        t_a, t_b = xs
        n = jnp.where(tau_ok, jnp.maximum(jnp.ceil((t_b - t_a) / tau), 1), 1).astype(jnp.int32)

        def leap(k, c):
            x, bad = c
            # grid points computed by multiplication: no accumulated round-off
            s = t_a + k * tau
            e = jnp.where(k + 1 >= n, t_b, jnp.minimum(t_a + (k + 1) * tau, t_b))
            lam = prop(x.astype(rates.dtype), rates) * (e - s)
            # every count, and the new state, checked in floating point before the int32
            # update (which is then exact): a step that could wrap stops the path
            bad = bad | ~(jnp.all(lam >= 0) & jnp.all(lam < _TAU_SAFE))
            counts = jax.random.poisson(jax.random.fold_in(rng_key, step + k), lam)
            new_f = x.astype(rates.dtype) + counts.astype(rates.dtype) @ Vf
            bad = bad | jnp.any(new_f >= _TAU_SAFE)
            x_new = jnp.maximum(x + counts.astype(jnp.int32) @ V, 0)
            return jnp.where(bad, x, x_new), bad

        x, bad = lax.fori_loop(0, n, leap, (x, bad | ~tau_ok))
        return (x, step + n, bad), jnp.where(bad, -1, x)

    (_, _, bad), states = lax.scan(interval, (x0, jnp.int32(0), jnp.bool_(False)), (starts, times))
    return states, bad


def tau_leap(
    rng_key: Array,
    x0: ArrayLike,
    times: ArrayLike,
    stoichiometry: Network | ArrayLike,
    rates: ArrayLike,
    *,
    reactants: ArrayLike | None = None,
    propensity_fn: PropensityFn | None = None,
    tau: ArrayLike,
    t0: ArrayLike = 0.0,
    return_overflow: bool = False,
) -> Array | tuple[Array, Array]:
    """Fixed-step Poisson tau-leaping (Gillespie 2001), read at observation times.

    Each interval :math:`[t_{k-1}, t_k]` (with :math:`t_{-1} = t_0`) is cut into
    :math:`\\lceil (t_k - t_{k-1}) / \\tau \\rceil` steps of length :math:`\\tau` (the
    last one shorter, so that every observation time is hit exactly); over a step of
    length :math:`\\delta`,

    .. math::

        x \\leftarrow \\max\\Big(0,\\; x + \\sum_j K_j \\nu_j\\Big), \\qquad
        K_j \\sim \\mathrm{Poisson}(h_j(x)\\,\\delta).

    Clipping at zero is the simplest non-negativity fix; it is biased where it triggers
    (choose :math:`\\tau` so that :math:`h_j \\tau` is small next to the reactant
    counts). The weak error is :math:`O(\\tau)`.

    Parameters
    ----------
    rng_key : Array
        PRNG key.
    x0 : ArrayLike of int, shape (S,)
        Counts at ``t0``.
    times : ArrayLike, shape (T,)
        Strictly increasing, finite observation times, all ``>= t0``.
    stoichiometry, rates, reactants, propensity_fn
        As for :func:`gillespie`.
    tau : ArrayLike, shape ()
        Step size (positive).
    t0 : ArrayLike, shape (), default 0
        Start time.
    return_overflow : bool, default False
        Also return the ``overflow`` flag.

    Returns
    -------
    states : Array of int32, shape (T, S)
        Approximate :math:`x(t_k)`. Counts never wrap: from the first step whose Poisson
        means or new counts reach 2e9 (near the int32 limit), or whose means are negative
        or NaN, or when ``tau`` is not positive (possible only under ``jit``; eagerly
        these raise), the path stops and every later row is -1 (an impossible count).
    overflow : Array of bool, shape ()
        With ``return_overflow=True``: True when that happened.
    """
    net, rates, x0, t0 = check_simulation_inputs(
        stoichiometry, rates, reactants, propensity_fn, x0, t0
    )
    times = check_obs_times(times, rates.dtype, t0)
    tau = check_times("tau", tau, rates.dtype, ndim=0)
    c = concrete(tau)
    if c is not None and not c > 0:
        raise ValueError(f"tau must be positive; got {float(c)}")
    states, over = _tau_leap(rng_key, x0, t0, times, rates, tau, net=net)
    return (states, over) if return_overflow else states
