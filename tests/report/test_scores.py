"""Tests for probdyn.report.scores against closed forms and brute force."""

import itertools

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from probdyn.report.scores import (
    crps,
    interval_coverage,
    lpd,
    pointwise_log_predictive_density,
)


def _crps_bruteforce(x, y, fair=False):
    """O(S^2) energy-form CRPS for 1-d draws x and a scalar y."""
    s = len(x)
    pair = sum(abs(a - b) for a, b in itertools.product(x, x))
    denom = s * (s - 1) if fair else s * s
    return np.mean(np.abs(x - y)) - 0.5 * pair / denom


def _crps_gaussian(mu, s, y):
    z = (y - mu) / s
    return s * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))


@pytest.mark.parametrize("fair", [False, True])
def test_crps_matches_bruteforce_small_sample(fair):
    rng = np.random.default_rng(0)
    draws = rng.standard_t(3, size=(7, 5, 2))
    obs = rng.normal(size=(5, 2))
    res = crps(draws, obs, fair=fair)
    ref = np.array(
        [[_crps_bruteforce(draws[:, t, d], obs[t, d], fair) for d in range(2)] for t in range(5)]
    )
    np.testing.assert_allclose(res.pointwise, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(res.per_step, ref.mean(axis=1), rtol=1e-12)
    assert res.mean == pytest.approx(ref.mean(), rel=1e-12)


def test_crps_matches_gaussian_closed_form():
    rng = np.random.default_rng(1)
    num_draws = 20_000
    mu = np.array([0.0, 1.0, -2.0, 0.5])
    s = np.array([1.0, 0.5, 2.0, 3.0])
    y = np.array([0.3, 2.5, -2.0, -4.0])
    draws = mu + s * rng.standard_normal((num_draws, 4))
    res = crps(draws, y, fair=True)
    exact = _crps_gaussian(mu, s, y)
    # MC standard error of the U-statistic from its first-order projection
    # h1(x) = |x - y| - E|x - X'|, with E|x - X'| known in closed form for a Gaussian.
    z = (draws - mu) / s
    g = s * (2 * stats.norm.pdf(z) + z * (2 * stats.norm.cdf(z) - 1))
    se = np.std(np.abs(draws - y) - g, axis=0) / np.sqrt(num_draws)
    assert np.all(np.abs(res.pointwise - exact) < 4 * se)
    # the non-fair estimator carries a known O(1/S) bias: E|X - X'| / (2 S) = s / (sqrt(pi) S)
    biased = crps(draws, y).pointwise
    assert np.all(np.abs(biased - exact - s / (np.sqrt(np.pi) * num_draws)) < 4 * se)


def test_crps_accepts_xarray_and_handles_nan():
    rng = np.random.default_rng(2)
    vals = rng.normal(size=(2, 3, 4))
    da = xr.DataArray(vals, dims=("chain", "draw", "time"))
    obs = np.array([0.0, np.nan, 1.0, -1.0])
    res = crps(da, obs)
    ref = crps(vals.reshape(6, 4), obs)
    np.testing.assert_allclose(res.pointwise, ref.pointwise)
    assert np.isnan(res.pointwise[1]) and np.isnan(res.per_step[1])
    assert res.mean == pytest.approx(np.nanmean(ref.pointwise))


def test_crps_bad_shapes_raise():
    with pytest.raises(ValueError, match="draws"):
        crps(np.zeros((10, 3)), np.zeros(4))
    with pytest.raises(ValueError, match="obs"):
        crps(np.zeros((10,)), 0.0)
    with pytest.raises(ValueError, match="fair"):
        crps(np.zeros((1, 3)), np.zeros(3), fair=True)


def test_interval_coverage_calibrated_gaussian():
    rng = np.random.default_rng(3)
    num_timesteps, num_draws = 4000, 2000
    obs = rng.standard_normal(num_timesteps)
    draws = rng.standard_normal((num_draws, num_timesteps))
    res = interval_coverage(draws, obs, levels=(0.5, 0.9))
    assert res.lower.shape == res.upper.shape == res.covered.shape == (2, num_timesteps)
    assert res.per_step.shape == (2, num_timesteps)
    for k, level in enumerate((0.5, 0.9)):
        # quantile estimates from 2000 draws add a little spread: the interval's true
        # probability content has sd ~ sqrt(l (1 - l) / S); the binomial sd over T dominates
        sd = np.sqrt(level * (1 - level) / num_timesteps + level * (1 - level) / num_draws)
        assert abs(res.overall[k] - level) < 4 * sd


def test_interval_coverage_matches_bruteforce_and_miscalibration():
    rng = np.random.default_rng(4)
    draws = rng.normal(size=(101, 6, 2))
    obs = rng.normal(scale=3.0, size=(6, 2))
    res = interval_coverage(draws, obs, levels=(0.8,))
    for t, d in itertools.product(range(6), range(2)):
        lo, hi = np.percentile(draws[:, t, d], [10, 90])
        assert res.lower[0, t, d] == pytest.approx(lo)
        assert res.covered[0, t, d] == (lo <= obs[t, d] <= hi)
    np.testing.assert_allclose(res.per_step[0], res.covered[0].mean(axis=1))
    # too-narrow forecast for data with sd 3: coverage well below nominal
    many = interval_coverage(
        rng.normal(size=(500, 3000)), rng.normal(scale=3.0, size=3000), levels=(0.9,)
    )
    assert many.overall[0] < 0.5
    with pytest.raises(ValueError, match="levels"):
        interval_coverage(draws, obs, levels=(1.2,))


def test_lpd_logmeanexp_stable():
    rng = np.random.default_rng(5)
    ll = rng.normal(size=(50, 3))
    np.testing.assert_allclose(lpd(ll), np.log(np.mean(np.exp(ll), axis=0)), rtol=1e-12)
    # very negative log-likelihoods: naive exp underflows, log-mean-exp does not
    big = ll - 2000.0
    np.testing.assert_allclose(lpd(big), lpd(ll) - 2000.0, rtol=1e-12)
    assert np.all(np.isfinite(lpd(big)))
    np.testing.assert_allclose(lpd(np.full((10, 2), -3.5)), [-3.5, -3.5])


def test_pointwise_lpd_from_idata():
    from probdyn.report import to_inference_data

    rng = np.random.default_rng(6)
    ll = rng.normal(size=(2, 30, 5))
    idata = to_inference_data(
        {"mu": rng.normal(size=(2, 30))},
        log_likelihood={"y": ll},
        dims={"y": ["time"]},
        coords={"time": np.arange(5) * 0.1},
    )
    out = pointwise_log_predictive_density(idata)
    assert out.dims == ("time",)
    np.testing.assert_allclose(out.values, np.log(np.mean(np.exp(ll), axis=(0, 1))))
    with pytest.raises(ValueError, match="var_name"):
        pointwise_log_predictive_density(idata, "z")
