"""Flatten-and-vmap: run a one-sequence kernel over a distribution's batch (the one copy).

A process distribution computes one sequence at a time with a kernel and maps it over
its batch: every argument is broadcast to ``(*batch, *event)``, the batch is flattened
to one axis, the kernel is ``vmap``-ed over it and the outputs are reshaped back to
``(*batch, ...)``. When the batch holds a single element the kernel can be called
directly instead (``direct``): a size-1 ``vmap`` turns the kernels' ``lax.cond``
fallbacks into selects that run both branches, and makes XLA's reductions slower.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["flat_map", "flatten_batch", "map_flat"]

_DIRECT = ("single", "scalar", "never")


def flatten_batch(arrays: Sequence, event_ndims: Sequence[int], batch: tuple[int, ...]) -> list:
    """Broadcast each array to ``(*batch, *its event shape)`` and flatten the batch.

    Parameters
    ----------
    arrays : sequence of ArrayLike
    event_ndims : sequence of int
        Number of trailing event axes of each array.
    batch : tuple of int

    Returns
    -------
    list of Array, each of shape ``(prod(batch), *event)``
    """
    n = int(np.prod(batch))
    out = []
    for a, e in zip(arrays, event_ndims, strict=True):
        a = jnp.asarray(a)
        event = a.shape[a.ndim - e :]
        if a.ndim - e > len(batch):  # extra leading axes (of size 1) are dropped
            a = a.reshape(a.shape[a.ndim - e - len(batch) :])
        out.append(jnp.broadcast_to(a, batch + event).reshape((n,) + event))
    return out


def _check_direct(direct):
    if direct not in _DIRECT:
        raise ValueError(f"direct must be one of {_DIRECT}; got {direct!r}")


def map_flat(fn: Callable, flat: Any, batch: tuple[int, ...], *, direct: str = "single") -> Any:
    """``fn`` over the rows of the pytree ``flat`` (leading axis ``prod(batch)``).

    Parameters
    ----------
    fn : callable
        ``fn(row) -> pytree`` for one row of ``flat``.
    flat : pytree of Array, leading axis ``prod(batch)``
    batch : tuple of int
    direct : {"single", "scalar", "never"}
        When to call ``fn`` without ``vmap``: for a batch of one element, only for an
        empty batch ``()``, or never.

    Returns
    -------
    pytree of Array, shapes ``(*batch, *fn's output shape)``
    """
    _check_direct(direct)
    single = int(np.prod(batch)) == 1
    if (direct == "single" and single) or (direct == "scalar" and batch == ()):
        out = fn(jax.tree.map(lambda x: x[0], flat))
        return jax.tree.map(lambda x: x.reshape(batch + x.shape), out)
    out = jax.vmap(fn)(flat)
    return jax.tree.map(lambda x: x.reshape(batch + x.shape[1:]), out)


def flat_map(
    fn: Callable,
    args: Sequence,
    event_ndims: Sequence[int],
    batch: tuple[int, ...],
    *,
    direct: str = "single",
) -> Any:
    """``fn(*args)`` over the flattened ``batch`` (see :func:`flatten_batch`, :func:`map_flat`).

    Returns
    -------
    pytree of Array, shapes ``(*batch, *fn's output shape)``
    """
    _check_direct(direct)
    flat = flatten_batch(args, event_ndims, tuple(batch))
    return map_flat(lambda row: fn(*row), tuple(flat), tuple(batch), direct=direct)
