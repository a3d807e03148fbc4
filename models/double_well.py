"""Double-well diffusion observed sparsely with noise; a latent SDE path for NUTS.

.. math::

    dX = (\\theta X - X^3)\\,dt + \\sigma\\,dW = -U'(X)\\,dt + \\sigma\\,dW, \\qquad
    U(x) = -\\tfrac{\\theta}{2} x^2 + \\tfrac14 x^4,

with wells at :math:`\\pm\\sqrt\\theta`, a barrier of height :math:`\\Delta U = \\theta^2/4` at 0
and curvatures :math:`U''(\\pm\\sqrt\\theta) = 2\\theta`, :math:`U''(0) = -\\theta`. The path is
observed at ``times`` as :math:`y_i \\sim \\mathcal N(X(t_i), s^2)` and is latent on a grid of
``substeps`` Euler-Maruyama steps per observation interval.

Two parametrisations of the latent path, both non-centred in the Brownian increments:

``"bridge"`` (default; the innovation scheme of Chib, Pitt & Shephard 2004 and Golightly &
Wilkinson 2008)
    The states at the observation times, ``state`` (T,), are sampled directly (with a
    N(0, 1) base measure that the density divides out again); between
    them the path is a Brownian bridge (the modified diffusion bridge of Durham & Gallant
    2002 for additive noise) driven by standard normals ``bridge_noise`` (T-1, substeps-1):
    :math:`x_{k,j} = s_k + \\tfrac{j}{S}(s_{k+1} - s_k) + \\sigma \\sqrt{\\delta_k}\\,(L z_k)_j`
    with :math:`L L^\\top = (\\min(i,j)(S - \\max(i,j))/S)_{ij}`. The density is the
    Euler-Maruyama density of the whole fine path plus the log-Jacobian of
    :math:`z \\mapsto x` (so in (state, noise) coordinates it is exactly the Euler model),
    written as N(0, 1) terms for the noise plus the log importance weight
    :math:`\\log p_\\mathrm{Euler}(x) - \\log q_\\mathrm{bridge}(x)`. The diffusion parameter
    and the path between observations are decoupled (Roberts & Stramer 2001), and
    :math:`(\\theta, \\sigma)` act on the path only within one interval, never through the
    unstable dynamics at the barrier.
``"forward"`` (:func:`probdyn.processes.sde.sde_path`)
    The initial state ``x_path_init`` and all increments ``x_path_noise`` ((T-1) substeps, 1) are
    sampled and the path is the Euler-Maruyama map of them. Simple, but with informative
    observations each well-to-well crossing makes the posterior stiff: a change of
    :math:`(\\theta, \\sigma)` moves the path near the barrier top, where it is amplified
    like :math:`e^{\\theta\\tau}`. NUTS then needs tiny steps and diverges (see the case study).

Switching statistics: :func:`count_switches` counts well-to-well transitions with
hysteresis (from below ``-threshold`` to above ``+threshold`` and back) in simulated paths;
:func:`switching_rate` is the exact stationary rate of that statistic for the SDE, from
the mean first-passage time integral; :func:`kramers_rate` is Kramers' small-noise rate.

References
----------
S. Chib, M. K. Pitt and N. Shephard, "Likelihood based inference for diffusion driven
models", Nuffield College working paper 2004-W20, 2004.
A. Golightly and D. J. Wilkinson, "Bayesian inference for nonlinear multivariate diffusion
models observed with error", Computational Statistics & Data Analysis 52(3), 2008.
G. B. Durham and A. R. Gallant, "Numerical techniques for maximum likelihood estimation of
continuous-time diffusion processes", J. Business & Economic Statistics 20(3), 2002.
G. O. Roberts and O. Stramer, "On inference for partially observed nonlinear diffusion
models using the Metropolis-Hastings algorithm", Biometrika 88(3), 2001.
M. Broadie, P. Glasserman and S. Kou, "A continuity correction for discrete barrier
options", Mathematical Finance 7(4), 1997.
H. A. Kramers, "Brownian motion in a field of force and the diffusion model of chemical
reactions", Physica 7(4), 1940.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.typing import ArrayLike

from probdyn.kernels import sde as K_
from probdyn.kernels._checks import check_substeps, check_time_grid
from probdyn.processes.sde import sde_path

__all__ = [
    "OBS_SCALE",
    "PARAMETRISATIONS",
    "SDE",
    "TRUE_PARAMS",
    "bridge_path",
    "count_switches",
    "kramers_rate",
    "model",
    "potential",
    "simulate_data",
    "switching_rate",
]

#: Ground truth used by the case study and the tests.
TRUE_PARAMS = {"theta": 1.0, "sigma": 0.6}
#: Known observation noise sd.
OBS_SCALE = 0.15
PARAMETRISATIONS = ("bridge", "forward")
_LOG_2PI = float(np.log(2 * np.pi))
_BGK = 0.5825971579390107  # -zeta(1/2) / sqrt(2 pi), Broadie, Glasserman & Kou (1997)


def _drift(t, y, p):
    return p["theta"] * y - y**3


def _diffusion(t, y, p):
    return jnp.broadcast_to(p["sigma"], y.shape).astype(y.dtype)


#: The double-well SDE, state (1,), ``params = {"theta": ..., "sigma": ...}``.
SDE = K_.SDE(_drift, _diffusion, noise="diagonal")


def potential(x: ArrayLike, theta: ArrayLike) -> jax.Array:
    """:math:`U(x) = -\\theta x^2/2 + x^4/4` (broadcasting)."""
    x = jnp.asarray(x)
    return -0.5 * theta * x**2 + 0.25 * x**4


def _check_positive(name, value):
    v = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(f"{name} must be positive and finite; got {value!r}")
    return v


def kramers_rate(theta: ArrayLike, sigma: ArrayLike) -> np.ndarray:
    """Kramers' small-noise escape rate from one well (= the stationary switching rate).

    .. math::

        k = \\frac{\\sqrt{U''(\\sqrt\\theta)\\,|U''(0)|}}{2\\pi}
            \\exp\\Big(-\\frac{\\Delta U}{\\sigma^2/2}\\Big)
          = \\frac{\\sqrt2\\,\\theta}{2\\pi} \\exp\\Big(-\\frac{\\theta^2}{2\\sigma^2}\\Big).

    Parameters
    ----------
    theta, sigma : ArrayLike, broadcastable
        Positive.

    Returns
    -------
    np.ndarray, broadcast shape
    """
    th = _check_positive("theta", theta)
    sg = _check_positive("sigma", sigma)
    return np.sqrt(2.0) * th / (2 * np.pi) * np.exp(-(th**2) / (2 * sg**2))


def switching_rate(
    theta: ArrayLike,
    sigma: ArrayLike,
    threshold: float = 0.5,
    monitor_dt: float = 0.0,
    num_grid: int = 4001,
) -> np.ndarray:
    """Exact stationary rate of hysteresis switches, as counted by :func:`count_switches`.

    After the path reaches ``+threshold`` the next switch happens when it reaches
    ``-threshold``, and by symmetry the mean time between switches is the mean first-passage
    time from ``-c`` to ``+c`` (``c = threshold``), so the rate is its inverse:

    .. math::

        \\tau = \\frac{2}{\\sigma^2} \\int_{-c}^{c} e^{2U(y)/\\sigma^2}
                \\int_{-\\infty}^{y} e^{-2U(z)/\\sigma^2}\\,dz\\,dy, \\qquad k = 1/\\tau,

    computed with the trapezoid rule on ``num_grid`` points (the inner integral from far
    below the left well, where the integrand is below :math:`e^{-40}` of its peak).

    A path looked at only every ``monitor_dt`` misses touches of the thresholds, so fewer
    switches are counted; the continuity correction of Broadie, Glasserman & Kou (1997)
    accounts for this to :math:`O(\\Delta)` by moving the thresholds out to
    :math:`c + 0.5826\\,\\sigma\\sqrt{\\Delta}`.

    Parameters
    ----------
    theta, sigma : ArrayLike, broadcastable
        Positive.
    threshold : float
        In (0, sqrt(theta)) for the statistic to mean well-to-well switching.
    monitor_dt : float
        Spacing of the grid the switches are counted on; 0 for continuous monitoring.
    num_grid : int

    Returns
    -------
    np.ndarray, broadcast shape
        Switches per unit time.
    """
    th = _check_positive("theta", theta)
    sg = _check_positive("sigma", sigma)
    c = float(_check_positive("threshold", threshold))
    if not np.isfinite(monitor_dt) or monitor_dt < 0:
        raise ValueError(f"monitor_dt must be >= 0; got {monitor_dt!r}")
    th, sg = np.broadcast_arrays(th, sg)
    shape = th.shape
    th, sg = th.reshape(-1, 1), sg.reshape(-1, 1)
    c = c + _BGK * sg * np.sqrt(monitor_dt)  # (P, 1)
    beta = 2.0 / sg**2
    u_min = -(th**2) / 4
    # below x_lo = -(sqrt(theta) + d), U - U_min >= theta d^2 = 20 sigma^2
    x_lo = -(np.sqrt(th) + sg * np.sqrt(20.0 / th))
    n_low = (num_grid - 1) // 2
    u_low = np.linspace(0.0, 1.0, n_low + 1)[None, :-1]
    u_mid = np.linspace(0.0, 1.0, num_grid - n_low)[None, :]
    x = np.concatenate(
        [
            x_lo + (-c - x_lo) * u_low,
            -c + 2 * c * u_mid,
        ],
        axis=1,
    )  # (P, G)
    dx = np.diff(x, axis=1)
    f_in = np.exp(-beta * (np.asarray(potential(x, th)) - u_min))
    inner = np.concatenate(
        [np.zeros_like(x[:, :1]), np.cumsum(0.5 * dx * (f_in[:, 1:] + f_in[:, :-1]), axis=1)],
        axis=1,
    )
    f_out = (np.exp(beta * (np.asarray(potential(x, th)) - u_min)) * inner)[:, n_low:]
    dm = dx[:, n_low:]
    tau = beta[:, 0] * np.sum(0.5 * dm * (f_out[:, 1:] + f_out[:, :-1]), axis=1)
    return (1.0 / tau).reshape(shape)


def count_switches(paths: ArrayLike, threshold: float = 0.5) -> np.ndarray:
    """Well-to-well transitions in sampled paths, counted with hysteresis.

    A path is in the left well once below ``-threshold`` and in the right well once above
    ``+threshold``, and stays there until it reaches the other side; the count is the
    number of changes of well (the first entry into a well is not a switch).

    Parameters
    ----------
    paths : ArrayLike, shape (..., N)
        Paths on a grid fine enough not to jump over the band (-threshold, threshold).
    threshold : float
        Positive.

    Returns
    -------
    np.ndarray of int, shape (...)
    """
    x = np.asarray(paths, dtype=float)
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"paths must have shape (..., N) with N >= 1; got {x.shape}")
    if np.any(~np.isfinite(x)):
        raise ValueError("paths contains NaN or infinite values")
    _check_positive("threshold", threshold)
    side = np.where(x > threshold, 1, np.where(x < -threshold, -1, 0))
    n = x.shape[-1]
    idx = np.where(side != 0, np.arange(n), 0)
    last = np.maximum.accumulate(idx, axis=-1)  # index of the last decided point so far
    well = np.take_along_axis(side, last, axis=-1)
    # before the first decision `well` is side[0] (0 or a well): not a switch either way
    changes = (well[..., 1:] != well[..., :-1]) & (well[..., :-1] != 0)
    return changes.sum(-1)


def bridge_path(
    states: ArrayLike,
    noise: ArrayLike,
    times: ArrayLike,
    sigma: ArrayLike,
    substeps: int,
) -> tuple[jax.Array, jax.Array]:
    """Brownian-bridge fill between states at observation times (``"bridge"`` model).

    Parameters
    ----------
    states : ArrayLike, shape (T,)
        States at ``times``.
    noise : ArrayLike, shape (T-1, substeps-1)
        Standard normals.
    times : ArrayLike, shape (T,)
        Strictly increasing.
    sigma : ArrayLike, scalar
        Diffusion coefficient.
    substeps : int
        Steps per interval, >= 2.

    Returns
    -------
    path : Array, shape ((T-1) * substeps + 1,)
        On :func:`probdyn.kernels.sde.refine_times` ``(times, substeps)``; equal to
        ``states`` at every ``substeps``-th point.
    log_det : Array, scalar
        :math:`\\log|\\det \\partial x_\\mathrm{interior} / \\partial z|`.
    """
    times = check_time_grid(times)
    S = check_substeps(substeps)
    if S < 2:
        raise ValueError(f"substeps must be >= 2 for a bridge; got {substeps}")
    s = jnp.asarray(states)
    z = jnp.asarray(noise)
    T = times.shape[0]
    if s.shape != (T,):
        raise ValueError(f"states must have shape (T,) = ({T},); got {s.shape}")
    if z.shape != (T - 1, S - 1):
        raise ValueError(
            f"noise must have shape (T-1, substeps-1) = {(T - 1, S - 1)}; got {z.shape}"
        )
    dtype = jnp.result_type(s, z, times, float)
    L = jnp.asarray(_bridge_chol(S), dtype)
    j = jnp.arange(1, S, dtype=dtype) / S
    scale = sigma * jnp.sqrt(jnp.diff(times) / S)  # (T-1,)
    interior = s[:-1, None] + j * (s[1:] - s[:-1])[:, None] + scale[:, None] * (z @ L.T)
    blocks = jnp.concatenate([s[:-1, None], interior], axis=1).reshape(-1)
    path = jnp.concatenate([blocks, s[-1:]])
    log_det = (S - 1) * jnp.sum(jnp.log(scale)) + (T - 1) * jnp.sum(jnp.log(jnp.diagonal(L)))
    return path, log_det


def _bridge_chol(S):
    """Cholesky factor of the unit-step Brownian bridge covariance on 1..S-1 (of S)."""
    i = np.arange(1, S)
    cov = np.minimum.outer(i, i) * (S - np.maximum.outer(i, i)) / S
    return np.linalg.cholesky(cov)


def _check_model_args(times, y, substeps, parametrisation, obs_scale):
    times = check_time_grid(times)
    if parametrisation not in PARAMETRISATIONS:
        raise ValueError(
            f"parametrisation must be one of {PARAMETRISATIONS}; got {parametrisation!r}"
        )
    S = check_substeps(substeps)
    if parametrisation == "bridge" and S < 2:
        raise ValueError(f"substeps must be >= 2 for parametrisation='bridge'; got {substeps}")
    if obs_scale is not None:
        _check_positive("obs_scale", obs_scale)
    if y is not None:
        y = jnp.asarray(y)
        if y.shape != times.shape:
            raise ValueError(f"y must have shape (T,) = {times.shape} like times; got {y.shape}")
    elif parametrisation == "bridge":
        raise ValueError(
            "parametrisation='bridge' needs observations y (its states are not drawn from "
            "their prior); use parametrisation='forward' or simulate_data to simulate"
        )
    return times, y, S


def model(
    times: ArrayLike,
    y: ArrayLike | None = None,
    *,
    obs_scale: float | None = OBS_SCALE,
    substeps: int = 10,
    parametrisation: str = "bridge",
):
    """NumPyro model of the noisy double-well observations.

    Priors: ``log_theta ~ N(0, 1)``, ``log_sigma ~ N(log 0.5, 0.75)``, initial state
    ``N(0, 1)``; with ``obs_scale=None`` the observation sd is inferred, ``obs_scale ~
    HalfNormal(0.5)``. Deterministic sites ``theta``, ``sigma`` and ``x`` (T,), the latent
    state at the observation times.

    Parameters
    ----------
    times : ArrayLike, shape (T,)
        Strictly increasing observation times.
    y : ArrayLike, shape (T,), optional
        Observations; None to simulate (``parametrisation="forward"`` only).
    obs_scale : float or None
        Known observation noise sd, or None to infer it.
    substeps : int
        Euler-Maruyama steps per observation interval.
    parametrisation : {"bridge", "forward"}
        See the module docstring. Latent sites: ``state`` (T,) and ``bridge_noise``
        (T-1, substeps-1) for "bridge"; ``x_path_init`` (1,) and ``x_path_noise``
        ((T-1) substeps, 1) for "forward".

    Returns
    -------
    Array, shape (T,)
        The observations.
    """
    times, y, S = _check_model_args(times, y, substeps, parametrisation, obs_scale)
    T = times.shape[0]
    log_theta = numpyro.sample("log_theta", dist.Normal(0.0, 1.0))
    log_sigma = numpyro.sample("log_sigma", dist.Normal(float(np.log(0.5)), 0.75))
    theta = numpyro.deterministic("theta", jnp.exp(log_theta))
    sigma = numpyro.deterministic("sigma", jnp.exp(log_sigma))
    if obs_scale is None:
        obs_scale = numpyro.sample("obs_scale", dist.HalfNormal(0.5))
    params = {"theta": theta, "sigma": sigma}
    initial = dist.Normal(0.0, 1.0)
    if parametrisation == "forward":
        path = sde_path("x_path", SDE, initial.expand([1]).to_event(1), times, params, substeps=S)
        x = numpyro.deterministic("x", path[:, 0])
    else:
        base = dist.Normal(0.0, 1.0).expand([T]).to_event(1)
        x = numpyro.sample("state", base)
        z = numpyro.sample("bridge_noise", dist.Normal(0.0, 1.0).expand([T - 1, S - 1]).to_event(2))
        fine, log_det = bridge_path(x, z, times, sigma, S)
        grid = K_.refine_times(times, S)
        log_p = K_.path_log_prob(SDE, fine[:, None], grid, params) + initial.log_prob(x[0])
        # the base measure of `state` (sampleable, so that traces work) is divided out
        log_q = jnp.sum(-0.5 * z**2) - 0.5 * z.size * _LOG_2PI - log_det + base.log_prob(x)
        numpyro.factor("path_log_weight", log_p - log_q)
        numpyro.deterministic("x", x)
    return numpyro.sample("y", dist.Normal(x, obs_scale).to_event(1), obs=y)


def simulate_data(
    rng_key: jax.Array,
    times: ArrayLike,
    theta: float = TRUE_PARAMS["theta"],
    sigma: float = TRUE_PARAMS["sigma"],
    obs_scale: float = OBS_SCALE,
    x0: float = -1.0,
    substeps: int = 100,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Simulate the SDE on a fine Euler-Maruyama grid and observe it with noise.

    Parameters
    ----------
    rng_key : Array
    times : ArrayLike, shape (T,)
    theta, sigma, obs_scale : float
    x0 : float
        State at ``times[0]``.
    substeps : int
        Solver steps per observation interval (fine: the data stand for the continuous SDE).

    Returns
    -------
    fine_times : Array, shape ((T-1) * substeps + 1,)
    fine_path : Array, shape ((T-1) * substeps + 1,)
    y : Array, shape (T,)
        Observations at ``times``.
    """
    _check_positive("theta", theta)
    _check_positive("sigma", sigma)
    _check_positive("obs_scale", obs_scale)
    times = check_time_grid(times)
    k_path, k_obs = jax.random.split(rng_key)
    params = {"theta": theta, "sigma": sigma}
    y0 = jnp.full((1,), x0, jnp.result_type(times))
    fine = K_.simulate(k_path, SDE, y0, times, params, substeps=substeps, save_substeps=True)
    fine = fine[:, 0]
    x_obs = fine[::substeps]
    y = x_obs + obs_scale * jax.random.normal(k_obs, x_obs.shape, x_obs.dtype)
    return K_.refine_times(times, substeps), fine, y
