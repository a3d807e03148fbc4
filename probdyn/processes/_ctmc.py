"""Helpers shared by the CTMC distributions (:mod:`probdyn.processes.mjp`,
:mod:`probdyn.processes.observed_ctmc`): argument checks that name the argument, the
generator constraint, batching and one-program eager calls."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints

from probdyn.kernels import ctmc as C_
from probdyn.kernels._checks import check_generator as _k_check_generator
from probdyn.kernels._checks import check_probs as _k_check_probs
from probdyn.kernels._checks import concrete as _k_concrete
from probdyn.processes._batch import flat_map


def float_array(x):
    x = jnp.asarray(x)
    return x.astype(jnp.result_type(x.dtype, jnp.float32))


# the shared checks live in kernels/_checks.py (one copy per layer)
concrete = _k_concrete
check_generator = _k_check_generator
check_probs = _k_check_probs


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
