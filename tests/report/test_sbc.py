"""Tests for probdyn.report.sbc: rank statistics against brute force, the chi-squared test
on exact conjugate posteriors, and the full loop with a stand-in and with the real fit."""

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from probdyn.report.idata import to_inference_data
from probdyn.report.sbc import (
    SBCResult,
    default_num_bins,
    rank_statistics,
    rank_uniformity_pvalues,
    sbc,
)

NUM_OBS = 5


def conjugate_model(y=None, prior_scale=1.0):
    """mu ~ N(0, prior_scale^2), y_i ~ N(mu, 1): posterior N(sum y / (n + 1/s^2), ...)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, prior_scale))
    with numpyro.plate("time", NUM_OBS):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def _exact_posterior(y, prior_scale, size, rng, width=1.0):
    prec = y.shape[-1] + 1.0 / prior_scale**2
    mean = y.sum(-1) / prec
    return mean + width * rng.standard_normal(size) / np.sqrt(prec)


def test_rank_statistics_bruteforce_and_ties():
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(6, 2))
    draws = rng.normal(size=(6, 9, 2))
    ranks = rank_statistics(theta, draws)
    ref = [[sum(d < theta[r, j] for d in draws[r, :, j]) for j in range(2)] for r in range(6)]
    np.testing.assert_array_equal(ranks, ref)
    # discrete parameter: all draws tie with the truth -> rank uniform on {0..L}
    tied = rank_statistics(np.zeros((20000, 1)), np.zeros((20000, 4, 1)), seed=1)
    counts = np.bincount(tied[:, 0], minlength=5)
    assert set(np.unique(tied)) == {0, 1, 2, 3, 4}
    assert np.all(np.abs(counts - 4000) < 4 * np.sqrt(20000 * 0.2 * 0.8))
    with pytest.raises(ValueError, match="posterior_draws"):
        rank_statistics(theta, draws[:, :, :1])


def test_default_num_bins_and_pvalue_reference():
    assert default_num_bins(30, 99) == 5
    assert default_num_bins(1000, 99) == 20
    assert default_num_bins(40, 6) == 7
    # reference: scipy chisquare on hand-binned counts (L = 9: 10 ranks, 5 bins of 2)
    ranks = np.array([[0], [1], [2], [2], [3], [9], [9], [9], [5], [4]])
    p = rank_uniformity_pvalues(ranks, 9, num_bins=5)
    counts = [2, 3, 2, 0, 3]
    from scipy.stats import chisquare

    assert p[0] == pytest.approx(chisquare(counts).pvalue)
    # unequal bins (L = 4: 5 ranks in 2 bins of 3 and 2) use proportional expectations
    p2 = rank_uniformity_pvalues(np.array([[0], [1], [2], [3], [4]]), 4, num_bins=2)
    assert p2[0] == pytest.approx(chisquare([3, 2], [3.0, 2.0]).pvalue)
    with pytest.raises(ValueError, match="ranks"):
        rank_uniformity_pvalues(np.array([[12]]), 9)


def test_uniformity_on_exact_conjugate_posterior():
    rng = np.random.default_rng(2)
    num_reps, num_draws = 500, 99
    mu = rng.normal(size=num_reps)
    y = mu[:, None] + rng.normal(size=(num_reps, NUM_OBS))
    good = _exact_posterior(y[:, None, :], 1.0, (num_reps, num_draws), rng)
    narrow = _exact_posterior(y[:, None, :], 1.0, (num_reps, num_draws), rng, width=0.5)
    p_good = rank_uniformity_pvalues(rank_statistics(mu[:, None], good[..., None]), num_draws)
    p_bad = rank_uniformity_pvalues(rank_statistics(mu[:, None], narrow[..., None]), num_draws)
    assert p_good[0] > 0.01
    assert p_bad[0] < 1e-6


def _exact_fit(model, *args, method, model_kwargs, seed, num_chains, num_samples, **opts):
    """Stand-in for probdyn.infer.fit: exact conjugate posterior as InferenceData."""
    rng = np.random.default_rng(seed)
    y = np.asarray(model_kwargs["y"])
    scale = model_kwargs.get("prior_scale", 1.0)
    mu = _exact_posterior(y, scale, (num_chains, num_samples), rng)
    idata = to_inference_data({"mu": mu})
    idata.attrs["method"] = method
    return idata


def test_sbc_loop_with_exact_stand_in_fit(tmp_path):
    res = sbc(
        conjugate_model,
        num_replicates=200,
        num_posterior_draws=19,
        thin=3,
        seed=3,
        fit_fn=_exact_fit,
        progress_bar=False,
        num_chains=2,
    )
    assert isinstance(res, SBCResult)
    assert res.param_names == ["mu"] and res.ranks.shape == (200, 1)
    assert res.ranks.min() >= 0 and res.ranks.max() <= 19
    assert res.pvalues[0] > 0.01 and res.failed() == []
    fig = res.plot(tmp_path / "sbc.png")
    assert (tmp_path / "sbc.png").stat().st_size > 0 and len(fig.axes) == 1
    assert "| mu |" in res.to_markdown()


def test_sbc_detects_wrong_prior_with_stand_in():
    def fit_wrong(model, *args, model_kwargs, **kw):
        return _exact_fit(model, *args, model_kwargs={**model_kwargs, "prior_scale": 0.3}, **kw)

    res = sbc(
        conjugate_model,
        num_replicates=200,
        num_posterior_draws=19,
        seed=4,
        fit_fn=fit_wrong,
        progress_bar=False,
    )
    assert res.pvalues[0] < 0.01 and res.failed() == ["mu"]


def test_sbc_argument_errors():
    with pytest.raises(ValueError, match="obs_sites"):
        sbc(
            conjugate_model,
            obs_sites=("z",),
            obs_kwargs={"z": "y"},
            fit_fn=_exact_fit,
            progress_bar=False,
        )
    with pytest.raises(ValueError, match="obs_kwargs"):
        sbc(conjugate_model, obs_kwargs={"y": "data"}, fit_fn=_exact_fit, progress_bar=False)
    with pytest.raises(ValueError, match="params"):
        sbc(conjugate_model, params=["sigma"], fit_fn=_exact_fit, progress_bar=False)
    with pytest.raises(ValueError, match="num_replicates"):
        sbc(conjugate_model, num_replicates=0, fit_fn=_exact_fit, progress_bar=False)
    with pytest.raises(ValueError, match="vectorized"):
        sbc(conjugate_model, method="svi", vectorized=True)
    # issue 9: num_bins=0 silently used the default; seed=-1 failed deep inside JAX
    for bad in (0, 1, 2.5, True, 101):
        with pytest.raises(ValueError, match=f"num_bins={bad!r}"):
            sbc(conjugate_model, num_bins=bad, fit_fn=_exact_fit, progress_bar=False)
    for bad in (-1, 2**32, 1.5):
        with pytest.raises(ValueError, match=f"seed={bad!r}"):
            sbc(conjugate_model, seed=bad, fit_fn=_exact_fit, progress_bar=False)
    with pytest.raises(ValueError, match="num_bins must be in"):
        rank_uniformity_pvalues(np.zeros((10, 1), int), 9, num_bins=0)


def _fit_model_wrong_prior(y=None, prior_scale=1.0):
    conjugate_model(y=y, prior_scale=0.1)


_NUTS = dict(num_replicates=50, num_posterior_draws=19, thin=2, num_warmup=150)


def test_sbc_vectorized_nuts_calibrated_and_wrong_prior():
    good = sbc(conjugate_model, seed=5, vectorized=True, **_NUTS)
    assert good.ranks.shape == (50, 1) and good.extra["num_divergences"].shape == (50,)
    assert good.pvalues[0] > 0.01, good.to_markdown()
    bad = sbc(conjugate_model, seed=5, vectorized=True, fit_model=_fit_model_wrong_prior, **_NUTS)
    assert bad.pvalues[0] < 0.01, bad.to_markdown()
    with pytest.raises(TypeError, match="chain_method"):
        sbc(conjugate_model, vectorized=True, chain_method="vectorized", **_NUTS)


@pytest.mark.slow
def test_sbc_nuts_via_fit_calibrated_and_wrong_prior():
    pytest.importorskip("probdyn.infer.fit")
    good = sbc(conjugate_model, seed=5, progress_bar=False, **_NUTS)
    assert good.pvalues[0] > 0.01, good.to_markdown()
    bad = sbc(
        conjugate_model, seed=5, progress_bar=False, fit_model=_fit_model_wrong_prior, **_NUTS
    )
    assert bad.pvalues[0] < 0.01, bad.to_markdown()


X_REG = np.array([[1.0, -1.0], [1.0, -0.5], [1.0, 0.0], [1.0, 0.5], [1.0, 1.0]])


def regression_model(y=None):
    """w ~ N(0, I_2), y ~ N(X w, 1): a correlated Gaussian posterior, exact for an MVN guide."""
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    with numpyro.plate("time", X_REG.shape[0]):
        numpyro.sample("y", dist.Normal(X_REG @ w, 1.0), obs=y)


@pytest.mark.slow
def test_sbc_svi_mvn_calibrated():
    res = sbc(
        regression_model,
        method="svi",
        seed=11,
        num_replicates=60,
        num_posterior_draws=49,
        thin=1,
        progress_bar=False,
        guide="mvn",
        num_steps=1500,
        learning_rate=0.02,
        num_particles=4,
    )
    assert res.ranks.shape == (60, 2)
    assert np.all(res.pvalues > 0.01), res.to_markdown()


@pytest.mark.slow
def test_sbc_sgld_calibrated():
    # posterior precision is NUM_OBS + 1 = 6; step 2e-3 gives hP/2 = 0.6% variance inflation
    res = sbc(
        conjugate_model,
        method="sgld",
        seed=12,
        num_replicates=60,
        num_posterior_draws=49,
        thin=40,
        progress_bar=False,
        num_warmup=1000,
        step_size=2e-3,
    )
    assert np.all(res.pvalues > 0.01), res.to_markdown()
