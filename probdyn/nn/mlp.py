"""Multilayer perceptron with configurable depth, width and activation (an equinox module)."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from probdyn.nn._checks import check_size, check_vector

Array = jax.Array

__all__ = ["ACTIVATIONS", "MLP", "get_activation"]

#: Activations known by name; any callable ``Array -> Array`` is accepted too.
ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "elu": jax.nn.elu,
    "softplus": jax.nn.softplus,
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda x: x,
}


def get_activation(activation: str | Callable[[Array], Array]) -> Callable[[Array], Array]:
    """Resolve an activation given by name (a key of :data:`ACTIVATIONS`) or as a callable."""
    if callable(activation):
        return activation
    if activation in ACTIVATIONS:
        return ACTIVATIONS[activation]
    raise ValueError(
        f"activation must be a callable or one of {sorted(ACTIVATIONS)}, got {activation!r}"
    )


class MLP(eqx.Module):
    """Fully connected network ``in_size -> width x depth -> out_size``.

    .. math::

        h_0 = x,\\quad h_{\\ell} = \\phi(W_\\ell h_{\\ell-1} + b_\\ell)\\ (\\ell = 1..L),\\quad
        y = \\psi(W_{L+1} h_L + b_{L+1}).

    Parameters
    ----------
    in_size, out_size : int
        Input and output dimensions.
    width : int
        Hidden width.
    depth : int
        Number of hidden layers :math:`L`; ``depth=0`` is a single affine map.
    activation : str or callable
        :math:`\\phi`, a name in :data:`ACTIVATIONS` or a callable.
    final_activation : str or callable
        :math:`\\psi` (default ``"identity"``).
    use_bias : bool
        Whether every layer has a bias.
    dtype : dtype, optional
        Parameter dtype.
    key : PRNGKey
        Initialisation key (``eqx.nn.Linear``'s, i.e. PyTorch's, uniform initialisation).

    Notes
    -----
    ``layers`` is a tuple of ``eqx.nn.Linear``; swap one with ``eqx.tree_at`` to change a
    layer (e.g. for a Bayesian one). Call on one input of shape (in_size,); ``jax.vmap``
    for batches.
    """

    layers: tuple[eqx.nn.Linear, ...]
    activation: Callable[[Array], Array] = eqx.field(static=True)
    final_activation: Callable[[Array], Array] = eqx.field(static=True)
    in_size: int = eqx.field(static=True)
    out_size: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        out_size: int,
        width: int,
        depth: int,
        activation: str | Callable[[Array], Array] = "tanh",
        final_activation: str | Callable[[Array], Array] = "identity",
        use_bias: bool = True,
        dtype=None,
        *,
        key,
    ):
        self.in_size = check_size("in_size", in_size)
        self.out_size = check_size("out_size", out_size)
        self.width = check_size("width", width)
        self.depth = check_size("depth", depth, minimum=0)
        self.activation = get_activation(activation)
        self.final_activation = get_activation(final_activation)
        sizes = [self.in_size] + [self.width] * self.depth + [self.out_size]
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(
            eqx.nn.Linear(a, b, use_bias=use_bias, dtype=dtype, key=k)
            for a, b, k in zip(sizes[:-1], sizes[1:], keys, strict=True)
        )

    def __call__(self, x: Array) -> Array:
        """Apply the network: ``x`` of shape (in_size,) -> (out_size,)."""
        check_vector("x", x, self.in_size)
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.final_activation(self.layers[-1](x))
