"""models.lotka_volterra: the particle-filter model on data simulated from the network.

The state space is unbounded, so there is no exact likelihood to compare with; what is
checked is that the model is the network it names (propensities written out by hand), that
its likelihood estimate is finite and prefers the rates that generated the data, and that
tau-leap and Gillespie propagation agree within Monte Carlo error at a small step.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers
from numpyro.infer.util import log_density

from probdyn.models import lotka_volterra as lv

TIMES = np.arange(1.0, 6.0)


@pytest.fixture(scope="module")
def counts():
    x, overflow = lv.NETWORK.gillespie_at(
        jax.random.PRNGKey(0), lv.X0, TIMES, lv.TRUE_RATES, max_jumps=lv.MAX_JUMPS
    )
    assert not bool(overflow)
    noise = lv.NOISE_SD * jax.random.normal(jax.random.PRNGKey(1), x.shape)
    return np.asarray(x, np.float32) + np.asarray(noise)


def test_network_is_the_textbook_lotka_volterra():
    x, c = np.array([50, 100]), lv.TRUE_RATES
    expected = [c[0] * x[0], c[1] * x[0] * x[1], c[2] * x[1]]
    np.testing.assert_allclose(lv.NETWORK.propensities(x, c), expected, rtol=1e-5)
    np.testing.assert_array_equal(lv.NETWORK.stoichiometry, [[1, 0], [-1, 1], [0, -1]])


@functools.partial(jax.jit, static_argnums=3)
def _log_lik(counts, log_rates, keys, propagation):
    if log_rates.ndim == 2:  # several rate vectors through one compiled program
        return jax.vmap(lambda r: _log_lik(counts, r, keys, propagation))(log_rates)

    def one(key):
        model = handlers.substitute(handlers.seed(lv.model, key), data={"log_rates": log_rates})
        kw = {"num_particles": 200, "propagation": propagation}
        return log_density(model, (TIMES, counts), kw, {})[0]

    return jax.vmap(one)(keys)


def test_likelihood_prefers_the_generating_rates_and_propagations_agree(counts):
    keys = jax.random.split(jax.random.PRNGKey(2), 8)
    true = jnp.log(jnp.asarray(lv.TRUE_RATES, jnp.float32))
    off = true + jnp.log(jnp.array([2.0, 2.0, 0.5]))
    at_truth, at_off = np.asarray(_log_lik(counts, jnp.stack([true, off]), keys, "gillespie"))
    tau = np.asarray(_log_lik(counts, true, keys, "tau_leap"))
    assert np.all(np.isfinite(at_truth)) and np.all(np.isfinite(tau))
    assert at_truth.mean() > at_off.mean() + 5
    se = np.sqrt((at_truth.var(ddof=1) + tau.var(ddof=1)) / len(keys))
    assert abs(at_truth.mean() - tau.mean()) < 4 * se + 0.5, (at_truth.mean(), tau.mean(), se)


def test_model_requires_counts():
    with pytest.raises(ValueError, match="counts is required"):
        with handlers.seed(rng_seed=0):
            lv.model(TIMES)
