"""Stochastic Lorenz data and a latent-SDE model for it (Li et al. 2020, section 7.3).

The data generator is the Itô SDE with the Lorenz drift and multiplicative diagonal noise,

.. math::

    dx = a_1 (y - x)\\,dt + b_1 x\\,dW_1, \\qquad
    dy = (a_2 x - y - x z)\\,dt + b_2 y\\,dW_2, \\qquad
    dz = (x y - a_3 z)\\,dt + b_3 z\\,dW_3,

with :math:`a = (10, 28, 8/3)`, :math:`b = (0.1, 0.28, 0.3)` and initial states
:math:`\\sim \\mathcal N(0, I_3)` (the setting of torchsde's ``examples/latent_sde_lorenz.py``).
:func:`make_dataset` simulates paths with :func:`probdyn.kernels.sde.simulate` (Milstein,
strong order 1 for this diagonal noise), normalises every coordinate by the mean and
standard deviation of the *training* paths over paths and time, and adds Gaussian
observation noise.

:func:`build_latent_sde` returns a :class:`probdyn.infer.latent_sde.LatentSDE` for such data:
a ``state_dim``-dimensional latent SDE with a learned autonomous MLP prior drift
(:class:`~probdyn.nn.PriorDriftMLP`), a learned diagonal diffusion in which :math:`g_i`
depends on :math:`z_i` only (:class:`~probdyn.nn.DiagonalDiffusionNet`, so the noise stays
diagonal), a linear readout to the 3 observed coordinates, a GRU encoder and an MLP
posterior drift. The networks live in :mod:`probdyn.nn`; ``PriorDriftMLP`` and
``DiagonalDiffusionNet`` are still importable from here, with a ``DeprecationWarning``.

References
----------
E. N. Lorenz, "Deterministic nonperiodic flow", J. Atmospheric Sciences 20(2), 1963.
X. Li, T.-K. L. Wong, R. T. Q. Chen and D. Duvenaud, "Scalable gradients for stochastic
differential equations", AISTATS 2020.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from probdyn._deprecation import moved
from probdyn.infer.latent_sde import LatentSDE
from probdyn.kernels import sde as K_
from probdyn.nn import encoders as _encoders
from probdyn.nn import sde_nets as _sde_nets

__all__ = [
    "OBS_NOISE",
    "SDE",
    "TRUE_PARAMS",
    "LorenzData",
    "build_latent_sde",
    "denormalise",
    "lorenz_diffusion",
    "lorenz_drift",
    "make_dataset",
    "normalise",
    "simulate_lorenz",
]

#: Drift parameters :math:`a` and diffusion coefficients :math:`b` of the data generator.
TRUE_PARAMS = {
    "drift": np.array([10.0, 28.0, 8.0 / 3.0]),
    "diffusion": np.array([0.1, 0.28, 0.3]),
}
#: Standard deviation of the Gaussian observation noise added after normalisation.
OBS_NOISE = 0.01


def lorenz_drift(t: ArrayLike, y: jax.Array, params: Mapping[str, Any]) -> jax.Array:
    """Lorenz drift :math:`(a_1(y-x),\\ a_2 x - y - xz,\\ xy - a_3 z)`.

    Parameters
    ----------
    t : ArrayLike, scalar
        Time (unused; the system is autonomous).
    y : jax.Array, shape (3,)
    params : dict
        ``"drift"`` (3,): :math:`a`.

    Returns
    -------
    jax.Array, shape (3,)
    """
    a = jnp.asarray(params["drift"], y.dtype)
    x1, x2, x3 = y[0], y[1], y[2]
    return jnp.stack([a[0] * (x2 - x1), a[1] * x1 - x2 - x1 * x3, x1 * x2 - a[2] * x3])


def lorenz_diffusion(t: ArrayLike, y: jax.Array, params: Mapping[str, Any]) -> jax.Array:
    """Multiplicative diagonal diffusion :math:`g_i(y) = b_i y_i`.

    Parameters
    ----------
    t : ArrayLike, scalar
    y : jax.Array, shape (3,)
    params : dict
        ``"diffusion"`` (3,): :math:`b`.

    Returns
    -------
    jax.Array, shape (3,)
    """
    return jnp.asarray(params["diffusion"], y.dtype) * y


#: The stochastic Lorenz system (Itô, diagonal noise); ``params`` as :data:`TRUE_PARAMS`.
SDE = K_.SDE(lorenz_drift, lorenz_diffusion, noise="diagonal")


def _check_params(params):
    out = {}
    for name in ("drift", "diffusion"):
        if name not in params:
            raise ValueError(f"params is missing {name!r}; expected keys 'drift' and 'diffusion'")
        v = np.asarray(params[name], dtype=float)
        if v.shape != (3,) or not np.all(np.isfinite(v)):
            raise ValueError(f"params[{name!r}]={params[name]!r} is not valid; expected 3 finite")
        if name == "diffusion" and np.any(v < 0):
            raise ValueError(f"params['diffusion']={params[name]!r} must be non-negative")
        out[name] = jnp.asarray(v, jnp.result_type(float))
    return out


def _check_count(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}={value!r} is not an integer")
    if value < minimum:
        raise ValueError(f"{name}={value} is not valid; expected >= {minimum}")
    return int(value)


def simulate_lorenz(
    rng_key: jax.Array,
    num_paths: int,
    times: ArrayLike,
    *,
    params: Mapping[str, Any] | None = None,
    substeps: int = 20,
    solver: str = "milstein",
) -> jax.Array:
    """Stochastic Lorenz paths from :math:`\\mathcal N(0, I_3)` initial states.

    Parameters
    ----------
    rng_key : jax.Array
    num_paths : int
    times : ArrayLike, shape (T,)
        Strictly increasing observation times; the path starts at ``times[0]``.
    params : dict, optional
        ``{"drift": (3,), "diffusion": (3,)}``; default :data:`TRUE_PARAMS`.
    substeps : int
        Solver steps per observation interval (20 gives dt ~ 1e-3 on 100 points of [0, 2],
        torchsde's default step).
    solver : {"milstein", "euler"}

    Returns
    -------
    jax.Array, shape (num_paths, T, 3)
        Unnormalised states at ``times``.
    """
    num_paths = _check_count("num_paths", num_paths)
    p = _check_params(TRUE_PARAMS if params is None else params)
    if solver not in ("milstein", "euler"):
        raise ValueError(f"solver={solver!r} is not valid; expected 'milstein' or 'euler'")
    times = jnp.asarray(times, jnp.result_type(float))
    k0, k1 = jax.random.split(rng_key)
    y0 = jax.random.normal(k0, (num_paths, 3), times.dtype)
    keys = jax.random.split(k1, num_paths)

    def one(key, y):
        return K_.simulate(key, SDE, y, times, p, solver=solver, substeps=substeps)

    return jax.vmap(one)(keys, y0)


def normalise(
    xs: ArrayLike, mean: ArrayLike | None = None, std: ArrayLike | None = None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Standardise every coordinate by its mean and sd over paths and time.

    Parameters
    ----------
    xs : ArrayLike, shape (num_paths, T, D)
    mean, std : ArrayLike, shape (D,), optional
        Use these (e.g. the training set's) instead of the statistics of ``xs``.

    Returns
    -------
    xs_norm : jax.Array, shape (num_paths, T, D)
    mean, std : jax.Array, shape (D,)
    """
    xs = jnp.asarray(xs)
    if xs.ndim != 3:
        raise ValueError(f"xs has shape {xs.shape}; expected (num_paths, T, D)")
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither")
    if mean is None:
        mean = xs.mean(axis=(0, 1))
        std = xs.std(axis=(0, 1), ddof=1)
    mean, std = jnp.asarray(mean, xs.dtype), jnp.asarray(std, xs.dtype)
    if mean.shape != xs.shape[-1:] or std.shape != xs.shape[-1:]:
        raise ValueError(
            f"mean/std have shapes {mean.shape}, {std.shape}; expected ({xs.shape[-1]},)"
        )
    return (xs - mean) / std, mean, std


def denormalise(xs: ArrayLike, mean: ArrayLike, std: ArrayLike) -> jax.Array:
    """Inverse of :func:`normalise`: ``xs * std + mean`` (broadcasting over the last axis)."""
    return jnp.asarray(xs) * jnp.asarray(std) + jnp.asarray(mean)


class LorenzData(NamedTuple):
    """A normalised stochastic-Lorenz data set.

    Attributes
    ----------
    times : np.ndarray, shape (T,)
    train, test : np.ndarray, shape (num_train, T, 3), (num_test, T, 3)
        Normalised paths plus observation noise.
    train_clean, test_clean : np.ndarray
        The same paths, normalised, without observation noise.
    mean, std : np.ndarray, shape (3,)
        Normalisation constants (from the clean training paths).
    """

    times: np.ndarray
    train: np.ndarray
    test: np.ndarray
    train_clean: np.ndarray
    test_clean: np.ndarray
    mean: np.ndarray
    std: np.ndarray


def make_dataset(
    rng_key: jax.Array,
    num_train: int = 1024,
    num_test: int = 128,
    *,
    num_timesteps: int = 100,
    t1: float = 2.0,
    obs_noise: float = OBS_NOISE,
    substeps: int = 20,
    params: Mapping[str, Any] | None = None,
) -> LorenzData:
    """Train and test sets of normalised, noisy stochastic-Lorenz paths on ``[0, t1]``.

    Parameters
    ----------
    rng_key : jax.Array
    num_train, num_test : int
        Paths in each set (independent initial states and noise).
    num_timesteps : int
        Equally spaced observation times on ``[0, t1]``, both ends included.
    t1 : float
        End time.
    obs_noise : float
        Sd of the Gaussian noise added after normalisation.
    substeps : int
        Solver steps per observation interval.
    params : dict, optional
        Generator parameters (default :data:`TRUE_PARAMS`).

    Returns
    -------
    LorenzData
    """
    num_train = _check_count("num_train", num_train)
    num_test = _check_count("num_test", num_test)
    num_timesteps = _check_count("num_timesteps", num_timesteps, 2)
    if not (np.isfinite(t1) and t1 > 0):
        raise ValueError(f"t1={t1!r} is not valid; expected a positive float")
    if not (np.isfinite(obs_noise) and obs_noise >= 0):
        raise ValueError(f"obs_noise={obs_noise!r} is not valid; expected >= 0")
    times = np.linspace(0.0, float(t1), num_timesteps)
    k_sim, k_noise = jax.random.split(rng_key)
    xs = simulate_lorenz(k_sim, num_train + num_test, times, params=params, substeps=substeps)
    if not bool(jnp.all(jnp.isfinite(xs))):
        raise FloatingPointError("the simulated Lorenz paths diverged; use more substeps")
    train, mean, std = normalise(xs[:num_train])
    test, _, _ = normalise(xs[num_train:], mean, std)
    clean = jnp.concatenate([train, test])
    noisy = clean + obs_noise * jax.random.normal(k_noise, clean.shape, clean.dtype)
    noisy, clean = np.asarray(noisy), np.asarray(clean)
    return LorenzData(
        times=times,
        train=noisy[:num_train],
        test=noisy[num_train:],
        train_clean=clean[:num_train],
        test_clean=clean[num_train:],
        mean=np.asarray(mean),
        std=np.asarray(std),
    )


# ----------------------------------------------------------------------------- model


def build_latent_sde(
    rng_key: jax.Array,
    times: ArrayLike,
    *,
    state_dim: int = 4,
    obs_dim: int = 3,
    context_dim: int = 64,
    hidden_size: int = 128,
    encoder_size: int = 64,
    likelihood: str = "laplace",
    obs_scale: float | None = OBS_NOISE,
    dt: float | None = None,
) -> LatentSDE:
    """The latent-SDE model/guide pair for normalised Lorenz data.

    Parameters
    ----------
    rng_key : jax.Array
        Initial network weights.
    times : ArrayLike, shape (T,)
        Observation times of the training sequences (sets the default ``dt``).
    state_dim : int
        Latent dimension.
    obs_dim : int
        Observed dimension (3 for Lorenz).
    context_dim : int
        Encoder context passed to the posterior drift.
    hidden_size : int
        Width of the prior- and posterior-drift MLPs.
    encoder_size : int
        GRU state size.
    likelihood : {"laplace", "normal"}
        Observation family (torchsde's example uses Laplace).
    obs_scale : float or None
        Fixed observation scale; None learns one per observed coordinate.
    dt : float, optional
        Euler--Maruyama step of the latent SDE; default half the observation spacing, so
        every observation time is on the grid and two steps separate observations.

    Returns
    -------
    LatentSDE
        Prior :math:`z_0 \\sim \\mathcal N(0, I)`; the site ``"z"`` is (N, T, state_dim) and
        ``"y"`` is (N, T, obs_dim).
    """
    state_dim = _check_count("state_dim", state_dim)
    obs_dim = _check_count("obs_dim", obs_dim)
    t = np.asarray(times, dtype=float)
    if t.ndim != 1 or t.size < 2 or np.any(np.diff(t) <= 0):
        raise ValueError("times must be 1-D, strictly increasing, with at least 2 points")
    if dt is None:
        dt = float(np.min(np.diff(t))) / 2.0
    k_prior, k_diff, k_post, k_enc, k_read = jax.random.split(rng_key, 5)
    return LatentSDE(
        _sde_nets.PriorDriftMLP(state_dim, hidden_size, key=k_prior),
        _sde_nets.PosteriorDriftMLP(state_dim, context_dim, hidden_size, key=k_post),
        _sde_nets.DiagonalDiffusionNet(state_dim, key=k_diff),
        state_dim=state_dim,
        encoder=_encoders.GRUEncoder(obs_dim, state_dim, context_dim, encoder_size, key=k_enc),
        readout=eqx.nn.Linear(state_dim, obs_dim, key=k_read),
        obs_dim=obs_dim,
        likelihood=likelihood,
        obs_scale=obs_scale,
        z0_loc=0.0,
        z0_scale=1.0,
        dt=float(dt),
        t0=float(t[0]),
        learn_prior=True,
    )


__getattr__ = moved(
    __name__,
    {"PriorDriftMLP": "probdyn.nn.sde_nets", "DiagonalDiffusionNet": "probdyn.nn.sde_nets"},
)
