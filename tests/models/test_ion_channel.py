"""The ion-channel model: generator structure, likelihood vs a dense reference, SBC (slow)."""

import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density
from scipy import linalg, stats

from probdyn.models import ion_channel as ic
from probdyn.report import sbc


def test_generator_structure():
    Q = np.asarray(ic.generator(jnp.array([1.0, 3.0, 0.5, 0.2])))
    np.testing.assert_allclose(Q.sum(1), 0.0, atol=1e-7)
    assert Q[0, 2] == 0 and Q[2, 0] == 0  # C and I are not adjacent
    np.testing.assert_allclose(np.diag(Q), [-1.0, -3.5, -0.2])
    with pytest.raises(ValueError, match="rates"):
        ic.generator(jnp.ones(3))


def test_model_log_likelihood_matches_dense_forward(x64):
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.exponential(0.3, 12))
    y = rng.normal(0.3, 0.5, 12)
    params = {"log_rates": np.log([1.0, 3.0, 0.5, 0.2]), "i_open": 1.2, "sigma": 0.4}
    lp, trace = log_density(ic.model, (jnp.asarray(times),), {"current": jnp.asarray(y)}, params)
    ll = float(trace["current"]["fn"].log_prob(trace["current"]["value"]))
    # reference: stationary start, forward algorithm with scipy expm
    Q = np.asarray(ic.generator(jnp.exp(jnp.asarray(params["log_rates"]))))
    w, v = linalg.eig(Q.T)
    pi = np.real(v[:, np.argmin(np.abs(w))])
    pi /= pi.sum()
    lik = stats.norm.pdf(y[:, None], 1.2 * np.array([0.0, 1.0, 0.0]), 0.4)
    alpha = pi * lik[0]
    ref = 0.0
    for t in range(1, len(y)):
        ref += np.log(alpha.sum())
        alpha = (alpha / alpha.sum()) @ linalg.expm(Q * (times[t] - times[t - 1])) * lik[t]
    ref += np.log(alpha.sum())
    np.testing.assert_allclose(ll, ref, rtol=1e-10)


@pytest.mark.slow
def test_sbc_nuts_ion_channel():
    times = jnp.cumsum(0.25 * jnp.asarray(np.random.default_rng(1).exponential(size=150)))
    res = sbc(
        ic.model,
        times,
        obs_sites=("current",),
        params=["log_rates", "sigma"],
        num_replicates=100,
        num_posterior_draws=99,
        thin=2,
        num_warmup=300,
        vectorized=True,
        seed=3,
    )
    # 5 scalar parameters: none rejected at the 0.1% level (Bonferroni-ish for 5 tests)
    assert np.all(res.pvalues > 0.001), res.to_markdown()
