"""Prior and prior predictive groups: probdyn.sample_prior and fit(prior=...)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import scipy.stats

from probdyn import fit, sample_prior

Y = jnp.asarray([0.3, -0.2, 1.1])
NUM = 4000


def model(y):
    mu = numpyro.sample("mu", dist.Normal(1.0, 2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.deterministic("mu2", 2.0 * mu)
    with numpyro.plate("obs_id", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


@pytest.fixture(scope="module")
def prior_idata():
    return sample_prior(
        model, Y, num_samples=NUM, rng_key=jax.random.PRNGKey(3), coords={"obs_id": [5, 6, 7]}
    )


def test_prior_draws_follow_the_prior(prior_idata):
    prior = prior_idata.prior
    mu = prior["mu"].values.ravel()
    sigma = prior["sigma"].values.ravel()
    # KS tests at the 0.1% level: fail only if the draws are not from the prior
    assert scipy.stats.kstest(mu, scipy.stats.norm(1.0, 2.0).cdf).pvalue > 1e-3
    assert scipy.stats.kstest(sigma, scipy.stats.halfnorm(scale=1.0).cdf).pvalue > 1e-3
    np.testing.assert_allclose(prior["mu2"].values, 2.0 * prior["mu"].values, rtol=1e-6)
    # prior predictive y = mu + sigma * eps: mean 1, variance 4 + E[sigma^2] = 5
    y = prior_idata.prior_predictive["y"].values
    assert y.shape == (1, NUM, 3)
    mean_se = np.sqrt(5.0 / NUM)
    assert abs(y[..., 0].mean() - 1.0) < 4 * mean_se
    # variance of a sample variance of a normal mixture: loose 4-sigma bound on 5
    assert abs(y[..., 0].var() - 5.0) < 4 * np.sqrt(2 * 25.0 / NUM) * 1.5
    # the three observations are dependent through (mu, sigma): cov = Var(mu) = 4
    assert abs(np.cov(y[0, :, 0], y[0, :, 1])[0, 1] - 4.0) < 0.5


def test_prior_groups_dims_and_observed_data(prior_idata):
    assert prior_idata.prior_predictive["y"].dims == ("chain", "draw", "obs_id")
    np.testing.assert_array_equal(prior_idata.prior_predictive["obs_id"].values, [5, 6, 7])
    np.testing.assert_array_equal(prior_idata.observed_data["y"].values, np.asarray(Y))
    assert set(prior_idata.prior.data_vars) == {"mu", "sigma", "mu2"}
    assert prior_idata.attrs["method"] == "prior"


def test_bad_prior_requests_raise():
    from numpyro.distributions import constraints

    def improper(y):
        mu = numpyro.sample("mu", dist.ImproperUniform(constraints.real, (), ()))
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    with pytest.raises(ValueError, match="ImproperUniform"):
        sample_prior(improper, Y[0], num_samples=10)
    with pytest.raises(ValueError, match="num_samples=0"):
        sample_prior(model, Y, num_samples=0)
    with pytest.raises(TypeError, match="prior=2.5"):
        fit(model, Y, prior=2.5, progress_bar=False)
