"""Stochastic SIR epidemic as a reaction network; infected counts reported daily, under-reported.

Species (S, I) in a closed population of :data:`POPULATION` (R = N - S - I is implied);
reactions

- infection ``S + I -> 2 I`` with propensity :math:`\\beta S I / N`,
- recovery ``I -> 0`` (to R) with propensity :math:`\\gamma I`,

started from ``(N - I0, I0)`` at t = 0. On each day t = 1, 2, ... every infected person
is reported independently with probability :data:`REPORTING` (known):
:math:`y_t \\sim \\mathrm{Binomial}(I_t, \\rho)`. :math:`R_0 = \\beta / \\gamma`.

Three likelihoods of the same data are provided:

- :func:`exact_log_likelihood`: the chemical master equation on the (S, I) box, solved by
  uniformization (:func:`probdyn.kernels.cme.cme_log_likelihood`); exact up to the
  Poisson-tail bound (1e-6), deterministic and differentiable;
- :func:`model` with ``method="gillespie"``: a bootstrap particle filter with exact
  Gillespie propagation, an unbiased estimate for PMMH;
- :func:`model` with ``method="tau_leap"``: the same filter with tau-leaping, faster but
  approximate (its bias is what the case study measures).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import gammaln

from probdyn.infer.particle import pf_likelihood, reaction_transition
from probdyn.kernels.cme import box_states, cme_log_likelihood, uniformization_terms
from probdyn.processes.reaction import ReactionNetwork

__all__ = [
    "NETWORK",
    "POPULATION",
    "REPORTING",
    "TRUE_PARAMS",
    "exact_log_likelihood",
    "model",
    "rate_constants",
]

NETWORK = ReactionNetwork(
    [[1, 1], [0, 1]],
    [[0, 2], [0, 0]],
    species=("S", "I"),
    reactions=("infection", "recovery"),
)
POPULATION = 50
INITIAL_INFECTED = 3
REPORTING = 0.7
#: Ground truth used by the case study (per day).
TRUE_PARAMS = {"beta": 0.6, "gamma": 0.25}
X0 = np.array([POPULATION - INITIAL_INFECTED, INITIAL_INFECTED])
_MAX_COUNTS = (int(X0[0]), POPULATION)
# S + I never grows: only states with S + I <= N can be occupied
_DOMAIN = (box_states(_MAX_COUNTS).sum(1) <= POPULATION).reshape([m + 1 for m in _MAX_COUNTS])
# every reaction fires at most N times in all: one interval can never overflow this
_MAX_JUMPS = 2 * POPULATION + 8


def rate_constants(beta, gamma):
    """Stochastic rate constants ``(beta / N, gamma)`` of the two reactions, shape (..., 2)."""
    return jnp.stack(jnp.broadcast_arrays(jnp.asarray(beta) / POPULATION, gamma), -1)


def _binomial_logpmf(y, n, p):
    ok = (y >= 0) & (y <= n)
    n_, y_ = jnp.asarray(n, jnp.float32), jnp.asarray(y, jnp.float32)
    val = (
        gammaln(n_ + 1)
        - gammaln(y_ + 1)
        - gammaln(jnp.maximum(n_ - y_, 0) + 1)
        + y_ * jnp.log(p)
        + (n_ - y_) * jnp.log1p(-p)
    )
    return jnp.where(ok, val, -jnp.inf)


def _obs_log_probs(y):
    """log p(y_t | S, I) on the box, shape (T, S0 + 1, N + 1)."""
    infected = box_states(_MAX_COUNTS)[:, 1]
    lp = _binomial_logpmf(jnp.asarray(y)[:, None], infected[None, :], REPORTING)
    return lp.reshape((len(y), *(m + 1 for m in _MAX_COUNTS)))


def exact_log_likelihood(beta, gamma, times, y, num_terms=None, max_beta=3.0, max_gamma=1.5):
    """Exact log-likelihood of the reports (chemical master equation on the box).

    Parameters
    ----------
    beta, gamma : ArrayLike, shape ()
    times : ArrayLike, shape (T,)
        Report times (> 0).
    y : ArrayLike of int, shape (T,)
        Reported counts.
    num_terms : int, optional
        Uniformization terms per gap; default enough for beta <= 5 and gamma <= 3 and
        gaps <= the largest gap in ``times`` (tail < 1e-8). Larger rates give NaN, not a
        wrong value.

    Returns
    -------
    Array, shape ()
    """
    times = np.asarray(times)
    if num_terms is None:
        gap = float(np.max(np.diff(np.concatenate([[0.0], times]))))
        # exit rate beta S I / N + gamma I on S + I <= N is at most beta N / 4 + gamma N
        bound = (max_beta / 4 + max_gamma) * POPULATION
        num_terms = uniformization_terms(bound * gap, tol=1e-6)
    p0 = np.zeros(tuple(m + 1 for m in _MAX_COUNTS))
    p0[tuple(X0)] = 1.0
    return cme_log_likelihood(
        p0,
        times,
        _obs_log_probs(y),
        rate_constants(beta, gamma),
        NETWORK.stoichiometry,
        reactants=NETWORK.reactants,
        max_counts=_MAX_COUNTS,
        domain=_DOMAIN,
        num_terms=num_terms,
        t0=0.0,
        tail_tol=1e-6,
    )


def prior():
    """beta ~ LogNormal(log 0.5, 0.75), gamma ~ LogNormal(log 0.2, 0.75)."""
    return {
        "beta": dist.LogNormal(np.log(0.5), 0.75),
        "gamma": dist.LogNormal(np.log(0.2), 0.75),
    }


def model(times, y=None, method="gillespie", num_particles=200, tau=0.25):
    """SIR model with a particle-filter likelihood, for ``probdyn.fit(..., method="pmmh")``.

    Parameters
    ----------
    times : ArrayLike, shape (T,)
        Report times (> 0).
    y : ArrayLike of int, shape (T,)
        Reported counts (required: the particle likelihood needs data).
    method : {"gillespie", "tau_leap"}
        Propagation of the particles.
    num_particles : int
    tau : float
        Tau-leap step (``method="tau_leap"``).
    """
    pri = prior()
    beta = numpyro.sample("beta", pri["beta"])
    gamma = numpyro.sample("gamma", pri["gamma"])
    numpyro.deterministic("R0", beta / gamma)
    if y is None:
        raise ValueError("y is required: the particle-filter likelihood conditions on data")
    kw = {"max_jumps": _MAX_JUMPS} if method == "gillespie" else {"tau": tau}
    transition = reaction_transition(
        NETWORK.stoichiometry,
        NETWORK.reactants,
        rate_constants(beta, gamma),
        method=method,
        **kw,
    )

    def obs_log_prob(yt, x, t):
        return _binomial_logpmf(yt, x[1], REPORTING)

    x0 = jnp.asarray(X0, dtype=jnp.int32)
    pf_likelihood(
        "y",
        lambda key: x0,
        transition,
        obs_log_prob,
        times,
        jnp.asarray(y),
        num_particles=num_particles,
    )
