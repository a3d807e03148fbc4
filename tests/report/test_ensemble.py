"""Rollout-ensemble metrics against hand computations, scipy.stats.norm and Monte Carlo."""

import numpy as np
import pytest
from scipy import stats

from probdyn.report import METRIC_NAMES, calibration_curve, rollout_metrics


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(4, 2, 3, 5))  # (S, N, T, X)
    truth = rng.normal(size=(2, 3, 5))
    return samples, truth


def test_tiny_ensemble_matches_hand_computation(tiny):
    samples, truth = tiny
    m = rollout_metrics(samples, truth)
    S, N, T, X = samples.shape
    for t in range(T):
        x = samples[:, :, t].reshape(S, -1)
        y = truth[:, t].reshape(-1)
        mu, sd = x.mean(0), x.std(0, ddof=1)
        np.testing.assert_allclose(m["nll_per_step"][t], -stats.norm.logpdf(y, mu, sd).mean())
        np.testing.assert_allclose(m["rmse_per_step"][t], np.sqrt(np.mean((y - mu) ** 2)))
        pair = np.abs(x[:, None] - x[None, :]).mean(axis=(0, 1))  # brute-force E|X - X'|
        np.testing.assert_allclose(
            m["crps_per_step"][t], np.mean(np.abs(x - y).mean(0) - 0.5 * pair)
        )
        for q in (0.5, 0.9):
            lo, hi = stats.norm.interval(q, mu, sd)
            np.testing.assert_allclose(
                m[f"coverage_{round(100 * q)}_per_step"][t], np.mean((lo <= y) & (y <= hi))
            )
        spread = np.sqrt(np.mean(sd**2))
        np.testing.assert_allclose(
            m["spread_skill_per_step"][t], spread / np.sqrt(np.mean((y - mu) ** 2))
        )
        levels = (np.arange(100) + 0.5) / 100
        observed = np.array([np.mean(y <= stats.norm.ppf(p, mu, sd)) for p in levels])
        np.testing.assert_allclose(m["ece_per_step"][t], np.mean(np.abs(observed - levels)))
        corr = np.mean([np.corrcoef(samples[:, n, t].mean(0), truth[n, t])[0, 1] for n in range(N)])
        np.testing.assert_allclose(m["correlation_per_step"][t], corr)
    for name in METRIC_NAMES[:-1]:
        if name != "ece":
            np.testing.assert_allclose(m[name], np.mean(m[f"{name}_per_step"]))
        assert isinstance(m[name], float)
    # ECE pools every value into one calibration curve.
    levels, observed = calibration_curve(samples, truth)
    mu, sd = samples.mean(0), samples.std(0, ddof=1)
    hand = np.array([np.mean(truth <= stats.norm.ppf(p, mu, sd)) for p in levels])
    np.testing.assert_allclose(observed, hand)
    np.testing.assert_allclose(m["ece"], np.mean(np.abs(hand - levels)))
    assert levels.shape == (100,) and np.isclose(levels[0], 0.005)


def _calibrated(scale=1.0, shape=(20, 10, 50), num_samples=32, seed=1):
    """An ensemble with exactly mean mu and sd sigma per point, truth ~ N(mu, (scale sigma)^2)."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=shape)
    sigma = rng.uniform(0.5, 2.0, size=shape)
    e = rng.normal(size=(num_samples,) + shape)
    e = (e - e.mean(0)) / e.std(0, ddof=1)
    samples = mu + sigma * e
    truth = mu + scale * sigma * rng.normal(size=shape)
    return samples, truth, sigma


def test_calibrated_gaussian_ensemble():
    samples, truth, sigma = _calibrated()
    m = rollout_metrics(samples, truth)
    num_values = truth.size  # 10,000
    # E[ECE] ~ sqrt(2/pi) * mean_p sqrt(p(1-p)/M) ~ 0.003 here; 0.01 is ~3x that.
    assert m["ece"] < 0.01
    for q in (0.5, 0.9):
        mc_sd = np.sqrt(q * (1 - q) / num_values)
        assert abs(m[f"coverage_{round(100 * q)}"] - q) < 4 * mc_sd
    # E[NLL] = E[0.5 log(2 pi sigma^2)] + 1/2; the z^2 term has sd sqrt(2)/2 / sqrt(M).
    expected = np.mean(0.5 * np.log(2 * np.pi * sigma**2)) + 0.5
    assert abs(m["nll"] - expected) < 4 * np.sqrt(0.5 / num_values)
    assert abs(m["spread_skill"] - 1) < 0.05
    # The same ensemble, twice too narrow, is visibly miscalibrated.
    narrow = rollout_metrics(samples, samples.mean(0) + 2 * (truth - samples.mean(0)))
    assert narrow["ece"] > 0.1 and narrow["coverage_90"] < 0.7 and narrow["spread_skill"] < 0.6


def test_correlation_time():
    x = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    phases = np.array([0.0, 1.0, 2.0])
    shift = 0.2 * np.arange(8)  # correlation cos(shift): 0.825 at t=3, 0.697 at t=4
    truth = np.sin(x[None, None, :] + phases[:, None, None]) + 0 * shift[None, :, None]
    pred = np.sin(x[None, None, :] + phases[:, None, None] + shift[None, :, None])
    samples = np.stack([pred - 0.1, pred + 0.1])
    m = rollout_metrics(samples, truth)
    np.testing.assert_allclose(m["correlation_per_step"], np.cos(shift), atol=1e-12)
    assert m["correlation_time"] == 4.0
    assert rollout_metrics(samples, truth, correlation_threshold=0.5)["correlation_time"] == 6.0
    assert rollout_metrics(samples, truth, correlation_threshold=-1.0)["correlation_time"] == 8.0
    # without space axes the correlation is undefined
    assert np.isnan(rollout_metrics(samples[..., 0], truth[..., 0])["correlation_time"])


def test_time_axis_and_point_ensembles(tiny):
    samples, truth = tiny
    m = rollout_metrics(samples, truth)
    swapped = rollout_metrics(np.swapaxes(samples, 2, 3), np.swapaxes(truth, 1, 2), time_axis=2)
    for key, value in m.items():
        np.testing.assert_allclose(swapped[key], value)
    single = rollout_metrics(samples[:1], truth)  # a deterministic model: zero spread
    assert single["nll"] == np.inf and single["spread_skill"] == 0.0
    assert single["coverage_90"] == 0.0  # continuous truth never hits the point forecast
    np.testing.assert_allclose(single["crps"], np.mean(np.abs(samples[0] - truth)))


def test_non_finite_samples_give_nan(tiny):
    samples, truth = tiny
    bad = samples.copy()
    bad[1, 0, 2, 3] = np.nan
    m = rollout_metrics(bad, truth)
    for name in ("nll", "rmse", "crps", "coverage_50", "coverage_90", "ece", "spread_skill"):
        assert np.isnan(m[name]), name
        assert np.isnan(m[f"{name}_per_step"][2]) and np.isfinite(m[f"{name}_per_step"][0]), name
    # the diverged step counts as decorrelated, whatever the threshold
    assert rollout_metrics(bad, truth, correlation_threshold=-1.0)["correlation_time"] == 2.0
    assert np.isnan(calibration_curve(bad, truth)[1]).all()


def test_invalid_arguments(tiny):
    samples, truth = tiny
    with pytest.raises(ValueError, match="samples must have shape"):
        rollout_metrics(samples[:, :1], truth)
    with pytest.raises(ValueError, match="truth must have shape"):
        rollout_metrics(samples[:, 0, 0, 0], truth[0, 0, 0])
    with pytest.raises(ValueError, match="truth must be finite"):
        rollout_metrics(samples, np.where(truth > 1, np.nan, truth))
    with pytest.raises(ValueError, match="time_axis"):
        rollout_metrics(samples, truth, time_axis=0)
    with pytest.raises(ValueError, match="time_axis"):
        rollout_metrics(samples, truth, time_axis=5)
    with pytest.raises(ValueError, match="num_levels"):
        calibration_curve(samples, truth, num_levels=1)
    with pytest.raises(ValueError, match="correlation_threshold"):
        rollout_metrics(samples, truth, correlation_threshold=2.0)


def test_tables_json_and_plots(tiny, tmp_path):
    import json

    from probdyn.report import (
        metrics_table,
        plot_calibration_curves,
        plot_metrics_vs_horizon,
        scalar_metrics,
    )

    samples, truth = tiny
    results = {"a": rollout_metrics(samples, truth), "b": rollout_metrics(samples[:2], truth)}
    table = metrics_table(results, names=("rmse", "ece"))
    lines = table.split("\n")
    assert lines[0] == "| method | rmse | ece |" and len(lines) == 4
    assert lines[2] == f"| a | {results['a']['rmse']:.3g} | {results['a']['ece']:.3g} |"
    scalars = scalar_metrics(results["a"])
    assert list(scalars) == list(METRIC_NAMES)
    assert json.loads(json.dumps(scalars)) == scalars
    fig = plot_calibration_curves(
        {k: calibration_curve(s, truth) for k, s in [("a", samples), ("b", samples[:2])]},
        path=tmp_path / "cal.png",
    )
    assert (tmp_path / "cal.png").stat().st_size > 1000 and len(fig.axes[0].lines) == 3
    fig = plot_metrics_vs_horizon(results, times=[0.1, 0.2, 0.3], path=tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 1000 and len(fig.axes) == 4
    with pytest.raises(ValueError, match="missing"):
        metrics_table({"a": {"rmse": 1.0}})
    with pytest.raises(ValueError, match="no 'nll_per_step'"):
        plot_metrics_vs_horizon({"a": {"rmse_per_step": np.ones(3)}})
