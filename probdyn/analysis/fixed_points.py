r"""Fixed and slow points of the input-free map :math:`F(h) = F(h, 0)`, found two ways.

1. **Relaxation** (Torre et al. 2025): iterate the map without input from many states and
   average where they end. This finds the fixed point when the dynamics collapse to a single
   attractor; the spread of the end states says whether they did.
2. **Optimisation** (Sussillo & Barak 2013): minimise the speed

   .. math:: q(h) = \tfrac12 \lVert F(h) - h \rVert^2

   from many starts at once (optax, vmapped and jitted). Minima with :math:`q <` ``tol_q``
   are fixed points, those with :math:`q <` ``slow_tol`` slow points. Outliers (far from the
   starts) are dropped and near-duplicates merged, keeping the slowest of each cluster.

References
----------
Sussillo, D. & Barak, O. (2013). Opening the black box: low-dimensional dynamics in
high-dimensional recurrent neural networks. Neural Computation 25(3), 626-649.

Golub, M. D. & Sussillo, D. (2018). FixedPointFinder: a Tensorflow toolbox for identifying
and characterizing fixed points in recurrent neural networks. JOSS 3(31), 1003.

Torre, E., Viscione, M., Pompe, L., Grewe, B. F. & Mante, V. (2025). Mechanistic
interpretability of RNNs emulating hidden Markov models. arXiv:2510.25674.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from probdyn.analysis._checks import (
    check_array,
    check_callable,
    check_finite,
    check_int,
    check_positive,
)

__all__ = [
    "FixedPoints",
    "RelaxedFixedPoint",
    "find_fixed_points",
    "fixed_point_by_relaxation",
    "speed",
    "unique_points",
]


class RelaxedFixedPoint(NamedTuple):
    """Result of :func:`fixed_point_by_relaxation`.

    Attributes
    ----------
    point : jax.Array, shape (hidden_size,)
        Mean of the end states.
    end_states : jax.Array, shape (num_starts, hidden_size)
        Where each start ended after ``num_steps`` input-free steps.
    spread : jax.Array, scalar
        Largest distance of an end state from their mean: small when all starts collapsed
        to one attractor, large when there are several (the mean is then no fixed point).
    q : jax.Array, scalar
        Speed :math:`\\tfrac12 |F(p) - p|^2` at the mean ``p``.
    """

    point: jax.Array
    end_states: jax.Array
    spread: jax.Array
    q: jax.Array


class FixedPoints(NamedTuple):
    """Result of :func:`find_fixed_points`.

    Attributes
    ----------
    points : numpy.ndarray, shape (num_fixed, hidden_size)
        Unique fixed points (``q < tol_q``), slowest first.
    q : numpy.ndarray, shape (num_fixed,)
        Their speeds.
    slow_points : numpy.ndarray, shape (num_slow, hidden_size)
        Unique slow points (``tol_q <= q < slow_tol``) not within ``unique_tol`` of a fixed
        point, slowest first.
    slow_q : numpy.ndarray, shape (num_slow,)
    final_states : numpy.ndarray, shape (num_starts, hidden_size)
        Where the optimisation of each start ended.
    final_q : numpy.ndarray, shape (num_starts,)
        Speed there (NaN where the map gave non-finite values).
    is_outlier : numpy.ndarray of bool, shape (num_starts,)
        Ends further than ``outlier_scale`` times the typical start distance from the
        centroid of the starts; excluded from ``points`` and ``slow_points``.
    """

    points: np.ndarray
    q: np.ndarray
    slow_points: np.ndarray
    slow_q: np.ndarray
    final_states: np.ndarray
    final_q: np.ndarray
    is_outlier: np.ndarray


def _zeros_input(noise_dim: int, dtype) -> jax.Array:
    return jnp.zeros(noise_dim, dtype=dtype)


def speed(
    step_fn: Callable[[jax.Array, jax.Array], jax.Array],
    states: ArrayLike,
    noise_dim: int,
) -> jax.Array:
    r"""The speed :math:`q(h) = \tfrac12 \lVert F(h, 0) - h \rVert^2` at each state.

    Parameters
    ----------
    step_fn : callable
        ``step_fn(h, x) -> h_next``.
    states : array_like, shape (hidden_size,) or (num_points, hidden_size)
    noise_dim : int
        Length of the input, set to zeros.

    Returns
    -------
    jax.Array, shape () or (num_points,)
    """
    check_callable("step_fn", step_fn)
    noise_dim = check_int("noise_dim", noise_dim)
    h = jnp.asarray(check_array("states", states, (1, 2)), dtype=jnp.result_type(float))
    x0 = _zeros_input(noise_dim, h.dtype)

    def q(hh):
        d = step_fn(hh, x0) - hh
        return 0.5 * jnp.sum(d * d)

    return q(h) if h.ndim == 1 else jax.vmap(q)(h)


def fixed_point_by_relaxation(
    step_fn: Callable[[jax.Array, jax.Array], jax.Array],
    initial_states: ArrayLike,
    noise_dim: int,
    num_steps: int = 500,
) -> RelaxedFixedPoint:
    """The paper's fixed point: run without input from many states and average the ends.

    Parameters
    ----------
    step_fn : callable
        ``step_fn(h, x) -> h_next``.
    initial_states : array_like, shape (num_starts, hidden_size)
        Starting states, e.g. 100 states sampled from a noise-driven trajectory.
    noise_dim : int
        Length of the input, set to zeros.
    num_steps : int
        Input-free steps from each start (500 in the paper).

    Returns
    -------
    RelaxedFixedPoint
        The mean end state, all end states, their spread and the speed at the mean.

    References
    ----------
    Torre et al. (2025), arXiv:2510.25674, section on fixed-point analysis.
    """
    check_callable("step_fn", step_fn)
    noise_dim = check_int("noise_dim", noise_dim)
    num_steps = check_int("num_steps", num_steps)
    h0 = check_array("initial_states", initial_states, 2)
    check_finite("initial_states", h0)
    dtype = jnp.result_type(float)
    x0 = _zeros_input(noise_dim, dtype)

    @jax.jit
    def run(h):
        def body(hh, _):
            return jax.vmap(lambda s: step_fn(s, x0))(hh), None

        end, _ = jax.lax.scan(body, h, None, length=num_steps)
        mean = jnp.mean(end, axis=0)
        spread = jnp.max(jnp.linalg.norm(end - mean, axis=-1))
        d = step_fn(mean, x0) - mean
        return RelaxedFixedPoint(mean, end, spread, 0.5 * jnp.sum(d * d))

    return run(jnp.asarray(h0, dtype=dtype))


def unique_points(points: ArrayLike, q: ArrayLike, tol: float) -> np.ndarray:
    """Indices of points kept after merging those within ``tol`` of a slower one.

    Greedy: visit points slowest first and keep a point unless it lies within Euclidean
    distance ``tol`` of one already kept.

    Parameters
    ----------
    points : array_like, shape (num_points, hidden_size)
    q : array_like, shape (num_points,)
        Speeds (lower is kept first).
    tol : float
        Merge distance.

    Returns
    -------
    numpy.ndarray of int, shape (num_unique,)
        Indices into ``points``, in increasing ``q``.
    """
    pts = check_array("points", points, 2)
    qq = check_array("q", q, 1)
    tol = check_positive("tol", tol, allow_zero=True)
    if qq.shape[0] != pts.shape[0]:
        raise ValueError(f"q must have length {pts.shape[0]} (num_points), got {qq.shape[0]}")
    kept: list[int] = []
    for i in np.argsort(qq, kind="stable"):
        if not kept or np.min(np.linalg.norm(pts[kept] - pts[i], axis=-1)) > tol:
            kept.append(int(i))
    return np.asarray(kept, dtype=int)


def _levenberg_marquardt(step_fn, x0, h, num_steps):
    """Damped Gauss-Newton on r(h) = F(h, 0) - h; steps that do not lower |r| are refused."""
    eye = jnp.eye(h.shape[0], dtype=h.dtype)

    def residual(hh):
        return step_fn(hh, x0) - hh

    def body(carry, _):
        h, lam = carry
        r = residual(h)
        Jr = jax.jacfwd(residual)(h)
        JtJ = Jr.T @ Jr
        damp = lam * (jnp.trace(JtJ) / h.shape[0] + jnp.finfo(h.dtype).tiny)
        delta = jnp.linalg.solve(JtJ + damp * eye, Jr.T @ r)
        h_new = h - delta
        r_new = residual(h_new)
        better = jnp.all(jnp.isfinite(h_new)) & (jnp.sum(r_new**2) < jnp.sum(r**2))
        h = jnp.where(better, h_new, h)
        lam = jnp.where(better, lam * 0.1, lam * 10.0)
        lam = jnp.clip(lam, 1e-12, 1e12)
        return (h, lam), None

    (h, _), _ = jax.lax.scan(body, (h, jnp.asarray(1e-3, h.dtype)), None, length=num_steps)
    return h


def find_fixed_points(
    step_fn: Callable[[jax.Array, jax.Array], jax.Array],
    initial_states: ArrayLike,
    noise_dim: int,
    *,
    num_steps: int = 2000,
    learning_rate: float = 5e-2,
    optimizer: optax.GradientTransformation | None = None,
    tol_q: float = 1e-10,
    slow_tol: float = 1e-4,
    unique_tol: float = 1e-3,
    outlier_scale: float = 10.0,
    polish_steps: int = 20,
) -> FixedPoints:
    r"""Fixed and slow points by minimising the speed from many starts (Sussillo & Barak).

    Every start is optimised independently (``vmap``) with ``num_steps`` steps of
    ``optimizer`` on :math:`q(h) = \tfrac12\lVert F(h,0) - h\rVert^2`, all under one
    ``jit``. The default optimizer is Adam whose learning rate decays exponentially from
    ``learning_rate`` to ``learning_rate * 1e-2``, so that early steps travel and late ones
    converge.

    Parameters
    ----------
    step_fn : callable
        ``step_fn(h, x) -> h_next``; any differentiable (or piecewise-linear) map.
    initial_states : array_like, shape (num_starts, hidden_size)
        Starting states, typically states visited by the noise-driven network, perhaps
        with a small perturbation.
    noise_dim : int
        Length of the input, set to zeros.
    num_steps : int
        Optimiser steps per start.
    learning_rate : float
        Initial learning rate of the default optimizer (ignored with ``optimizer``).
    optimizer : optax.GradientTransformation, optional
        Replaces the default.
    tol_q : float
        Speed below which a minimum counts as a fixed point. The reachable value depends on
        the precision: about ``1e-10 * |h|^2`` in float32.
    slow_tol : float
        Speed below which a minimum counts as a slow point.
    unique_tol : float
        Points closer than this are merged (the slowest is kept).
    outlier_scale : float
        An end state is an outlier when its distance from the centroid of the starts exceeds
        ``outlier_scale`` times the mean distance of the starts from that centroid.
    polish_steps : int
        Levenberg-Marquardt steps on the residual :math:`F(h, 0) - h` after the optimizer
        (0 to skip). A step is taken only where it lowers :math:`q`, so slow points stay
        minima; at a fixed point the iteration converges quadratically to working
        precision, which a first-order optimizer with a decaying step does not reach.

    Returns
    -------
    FixedPoints
        Unique fixed points, unique slow points and every optimised start.

    References
    ----------
    Sussillo & Barak (2013), Neural Computation 25(3); Golub & Sussillo (2018), JOSS 3(31).
    """
    check_callable("step_fn", step_fn)
    noise_dim = check_int("noise_dim", noise_dim)
    num_steps = check_int("num_steps", num_steps)
    h0 = check_array("initial_states", initial_states, 2)
    check_finite("initial_states", h0)
    learning_rate = check_positive("learning_rate", learning_rate)
    tol_q = check_positive("tol_q", tol_q)
    slow_tol = check_positive("slow_tol", slow_tol)
    if slow_tol < tol_q:
        raise ValueError(f"slow_tol must be >= tol_q={tol_q}, got {slow_tol}")
    unique_tol = check_positive("unique_tol", unique_tol, allow_zero=True)
    outlier_scale = check_positive("outlier_scale", outlier_scale)
    polish_steps = check_int("polish_steps", polish_steps, minimum=0)
    if optimizer is None:
        schedule = optax.exponential_decay(learning_rate, num_steps, decay_rate=1e-2)
        optimizer = optax.adam(schedule)
    elif not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            f"optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}"
        )

    dtype = jnp.result_type(float)
    x0 = _zeros_input(noise_dim, dtype)

    def q_fn(h):
        d = step_fn(h, x0) - h
        return 0.5 * jnp.sum(d * d)

    def optimise_one(h):
        state = optimizer.init(h)

        def body(carry, _):
            h, state = carry
            g = jax.grad(q_fn)(h)
            updates, state = optimizer.update(g, state, h)
            return (optax.apply_updates(h, updates), state), None

        (h, _), _ = jax.lax.scan(body, (h, state), None, length=num_steps)
        if polish_steps:
            h = _levenberg_marquardt(step_fn, x0, h, polish_steps)
        return h, q_fn(h)

    ends, qs = jax.jit(jax.vmap(optimise_one))(jnp.asarray(h0, dtype=dtype))
    ends = np.asarray(ends)
    qs = np.asarray(qs, dtype=float)
    finite = np.isfinite(qs) & np.all(np.isfinite(ends), axis=-1)
    qs = np.where(finite, qs, np.nan)

    centroid = np.mean(h0, axis=0)
    scale = np.mean(np.linalg.norm(h0 - centroid, axis=-1))
    dist = np.linalg.norm(ends - centroid, axis=-1)
    is_outlier = ~finite | (dist > outlier_scale * max(scale, np.finfo(float).tiny))

    good = ~is_outlier
    fixed_idx = np.flatnonzero(good & (qs < tol_q))
    keep = fixed_idx[unique_points(ends[fixed_idx], qs[fixed_idx], unique_tol)]
    points, point_q = ends[keep], qs[keep]

    slow_idx = np.flatnonzero(good & (qs >= tol_q) & (qs < slow_tol))
    if len(points) and len(slow_idx):
        d = np.linalg.norm(ends[slow_idx, None, :] - points[None], axis=-1)
        slow_idx = slow_idx[np.min(d, axis=1) > unique_tol]
    keep_slow = slow_idx[unique_points(ends[slow_idx], qs[slow_idx], unique_tol)]
    return FixedPoints(
        points=points,
        q=point_q,
        slow_points=ends[keep_slow],
        slow_q=qs[keep_slow],
        final_states=ends,
        final_q=qs,
        is_outlier=is_outlier,
    )
