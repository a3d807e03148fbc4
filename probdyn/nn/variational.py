r"""Variational-dropout layers with the local reparameterisation trick, and their KL terms.

A linear map (``eqx.nn.Linear``) or convolution (``eqx.nn.Conv1d``/``Conv2d``/...) with
weights :math:`W` and bias :math:`b` whose weights are Gaussian with a variance
proportional to their square has Gaussian pre-activations given the input :math:`x`, with

.. math::

    m = W x + b, \qquad v = W^2 x^2 + b^2

(squares elementwise; for a convolution, the convolution of :math:`x^2` with the squared
kernel). The *local reparameterisation* (Kingma, Salimans & Welling 2015) samples the
pre-activations instead of the weights: one standard normal :math:`\epsilon` per output.
Two parametrisations:

* ``"barnn"`` (Coscia et al. 2025, as their reference code): weights
  :math:`\mathcal{N}(\alpha W, \alpha^2 W^2)`, output :math:`\alpha m + \alpha\sqrt{v}\,
  \epsilon`; :math:`\alpha` comes from an encoder of the state and time, per sample (and
  per grid point); the deterministic network is the member :math:`\alpha = 1,
  \epsilon = 0`.
* ``"gaussian"`` (Kingma et al. 2015; Molchanov et al. 2017): weights
  :math:`\mathcal{N}(W, \alpha W^2)`, output :math:`m + \sqrt{\alpha v}\,\epsilon`; as
  :math:`\alpha \to 0` it is the deterministic network.

KL terms, per weight (multiply by the number of weights sharing one :math:`\alpha`):

* :func:`tvamp_kl`: BARNN's temporal VAMP prior, the batch-aggregated posterior
  collapsed to :math:`\mathcal{N}(\bar\alpha W, \overline{\alpha^2} W^2)` (batch means);
  the KL between two Gaussians, :math:`W` cancelling.
* :func:`log_uniform_kl`: the log-uniform prior of variational dropout, with the
  approximation of Molchanov, Ashukha & Vetrov (2017).
* :func:`ard_kl`: the ARD prior with its variance at the empirical-Bayes optimum,
  :math:`\tfrac12\log(1 + 1/\alpha)` (Kharitonov et al. 2018; the reference's ARD layers).

All take :math:`\log\alpha` (the BARNN rate :math:`\alpha = p/(1-p)` with
:math:`p = \sigma(z)` is exactly :math:`\alpha = e^{z}`), so no rate underflows.

References
----------
D. P. Kingma, T. Salimans and M. Welling, "Variational dropout and the local
reparameterization trick", NeurIPS 2015.

D. Molchanov, A. Ashukha and D. Vetrov, "Variational dropout sparsifies deep neural
networks", ICML 2017.

V. Kharitonov, D. Molchanov and D. Vetrov, "Variational dropout via empirical Bayes",
arXiv:1811.00596, 2018.

D. Coscia, M. Welling, N. Demo and G. Rozza, "BARNN: a Bayesian autoregressive and
recurrent neural network", ICML 2025, arXiv:2501.18665.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry_2x32
from jax.typing import ArrayLike

from probdyn.nn.cells import (
    _ELMAN_NONLINEARITIES,
    ElmanCell,
    GRUCell,
    LSTMCell,
    gru_update,
    lstm_update,
)

__all__ = [
    "PARAMETRISATIONS",
    "VariationalLayer",
    "ard_kl",
    "is_variational_candidate",
    "layer_moments",
    "log_uniform_kl",
    "num_weights",
    "tvamp_kl",
]

#: The two ways a rate enters a layer (see the module docstring).
PARAMETRISATIONS = ("barnn", "gaussian")
# inside the square root, so that its gradient stays finite where v = 0
_TOL = 1e-12
# Molchanov et al. (2017), eq. (14)
_K1, _K2, _K3 = 0.63576, 1.87320, 1.48695


_CELLS = (GRUCell, LSTMCell, ElmanCell)


def _standard_normal(key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
    r"""Standard normal draws of the local reparameterisation.

    For a Threefry key and float32 this is JAX's non-partitionable Threefry stream (one
    32-bit word per draw, both words of every hash used), mapped to a normal exactly as
    ``jax.random.normal`` maps its bits (uniform on ``(-1, 1)``, :math:`\sqrt2\,
    \mathrm{erfinv}`): full-quality draws at about 60% of ``jax.random.normal``'s CPU
    cost with the default partitionable Threefry, which spends one hash per word. Drawing
    the noise was a quarter of a BARNN training step's cost (bench/barnn.py). Other keys
    and dtypes use ``jax.random.normal``.
    """
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    threefry = (
        str(jax.random.key_impl(key)) == "threefry2x32"
        if typed
        else key.shape == (2,) and key.dtype == jnp.uint32
    )
    if not threefry or jnp.dtype(dtype) != jnp.float32:
        return jax.random.normal(key, shape, dtype)
    data = jax.random.key_data(key) if typed else key
    bits = threefry_2x32((data[0], data[1]), jnp.arange(int(np.prod(shape)), dtype=jnp.uint32))
    # 23 random mantissa bits: a float in [1, 2), then [0, 1) -> [-1 + ulp, 1), the
    # arithmetic of jax.random.uniform
    unit = jax.lax.bitcast_convert_type((bits >> 9) | np.uint32(0x3F800000), jnp.float32) - 1.0
    low = np.nextafter(np.float32(-1.0), np.float32(0.0))
    u = jnp.maximum(low, unit * (np.float32(1.0) - low) + low)
    return (np.float32(np.sqrt(2.0)) * jax.scipy.special.erfinv(u)).reshape(shape)


def is_variational_candidate(node) -> bool:
    """Whether ``node`` is a layer the local reparameterisation applies to.

    ``eqx.nn.Linear``, every ``eqx.nn.Conv`` (Conv1d, Conv2d, ...) and the recurrent
    cells :class:`probdyn.nn.GRUCell`, :class:`~probdyn.nn.LSTMCell` and
    :class:`~probdyn.nn.ElmanCell` (both of their affine maps, one rate).
    """
    return isinstance(node, (eqx.nn.Linear, eqx.nn.Conv, *_CELLS))


def num_weights(layer: eqx.Module) -> int:
    """Number of weights and biases of a layer or cell (what one rate governs)."""
    if isinstance(layer, _CELLS):
        arrays = (layer.weight_ih, layer.weight_hh, layer.bias_ih, layer.bias_hh)
        return int(sum(a.size for a in arrays if a is not None))
    n = int(layer.weight.size)
    if getattr(layer, "bias", None) is not None:
        n += int(layer.bias.size)
    return n


def _affine_moments(weight, bias, x):
    """``W x + b`` and ``W^2 x^2 + b^2`` of one affine map of a recurrent cell."""
    m, v = weight @ x, (weight**2) @ (x**2)
    if bias is not None:
        m, v = m + bias, v + bias**2
    return m, v


def layer_moments(layer: eqx.Module, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""Mean-path output :math:`m = Wx + b` and :math:`v = W^2 x^2 + b^2` of a layer.

    Parameters
    ----------
    layer : eqx.nn.Linear or eqx.nn.Conv
        The layer (its own call convention: ``(in_features,)`` for Linear,
        ``(in_channels, *spatial)`` for convolutions).
    x : jax.Array
        The layer's input.

    Returns
    -------
    m, v : jax.Array
        Both of the layer's output shape.
    """
    if not isinstance(layer, (eqx.nn.Linear, eqx.nn.Conv)):
        raise TypeError(
            f"layer={type(layer).__name__} is not supported; expected eqx.nn.Linear or an "
            "eqx.nn.Conv layer"
        )
    squared = eqx.tree_at(lambda m: m.weight, layer, layer.weight**2)
    if getattr(layer, "bias", None) is not None:
        squared = eqx.tree_at(lambda m: m.bias, squared, layer.bias**2)
    return layer(x), squared(x**2)


class VariationalLayer(eqx.Module):
    """A Linear/Conv layer (or recurrent cell) whose output is drawn by the local
    reparameterisation.

    For a recurrent cell, the pre-activations of both affine maps (input-to-hidden and
    hidden-to-hidden) are drawn, with one rate for the whole cell, and go through the
    cell's gate arithmetic (:func:`probdyn.nn.gru_update`, :func:`probdyn.nn.lstm_update`);
    the call is the cell's, ``layer(x, state) -> state``. The GRU draws its two maps
    separately (its reset gate multiplies the hidden pre-activation), the LSTM and Elman
    cells draw their sum (one draw of the summed pre-activation, the same distribution).

    Built by :class:`probdyn.nn.BARNN` and :class:`probdyn.nn.VariationalDropout` for one
    forward pass: it holds the rate and the key of that pass.

    Parameters
    ----------
    layer : eqx.nn.Linear, eqx.nn.Conv, GRUCell, LSTMCell or ElmanCell
        The deterministic layer (its weights are the posterior's scale parameters).
    log_alpha : jax.Array, shape () or broadcastable to the layer's output
        Log rate. For a convolution, shape ``(*spatial,)`` gives one rate per grid point;
        for a Linear layer or a cell it must be a scalar (one per sample).
    key : jax.Array or None
        Key of :math:`\\epsilon`; ``None`` gives the mean path (:math:`\\epsilon = 0`).
    parametrisation : {"barnn", "gaussian"}
        See the module docstring.
    """

    layer: eqx.Module
    log_alpha: jax.Array
    key: jax.Array | None
    parametrisation: str = eqx.field(static=True)

    def __init__(self, layer, log_alpha, key, parametrisation: str = "barnn"):
        if parametrisation not in PARAMETRISATIONS:
            raise ValueError(
                f"parametrisation={parametrisation!r} is not known; expected one of "
                f"{PARAMETRISATIONS}"
            )
        if not is_variational_candidate(layer):
            raise TypeError(
                f"layer={type(layer).__name__} is not supported; expected eqx.nn.Linear or "
                "an eqx.nn.Conv layer"
            )
        log_alpha = jnp.asarray(log_alpha)
        if isinstance(layer, (eqx.nn.Linear, *_CELLS)) and log_alpha.ndim > 0:
            raise ValueError(
                f"log_alpha has shape {log_alpha.shape} for a {type(layer).__name__}; expected "
                "a scalar (one rate per sample); per-grid-point rates need a pointwise "
                "convolution (eqx.nn.Conv1d with kernel size 1) on channel-first fields"
            )
        self.layer = layer
        self.log_alpha = log_alpha
        self.key = key
        self.parametrisation = parametrisation

    def _draw(self, mean, var, key):
        alpha = jnp.exp(self.log_alpha).astype(mean.dtype)
        if key is None:
            eps = jnp.zeros_like(mean)
        else:
            eps = _standard_normal(key, mean.shape, mean.dtype)
        if self.parametrisation == "barnn":
            return alpha * mean + alpha * jnp.sqrt(var + _TOL) * eps
        return mean + jnp.sqrt(alpha * var + _TOL) * eps

    def __call__(self, x: jax.Array, state=None, *, key: jax.Array | None = None):
        if isinstance(self.layer, _CELLS):
            return self._cell(x, state)
        mean, var = layer_moments(self.layer, x)
        return self._draw(mean, var, self.key)

    def _cell(self, x, state):
        cell = self.layer
        h = state[0] if isinstance(cell, LSTMCell) else state
        cell._check(x, h)
        a_m, a_v = _affine_moments(cell.weight_ih, cell.bias_ih, x)
        b_m, b_v = _affine_moments(cell.weight_hh, cell.bias_hh, h)
        if isinstance(cell, GRUCell):
            k_a, k_b = (None, None) if self.key is None else jax.random.split(self.key)
            return gru_update(self._draw(a_m, a_v, k_a), self._draw(b_m, b_v, k_b), h)
        pre = self._draw(a_m + b_m, a_v + b_v, self.key)
        if isinstance(cell, LSTMCell):
            return lstm_update(pre, state[1])
        return _elman(cell, pre)


def _elman(cell, pre):
    return _ELMAN_NONLINEARITIES[cell.nonlinearity](pre)


def tvamp_kl(log_alpha: ArrayLike, axis: int = 0) -> jax.Array:
    r"""Per-weight KL of BARNN's posterior from the temporal VAMP prior.

    With :math:`\alpha_i` the rates of the samples :math:`i` of a batch (at one time step,
    layer and grid point), :math:`\bar\alpha = \operatorname{mean}_i \alpha_i` and
    :math:`\overline{\alpha^2} = \operatorname{mean}_i \alpha_i^2`,

    .. math::

        \mathrm{KL}\bigl(\mathcal{N}(\alpha_i W, \alpha_i^2 W^2)\,\|\,
            \mathcal{N}(\bar\alpha W, \overline{\alpha^2} W^2)\bigr)
        = \tfrac12\Bigl[\frac{(\alpha_i - \bar\alpha)^2 + \alpha_i^2}{\overline{\alpha^2}}
            - 1 - \log\frac{\alpha_i^2}{\overline{\alpha^2}}\Bigr],

    the same for every weight :math:`W \neq 0`.

    Parameters
    ----------
    log_alpha : array_like, shape (..., batch, ...)
        Log rates, the batch along ``axis``.
    axis : int
        The batch axis (aggregated over).

    Returns
    -------
    jax.Array, same shape as ``log_alpha``
        KL per weight for every sample; multiply by the layer's :func:`num_weights`.
        Zero where all rates of the batch are equal.
    """
    log_alpha = jnp.asarray(log_alpha)
    alpha = jnp.exp(log_alpha)
    mean = jnp.mean(alpha, axis=axis, keepdims=True)
    log_second = jax.nn.logsumexp(2.0 * log_alpha, axis=axis, keepdims=True) - jnp.log(
        log_alpha.shape[axis]
    )
    second = jnp.exp(log_second)
    return 0.5 * (((alpha - mean) ** 2 + alpha**2) / second - 1.0 - (2.0 * log_alpha - log_second))


def log_uniform_kl(log_alpha: ArrayLike) -> jax.Array:
    r"""Per-weight KL from the log-uniform prior, Molchanov et al.'s approximation.

    .. math::

        \mathrm{KL} \approx k_1 - k_1\,\sigma(k_2 + k_3 \log\alpha)
            + \tfrac12 \log(1 + 1/\alpha),

    :math:`k_1 = 0.63576,\ k_2 = 1.87320,\ k_3 = 1.48695`, for the posterior
    :math:`\mathcal{N}(\theta, \alpha\theta^2)` (up to the prior's infinite constant,
    fixed so that the KL vanishes as :math:`\alpha \to \infty`).

    Parameters
    ----------
    log_alpha : array_like, any shape

    Returns
    -------
    jax.Array, same shape
    """
    log_alpha = jnp.asarray(log_alpha)
    return _K1 - _K1 * jax.nn.sigmoid(_K2 + _K3 * log_alpha) + 0.5 * jax.nn.softplus(-log_alpha)


def ard_kl(log_alpha: ArrayLike) -> jax.Array:
    r"""Per-weight KL from an ARD prior at its optimal variance, :math:`\tfrac12\log(1+1/\alpha)`.

    For :math:`q = \mathcal{N}(\theta, \alpha\theta^2)` and prior
    :math:`\mathcal{N}(0, \tau^2)` with :math:`\tau^2 = (1 + \alpha)\theta^2` (the
    maximiser of the ELBO in :math:`\tau`), the KL is exactly this.

    Parameters
    ----------
    log_alpha : array_like, any shape

    Returns
    -------
    jax.Array, same shape
    """
    return 0.5 * jax.nn.softplus(-jnp.asarray(log_alpha))
