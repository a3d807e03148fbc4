r"""Sinusoidal embeddings of a time index (Vaswani et al. 2017; Ho et al. 2020).

.. math::

    e(t) = \bigl[\cos(t\,\omega_0), \dots, \cos(t\,\omega_{h-1}),
                 \sin(t\,\omega_0), \dots, \sin(t\,\omega_{h-1})\bigr], \qquad
    \omega_k = P^{-k/h},\ h = \lfloor d/2 \rfloor,

padded with one zero when the dimension :math:`d` is odd; :math:`P` is ``max_period``.
BARNN feeds this embedding of the step index to the encoder of its dropout rates
(Coscia et al. 2025).

References
----------
A. Vaswani et al., "Attention is all you need", NeurIPS 2017.

D. Coscia, M. Welling, N. Demo and G. Rozza, "BARNN: a Bayesian autoregressive and
recurrent neural network", ICML 2025, arXiv:2501.18665.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = ["sinusoidal_embedding"]


def sinusoidal_embedding(t: ArrayLike, dim: int, max_period: float = 1000.0) -> jax.Array:
    """Sinusoidal embedding of a (batch of) time index.

    Parameters
    ----------
    t : array_like, shape (...)
        Time indices (or times); any batch shape.
    dim : int
        Embedding dimension ``d >= 1``.
    max_period : float
        Longest period :math:`P` of the sinusoids.

    Returns
    -------
    jax.Array, shape (..., dim)
        ``[cos(t w_k)]_k ++ [sin(t w_k)]_k`` (zero-padded to ``dim`` when it is odd), in
        the floating dtype of ``t`` (float32 by default).

    Raises
    ------
    ValueError
        If ``dim < 1`` or ``max_period <= 0``.
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim={dim!r} is not valid; expected an integer >= 1")
    if not (isinstance(max_period, (int, float)) and max_period > 0):
        raise ValueError(f"max_period={max_period!r} is not valid; expected a number > 0")
    t = jnp.asarray(t)
    t = t.astype(jnp.result_type(t.dtype, jnp.float32))
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=t.dtype) / max(half, 1))
    args = t[..., None] * freqs
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    if dim % 2:
        emb = jnp.concatenate([emb, jnp.zeros(emb.shape[:-1] + (1,), emb.dtype)], axis=-1)
    return emb
