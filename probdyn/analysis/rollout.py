r"""Noise-driven rollouts of a map :math:`h_{t+1} = F(h_t, x_t)`, :math:`x_t \sim N(0, s^2 I)`,
and what a readout makes of the states (emission probabilities, argmax symbols)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from probdyn.analysis._checks import check_array, check_callable, check_int, check_positive

__all__ = ["emission_probabilities", "rollout", "symbols"]


def _rollout(rng_key, step_fn, h0, num_timesteps, noise_dim, noise_scale):
    """Traceable core: h0 (hidden_size,) -> states (num_timesteps, hidden_size)."""
    keys = jax.random.split(rng_key, num_timesteps)

    def body(h, key):
        x = noise_scale * jax.random.normal(key, (noise_dim,), dtype=h.dtype)
        h = step_fn(h, x)
        return h, h

    _, states = jax.lax.scan(body, h0, keys)
    return states


def rollout(
    rng_key: jax.Array,
    step_fn: Callable[[jax.Array, jax.Array], jax.Array],
    initial_states: ArrayLike,
    num_timesteps: int,
    noise_dim: int,
    noise_scale: float | jax.Array = 1.0,
) -> jax.Array:
    r"""Iterate :math:`h_{t+1} = F(h_t, x_t)` with fresh Gaussian input at every step.

    Parameters
    ----------
    rng_key : jax.Array
        PRNG key.
    step_fn : callable
        ``step_fn(h, x) -> h_next`` with ``h`` of shape (hidden_size,), ``x`` (noise_dim,).
    initial_states : array_like, shape (hidden_size,) or (num_trajectories, hidden_size)
        :math:`h_0`; a batch gives independent trajectories (independent noise).
    num_timesteps : int
        Steps to take.
    noise_dim : int
        Length of :math:`x_t`.
    noise_scale : float
        Standard deviation :math:`s` of each input coordinate (0 gives the input-free map).

    Returns
    -------
    jax.Array, shape (num_timesteps, hidden_size) or (num_trajectories, num_timesteps,
    hidden_size)
        :math:`h_1, \dots, h_T` (the initial state is not included).
    """
    check_callable("step_fn", step_fn)
    num_timesteps = check_int("num_timesteps", num_timesteps)
    noise_dim = check_int("noise_dim", noise_dim)
    if not isinstance(noise_scale, jax.Array):
        noise_scale = check_positive("noise_scale", noise_scale, allow_zero=True)
    h0 = jnp.asarray(check_array("initial_states", initial_states, (1, 2)))
    if not jnp.issubdtype(h0.dtype, jnp.floating):
        h0 = h0.astype(jnp.result_type(float))

    def one(key, h):
        return _rollout(key, step_fn, h, num_timesteps, noise_dim, noise_scale)

    if h0.ndim == 1:
        return jax.jit(one)(rng_key, h0)
    keys = jax.random.split(rng_key, h0.shape[0])
    return jax.jit(jax.vmap(one))(keys, h0)


def emission_probabilities(
    readout_fn: Callable[[jax.Array], jax.Array], states: ArrayLike
) -> jax.Array:
    """Softmax of the readout logits at every state.

    Parameters
    ----------
    readout_fn : callable
        ``readout_fn(h) -> logits`` of shape (num_symbols,).
    states : array_like, shape (..., hidden_size)

    Returns
    -------
    jax.Array, shape (..., num_symbols)
    """
    check_callable("readout_fn", readout_fn)
    h = jnp.asarray(states)
    if h.ndim < 1:
        raise ValueError(f"states must have a hidden_size axis, got shape {h.shape}")
    flat = h.reshape(-1, h.shape[-1])
    p = jax.nn.softmax(jax.vmap(readout_fn)(flat), axis=-1)
    return p.reshape(*h.shape[:-1], p.shape[-1])


def symbols(readout_fn: Callable[[jax.Array], jax.Array], states: ArrayLike) -> jax.Array:
    """Most probable symbol (argmax of the logits) at every state.

    Parameters
    ----------
    readout_fn : callable
        ``readout_fn(h) -> logits`` of shape (num_symbols,).
    states : array_like, shape (..., hidden_size)

    Returns
    -------
    jax.Array of int, shape (...)
    """
    check_callable("readout_fn", readout_fn)
    h = jnp.asarray(states)
    if h.ndim < 1:
        raise ValueError(f"states must have a hidden_size axis, got shape {h.shape}")
    flat = h.reshape(-1, h.shape[-1])
    return jnp.argmax(jax.vmap(readout_fn)(flat), axis=-1).reshape(h.shape[:-1])
