"""Stochastic kinetic Lotka-Volterra predator-prey model, counts observed with Gaussian noise.

The reaction network (Wilkinson, *Stochastic Modelling for Systems Biology*, ch. 6):

- prey birth ``prey -> 2 prey``, propensity :math:`c_1 x_1`;
- predation ``prey + predator -> 2 predator``, propensity :math:`c_2 x_1 x_2`;
- predator death ``predator -> 0``, propensity :math:`c_3 x_2`;

from a known start :data:`X0` at t = 0. Both counts are observed at integer times with
independent :math:`\\mathcal N(0, \\sigma^2)` noise, :math:`\\sigma` = :data:`NOISE_SD`
(known). The state space is unbounded, so the likelihood is estimated by a bootstrap
particle filter with exact Gillespie propagation, and the rates are sampled by particle
marginal Metropolis-Hastings (``probdyn.fit(model, ..., method="pmmh")``).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from probdyn.infer.particle import pf_likelihood, reaction_transition
from probdyn.processes.reaction import ReactionNetwork

__all__ = ["NETWORK", "NOISE_SD", "TRUE_RATES", "X0", "model"]

NETWORK = ReactionNetwork.from_equations(
    ["prey -> 2 prey", "prey + predator -> 2 predator", "predator -> 0"],
    reactions=("prey birth", "predation", "predator death"),
)
TRUE_RATES = np.array([1.0, 0.005, 0.6])
X0 = np.array([50, 100])
NOISE_SD = 10.0
#: Prior medians (log-normal priors, sd 0.5 on the log scale): a previous study's guess.
PRIOR_MEDIANS = np.array([0.8, 0.004, 0.5])
MAX_JUMPS = 4000  # per observation interval; a particle that needs more gets weight 0


def model(times, counts=None, num_particles=100, propagation="gillespie", tau=0.05):
    """Lotka-Volterra with a particle-filter likelihood.

    Parameters
    ----------
    times : ArrayLike, shape (T,)
        Observation times (> 0).
    counts : ArrayLike, shape (T, 2)
        Noisy (prey, predator) counts; required.
    num_particles : int
    propagation : {"gillespie", "tau_leap"}
    tau : float
        Tau-leap step.
    """
    log_rates = numpyro.sample(
        "log_rates", dist.Normal(jnp.log(PRIOR_MEDIANS), 0.5 * jnp.ones(3)).to_event(1)
    )
    rates = numpyro.deterministic("rates", jnp.exp(log_rates))
    if counts is None:
        raise ValueError("counts is required: the particle-filter likelihood needs data")
    kw = {"max_jumps": MAX_JUMPS} if propagation == "gillespie" else {"tau": tau}
    transition = reaction_transition(
        NETWORK.stoichiometry, NETWORK.reactants, rates, method=propagation, **kw
    )
    x0 = jnp.asarray(X0, dtype=jnp.int32)

    def obs_log_prob(y, x, t):
        return jnp.sum(dist.Normal(x.astype(y.dtype), NOISE_SD).log_prob(y))

    pf_likelihood(
        "counts",
        lambda key: x0,
        transition,
        obs_log_prob,
        times,
        jnp.asarray(counts, dtype=jnp.float32),
        num_particles=num_particles,
    )
