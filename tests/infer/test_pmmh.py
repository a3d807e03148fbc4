"""PMMH (probdyn.fit(method="pmmh")) against a posterior computed by quadrature from the
exact likelihood of a truncated immigration-death CTMC (scipy expm, independent of probdyn)."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import scipy.linalg
import scipy.stats
from jax.scipy.stats import poisson

from probdyn.infer.fit import fit
from probdyn.infer.particle import pf_likelihood, reaction_transition
from probdyn.infer.pmmh import PMMH
from probdyn.report import group_names

STOICH = np.array([[1], [-1]])
REACTANTS = np.array([[0], [1]])
B, X0 = 0.5, 3
TIMES = np.array([0.5, 1.3, 2.0, 3.7, 4.1, 5.0])
Y = np.array([2, 4, 6, 8, 9, 7])
PRIOR_LOC, PRIOR_SCALE = 1.0, 0.5
K_MAX = 60


def _obs_log_prob(y, x, t):
    return poisson.logpmf(y, x[0].astype(jnp.result_type(float)) + 0.5)


def model(times, y, num_particles=100):
    a = numpyro.sample("a", dist.LogNormal(PRIOR_LOC, PRIOR_SCALE))
    transition = reaction_transition(STOICH, REACTANTS, jnp.stack([a, B]), max_jumps=300)
    pf_likelihood(
        "y", lambda k: jnp.array([X0]), transition, _obs_log_prob, times, y,
        num_particles=num_particles,
    )  # fmt: skip


def exact_log_likelihood(a):
    """Forward algorithm on the CTMC truncated at K_MAX, with scipy's expm."""
    k = np.arange(K_MAX + 1)
    Q = np.zeros((K_MAX + 1, K_MAX + 1))
    Q[k[:-1], k[:-1] + 1] = a
    Q[k[1:], k[1:] - 1] = B * k[1:]
    Q -= np.diag(Q.sum(1))
    alpha, t_prev, ll = np.eye(K_MAX + 1)[X0], 0.0, 0.0
    for t, y in zip(TIMES, Y, strict=True):
        alpha = alpha @ scipy.linalg.expm(Q * (t - t_prev))
        alpha = alpha * scipy.stats.poisson.pmf(y, k + 0.5)
        ll += np.log(alpha.sum())
        alpha /= alpha.sum()
        t_prev = t
    return ll


@pytest.fixture(scope="module")
def exact_posterior():
    """Posterior mean and sd of a by quadrature on a fine grid."""
    grid = np.linspace(0.05, 16.0, 250)
    log_post = np.array([exact_log_likelihood(a) for a in grid])
    log_post += scipy.stats.lognorm.logpdf(grid, PRIOR_SCALE, scale=np.exp(PRIOR_LOC))
    w = np.exp(log_post - log_post.max())
    assert w[0] < 1e-8 and w[-1] < 1e-8  # the grid covers the posterior
    w /= np.trapezoid(w, grid)
    mean = np.trapezoid(w * grid, grid)
    return mean, np.sqrt(np.trapezoid(w * (grid - mean) ** 2, grid))


@pytest.fixture(scope="module")
def idata():
    return fit(
        model, jnp.asarray(TIMES), jnp.asarray(Y), method="pmmh", num_chains=2,
        num_warmup=400, num_samples=1000, seed=0, progress_bar=False,
    )  # fmt: skip


def test_posterior_matches_quadrature(idata, exact_posterior):
    mean, sd = exact_posterior
    a = idata.posterior["a"]
    mcse_mean = float(az.mcse(idata, var_names=["a"], method="mean")["a"])
    mcse_sd = float(az.mcse(idata, var_names=["a"], method="sd")["a"])
    assert mcse_mean < 0.1 * sd, (mcse_mean, sd)  # enough effective draws for power
    assert abs(float(a.mean()) - mean) < 4 * mcse_mean, (float(a.mean()), mean, mcse_mean)
    assert abs(float(a.std()) - sd) < 4 * mcse_sd, (float(a.std()), sd, mcse_sd)
    assert float(az.rhat(idata, var_names=["a"])["a"]) < 1.05


def test_groups_and_stats(idata):
    assert set(group_names(idata)) == {"posterior", "sample_stats", "observed_data"}
    assert idata.posterior["a"].shape == (2, 1000)
    stats = idata.sample_stats
    assert set(stats.data_vars) == {
        "acceptance_rate", "accepted", "log_likelihood_estimate", "lp", "proposal_scale",
    }  # fmt: skip
    np.testing.assert_array_equal(idata.observed_data["y"].values, Y)
    assert idata.observed_data["y"].dims == ("time",)
    assert idata.attrs["method"] == "pmmh"
    # adaptation stops after warmup: one proposal scale per chain
    scale = stats["proposal_scale"].values
    assert np.all(scale == scale[:, :1]) and np.all(scale > 0)
    rate = stats["acceptance_rate"].values
    assert np.all((rate >= 0) & (rate <= 1))
    assert 0.05 < float(stats["accepted"].mean()) < 0.6


def test_estimate_is_stored_and_reused(idata):
    a = idata.posterior["a"].values
    ll = idata.sample_stats["log_likelihood_estimate"].values
    acc = idata.sample_stats["accepted"].values
    stay = ~acc[:, 1:]
    # a rejected proposal keeps the state and its stored estimate (never re-estimated)
    assert stay.sum() > 100
    np.testing.assert_array_equal(a[:, 1:][stay], a[:, :-1][stay])
    np.testing.assert_array_equal(ll[:, 1:][stay], ll[:, :-1][stay])
    moved = acc[:, 1:] & (a[:, 1:] != a[:, :-1])
    assert np.all(ll[:, 1:][moved] != ll[:, :-1][moved])
    # lp = log prior (unconstrained: + log a, the Jacobian of exp) + the stored estimate
    prior = scipy.stats.lognorm.logpdf(a, PRIOR_SCALE, scale=np.exp(PRIOR_LOC)) + np.log(a)
    lp = idata.sample_stats["lp"].values
    np.testing.assert_allclose(lp - ll, prior, rtol=1e-4, atol=1e-4)
    # the estimates scatter around the exact log-likelihood (sd < 1 at 100 particles)
    exact = np.array([exact_log_likelihood(v) for v in a[0, :50]])
    err = ll[0, :50] - exact
    assert np.all(np.abs(err) < 3.0) and abs(err.mean()) < 1.0


SMALL = dict(method="pmmh", num_chains=2, num_warmup=20, num_samples=30, progress_bar=False)


def test_same_seed_same_result():
    args = (jnp.asarray(TIMES), jnp.asarray(Y))
    one = fit(model, *args, seed=3, model_kwargs={"num_particles": 20}, **SMALL)
    two = fit(model, *args, seed=3, model_kwargs={"num_particles": 20}, **SMALL)
    np.testing.assert_array_equal(one.posterior["a"].values, two.posterior["a"].values)
    for name in one.sample_stats.data_vars:
        np.testing.assert_array_equal(one.sample_stats[name].values, two.sample_stats[name].values)
    a = one.posterior["a"].values
    assert not np.array_equal(a[0], a[1])  # chains get their own keys


def test_bad_input():
    args = (jnp.asarray(TIMES), jnp.asarray(Y))
    with pytest.raises(ValueError, match="predictive"):
        fit(model, *args, predictive=True, **SMALL)
    with pytest.raises(TypeError, match="unexpected options"):
        fit(model, *args, num_particles=10, **SMALL)
    with pytest.raises(ValueError, match="step_size"):
        PMMH(model, step_size=-1.0)
    with pytest.raises(ValueError, match="target_accept_prob"):
        PMMH(model, target_accept_prob=1.5)
    with pytest.raises(ValueError, match="method"):
        fit(model, *args, method="pmcmc")


def test_discrete_latent_refused():
    def discrete(times, y):
        k = numpyro.sample("k", dist.Poisson(3.0))
        numpyro.sample("y", dist.Normal(k, 1.0), obs=y)

    kernel = PMMH(discrete)
    with pytest.raises(ValueError, match="discrete"):
        kernel.init(jax.random.PRNGKey(0), 10, model_args=(None, jnp.zeros(3)))


@pytest.mark.slow
def test_posterior_matches_quadrature_long(exact_posterior):
    mean, sd = exact_posterior
    idata = fit(
        model, jnp.asarray(TIMES), jnp.asarray(Y), method="pmmh", num_chains=4,
        num_warmup=1000, num_samples=10000, seed=1, progress_bar=False,
    )  # fmt: skip
    a = idata.posterior["a"]
    mcse_mean = float(az.mcse(idata, var_names=["a"], method="mean")["a"])
    mcse_sd = float(az.mcse(idata, var_names=["a"], method="sd")["a"])
    assert mcse_mean < 0.03 * sd
    assert abs(float(a.mean()) - mean) < 4 * mcse_mean
    assert abs(float(a.std()) - sd) < 4 * mcse_sd
