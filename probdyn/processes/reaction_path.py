"""The distribution of a fully observed reaction-network path: :class:`ReactionPath`.

A NumPyro distribution over Gillespie paths of a
:class:`probdyn.processes.reaction_network.ReactionNetwork`, scored by the exact path
log-likelihood of :func:`probdyn.kernels.ssa.path_log_likelihood`.

References
----------
D. J. Wilkinson, *Stochastic Modelling for Systems Biology*, 3rd ed., CRC Press, 2018
(the path likelihood, ch. 10).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from numpyro.distributions import Distribution, constraints
from numpyro.util import not_jax_tracer

from probdyn.kernels import ssa
from probdyn.kernels._checks import concrete as _concrete
from probdyn.processes.reaction_network import ReactionNetwork

Array = jax.Array

__all__ = ["ReactionPath"]


# --------------------------------------------------------------------------------------
# the path distribution
# --------------------------------------------------------------------------------------


def _encode(path: ssa.Path) -> Array:
    times = jnp.asarray(path.times)
    dtype = jnp.result_type(times.dtype, jnp.float32)
    times = jnp.where(jnp.asarray(path.overflow)[..., None], jnp.nan, times.astype(dtype))
    reaction = jnp.asarray(path.reaction)
    first = jnp.full(reaction.shape[:-1] + (1,), -1, reaction.dtype)
    reaction = jnp.concatenate([first, reaction], axis=-1).astype(dtype)
    states = jnp.asarray(path.states).astype(dtype)
    return jnp.concatenate([times[..., None], reaction[..., None], states], axis=-1)


def _decode(value: ArrayLike) -> ssa.Path:
    v = jnp.asarray(value)
    times = v[..., 0]
    reaction = jnp.nan_to_num(v[..., 1:, 1], nan=-1.0).astype(jnp.int32)
    states = jnp.nan_to_num(v[..., 2:]).astype(jnp.int32)
    num_jumps = jnp.sum(reaction >= 0, axis=-1, dtype=jnp.int32)
    return ssa.Path(times, states, reaction, num_jumps, jnp.any(jnp.isnan(times), axis=-1))


class ReactionPath(Distribution):
    """Distribution of a fully observed reaction-network path on ``[t0, t_end]``.

    **Value encoding.** One padded float array of shape ``(max_jumps + 1, S + 2)``: row i
    is ``(t_i, j_i, x_i)``, the time, the reaction that fired (-1 for row 0 and for
    padding) and the counts just after it. Row 0 is ``(t0, -1, x0)``; rows
    ``1..num_jumps`` are the events; padding rows repeat the final state (their times
    are ignored). ``num_jumps`` is the number of rows with ``j >= 0``. A path that
    needed more than ``max_jumps`` events (overflow) is encoded with a NaN time column:
    its ``log_prob`` is NaN, and with ``validate_args=True`` sampling or scoring it
    raises ``ValueError``. Convert with :meth:`encode` (from a
    :class:`probdyn.kernels.ssa.Path`, e.g. :meth:`ReactionNetwork.gillespie` output) and
    :meth:`decode`.

    ``log_prob`` is the exact path log-likelihood
    (:func:`probdyn.kernels.ssa.path_log_likelihood`), differentiable in ``rates``, so an
    observed path can inform rates under NUTS; it is :math:`-\\infty` when the path does
    not start at ``(t0, x0)``. Samples are Gillespie paths.

    Parameters
    ----------
    network : ReactionNetwork
    x0 : ArrayLike of int, shape (..., S)
    rates : ArrayLike, shape (..., R)
    t_end : ArrayLike, shape (...)
    max_jumps : int
        Static size of the path buffers.
    t0 : ArrayLike, shape (...), default 0
    validate_args : bool, optional
        Check parameters and values (consistency of states with the stoichiometry,
        times within ``[t0, t_end]``) with errors that name the argument.
    """

    arg_constraints = {
        "x0": constraints.independent(constraints.nonnegative_integer, 1),
        "rates": constraints.independent(constraints.nonnegative, 1),
        "t_end": constraints.real,
        "t0": constraints.real,
    }
    pytree_data_fields = ("x0", "rates", "t_end", "t0")
    pytree_aux_fields = ("network", "max_jumps")
    support = constraints.independent(constraints.real, 2)

    def __init__(
        self,
        network: ReactionNetwork,
        x0: ArrayLike,
        rates: ArrayLike,
        t_end: ArrayLike,
        max_jumps: int,
        *,
        t0: ArrayLike = 0.0,
        validate_args: bool | None = None,
    ):
        if not isinstance(network, ReactionNetwork):
            raise TypeError(f"network must be a ReactionNetwork; got {type(network).__name__}")
        if isinstance(max_jumps, bool) or not isinstance(max_jumps, int | np.integer):
            raise TypeError(f"max_jumps must be a Python int; got {type(max_jumps).__name__}")
        if max_jumps < 1:
            raise ValueError(f"max_jumps must be at least 1; got {max_jumps}")
        R, S = network.num_reactions, network.num_species
        rates = jnp.asarray(rates)
        rates = rates.astype(jnp.result_type(rates.dtype, jnp.float32))
        x0 = jnp.asarray(x0)
        if rates.ndim < 1 or rates.shape[-1] != R:
            raise ValueError(f"rates must have shape (..., {R}); got {rates.shape}")
        if x0.ndim < 1 or x0.shape[-1] != S:
            raise ValueError(f"x0 must have shape (..., {S}); got {x0.shape}")
        self._t_end_concrete = _concrete(t_end)  # for value checks; not a pytree field
        t_end, t0 = jnp.asarray(t_end, rates.dtype), jnp.asarray(t0, rates.dtype)
        shapes = [rates.shape[:-1], x0.shape[:-1], t_end.shape, t0.shape]
        try:
            batch_shape = jnp.broadcast_shapes(*shapes)
        except ValueError as err:
            msg = f"batch shapes of rates, x0, t_end, t0 do not broadcast: {shapes}"
            raise ValueError(msg) from err
        self.network, self.max_jumps = network, int(max_jumps)
        self.x0, self.rates, self.t_end, self.t0 = x0, rates, t_end, t0
        super().__init__(batch_shape, (self.max_jumps + 1, S + 2), validate_args=validate_args)

    encode = staticmethod(_encode)
    decode = staticmethod(_decode)

    def validate_args(self, strict: bool = True) -> None:
        """Check parameters with messages that name the argument."""
        with jax.ensure_compile_time_eval():
            vals = {k: self.__dict__[k] for k in ("x0", "rates", "t_end", "t0")}
            if not all(not_jax_tracer(v) for v in vals.values()):
                if strict:
                    raise RuntimeError("Cannot validate arguments inside jitted code.")
                return
            v = {k: np.asarray(a) for k, a in vals.items()}
            r, x = v["rates"], v["x0"]
            if not np.all(np.isfinite(r) & (r >= 0)):
                raise ValueError(f"rates must be non-negative and finite; got {r.tolist()}")
            if np.any(x < 0) or np.any(x != np.round(x)):
                raise ValueError(f"x0 must hold non-negative integer counts; got {x.tolist()}")
            if not (np.all(np.isfinite(v["t_end"])) and np.all(np.isfinite(v["t0"]))):
                raise ValueError("t_end and t0 must be finite")
            if np.any(v["t_end"] < v["t0"]):
                raise ValueError(f"t_end must not precede t0; got t_end={v['t_end'].tolist()}")

    def _check_value(self, value):
        c = _concrete(value)
        if c is None:
            return
        if np.any(np.isnan(c[..., 0])):
            raise ValueError(
                f"value is an overflowed path (NaN times): more than max_jumps={self.max_jumps} "
                "events; increase max_jumps"
            )
        V = self.network.stoichiometry
        t, r, x = c[..., 0], c[..., 1:, 1], c[..., 2:]
        live = r >= 0
        n = live.sum(-1)
        if np.any(live != (np.arange(self.max_jumps) < n[..., None])) or np.any(r < -1):
            raise ValueError("value: reaction column must be >= 0 for rows 1..num_jumps, else -1")
        if np.any(r >= V.shape[0]) or np.any(r != np.round(r)):
            raise ValueError(f"value: reaction indices must be integers < R={V.shape[0]}")
        if np.any(x < 0) or np.any(x != np.round(x)):
            raise ValueError("value: counts must be non-negative integers")
        want = np.where(live[..., None], V[np.clip(r, 0, None).astype(np.int64)], 0)
        if np.any(np.diff(x, axis=-2) != want):
            raise ValueError("value: state changes do not match the stoichiometry of the reactions")
        shape = np.broadcast_shapes(c.shape[:-2], self.batch_shape)
        t = np.broadcast_to(t, shape + t.shape[-1:])
        live = np.broadcast_to(live, shape + live.shape[-1:])
        ce = getattr(self, "_t_end_concrete", None)  # None when traced or unflattened
        last = np.max(np.where(live, t[..., 1:], t[..., :1]), -1)
        t_end = np.broadcast_to(last if ce is None else ce, shape)[..., None]
        t_ev = np.where(live, t[..., 1:], t_end)
        if np.any(np.diff(np.concatenate([t[..., :1], t_ev], -1), axis=-1) < 0) or np.any(
            t_ev > t_end
        ):
            raise ValueError("value: event times must be non-decreasing within [t0, t_end]")

    def _params(self, shape):
        S = self.network.num_species
        R = self.network.num_reactions
        n = int(np.prod(shape))
        return (
            jnp.broadcast_to(self.x0, shape + (S,)).reshape((n, S)),
            jnp.broadcast_to(self.rates, shape + (R,)).reshape((n, R)),
            jnp.broadcast_to(self.t_end, shape).reshape((n,)),
            jnp.broadcast_to(self.t0, shape).reshape((n,)),
        )

    def sample_path(self, key: Array, sample_shape: tuple[int, ...] = ()) -> ssa.Path:
        """Gillespie paths as a :class:`probdyn.kernels.ssa.Path` with leading axes
        ``(*sample_shape, *batch_shape)``."""
        shape = tuple(sample_shape) + self.batch_shape
        x0, rates, t_end, t0 = self._params(shape)
        keys = jax.random.split(key, x0.shape[0])
        paths = _sample_flat(self.network, self.max_jumps, keys, x0, rates, t_end, t0)
        return jax.tree.map(lambda a: a.reshape(shape + a.shape[1:]), paths)

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        """Encoded paths, shape ``(*sample_shape, *batch_shape, max_jumps + 1, S + 2)``."""
        path = self.sample_path(key, sample_shape)
        if self._validate_args:
            c = _concrete(path.overflow)
            if c is not None and np.any(c):
                raise ValueError(
                    f"sampled path overflowed max_jumps={self.max_jumps} before t_end; "
                    "increase max_jumps"
                )
        return _encode(path)

    def log_prob(self, value: ArrayLike) -> Array:
        """Exact path log-likelihood of encoded paths ``(..., max_jumps + 1, S + 2)``;
        returns shape ``broadcast(value batch, batch_shape)``."""
        value = jnp.asarray(value)
        if value.shape[-2:] != self.event_shape:
            raise ValueError(f"value must have shape (..., {self.event_shape}); got {value.shape}")
        if self._validate_args:
            self._check_value(value)
        shape = jnp.broadcast_shapes(value.shape[:-2], self.batch_shape)
        n = int(np.prod(shape))
        v = jnp.broadcast_to(value, shape + self.event_shape).reshape((n,) + self.event_shape)
        x0, rates, t_end, t0 = self._params(shape)
        lp = _log_prob_flat(self.network, v.astype(rates.dtype), x0, rates, t_end, t0)
        return lp.reshape(shape)


@partial(jax.jit, static_argnums=(0, 1))
def _sample_flat(network, max_jumps, keys, x0, rates, t_end, t0):
    def one(k, x, r, te, ts):
        return ssa.gillespie(k, x, te, network.network, r, max_jumps=max_jumps, t0=ts)

    return jax.vmap(one)(keys, x0, rates, t_end, t0)


@partial(jax.jit, static_argnums=0)
def _log_prob_flat(network, v, x0, rates, t_end, t0):
    def one(v, x, r, te, ts):
        p = _decode(v)
        ll = ssa.path_log_likelihood(p, network.network, r, t_end=te)
        start = jnp.all(p.states[0] == x) & (p.times[0] == ts)
        return jnp.where(start | jnp.isnan(ll), ll, -jnp.inf)

    return jax.vmap(one)(v, x0, rates, t_end, t0)
