"""Tests for probdyn.report.plots: files are written, axes counted, bad shapes rejected."""

import numpy as np
import pytest

from probdyn.report.idata import to_inference_data
from probdyn.report.plots import (
    plot_predictive_bands,
    plot_rank,
    plot_sbc_ranks,
    plot_state_posterior,
    plot_trace,
    select_plot_vars,
)
from probdyn.report.sbc import SBCResult


def _written(path):
    return path.exists() and path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"


def test_predictive_bands(tmp_path):
    rng = np.random.default_rng(0)
    times = np.linspace(0, 1, 30)
    draws = rng.normal(size=(200, 30, 2))
    obs = rng.normal(size=(30, 2))
    fig = plot_predictive_bands(times, draws, obs, path=tmp_path / "bands.png")
    assert _written(tmp_path / "bands.png") and len(fig.axes) == 2
    # 1-d observations and xarray draws with (chain, draw, time)
    import xarray as xr

    da = xr.DataArray(rng.normal(size=(2, 50, 30)), dims=("chain", "draw", "time"))
    fig = plot_predictive_bands(times, da, obs[:, 0], levels=(0.9,))
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="draws"):
        plot_predictive_bands(times, draws[:, :10])
    with pytest.raises(ValueError, match="obs"):
        plot_predictive_bands(times, draws, obs[:, :1])
    with pytest.raises(ValueError, match="times"):
        plot_predictive_bands(times[:, None], draws)
    with pytest.raises(ValueError, match="levels"):
        plot_predictive_bands(times, draws, levels=(90,))


def test_state_posterior(tmp_path):
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(3), size=40)
    times = np.arange(40.0)
    fig = plot_state_posterior(
        times, probs, true_states=rng.integers(0, 3, 40), path=tmp_path / "s.png"
    )
    assert _written(tmp_path / "s.png") and len(fig.axes) == 2  # heatmap + colour bar
    with pytest.raises(ValueError, match="state_probs"):
        plot_state_posterior(times, probs[:10])
    with pytest.raises(ValueError, match="true_states"):
        plot_state_posterior(times, probs, true_states=np.zeros(5))


@pytest.fixture(scope="module")
def idata():
    rng = np.random.default_rng(2)
    return to_inference_data(
        {
            "mu": rng.normal(size=(2, 100)),
            "theta": rng.normal(size=(2, 100, 2)),
            "path": rng.normal(size=(2, 100, 50)),  # long trajectory: skipped by default
        }
    )


def test_trace_and_rank(tmp_path, idata):
    assert select_plot_vars(idata) == ["mu", "theta"]
    fig = plot_trace(idata, tmp_path / "trace.png")
    assert _written(tmp_path / "trace.png") and len(fig.axes) == 4  # 2 vars x (kde, trace)
    fig = plot_rank(idata, tmp_path / "rank.png")
    assert _written(tmp_path / "rank.png") and len(fig.axes) == 3  # mu, theta[0], theta[1]
    fig = plot_rank(idata, var_names=["mu"])
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="idata"):
        plot_trace({"mu": 1}, tmp_path / "x.png")


def test_sbc_ranks_plot(tmp_path):
    rng = np.random.default_rng(3)
    res = SBCResult(
        param_names=["a", "b", "c", "d", "e"],
        ranks=rng.integers(0, 20, size=(50, 5)),
        prior_draws=np.zeros((50, 5)),
        num_posterior_draws=19,
        num_bins=5,
        pvalues=np.full(5, 0.5),
    )
    fig = plot_sbc_ranks(res, tmp_path / "sbc.png")
    assert _written(tmp_path / "sbc.png") and len(fig.axes) == 5
    res.ranks = res.ranks[:, 0]
    with pytest.raises(ValueError, match="ranks"):
        plot_sbc_ranks(res)


def _pp_idata(rng):
    """A fit-like result: y with dims (chain, draw, time, obs_dim) and observed data."""
    times = np.linspace(0.0, 2.0, 12)
    return to_inference_data(
        posterior={"mu": rng.normal(size=(2, 40))},
        posterior_predictive={
            "y": rng.normal(size=(2, 40, 12, 2)),
            "z": rng.integers(0, 3, size=(2, 40, 12)),
            "p": rng.dirichlet(np.ones(3), size=(2, 40, 12)),
        },
        observed_data={"y": rng.normal(size=(12, 2))},
        coords={"time": times, "channel": ["a", "b"], "state": [0, 1, 2]},
        dims={"y": ["time", "channel"], "z": ["time"], "p": ["time", "state"]},
    )


def test_predictive_bands_idata_first(tmp_path):
    rng = np.random.default_rng(4)
    idata = _pp_idata(rng)
    fig = plot_predictive_bands(idata, "y", path=tmp_path / "b.png")
    assert _written(tmp_path / "b.png") and len(fig.axes) == 2
    y = idata.posterior_predictive["y"].values.reshape(80, 12, 2)
    obs = idata.observed_data["y"].values
    times = idata.posterior_predictive["time"].values
    for d, ax in enumerate(fig.axes):
        median, dots = ax.lines[0], ax.lines[1]
        np.testing.assert_allclose(median.get_xdata(), times)
        np.testing.assert_allclose(median.get_ydata(), np.median(y[:, :, d], axis=0))
        np.testing.assert_allclose(dots.get_ydata(), obs[:, d])  # observed_data by default
        assert ax.get_title() == f"channel = {'ab'[d]}"
    # coords selects a dim away; obs=False leaves the dots out
    fig = plot_predictive_bands(idata, "y", obs=False, coords={"channel": "b"})
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 1
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), np.median(y[:, :, 1], axis=0))
    # a posterior variable is found when there is no predictive one
    post = to_inference_data(posterior={"x": rng.normal(size=(1, 30, 7))}, dims={"x": ["time"]})
    assert len(plot_predictive_bands(post, "x").axes) == 1
    with pytest.raises(ValueError, match="var_name='nope'"):
        plot_predictive_bands(idata, "nope")
    with pytest.raises(ValueError, match="group='prior'"):
        plot_predictive_bands(idata, "y", group="prior")
    with pytest.raises(TypeError, match="var_name"):
        plot_predictive_bands(idata)
    with pytest.raises(TypeError, match="idata"):
        plot_predictive_bands(np.arange(12.0), "y")


def test_state_posterior_idata_first():
    rng = np.random.default_rng(5)
    idata = _pp_idata(rng)
    # integer state draws -> frequency of each state
    fig = plot_state_posterior(idata, "z")
    z = idata.posterior_predictive["z"].values.reshape(80, 12)
    freq = (z[..., None] == np.arange(3)).mean(0)
    np.testing.assert_allclose(fig.axes[0].collections[0].get_array().reshape(3, 12), freq.T)
    # per-draw probabilities -> their mean
    fig = plot_state_posterior(idata, "p", true_states=np.zeros(12, int))
    mean = idata.posterior_predictive["p"].values.mean((0, 1))
    np.testing.assert_allclose(fig.axes[0].collections[0].get_array().reshape(3, 12), mean.T)
    with pytest.raises(ValueError, match="dims"):
        plot_state_posterior(idata, "y", coords={"channel": "a"})  # floats, no state dim
