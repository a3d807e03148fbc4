"""CTMC path simulation: forward (Gillespie) and through given states (bridges).

Both return paths in the *encoded* layout of :class:`probdyn.processes.MarkovJumpProcess`:
a float array (max_jumps + 1, 2) of rows (absolute time entered, state), row 0 = (t0,
initial state), padding repeating the last state at the window's end, and NaN as the last
time when the path overflowed its capacity. Pure JAX, one chain per call (``vmap`` for
batches); endpoint-conditioned bridges come from :func:`probdyn.kernels.ctmc.sample_bridge`.

References
----------
D. T. Gillespie, "Exact stochastic simulation of coupled chemical reactions", J. Phys.
Chem. 81(25), 1977.
A. Hobolth and E. A. Stone, "Simulation from endpoint-conditioned, continuous-time Markov
chains on a finite state space, with applications to molecular evolution", Annals of
Applied Statistics 3(3), 2009.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from probdyn.kernels.ctmc import sample_bridge, transition_matrices

Array = jax.Array

__all__ = ["sample_bridged_path", "simulate_path"]


@partial(jax.jit, static_argnames="max_jumps")
def simulate_path(
    rng_key: Array,
    generator: ArrayLike,
    initial_probs: ArrayLike,
    t0: ArrayLike,
    t_end: ArrayLike,
    max_jumps: int,
) -> Array:
    """Forward simulation of a CTMC path on [t0, t_end] by Gillespie's direct method.

    Unrolled to exactly ``max_jumps + 1`` events in one ``lax.scan`` (cost independent of
    the path, jit/vmap friendly): :math:`x_0 \\sim` ``initial_probs``, holding times
    :math:`\\mathrm{Exp}(q_{x})`, jumps to :math:`j \\ne x` with probability
    :math:`q_{xj}/q_x`; absorbing states hold forever (Gillespie, 1977).

    Parameters
    ----------
    rng_key : Array
    generator : ArrayLike, shape (K, K)
    initial_probs : ArrayLike, shape (K,)
    t0, t_end : ArrayLike, shape ()
        The window, ``t0 < t_end``.
    max_jumps : int, static
        Capacity of the encoded path.

    Returns
    -------
    Array, shape (max_jumps + 1, 2)
        The encoded path (layout above); last time NaN when more than ``max_jumps`` jumps
        fall in the window.
    """
    Q, pi = jnp.asarray(generator), jnp.asarray(initial_probs)
    K = Q.shape[0]
    exit_rates = -jnp.diagonal(Q)
    off = ~jnp.eye(K, dtype=bool)
    jump_logits = jnp.where(off & (Q > 0), jnp.log(jnp.where(Q > 0, Q, 1.0)), -jnp.inf)
    k0, k1 = jax.random.split(rng_key)
    x0 = jax.random.categorical(k0, jnp.log(pi)).astype(jnp.int32)

    def step(carry, key):
        x, t = carry
        ke, kx = jax.random.split(key)
        q = exit_rates[x]
        hold = jnp.where(q > 0, jax.random.exponential(ke, dtype=Q.dtype) / q, jnp.inf)
        x_new = jax.random.categorical(kx, jump_logits[x]).astype(jnp.int32)
        x_new = jnp.where(q > 0, x_new, x)
        t_new = t + hold
        return (x_new, t_new), (x_new, t_new)

    t0 = jnp.asarray(t0)
    _, (xs, ts) = lax.scan(step, (x0, t0), jax.random.split(k1, max_jumps + 1))
    # xs[i], ts[i]: the state entered by jump i+1 and its time
    overflow = ts[-1] < t_end
    inside = ts[:-1] < t_end
    n = jnp.sum(inside)
    states = jnp.concatenate([x0[None], xs[:-1]])
    times = jnp.concatenate([t0[None], ts[:-1]])
    i = jnp.arange(max_jumps + 1)
    states = jnp.where(i <= n, states, states[n])
    times = jnp.where(i <= n, times, t_end)
    times = times.at[-1].set(jnp.where(overflow, jnp.nan, times[-1]))
    return jnp.stack([times, states.astype(Q.dtype)], -1)


def sample_bridged_path(
    rng_key: Array,
    generator: ArrayLike,
    initial_probs: ArrayLike,
    times: ArrayLike,
    states: ArrayLike,
    *,
    max_jumps: int,
    t0: ArrayLike | None = None,
    max_jumps_per_interval: int | None = None,
    max_virtual_jumps: int | None = None,
) -> tuple[Array, Array]:
    """A continuous-time path through the given ``states`` at ``times``, by bridges.

    Between consecutive times an endpoint-conditioned path is drawn by
    :func:`sample_bridge` (Hobolth & Stone, 2009) and the pieces are concatenated. With
    ``t0`` the state at ``t0`` is first drawn from
    :math:`p(x_{t_0} = i \\mid x_{\\tau_0}) \\propto \\pi_i P(\\tau_0 - t_0)_{i x_{\\tau_0}}`
    and bridged to ``states[0]`` too. Given states drawn from the posterior at ``times``
    (FFBS), this is a posterior draw of the whole hidden path of a CTMC-HMM.

    Parameters
    ----------
    rng_key : Array
    generator : ArrayLike, shape (K, K)
    initial_probs : ArrayLike, shape (K,)
        Law of the state at ``t0`` (used only when ``t0`` is given).
    times : ArrayLike, shape (T,)
        Strictly increasing.
    states : ArrayLike of int, shape (T,)
    max_jumps : int, static
        Capacity of the whole path.
    t0 : ArrayLike, shape (), optional
        Start of the window, < ``times[0]``; default ``times[0]``.
    max_jumps_per_interval : int, optional
        Capacity of each bridge; default ``max_jumps``.
    max_virtual_jumps : int, optional
        Uniformization bound of each bridge; default ``2 * max_jumps_per_interval + 32``.

    Returns
    -------
    value : Array, shape (max_jumps + 1, 2)
        The encoded path (layout above) on [t0 or times[0], times[-1]].
    overflow : Array of bool, shape ()
        A bridge overflowed, or more than ``max_jumps`` jumps in all (last time NaN).
    """
    J = int(max_jumps if max_jumps_per_interval is None else max_jumps_per_interval)
    Nv = 2 * J + 32 if max_virtual_jumps is None else int(max_virtual_jumps)
    Q, pi, times = jnp.asarray(generator), jnp.asarray(initial_probs), jnp.asarray(times)
    z = jnp.asarray(states)
    T = times.shape[0]
    has_t0 = t0 is not None
    kz, kb = jax.random.split(rng_key)
    if has_t0:
        t0 = jnp.asarray(t0)
        P0 = transition_matrices(Q, (times[0] - t0)[None])[0]
        logits = jnp.log(pi) + jnp.log(P0[:, z[0]])
        z_start = jax.random.categorical(kz, logits).astype(jnp.int32)
        starts = jnp.concatenate([z_start[None], z[:-1]])
        ends, t_lo = z, jnp.concatenate([t0[None], times[:-1]])
        t_start = t0
    else:
        z_start, starts, ends, t_lo, t_start = z[0], z[:-1], z[1:], times[:-1], times[0]
    t_hi = times if has_t0 else times[1:]
    M = int(max_jumps) + 1
    out_s = jnp.full(M, z[-1], jnp.int32).at[0].set(z_start)
    out_t = jnp.full(M, times[-1], times.dtype).at[0].set(t_start)
    overflow = jnp.zeros((), bool)
    if T > 1 or has_t0:
        bridge = partial(sample_bridge, max_jumps=J, max_virtual_jumps=Nv)
        keys = jax.random.split(kb, starts.shape[0])
        b = jax.vmap(lambda k, a, e, dt: bridge(k, Q, a, e, dt))(keys, starts, ends, t_hi - t_lo)
        n_i = b.num_jumps
        offs = 1 + jnp.cumsum(n_i) - n_i
        r = jnp.arange(1, J + 1)
        pos = jnp.where(r[None] <= n_i[:, None], offs[:, None] + r[None] - 1, M)
        out_s = out_s.at[pos.ravel()].set(b.states[:, 1:].ravel(), mode="drop")
        out_t = out_t.at[pos.ravel()].set((t_lo[:, None] + b.times[:, 1:]).ravel(), mode="drop")
        overflow = jnp.any(b.overflow) | (jnp.sum(n_i) > int(max_jumps))
    out_t = out_t.at[-1].set(jnp.where(overflow, jnp.nan, out_t[-1]))
    return jnp.stack([out_t, out_s.astype(times.dtype)], -1), overflow
