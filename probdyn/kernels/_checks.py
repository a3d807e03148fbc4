"""Input checks and small numerical helpers shared by every module (the one copy).

Checks run eagerly on concrete values and are skipped on traced ones (under ``jit`` the
kernels flag bad input with NaN or an ``overflow`` flag instead). Nothing here imports
NumPyro, so both :mod:`probdyn.kernels` and :mod:`probdyn.processes` use it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "check_generator",
    "check_probs",
    "check_substeps",
    "check_time_grid",
    "check_times",
    "concrete",
    "safe_log",
]


def concrete(value):
    """``np.asarray(value)``, or None when ``value`` is None or traced (checks then skip)."""
    if value is None or isinstance(value, jax.core.Tracer):
        return None
    try:
        return np.asarray(value)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def safe_log(x):
    """:math:`\\log x` where ``x > 0``, ``-inf`` elsewhere, with finite gradients everywhere.

    ``jnp.log`` at 0 gives ``-inf`` too, but its gradient there is NaN under ``where``;
    this double-``where`` keeps the derivative of the masked branch at zero.
    """
    pos = x > 0
    return jnp.where(pos, jnp.log(jnp.where(pos, x, 1.0)), -jnp.inf)


def check_times(name: str, value, dtype, *, ndim: int, t0=None, shape_label: str = "(T,)"):
    """Checked times cast to ``dtype``.

    Always checks the number of dimensions; on concrete input also that the times are
    real, finite, strictly increasing and non-empty (``ndim == 1``), not before ``t0``,
    and still strictly increasing once cast to ``dtype`` (float32 collapses close times).

    Parameters
    ----------
    name : str
        Argument name used in error messages.
    value : ArrayLike, shape () or (T,)
    dtype : dtype
        Floating dtype of the result (the dtype of the rates).
    ndim : {0, 1}
    t0 : ArrayLike, shape (), optional
        Lower bound (``value >= t0``), checked when concrete.
    shape_label : str
        How the expected 1-d shape is written in the error message.

    Returns
    -------
    Array of ``dtype``, shape () or (T,)
    """
    c = concrete(value)  # before jnp.asarray, which would cast float64 to float32
    if c is not None and (not np.issubdtype(c.dtype, np.number) or np.iscomplexobj(c)):
        raise TypeError(f"{name} must be real numbers; got dtype {c.dtype}")
    t = jnp.asarray(value)
    if t.ndim != ndim:
        shape = "()" if ndim == 0 else shape_label
        raise ValueError(f"{name} must have shape {shape}; got {t.shape}")
    c0 = None if t0 is None else concrete(t0)
    if c is not None:
        if not np.all(np.isfinite(c)):
            raise ValueError(f"{name} must be finite; got {c.tolist()}")
        if ndim == 1 and (c.size == 0 or np.any(np.diff(c) <= 0)):
            raise ValueError(f"{name} must be non-empty and strictly increasing; got {c.tolist()}")
        if c0 is not None and np.min(c) < c0:
            raise ValueError(f"{name} must not precede t0={float(c0)}; got {c.tolist()}")
        if ndim == 1 and c.size > 1:
            lowered = np.asarray(c, dtype=np.dtype(jnp.dtype(dtype)))
            if np.any(np.diff(lowered) <= 0):
                raise ValueError(
                    f"{name} are not strictly increasing once cast to {jnp.dtype(dtype).name} "
                    f"(the dtype of rates): gaps down to {np.diff(c).min():.3g} at times up to "
                    f"{np.abs(c).max():.3g} collapse; enable float64 "
                    "(jax.config.update('jax_enable_x64', True)) and pass float64 rates"
                )
    return t.astype(dtype)


def check_time_grid(times, name: str = "times"):
    """A solver's time grid: shape (T,) with T >= 2, floating, finite, strictly increasing.

    Integer times are cast to the default float dtype; values are checked when concrete
    (the error names the first offending pair). Used by the SDE solvers and models.

    Returns
    -------
    Array, shape (T,)
    """
    times = jnp.asarray(times)
    if times.ndim != 1 or times.shape[0] < 2:
        raise ValueError(f"{name} must have shape (T,) with T >= 2; got {times.shape}")
    if not jnp.issubdtype(times.dtype, jnp.floating):
        times = times.astype(jnp.result_type(float))
    tc = concrete(times)
    if tc is not None:
        if not np.all(np.isfinite(tc)):
            raise ValueError(f"{name} contains NaN or infinite values")
        d = np.diff(tc)
        if np.any(d <= 0):
            i = int(np.argmax(d <= 0))
            raise ValueError(
                f"{name} must be strictly increasing; got {name}[{i}]={tc[i]} >= "
                f"{name}[{i + 1}]={tc[i + 1]}"
            )
    return times


def check_substeps(substeps) -> int:
    """A positive Python int of solver steps per interval."""
    if isinstance(substeps, bool) or not isinstance(substeps, (int, np.integer)) or substeps < 1:
        raise ValueError(f"substeps must be a positive int; got {substeps!r}")
    return int(substeps)


def _where(batch_index, shape):
    return ", ".join(str(int(i)) for i in np.unravel_index(batch_index, shape)) + ", "


def check_generator(generator, strict: bool = False) -> None:
    """Check CTMC generators of shape (..., K, K); values only when concrete.

    Shape is always checked; on concrete input the entries must be finite, off-diagonal
    rates non-negative and every row must sum to zero within
    :math:`100 K \\epsilon \\max_{ij} |q_{ij}|` (per matrix of the batch). Errors name
    ``generator``, the defect and its index. On traced input nothing is checked, or with
    ``strict=True`` a ``RuntimeError`` says that arguments cannot be validated under
    ``jit`` (NumPyro's convention for ``validate_args``).
    """
    Q = generator
    if Q.ndim < 2 or Q.shape[-1] != Q.shape[-2] or Q.shape[-1] < 1:
        raise ValueError(f"generator must have shape (..., K, K); got {Q.shape}")
    q = concrete(Q)
    if q is None:
        if strict:
            raise RuntimeError("Cannot validate arguments inside jitted code.")
        return
    K = q.shape[-1]
    flat = q.reshape(-1, K, K)
    batch = q.shape[:-2]
    if not np.all(np.isfinite(flat)):
        raise ValueError("generator must be finite; got NaN or inf entries")
    neg = (flat < 0) & ~np.eye(K, dtype=bool)
    if neg.any():
        b, i, j = np.argwhere(neg)[0]
        raise ValueError(
            f"generator off-diagonal rates must be >= 0; got "
            f"generator[{_where(b, batch) if batch else ''}{i}, {j}] = {flat[b, i, j]}"
        )
    rows = flat.sum(-1)
    scale = np.maximum(np.abs(flat).max(axis=(1, 2)), np.finfo(q.dtype).tiny)
    tol = 100 * K * np.finfo(q.dtype).eps * scale[:, None]
    bad = np.abs(rows) > tol
    if bad.any():
        b, i = np.argwhere(bad)[0]
        raise ValueError(
            f"generator rows must sum to zero; row {i}"
            f"{' of generator[' + _where(b, batch)[:-2] + ']' if batch else ''} sums to "
            f"{rows[b, i]} (tolerance {tol[b, 0]:.3g})"
        )


def check_probs(p, K: int, strict: bool = False, name: str = "initial_probs") -> None:
    """Check probability vectors of shape (..., K); values only when concrete.

    The last axis must have length ``K``; on concrete input the entries must be finite,
    non-negative and sum to one within :math:`\\max(10^{-5}, 10 K \\epsilon)`. With
    ``strict=True`` traced input raises ``RuntimeError`` (see :func:`check_generator`).
    """
    if p.ndim < 1 or p.shape[-1] != K:
        raise ValueError(
            f"{name} must have shape (..., K) with K={K} states (from generator); got {p.shape}"
        )
    v = concrete(p)
    if v is None:
        if strict:
            raise RuntimeError("Cannot validate arguments inside jitted code.")
        return
    sums = v.sum(-1)
    tol = max(1e-5, 10 * K * np.finfo(v.dtype).eps)
    if not np.all(np.isfinite(v)) or np.any(v < 0) or np.any(np.abs(sums - 1) > tol):
        raise ValueError(
            f"{name} must be a probability vector (finite, non-negative, summing to 1); "
            f"got min entry {v.min():.3g} and sums in [{sums.min():.6g}, {sums.max():.6g}]"
        )
