"""Stochastic simulation of reaction networks: pure JAX, no NumPyro.

A network of R reactions over S species is given by its ``stoichiometry`` (R, S) (the net
change of each species when reaction j fires) and either mass-action reactant orders
``reactants`` (R, S) or a user ``propensity_fn(x, rates) -> (R,)``; rate constants
``rates`` (R,) are the (traced, differentiable) parameters. Network structure is static:
a :class:`probdyn.kernels.network.Network` (frozen, hashable), or the concrete integer
arrays ``stoichiometry`` and ``reactants`` (or a hashable ``propensity_fn``) that build
one; ``max_jumps`` is a Python int. All functions act on one path; batch them
with :func:`jax.vmap`. Counts are ``int32``; times and propensities take the floating
dtype of ``rates`` (float32 unless x64 is enabled; with float32, a time horizon of more
than ~1e6 mean waiting times loses resolution, so enable x64 for such runs).

Exact simulation
----------------
:func:`gillespie` and :func:`gillespie_at` implement the direct method of Gillespie
(1977): with propensities :math:`h_j(x)` and total :math:`h_0(x) = \\sum_j h_j(x)`, the
waiting time to the next event is :math:`\\mathrm{Exp}(h_0)` and reaction j fires with
probability :math:`h_j / h_0`. Each event costs one propensity evaluation, one
exponential draw and one uniform draw; the reaction is chosen by comparing the uniform
(times :math:`h_0`) with the cumulative sum of propensities, which (measured) beats a
Gumbel-max :func:`jax.random.categorical` on log-propensities. Events are drawn in
blocks of four: event i uses row ``i % 4`` of ``uniform(fold_in(rng_key, i // 4), (4,
2))``, so :func:`gillespie` and :func:`gillespie_at` draw the same path for the same key,
and one ``while_loop`` iteration runs a whole block (one threefry call and one loop trip
per four events: 1.8x the events per second of one draw per event on XLA:CPU). The loop
stops at ``t_end``, when the network is absorbed (:math:`h_0 = 0`) or after
``max_jumps`` events; in the last case the ``overflow`` flag says that the path is
truncated. The flag is exact: the next event is always drawn before the loop stops, so
``overflow`` is False whenever the path is complete, even with exactly ``max_jumps``
events.

Under :func:`jax.vmap`, a while loop runs until *every* path in the batch has finished;
finished paths idle (their updates are masked), so a batch costs about as many
iterations as its busiest path. This is inherent to batched while loops: keep batches
homogeneous (same parameters and horizon) for throughput, and size ``max_jumps`` for
the busiest path you accept. JAX's generic batching of a while loop would also mask the
whole carry, path buffers included, at every event (O(B ``max_jumps``) work per event);
:func:`gillespie` therefore carries its own batching rule
(:func:`jax.custom_batching.custom_vmap`) that runs one loop over the batch and lets
finished paths write to spare rows past their end, O(B) per event, with draws identical to
the single-path loop (which is this loop on a batch of one). (Nested ``vmap`` falls back
to the generic rule: flatten the batch instead.) :func:`gillespie_at` carries only O(S)
state and needs no such rule. As with any while loop, forward-mode derivatives (``jvp``)
pass through the simulators and reverse-mode ones do not; differentiate
:func:`path_log_likelihood` instead.

Approximate simulation
----------------------
:func:`tau_leap` (Poisson tau-leaping, Gillespie 2001) lives in
:mod:`probdyn.kernels.tau_leaping` and is re-exported here.

References
----------
D. T. Gillespie, "Exact stochastic simulation of coupled chemical reactions",
J. Phys. Chem. 81(25), 2340-2361, 1977.

D. T. Gillespie, "Approximate accelerated stochastic simulation of chemically reacting
systems", J. Chem. Phys. 115(4), 1716-1733, 2001.

D. J. Wilkinson, *Stochastic Modelling for Systems Biology*, 3rd ed., CRC Press, 2018
(mass-action convention and the path likelihood, ch. 6 and 10).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from probdyn.kernels._checks import check_times, safe_log
from probdyn.kernels.network import (
    Network,
    PropensityFn,
    as_network,
    check_obs_times,
    check_simulation_inputs,
    mass_action_propensities,
)
from probdyn.kernels.tau_leaping import tau_leap

Array = jax.Array
__all__ = [
    "Network",
    "Path",
    "mass_action_propensities",
    "gillespie",
    "gillespie_at",
    "tau_leap",
    "path_log_likelihood",
]


class Path(NamedTuple):
    """A reaction path in fixed-size buffers (output of :func:`gillespie`).

    Entry 0 is the initial condition; entries ``1..num_jumps`` are the events. Padding:
    times past ``num_jumps`` equal ``t_end``, states repeat the final state, and padded
    reaction indices are -1. The state at time t is ``states[k]`` with k the last index
    such that ``times[k] <= t`` (paths are right-continuous).

    Attributes
    ----------
    times : Array, shape (max_jumps + 1,)
        ``times[0] = t0``, then event times, increasing.
    states : Array of int32, shape (max_jumps + 1, S)
        State just after each event (``states[0] = x0``).
    reaction : Array of int32, shape (max_jumps,)
        Index of the reaction that fired at event ``i + 1``.
    num_jumps : Array of int32, shape ()
        Number of events in ``[t0, t_end]``.
    overflow : Array of bool, shape ()
        True when the path is truncated and must not be used as a sample: ``max_jumps``
        events were used up before ``t_end``, the next event would take a count past the
        int32 range (counts never wrap), or a propensity was negative or not finite
        (e.g. NaN or negative rates under ``jit``, where they cannot raise).
    """

    times: Array
    states: Array
    reaction: Array
    num_jumps: Array
    overflow: Array


# --------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------


_INT_MAX = np.iinfo(np.int32).max


def _max_jumps(max_jumps):
    if isinstance(max_jumps, bool) or not isinstance(max_jumps, int | np.integer):
        raise TypeError(f"max_jumps must be a Python int; got {type(max_jumps).__name__}")
    if max_jumps < 1:
        raise ValueError(f"max_jumps must be at least 1; got {max_jumps}")
    return int(max_jumps)


# --------------------------------------------------------------------------------------
# the event draw
# --------------------------------------------------------------------------------------


# events handled per loop iteration, and per random draw (one threefry call for all of them)
_BLOCK = 4
# blocks per inner loop of :func:`_gillespie_batch` (rows staged in small buffers)
_CHUNK = 16


def _uniforms(rng_key, block, dtype):
    """The (_BLOCK, 2) uniforms of events ``block * _BLOCK ... block * _BLOCK + _BLOCK - 1``."""
    return jax.random.uniform(jax.random.fold_in(rng_key, block), (_BLOCK, 2), dtype)


def _event(u, rates, *, prop, R, x):
    """Waiting time and reaction index from state x with uniforms u (2,): one propensity call.

    The waiting time is NaN when a propensity is negative or not finite (NaN or negative
    rates under ``jit``, a propensity function that misbehaves): callers stop there and
    raise the ``overflow`` flag rather than report an absorbed path."""
    h = prop(x.astype(rates.dtype), rates)
    cum = jnp.cumsum(h)
    a0 = cum[-1]
    valid = jnp.all(h >= 0) & jnp.isfinite(a0)
    dt = jnp.where(valid, jnp.where(a0 > 0, -jnp.log1p(-u[0]) / a0, jnp.inf), jnp.nan)
    # u[1] < 1 so u[1] * a0 < a0 = cum[-1]: j < R, and h_j > 0 (cum strictly increases at j)
    j = jnp.minimum(jnp.sum(cum <= u[1] * a0, dtype=jnp.int32), R - 1)
    return dt, j


def _wraps(x, v):
    """True if the int32 counts ``x + v`` would leave the int32 range."""
    return jnp.any(jnp.where(v > 0, x > _INT_MAX - v, x < -_INT_MAX - 1 - v))


def _next_time(rng_key, rates, *, prop, R, n, t, x):
    """Time of event n (the one after the last fired) from state x: for the overflow flag."""
    u = _uniforms(rng_key, n // _BLOCK, rates.dtype)[n % _BLOCK]
    return t + _event(u, rates, prop=prop, R=R, x=x)[0]


# --------------------------------------------------------------------------------------
# exact simulation
# --------------------------------------------------------------------------------------


def _block_step(us, rates, t, x, n, live, t_stop, *, prop, V, M, first=None):
    """Up to _BLOCK events of one path from (t, x) with n events fired so far.

    Sub-step u tries event ``first + u`` (``first`` defaults to n, i.e. a block-aligned
    start) with uniforms ``us[u]``; it fires when the path is ``live``, the event index is
    at least n, below the cap M, and its time is ``<= t_stop``. The first failed try ends
    the path (``live`` False). Returns the new (t, x, n, live, over) and the per-sub-step
    (times, states, reactions) for the path buffers; ``over`` says that the try that
    failed did so only because of the cap.
    """
    Vj = jnp.asarray(V)
    R = V.shape[0]
    over = jnp.zeros((), bool)
    ts, xs, js = [], [], []
    for u in range(_BLOCK):
        dt, j = _event(us[u], rates, prop=prop, R=R, x=x)
        tn = t + dt
        tried = live if first is None else live & (first + u >= n)
        inside = tn <= t_stop  # False for tn = inf (absorbed) and NaN (invalid)
        # invalid propensities or counts that would wrap end the path, flagged like the cap
        bad = jnp.isnan(dt) | (inside & _wraps(x, Vj[j]))
        fire = tried & inside & (n < M) & ~bad
        over = over | (tried & ((inside & (n >= M)) | bad))
        live = live & (fire | ~tried)
        x = jnp.where(fire, x + Vj[j], x)
        t = jnp.where(fire, tn, t)
        n = n + fire.astype(n.dtype)
        ts.append(t)
        xs.append(x)
        js.append(j)
    return (t, x, n, live, over), (jnp.stack(ts), jnp.stack(xs), jnp.stack(js))


def _finish_path(t_end, M, n, x, times, states, reaction, over):
    idx = jnp.arange(M + 1)
    pad = idx > n[..., None]
    times = jnp.where(pad, t_end[..., None], times[..., : M + 1])
    states = jnp.where(pad[..., None], x[..., None, :], states[..., : M + 1, :])
    reaction = jnp.where(idx[:M] < n[..., None], reaction[..., :M], -1)
    return Path(times, states, reaction, n, over)


def _gillespie_single(rng_key, x0, t0, t_end, rates, *, V, prop, M):
    """Direct method for one path: :func:`_gillespie_batch` on a batch of one."""
    args = jax.tree.map(lambda a: a[None], (rng_key, x0, t0, t_end, rates))
    return jax.tree.map(lambda a: a[0], _gillespie_batch(*args, V=V, prop=prop, M=M))


def _gillespie_batch(keys, x0, t0, t_end, rates, *, V, prop, M):
    """Direct method for a batch of B paths (every argument has a leading B axis).

    Two nested loops: the inner one runs up to ``_CHUNK`` blocks of ``_BLOCK`` events and
    stages the new rows in small (B, C) buffers (C = ``_CHUNK * _BLOCK``); the outer one
    copies each chunk into the (B, M) path buffers at the rows after each path's last
    event. Writing every block straight into the large buffers costs about 3x more per
    event on XLA:CPU (measured: an update of a loop-carried buffer of more than a few
    hundred entries has a fixed cost of about 2 µs, whatever the size of the update).

    The loops run while any path is live; a path that has finished (or stops inside a
    chunk) keeps writing its unchanged last values to rows past its last event, which the
    padding overwrites at the end, so no step masks the path buffers: O(B) work per
    event. A plain ``vmap`` of a single-path loop would select over the whole carry,
    buffers included, at every iteration (O(B M)).
    """
    U, C = _BLOCK, _BLOCK * _CHUNK
    B, S = x0.shape
    dtype = rates.dtype
    times = jnp.zeros((B, M + C + 1), dtype).at[:, 0].set(t0)
    states = jnp.zeros((B, M + C + 1, S), jnp.int32).at[:, 0].set(x0)
    reaction = jnp.full((B, M + C), -1, jnp.int32)
    step = jax.vmap(partial(_block_step, prop=prop, V=V, M=M))
    uniforms = jax.vmap(_uniforms, in_axes=(0, 0, None))
    write = jax.vmap(lambda a, u, i: lax.dynamic_update_slice_in_dim(a, u, i, 0))

    def inner(c):
        (n, t, x, live, over), (bt, bx, bj), b = c
        us = uniforms(keys, n // U, dtype)
        (t, x, n, live, o), (ts, xs, js) = step(us, rates, t, x, n, live, t_end)
        bt = lax.dynamic_update_slice_in_dim(bt, ts, b * U, axis=1)
        bx = lax.dynamic_update_slice_in_dim(bx, xs, b * U, axis=1)
        bj = lax.dynamic_update_slice_in_dim(bj, js, b * U, axis=1)
        return (n, t, x, live, over | o), (bt, bx, bj), b + 1

    def outer(c):
        path, times, states, reaction = c
        n0 = path[0]
        bufs = (
            jnp.zeros((B, C), dtype), jnp.zeros((B, C, S), jnp.int32), jnp.zeros((B, C), jnp.int32)
        )  # fmt: skip
        path, (bt, bx, bj), _ = lax.while_loop(
            lambda c: jnp.any(c[0][3]) & (c[2] < _CHUNK), inner, (path, bufs, jnp.int32(0))
        )
        times = write(times, bt, n0 + 1)
        states = write(states, bx, n0 + 1)
        reaction = write(reaction, bj, n0)
        return path, times, states, reaction

    path = (jnp.zeros((B,), jnp.int32), t0, x0, jnp.ones((B,), bool), jnp.zeros((B,), bool))
    path, times, states, reaction = lax.while_loop(
        lambda c: jnp.any(c[0][3]), outer, (path, times, states, reaction)
    )
    n, _, x, _, over = path
    return _finish_path(t_end, M, n, x, times, states, reaction, over)


@partial(jax.jit, static_argnames=("net", "max_jumps"))
def _gillespie(rng_key, x0, t0, t_end, rates, *, net, max_jumps):
    V = np.asarray(net.stoichiometry, np.int32)  # numpy: custom_vmap must not close over tracers
    prop = net.propensity
    run = partial(_gillespie_batch, V=V, prop=prop, M=max_jumps)

    @jax.custom_batching.custom_vmap
    def single(*args):
        return _gillespie_single(*args, V=V, prop=prop, M=max_jumps)

    @single.def_vmap
    def batched(axis_size, in_batched, *args):
        args = [
            a if b else jnp.broadcast_to(a, (axis_size, *a.shape))
            for a, b in zip(args, in_batched, strict=True)
        ]
        return run(*args), Path(*(True,) * 5)

    return single(rng_key, x0, t0, t_end, rates)


def gillespie(
    rng_key: Array,
    x0: ArrayLike,
    t_end: ArrayLike,
    stoichiometry: Network | ArrayLike,
    rates: ArrayLike,
    *,
    reactants: ArrayLike | None = None,
    propensity_fn: PropensityFn | None = None,
    max_jumps: int,
    t0: ArrayLike = 0.0,
) -> Path:
    """Exact path of a reaction network on ``[t0, t_end]`` by the direct method.

    Repeats, from :math:`(t, x)`: draw :math:`\\Delta t \\sim \\mathrm{Exp}(h_0(x))`; if
    :math:`t + \\Delta t > t_\\mathrm{end}` stop; otherwise fire reaction j with
    probability :math:`h_j(x) / h_0(x)`, :math:`x \\leftarrow x + \\nu_j` (Gillespie 1977).

    Parameters
    ----------
    rng_key : Array
        PRNG key.
    x0 : ArrayLike of int, shape (S,)
        Initial counts (non-negative).
    t_end : ArrayLike, shape ()
        End of the simulation window (finite).
    stoichiometry : Network or ArrayLike of int, shape (R, S)
        The network (:class:`probdyn.kernels.network.Network`, or an object with a
        ``network`` attribute such as ``ReactionNetwork``), or the concrete net change
        :math:`\\nu_j` of each species per reaction (then give ``reactants`` or
        ``propensity_fn``).
    rates : ArrayLike, shape (R,)
        Rate constants (non-negative); passed to the propensity function.
    reactants : ArrayLike of int, shape (R, S), optional
        Concrete mass-action reactant orders (see :func:`mass_action_propensities`);
        only with an array ``stoichiometry``.
    propensity_fn : callable, optional
        ``propensity_fn(x, rates) -> (R,)``, with ``x`` the counts cast to the dtype of
        ``rates``; must be non-negative and finite. Give exactly one of ``reactants``
        and ``propensity_fn``.
    max_jumps : int
        Size of the path buffers (static).
    t0 : ArrayLike, shape (), default 0
        Start time.

    Returns
    -------
    Path
        Padded path with ``num_jumps`` and the ``overflow`` flag; see :class:`Path`.
    """
    net, rates, x0, t0 = check_simulation_inputs(
        stoichiometry, rates, reactants, propensity_fn, x0, t0
    )
    t_end = check_times("t_end", t_end, rates.dtype, ndim=0, t0=t0)
    return _gillespie(rng_key, x0, t0, t_end, rates, net=net, max_jumps=_max_jumps(max_jumps))


@partial(jax.jit, static_argnames=("net", "max_jumps"))
def _gillespie_at(rng_key, x0, t0, times, rates, *, net, max_jumps):
    V = np.asarray(net.stoichiometry, np.int32)
    prop = net.propensity
    M, U = max_jumps, _BLOCK

    def advance(carry, t_obs):
        def body(c):
            n, t, x, live, bad = c
            first = (n // U) * U  # resume mid-block: earlier events of the block are skipped
            us = _uniforms(rng_key, n // U, rates.dtype)
            (t, x, n, live, over), _ = _block_step(
                us, rates, t, x, n, live, t_obs, prop=prop, V=V, M=M, first=first
            )
            # the cap is judged at the end; invalid propensities or a wrap stop here
            return n, t, x, live, bad | (over & (n < M))

        n, t, x, bad = carry
        n, t, x, _, bad = lax.while_loop(
            lambda c: c[3] & ~c[4], body, (n, t, x, jnp.bool_(True), bad)
        )
        return (n, t, x, bad), x

    (n, t, x, bad), states = lax.scan(advance, (jnp.int32(0), t0, x0, jnp.bool_(False)), times)
    t_next = _next_time(rng_key, rates, prop=prop, R=V.shape[0], n=n, t=t, x=x)
    return states, bad | ((n == M) & (t_next <= times[-1]))


def gillespie_at(
    rng_key: Array,
    x0: ArrayLike,
    times: ArrayLike,
    stoichiometry: Network | ArrayLike,
    rates: ArrayLike,
    *,
    reactants: ArrayLike | None = None,
    propensity_fn: PropensityFn | None = None,
    max_jumps: int,
    t0: ArrayLike = 0.0,
) -> tuple[Array, Array]:
    """Exact states at observation times, without storing the path.

    Runs the same direct method as :func:`gillespie` (same key, same path) inside a scan
    over ``times``; each step advances events while the next event time is
    :math:`\\le` the observation time (the pending event is carried over, so nothing is
    redrawn at observation times). Memory is O(S), whatever the number of events.

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
    max_jumps : int
        Cap on the total number of events (static); guards against runaway loops.
    t0 : ArrayLike, shape (), default 0
        Start time.

    Returns
    -------
    states : Array of int32, shape (T, S)
        :math:`x(t_k)` (right-continuous). After an overflow, the remaining rows hold the
        state at which the cap was hit.
    overflow : Array of bool, shape ()
        True when ``max_jumps`` events were used up before ``times[-1]``, or the path was
        stopped because a count would leave the int32 range or a propensity was negative
        or not finite (see :class:`Path`); the remaining rows then repeat the last state.
    """
    net, rates, x0, t0 = check_simulation_inputs(
        stoichiometry, rates, reactants, propensity_fn, x0, t0
    )
    times = check_obs_times(times, rates.dtype, t0)
    return _gillespie_at(rng_key, x0, t0, times, rates, net=net, max_jumps=_max_jumps(max_jumps))


# --------------------------------------------------------------------------------------
# path likelihood
# --------------------------------------------------------------------------------------


def path_log_likelihood(
    path: Path,
    stoichiometry: Network | ArrayLike,
    rates: ArrayLike,
    *,
    reactants: ArrayLike | None = None,
    propensity_fn: PropensityFn | None = None,
    t_end: ArrayLike,
) -> Array:
    """Exact log-density of a fully observed path on ``[path.times[0], t_end]``.

    .. math::

        \\log p(x_{[t_0, t_\\mathrm{end}]}) = \\sum_{i=1}^{n} \\log h_{j_i}(x_{i-1})
            - \\int_{t_0}^{t_\\mathrm{end}} h_0(x(t))\\,\\mathrm{d}t,
        \\qquad \\int = \\sum_{i=0}^{n} h_0(x_i)\\,(t_{i+1} - t_i),\\ t_{n+1} = t_\\mathrm{end},

    with :math:`j_i` the i-th fired reaction (Wilkinson 2018, ch. 10). Differentiable in
    ``rates``; a fired reaction of zero propensity gives :math:`-\\infty` (never NaN).
    An overflowed path (``path.overflow``) is not a complete observation: the result is
    NaN, so that a model using it fails loudly.

    Parameters
    ----------
    path : Path
        A single path (``times`` (M+1,), ``states`` (M+1, S), ``reaction`` (M,)); entries
        past ``num_jumps`` are ignored.
    stoichiometry, rates, reactants, propensity_fn
        As for :func:`gillespie` (the stoichiometry fixes R and S).
    t_end : ArrayLike, shape ()
        End of the observation window, ``>=`` the last event time.

    Returns
    -------
    Array, shape ()
    """
    net = as_network(stoichiometry, reactants, propensity_fn)
    rates = net.check_rates(rates)
    V = net.stoichiometry
    times, states, reaction = (jnp.asarray(a) for a in path[:3])
    M = reaction.shape[0] if reaction.ndim == 1 else -1
    if times.shape != (M + 1,) or states.shape != (M + 1, len(V[0])):
        raise ValueError(
            "path must hold times (M+1,), states (M+1, S) and reaction (M,) for one path with "
            f"S={len(V[0])}; got {times.shape}, {states.shape}, {reaction.shape}"
        )
    t_end = check_times("t_end", t_end, rates.dtype, ndim=0)
    prop = net.propensity
    h = jax.vmap(lambda x: prop(x.astype(rates.dtype), rates))(states)  # (M+1, R)
    idx = jnp.arange(M + 1)
    n = path.num_jumps
    live = idx <= n
    t = times.astype(rates.dtype)
    t_next = jnp.where(idx < n, jnp.concatenate([t[1:], t_end[None]]), t_end)
    integral = jnp.sum(jnp.where(live, jnp.sum(h, axis=1) * (t_next - t), 0.0))
    fired = jnp.take_along_axis(h[:-1], jnp.clip(reaction, 0, len(V) - 1)[:, None], axis=1)[:, 0]
    log_h = jnp.where(idx[:-1] < n, safe_log(fired), 0.0)
    ll = jnp.sum(log_h) - integral
    return jnp.where(path.overflow, jnp.nan, ll)
