"""Drift and diffusion networks for latent stochastic differential equations.

:class:`PosteriorDriftMLP` is the posterior (variational) drift :math:`f(t, z, c)` of a
latent SDE, :class:`PriorDriftMLP` an autonomous learned prior drift :math:`h(z)`, and
:class:`DiagonalDiffusionNet` a learned diagonal diffusion :math:`g(z)` in which
:math:`g_i` reads :math:`z_i` only, so that the noise stays diagonal (Li et al. 2020);
:class:`OrnsteinUhlenbeckDrift` is the parametric prior drift of the torchsde toy (moved here from
:mod:`probdyn.infer.latent_sde`, which still exports it).

References
----------
X. Li, T.-K. L. Wong, R. T. Q. Chen and D. Duvenaud, "Scalable gradients for stochastic
differential equations", AISTATS 2020.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = [
    "DiagonalDiffusionNet",
    "OrnsteinUhlenbeckDrift",
    "PosteriorDriftMLP",
    "PriorDriftMLP",
]


class PosteriorDriftMLP(eqx.Module):
    r"""Posterior drift :math:`f(t, z, c)`: an MLP on :math:`(\sin t, \cos t, z, c)`.

    The last layer starts at zero, so the posterior drift starts at zero (the "Glow"
    initialisation of the torchsde example).

    Parameters
    ----------
    state_dim : int
        Latent dimension :math:`d`.
    context_dim : int
        Size of the encoder context (0 without an encoder).
    width : int
        Hidden width.
    depth : int
        Number of hidden layers.
    key : jax.Array
        PRNG key for the initial weights.
    activation : callable
        Hidden activation (default ``tanh``).
    """

    mlp: eqx.nn.MLP

    def __init__(
        self,
        state_dim: int,
        context_dim: int = 0,
        width: int = 200,
        depth: int = 2,
        *,
        key: jax.Array,
        activation: Callable = jnp.tanh,
    ):
        mlp = eqx.nn.MLP(2 + state_dim + context_dim, state_dim, width, depth, activation, key=key)
        last = mlp.layers[-1]
        self.mlp = eqx.tree_at(
            lambda m: (m.layers[-1].weight, m.layers[-1].bias),
            mlp,
            (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)),
        )

    def __call__(self, t: jax.Array, z: jax.Array, context: jax.Array) -> jax.Array:
        """Drift for scalar ``t``, ``z`` (state_dim,), ``context`` (context_dim,)."""
        t = jnp.asarray(t, z.dtype)
        return self.mlp(jnp.concatenate([jnp.sin(t)[None], jnp.cos(t)[None], z, context]))


class PriorDriftMLP(eqx.Module):
    """Autonomous prior drift :math:`h(z)`: an MLP with softplus hidden layers.

    Parameters
    ----------
    state_dim : int
    width : int
    depth : int
        Hidden layers.
    key : jax.Array
    """

    mlp: eqx.nn.MLP

    def __init__(self, state_dim: int, width: int = 128, depth: int = 2, *, key: jax.Array):
        self.mlp = eqx.nn.MLP(state_dim, state_dim, width, depth, jax.nn.softplus, key=key)

    def __call__(self, t: jax.Array, z: jax.Array) -> jax.Array:
        """``t`` scalar (unused), ``z`` (state_dim,) -> (state_dim,)."""
        return self.mlp(z)


class DiagonalDiffusionNet(eqx.Module):
    """Diagonal diffusion :math:`g_i(z) = \\epsilon + (1 - \\epsilon)\\sigma(\\mathrm{MLP}_i(z_i))`.

    One one-hidden-layer network per latent coordinate, each reading only its own
    coordinate, so the Jacobian of :math:`g` is diagonal (diagonal noise) and
    :math:`g_i \\in (\\epsilon, 1)` stays away from 0 (the path KL divides by it).

    Parameters
    ----------
    state_dim : int
    width : int
        Hidden units per coordinate.
    key : jax.Array
    floor : float
        :math:`\\epsilon`.
    """

    w1: jax.Array
    b1: jax.Array
    w2: jax.Array
    b2: jax.Array
    floor: float = eqx.field(static=True)

    def __init__(self, state_dim: int, width: int = 16, *, key: jax.Array, floor: float = 1e-3):
        k1, k2, k3 = jax.random.split(key, 3)
        self.w1 = jax.random.normal(k1, (state_dim, width))
        self.b1 = jax.random.uniform(k2, (state_dim, width), minval=-1.0, maxval=1.0)
        self.w2 = jax.random.normal(k3, (state_dim, width)) / np.sqrt(width)
        self.b2 = jnp.zeros((state_dim,))
        self.floor = float(floor)

    def __call__(self, t: jax.Array, z: jax.Array) -> jax.Array:
        """``t`` scalar (unused), ``z`` (state_dim,) -> positive (state_dim,)."""
        hidden = jax.nn.softplus(self.w1 * z[:, None] + self.b1)
        out = jnp.sum(self.w2 * hidden, axis=-1) + self.b2
        return self.floor + (1.0 - self.floor) * jax.nn.sigmoid(out)


class OrnsteinUhlenbeckDrift(eqx.Module):
    r"""Ornstein--Uhlenbeck drift :math:`h(t, z) = \theta (\mu - z)`, a parametric prior drift.

    Parameters
    ----------
    theta : ArrayLike, shape () or (state_dim,)
        Mean-reversion rates.
    mu : ArrayLike, shape () or (state_dim,)
        Long-run means.
    """

    theta: jax.Array
    mu: jax.Array

    def __init__(self, theta: ArrayLike = 1.0, mu: ArrayLike = 0.0):
        self.theta = jnp.asarray(theta, dtype=jnp.result_type(float))
        self.mu = jnp.asarray(mu, dtype=jnp.result_type(float))

    def __call__(self, t: jax.Array, z: jax.Array) -> jax.Array:
        """Drift at time ``t`` (scalar) and state ``z`` (state_dim,) -> (state_dim,)."""
        return self.theta * (self.mu - z)
