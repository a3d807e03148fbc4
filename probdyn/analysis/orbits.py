r"""Noise-sustained orbits: PCA of trajectories, rotation phase, orbit size against noise
variance, emission probabilities along the phase.

Torre et al. (2025) find that an RNN emulating an HMM, driven by noise, circulates around
its (input-free) fixed point on an orbit in the plane of the top two principal components,
that the orbit's radius grows linearly with the noise variance, and that the emission
probabilities change with the rotation phase. For a linear system
:math:`h_{t+1} = A h_t + B x_t` with :math:`x_t \sim N(0, \sigma^2 I)` the stationary
covariance is :math:`\sigma^2 P`, with :math:`P = A P A^\top + B B^\top`, so the
mean-square radius is exactly linear in the variance :math:`\sigma^2` (and the mean radius
linear in :math:`\sigma`); both are returned and fitted.

References
----------
Torre, E., Viscione, M., Pompe, L., Grewe, B. F. & Mante, V. (2025). Mechanistic
interpretability of RNNs emulating hidden Markov models. arXiv:2510.25674.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from probdyn.analysis._checks import check_array, check_callable, check_finite, check_int
from probdyn.analysis.rollout import _rollout

__all__ = [
    "PCA",
    "LinearFit",
    "OrbitSweep",
    "emission_along_phase",
    "fit_pca",
    "linear_fit",
    "orbit_radius",
    "orbit_radius_vs_noise",
    "project",
    "rotation_phase",
]


class PCA(NamedTuple):
    """Principal axes of a cloud of states.

    Attributes
    ----------
    mean : jax.Array, shape (hidden_size,)
    components : jax.Array, shape (num_components, hidden_size)
        Orthonormal rows, by decreasing variance; each row's largest-magnitude entry is
        positive (a deterministic sign).
    explained_variance : jax.Array, shape (num_components,)
        Variance along each axis (denominator ``num_samples - 1``).
    explained_variance_ratio : jax.Array, shape (num_components,)
        Fraction of the total variance.
    """

    mean: jax.Array
    components: jax.Array
    explained_variance: jax.Array
    explained_variance_ratio: jax.Array


class LinearFit(NamedTuple):
    """Least-squares line ``y = slope * x + intercept`` and its coefficient of determination."""

    slope: float
    intercept: float
    r_squared: float


class OrbitSweep(NamedTuple):
    """Result of :func:`orbit_radius_vs_noise`.

    Attributes
    ----------
    noise_variances : numpy.ndarray, shape (num_levels,)
    radius : numpy.ndarray, shape (num_levels,)
        Mean distance from the orbit centre in the top-2 PC plane.
    radius_se : numpy.ndarray, shape (num_levels,)
        Its standard error over the independent trajectories.
    mean_square_radius : numpy.ndarray, shape (num_levels,)
        Mean squared distance (the trace of the in-plane covariance).
    mean_square_radius_se : numpy.ndarray, shape (num_levels,)
    radius_fit : LinearFit
        ``radius`` against ``noise_variances`` (the paper's plot).
    mean_square_fit : LinearFit
        ``mean_square_radius`` against ``noise_variances`` (exactly linear for a linear map).
    pca : PCA
        The common plane, fitted on the pooled states of all levels.
    """

    noise_variances: np.ndarray
    radius: np.ndarray
    radius_se: np.ndarray
    mean_square_radius: np.ndarray
    mean_square_radius_se: np.ndarray
    radius_fit: LinearFit
    mean_square_fit: LinearFit
    pca: PCA


def fit_pca(states: ArrayLike, num_components: int = 2) -> PCA:
    """PCA by the singular value decomposition of the centred states.

    Parameters
    ----------
    states : array_like, shape (..., hidden_size)
        Leading axes (trajectories, time) are pooled.
    num_components : int
        Axes to keep (at most ``min(num_samples, hidden_size)``).

    Returns
    -------
    PCA
    """
    X = check_array("states", states, (2, 3, 4))
    check_finite("states", X)
    num_components = check_int("num_components", num_components)
    X = jnp.asarray(X.reshape(-1, X.shape[-1]))
    if not jnp.issubdtype(X.dtype, jnp.floating):
        X = X.astype(jnp.result_type(float))
    n, size = X.shape
    if num_components > min(n, size):
        raise ValueError(
            f"num_components must be <= min(num_samples, hidden_size) = {min(n, size)}, "
            f"got {num_components}"
        )
    if n < 2:
        raise ValueError(f"states must hold at least 2 samples, got {n}")
    mean = jnp.mean(X, axis=0)
    _, s, vt = jnp.linalg.svd(X - mean, full_matrices=False)
    vt = vt[:num_components]
    sign = jnp.sign(vt[jnp.arange(num_components), jnp.argmax(jnp.abs(vt), axis=1)])
    vt = vt * jnp.where(sign == 0, 1.0, sign)[:, None]
    var = s**2 / (n - 1)
    return PCA(mean, vt, var[:num_components], var[:num_components] / jnp.sum(var))


def project(states: ArrayLike, pca: PCA) -> jax.Array:
    """Coordinates of states on the principal axes.

    Parameters
    ----------
    states : array_like, shape (..., hidden_size)
    pca : PCA

    Returns
    -------
    jax.Array, shape (..., num_components)
    """
    h = jnp.asarray(states)
    if h.shape[-1:] != pca.mean.shape:
        raise ValueError(
            f"states must have last axis hidden_size={pca.mean.shape[0]}, got shape {h.shape}"
        )
    return (h - pca.mean) @ pca.components.T


def rotation_phase(projected: ArrayLike, center: ArrayLike | None = None) -> jax.Array:
    """Unwrapped angle of a trajectory in the plane of its first two coordinates.

    Parameters
    ----------
    projected : array_like, shape (..., num_timesteps, num_components >= 2)
        PC coordinates along time (e.g. from :func:`project`).
    center : array_like, shape (2,), optional
        Centre of rotation in that plane; default the origin (the PCA mean).

    Returns
    -------
    jax.Array, shape (..., num_timesteps)
        ``atan2(pc2, pc1)`` unwrapped along time, so that a full turn adds ``2 pi``.
    """
    p = jnp.asarray(projected)
    if p.ndim < 2 or p.shape[-1] < 2:
        raise ValueError(
            f"projected must have shape (..., num_timesteps, >= 2), got shape {p.shape}"
        )
    c = jnp.zeros(2, p.dtype) if center is None else jnp.asarray(center, p.dtype)
    angle = jnp.arctan2(p[..., 1] - c[1], p[..., 0] - c[0])
    return jnp.unwrap(angle, axis=-1)


def orbit_radius(projected: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Mean and mean-square distance from the orbit's own centre in the first two coordinates.

    Parameters
    ----------
    projected : array_like, shape (..., num_timesteps, num_components >= 2)

    Returns
    -------
    radius : jax.Array, shape (...)
        Time average of the distance from the time-average position.
    mean_square_radius : jax.Array, shape (...)
        Time average of the squared distance.
    """
    p = jnp.asarray(projected)
    if p.ndim < 2 or p.shape[-1] < 2:
        raise ValueError(
            f"projected must have shape (..., num_timesteps, >= 2), got shape {p.shape}"
        )
    p = p[..., :2]
    d2 = jnp.sum((p - jnp.mean(p, axis=-2, keepdims=True)) ** 2, axis=-1)
    return jnp.mean(jnp.sqrt(d2), axis=-1), jnp.mean(d2, axis=-1)


def linear_fit(x: ArrayLike, y: ArrayLike) -> LinearFit:
    """Ordinary least-squares line through points, with :math:`R^2`.

    Parameters
    ----------
    x, y : array_like, shape (num_points,)
        At least two distinct ``x``.

    Returns
    -------
    LinearFit
    """
    x = check_array("x", x, 1).astype(float)
    y = check_array("y", y, 1).astype(float)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {x.shape} and {y.shape}")
    if x.size < 2 or np.ptp(x) == 0:
        raise ValueError(f"x must hold at least two distinct values, got {x}")
    xc, yc = x - x.mean(), y - y.mean()
    slope = float(np.sum(xc * yc) / np.sum(xc * xc))
    intercept = float(y.mean() - slope * x.mean())
    ss_tot = float(np.sum(yc * yc))
    ss_res = float(np.sum((y - slope * x - intercept) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return LinearFit(slope, intercept, r2)


def orbit_radius_vs_noise(
    rng_key: jax.Array,
    step_fn: Callable[[jax.Array, jax.Array], jax.Array],
    initial_states: ArrayLike,
    noise_dim: int,
    noise_variances: ArrayLike = (0.25, 0.5, 1.0, 1.5, 2.0),
    num_timesteps: int = 1000,
    burn_in: int = 100,
    pca: PCA | None = None,
) -> OrbitSweep:
    r"""Orbit size in the top-2 PC plane at several input-noise variances, with linear fits.

    For each variance :math:`v`, trajectories from ``initial_states`` are driven by
    :math:`x_t \sim N(0, v I)`; after ``burn_in`` steps each trajectory's states are projected
    onto a common PC plane (fitted on all levels pooled, unless ``pca`` is given) and its
    mean and mean-square distance from its own centre are taken. The trajectories are
    independent, so their spread gives the standard errors.

    Parameters
    ----------
    rng_key : jax.Array
    step_fn : callable
        ``step_fn(h, x) -> h_next``.
    initial_states : array_like, shape (num_trajectories, hidden_size)
        At least 2 trajectories.
    noise_dim : int
        Length of the input.
    noise_variances : array_like, shape (num_levels,)
        Input variances, >= 0, at least two distinct.
    num_timesteps : int
        Steps kept per trajectory after the burn-in.
    burn_in : int
        Steps dropped first.
    pca : PCA, optional
        Plane to measure in.

    Returns
    -------
    OrbitSweep

    References
    ----------
    Torre et al. (2025), arXiv:2510.25674 (orbit radius linear in the noise variance).
    """
    check_callable("step_fn", step_fn)
    noise_dim = check_int("noise_dim", noise_dim)
    num_timesteps = check_int("num_timesteps", num_timesteps, minimum=2)
    burn_in = check_int("burn_in", burn_in, minimum=0)
    h0 = check_array("initial_states", initial_states, 2)
    check_finite("initial_states", h0)
    if h0.shape[0] < 2:
        raise ValueError(f"initial_states must hold >= 2 trajectories, got {h0.shape[0]}")
    variances = check_array("noise_variances", noise_variances, 1).astype(float)
    if np.any(~np.isfinite(variances)) or np.any(variances < 0):
        raise ValueError(f"noise_variances must be finite and >= 0, got {variances}")
    if np.ptp(variances) == 0:
        raise ValueError(f"noise_variances must hold two distinct values, got {variances}")
    dtype = jnp.result_type(float)
    total = num_timesteps + burn_in

    @jax.jit
    def run(key, scale):
        keys = jax.random.split(key, h0.shape[0])
        traj = jax.vmap(lambda k, h: _rollout(k, step_fn, h, total, noise_dim, scale))(
            keys, jnp.asarray(h0, dtype)
        )
        return traj[:, burn_in:]

    keys = jax.random.split(rng_key, len(variances))
    trajs = [run(k, jnp.asarray(np.sqrt(v), dtype)) for k, v in zip(keys, variances, strict=True)]
    if pca is None:
        pca = fit_pca(jnp.stack(trajs), num_components=2)
    n = h0.shape[0]
    r, r_se, m2, m2_se = [], [], [], []
    for traj in trajs:
        rad, msq = (np.asarray(a, dtype=float) for a in orbit_radius(project(traj, pca)))
        r.append(rad.mean())
        r_se.append(rad.std(ddof=1) / np.sqrt(n))
        m2.append(msq.mean())
        m2_se.append(msq.std(ddof=1) / np.sqrt(n))
    r, r_se, m2, m2_se = map(np.asarray, (r, r_se, m2, m2_se))
    return OrbitSweep(
        noise_variances=variances,
        radius=r,
        radius_se=r_se,
        mean_square_radius=m2,
        mean_square_radius_se=m2_se,
        radius_fit=linear_fit(variances, r),
        mean_square_fit=linear_fit(variances, m2),
        pca=pca,
    )


def emission_along_phase(
    phase: ArrayLike, probs: ArrayLike, num_bins: int = 24
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean emission probabilities in bins of the (wrapped) rotation phase.

    Parameters
    ----------
    phase : array_like, shape (num_points,)
        Phase in radians (unwrapped is fine: it is wrapped to ``[-pi, pi)``).
    probs : array_like, shape (num_points, num_symbols)
        Emission probabilities at the same states (:func:`emission_probabilities`).
    num_bins : int
        Equal bins over ``[-pi, pi)``.

    Returns
    -------
    centers : numpy.ndarray, shape (num_bins,)
    mean_probs : numpy.ndarray, shape (num_bins, num_symbols)
        NaN in empty bins.
    counts : numpy.ndarray of int, shape (num_bins,)
    """
    ph = check_array("phase", phase, 1).astype(float)
    p = check_array("probs", probs, 2).astype(float)
    num_bins = check_int("num_bins", num_bins)
    if p.shape[0] != ph.shape[0]:
        raise ValueError(f"probs must have {ph.shape[0]} rows (one per phase), got {p.shape}")
    wrapped = np.mod(ph + np.pi, 2 * np.pi) - np.pi
    edges = np.linspace(-np.pi, np.pi, num_bins + 1)
    idx = np.clip(np.searchsorted(edges, wrapped, side="right") - 1, 0, num_bins - 1)
    counts = np.bincount(idx, minlength=num_bins)
    sums = np.zeros((num_bins, p.shape[1]))
    np.add.at(sums, idx, p)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts[:, None]
    return 0.5 * (edges[:-1] + edges[1:]), mean, counts
