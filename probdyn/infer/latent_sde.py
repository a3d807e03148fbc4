r"""Latent stochastic differential equations fitted by variational inference.

The generative model (the *prior*) is an SDE in a latent state :math:`z_t \in
\mathbb{R}^d` observed through a likelihood at times :math:`t_1 < \dots < t_T`,

.. math::

    z_{t_0} \sim \mathcal{N}(m_0, s_0^2), \qquad
    dz_t = h_\theta(t, z_t)\,dt + g(t, z_t)\,dW_t, \qquad
    y_i \mid z_{t_i} \sim p(y_i \mid r(z_{t_i})),

and the approximate posterior is an SDE with the *same* diagonal diffusion and a neural
drift that sees a context :math:`c_t` computed from the observations by a GRU run
backwards in time (Li et al. 2020, section 5),

.. math::

    z_{t_0} \sim q(z_{t_0} \mid y), \qquad
    dz_t = f_\phi(t, z_t, c_t)\,dt + g(t, z_t)\,dW_t .

By Girsanov's theorem the two path measures are mutually absolutely continuous and the
evidence lower bound is

.. math::

    \mathcal{L} = \mathbb{E}_q\Big[\sum_i \log p(y_i \mid z_{t_i})\Big]
        - \beta\,\mathrm{KL}\big(q(z_{t_0}) \,\|\, p(z_{t_0})\big)
        - \beta\,\mathbb{E}_q \int_{t_0}^{t_1} \tfrac12 \lVert u_t \rVert^2 dt, \qquad
    u_t = \frac{f_\phi(t, z_t, c_t) - h_\theta(t, z_t)}{g(t, z_t)},

with :math:`\beta` a KL-annealing weight. The path term is accumulated *along each
simulated posterior path* as an extra state of an Euler--Maruyama scan (the
Rao--Blackwellised form: the stochastic integral :math:`\int u\,dW` of the log density
ratio has mean zero and is dropped), and the initial-state term is analytic.

How this maps onto NumPyro
--------------------------
:meth:`LatentSDE.model` and :meth:`LatentSDE.guide` are an ordinary NumPyro model/guide
pair sharing one latent site ``"z"``: the latent path at the observation times, shape
``(num_sequences, num_timesteps, state_dim)`` inside a (possibly subsampled) plate
``"sequences"``. Densities of ``"z"`` are taken *relative to the prior path measure*:
the model gives it log-density 0 (sampling it simulates the prior SDE, so
:class:`~numpyro.infer.Predictive` on the model gives prior predictive draws), and the
guide gives it a :class:`~numpyro.distributions.Delta` at the simulated posterior path
carrying ``log_density`` = initial KL + accumulated path KL. Any NumPyro ELBO therefore
computes exactly :math:`\mathcal{L}` above (with :math:`\beta = 1`);
:class:`LatentSDEELBO` adds particles and KL annealing. Because the model's density of
``"z"`` is relative, the pair is meant for SVI; NUTS on the model is meaningless.

References
----------
X. Li, T.-K. L. Wong, R. T. Q. Chen and D. Duvenaud, "Scalable gradients for stochastic
differential equations", AISTATS 2020.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.typing import ArrayLike
from numpyro.contrib.module import eqx_module
from numpyro.distributions import constraints
from numpyro.primitives import mutable as numpyro_mutable

from probdyn._deprecation import moved
from probdyn.infer.latent_sde_elbo import KL_STEP_SITE, LatentSDEELBO, linear_kl_schedule
from probdyn.kernels._checks import concrete
from probdyn.nn import encoders as _encoders
from probdyn.nn.sde_nets import OrnsteinUhlenbeckDrift

__all__ = [
    "KL_STEP_SITE",
    "LatentSDE",
    "LatentSDEELBO",
    "OrnsteinUhlenbeckDrift",
    "linear_kl_schedule",
]

_LIKELIHOODS = {"normal": dist.Normal, "laplace": dist.Laplace}


# ----------------------------------------------------------------------------- solver


def _time_grid(t_start: float, t_end: float, dt: float, points: np.ndarray):
    """Uniform grid of step ``dt`` on [t_start, t_end] merged with ``points``.

    Returns the grid (K+1,) and the index of every point in it.
    """
    n = max(1, int(math.ceil((t_end - t_start) / dt - 1e-9)))
    base = np.minimum(t_start + dt * np.arange(n + 1), t_end)
    if points.size:
        gap = np.min(np.abs(base[:, None] - points[None, :]), axis=1)
        base = base[gap > 1e-6 * dt]
    grid = np.unique(np.concatenate([base, points, [t_start, t_end]]))
    return grid, np.searchsorted(grid, points)


def _euler_kl(rng_key, z0, grid, context, posterior_drift, prior_drift, diffusion):
    """Euler--Maruyama of the posterior SDE with the path-KL integrand as an extra state.

    ``z0`` (B, d); ``grid`` (K+1,) NumPy; ``context`` (K, B, C). With ``posterior_drift``
    None the prior SDE is simulated and the KL is zero. Returns the path (K+1, B, d) and
    the path KL (B,).
    """
    grid = jnp.asarray(grid, z0.dtype)
    h = jnp.diff(grid)
    eps = jax.random.normal(rng_key, (h.shape[0], *z0.shape), z0.dtype)
    prior = jax.vmap(prior_drift, (None, 0))
    diff = jax.vmap(diffusion, (None, 0))
    post = None if posterior_drift is None else jax.vmap(posterior_drift, (None, 0, 0))

    def step(carry, xs):
        z, kl = carry
        t, h_k, e, c = xs
        g = diff(t, z)
        f_p = prior(t, z)
        if post is None:
            f = f_p
        else:
            f = post(t, z, c)
            u = (f - f_p) / g
            kl = kl + 0.5 * jnp.sum(u * u, axis=-1) * h_k
        z = z + f * h_k + g * jnp.sqrt(h_k) * e
        return (z, kl), z

    # Recompute each step in the backward pass instead of stacking its residuals (the
    # hidden activations of the drift network, (K, B, width)): measured 1.5x faster for
    # value_and_grad on CPU with a 200-wide MLP (and still 1.5x with the particles as the
    # batch of this scan: 400 vs 610 ms CPU per SVI step of the torchsde toy, 2026-12-06).
    step = jax.checkpoint(step)
    if context is None:
        context = jnp.zeros((h.shape[0], z0.shape[0], 0), z0.dtype)
    kl0 = jnp.zeros(z0.shape[:1], z0.dtype)
    (_, kl), zs = jax.lax.scan(step, (z0, kl0), (grid[:-1], h, eps, context))
    return jnp.concatenate([z0[None], zs]), kl


def _kl_normal(loc_q, scale_q, loc_p, scale_p):
    r = scale_q / scale_p
    return 0.5 * (r**2 + ((loc_q - loc_p) / scale_p) ** 2 - 1.0) - jnp.log(r)


class _PriorPath(dist.Distribution):
    """The prior SDE's path at given grid indices; density 0 relative to the prior measure."""

    support = constraints.independent(constraints.real, 2)
    arg_constraints: dict = {}
    pytree_aux_fields = ("drift", "diffusion", "grid", "index")

    def __init__(self, drift, diffusion, z0_loc, z0_scale, grid, index, batch_shape):
        self.drift, self.diffusion = drift, diffusion
        self.z0_loc, self.z0_scale = z0_loc, z0_scale
        self.grid, self.index = grid, index
        event = (len(index), z0_loc.shape[-1])
        super().__init__(batch_shape=batch_shape, event_shape=event)

    def sample(self, key, sample_shape=()):
        shape = tuple(sample_shape) + self.batch_shape
        d = self.event_shape[-1]
        k0, k1 = jax.random.split(key)
        n = int(np.prod(shape))
        z0 = self.z0_loc + self.z0_scale * jax.random.normal(k0, (n, d), self.z0_loc.dtype)
        path, _ = _euler_kl(k1, z0, self.grid, None, None, self.drift, self.diffusion)
        return jnp.swapaxes(path[self.index], 0, 1).reshape(shape + self.event_shape)

    def log_prob(self, value):
        return jnp.zeros(jnp.shape(value)[:-2], jnp.result_type(float))


# ----------------------------------------------------------------------------- model


def _as_callable_diffusion(diffusion, state_dim):
    if callable(diffusion):
        return diffusion
    g = np.asarray(diffusion, dtype=float)
    if g.ndim > 1 or (g.ndim == 1 and g.shape[0] != state_dim):
        raise ValueError(
            f"diffusion has shape {g.shape}; expected a scalar, shape ({state_dim},) or a "
            "callable (t, z) -> (state_dim,)"
        )
    if not np.all(np.isfinite(g)) or np.any(g <= 0):
        raise ValueError(f"diffusion={diffusion!r} is not valid; expected positive values")
    g = jnp.broadcast_to(jnp.asarray(g, jnp.result_type(float)), (state_dim,))
    return _ConstantDiffusion(g)


class _ConstantDiffusion(eqx.Module):
    g: jax.Array

    def __call__(self, t, z):
        return self.g


def _learnable(module) -> bool:
    return isinstance(module, eqx.Module) and bool(
        jax.tree.leaves(eqx.filter(module, eqx.is_inexact_array))
    )


class LatentSDE:
    r"""A latent SDE model/guide pair for SVI (Li et al. 2020).

    Parameters
    ----------
    prior_drift : callable
        :math:`h(t, z)`: scalar ``t``, ``z`` (state_dim,) -> (state_dim,). An equinox module
        (e.g. :class:`OrnsteinUhlenbeckDrift`, an MLP) is learned when ``learn_prior``.
    posterior_drift : callable
        :math:`f(t, z, c)` -> (state_dim,), an equinox module (e.g.
        :class:`probdyn.nn.PosteriorDriftMLP`) with ``context_dim`` matching the encoder (0
        without).
    diffusion : float, ArrayLike (state_dim,) or callable
        Shared diagonal diffusion :math:`g`: a positive constant, or ``(t, z) ->
        (state_dim,)`` (an equinox module is learned when ``learn_prior``).
    state_dim : int
        Latent dimension :math:`d`.
    encoder : probdyn.nn.GRUEncoder, optional
        Amortised context and :math:`q(z_{t_0})`. Without it the context is empty and
        :math:`q(z_{t_0}) = \mathcal{N}(\texttt{qz0\_loc}, \texttt{qz0\_scale}^2)` has free
        parameters shared by all sequences (as in the torchsde toy example).
    readout : callable, optional
        :math:`r(z)`: (state_dim,) -> (obs_dim,), learned when an equinox module. Default
        identity (then ``obs_dim == state_dim``).
    obs_dim : int, optional
        Observation dimension (default ``state_dim``).
    likelihood : {"normal", "laplace"}
        Observation noise family, location :math:`r(z_{t_i})`.
    obs_scale : float or None
        Observation noise scale; None learns a positive ``"obs_scale"`` (obs_dim,).
    z0_loc, z0_scale : float or ArrayLike (state_dim,)
        Prior of the initial state :math:`z_{t_0}`.
    dt : float
        Euler--Maruyama step; observation times are added to the grid.
    t0 : float, optional
        Start of the latent path (default the first observation time).
    t1 : float, optional
        End of the posterior window (default the last observation time); a later end
        penalises the posterior drift beyond the data, as in the torchsde example.
    learn_prior : bool
        Learn the parameters of equinox-module prior drift and diffusion.

    Notes
    -----
    ``model(times, ys, *, num_sequences=None, batch_size=None)`` and ``guide(...)`` take
    ``times`` (T,) (concrete, strictly increasing) and ``ys`` (num_sequences, T, obs_dim)
    (a 2-D ``ys`` is one sequence). ``batch_size`` subsamples the ``"sequences"`` plate.
    The latent site ``"z"`` holds the path at ``times``, shape (num_sequences, T,
    state_dim); the observed site is ``"y"``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpy as np, optax, probdyn
    >>> from probdyn.infer.latent_sde import (LatentSDE, LatentSDEELBO,
    ...     OrnsteinUhlenbeckDrift, linear_kl_schedule)
    >>> from probdyn.nn import PosteriorDriftMLP
    >>> times = np.linspace(0.4, 1.6, 16)
    >>> ys = 0.8 * np.sin(2 * np.pi * times)[:, None]             # (T, obs_dim)
    >>> sde = LatentSDE(OrnsteinUhlenbeckDrift(1.0, 0.0),
    ...                 PosteriorDriftMLP(1, width=64, key=jax.random.PRNGKey(0)),
    ...                 diffusion=0.5, state_dim=1, likelihood="laplace", obs_scale=0.05,
    ...                 z0_scale=0.5 / np.sqrt(2.0), t0=0.0, t1=2.0, learn_prior=False)
    >>> idata = probdyn.fit(sde.model, times, ys, method="svi", guide=sde.guide,
    ...                     loss=LatentSDEELBO(64, kl_schedule=linear_kl_schedule(100)),
    ...                     num_steps=500, num_chains=1, num_samples=100,
    ...                     progress_bar=False)  # doctest: +SKIP
    >>> z_last = idata.posterior["z"].values[..., -1, :]           # (1, 100, 1, 1)
    >>> fc = sde.forecast(jax.random.PRNGKey(1), z_last, times[-1],
    ...                   np.linspace(1.7, 2.5, 9))  # doctest: +SKIP
    >>> fc["z"].shape  # doctest: +SKIP
    (1, 100, 1, 9, 1)
    """

    def __init__(
        self,
        prior_drift: Callable,
        posterior_drift: Callable,
        diffusion: Any,
        *,
        state_dim: int,
        encoder: _encoders.GRUEncoder | None = None,
        readout: Callable | None = None,
        obs_dim: int | None = None,
        likelihood: str = "normal",
        obs_scale: float | None = None,
        z0_loc: ArrayLike = 0.0,
        z0_scale: ArrayLike = 1.0,
        dt: float = 0.01,
        t0: float | None = None,
        t1: float | None = None,
        learn_prior: bool = True,
    ):
        if isinstance(state_dim, bool) or not isinstance(state_dim, (int, np.integer)):
            raise TypeError(f"state_dim={state_dim!r} is not an integer")
        if state_dim < 1:
            raise ValueError(f"state_dim={state_dim} is not valid; expected >= 1")
        for name, fn in (("prior_drift", prior_drift), ("posterior_drift", posterior_drift)):
            if not callable(fn):
                raise TypeError(f"{name}={fn!r} is not callable; expected (t, z, ...) -> dz")
        if likelihood not in _LIKELIHOODS:
            raise ValueError(
                f"likelihood={likelihood!r} is not known; expected {list(_LIKELIHOODS)}"
            )
        if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt={dt!r} is not valid; expected a positive float")
        if obs_scale is not None and not (np.all(np.asarray(obs_scale) > 0)):
            raise ValueError(f"obs_scale={obs_scale!r} is not valid; expected positive or None")
        if readout is None and obs_dim not in (None, state_dim):
            raise ValueError(
                f"obs_dim={obs_dim} differs from state_dim={state_dim}; give a readout"
            )
        if encoder is not None and not isinstance(encoder, _encoders.GRUEncoder):
            raise TypeError(f"encoder={encoder!r} is not a GRUEncoder")
        z0_scale_arr = np.asarray(z0_scale, dtype=float)
        if not np.all(np.isfinite(z0_scale_arr)) or np.any(z0_scale_arr <= 0):
            raise ValueError(f"z0_scale={z0_scale!r} is not valid; expected positive values")
        self.state_dim = int(state_dim)
        self.obs_dim = int(obs_dim if obs_dim is not None else state_dim)
        self.prior_drift = prior_drift
        self.posterior_drift = posterior_drift
        self.diffusion = _as_callable_diffusion(diffusion, self.state_dim)
        self.encoder = encoder
        self.readout = readout
        self.likelihood = likelihood
        self.obs_scale = obs_scale
        f = jnp.result_type(float)
        self.z0_loc = jnp.broadcast_to(jnp.asarray(z0_loc, f), (self.state_dim,))
        self.z0_scale = jnp.broadcast_to(jnp.asarray(z0_scale_arr, f), (self.state_dim,))
        self.dt = float(dt)
        self.t0, self.t1 = t0, t1
        self.learn_prior = bool(learn_prior)
        # a constant diffusion given as numbers stays fixed
        self._learn_diffusion = self.learn_prior and callable(diffusion)

    # -- checks ------------------------------------------------------------------------
    def _check(self, times, ys, num_sequences, need_ys):
        try:
            t = np.asarray(times, dtype=float)
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
            raise TypeError(
                "times must be concrete (not traced): the time grid is static"
            ) from None
        if t.ndim != 1 or t.size < 1:
            raise ValueError(f"times has shape {t.shape}; expected (num_timesteps,)")
        if not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
            raise ValueError("times must be finite and strictly increasing")
        t0 = t[0] if self.t0 is None else float(self.t0)
        t1 = t[-1] if self.t1 is None else float(self.t1)
        if t0 > t[0] or t1 < t[-1]:
            raise ValueError(f"t0={t0}, t1={t1} must bracket times [{t[0]}, {t[-1]}]")
        if ys is None:
            if need_ys:
                raise ValueError("ys is required by the guide (the encoder reads it)")
            if num_sequences is None:
                raise ValueError("give ys or num_sequences")
            return t, t0, t1, None, int(num_sequences)
        ys = jnp.asarray(ys)
        if ys.ndim == 2:
            ys = ys[None]
        if ys.ndim != 3 or ys.shape[1] != t.size or ys.shape[2] != self.obs_dim:
            raise ValueError(
                f"ys has shape {ys.shape}; expected (num_sequences, {t.size}, {self.obs_dim})"
            )
        values = concrete(ys)
        if values is not None and not np.all(np.isfinite(values)):
            raise ValueError("ys contains NaN or infinite values")
        if num_sequences is not None and num_sequences != ys.shape[0]:
            raise ValueError(f"num_sequences={num_sequences} differs from ys.shape[0]")
        return t, t0, t1, ys, ys.shape[0]

    # -- modules -----------------------------------------------------------------------
    def _prior_modules(self, params=None):
        drift, diffusion = self.prior_drift, self.diffusion
        if self.learn_prior:
            drift = _register("prior_drift", drift, params)
        if self._learn_diffusion:
            diffusion = _register("diffusion", diffusion, params)
        return drift, diffusion

    def _obs(self, params=None):
        readout = _register("readout", self.readout, params) if self.readout else None
        if self.obs_scale is not None:
            scale = jnp.asarray(self.obs_scale, jnp.result_type(float))
        elif params is not None:
            scale = params["obs_scale"]
        else:
            init = jnp.full((self.obs_dim,), 0.1, jnp.result_type(float))
            scale = numpyro.param("obs_scale", init, constraint=constraints.positive)
        return readout, scale

    def _emission(self, z, readout, scale):
        loc = z if readout is None else jax.vmap(jax.vmap(readout))(z)
        return _LIKELIHOODS[self.likelihood](loc, scale).to_event(2)

    # -- model and guide ---------------------------------------------------------------
    def model(self, times, ys=None, *, num_sequences=None, batch_size=None):
        """NumPyro model: prior path ``"z"`` (N, T, d), observations ``"y"`` (N, T, obs_dim)."""
        t, t0, _, ys, n = self._check(times, ys, num_sequences, need_ys=False)
        drift, diffusion = self._prior_modules()
        readout, scale = self._obs()
        grid, index = _time_grid(t0, t[-1], self.dt, t)
        with numpyro.plate("sequences", n, subsample_size=batch_size, dim=-1) as idx:
            path = _PriorPath(
                drift, diffusion, self.z0_loc, self.z0_scale, grid, index, (jnp.size(idx),)
            )
            z = numpyro.sample("z", path, infer={"event_dims": ["time", "state"]})
            obs = None if ys is None else ys[idx]
            emission = self._emission(z, readout, scale)
            numpyro.sample("y", emission, obs=obs, infer={"event_dims": ["time", "obs"]})

    def guide(self, times, ys=None, *, num_sequences=None, batch_size=None):
        """NumPyro guide: posterior SDE path ``"z"`` with the KL as its log-density."""
        t, t0, t1, ys, n = self._check(times, ys, num_sequences, need_ys=True)
        numpyro_mutable(KL_STEP_SITE, {"step": jnp.zeros((), jnp.int32)})
        mods = self._guide_modules()
        with numpyro.plate("sequences", n, subsample_size=batch_size, dim=-1) as idx:
            key = numpyro.prng_key()
            if key is None:
                raise RuntimeError("the guide needs a seed handler (run it under SVI/Predictive)")
            path, kl = self._posterior(key, mods, t, t0, t1, ys[idx], t)
            delta = dist.Delta(path, log_density=kl, event_dim=2)
            numpyro.sample("z", delta, infer={"event_dims": ["time", "state"]})

    def _guide_modules(self, params=None):
        drift, diffusion = self._prior_modules(params)
        post = _register("posterior_drift", self.posterior_drift, params)
        if self.encoder is not None:
            return drift, diffusion, post, _register("encoder", self.encoder, params), None
        if params is not None:
            qz0 = params["qz0_loc"], params["qz0_scale"]
        else:
            qz0 = (
                numpyro.param("qz0_loc", self.z0_loc),
                numpyro.param("qz0_scale", self.z0_scale, constraint=constraints.positive),
            )
        return drift, diffusion, post, None, qz0

    def _posterior(self, key, mods, t, t0, t1, ys, eval_times):
        """Posterior paths at ``eval_times``: (B, E, d), and total KL (B,)."""
        drift, diffusion, post, encoder, qz0 = mods
        b = ys.shape[0]
        if encoder is not None:
            context, q_loc, q_scale = jax.vmap(encoder, (None, 0))(jnp.asarray(t, ys.dtype), ys)
        else:
            context = jnp.zeros((b, t.size, 0), ys.dtype)
            q_loc = jnp.broadcast_to(qz0[0], (b, self.state_dim))
            q_scale = jnp.broadcast_to(qz0[1], (b, self.state_dim))
        grid, index = _time_grid(t0, max(t1, eval_times[-1]), self.dt, eval_times)
        ctx_index = np.minimum(np.searchsorted(t, grid[:-1], side="right"), t.size - 1)
        step_context = jnp.swapaxes(context[:, ctx_index], 0, 1)
        k0, k1 = jax.random.split(key)
        z0 = q_loc + q_scale * jax.random.normal(k0, q_loc.shape, q_loc.dtype)
        kl0 = jnp.sum(_kl_normal(q_loc, q_scale, self.z0_loc, self.z0_scale), axis=-1)
        path, kl = _euler_kl(k1, z0, grid, step_context, post, drift, diffusion)
        return jnp.swapaxes(path[index], 0, 1), kl0 + kl

    # -- after fitting -----------------------------------------------------------------
    def sample_posterior(
        self,
        rng_key: jax.Array,
        params: Mapping[str, Any],
        times: ArrayLike,
        ys: ArrayLike,
        *,
        num_paths: int = 1,
        eval_times: ArrayLike | None = None,
    ) -> jax.Array:
        """Posterior SDE paths given the data.

        Parameters
        ----------
        rng_key : jax.Array
        params : dict
            Fitted SVI parameters (``svi.get_params(state)``, or :meth:`params_from_idata`).
        times : ArrayLike, shape (T,)
        ys : ArrayLike, shape (num_sequences, T, obs_dim)
        num_paths : int
            Paths per sequence.
        eval_times : ArrayLike, shape (E,), optional
            Increasing times in ``[t0, ...]`` to report (default ``times``); times after
            ``t1`` continue the posterior SDE.

        Returns
        -------
        jax.Array, shape (num_paths, num_sequences, E, state_dim)
        """
        t, t0, t1, ys, _ = self._check(times, ys, None, need_ys=True)
        ev = t if eval_times is None else np.asarray(eval_times, dtype=float)
        if ev.ndim != 1 or np.any(np.diff(ev) <= 0) or ev[0] < t0:
            raise ValueError(f"eval_times must be increasing and >= t0={t0}")
        mods = self._guide_modules(params)
        keys = jax.random.split(rng_key, num_paths)
        return jax.vmap(lambda k: self._posterior(k, mods, t, t0, t1, ys, ev)[0])(keys)

    def forecast(
        self,
        rng_key: jax.Array,
        z_start: ArrayLike,
        t_start: float,
        forecast_times: ArrayLike,
        *,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, jax.Array]:
        """Forecast beyond the data: simulate the prior SDE from posterior states.

        Parameters
        ----------
        rng_key : jax.Array
        z_start : ArrayLike, shape (..., state_dim)
            Posterior states at ``t_start`` (e.g. ``idata.posterior["z"][..., -1, :]``).
        t_start : float
            Their time (e.g. the last observation time).
        forecast_times : ArrayLike, shape (F,)
            Increasing times > ``t_start``.
        params : dict, optional
            Fitted parameters for learned prior drift/diffusion/readout/obs_scale
            (default: the modules as constructed).

        Returns
        -------
        dict with ``"z"`` (..., F, state_dim) latent paths and ``"y"`` (..., F, obs_dim)
        observations drawn from the likelihood.
        """
        z_start = jnp.asarray(z_start, jnp.result_type(float))
        if z_start.ndim < 1 or z_start.shape[-1] != self.state_dim:
            raise ValueError(f"z_start has shape {z_start.shape}; expected (..., {self.state_dim})")
        ft = np.asarray(forecast_times, dtype=float)
        if ft.ndim != 1 or ft.size < 1 or np.any(np.diff(ft) <= 0) or ft[0] <= t_start:
            raise ValueError(f"forecast_times must be increasing and > t_start={t_start}")
        if params is None and self.obs_scale is None:
            raise ValueError("obs_scale is learned; pass the fitted params")
        params = dict(params) if params is not None else {}
        drift, diffusion = self._prior_modules(params)
        readout = _combine(self.readout, params.get("readout$params")) if self.readout else None
        scale = self.obs_scale if self.obs_scale is not None else params["obs_scale"]
        grid, index = _time_grid(float(t_start), ft[-1], self.dt, ft)
        batch = z_start.shape[:-1]
        k1, k2 = jax.random.split(rng_key)
        z0 = z_start.reshape(-1, self.state_dim)
        path, _ = _euler_kl(k1, z0, grid, None, None, drift, diffusion)
        z = jnp.swapaxes(path[index], 0, 1)
        y = self._emission(z, readout, jnp.asarray(scale, z.dtype)).sample(k2)
        return {
            "z": z.reshape(batch + z.shape[1:]),
            "y": y.reshape(batch + y.shape[1:]),
        }

    def params_from_idata(self, idata) -> dict[str, Any]:
        """Rebuild the fitted parameters from ``idata.svi_params`` of :func:`probdyn.fit`."""
        flat = {k: np.asarray(v) for k, v in idata["svi_params"].data_vars.items()}
        out: dict[str, Any] = {}
        modules = {
            "prior_drift": self.prior_drift if self.learn_prior else None,
            "diffusion": self.diffusion if self._learn_diffusion else None,
            "posterior_drift": self.posterior_drift,
            "encoder": self.encoder,
            "readout": self.readout,
        }
        for name, module in modules.items():
            if module is None or not _learnable(module):
                continue
            part = eqx.filter(module, eqx.is_inexact_array)
            leaves, treedef = jax.tree_util.tree_flatten_with_path(part)
            values = []
            for path, leaf in leaves:
                suffix = re.sub(r"[^0-9A-Za-z]+", "_", jax.tree_util.keystr(path)).strip("_")
                values.append(jnp.asarray(flat[f"{name}$params_{suffix}"], leaf.dtype))
            out[f"{name}$params"] = jax.tree_util.tree_unflatten(treedef, values)
        for name in ("qz0_loc", "qz0_scale", "obs_scale"):
            if name in flat:
                out[name] = jnp.asarray(flat[name])
        return out


def _register(name, module, params):
    """``eqx_module`` inside a model, or the module rebuilt from fitted ``params``."""
    if not _learnable(module):
        return module
    if params is not None:
        return _combine(module, params.get(f"{name}$params"))
    return eqx_module(name, module)


def _combine(module, fitted):
    if fitted is None or not _learnable(module):
        return module
    _, static = eqx.partition(module, eqx.is_inexact_array)
    return eqx.combine(fitted, static)


__getattr__ = moved(
    __name__,
    {"GRUEncoder": "probdyn.nn.encoders", "PosteriorDriftMLP": "probdyn.nn.sde_nets"},
)
