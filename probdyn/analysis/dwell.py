r"""Dwell-time regions: how long the most probable symbol survives noise from each state.

From each state :math:`h`, Torre et al. (2025) run noisy rollouts until the argmax of the
readout differs from the one at :math:`h` and average the number of steps (the residency
or dwell time, capped at ``max_steps``). States then fall into *transitions* (dwell < 2:
the symbol flips almost at once), *kick-zones* (2 to 8 steps: the noise decides when
the network is kicked out) and *clusters* (> 8 steps with the top symbol's probability
above 0.8: the network emits one symbol steadily).

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

from probdyn.analysis._checks import (
    check_array,
    check_callable,
    check_finite,
    check_int,
    check_positive,
)

__all__ = [
    "DWELL_LABELS",
    "DwellRegions",
    "classify_dwell",
    "dwell_regions",
    "dwell_times",
    "region_means",
]

DWELL_LABELS = ("transition", "kick_zone", "cluster", "unclassified")
"""Names of the codes returned by :func:`classify_dwell` (0, 1, 2, 3)."""


class DwellRegions(NamedTuple):
    """Result of :func:`dwell_regions`.

    Attributes
    ----------
    dwell_times : numpy.ndarray, shape (num_states,)
        Mean steps until the argmax symbol changes (capped at ``max_steps``).
    censored : numpy.ndarray, shape (num_states,)
        Fraction of rollouts that reached ``max_steps`` without a change.
    symbol : numpy.ndarray of int, shape (num_states,)
        Argmax symbol at each state.
    max_prob : numpy.ndarray, shape (num_states,)
        Probability of that symbol (softmax of the logits).
    labels : numpy.ndarray of int, shape (num_states,)
        Index into :data:`DWELL_LABELS`.
    """

    dwell_times: np.ndarray
    censored: np.ndarray
    symbol: np.ndarray
    max_prob: np.ndarray
    labels: np.ndarray


def _first_change(key, step_fn, readout_fn, h0, max_steps, noise_dim, noise_scale):
    """Steps until argmax(readout) differs from its value at h0 (max_steps if never)."""
    s0 = jnp.argmax(readout_fn(h0))
    keys = jax.random.split(key, max_steps)

    def body(carry, inp):
        h, dwell, found = carry
        k, t = inp
        x = noise_scale * jax.random.normal(k, (noise_dim,), dtype=h.dtype)
        h = step_fn(h, x)
        changed = jnp.argmax(readout_fn(h)) != s0
        dwell = jnp.where(changed & ~found, t, dwell)
        return (h, dwell, found | changed), None

    init = (h0, jnp.asarray(max_steps), jnp.asarray(False))
    (_, dwell, found), _ = jax.lax.scan(body, init, (keys, jnp.arange(1, max_steps + 1)))
    return dwell, ~found


def dwell_times(
    rng_key: jax.Array,
    step_fn: Callable[[jax.Array, jax.Array], jax.Array],
    readout_fn: Callable[[jax.Array], jax.Array],
    states: ArrayLike,
    noise_dim: int,
    num_samples: int = 20,
    max_steps: int = 50,
    noise_scale: float = 1.0,
) -> tuple[jax.Array, jax.Array]:
    r"""Mean number of noisy steps until the most probable symbol changes, per state.

    Each of ``num_samples`` rollouts from a state draws fresh input
    :math:`x_t \sim N(0, s^2 I)`; its dwell time is the first :math:`t \ge 1` at which
    ``argmax readout_fn(h_t)`` differs from ``argmax readout_fn(h_0)``, or ``max_steps``.

    Parameters
    ----------
    rng_key : jax.Array
    step_fn : callable
        ``step_fn(h, x) -> h_next``.
    readout_fn : callable
        ``readout_fn(h) -> logits`` of shape (num_symbols,).
    states : array_like, shape (num_states, hidden_size)
        Starting states (e.g. a noise-driven trajectory).
    noise_dim : int
    num_samples : int
        Rollouts per state.
    max_steps : int
        Cap on each rollout.
    noise_scale : float
        Standard deviation :math:`s` of the input.

    Returns
    -------
    dwell : jax.Array, shape (num_states,)
        Mean dwell time over the rollouts.
    censored : jax.Array, shape (num_states,)
        Fraction of rollouts without a change within ``max_steps``.
    """
    check_callable("step_fn", step_fn)
    check_callable("readout_fn", readout_fn)
    noise_dim = check_int("noise_dim", noise_dim)
    num_samples = check_int("num_samples", num_samples)
    max_steps = check_int("max_steps", max_steps)
    noise_scale = check_positive("noise_scale", noise_scale, allow_zero=True)
    h = check_array("states", states, 2)
    check_finite("states", h)
    dtype = jnp.result_type(float)

    @jax.jit
    def run(key, hs):
        keys = jax.random.split(key, (hs.shape[0], num_samples))

        def per_state(ks, h0):
            return jax.vmap(
                lambda k: _first_change(
                    k, step_fn, readout_fn, h0, max_steps, noise_dim, noise_scale
                )
            )(ks)

        dwell, cens = jax.vmap(per_state)(keys, hs)
        return jnp.mean(dwell.astype(dtype), axis=1), jnp.mean(cens.astype(dtype), axis=1)

    return run(rng_key, jnp.asarray(h, dtype))


def classify_dwell(
    dwell: ArrayLike,
    max_prob: ArrayLike,
    transition_below: float = 2.0,
    kick_max: float = 8.0,
    cluster_prob: float = 0.8,
) -> np.ndarray:
    """Label states as transitions, kick-zones, clusters (or unclassified) by dwell time.

    Parameters
    ----------
    dwell : array_like, shape (num_states,)
        Mean dwell times (:func:`dwell_times`).
    max_prob : array_like, shape (num_states,)
        Probability of the most probable symbol at each state.
    transition_below : float
        Dwell below this is a transition (2 in the paper).
    kick_max : float
        Dwell in ``[transition_below, kick_max]`` is a kick-zone (8 in the paper).
    cluster_prob : float
        Dwell above ``kick_max`` with ``max_prob > cluster_prob`` is a cluster (0.8).

    Returns
    -------
    numpy.ndarray of int, shape (num_states,)
        0 transition, 1 kick-zone, 2 cluster, 3 unclassified (long dwell, uncertain
        readout); names in :data:`DWELL_LABELS`.
    """
    d = check_array("dwell", dwell, 1).astype(float)
    p = check_array("max_prob", max_prob, 1).astype(float)
    if d.shape != p.shape:
        raise ValueError(f"dwell and max_prob must have the same shape, got {d.shape}, {p.shape}")
    if not transition_below <= kick_max:
        raise ValueError(f"transition_below must be <= kick_max={kick_max}, got {transition_below}")
    if not 0.0 <= cluster_prob < 1.0:
        raise ValueError(f"cluster_prob must be in [0, 1), got {cluster_prob}")
    labels = np.full(d.shape, 3, dtype=int)
    labels[d < transition_below] = 0
    labels[(d >= transition_below) & (d <= kick_max)] = 1
    labels[(d > kick_max) & (p > cluster_prob)] = 2
    return labels


def dwell_regions(
    rng_key: jax.Array,
    step_fn: Callable[[jax.Array, jax.Array], jax.Array],
    readout_fn: Callable[[jax.Array], jax.Array],
    states: ArrayLike,
    noise_dim: int,
    num_samples: int = 20,
    max_steps: int = 50,
    noise_scale: float = 1.0,
    transition_below: float = 2.0,
    kick_max: float = 8.0,
    cluster_prob: float = 0.8,
) -> DwellRegions:
    """Dwell times, readout and region labels of many states (the paper's residency map).

    Parameters are those of :func:`dwell_times` and :func:`classify_dwell`.

    Returns
    -------
    DwellRegions
    """
    dwell, cens = dwell_times(
        rng_key, step_fn, readout_fn, states, noise_dim, num_samples, max_steps, noise_scale
    )
    logits = jax.vmap(readout_fn)(jnp.asarray(states, jnp.result_type(float)))
    probs = np.asarray(jax.nn.softmax(logits, axis=-1))
    dwell = np.asarray(dwell, dtype=float)
    max_prob = probs.max(axis=-1)
    return DwellRegions(
        dwell_times=dwell,
        censored=np.asarray(cens, dtype=float),
        symbol=probs.argmax(axis=-1),
        max_prob=max_prob,
        labels=classify_dwell(dwell, max_prob, transition_below, kick_max, cluster_prob),
    )


def region_means(values: ArrayLike, labels: ArrayLike, num_labels: int = 4) -> np.ndarray:
    """Mean of a per-state quantity within each region (NaN for empty regions).

    E.g. the paper's count of unstable Jacobian eigenvalues per region:
    ``region_means(classify_stability(jacobians(step_fn, states, d)).num_unstable, labels)``.

    Parameters
    ----------
    values : array_like, shape (num_states,)
    labels : array_like of int, shape (num_states,)
        Codes in ``0 .. num_labels - 1``.
    num_labels : int

    Returns
    -------
    numpy.ndarray, shape (num_labels,)
    """
    v = check_array("values", values, 1).astype(float)
    lab = check_array("labels", labels, 1)
    if not np.issubdtype(lab.dtype, np.integer):
        raise TypeError(f"labels must be integers, got dtype {lab.dtype}")
    if v.shape != lab.shape:
        raise ValueError(f"values and labels must have the same shape, got {v.shape}, {lab.shape}")
    if lab.size and (lab.min() < 0 or lab.max() >= num_labels):
        raise ValueError(f"labels must be in [0, {num_labels}), got range {lab.min()}..{lab.max()}")
    counts = np.bincount(lab, minlength=num_labels)
    sums = np.bincount(lab, weights=v, minlength=num_labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts
