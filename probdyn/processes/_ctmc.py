"""Helpers shared by the CTMC distributions (:mod:`probdyn.processes.mjp`,
:mod:`probdyn.processes.observed_ctmc`): argument checks that name the argument, the
generator constraint, batching and one-program eager calls."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints
from numpyro.util import not_jax_tracer

from probdyn.kernels import ctmc as C_


def float_array(x):
    x = jnp.asarray(x)
    return x.astype(jnp.result_type(x.dtype, jnp.float32))


def concrete(x):
    return np.asarray(x) if x is not None and not_jax_tracer(x) else None


def _where(batch_index, shape):
    return ", ".join(str(int(i)) for i in np.unravel_index(batch_index, shape)) + ", "


def check_generator(Q, strict=False):
    """Shape always; values (finite, rates >= 0, rows sum to 0) when concrete."""
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


def check_probs(p, K, strict=False):
    if p.ndim < 1 or p.shape[-1] != K:
        raise ValueError(
            f"initial_probs must have shape (..., K) with K={K} states (from generator); "
            f"got {p.shape}"
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
            "initial_probs must be a probability vector (finite, non-negative, summing to 1); "
            f"got min entry {v.min():.3g} and sums in [{sums.min():.6g}, {sums.max():.6g}]"
        )


@partial(jax.jit, static_argnames=("method", "static"))
def jit_call(d, *args, method, static=()):
    """``d.<method>(*args, *static)`` compiled as one program (``method`` may be dotted).

    Eager calls would otherwise compile and dispatch every small op separately (the
    distributions are pytrees, so ``d`` is traced through its parameters).
    """
    fn = d
    for part in method.split("."):
        fn = getattr(fn, part)
    return fn(*args, *static)


def check_times(times, t0, strict=False):
    ct, c0 = concrete(times), concrete(t0)
    if ct is None or (t0 is not None and c0 is None):
        if strict:
            raise RuntimeError("Cannot validate arguments inside jitted code.")
        return
    if not np.all(np.isfinite(ct)):
        raise ValueError("times must be finite; got NaN or inf")
    d = np.diff(ct, axis=-1)
    if np.any(d <= 0):
        idx = np.argwhere(d <= 0)[0]
        nxt = tuple(idx[:-1]) + (idx[-1] + 1,)
        raise ValueError(
            f"times must be strictly increasing; got times[..., {idx[-1]}] = "
            f"{ct[tuple(idx)]} followed by {ct[nxt]}"
        )
    if c0 is not None and not (np.all(np.isfinite(c0)) and np.all(c0 < ct[..., 0])):
        raise ValueError(f"t0 must be finite and < times[..., 0]; got t0={c0}")


def _flatten(arrays, event_ndims, batch):
    """Broadcast each array to (*batch, *its event shape) and flatten the batch."""
    n = int(np.prod(batch))
    out = []
    for a, e in zip(arrays, event_ndims, strict=True):
        a = jnp.asarray(a)
        event = a.shape[a.ndim - e :]
        out.append(jnp.broadcast_to(a, batch + event).reshape((n,) + event))
    return out


def flat_map(fn, args, event_ndims, batch, *, always_vmap=False):
    """``fn`` over the flattened ``batch`` of ``args``; outputs reshaped to ``batch``."""
    flat = _flatten(args, event_ndims, batch)
    if flat[0].shape[0] == 1 and not always_vmap:
        out = fn(*(a[0] for a in flat))
        return jax.tree.map(lambda x: x.reshape(batch + x.shape), out)
    out = jax.vmap(fn)(*flat)
    return jax.tree.map(lambda x: x.reshape(batch + x.shape[1:]), out)


def stationary(Q):
    batch = Q.shape[:-2]
    return flat_map(C_.stationary_distribution, [Q], [2], batch)


class Generator(constraints.ParameterFreeConstraint):
    """Matrices with off-diagonals >= 0 and rows summing to zero (float tolerance)."""

    event_dim = 2

    def __call__(self, x):
        K = x.shape[-1]
        off = ~jnp.eye(K, dtype=bool)
        scale = jnp.max(jnp.abs(x), axis=(-2, -1), keepdims=True)[..., 0]
        tol = 100 * K * jnp.finfo(jnp.result_type(x)).eps * scale
        rows_ok = jnp.all(jnp.abs(jnp.sum(x, -1)) <= tol, -1)
        return jnp.all(jnp.where(off, x >= 0, True), axis=(-2, -1)) & rows_ok

    def feasible_like(self, prototype):
        return jnp.zeros_like(prototype)
