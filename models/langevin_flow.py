"""Underdamped Langevin latent dynamics for neural population spike counts (a Langevin flow).

After Song et al. (2025): a latent position :math:`q \\in \\mathbb R^d` and velocity
:math:`v` follow underdamped Langevin dynamics

.. math::

    dq = v\\,dt, \\qquad dv = \\bigl(-\\nabla U(q) - \\gamma \\odot v\\bigr)\\,dt
        + \\sigma \\odot dW,

with a learned potential built from locally coupled oscillators plus a small network,

.. math::

    U(q) = \\sum_i \\tfrac12 k_i q_i^2 + \\sum_{i<d} \\tfrac12 c_i (q_i - q_{i+1})^2
        + s\\, \\mathrm{MLP}(q),

integrated with the BAOAB splitting (:func:`probdyn.kernels.sde.step` with ``"baoab"``);
spike counts are Poisson with log-rates :math:`W q_t + b`.

Inference is a variational autoencoder. A bidirectional GRU reads the held-in neurons'
counts of the first ``num_obs_bins`` bins and outputs a Gaussian posterior over the initial
state and, for every solver step inside the observed window, a Gaussian posterior
:math:`\\mathcal N(\\mu_j, s_j^2)` over the standard-normal forcing noise :math:`z_j` that the
solver consumes (the prior is :math:`\\mathcal N(0, I)`; after the window the posterior is
the prior, so the model forecasts by running its own dynamics). This is the discrete-time
form of the latent-SDE path KL: with :math:`s_j = 1` the term
:math:`\\mathrm{KL} = \\tfrac12|\\mu_j|^2` equals :math:`\\tfrac12 |u|^2 dt` for the control
:math:`u = \\mu_j/\\sqrt{dt}` added to the Brownian increment. The ELBO is
reparameterised and maximised with Adam by :func:`train` (this model's own loop, named so
that it does not shadow :func:`probdyn.fit`; ``fit`` is a deprecated alias).

Two baselines share the encoder, readout and training loop and change only the dynamics:
:class:`LinearDynamics` (a linear-Gaussian LDS :math:`z' = Az + b + \\mathrm{diag}(s)\\,
\\varepsilon`) and :class:`NeuralSDEDynamics` (an overdamped latent SDE :math:`dz =
f_\\theta(z)\\,dt + \\sigma\\,dW`, Euler-Maruyama). The data generator
:func:`simulate_lorenz_population` drives a Poisson population with a Lorenz attractor.

The networks (:class:`~probdyn.nn.latent_dynamics.LangevinDynamics`, ``LinearDynamics``,
``NeuralSDEDynamics`` and ``LatentDynamicsModel``) live in :mod:`probdyn.nn.latent_dynamics`;
importing them from here still works, with a ``DeprecationWarning``.

References
----------
Y. Song, T. A. Keller, Y. Yue, P. Perona, M. Welling, "Langevin Flows for Modeling Neural
Latent Dynamics", 2025.
C. Pandarinath et al., "Inferring single-trial neural population dynamics using sequential
auto-encoders" (LFADS), Nature Methods 15, 2018 (the Lorenz benchmark).
F. Pei et al., "Neural Latents Benchmark '21" (co-smoothing bits per spike), 2021.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.scipy.special import gammaln
from jax.typing import ArrayLike

from probdyn._deprecation import moved
from probdyn.nn import latent_dynamics as _nets
from probdyn.report.scores import bits_per_spike, r2_score  # re-exported: moved there

Array = jax.Array

__all__ = [
    "LorenzPopulation",
    "Prediction",
    "bits_per_spike",
    "elbo",
    "lorenz_trajectory",
    "make_model",
    "poisson_log_prob",
    "predict",
    "r2_score",
    "simulate_lorenz_population",
    "train",
]


# --------------------------------------------------------------------------------------
# data: a Poisson population driven by the Lorenz attractor
# --------------------------------------------------------------------------------------


def _lorenz_rhs(x, sigma, rho, beta):
    return jnp.stack([sigma * (x[1] - x[0]), x[0] * (rho - x[2]) - x[1], x[0] * x[1] - beta * x[2]])


def lorenz_trajectory(
    x0: ArrayLike,
    num_steps: int,
    dt: float,
    sigma: float = 10.0,
    rho: float = 28.0,
    beta: float = 8.0 / 3.0,
) -> Array:
    """Integrate the Lorenz system with classical fourth-order Runge-Kutta.

    .. math::

        \\dot x = \\sigma (y - x), \\quad \\dot y = x(\\rho - z) - y, \\quad
        \\dot z = xy - \\beta z .

    Parameters
    ----------
    x0 : ArrayLike, shape (3,)
    num_steps : int
        Number of RK4 steps.
    dt : float
        Positive step (0.005 or less keeps RK4 accurate on the attractor).

    Returns
    -------
    Array, shape (num_steps + 1, 3)
        Row 0 is ``x0``.
    """
    x0 = jnp.asarray(x0, dtype=jnp.result_type(float))
    if x0.shape != (3,):
        raise ValueError(f"x0 must have shape (3,); got {x0.shape}")
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int; got {num_steps!r}")
    if not dt > 0:
        raise ValueError(f"dt must be positive; got {dt}")
    f = lambda x: _lorenz_rhs(x, sigma, rho, beta)  # noqa: E731

    def rk4(x, _):
        k1 = f(x)
        k2 = f(x + 0.5 * dt * k1)
        k3 = f(x + 0.5 * dt * k2)
        k4 = f(x + dt * k3)
        x = x + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        return x, x

    _, xs = lax.scan(rk4, x0, None, length=int(num_steps))
    return jnp.concatenate([x0[None], xs])


class LorenzPopulation(NamedTuple):
    """Synthetic spike counts driven by a Lorenz attractor.

    Attributes
    ----------
    spikes : ndarray, shape (num_trials, num_timesteps, num_neurons), int
    rates : ndarray, shape (num_trials, num_timesteps, num_neurons)
        True expected counts per bin.
    latents : ndarray, shape (num_trials, num_timesteps, 3)
        The Lorenz state, centred and scaled into [-1, 1] per coordinate.
    readout : ndarray, shape (num_neurons, 3)
    bias : ndarray, shape (num_neurons,)
        ``log(rates) = latents @ readout.T + bias``.
    """

    spikes: np.ndarray
    rates: np.ndarray
    latents: np.ndarray
    readout: np.ndarray
    bias: np.ndarray


def simulate_lorenz_population(
    seed: int,
    num_trials: int,
    num_timesteps: int,
    num_neurons: int,
    *,
    bin_size: float = 0.02,
    base_rate: float = 15.0,
    gain: float = 0.8,
    lorenz_time_per_bin: float = 0.015,
    rk4_steps_per_bin: int = 5,
) -> LorenzPopulation:
    """Poisson spike counts whose log-rates are random projections of a Lorenz trajectory.

    One long Lorenz trajectory (after a burn-in of 20 time units) is cut into trials at
    random start points; coordinates are centred and scaled into [-1, 1], and neuron n fires at
    ``exp(C[n] @ z_t + b[n])`` counts per bin with ``C ~ N(0, gain^2)`` and
    ``b = log(base_rate * bin_size)``.

    Parameters
    ----------
    seed : int
    num_trials, num_timesteps, num_neurons : int
    bin_size : float
        Seconds per bin.
    base_rate : float
        Baseline firing rate in Hz (at z = 0).
    gain : float
        Standard deviation of the readout weights.
    lorenz_time_per_bin : float
        Lorenz time units per bin (the attractor's oscillation period is about 0.7).
    rk4_steps_per_bin : int
        Integration steps per bin.

    Returns
    -------
    LorenzPopulation
    """
    for name, val in (
        ("num_trials", num_trials),
        ("num_timesteps", num_timesteps),
        ("num_neurons", num_neurons),
        ("rk4_steps_per_bin", rk4_steps_per_bin),
    ):
        if not isinstance(val, (int, np.integer)) or val < 1:
            raise ValueError(f"{name} must be a positive int; got {val!r}")
    for name, val in (
        ("bin_size", bin_size),
        ("base_rate", base_rate),
        ("lorenz_time_per_bin", lorenz_time_per_bin),
    ):
        if not (np.isfinite(val) and val > 0):
            raise ValueError(f"{name} must be positive; got {val!r}")
    rng = np.random.default_rng(seed)
    h = lorenz_time_per_bin / rk4_steps_per_bin
    burn = int(np.ceil(20.0 / h))
    span = max(10 * num_timesteps, num_trials * num_timesteps // 4)
    x0 = np.array([1.0, 1.0, 1.0]) + 0.1 * rng.standard_normal(3)
    path = np.asarray(lorenz_trajectory(x0, burn + span * rk4_steps_per_bin, h))
    path = path[burn::rk4_steps_per_bin]  # one row per bin
    path = path - path.mean(0)
    path = path / np.abs(path).max(0)
    starts = rng.integers(0, path.shape[0] - num_timesteps, size=num_trials)
    latents = np.stack([path[s : s + num_timesteps] for s in starts])
    C = gain * rng.standard_normal((num_neurons, 3))
    b = np.full(num_neurons, np.log(base_rate * bin_size))
    rates = np.exp(latents @ C.T + b)
    spikes = rng.poisson(rates).astype(np.int32)
    return LorenzPopulation(spikes, rates, latents, C, b)


# --------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------


def poisson_log_prob(rates: ArrayLike, counts: ArrayLike) -> Array:
    """Elementwise Poisson log-pmf ``counts * log(rates) - rates - log(counts!)``.

    Parameters
    ----------
    rates : ArrayLike, shape (...)
        Positive expected counts.
    counts : ArrayLike, shape (...)
        Non-negative integer counts.
    """
    rates, counts = jnp.asarray(rates), jnp.asarray(counts)
    return counts * jnp.log(rates) - rates - gammaln(counts + 1.0)


# --------------------------------------------------------------------------------------
# the model: networks from probdyn.nn.latent_dynamics
# --------------------------------------------------------------------------------------


_DYNAMICS = ("langevin", "lds", "latent_sde")


def make_model(
    dynamics: str,
    num_inputs: int,
    num_neurons: int,
    rng_key: Array,
    *,
    latent_dim: int = 3,
    hidden_size: int = 64,
    dt: float = 0.1,
    substeps: int = 2,
    mean_counts: ArrayLike | None = None,
    **dynamics_kwargs,
) -> _nets.LatentDynamicsModel:
    """A :class:`LatentDynamicsModel` with the chosen dynamics.

    Parameters
    ----------
    dynamics : {"langevin", "lds", "latent_sde"}
        :class:`LangevinDynamics` with ``latent_dim`` positions (state 2 * latent_dim,
        readout from the positions), or a :class:`LinearDynamics` /
        :class:`NeuralSDEDynamics` baseline with the same state size 2 * latent_dim
        (readout from the whole state).
    num_inputs : int
        Held-in neurons the encoder reads.
    num_neurons : int
        All neurons the readout predicts.
    rng_key : Array
    latent_dim : int
    hidden_size : int
        GRU width (each direction).
    dt : float
        Model time per bin.
    substeps : int
        Solver steps per bin.
    mean_counts : ArrayLike, shape (num_neurons,), optional
        Initialises the readout bias at ``log(mean_counts)``.
    **dynamics_kwargs
        Passed to the dynamics' constructor.
    """
    if dynamics not in _DYNAMICS:
        raise ValueError(f"dynamics must be one of {_DYNAMICS}; got {dynamics!r}")
    for name, val in (
        ("num_inputs", num_inputs),
        ("num_neurons", num_neurons),
        ("latent_dim", latent_dim),
        ("hidden_size", hidden_size),
        ("substeps", substeps),
    ):
        if not isinstance(val, (int, np.integer)) or val < 1:
            raise ValueError(f"{name} must be a positive int; got {val!r}")
    if not dt > 0:
        raise ValueError(f"dt must be positive; got {dt!r}")
    keys = jax.random.split(rng_key, 6)
    if dynamics == "langevin":
        dyn = _nets.LangevinDynamics(latent_dim, keys[0], **dynamics_kwargs)
    elif dynamics == "lds":
        dyn = _nets.LinearDynamics(2 * latent_dim, keys[0], **dynamics_kwargs)
    else:
        dyn = _nets.NeuralSDEDynamics(2 * latent_dim, keys[0], **dynamics_kwargs)
    H = int(hidden_size)
    if mean_counts is None:
        bias = jnp.zeros(num_neurons)
    else:
        mean_counts = jnp.asarray(mean_counts, dtype=float)
        if mean_counts.shape != (num_neurons,):
            raise ValueError(
                f"mean_counts must have shape (num_neurons,) = ({num_neurons},); "
                f"got {mean_counts.shape}"
            )
        bias = jnp.log(jnp.maximum(mean_counts, 1e-3))
    noise_head = eqx.nn.Linear(2 * H, 2 * substeps * dyn.noise_dim, key=keys[3])
    # start the forcing posterior near the prior: small means, log-std near 0
    noise_head = eqx.tree_at(lambda m: m.weight, noise_head, 0.1 * noise_head.weight)
    return _nets.LatentDynamicsModel(
        gru_fwd=eqx.nn.GRUCell(num_inputs, H, key=keys[1]),
        gru_bwd=eqx.nn.GRUCell(num_inputs, H, key=keys[2]),
        init_head=eqx.nn.Linear(2 * H, 2 * dyn.state_dim, key=keys[4]),
        noise_head=noise_head,
        dynamics=dyn,
        readout_weight=0.3 * jax.random.normal(keys[5], (num_neurons, dyn.obs_dim)),
        readout_bias=bias,
        dt=float(dt),
        substeps=int(substeps),
    )


def _check_counts(spikes_in, spikes, num_obs_bins):
    spikes_in = np.asarray(spikes_in)
    if spikes_in.ndim != 3:
        raise ValueError(
            f"spikes_in must have shape (num_trials, num_obs_bins, num_inputs); "
            f"got {spikes_in.shape}"
        )
    if spikes is not None:
        spikes = np.asarray(spikes)
        if spikes.ndim != 3 or spikes.shape[0] != spikes_in.shape[0]:
            raise ValueError(
                f"spikes must have shape (num_trials, num_timesteps, num_neurons) with "
                f"num_trials={spikes_in.shape[0]}; got {spikes.shape}"
            )
        if np.any(spikes < 0) or not np.all(np.isfinite(spikes)):
            raise ValueError("spikes must be non-negative finite counts")
    if num_obs_bins is not None and spikes_in.shape[1] != num_obs_bins:
        raise ValueError(f"spikes_in has {spikes_in.shape[1]} bins; expected {num_obs_bins}")
    if np.any(spikes_in < 0) or not np.all(np.isfinite(spikes_in)):
        raise ValueError("spikes_in must be non-negative finite counts")


def elbo(
    model: _nets.LatentDynamicsModel,
    rng_key: Array,
    spikes_in: Array,
    spikes: Array,
    kl_weight: float = 1.0,
) -> Array:
    """Mean per-trial ELBO (one reparameterised sample each) of a batch of trials.

    Parameters
    ----------
    model : LatentDynamicsModel
    rng_key : Array
    spikes_in : Array, shape (B, T_obs, num_inputs)
        What the encoder reads (held-in neurons, observed bins).
    spikes : Array, shape (B, T, num_neurons)
        What the likelihood scores (all neurons, all bins; T >= T_obs).
    kl_weight : float
        Multiplies the KL term (1 gives the ELBO; < 1 during warm-up).

    Returns
    -------
    Array, scalar
        :math:`\\frac1B\\sum_b \\mathbb E_q[\\log p(y_b \\mid x)] - w\\,\\mathrm{KL}_b`.
    """
    T = spikes.shape[1]
    keys = jax.random.split(rng_key, spikes.shape[0])

    def one(key, y_in, y):
        states, kl = model.sample_posterior(key, y_in, T)
        lr = model.log_rates(states)
        ll = jnp.sum(y * lr - jnp.exp(lr) - gammaln(y + 1.0))
        return ll - kl_weight * kl

    return jnp.mean(jax.vmap(one)(keys, spikes_in, spikes.astype(model.readout_bias.dtype)))


def train(
    model: _nets.LatentDynamicsModel,
    rng_key: Array,
    spikes_in: ArrayLike,
    spikes: ArrayLike,
    *,
    num_steps: int = 1000,
    batch_size: int = 32,
    learning_rate: float = 5e-3,
    kl_warmup: float = 0.3,
    progress: bool = False,
    desc: str = "train",
) -> tuple[_nets.LatentDynamicsModel, np.ndarray]:
    """Maximise :func:`elbo` with Adam (global-norm clipping 1, cosine-decayed step size).

    This model keeps its own training loop (a reparameterised ELBO over an equinox module,
    outside NumPyro); it was called ``fit`` before and is renamed ``train`` so that it does
    not shadow :func:`probdyn.fit`. ``probdyn.models.langevin_flow.fit`` still works, with a
    ``DeprecationWarning``.

    Parameters
    ----------
    model : LatentDynamicsModel
    rng_key : Array
    spikes_in : ArrayLike, shape (num_trials, T_obs, num_inputs)
    spikes : ArrayLike, shape (num_trials, T, num_neurons)
    num_steps, batch_size : int
        Minibatches are drawn with replacement inside the jitted step.
    learning_rate : float
        Peak step size.
    kl_warmup : float
        Fraction of the steps over which the KL weight rises linearly from 0.1 to 1.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    model : LatentDynamicsModel
    losses : ndarray, shape (num_steps,)
        Negative ELBO per bin and neuron (with the warm-up KL weight).
    """
    _check_counts(spikes_in, spikes, None)
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int; got {num_steps!r}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    dtype = model.readout_bias.dtype
    y_in = jnp.asarray(spikes_in, dtype)
    y = jnp.asarray(spikes, dtype)
    n_trials, T, N = y.shape
    warmup_steps = min(50, num_steps // 5)
    sched = optax.warmup_cosine_decay_schedule(
        0.1 * learning_rate,
        learning_rate,
        warmup_steps,
        max(num_steps, warmup_steps + 1),
        0.05 * learning_rate,
    )
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(sched))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = opt.init(params)
    warm = max(1, int(kl_warmup * num_steps))

    @jax.jit
    def train_step(params, opt_state, key, i):
        kb, ke = jax.random.split(key)
        idx = jax.random.randint(kb, (min(batch_size, n_trials),), 0, n_trials)
        w = jnp.minimum(1.0, 0.1 + 0.9 * i / warm)

        def loss_fn(p):
            m = eqx.combine(p, static)
            return -elbo(m, ke, y_in[idx], y[idx], w) / (T * N)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    it = range(num_steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=desc)
    losses = np.empty(num_steps)
    keys = jax.random.split(rng_key, num_steps)
    for i in it:
        params, opt_state, loss = train_step(params, opt_state, keys[i], i)
        losses[i] = float(loss)
    return eqx.combine(params, static), losses


class Prediction(NamedTuple):
    """Posterior predictions for a set of trials.

    Attributes
    ----------
    rates : ndarray, shape (num_trials, num_timesteps, num_neurons)
        Posterior-mean expected counts per bin (averaged over draws).
    rate_samples : ndarray, shape (num_samples, num_trials, num_timesteps, num_neurons)
    state_samples : ndarray, shape (num_samples, num_trials, num_timesteps, state_dim)
    """

    rates: np.ndarray
    rate_samples: np.ndarray
    state_samples: np.ndarray


def predict(
    model: _nets.LatentDynamicsModel,
    rng_key: Array,
    spikes_in: ArrayLike,
    num_timesteps: int,
    num_samples: int = 20,
) -> Prediction:
    """Infer latents from held-in counts and forecast ``num_timesteps`` bins.

    The encoder reads ``spikes_in`` (the first ``T_obs`` bins); the posterior paths run on
    with prior forcing noise after them, so bins ``T_obs..num_timesteps-1`` are forecasts.

    Parameters
    ----------
    model : LatentDynamicsModel
    rng_key : Array
    spikes_in : ArrayLike, shape (num_trials, T_obs, num_inputs)
    num_timesteps : int
        At least ``T_obs``.
    num_samples : int
        Posterior paths per trial.

    Returns
    -------
    Prediction
    """
    _check_counts(spikes_in, None, None)
    spikes_in = jnp.asarray(spikes_in, model.readout_bias.dtype)
    if spikes_in.shape[2] != model.gru_fwd.input_size:
        raise ValueError(
            f"spikes_in has {spikes_in.shape[2]} neurons; the encoder reads "
            f"{model.gru_fwd.input_size}"
        )
    if not isinstance(num_timesteps, (int, np.integer)) or num_timesteps < spikes_in.shape[1]:
        raise ValueError(
            f"num_timesteps must be an int >= T_obs = {spikes_in.shape[1]}; got {num_timesteps!r}"
        )
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int; got {num_samples!r}")
    states = _predict_states(model, rng_key, spikes_in, int(num_timesteps), int(num_samples))
    rate_samples = np.asarray(jnp.exp(model.log_rates(states)))
    return Prediction(rate_samples.mean(0), rate_samples, np.asarray(states))


@eqx.filter_jit
def _predict_states(model, rng_key, spikes_in, num_timesteps, num_samples):
    keys = jax.random.split(rng_key, (num_samples, spikes_in.shape[0]))

    def one(key, y_in):
        return model.sample_posterior(key, y_in, num_timesteps)[0]

    return jax.vmap(jax.vmap(one, in_axes=(0, 0)), in_axes=(0, None))(keys, spikes_in)


__getattr__ = moved(
    __name__,
    {
        "fit": f"{__name__}:train",
        "LangevinDynamics": "probdyn.nn.latent_dynamics",
        "LinearDynamics": "probdyn.nn.latent_dynamics",
        "NeuralSDEDynamics": "probdyn.nn.latent_dynamics",
        "LatentDynamicsModel": "probdyn.nn.latent_dynamics",
    },
)
