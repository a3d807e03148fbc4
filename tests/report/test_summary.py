"""Tests for probdyn.report.summary."""

import json

import arviz as az
import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import xarray as xr
from numpyro.infer import MCMC, NUTS

from probdyn.report._arviz import ARVIZ_1, make_result
from probdyn.report.idata import to_inference_data
from probdyn.report.summary import Summary, ebfmi, elbo_relative_change, summary


def _normal_model(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("time", 20):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


@pytest.fixture(scope="module")
def nuts_idata():
    y = np.random.default_rng(0).normal(0.3, 1.0, 20)
    mcmc = MCMC(
        NUTS(_normal_model),
        num_warmup=300,
        num_samples=500,
        num_chains=2,
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0), y=y, extra_fields=("energy", "diverging"))
    return az.from_numpyro(mcmc)


def test_summary_of_healthy_nuts_fit(nuts_idata):
    res = summary(nuts_idata)
    assert isinstance(res, Summary)
    assert res.ok, res.problems
    assert res.num_chains == 2 and res.num_draws == 500
    assert res.num_divergences == 0
    # independent references: ArviZ's own R-hat and BFMI
    rhat = az.rhat(nuts_idata)
    assert res.table.loc["mu", "r_hat"] == pytest.approx(float(rhat["mu"]), abs=0.01)
    bfmi = az.bfmi(nuts_idata)  # ArviZ 1.x: a DataTree node; 0.x: an array
    bfmi = bfmi["energy"].values if ARVIZ_1 else bfmi
    np.testing.assert_allclose(res.bfmi, bfmi, rtol=1e-5)
    text = str(res)
    assert "all checks passed" in text and "mu" in text
    md = res.to_markdown()
    assert md.startswith("**Diagnostics**") and "| mu |" in md


def _synthetic(num_chains=4, num_draws=400, seed=0):
    rng = np.random.default_rng(seed)
    posterior = {
        "mu": rng.normal(size=(num_chains, num_draws)),
        "sigma": np.abs(rng.normal(size=(num_chains, num_draws))) + 1.0,
        "z": rng.normal(size=(num_chains, num_draws, 3)),
    }
    stats = {
        "diverging": np.zeros((num_chains, num_draws), bool),
        "energy": rng.normal(size=(num_chains, num_draws)),
    }
    return rng, posterior, stats


def test_summary_reports_each_problem_in_plain_english():
    rng, post, stats = _synthetic()
    post["sigma"] = post["sigma"] + 0.5 * np.arange(4)[:, None]  # chains disagree
    ar = np.zeros((4, 400))  # AR(1) with phi=0.99: ESS ~ 400 * 0.01 / 1.99 ~ 2 per chain
    for t in range(1, 400):
        ar[:, t] = 0.99 * ar[:, t - 1] + rng.normal(size=4)
    post["mu"] = ar
    post["z"][..., 1] += 0.5 * np.arange(4)[:, None]
    stats["diverging"][0, [3, 50, 70]] = True
    stats["energy"][1] = np.cumsum(rng.normal(size=400))  # random walk: E-BFMI << 0.3
    idata = to_inference_data(post, sample_stats=stats)
    res = summary(idata)
    text = " | ".join(res.problems)
    assert not res.ok
    assert "R-hat of 'sigma' is" in text and "(> 1.01): chains disagree" in text
    assert "ESS of 'mu' is" in text and "per chain (< 100)" in text
    assert "3 divergent transitions" in text
    assert "E-BFMI of chain 1" in text and "E-BFMI of chain 0" not in text
    assert "R-hat of 'z[1]'" in text and "'z[0]'" not in text
    assert res.num_divergences == 3
    md = res.to_markdown()
    assert "3 divergent transitions" in md
    # var_names restricts the checks; unknown names are an error naming the argument
    assert all("sigma" not in p for p in summary(idata, var_names=["z"]).problems)
    with pytest.raises(ValueError, match="var_names"):
        summary(idata, var_names=["nope"])
    with pytest.raises(ValueError, match="idata"):
        summary({"posterior": 1})


def test_vector_problems_are_grouped():
    _, post, stats = _synthetic()
    post["z"] = post["z"] + np.arange(4)[:, None, None]
    res = summary(to_inference_data(post, sample_stats=stats))
    z_probs = [p for p in res.problems if p.startswith("R-hat of 'z")]
    assert len(z_probs) == 1 and "in 3 of 3 elements" in z_probs[0]


def test_ebfmi_matches_definition():
    rng = np.random.default_rng(1)
    e = rng.normal(size=(3, 5000))
    ref = [np.sum(np.diff(c) ** 2) / np.sum((c - c.mean()) ** 2) for c in e]
    np.testing.assert_allclose(ebfmi(e), ref, rtol=1e-12)
    # white noise: E[(e_n - e_{n-1})^2] = 2 Var(e), so E-BFMI -> 2 (sd ~ 0.04 at N = 5000)
    assert np.all(np.abs(ebfmi(e) - 2.0) < 0.2)
    with pytest.raises(ValueError, match="energy"):
        ebfmi(np.zeros(10))


def _svi_idata(loss):
    rng = np.random.default_rng(0)
    post = xr.Dataset(
        {"mu": (("chain", "draw"), rng.normal(size=(1, 200)))},
        coords={"chain": [0], "draw": np.arange(200)},
    )
    stats = xr.Dataset({"loss": (("svi_step",), loss)})
    return make_result({"posterior": post, "sample_stats": stats}, {"method": "svi"})


def test_svi_loss_convergence_check():
    steps = np.arange(2000)
    rng = np.random.default_rng(2)
    converged = 100.0 + 50.0 * np.exp(-steps / 100.0) + rng.normal(scale=0.5, size=2000)
    res = summary(_svi_idata(converged))
    assert res.ok, res.problems
    assert res.elbo_rel_change < 0.01
    assert all("R-hat" not in n for n in res.notes)  # no MCMC checks for SVI
    still_going = 200.0 - 0.05 * steps  # ~8% drop over the last 10%
    res = summary(_svi_idata(still_going))
    assert any("SVI loss still changing" in p for p in res.problems)
    # reference: smoothed loss at the ends of the last 200 steps (window 40)
    tail = still_going[-200:]
    ref = abs(tail[-40:].mean() - tail[:40].mean()) / abs(tail[-40:].mean())
    assert res.elbo_rel_change == pytest.approx(ref, rel=1e-9)
    bad = converged.copy()
    bad[-1] = np.nan
    assert any("non-finite" in p for p in summary(_svi_idata(bad)).problems)
    with pytest.raises(ValueError, match="loss"):
        elbo_relative_change([1.0])


# issue 9: non-finite values were reported as "all checks passed"
def _idata(posterior, stats=None, attrs=None):
    idata = to_inference_data(posterior, sample_stats=stats)
    idata.attrs.update(attrs or {})
    return idata


@pytest.fixture(scope="module")
def healthy():
    rng = np.random.default_rng(3)
    post = {"mu": rng.normal(size=(2, 400)), "fixed": np.ones((2, 400))}
    stats = {"diverging": np.zeros((2, 400), bool), "energy": rng.normal(size=(2, 400))}
    return post, stats


def test_healthy_with_a_constant_variable_passes(healthy):
    res = summary(_idata(*healthy))
    assert res.ok, res.problems  # a constant site has NaN R-hat: not a problem


@pytest.mark.parametrize(
    "case, words",
    [
        ("inf_draw", ["non-finite posterior draws of 'mu'", "1 of 800"]),
        ("nan_energy", ["non-finite log-density", "'energy'", "E-BFMI of chain 0 cannot"]),
        ("one_draw", ["R-hat could not be computed", "ESS could not be computed"]),
        ("nan_diverging", ["'diverging' has 2 non-finite"]),
        ("nan_lp", ["non-finite log-density", "'lp'", "distinct from divergences"]),
        ("tree_depth", ["reached the maximum tree depth 6", "25.0%"]),
    ],
)
def test_non_finite_is_a_problem(healthy, case, words):
    post, stats = dict(healthy[0]), dict(healthy[1])
    attrs = {}
    if case == "inf_draw":
        post["mu"] = post["mu"].copy()
        post["mu"][1, 7] = np.inf
    elif case == "nan_energy":
        stats["energy"] = np.full((2, 400), np.nan)
    elif case == "one_draw":
        post, stats = {"mu": post["mu"][:, :1]}, {}
    elif case == "nan_diverging":
        stats["diverging"] = np.zeros((2, 400))
        stats["diverging"][0, :2] = np.nan
    elif case == "nan_lp":
        stats["lp"] = np.zeros((2, 400))
        stats["lp"][0, 5] = -np.inf
    elif case == "tree_depth":
        stats["tree_depth"] = np.tile([3, 4, 5, 6], (2, 100))
        attrs = {"options": json.dumps({"max_tree_depth": "6"})}
    res = summary(_idata(post, stats, attrs))
    assert not res.ok
    text = " ".join(res.problems)
    for word in words:
        assert word in text, (word, res.problems)
    assert "all checks passed" not in res.to_markdown()


@pytest.mark.parametrize("name", ["rhat_max", "ess_min_per_chain", "bfmi_min", "elbo_rtol"])
def test_nan_thresholds_are_refused(healthy, name):
    with pytest.raises(ValueError, match=f"{name}=nan"):
        summary(_idata(*healthy), **{name: float("nan")})


# issue 12, section 4: name the site of a non-finite log-density; SG-MCMC step-size advice
def test_non_finite_log_likelihood_names_the_site(healthy):
    post, stats = healthy
    ll = np.zeros((2, 400, 5))
    ll[1, 3, 2] = np.nan
    ll[0, 8, :] = -np.inf
    idata = to_inference_data(post, sample_stats=stats, log_likelihood={"counts": ll})
    res = summary(idata)
    [msg] = [p for p in res.problems if "log-likelihood" in p]
    assert "site 'counts' at 2 of 800 posterior draws" in msg and "6 of 4000" in msg
    assert summary(to_inference_data(post, log_likelihood={"counts": np.zeros_like(ll)})).ok


def _two_chains(shift, method):
    rng = np.random.default_rng(5)
    mu = rng.normal(size=(2, 400)) + np.array([[0.0], [shift]])
    return _idata({"mu": mu}, attrs={"method": method})


def test_sgmcmc_chains_that_disagree_get_step_size_advice():
    res = summary(_two_chains(3.0, "sgld"))
    [msg] = [p for p in res.problems if "step" in p]
    assert "SG-MCMC chains disagree" in msg and "'mu'" in msg
    assert "raise it" in msg and "lower it" in msg
    # NUTS: the ordinary R-hat message only; a mild disagreement (1.01 < R-hat < 1.1) in
    # SG-MCMC gets the ordinary message only too
    assert not any("SG-MCMC" in p for p in summary(_two_chains(3.0, "nuts")).problems)
    mild = summary(_two_chains(0.5, "sgld"))
    rhat = float(mild.table.loc["mu", "r_hat"])
    assert 1.01 < rhat < 1.1, rhat
    assert not any("SG-MCMC" in p for p in mild.problems)
    assert any("R-hat of 'mu'" in p for p in mild.problems)
