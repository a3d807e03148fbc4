r"""Kick neurons: units whose activity announces a symbol switch, and what happens to the
switching rate when a group of units is silenced or amplified, or the input noise scaled.

Torre et al. (2025) find that a few "kick neurons" of an HMM-emulating RNN fire just before
the network leaves a cluster, and that silencing them (:math:`\mu = 0`) traps the dynamics
while amplifying them (:math:`\mu = 2`) makes switches more frequent. Here a unit's
predictive power is the area under the ROC curve (Mann-Whitney) separating its activity in
the ``window`` steps before each switch from its activity at all other times; ablation
scales the group's activity after every step, :math:`h_{t+1}[G] \leftarrow \mu\,
F(h_t, x_t)[G]`, and noise sensitivity scales the input, :math:`x_t \leftarrow \gamma x_t`.
(The reference code instead scales the group's *recurrent* drive,
:math:`\mathrm{ReLU}(\mu (W_{hh} h)_G + (W_{ih} x)_G)`, which needs the network's weights;
scaling the activity works for any ``step_fn`` and at :math:`\mu = 0` silences the group
completely, noise drive included.) All rates at different :math:`\mu` (or :math:`\gamma`)
use the same random numbers, so differences are not sampling noise between runs, and
:math:`\mu = 1` reproduces the unmodified network exactly.

References
----------
Torre, E., Viscione, M., Pompe, L., Grewe, B. F. & Mante, V. (2025). Mechanistic
interpretability of RNNs emulating hidden Markov models. arXiv:2510.25674.

Mann, H. B. & Whitney, D. R. (1947). On a test of whether one of two random variables is
stochastically larger than the other. Ann. Math. Statist. 18(1), 50-60.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from scipy.stats import rankdata

from probdyn.analysis._checks import (
    check_array,
    check_callable,
    check_finite,
    check_int,
    check_positive,
)
from probdyn.analysis.rollout import _rollout

__all__ = [
    "KickScores",
    "RateSweep",
    "ablation_sweep",
    "kick_neuron_scores",
    "noise_sensitivity",
    "scale_units",
    "switch_times",
    "switching_rate",
    "trajectory_spread",
]


class KickScores(NamedTuple):
    """Per-unit evidence that activity before a switch differs from baseline.

    Attributes
    ----------
    auc : numpy.ndarray, shape (hidden_size,)
        Probability that a pre-switch activity exceeds a baseline one (ties count half);
        0.5 means no information, 1 a unit that is always higher before switches.
    effect : numpy.ndarray, shape (hidden_size,)
        ``(pre_mean - baseline_mean) / baseline_std`` (NaN where the baseline is constant).
    pre_mean, baseline_mean : numpy.ndarray, shape (hidden_size,)
    num_pre, num_baseline : int
        Samples in each group.
    ranking : numpy.ndarray of int, shape (hidden_size,)
        Units by decreasing ``auc`` (ties by ``effect``).
    """

    auc: np.ndarray
    effect: np.ndarray
    pre_mean: np.ndarray
    baseline_mean: np.ndarray
    num_pre: int
    num_baseline: int
    ranking: np.ndarray


class RateSweep(NamedTuple):
    """Switching rate (argmax-symbol changes per step) at each value of a scale factor.

    Attributes
    ----------
    values : numpy.ndarray, shape (num_values,)
        The factors (``mu`` for :func:`ablation_sweep`, ``gamma`` for
        :func:`noise_sensitivity`).
    rate : numpy.ndarray, shape (num_values,)
        Mean over trajectories.
    rate_se : numpy.ndarray, shape (num_values,)
        Standard error over the independent trajectories.
    per_trajectory : numpy.ndarray, shape (num_values, num_trajectories)
    mean_norm : numpy.ndarray, shape (num_values,), optional
        Mean Euclidean norm of the states. For a positively homogeneous map (a bias-free
        ReLU network with a linear readout) the argmax symbol depends only on the state's
        direction, so a network collapsing to ``h = 0`` can keep "switching" at vanishing
        norm; a norm near 0 says the switches are not emissions of an active network.
    """

    values: np.ndarray
    rate: np.ndarray
    rate_se: np.ndarray
    per_trajectory: np.ndarray
    mean_norm: np.ndarray | None = None


def switch_times(symbol_seq: ArrayLike) -> np.ndarray:
    """Times ``t >= 1`` at which the symbol differs from the one at ``t - 1``.

    Parameters
    ----------
    symbol_seq : array_like of int, shape (num_timesteps,)

    Returns
    -------
    numpy.ndarray of int, shape (num_switches,)
    """
    s = check_array("symbol_seq", symbol_seq, 1)
    return np.flatnonzero(s[1:] != s[:-1]) + 1


def kick_neuron_scores(
    states: ArrayLike,
    symbol_seq: ArrayLike,
    window: int = 5,
    to_symbol: int | None = None,
) -> KickScores:
    """Score each unit by how well its activity before a switch separates from baseline.

    Pre-switch samples are the states at times ``s - window .. s - 1`` for every switch
    time ``s`` (into ``to_symbol`` only, if given); baseline samples are all other times
    except the ``window`` steps before any switch. Trajectories in a batch are treated
    separately (windows never cross them) and then pooled.

    Parameters
    ----------
    states : array_like, shape (num_timesteps, hidden_size) or
        (num_trajectories, num_timesteps, hidden_size)
    symbol_seq : array_like of int, shape (num_timesteps,) or (num_trajectories,
        num_timesteps)
        The symbol at each state (e.g. :func:`~probdyn.analysis.symbols`).
    window : int
        Steps before a switch counted as pre-switch.
    to_symbol : int, optional
        Only switches into this symbol.

    Returns
    -------
    KickScores
    """
    h = check_array("states", states, (2, 3))
    s = check_array("symbol_seq", symbol_seq, (1, 2))
    window = check_int("window", window)
    if h.ndim == 2:
        h, s = h[None], s[None] if s.ndim == 1 else s
    if s.shape != h.shape[:2]:
        raise ValueError(
            f"symbol_seq must have shape {h.shape[:2]} (the states' leading axes), got {s.shape}"
        )
    check_finite("states", h)
    pre = np.zeros(s.shape, bool)
    any_pre = np.zeros(s.shape, bool)
    for b in range(s.shape[0]):
        for t in switch_times(s[b]):
            lo = max(0, t - window)
            any_pre[b, lo:t] = True
            if to_symbol is None or s[b, t] == to_symbol:
                pre[b, lo:t] = True
    base = ~any_pre
    x_pre, x_base = h[pre].astype(float), h[base].astype(float)
    n1, n0 = len(x_pre), len(x_base)
    if n1 == 0 or n0 == 0:
        raise ValueError(
            f"need samples both before switches and at baseline, got {n1} pre-switch and "
            f"{n0} baseline (check symbol_seq, window={window}, to_symbol={to_symbol})"
        )
    ranks = rankdata(np.concatenate([x_pre, x_base]), axis=0)
    auc = (ranks[:n1].sum(axis=0) - n1 * (n1 + 1) / 2) / (n1 * n0)
    pre_mean, base_mean = x_pre.mean(0), x_base.mean(0)
    sd = x_base.std(0, ddof=1) if n0 > 1 else np.zeros_like(base_mean)
    with np.errstate(invalid="ignore", divide="ignore"):
        effect = np.where(sd > 0, (pre_mean - base_mean) / sd, np.nan)
    ranking = np.lexsort((-np.nan_to_num(effect, nan=-np.inf), -auc))
    return KickScores(auc, effect, pre_mean, base_mean, n1, n0, ranking)


def scale_units(
    step_fn: Callable[[jax.Array, jax.Array], jax.Array],
    units: Sequence[int] | ArrayLike,
    mu: float | jax.Array,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """A step function whose listed units' activity is multiplied by ``mu`` after each step.

    Parameters
    ----------
    step_fn : callable
        ``step_fn(h, x) -> h_next``.
    units : sequence of int
        Indices of the group (empty: no change).
    mu : float
        0 silences the group (ablation), 1 leaves the network unchanged, 2 amplifies it.

    Returns
    -------
    callable
        ``(h, x) -> h_next`` with ``h_next[units] *= mu``.
    """
    check_callable("step_fn", step_fn)
    idx = np.asarray(units)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise TypeError(f"units must be a 1-d sequence of int indices, got {units!r}")
    if not isinstance(mu, jax.Array):
        mu = check_positive("mu", mu, allow_zero=True)
    idx = jnp.asarray(idx, dtype=int)

    def scaled(h, x):
        out = step_fn(h, x)
        return out.at[idx].multiply(jnp.asarray(mu, out.dtype))

    return scaled


def _rates(rng_key, step_fn, readout_fn, h0, noise_dim, num_timesteps, burn_in, scale):
    keys = jax.random.split(rng_key, h0.shape[0])
    total = num_timesteps + burn_in
    traj = jax.vmap(lambda k, h: _rollout(k, step_fn, h, total, noise_dim, scale))(keys, h0)
    kept = traj[:, burn_in:]
    sym = jnp.argmax(jax.vmap(jax.vmap(readout_fn))(kept), axis=-1)
    rate = jnp.mean((sym[:, 1:] != sym[:, :-1]).astype(h0.dtype), axis=1)
    return rate, jnp.mean(jnp.linalg.norm(kept, axis=-1))


def _check_sweep_args(step_fn, readout_fn, initial_states, noise_dim, num_timesteps, burn_in):
    check_callable("step_fn", step_fn)
    check_callable("readout_fn", readout_fn)
    noise_dim = check_int("noise_dim", noise_dim)
    num_timesteps = check_int("num_timesteps", num_timesteps, minimum=2)
    burn_in = check_int("burn_in", burn_in, minimum=0)
    h0 = check_array("initial_states", initial_states, 2)
    check_finite("initial_states", h0)
    return noise_dim, num_timesteps, burn_in, jnp.asarray(h0, jnp.result_type(float))


def _summarise(values, results) -> RateSweep:
    per_traj = np.asarray([np.asarray(r[0]) for r in results], dtype=float)
    norms = np.asarray([float(r[1]) for r in results])
    n = per_traj.shape[1]
    se = per_traj.std(axis=1, ddof=1) / np.sqrt(n) if n > 1 else np.full(len(values), np.nan)
    return RateSweep(np.asarray(values, float), per_traj.mean(axis=1), se, per_traj, norms)


def switching_rate(
    rng_key: jax.Array,
    step_fn: Callable[[jax.Array, jax.Array], jax.Array],
    readout_fn: Callable[[jax.Array], jax.Array],
    initial_states: ArrayLike,
    noise_dim: int,
    num_timesteps: int = 1000,
    burn_in: int = 50,
    noise_scale: float = 1.0,
) -> RateSweep:
    """Argmax-symbol changes per step along noise-driven trajectories.

    Parameters
    ----------
    rng_key : jax.Array
    step_fn, readout_fn : callable
        ``step_fn(h, x) -> h_next``, ``readout_fn(h) -> logits``.
    initial_states : array_like, shape (num_trajectories, hidden_size)
    noise_dim : int
    num_timesteps : int
        Steps counted per trajectory (after the burn-in).
    burn_in : int
        Steps dropped first.
    noise_scale : float
        Standard deviation of the input.

    Returns
    -------
    RateSweep
        With a single value, ``noise_scale``.
    """
    noise_dim, num_timesteps, burn_in, h0 = _check_sweep_args(
        step_fn, readout_fn, initial_states, noise_dim, num_timesteps, burn_in
    )
    noise_scale = check_positive("noise_scale", noise_scale, allow_zero=True)
    r = jax.jit(_rates, static_argnums=(1, 2, 4, 5, 6))(
        rng_key, step_fn, readout_fn, h0, noise_dim, num_timesteps, burn_in, noise_scale
    )
    return _summarise([noise_scale], [r])


def ablation_sweep(
    rng_key: jax.Array,
    step_fn: Callable[[jax.Array, jax.Array], jax.Array],
    readout_fn: Callable[[jax.Array], jax.Array],
    initial_states: ArrayLike,
    noise_dim: int,
    units: Sequence[int] | ArrayLike,
    mus: ArrayLike = (0.0, 1.0, 2.0),
    num_timesteps: int = 1000,
    burn_in: int = 50,
    noise_scale: float = 1.0,
) -> RateSweep:
    """Switching rate when a group of units is scaled by each ``mu`` (silenced at 0).

    Parameters
    ----------
    rng_key : jax.Array
        The same draws are used for every ``mu``.
    step_fn, readout_fn : callable
    initial_states : array_like, shape (num_trajectories, hidden_size)
    noise_dim : int
    units : sequence of int
        The group (e.g. the top of :attr:`KickScores.ranking`, or a random control group).
    mus : array_like, shape (num_values,)
        Scale factors, >= 0.
    num_timesteps, burn_in, noise_scale
        As in :func:`switching_rate`.

    Returns
    -------
    RateSweep
    """
    noise_dim, num_timesteps, burn_in, h0 = _check_sweep_args(
        step_fn, readout_fn, initial_states, noise_dim, num_timesteps, burn_in
    )
    mus = check_array("mus", mus, 1).astype(float)
    if np.any(~np.isfinite(mus)) or np.any(mus < 0):
        raise ValueError(f"mus must be finite and >= 0, got {mus}")
    noise_scale = check_positive("noise_scale", noise_scale, allow_zero=True)
    scale_units(step_fn, units, 1.0)  # validates units eagerly

    @jax.jit
    def run(mu):
        return _rates(
            rng_key,
            scale_units(step_fn, units, mu),
            readout_fn,
            h0,
            noise_dim,
            num_timesteps,
            burn_in,
            noise_scale,
        )

    dtype = jnp.result_type(float)
    return _summarise(mus, [run(jnp.asarray(m, dtype)) for m in mus])


def noise_sensitivity(
    rng_key: jax.Array,
    step_fn: Callable[[jax.Array, jax.Array], jax.Array],
    readout_fn: Callable[[jax.Array], jax.Array],
    initial_states: ArrayLike,
    noise_dim: int,
    gammas: ArrayLike = (0.0, 0.5, 1.0),
    num_timesteps: int = 1000,
    burn_in: int = 50,
) -> RateSweep:
    r"""Switching rate when the input noise is scaled by each ``gamma``
    (:math:`x_t \sim N(0, \gamma^2 I)`; 0 gives the input-free map).

    Parameters
    ----------
    rng_key : jax.Array
        The same standard-normal draws are scaled for every ``gamma``.
    step_fn, readout_fn : callable
    initial_states : array_like, shape (num_trajectories, hidden_size)
    noise_dim : int
    gammas : array_like, shape (num_values,)
        Noise scales, >= 0.
    num_timesteps, burn_in
        As in :func:`switching_rate`.

    Returns
    -------
    RateSweep
    """
    noise_dim, num_timesteps, burn_in, h0 = _check_sweep_args(
        step_fn, readout_fn, initial_states, noise_dim, num_timesteps, burn_in
    )
    gammas = check_array("gammas", gammas, 1).astype(float)
    if np.any(~np.isfinite(gammas)) or np.any(gammas < 0):
        raise ValueError(f"gammas must be finite and >= 0, got {gammas}")

    @jax.jit
    def run(gamma):
        return _rates(rng_key, step_fn, readout_fn, h0, noise_dim, num_timesteps, burn_in, gamma)

    dtype = jnp.result_type(float)
    return _summarise(gammas, [run(jnp.asarray(g, dtype)) for g in gammas])


def trajectory_spread(
    rng_key: jax.Array,
    step_fn: Callable[[jax.Array, jax.Array], jax.Array],
    initial_state: ArrayLike,
    noise_dim: int,
    gammas: ArrayLike = (0.0, 0.5, 1.0),
    num_trajectories: int = 100,
    num_timesteps: int = 6,
) -> jax.Array:
    r"""How far trajectories from one state fan out when part of their input is private.

    As in Torre et al. (2025), every trajectory gets the input
    :math:`x^{(j)}_t = (1 - \gamma)\, \xi_t + \gamma\, \eta^{(j)}_t` with a shared
    draw :math:`\xi_t` and a private one :math:`\eta^{(j)}_t`, all :math:`N(0, I)`; the
    spread at each time is the trace of the covariance across trajectories. From a
    kick-zone state the spread grows fast (noise decides the next symbol), from a cluster
    state it stays small.

    Parameters
    ----------
    rng_key : jax.Array
    step_fn : callable
        ``step_fn(h, x) -> h_next``.
    initial_state : array_like, shape (hidden_size,)
    noise_dim : int
    gammas : array_like, shape (num_values,)
        Private fractions in [0, 1] (0: all trajectories identical).
    num_trajectories, num_timesteps : int

    Returns
    -------
    jax.Array, shape (num_values, num_timesteps + 1)
        Trace of the across-trajectory covariance (denominator ``num_trajectories - 1``) at
        times 0 .. ``num_timesteps`` (0 at time 0).
    """
    check_callable("step_fn", step_fn)
    noise_dim = check_int("noise_dim", noise_dim)
    num_trajectories = check_int("num_trajectories", num_trajectories, minimum=2)
    num_timesteps = check_int("num_timesteps", num_timesteps)
    h0 = check_array("initial_state", initial_state, 1)
    check_finite("initial_state", h0)
    gammas = check_array("gammas", gammas, 1).astype(float)
    if np.any(~(gammas >= 0) | ~(gammas <= 1)):
        raise ValueError(f"gammas must lie in [0, 1], got {gammas}")
    dtype = jnp.result_type(float)
    k_shared, k_private = jax.random.split(rng_key)
    shared = jax.random.normal(k_shared, (num_timesteps, noise_dim), dtype)
    private = jax.random.normal(k_private, (num_trajectories, num_timesteps, noise_dim), dtype)

    @jax.jit
    def spread(gamma):
        def one(eta):
            def body(h, inp):
                h = step_fn(h, (1 - gamma) * inp[0] + gamma * inp[1])
                return h, h

            _, hs = jax.lax.scan(body, jnp.asarray(h0, dtype), (shared, eta))
            return hs

        hs = jax.vmap(one)(private)  # (num_trajectories, num_timesteps, hidden_size)
        tr = jnp.sum(jnp.var(hs, axis=0, ddof=1), axis=-1)
        return jnp.concatenate([jnp.zeros(1, dtype), tr])

    return jnp.stack([spread(jnp.asarray(g, dtype)) for g in gammas])
