"""Discrete flashing ratchet: a 6-state Brownian motor observed sparsely and noisily.

A particle hops on a ring of three sites ``x = 0, 1, 2`` in a potential that is switched on
and off at random (Roldan & Parrondo 2010). The state is ``(x, eta)`` with ``eta = 0``
(potential off) or 1 (on); index ``k = 3 * eta + x``. With the potential on, the site
energies are :math:`U(x) = x V / 2` (a sawtooth: from site 2 the particle drops back to
site 0 of the next period), with it off they are flat. Hops to either neighbour on the
ring have rate :math:`\\exp(-(U(y) - U(x)) / 2)` (energies in units of kT), and the
potential flips at rate :math:`r` from any site. Switching breaks detailed balance, so the
chain has a stationary probability current around the ring (the motor moves) and produces
entropy at a rate

.. math::

    \\dot S = \\sum_{i<j} (\\pi_i q_{ij} - \\pi_j q_{ji})
              \\log \\frac{\\pi_i q_{ij}}{\\pi_j q_{ji}} \\ge 0.

Only the particle's site is observed, at sparse irregular times and misread with
probability ``error`` (uniformly as one of the other two sites); the potential is hidden.
Parameters: ``V`` (potential height, kT) and ``r`` (flashing rate), both positive.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from probdyn.kernels.ctmc import stationary_distribution
from probdyn.processes.ctmc import ObservedCTMC

__all__ = [
    "TRUE_PARAMS",
    "entropy_production",
    "generator",
    "model",
    "observation_matrix",
    "ring_current",
]

#: Ground truth used by the case study.
TRUE_PARAMS = {"V": 2.0, "r": 1.0}
ERROR = 0.1


def generator(V, r):
    """Generator of the flashing ratchet.

    Parameters
    ----------
    V : ArrayLike, shape ()
        Potential height (kT).
    r : ArrayLike, shape ()
        Flashing rate.

    Returns
    -------
    Array, shape (6, 6)
        States ordered ``(x, eta) = (0,0), (1,0), (2,0), (0,1), (1,1), (2,1)``.
    """
    V = jnp.asarray(V)
    r = jnp.asarray(r)
    U_on = V * jnp.arange(3) / 2.0
    Q = jnp.zeros((6, 6), dtype=jnp.result_type(V.dtype, r.dtype, jnp.float32))
    for x in range(3):
        for y in ((x + 1) % 3, (x - 1) % 3):
            Q = Q.at[x, y].set(1.0)  # potential off: free diffusion
            Q = Q.at[3 + x, 3 + y].set(jnp.exp(-(U_on[y] - U_on[x]) / 2.0))
        Q = Q.at[x, 3 + x].set(r)
        Q = Q.at[3 + x, x].set(r)
    return Q - jnp.diag(Q.sum(axis=1))


def observation_matrix(error=ERROR):
    """P(observed site | state), shape (6, 3)."""
    site = np.tile(np.eye(3), (2, 1))
    return (1.0 - error) * site + error / 2.0 * (1.0 - site)


def ring_current(Q, pi=None):
    """Stationary probability current around the ring (net forward hops per unit time).

    Parameters
    ----------
    Q : ArrayLike, shape (6, 6)
    pi : ArrayLike, shape (6,), optional
        Stationary distribution (computed if not given).

    Returns
    -------
    Array, shape ()
        Net rate of ``x -> x + 1 (mod 3)`` hops, summed over the three bonds and both
        potential states, divided by 3 (the mean velocity in periods per unit time).
    """
    pi = stationary_distribution(Q) if pi is None else pi
    J = 0.0
    for eta in range(2):
        for x in range(3):
            i, j = 3 * eta + x, 3 * eta + (x + 1) % 3
            J = J + pi[i] * Q[i, j] - pi[j] * Q[j, i]
    return J / 3.0


def entropy_production(Q, pi=None):
    """Stationary entropy production rate (kT per unit time), shape ()."""
    pi = stationary_distribution(Q) if pi is None else pi
    F = pi[:, None] * Q
    off = ~jnp.eye(Q.shape[0], dtype=bool)
    Fs = jnp.where(off, F, 1.0)
    term = jnp.where(off & (F > 0), (F - F.T) * jnp.log(Fs / Fs.T), 0.0)
    return 0.5 * jnp.sum(term)


def model(times, sites=None, error=ERROR):
    """NumPyro model of sparse, misread site observations.

    Parameters
    ----------
    times : ArrayLike, shape (T,)
        Strictly increasing observation times.
    sites : ArrayLike of int, shape (T,), optional
        Observed sites in {0, 1, 2}; None to simulate.
    error : float
        Misreading probability (known).

    Returns
    -------
    Array, shape (T,)
    """
    V = numpyro.sample("V", dist.LogNormal(0.0, 1.0))
    r = numpyro.sample("r", dist.LogNormal(0.0, 1.0))
    Q = generator(V, r)
    pi = stationary_distribution(Q)
    numpyro.deterministic("current", ring_current(Q, pi))
    numpyro.deterministic("entropy_production", entropy_production(Q, pi))
    emission = dist.Categorical(probs=jnp.asarray(observation_matrix(error)))
    # non-reversible: "pade" directly (the "auto" reversibility test is wasted work here)
    likelihood = ObservedCTMC(Q, pi, times, emission, method="pade")
    return numpyro.sample("sites", likelihood, obs=sites)
