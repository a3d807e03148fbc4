"""Latent dynamics for sequential variational autoencoders of count data (Langevin flows).

The dynamics modules share one interface, ``step(state, noise, dt) -> state`` plus
``observe(state)`` and the sizes ``state_dim``, ``noise_dim``, ``obs_dim``:
:class:`LangevinDynamics` (underdamped Langevin dynamics in a learned coupled-oscillator
potential, BAOAB steps; Song et al. 2025), :class:`LinearDynamics` (a linear-Gaussian LDS)
and :class:`NeuralSDEDynamics` (an overdamped neural SDE, Euler-Maruyama).
:class:`LatentDynamicsModel` wraps any of them with a bidirectional-GRU encoder of the
initial state and of the forcing noise, and a Poisson log-linear readout; the training loop
and predictions are in :mod:`probdyn.models.langevin_flow`.

References
----------
Y. Song, T. A. Keller, Y. Yue, P. Perona, M. Welling, "Langevin Flows for Modeling Neural
Latent Dynamics", 2025.
C. Pandarinath et al., "Inferring single-trial neural population dynamics using sequential
auto-encoders" (LFADS), Nature Methods 15, 2018.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from probdyn.kernels.sde import SDE, langevin_sde, step

Array = jax.Array

__all__ = ["LangevinDynamics", "LatentDynamicsModel", "LinearDynamics", "NeuralSDEDynamics"]


def _inv_softplus(x):
    return float(np.log(np.expm1(x)))


def _grad_potential(q, p):
    return jax.grad(p["dynamics"].potential)(q)


_LANGEVIN = langevin_sde(_grad_potential)


class LangevinDynamics(eqx.Module):
    """Underdamped Langevin dynamics with a coupled-oscillator potential (BAOAB steps).

    State ``concat(q, v)`` (2 * latent_dim,), noise (latent_dim,) for the velocity,
    observed part ``q``. Per-coordinate friction ``gamma`` and noise scale ``sigma`` (the
    inverse temperature passed to BAOAB is ``2 gamma / sigma^2``).

    Parameters
    ----------
    latent_dim : int
    rng_key : Array
    stiffness, coupling, gamma, sigma : float
        Initial values of all k_i, c_i, gamma_i, sigma_i (all kept positive by softplus).
    mlp_width : int
        Hidden width of the potential's network term.
    mlp_scale : float
        Fixed factor s on the network term (0 disables it).
    """

    raw_k: Array
    raw_c: Array
    raw_gamma: Array
    raw_sigma: Array
    mlp: eqx.nn.MLP
    mlp_scale: float = eqx.field(static=True)
    latent_dim: int = eqx.field(static=True)

    def __init__(
        self,
        latent_dim: int,
        rng_key: Array,
        *,
        stiffness: float = 2.0,
        coupling: float = 0.5,
        gamma: float = 0.3,
        sigma: float = 0.5,
        mlp_width: int = 32,
        mlp_scale: float = 0.1,
    ):
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive int; got {latent_dim!r}")
        d = int(latent_dim)
        self.latent_dim = d
        self.raw_k = jnp.full((d,), _inv_softplus(stiffness))
        self.raw_c = jnp.full((max(d - 1, 0),), _inv_softplus(coupling))
        self.raw_gamma = jnp.full((d,), _inv_softplus(gamma))
        self.raw_sigma = jnp.full((d,), _inv_softplus(sigma))
        self.mlp = eqx.nn.MLP(d, "scalar", mlp_width, 1, activation=jnp.tanh, key=rng_key)
        self.mlp_scale = float(mlp_scale)

    @property
    def state_dim(self) -> int:
        return 2 * self.latent_dim

    @property
    def noise_dim(self) -> int:
        return self.latent_dim

    @property
    def obs_dim(self) -> int:
        return self.latent_dim

    def coefficients(self) -> dict:
        """Positive parameters ``k`` (d,), ``c`` (d-1,), ``gamma`` (d,), ``sigma`` (d,)."""
        sp = jax.nn.softplus
        return {
            "k": sp(self.raw_k),
            "c": sp(self.raw_c),
            "gamma": sp(self.raw_gamma),
            "sigma": sp(self.raw_sigma),
        }

    def potential(self, q: Array) -> Array:
        """U(q), a scalar, for positions ``q`` (latent_dim,)."""
        co = self.coefficients()
        u = 0.5 * jnp.sum(co["k"] * q**2) + 0.5 * jnp.sum(co["c"] * jnp.diff(q) ** 2)
        if self.mlp_scale:
            u = u + self.mlp_scale * self.mlp(q)
        return u

    def step(self, state: Array, noise: Array, dt: float) -> Array:
        """One BAOAB step; ``noise`` (latent_dim,) standard normal (or its posterior draw)."""
        co = self.coefficients()
        params = {"gamma": co["gamma"], "beta": 2.0 * co["gamma"] / co["sigma"] ** 2}
        params["dynamics"] = self
        return step("baoab", _LANGEVIN, 0.0, state, dt, noise, params)

    def observe(self, state: Array) -> Array:
        return state[..., : self.latent_dim]


class LinearDynamics(eqx.Module):
    """Linear-Gaussian dynamics ``z' = A z + b + diag(s) eps`` per solver step (an LDS).

    State, noise and observed part all (state_dim,); ``dt`` is ignored (the LDS is defined
    on the step grid). ``A`` starts at ``decay * I`` plus a small random rotation-like part.
    """

    A: Array
    b: Array
    raw_scale: Array
    state_dim: int = eqx.field(static=True)

    def __init__(self, state_dim: int, rng_key: Array, *, decay: float = 0.98, scale=0.1):
        if state_dim < 1:
            raise ValueError(f"state_dim must be a positive int; got {state_dim!r}")
        S = int(state_dim)
        self.state_dim = S
        M = 0.05 * jax.random.normal(rng_key, (S, S))
        self.A = decay * jnp.eye(S) + (M - M.T)
        self.b = jnp.zeros(S)
        self.raw_scale = jnp.full((S,), _inv_softplus(scale))

    @property
    def noise_dim(self) -> int:
        return self.state_dim

    @property
    def obs_dim(self) -> int:
        return self.state_dim

    def step(self, state: Array, noise: Array, dt: float) -> Array:
        return self.A @ state + self.b + jax.nn.softplus(self.raw_scale) * noise

    def observe(self, state: Array) -> Array:
        return state


def _nsde_drift(t, y, p):
    return p["mlp"](y)


def _nsde_diffusion(t, y, p):
    return p["sigma"]


_NEURAL_SDE = SDE(_nsde_drift, _nsde_diffusion, noise="diagonal")


class NeuralSDEDynamics(eqx.Module):
    """Overdamped latent SDE ``dz = f(z) dt + sigma dW`` with an MLP drift (Euler-Maruyama).

    State, noise and observed part all (state_dim,).
    """

    mlp: eqx.nn.MLP
    raw_sigma: Array
    state_dim: int = eqx.field(static=True)

    def __init__(self, state_dim: int, rng_key: Array, *, width: int = 64, sigma: float = 0.5):
        if state_dim < 1:
            raise ValueError(f"state_dim must be a positive int; got {state_dim!r}")
        S = int(state_dim)
        self.state_dim = S
        self.mlp = eqx.nn.MLP(S, S, width, 2, activation=jnp.tanh, key=rng_key)
        self.raw_sigma = jnp.full((S,), _inv_softplus(sigma))

    @property
    def noise_dim(self) -> int:
        return self.state_dim

    @property
    def obs_dim(self) -> int:
        return self.state_dim

    def step(self, state: Array, noise: Array, dt: float) -> Array:
        params = {"mlp": self.mlp, "sigma": jax.nn.softplus(self.raw_sigma)}
        return step("euler", _NEURAL_SDE, 0.0, state, dt, noise, params)

    def observe(self, state: Array) -> Array:
        return state


# --------------------------------------------------------------------------------------
# the sequential VAE shared by all three dynamics
# --------------------------------------------------------------------------------------


class LatentDynamicsModel(eqx.Module):
    """Bidirectional-GRU encoder, latent dynamics, Poisson readout ``exp(W x + b)``.

    Build with :func:`make_model`. ``dt`` is the model time per bin, ``substeps`` the
    solver steps per bin.
    """

    gru_fwd: eqx.nn.GRUCell
    gru_bwd: eqx.nn.GRUCell
    init_head: eqx.nn.Linear
    noise_head: eqx.nn.Linear
    dynamics: eqx.Module
    readout_weight: Array
    readout_bias: Array
    dt: float = eqx.field(static=True)
    substeps: int = eqx.field(static=True)

    def encode(self, counts: Array):
        """Posterior parameters from held-in counts (T_obs, num_inputs).

        Returns
        -------
        init_mean, init_log_std : Array, shape (state_dim,)
        noise_mean, noise_log_std : Array, shape (T_obs - 1, substeps, noise_dim)
            For the solver steps between consecutive observed bins.
        """
        x = jnp.log1p(counts.astype(self.readout_bias.dtype))
        H = self.gru_fwd.hidden_size
        h0 = jnp.zeros(H, x.dtype)

        def run(cell, xs):
            return lax.scan(lambda h, xt: (cell(xt, h),) * 2, h0, xs)[1]

        hf = run(self.gru_fwd, x)
        hb = run(self.gru_bwd, x[::-1])[::-1]
        g = self.init_head(jnp.concatenate([hf[-1], hb[0]]))
        m0, ls0 = jnp.split(g, 2)
        feats = jnp.concatenate([hf, hb], -1)[1:]
        out = jax.vmap(self.noise_head)(feats).reshape(
            feats.shape[0], self.substeps, 2, self.dynamics.noise_dim
        )
        return m0, ls0, out[:, :, 0], out[:, :, 1]

    def rollout(self, state0: Array, noise: Array) -> Array:
        """States at every bin, shape (T, state_dim), from noise (T - 1, substeps, noise_dim)."""
        h = self.dt / self.substeps

        def bin_step(s, zs):
            s = lax.scan(lambda s_, z: (self.dynamics.step(s_, z, h), None), s, zs)[0]
            return s, s

        _, states = lax.scan(bin_step, state0, noise)
        return jnp.concatenate([state0[None], states])

    def log_rates(self, states: Array) -> Array:
        """Log expected counts (..., num_neurons) from states (..., state_dim)."""
        return self.dynamics.observe(states) @ self.readout_weight.T + self.readout_bias

    def sample_posterior(self, rng_key: Array, counts: Array, num_timesteps: int):
        """One reparameterised posterior path over ``num_timesteps`` bins.

        Returns
        -------
        states : Array, shape (num_timesteps, state_dim)
        kl : Array, scalar
            KL of the initial state and of the forcing noise (zero after the window).
        """
        m0, ls0, mz, lsz = self.encode(counts)
        k0, kz = jax.random.split(rng_key)
        e0 = jax.random.normal(k0, m0.shape, m0.dtype)
        state0 = m0 + jnp.exp(ls0) * e0
        shape = (num_timesteps - 1, self.substeps, self.dynamics.noise_dim)
        pad = num_timesteps - 1 - mz.shape[0]
        mz = jnp.concatenate([mz, jnp.zeros((pad,) + shape[1:], mz.dtype)])
        lsz = jnp.concatenate([lsz, jnp.zeros((pad,) + shape[1:], lsz.dtype)])
        z = mz + jnp.exp(lsz) * jax.random.normal(kz, shape, mz.dtype)
        kl = _kl_std_normal(m0, ls0) + _kl_std_normal(mz, lsz)
        return self.rollout(state0, z), kl


def _kl_std_normal(mean, log_std):
    return 0.5 * jnp.sum(mean**2 + jnp.exp(2 * log_std) - 1.0 - 2 * log_std)
