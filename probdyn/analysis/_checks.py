"""Input checks shared by the analysis modules (eager: they run before any compilation)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def check_callable(name: str, fn) -> Callable:
    if not callable(fn):
        raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
    return fn


def check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_positive(name: str, value, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        expected = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {expected}, got {value!r}")
    return v


def check_array(name: str, value, ndim: int | tuple[int, ...], last: int | None = None):
    """``np.asarray(value)`` with a check of its rank (and last axis length)."""
    arr = np.asarray(value)
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in ndims:
        raise ValueError(
            f"{name} must have {' or '.join(map(str, ndims))} dimension(s), got shape {arr.shape}"
        )
    if last is not None and arr.shape[-1] != last:
        raise ValueError(f"{name} must have last axis of length {last}, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr


def check_finite(name: str, arr) -> None:
    if np.issubdtype(np.asarray(arr).dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got non-finite entries")
