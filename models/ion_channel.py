"""Three-state ion channel C <-> O <-> I, its current recorded with noise at irregular times.

A voltage-clamped channel switches between closed (C), open (O) and inactivated (I)
conformations as a continuous-time Markov chain with generator

.. math::

    Q = \\begin{pmatrix} -k_{CO} & k_{CO} & 0 \\\\
                         k_{OC} & -(k_{OC} + k_{OI}) & k_{OI} \\\\
                         0 & k_{IO} & -k_{IO} \\end{pmatrix}

(rates per ms). Only the open state conducts: the recorded current at time :math:`t_i` is
:math:`y_i \\sim \\mathcal N(i_\\mathrm{open}\\,[z(t_i) = O], \\sigma^2)`. The channel is at
equilibrium when the recording starts (initial distribution = stationary distribution of
Q). C and I carry the same current; they are told apart only by their dwell times and by
where the chain can go next, which the exact likelihood of
:class:`probdyn.processes.ObservedCTMC` uses in full.

Parameters sampled: ``log_rates`` (4,) in the order :data:`RATE_NAMES`, ``i_open``,
``sigma``; deterministic: ``rates``, ``stationary`` (3,), ``mean_dwell`` (3,) in ms.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from probdyn.kernels.ctmc import stationary_distribution
from probdyn.processes.ctmc import ObservedCTMC

__all__ = [
    "RATE_NAMES",
    "STATES",
    "TRUE_PARAMS",
    "generator",
    "model",
]

STATES = ("closed", "open", "inactivated")
RATE_NAMES = ("k_CO", "k_OC", "k_OI", "k_IO")
#: Ground truth used by the case study (rates per ms, current in pA).
TRUE_PARAMS = {
    "rates": np.array([1.0, 3.0, 0.5, 0.2]),
    "i_open": 1.0,
    "sigma": 0.3,
}
_CONDUCTANCE = np.array([0.0, 1.0, 0.0])


def generator(rates):
    """Generator of the C <-> O <-> I scheme.

    Parameters
    ----------
    rates : ArrayLike, shape (..., 4)
        ``(k_CO, k_OC, k_OI, k_IO)``.

    Returns
    -------
    Array, shape (..., 3, 3)
    """
    k = jnp.asarray(rates)
    if k.shape[-1:] != (4,):
        raise ValueError(f"rates must have a trailing axis of 4; got shape {k.shape}")
    k_co, k_oc, k_oi, k_io = (k[..., j] for j in range(4))
    z = jnp.zeros_like(k_co)
    return jnp.stack(
        [
            jnp.stack([-k_co, k_co, z], -1),
            jnp.stack([k_oc, -(k_oc + k_oi), k_oi], -1),
            jnp.stack([z, k_io, -k_io], -1),
        ],
        -2,
    )


def emission(i_open, sigma):
    """Current given the state: Normal with a trailing state axis of 3."""
    return dist.Normal(i_open * jnp.asarray(_CONDUCTANCE), sigma)


def model(times, current=None):
    """NumPyro model of the recorded current.

    Parameters
    ----------
    times : ArrayLike, shape (T,)
        Strictly increasing recording times (ms).
    current : ArrayLike, shape (T,), optional
        Recorded current (pA); None to simulate.

    Returns
    -------
    Array, shape (T,)
        The current.
    """
    log_rates = numpyro.sample(
        "log_rates", dist.Normal(jnp.zeros(4), 1.5 * jnp.ones(4)).to_event(1)
    )
    i_open = numpyro.sample("i_open", dist.LogNormal(0.0, 0.5))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    rates = numpyro.deterministic("rates", jnp.exp(log_rates))
    Q = generator(rates)
    pi = numpyro.deterministic("stationary", stationary_distribution(Q))
    numpyro.deterministic("mean_dwell", -1.0 / jnp.diagonal(Q))
    likelihood = ObservedCTMC(Q, pi, times, emission(i_open, sigma))
    return numpyro.sample("current", likelihood, obs=current)
