r"""Noise-driven ReLU RNN that emulates a hidden Markov model (Torre et al., 2025).

.. math::

    h_t = \mathrm{ReLU}(W_{hh} h_{t-1} + W_{ih} x_t), \quad h_0 = 0, \quad
    x_t \sim \mathcal N(0, I_d), \qquad
    y_t \sim \mathrm{Categorical}(\mathrm{softmax}(W_{out} h_t)),

for t = 1..T, no biases. During training a symbol is drawn by the straight-through
Gumbel-softmax estimator (Jang et al., 2017): the forward value is the one-hot sample
:math:`\mathrm{onehot}(\arg\max(\ell + g))` with Gumbel noise g (an exact categorical
draw), and the backward pass uses the gradient of :math:`\mathrm{softmax}((\ell + g)/\tau)`.
The trainer is :func:`probdyn.infer.train_emulator`.

References
----------
E. Torre, M. Viscione, L. Pompe, B. F. Grewe, V. Mante. "Mechanistic Interpretability of
RNNs emulating Hidden Markov Models." NeurIPS 2025, arXiv:2510.25674.
E. Jang, S. Gu, B. Poole. "Categorical Reparameterization with Gumbel-Softmax." ICLR 2017.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = ["HMMEmulator", "gumbel_softmax_straight_through"]


def gumbel_softmax_straight_through(
    rng_key: jax.Array, logits: ArrayLike, tau: float = 1.0
) -> jax.Array:
    r"""Straight-through Gumbel-softmax sample along the last axis.

    Parameters
    ----------
    rng_key : Array
        PRNG key.
    logits : ArrayLike, shape (..., S)
        Unnormalised log-probabilities.
    tau : float
        Temperature of the relaxation used for the backward pass.

    Returns
    -------
    Array, shape (..., S)
        Exactly one-hot in the forward pass (a draw from ``Categorical(logits)``); its
        gradient is that of :math:`\mathrm{softmax}((\ell + g) / \tau)`.
    """
    logits = jnp.asarray(logits)
    g = jax.random.gumbel(rng_key, logits.shape, logits.dtype)
    z = logits + g
    soft = jax.nn.softmax(z / tau, axis=-1)
    hard = jax.nn.one_hot(jnp.argmax(z, axis=-1), logits.shape[-1], dtype=soft.dtype)
    return hard + (soft - jax.lax.stop_gradient(soft))  # exactly one-hot forward


def _uniform(key, shape, bound):
    return jax.random.uniform(key, shape, minval=-bound, maxval=bound)


class HMMEmulator(eqx.Module):
    """A noise-driven ReLU RNN with a linear readout to symbol logits.

    Parameters
    ----------
    hidden_size : int
        H, number of recurrent units (150 in the paper).
    noise_dim : int
        d, dimension of the Gaussian input noise (100 in the paper).
    num_symbols : int
        S, number of emission symbols (3 in the paper).
    rng_key : Array
        PRNG key for the initial weights, uniform on :math:`\\pm 1/\\sqrt{H}` as
        PyTorch's ``nn.RNN`` and ``nn.Linear`` (the reference implementation).
    recurrent_identity : float
        Added times the identity to the initial ``W_hh`` (IRNN-style initialisation, Le et
        al. 2015): slow hidden dynamics from the first step. With CPU-sized batches a
        network started from PyTorch's (0, 1) stays at the i.i.d. solution that matches
        only the symbol frequencies; :func:`probdyn.infer.train_emulator` starts from
        0.9 with ``recurrent_scale=0.15``. (0.9 with the full random part, spectral
        radius about 1.5, became explosive in training.)
    recurrent_scale : float
        Multiplies the random part of the initial ``W_hh``. Its spectral radius is about
        ``recurrent_scale / sqrt(3)`` (circular law for entries uniform on
        +-1/sqrt(H)), so ``recurrent_identity=0.9, recurrent_scale=0.15``
        starts every unit as a leaky integrator with spectral radius about 0.98.
    readout_scale : float
        Multiplies the initial ``W_out`` (sharper initial symbol probabilities).

    References
    ----------
    Q. V. Le, N. Jaitly, G. E. Hinton. "A Simple Way to Initialize Recurrent Networks of
    Rectified Linear Units." arXiv:1504.00941, 2015.

    Attributes
    ----------
    W_hh : Array, shape (H, H)
    W_ih : Array, shape (H, d)
    W_out : Array, shape (S, H)
    """

    W_hh: jax.Array
    W_ih: jax.Array
    W_out: jax.Array

    def __init__(
        self,
        hidden_size: int = 150,
        noise_dim: int = 100,
        num_symbols: int = 3,
        *,
        rng_key: jax.Array,
        recurrent_identity: float = 0.0,
        recurrent_scale: float = 1.0,
        readout_scale: float = 1.0,
    ):
        for name, v in (
            ("hidden_size", hidden_size),
            ("noise_dim", noise_dim),
            ("num_symbols", num_symbols),
        ):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int; got {v!r}")
        if num_symbols < 2:
            raise ValueError(f"num_symbols must be at least 2; got {num_symbols}")
        k1, k2, k3 = jax.random.split(rng_key, 3)
        bound = 1.0 / hidden_size**0.5
        eye = float(recurrent_identity) * jnp.eye(hidden_size)
        rand = float(recurrent_scale) * _uniform(k1, (hidden_size, hidden_size), bound)
        self.W_hh = rand + eye
        self.W_ih = _uniform(k2, (hidden_size, noise_dim), bound)
        self.W_out = float(readout_scale) * _uniform(k3, (num_symbols, hidden_size), bound)

    @property
    def hidden_size(self) -> int:
        return self.W_hh.shape[0]

    @property
    def noise_dim(self) -> int:
        return self.W_ih.shape[1]

    @property
    def num_symbols(self) -> int:
        return self.W_out.shape[0]

    def step(self, h: ArrayLike, x: ArrayLike) -> jax.Array:
        """One recurrent step ``ReLU(W_hh h + W_ih x)``; h (..., H), x (..., d) -> (..., H)."""
        return jax.nn.relu(jnp.asarray(h) @ self.W_hh.T + jnp.asarray(x) @ self.W_ih.T)

    def readout(self, h: ArrayLike) -> jax.Array:
        """Symbol logits ``W_out h``; h (..., H) -> (..., S)."""
        return jnp.asarray(h) @ self.W_out.T

    def hidden_states(self, noise: ArrayLike, h0: ArrayLike | None = None) -> jax.Array:
        """Run the recurrence on given inputs.

        Parameters
        ----------
        noise : ArrayLike, shape (N, T, d)
            Inputs :math:`x_1 .. x_T` of N sequences.
        h0 : ArrayLike, shape (N, H) or (H,), optional
            Initial state, default 0.

        Returns
        -------
        Array, shape (N, T, H)
            :math:`h_1 .. h_T`.
        """
        noise = jnp.asarray(noise)
        if noise.ndim != 3 or noise.shape[-1] != self.noise_dim:
            raise ValueError(
                f"noise must have shape (N, T, noise_dim={self.noise_dim}); got {noise.shape}"
            )
        N = noise.shape[0]
        h = jnp.zeros((N, self.hidden_size), noise.dtype) if h0 is None else h0
        h = jnp.broadcast_to(jnp.asarray(h, noise.dtype), (N, self.hidden_size))
        drive = jnp.swapaxes(noise @ self.W_ih.T, 0, 1)  # (T, N, H), one big matmul

        def body(h, u):
            h = jax.nn.relu(h @ self.W_hh.T + u)
            return h, h

        _, hs = jax.lax.scan(body, h, drive)
        return jnp.swapaxes(hs, 0, 1)

    def _noise(self, rng_key, num_sequences, num_timesteps, noise_scale):
        shape = (num_sequences, num_timesteps, self.noise_dim)
        return noise_scale * jax.random.normal(rng_key, shape, self.W_ih.dtype)

    def sample(
        self,
        rng_key: jax.Array,
        num_sequences: int,
        num_timesteps: int,
        *,
        noise_scale: float = 1.0,
        return_hidden: bool = False,
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        """Draw symbol sequences; jit- and vmap-compatible (sizes are static).

        Parameters
        ----------
        rng_key : Array
        num_sequences : int
            N.
        num_timesteps : int
            T.
        noise_scale : float
            Multiplies the input noise (gamma of the paper's noise-sensitivity analysis).
        return_hidden : bool
            Also return the hidden states.

        Returns
        -------
        symbols : Array of int32, shape (N, T)
        hidden : Array, shape (N, T, H), only with ``return_hidden``
        """
        _check_sizes(num_sequences, num_timesteps)
        k_noise, k_sym = jax.random.split(rng_key)
        hs = self.hidden_states(self._noise(k_noise, num_sequences, num_timesteps, noise_scale))
        symbols = jax.random.categorical(k_sym, self.readout(hs), axis=-1).astype(jnp.int32)
        return (symbols, hs) if return_hidden else symbols

    def sample_one_hot(
        self,
        rng_key: jax.Array,
        num_sequences: int,
        num_timesteps: int,
        *,
        tau: float = 1.0,
        noise_scale: float = 1.0,
    ) -> jax.Array:
        """Differentiable draw: straight-through Gumbel-softmax one-hot symbols.

        Returns
        -------
        Array, shape (N, T, S)
            Exactly one-hot values whose gradient flows to the weights through the
            relaxed sample (see :func:`gumbel_softmax_straight_through`).
        """
        _check_sizes(num_sequences, num_timesteps)
        k_noise, k_sym = jax.random.split(rng_key)
        hs = self.hidden_states(self._noise(k_noise, num_sequences, num_timesteps, noise_scale))
        return gumbel_softmax_straight_through(k_sym, self.readout(hs), tau)


def _check_sizes(num_sequences, num_timesteps):
    for name, v in (("num_sequences", num_sequences), ("num_timesteps", num_timesteps)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int; got {v!r}")
