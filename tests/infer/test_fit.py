"""probdyn.fit against a conjugate Gaussian linear regression with a closed-form posterior."""

import importlib

import arviz as az
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
import xarray as xr

from probdyn.infer.fit import METHODS, fit
from probdyn.report._arviz import ARVIZ_1, Result, from_netcdf, get_group, group_names, to_netcdf

PRIOR_SCALE = 2.0
NOISE = 0.5
X = np.stack([np.ones(8), np.linspace(0.0, 2.0, 8)], axis=-1).astype(np.float32)
Y = (X @ np.array([0.5, -1.0]) + NOISE * np.random.default_rng(0).normal(size=8)).astype(np.float32)


def regression(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, PRIOR_SCALE).expand([2]).to_event(1))
    mean = numpyro.deterministic("mean", x @ w)
    with numpyro.plate("obs_id", x.shape[0]):
        numpyro.sample("y", dist.Normal(mean, NOISE), obs=y)


def exact_posterior():
    """Mean (2,) and covariance (2, 2) of w given (X, Y)."""
    precision = np.eye(2) / PRIOR_SCALE**2 + X.T @ X / NOISE**2
    cov = np.linalg.inv(precision)
    return cov @ X.T @ Y / NOISE**2, cov


DIMS = {"w": ["coef"]}
COORDS = {"coef": ["intercept", "slope"], "obs_id": np.arange(8) * 10}


NUTS_SETTINGS = dict(
    model_kwargs={"y": jnp.asarray(Y)},
    num_chains=2,
    num_warmup=300,
    num_samples=600,
    seed=1,
    predictive=True,
    dims=DIMS,
    coords=COORDS,
    constant_data={"x": X},
    progress_bar=False,
    target_accept_prob=0.85,
)


@pytest.fixture(scope="module")
def nuts_idata():
    return fit(regression, jnp.asarray(X), **NUTS_SETTINGS)


@pytest.fixture(scope="module")
def svi_idata():
    return fit(
        regression,
        jnp.asarray(X),
        model_kwargs={"y": jnp.asarray(Y)},
        method="svi",
        guide="mvn",
        learning_rate=optax.cosine_decay_schedule(0.05, 3000),
        num_steps=3000,
        num_particles=32,
        num_chains=2,
        num_samples=1000,
        seed=2,
        dims=DIMS,
        coords=COORDS,
        prior=300,
        progress_bar=False,
    )


def test_nuts_matches_closed_form(nuts_idata):
    mean, cov = exact_posterior()
    w = nuts_idata.posterior["w"]
    ess = az.ess(nuts_idata, var_names=["w"])["w"].values
    assert np.all(ess > 100)
    sd = np.sqrt(np.diag(cov))
    draws = w.values.reshape(-1, 2)
    # 4 Monte Carlo standard errors: mean se = sd / sqrt(ess), variance se ~ var sqrt(2 / ess).
    np.testing.assert_array_less(np.abs(draws.mean(0) - mean), 4 * sd / np.sqrt(ess))
    var = draws.var(0)
    np.testing.assert_array_less(np.abs(var - sd**2), 4 * sd**2 * np.sqrt(2 / ess))
    corr = np.corrcoef(draws.T)[0, 1]
    exact_corr = cov[0, 1] / (sd[0] * sd[1])
    assert abs(corr - exact_corr) < 4 * (1 - exact_corr**2) / np.sqrt(ess.min())


def test_nuts_groups_dims_coords(nuts_idata):
    idata = nuts_idata
    for group in (
        "posterior",
        "sample_stats",
        "log_likelihood",
        "observed_data",
        "constant_data",
        "posterior_predictive",
    ):
        assert hasattr(idata, group), group
    post = idata.posterior
    assert post["w"].dims == ("chain", "draw", "coef")
    assert list(post["coef"].values) == ["intercept", "slope"]
    assert post["mean"].dims == ("chain", "draw", "mean_dim_0")
    assert post["w"].shape == (2, 600, 2)
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "obs_id")
    np.testing.assert_array_equal(idata.log_likelihood["obs_id"].values, np.arange(8) * 10)
    assert idata.observed_data["y"].dims == ("obs_id",)
    np.testing.assert_array_equal(idata.observed_data["y"].values, Y)
    assert idata.posterior_predictive["y"].shape == (2, 600, 8)
    assert not np.allclose(idata.posterior_predictive["y"].values[0, 0], Y)
    np.testing.assert_array_equal(idata.constant_data["x"].values, X)
    stats = idata.sample_stats
    for name in ("diverging", "tree_depth", "step_size", "energy", "n_steps", "acceptance_rate"):
        assert stats[name].dims == ("chain", "draw"), name
    assert stats["diverging"].dtype == bool
    np.testing.assert_array_equal(
        stats["tree_depth"].values, np.floor(np.log2(stats["n_steps"].values)) + 1
    )
    assert idata.attrs["method"] == "nuts"
    assert idata.attrs["seed"] == 1
    assert "target_accept_prob" in idata.attrs["options"]
    assert "probdyn_version" in idata.attrs


def test_pointwise_loglik_and_loo(nuts_idata):
    w = nuts_idata.posterior["w"].values
    mean = np.einsum("nk,cdk->cdn", X, w)
    expected = -0.5 * ((Y - mean) / NOISE) ** 2 - np.log(NOISE) - 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(nuts_idata.log_likelihood["y"].values, expected, rtol=1e-4)
    loo = az.loo(nuts_idata)
    assert np.isfinite(loo.elpd if ARVIZ_1 else loo.elpd_loo)


def test_netcdf_round_trip(nuts_idata, svi_idata, tmp_path):
    for name, idata in (("nuts", nuts_idata), ("svi", svi_idata)):
        path = tmp_path / f"{name}.nc"
        assert isinstance(idata, Result)
        to_netcdf(idata, path)
        back = from_netcdf(path)
        assert isinstance(back, Result)
        assert group_names(back) == group_names(idata)
        for group in group_names(idata):
            xr.testing.assert_identical(get_group(back, group), get_group(idata, group))
        assert back.attrs == idata.attrs


def test_svi_mvn_matches_closed_form(svi_idata):
    mean, cov = exact_posterior()
    params = svi_idata.svi_params
    sd = np.sqrt(np.diag(cov))
    # A full-rank Gaussian guide is exact here: only optimisation error remains.
    np.testing.assert_allclose(params["auto_loc"].values, mean, atol=0.03 * sd.min())
    tril = params["auto_scale_tril"].values
    np.testing.assert_allclose(tril @ tril.T, cov, atol=0.02 * np.outer(sd, sd).min())
    draws = svi_idata.posterior["w"].values.reshape(-1, 2)
    n = draws.shape[0]
    np.testing.assert_array_less(np.abs(draws.mean(0) - mean), 4 * sd / np.sqrt(n) + 0.02 * sd)
    loss = svi_idata.sample_stats["loss"]
    assert loss.dims == ("svi_step",) and loss.shape == (3000,)
    assert svi_idata.posterior["w"].dims == ("chain", "draw", "coef")
    assert svi_idata.posterior["mean"].shape == (2, 1000, 8)
    np.testing.assert_allclose(
        svi_idata.posterior["mean"].values,
        np.einsum("nk,cdk->cdn", X, svi_idata.posterior["w"]),
        rtol=1e-5,
        atol=1e-6,
    )
    assert svi_idata.log_likelihood["y"].shape == (2, 1000, 8)
    assert svi_idata.attrs["method"] == "svi"


def test_svi_normal_guide_is_exact_on_gaussian():
    # Independent Gaussian posterior, mean-field guide: exact up to optimisation error.
    def model(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        with numpyro.plate("obs_id", y.shape[0]):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    y = jnp.asarray([0.5, 1.5, 1.0])
    idata = fit(
        model,
        y,
        method="svi",
        guide="normal",
        learning_rate=0.02,
        num_steps=2000,
        num_particles=8,
        num_chains=1,
        num_samples=10,
        progress_bar=False,
    )
    post_var = 1.0 / (1.0 + 3.0)
    post_mean = post_var * float(y.sum())
    p = idata.svi_params
    np.testing.assert_allclose(float(p["mu_auto_loc"]), post_mean, atol=0.02 * post_var**0.5)
    np.testing.assert_allclose(float(p["mu_auto_scale"]), post_var**0.5, rtol=0.05)
    assert idata.posterior["mu"].shape == (1, 10)


def test_same_seed_bit_identical(nuts_idata):
    again = fit(regression, jnp.asarray(X), **NUTS_SETTINGS)
    assert group_names(again) == group_names(nuts_idata)
    for group in group_names(again):
        xr.testing.assert_identical(get_group(again, group), get_group(nuts_idata, group))
    assert again.attrs == nuts_idata.attrs
    # Chains differ from each other: the seed's key is split per chain.
    w = nuts_idata.posterior["w"].values
    assert not np.array_equal(w[0], w[1])


def test_sgmcmc_methods_give_the_same_groups():
    pytest.importorskip("probdyn.infer.sgmcmc")
    idata = fit(
        regression,
        jnp.asarray(X),
        model_kwargs={"y": jnp.asarray(Y)},
        method="sgld",
        step_size=1e-3,
        num_chains=2,
        num_warmup=50,
        num_samples=40,
        thinning=2,
        dims=DIMS,
        coords=COORDS,
        progress_bar=False,
    )
    assert idata.posterior["w"].dims == ("chain", "draw", "coef")
    assert idata.posterior["w"].shape == (2, 20, 2)
    assert idata.sample_stats["step_size"].shape == (2, 20)
    assert idata.log_likelihood["y"].shape == (2, 20, 8)
    assert idata.attrs["method"] == "sgld"
    with pytest.raises(TypeError, match="stepsize"):
        fit(regression, jnp.asarray(X), method="sgld", stepsize=1e-3, progress_bar=False)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"method": "mala"}, ValueError, ["method", "'mala'", "nuts"]),
        ({"num_samples": 0}, ValueError, ["num_samples=0", ">= 1"]),
        ({"num_samples": -5}, ValueError, ["num_samples=-5"]),
        ({"num_chains": 2.0}, TypeError, ["num_chains=2.0", "integer"]),
        ({"num_samples": 4, "thinning": 5}, ValueError, ["thinning=5", "num_samples=4"]),
        ({"target_acept_prob": 0.9}, TypeError, ["target_acept_prob", "target_accept_prob"]),
        ({"method": "svi", "target_accept_prob": 0.9}, TypeError, ["target_accept_prob"]),
        ({"method": "svi", "optimiser": "adam"}, TypeError, ["optimiser", "optimizer"]),
        ({"method": "svi", "num_steps": 0}, ValueError, ["num_steps=0"]),
        ({"method": "svi", "thinning": 2}, ValueError, ["thinning=2"]),
        ({"method": "svi", "guide": "banana"}, ValueError, ["guide='banana'", "mvn"]),
        ({"method": "svi", "optimizer": "adamx"}, ValueError, ["optimizer='adamx'", "adam"]),
        ({"method": "svi", "learning_rate": -1.0}, ValueError, ["learning_rate=-1.0"]),
        ({"chain_method": "magic"}, ValueError, ["chain_method='magic'"]),
        ({"checkpoint_every": 10}, ValueError, ["checkpoint_every=10", "checkpoint"]),
        ({"model_kwargs": [1]}, TypeError, ["model_kwargs"]),
        ({"dims": {"z": ["a"]}}, ValueError, ["dims", "'z'"]),
        ({"dims": {"w": ["a", "b"]}}, ValueError, ["dims['w']"]),
        ({"coords": {"obs_id": np.arange(3)}}, ValueError, ["coords['obs_id']", "(8,)"]),
        # issue 9: nonsense options were accepted and sampled with (frozen chains, inf steps)
        ({"target_accept_prob": 1.5}, ValueError, ["target_accept_prob=1.5", "(0, 1)"]),
        ({"target_accept_prob": -0.5}, ValueError, ["target_accept_prob=-0.5"]),
        ({"target_accept_prob": float("nan")}, ValueError, ["target_accept_prob=nan"]),
        ({"max_tree_depth": -1}, ValueError, ["max_tree_depth=-1", ">= 1"]),
        ({"max_tree_depth": (10, 0)}, ValueError, ["max_tree_depth=0"]),
        ({"method": "hmc", "num_steps": 0}, ValueError, ["num_steps=0"]),
        ({"method": "hmc", "trajectory_length": -1.0}, ValueError, ["trajectory_length=-1.0"]),
        ({"step_size": 0.0}, ValueError, ["step_size=0.0", "> 0"]),
        ({"step_size": float("inf")}, ValueError, ["step_size=inf"]),
        ({"adapt_step_size": "no"}, TypeError, ["adapt_step_size='no'"]),
        ({"dense_mass": "yes"}, TypeError, ["dense_mass='yes'"]),
        ({"seed": 2**32}, ValueError, ["seed=4294967296"]),
        ({"seed": -1}, ValueError, ["seed=-1"]),
        ({"predictive": "yes"}, TypeError, ["predictive='yes'"]),
        ({"log_likelihood": 1}, TypeError, ["log_likelihood=1"]),
        ({"checkpoint": 3}, TypeError, ["checkpoint=3"]),
        ({"method": "svi", "learning_rate": float("inf")}, ValueError, ["learning_rate=inf"]),
        ({"method": "svi", "stable_update": 1}, TypeError, ["stable_update=1"]),
        ({"method": "sgld", "step_size": -1e-3}, ValueError, ["step_size", "-0.001"]),
        ({"method": "pmmh", "target_accept_prob": 1.5}, ValueError, ["target_accept_prob"]),
    ],
)
def test_bad_inputs_raise_before_compiling(kwargs, error, words, monkeypatch):
    # the package re-exports the function ``fit``, which shadows the submodule attribute
    fit_module = importlib.import_module("probdyn.infer.fit")

    def no_run(*a, **k):  # pragma: no cover - reached only if validation is missing
        raise AssertionError("inference started despite bad input")

    monkeypatch.setattr(fit_module, "run_mcmc", no_run)
    monkeypatch.setattr(fit_module, "run_svi", no_run)
    kwargs = {"model_kwargs": {"y": jnp.asarray(Y)}, **kwargs}
    with pytest.raises(error) as info:
        fit(regression, jnp.asarray(X), progress_bar=False, **kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_methods_listed():
    assert set(METHODS) == {"nuts", "hmc", "svi", "sgld", "sghmc", "sgnht", "csgld", "pmmh"}


def _custom_guide(x, y=None):
    loc = numpyro.param("w_loc", jnp.zeros(2))
    scale = numpyro.param("w_scale", 0.1 * jnp.ones(2), constraint=dist.constraints.positive)
    numpyro.sample("w", dist.Normal(loc, scale).to_event(1))


@pytest.mark.slow
@pytest.mark.parametrize(
    "guide, extra",
    [
        ("normal", {}),
        ("mvn", {"optimizer": optax.adam(0.05)}),
        ("lowrank", {"guide_kwargs": {"rank": 1}}),
        ("delta", {}),
        ("iaf", {}),
        ("laplace", {}),
        (_custom_guide, {}),
    ],
)
def test_every_guide_gives_posterior_draws(guide, extra):
    mean, cov = exact_posterior()
    idata = fit(
        regression,
        jnp.asarray(X),
        model_kwargs={"y": jnp.asarray(Y)},
        method="svi",
        guide=guide,
        num_steps=1500,
        num_chains=2,
        num_samples=500,
        predictive=True,
        progress_bar=False,
        **({"learning_rate": 0.05} if "optimizer" not in extra else {}),
        **extra,
    )
    w = idata.posterior["w"].values
    assert w.shape == (2, 500, 2)
    assert idata.posterior["mean"].shape == (2, 500, 8)
    assert idata.posterior_predictive["y"].shape == (2, 500, 8)
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_array_less(np.abs(w.mean((0, 1)) - mean), 0.5 * sd)
    if guide == "delta":
        assert np.all(w == w[0, 0])
    elif guide in ("mvn", "laplace"):
        np.testing.assert_allclose(np.cov(w.reshape(-1, 2).T), cov, atol=0.25 * sd.max() ** 2)


def test_svi_replays_the_model_with_its_fitted_params():
    """A model-side numpyro.param (here the noise scale) is used at its fitted value."""
    y = jnp.asarray(np.random.default_rng(0).normal(1.0, 3.0, size=200))

    def model(y=None):
        scale = numpyro.param("scale", 1.0, constraint=dist.constraints.positive)
        mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
        with numpyro.plate("data", 200):
            numpyro.sample("y", dist.Normal(mu, scale), obs=y)

    idata = fit(
        model, model_kwargs={"y": y}, method="svi", guide="delta", num_steps=1500,
        num_samples=1, num_chains=1, progress_bar=False, seed=0,
        optimizer="adam", learning_rate=0.05,
    )  # fmt: skip
    scale = float(idata.svi_params["scale"])
    assert abs(scale - float(jnp.std(y))) < 0.1
    mu = float(idata.posterior["mu"].values.ravel()[0])
    expected = dist.Normal(mu, scale).log_prob(y)
    np.testing.assert_allclose(
        idata.log_likelihood["y"].values.reshape(-1), np.asarray(expected), rtol=1e-4
    )


def test_init_failure_names_the_site():
    # was: NumPyro's bare "Cannot find valid initial parameters"
    def model(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    # NaN data is now refused before the run, naming the site and the fix (a mask)
    with pytest.raises(ValueError, match=r"observed site 'y' has 1 NaN value.*mask"):
        fit(model, jnp.asarray([0.1, jnp.nan]), num_chains=1, num_warmup=2, num_samples=2,
            progress_bar=False)  # fmt: skip
    from probdyn.infer import nonfinite_sites

    def count_model(y):
        rate = numpyro.sample("rate", dist.LogNormal(0.0, 1.0))
        numpyro.sample("y", dist.Poisson(rate), obs=y)

    bad = nonfinite_sites(count_model, (jnp.asarray([1.0, -3.0]),))
    assert list(bad) == ["y"] and "outside the support" in bad["y"]
    bad = nonfinite_sites(count_model, (jnp.asarray([1.0, jnp.nan]),))
    assert "1 non-finite value" in bad["y"] and "mask" in bad["y"]
    assert nonfinite_sites(count_model, (jnp.asarray([1.0, 3.0]),)) == {}


def test_svi_default_settings_land_on_the_exact_posterior_mean():
    # Conjugate Normal mean, N=2,000: posterior sd 0.022. At a constant rate of 1e-2 the
    # last Adam iterate sat 0.1-0.5 sd off the exact mean; the default averages the
    # iterates of the last half of the steps (probdyn.infer.svi.tail_average).
    n = 2000
    y = jnp.asarray(np.random.default_rng(0).normal(1.3, 1.0, n), jnp.float32)

    def model(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
        with numpyro.plate("obs_id", y.shape[0]):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    post_var = 1.0 / (1.0 / 100.0 + n)
    post_mean, post_sd = post_var * float(y.sum()), post_var**0.5
    idata = fit(model, y, method="svi", guide="normal", num_steps=3000, num_chains=1,
                num_samples=10, seed=1, progress_bar=False)  # fmt: skip
    loc = float(idata.svi_params["mu_auto_loc"])
    assert abs(loc - post_mean) < 0.05 * post_sd, (loc - post_mean) / post_sd
    # the scale is only weakly identified by a one-particle ELBO (flat in log scale)
    assert 0.8 < float(idata.svi_params["mu_auto_scale"]) / post_sd < 2.0


def test_tail_average_is_the_mean_of_the_last_iterates():
    from probdyn.infer.svi import tail_average

    opt = optax.chain(optax.sgd(0.1), tail_average(10, 0.3))
    params = jnp.asarray(5.0)
    state = opt.init(params)
    iterates = []
    for _ in range(10):
        updates, state = opt.update(params, state, params)  # gradient of x^2 / 2
        params = optax.apply_updates(params, updates)
        iterates.append(float(params))
    np.testing.assert_allclose(float(state[1].mean), np.mean(iterates[-3:]), rtol=1e-6)


def test_improper_uniform_prior_model_fits():
    # ImproperUniform cannot be sampled: fit must find observed data without prior draws.
    from numpyro.distributions import constraints

    def model(y):
        mu = numpyro.sample("mu", dist.ImproperUniform(constraints.real, (), ()))
        with numpyro.plate("obs_id", y.shape[0]):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    y = jnp.asarray([0.1, 0.5, -0.3, 1.0])
    idata = fit(model, y, num_chains=1, num_warmup=100, num_samples=200, progress_bar=False)
    np.testing.assert_array_equal(idata.observed_data["y"].values, np.asarray(y))
    # flat prior: posterior N(mean(y), 1/4); 200 draws, MC error of the mean < 0.1
    assert abs(float(idata.posterior["mu"].mean()) - float(y.mean())) < 0.15


def test_nan_observations_without_mask_raise_before_compiling(monkeypatch):
    from probdyn import ObservedCTMC

    fit_module = importlib.import_module("probdyn.infer.fit")

    def model(times, y):
        k = numpyro.sample("k", dist.LogNormal(0.0, 1.0).expand([2]).to_event(1))
        Q = jnp.array([[-k[0], k[0]], [k[1], -k[1]]])
        em = dist.Normal(jnp.array([0.0, 1.0]), 0.3)
        numpyro.sample("y", ObservedCTMC(Q, jnp.array([0.5, 0.5]), times, em), obs=y)

    def no_run(*a, **k):
        raise AssertionError("reached the sampler")

    monkeypatch.setattr(fit_module, "run_mcmc", no_run)
    times, y = jnp.array([0.0, 0.5, 1.2, 2.0]), jnp.array([0.1, jnp.nan, 0.9, 1.0])
    with pytest.raises(ValueError, match=r"'y' has 1 NaN.*mask"):
        fit(model, times, y, num_chains=1, num_warmup=10, num_samples=10, progress_bar=False)


def test_fit_adds_prior_groups_with_their_own_key(svi_idata):
    import jax

    from probdyn import sample_prior

    assert svi_idata.prior["w"].dims == ("chain", "draw", "coef")
    assert svi_idata.prior["w"].shape == (1, 300, 2)
    assert svi_idata.prior["mean"].shape == (1, 300, 8)
    assert svi_idata.prior_predictive["y"].dims == ("chain", "draw", "obs_id")
    key = jax.random.fold_in(jax.random.PRNGKey(2), 1)  # documented: seed=2
    same = sample_prior(regression, jnp.asarray(X), model_kwargs={"y": jnp.asarray(Y)},
                        num_samples=300, rng_key=key)  # fmt: skip
    np.testing.assert_array_equal(svi_idata.prior["w"].values, same.prior["w"].values)
    # prior sd of w is PRIOR_SCALE: 600 draws, a 5-sigma band on the sample sd
    sd = svi_idata.prior["w"].values.std()
    assert abs(sd - PRIOR_SCALE) < 5 * PRIOR_SCALE / np.sqrt(2 * 600)


def test_log_likelihood_false_skips_the_group(svi_idata):
    """``log_likelihood=False`` leaves the group out (the default keeps it)."""
    kw = dict(model_kwargs={"y": jnp.asarray(Y)}, method="svi", num_steps=20, num_chains=1)
    without = fit(regression, jnp.asarray(X), log_likelihood=False, num_samples=5, **kw)
    assert "log_likelihood" in group_names(svi_idata)
    assert "log_likelihood" not in group_names(without)
    assert "posterior" in group_names(without)
