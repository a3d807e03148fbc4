r"""Fourier neural operator blocks for periodic 1-D fields (Li et al. 2021).

A spectral convolution multiplies the lowest ``modes`` Fourier modes of every input
channel by learned complex weights and transforms back:

.. math::

    (\mathcal{K}v)_o(x) = \mathcal{F}^{-1}\Bigl[\sum_i R_{i o k}\,
        (\mathcal{F}v_i)(k)\Bigr](x), \qquad k < \text{modes}.

:class:`FNO1d` lifts the input channels to ``width`` with a pointwise (kernel-1)
convolution, applies ``num_layers`` blocks ``v <- silu(K v + W v)`` (``W`` pointwise) and
projects back pointwise, as the FNO of the BARNN reference code does. Fields are
channel-first, ``(channels, num_points)``, like :class:`equinox.nn.Conv1d`; ``vmap`` over
a batch.

References
----------
Z. Li, N. Kovachki, K. Azizzadenesheli, B. Liu, K. Bhattacharya, A. Stuart and
A. Anandkumar, "Fourier neural operator for parametric partial differential equations",
ICLR 2021.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["FNO1d", "SpectralConv1d"]


def _check_size(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} is not valid; expected an integer >= {minimum}")
    return value


class SpectralConv1d(eqx.Module):
    """Spectral convolution on a periodic 1-D grid.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and output fields.
    modes : int
        Fourier modes kept (``<= num_points // 2 + 1`` at call time).
    key : jax.Array
        PRNG key of the initialisation (uniform on ``[0, 1/(in * out))``, real and
        imaginary parts, as in Li et al.).

    Notes
    -----
    Call on ``x`` of shape ``(in_channels, num_points)``; returns ``(out_channels,
    num_points)``. The complex weights are stored as two real arrays ``weight_real`` and
    ``weight_imag`` of shape ``(in_channels, out_channels, modes)`` so that every
    optimiser and sampler sees real parameters.
    """

    weight_real: jax.Array
    weight_imag: jax.Array
    modes: int = eqx.field(static=True)

    def __init__(self, in_channels: int, out_channels: int, modes: int, *, key: jax.Array):
        _check_size("in_channels", in_channels)
        _check_size("out_channels", out_channels)
        self.modes = _check_size("modes", modes)
        scale = 1.0 / (in_channels * out_channels)
        k1, k2 = jax.random.split(key)
        shape = (in_channels, out_channels, modes)
        self.weight_real = scale * jax.random.uniform(k1, shape)
        self.weight_imag = scale * jax.random.uniform(k2, shape)

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        num_points = x.shape[-1]
        if self.modes > num_points // 2 + 1:
            raise ValueError(
                f"modes={self.modes} exceeds the {num_points // 2 + 1} Fourier modes of a "
                f"grid of {num_points} points; expected modes <= num_points // 2 + 1"
            )
        x_ft = jnp.fft.rfft(x, axis=-1)[:, : self.modes]
        weight = self.weight_real + 1j * self.weight_imag
        out_ft = jnp.einsum("ik,iok->ok", x_ft, weight)
        full = jnp.zeros((out_ft.shape[0], num_points // 2 + 1), out_ft.dtype)
        full = full.at[:, : self.modes].set(out_ft)
        return jnp.fft.irfft(full, n=num_points, axis=-1).astype(x.dtype)


class FNO1d(eqx.Module):
    """A small 1-D Fourier neural operator for periodic fields.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and output fields (e.g. the number of past time steps
        and of predicted increments).
    width : int
        Hidden channels.
    modes : int
        Fourier modes kept in every spectral convolution.
    num_layers : int
        Fourier blocks.
    dropout : float
        Dropout rate before every pointwise convolution and the projection (0: none).
        Dropout is active when the call gets a ``key`` (and ``inference=False``); keep
        passing keys at prediction time for MC dropout (Gal & Ghahramani 2016). Without a
        key the call is the mean network.
    key : jax.Array
        PRNG key of the initialisation.

    Notes
    -----
    Call on ``x`` of shape ``(in_channels, num_points)``; returns ``(out_channels,
    num_points)``. :meth:`variational_layers` names the layers that
    :class:`probdyn.nn.BARNN` makes Bayesian (the pointwise convolutions and the
    projection, as in the BARNN reference code).
    """

    lift: eqx.nn.Conv1d
    spectral: tuple[SpectralConv1d, ...]
    pointwise: tuple[eqx.nn.Conv1d, ...]
    project: eqx.nn.Conv1d
    dropout: eqx.nn.Dropout | None
    inference: bool = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        width: int = 32,
        modes: int = 12,
        num_layers: int = 4,
        dropout: float = 0.0,
        inference: bool = False,
        key: jax.Array,
    ):
        _check_size("width", width)
        _check_size("num_layers", num_layers)
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout={dropout!r} is not valid; expected a rate in [0, 1)")
        keys = jax.random.split(key, 2 * num_layers + 2)
        self.lift = eqx.nn.Conv1d(in_channels, width, 1, key=keys[0])
        self.spectral = tuple(
            SpectralConv1d(width, width, modes, key=k) for k in keys[1 : num_layers + 1]
        )
        self.pointwise = tuple(
            eqx.nn.Conv1d(width, width, 1, key=k) for k in keys[num_layers + 1 : -1]
        )
        self.project = eqx.nn.Conv1d(width, out_channels, 1, key=keys[-1])
        self.dropout = eqx.nn.Dropout(float(dropout)) if dropout > 0 else None
        self.inference = bool(inference)

    def variational_layers(self) -> list[eqx.Module]:
        """The pointwise convolutions and the projection (what BARNN makes Bayesian)."""
        return [*self.pointwise, self.project]

    def _drop(self, x, key):
        if self.dropout is None or key is None:  # no key: the mean network
            return x
        return self.dropout(x, key=key, inference=self.inference)

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        if x.ndim != 2:
            raise ValueError(
                f"x has shape {x.shape}; expected (in_channels, num_points) (vmap over a batch)"
            )
        num = len(self.pointwise) + 1
        keys = [None] * num if key is None else list(jax.random.split(key, num))
        x = self.lift(x)
        for spec, point, k in zip(self.spectral, self.pointwise, keys[:-1], strict=True):
            x = jax.nn.silu(spec(x) + point(self._drop(x, k)))
        return self.project(self._drop(x, keys[-1]))
