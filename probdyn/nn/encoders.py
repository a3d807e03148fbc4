"""Sequence encoders: recurrent networks that summarise observations for an inference network.

:class:`GRUEncoder` is the encoder of the latent SDE (:class:`probdyn.infer.LatentSDE`): a
GRU read backwards in time over observations and their times, giving a context per
observation for the posterior drift and a Gaussian posterior over the initial latent state
(the torchsde latent-SDE Lorenz example, Li et al. 2020).

References
----------
X. Li, T.-K. L. Wong, R. T. Q. Chen and D. Duvenaud, "Scalable gradients for stochastic
differential equations", AISTATS 2020.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["GRUEncoder"]


class GRUEncoder(eqx.Module):
    r"""GRU run backwards over :math:`(y_j, t_j)`, giving a context per observation and
    :math:`q(z_{t_0})`.

    The context at observation :math:`j` summarises :math:`y_{j:}`; the posterior drift on
    :math:`[t_{j-1}, t_j)` sees the context of observation :math:`j` (as in the torchsde
    latent-SDE Lorenz example). The initial-state posterior is
    :math:`\mathcal{N}(\text{loc}, \text{scale}^2)` read off the state summarising all data.
    Its cell is ``eqx.nn.GRUCell`` (as before the move to :mod:`probdyn.nn`), so seeds and
    saved parameters reproduce.

    Parameters
    ----------
    obs_dim : int
        Observation dimension.
    state_dim : int
        Latent dimension.
    context_dim : int
        Context size passed to the posterior drift.
    hidden_size : int
        GRU state size.
    key : jax.Array
        PRNG key for the initial weights.
    """

    cell: eqx.nn.GRUCell
    to_context: eqx.nn.Linear
    to_qz0: eqx.nn.Linear

    def __init__(
        self, obs_dim: int, state_dim: int, context_dim: int, hidden_size: int = 32, *, key
    ):
        k1, k2, k3 = jax.random.split(key, 3)
        self.cell = eqx.nn.GRUCell(obs_dim + 1, hidden_size, key=k1)
        self.to_context = eqx.nn.Linear(hidden_size, context_dim, key=k2)
        self.to_qz0 = eqx.nn.Linear(hidden_size, 2 * state_dim, key=k3)

    def __call__(self, times: jax.Array, ys: jax.Array):
        """``times`` (T,), ``ys`` (T, obs_dim) -> context (T, context_dim), loc (d,), scale (d,)."""
        inputs = jnp.concatenate([ys, jnp.asarray(times, ys.dtype)[:, None]], axis=-1)
        h0 = jnp.zeros((self.cell.hidden_size,), ys.dtype)

        def step(h, x):
            h = self.cell(x, h)
            return h, h

        _, hs = jax.lax.scan(step, h0, inputs, reverse=True)
        context = jax.vmap(self.to_context)(hs)
        loc, raw = jnp.split(self.to_qz0(hs[0]), 2)
        return context, loc, jax.nn.softplus(raw) + 1e-4
