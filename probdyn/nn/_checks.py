"""Argument validators shared by the modules of :mod:`probdyn.nn`."""

from __future__ import annotations

import operator

import jax


def check_size(name: str, value, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise if it is not an integer ``>= minimum``."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    try:
        out = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if out < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return out


def check_vector(name: str, value: jax.Array, size: int) -> None:
    """Raise a ValueError if ``value`` (static shape) is not a vector of length ``size``."""
    shape = getattr(value, "shape", None)
    if shape != (size,):
        raise ValueError(
            f"{name} must have shape ({size},), got shape {shape}; vmap over leading batch axes"
        )
