"""Recurrent cells (GRU, LSTM, Elman) as equinox modules, and a ``lax.scan`` runner.

Every cell maps ``(x, state) -> state`` for a single input vector; batch with ``jax.vmap``.
Parameters use PyTorch's layout and initialisation (``weight_ih`` of shape
``(gates * hidden_size, input_size)``, ``weight_hh`` of shape ``(gates * hidden_size,
hidden_size)`` and two biases, gates in the order ``r, z, n`` for the GRU and ``i, f, g, o``
for the LSTM), so weights trained with ``torch.nn.GRUCell``/``LSTMCell``/``RNNCell`` load
unchanged. The gate arithmetic is exposed as the pure functions :func:`gru_update` and
:func:`lstm_update`, so that layers with other (e.g. Bayesian) linear maps reuse it.

References
----------
K. Cho et al., "Learning Phrase Representations using RNN Encoder-Decoder for Statistical
Machine Translation", EMNLP 2014 (GRU).
S. Hochreiter and J. Schmidhuber, "Long Short-Term Memory", Neural Computation 9, 1997.
J. L. Elman, "Finding Structure in Time", Cognitive Science 14, 1990.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from probdyn.nn._checks import check_size, check_vector

Array = jax.Array

__all__ = ["ElmanCell", "GRUCell", "LSTMCell", "gru_update", "lstm_update", "run"]

_ELMAN_NONLINEARITIES: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
}


def _uniform(key, shape, bound, dtype):
    return jax.random.uniform(key, shape, dtype=dtype, minval=-bound, maxval=bound)


def _init_params(key, gates, input_size, hidden_size, use_bias, dtype):
    dtype = jnp.result_type(float) if dtype is None else dtype
    bound = 1.0 / math.sqrt(hidden_size)
    k1, k2, k3, k4 = jax.random.split(key, 4)
    w_ih = _uniform(k1, (gates * hidden_size, input_size), bound, dtype)
    w_hh = _uniform(k2, (gates * hidden_size, hidden_size), bound, dtype)
    if not use_bias:
        return w_ih, w_hh, None, None
    b_ih = _uniform(k3, (gates * hidden_size,), bound, dtype)
    b_hh = _uniform(k4, (gates * hidden_size,), bound, dtype)
    return w_ih, w_hh, b_ih, b_hh


def _affine(weight, bias, x):
    out = weight @ x
    return out if bias is None else out + bias


def gru_update(input_gates: Array, hidden_gates: Array, hidden: Array) -> Array:
    """GRU state update from the two pre-activations.

    .. math::

        r = \\sigma(a_r + b_r),\\quad z = \\sigma(a_z + b_z),\\quad
        n = \\tanh(a_n + r \\odot b_n),\\quad h' = (1 - z) \\odot n + z \\odot h,

    with :math:`a = W_{ih} x + b_{ih}` and :math:`b = W_{hh} h + b_{hh}` (PyTorch's
    convention: the reset gate multiplies the whole hidden pre-activation).

    Parameters
    ----------
    input_gates : Array, shape (3 * hidden_size,)
        :math:`a`, ordered ``r, z, n``.
    hidden_gates : Array, shape (3 * hidden_size,)
        :math:`b`, ordered ``r, z, n``.
    hidden : Array, shape (hidden_size,)
        The previous state :math:`h`.

    Returns
    -------
    Array, shape (hidden_size,)
        The new state :math:`h'`.
    """
    a_r, a_z, a_n = jnp.split(input_gates, 3, axis=-1)
    b_r, b_z, b_n = jnp.split(hidden_gates, 3, axis=-1)
    r = jax.nn.sigmoid(a_r + b_r)
    z = jax.nn.sigmoid(a_z + b_z)
    n = jnp.tanh(a_n + r * b_n)
    return n + z * (hidden - n)


def lstm_update(gates: Array, cell: Array) -> tuple[Array, Array]:
    """LSTM state update from the summed pre-activations.

    .. math::

        i, f, o = \\sigma(\\cdot),\\; g = \\tanh(\\cdot),\\quad
        c' = f \\odot c + i \\odot g,\\quad h' = o \\odot \\tanh(c').

    Parameters
    ----------
    gates : Array, shape (4 * hidden_size,)
        :math:`W_{ih} x + b_{ih} + W_{hh} h + b_{hh}`, ordered ``i, f, g, o``.
    cell : Array, shape (hidden_size,)
        The previous cell state :math:`c`.

    Returns
    -------
    (Array, Array), each of shape (hidden_size,)
        The new ``(h', c')``.
    """
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c_new = jax.nn.sigmoid(f) * cell + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c_new), c_new


class _Cell(eqx.Module):
    weight_ih: Array
    weight_hh: Array
    bias_ih: Array | None
    bias_hh: Array | None
    input_size: int = eqx.field(static=True)
    hidden_size: int = eqx.field(static=True)

    def _check(self, x, hidden):
        check_vector("x", x, self.input_size)
        check_vector("state", hidden, self.hidden_size)

    def init_state(self, dtype=None) -> Any:
        """The zero state (``(h, c)`` for the LSTM), shape (hidden_size,) each."""
        dtype = self.weight_hh.dtype if dtype is None else dtype
        return jnp.zeros(self.hidden_size, dtype)


class GRUCell(_Cell):
    """Gated recurrent unit, one step: ``cell(x, h) -> h'`` (see :func:`gru_update`).

    Parameters
    ----------
    input_size, hidden_size : int
        Sizes of the input ``x`` and of the state ``h``.
    use_bias : bool
        Whether the two affine maps have biases.
    dtype : dtype, optional
        Parameter dtype (default: JAX's default float).
    key : PRNGKey
        Initialisation key; every parameter is
        :math:`\\mathcal U(-1/\\sqrt{H}, 1/\\sqrt{H})` as in PyTorch.
    """

    def __init__(
        self, input_size: int, hidden_size: int, use_bias: bool = True, dtype=None, *, key
    ):
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        params = _init_params(key, 3, self.input_size, self.hidden_size, use_bias, dtype)
        self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh = params

    def __call__(self, x: Array, state: Array) -> Array:
        """One step. ``x``: (input_size,), ``state``: (hidden_size,) -> (hidden_size,)."""
        self._check(x, state)
        a = _affine(self.weight_ih, self.bias_ih, x)
        b = _affine(self.weight_hh, self.bias_hh, state)
        return gru_update(a, b, state)


class LSTMCell(_Cell):
    """Long short-term memory, one step: ``cell(x, (h, c)) -> (h', c')`` (see :func:`lstm_update`).

    Parameters
    ----------
    input_size, hidden_size : int
        Sizes of the input ``x`` and of each of ``h`` and ``c``.
    use_bias : bool
        Whether the two affine maps have biases.
    dtype : dtype, optional
        Parameter dtype (default: JAX's default float).
    key : PRNGKey
        Initialisation key (PyTorch's uniform initialisation).
    """

    def __init__(
        self, input_size: int, hidden_size: int, use_bias: bool = True, dtype=None, *, key
    ):
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        params = _init_params(key, 4, self.input_size, self.hidden_size, use_bias, dtype)
        self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh = params

    def init_state(self, dtype=None) -> tuple[Array, Array]:
        zero = super().init_state(dtype)
        return zero, zero

    def __call__(self, x: Array, state: tuple[Array, Array]) -> tuple[Array, Array]:
        """One step. ``x``: (input_size,), ``state``: ``(h, c)``, each (hidden_size,)."""
        if not (isinstance(state, tuple | list) and len(state) == 2):
            raise TypeError(f"state of an LSTMCell must be a pair (h, c), got {type(state)}")
        h, c = state
        self._check(x, h)
        check_vector("state[1] (c)", c, self.hidden_size)
        gates = _affine(self.weight_ih, self.bias_ih, x) + _affine(self.weight_hh, self.bias_hh, h)
        return lstm_update(gates, c)


class ElmanCell(_Cell):
    """Elman (vanilla) recurrent cell: :math:`h' = \\phi(W_{ih} x + b_{ih} + W_{hh} h + b_{hh})`.

    Parameters
    ----------
    input_size, hidden_size : int
        Sizes of the input ``x`` and of the state ``h``.
    nonlinearity : {"tanh", "relu"}
        :math:`\\phi`; ``"relu"`` gives the ReLU RNN.
    use_bias : bool
        Whether the two affine maps have biases.
    dtype : dtype, optional
        Parameter dtype.
    key : PRNGKey
        Initialisation key (PyTorch's uniform initialisation).
    """

    nonlinearity: str = eqx.field(static=True)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        nonlinearity: str = "tanh",
        use_bias: bool = True,
        dtype=None,
        *,
        key,
    ):
        if nonlinearity not in _ELMAN_NONLINEARITIES:
            raise ValueError(
                f"nonlinearity must be one of {sorted(_ELMAN_NONLINEARITIES)}, got {nonlinearity!r}"
            )
        self.nonlinearity = nonlinearity
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        params = _init_params(key, 1, self.input_size, self.hidden_size, use_bias, dtype)
        self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh = params

    def __call__(self, x: Array, state: Array) -> Array:
        """One step. ``x``: (input_size,), ``state``: (hidden_size,) -> (hidden_size,)."""
        self._check(x, state)
        pre = _affine(self.weight_ih, self.bias_ih, x) + _affine(
            self.weight_hh, self.bias_hh, state
        )
        return _ELMAN_NONLINEARITIES[self.nonlinearity](pre)


def run(cell: Callable[[Array, Any], Any], xs: Array, state0: Any = None, *, reverse: bool = False):
    """Run a cell over a sequence with ``lax.scan``.

    Parameters
    ----------
    cell : callable ``(x, state) -> state``
        Any recurrent cell, e.g. :class:`GRUCell`.
    xs : Array, shape (num_timesteps, input_size)
        The inputs.
    state0 : pytree, optional
        The initial state; default ``cell.init_state()`` (zeros).
    reverse : bool
        Read the sequence from the end (for the backward half of a bidirectional RNN); the
        returned states are then still indexed like ``xs``.

    Returns
    -------
    final_state : pytree
        The state after the last input read.
    states : pytree
        The state after each input, each leaf of shape (num_timesteps, ...).
    """
    if getattr(xs, "ndim", None) != 2:
        raise ValueError(
            f"xs must have shape (num_timesteps, input_size), got {getattr(xs, 'shape', xs)!r}"
        )
    if state0 is None:
        if not hasattr(cell, "init_state"):
            raise TypeError("state0 is required for a cell without an init_state() method")
        state0 = cell.init_state(jnp.result_type(xs))

    def body(state, x):
        new = cell(x, state)
        return new, new

    return lax.scan(body, state0, xs, reverse=reverse)
