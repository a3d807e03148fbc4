r"""Autoregressive rollouts of a one-step model, as an ensemble of sampled trajectories.

Every uncertainty method for an autoregressive surrogate (BARNN, MC dropout, variational
dropout, input perturbation, deep ensembles, weight samples from SG-MCMC or NUTS) gives
the same :class:`RolloutEnsemble`: ``num_samples`` rollouts of every initial condition,

.. math::

    u^{(s)}_{t+1} = \mathrm{step}(m_s, t, u^{(s)}_t, k^{(s)}_t), \qquad t = 0, \dots, T-2,

where :math:`m_s` is the sample's ensemble member or weight draw (if any) and
:math:`k^{(s)}_t` its key: fresh at every step (``noise="per_step"``: BARNN, MC dropout,
variational dropout draw new weights / masks at every step) or the same at every step
(``noise="per_trajectory"``: one mask or weight draw per rollout). Time is a
``lax.scan``; samples and trajectories are ``vmap`` ped, all in one compiled program.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["NOISE_MODES", "RolloutEnsemble", "rollout"]

#: How the key of a rollout evolves over its steps.
NOISE_MODES = ("per_step", "per_trajectory")


class RolloutEnsemble(NamedTuple):
    """Sampled rollouts of an autoregressive model.

    Attributes
    ----------
    samples : jax.Array, shape (num_samples, num_trajectories, num_timesteps, *space)
        Rollouts; ``samples[:, :, 0]`` are the initial conditions (perturbed, for input
        perturbation).
    times : jax.Array, shape (num_timesteps,)
        Time of every step.
    method : str
        Name of the method that produced them (for tables and legends).
    """

    samples: jax.Array
    times: jax.Array
    method: str = ""

    @property
    def mean(self) -> jax.Array:
        """Ensemble mean, shape (num_trajectories, num_timesteps, *space)."""
        return jnp.mean(self.samples, axis=0)

    @property
    def variance(self) -> jax.Array:
        """Ensemble variance (``ddof=0``), shape (num_trajectories, num_timesteps, *space)."""
        return jnp.var(self.samples, axis=0)


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} is not valid; expected an integer >= {minimum}")
    return value


@eqx.filter_jit
def _run(step_fn, members, keys, u0, t0, num_timesteps, noise, initial_noise):
    """All rollouts in one compiled program, cached across calls.

    ``eqx.filter_jit`` traces the arrays (``members``, ``keys``, ``u0``, array leaves of an
    ``eqx.Module`` step function) and hashes the rest (``step_fn`` itself when it is a
    plain function, the sizes and modes), so a second call with the same step function,
    shapes and settings reuses the compiled program.
    """
    num_trajectories = u0.shape[0]
    ts = jnp.arange(t0, t0 + num_timesteps - 1, dtype=jnp.int32)

    def one(member, key, u):
        k_init, k_steps = jax.random.split(key)
        if initial_noise > 0:
            scale = initial_noise * jnp.max(jnp.abs(u))
            u = u + scale * jax.random.normal(k_init, u.shape, u.dtype)
        if noise == "per_step":
            keys = jax.random.split(k_steps, num_timesteps - 1)
        else:
            keys = jnp.broadcast_to(k_steps, (num_timesteps - 1, *k_steps.shape))

        def body(state, xs):
            t, k = xs
            new = step_fn(member, t, state, k).astype(state.dtype)
            return new, new

        _, path = lax.scan(body, u, (ts, keys))
        return jnp.concatenate([u[None], path], axis=0)

    def per_sample(member, key):
        keys = jax.random.split(key, num_trajectories)
        return jax.vmap(one, in_axes=(None, 0, 0))(member, keys, u0)

    member_axes = None if members is None else 0
    return jax.vmap(per_sample, in_axes=(member_axes, 0))(members, keys)


def rollout(
    step_fn: Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array],
    u0: jax.Array,
    num_timesteps: int,
    *,
    rng_key: jax.Array,
    num_samples: int | None = None,
    members: Any = None,
    noise: str = "per_step",
    initial_noise: float = 0.0,
    t0: int = 0,
    dt: float = 1.0,
    method: str = "",
) -> RolloutEnsemble:
    r"""Roll a one-step model out from each initial condition, ``num_samples`` times.

    Parameters
    ----------
    step_fn : callable
        ``step_fn(member, t, u, key) -> u_next`` for one sample of one trajectory:
        ``member`` is this sample's slice of ``members`` (``None`` without members),
        ``t`` the integer step index of ``u`` (an int32 scalar), ``u`` the state of shape
        ``u0.shape[1:]``, ``key`` a PRNG key. The compiled rollout is cached: pass
        the same function object (or an ``eqx.Module`` whose arrays change between
        calls, they are traced) to reuse it; a new closure per call recompiles.
    u0 : jax.Array, shape (num_trajectories, *space)
        Initial conditions.
    num_timesteps : int
        Length of every rollout, the initial condition included (``>= 1``).
    rng_key : jax.Array
        Key of all the randomness.
    num_samples : int, optional
        Rollouts per initial condition; default the leading size of ``members`` (or 1).
    members : pytree, optional
        Ensemble members or weight draws, every leaf with a leading axis of size
        ``num_samples``; sample ``s`` uses member ``s`` throughout its rollout.
    noise : {"per_step", "per_trajectory"}
        Fresh key at every step, or one key per rollout.
    initial_noise : float
        Input perturbation: every sample starts from
        :math:`u_0 + \text{initial\_noise}\cdot\max|u_0|\,\xi`, :math:`\xi \sim
        \mathcal{N}(0, I)`, with the maximum over that trajectory's initial condition.
    t0 : int
        Step index of ``u0`` (what ``step_fn`` and a time embedding see).
    dt : float
        Time between steps; ``times = dt * (t0 + arange(num_timesteps))``.
    method : str
        Stored in the result.

    Returns
    -------
    RolloutEnsemble
        ``samples`` of shape ``(num_samples, num_trajectories, num_timesteps, *space)``.

    Raises
    ------
    ValueError
        Bad sizes, an unknown ``noise``, members whose leading sizes differ from
        ``num_samples``.
    """
    if noise not in NOISE_MODES:
        raise ValueError(f"noise={noise!r} is not known; expected one of {NOISE_MODES}")
    _check_int("num_timesteps", num_timesteps, 1)
    _check_int("t0", t0, 0)
    if not (isinstance(initial_noise, (int, float)) and initial_noise >= 0):
        raise ValueError(f"initial_noise={initial_noise!r} is not valid; expected a float >= 0")
    u0 = jnp.asarray(u0)
    if u0.ndim < 1:
        raise ValueError(f"u0 has shape {u0.shape}; expected (num_trajectories, *space)")
    if members is not None:
        sizes = {leaf.shape[0] for leaf in jax.tree.leaves(members) if jnp.ndim(leaf) > 0}
        if len(sizes) != 1:
            raise ValueError(
                f"members have leading sizes {sorted(sizes)}; expected one common size"
            )
        (size,) = sizes
        if num_samples is not None and num_samples != size:
            raise ValueError(
                f"num_samples={num_samples} differs from the {size} members; expected equal"
            )
        num_samples = size
    num_samples = _check_int("num_samples", 1 if num_samples is None else num_samples, 1)
    keys = jax.random.split(rng_key, num_samples)
    samples = _run(step_fn, members, keys, u0, t0, num_timesteps, noise, float(initial_noise))
    times = dt * (t0 + jnp.arange(num_timesteps, dtype=jnp.result_type(float)))
    return RolloutEnsemble(samples=samples, times=times, method=str(method))
