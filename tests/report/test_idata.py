"""Dims and coords: model_dims reads them from a model, to_inference_data applies them."""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import xarray as xr

from probdyn.report._arviz import group_names
from probdyn.report.idata import model_dims, to_inference_data

T = 6


def walk_model(y):
    """A latent random walk x (time leading event axis), noisy observations in a plate."""
    scale = numpyro.sample("scale", dist.HalfNormal(1.0))
    x = numpyro.sample("x", dist.GaussianRandomWalk(scale, num_steps=T))
    numpyro.deterministic("x_last", x[-1])
    with numpyro.plate("time_obs", T):
        numpyro.sample("y", dist.Normal(x, 1.0), obs=y)


def test_trajectory_axis_named_time_and_plates_named():
    dims, info = model_dims(walk_model, (jnp.zeros(T),))
    assert dims == {"scale": [], "x": ["time"], "x_last": [], "y": ["time_obs"]}
    assert info["y"]["is_observed"] and not info["x"]["is_observed"]
    assert info["x"]["event_ndim"] == 1 and info["x"]["shape"] == (T,)
    assert info["x_last"]["type"] == "deterministic"


def test_time_needs_matching_coords():
    times = np.linspace(0.0, 1.0, T)
    dims, _ = model_dims(walk_model, (jnp.zeros(T),), coords={"time": times})
    assert dims["x"] == ["time"]
    # coords["time"] of another length: do not guess, fall back to ArviZ's default name.
    dims, _ = model_dims(walk_model, (jnp.zeros(T),), coords={"time": times[:-1]})
    assert dims["x"] == ["x_dim_0"]


def test_user_dims_win_and_are_checked():
    dims, _ = model_dims(walk_model, (jnp.zeros(T),), dims={"x": ["t"], "y": ["t"]})
    assert dims["x"] == ["t"] and dims["y"] == ["t"]
    with pytest.raises(ValueError, match=r"dims\['x'\]"):
        model_dims(walk_model, (jnp.zeros(T),), dims={"x": ["t", "extra"]})
    with pytest.raises(ValueError, match="'nope'"):
        model_dims(walk_model, (jnp.zeros(T),), dims={"nope": ["t"]})
    with pytest.raises(ValueError, match=r"coords\['time_obs'\]"):
        model_dims(walk_model, (jnp.zeros(T),), coords={"time_obs": np.arange(T + 1)})


def test_event_dims_from_infer_and_state_only_when_told():
    def hmm_like(y):
        probs = numpyro.sample(
            "probs",
            dist.Dirichlet(jnp.ones(3)).expand([3]).to_event(1),
            infer={"event_dims": ["from_state", "state"]},
        )
        numpyro.deterministic("belief", jnp.tile(probs[0], (T, 1)))
        numpyro.sample("y", dist.Normal(0.0, 1.0).expand([T, 3]).to_event(2), obs=y)

    dims, _ = model_dims(hmm_like, (jnp.zeros((T, 3)),))
    assert dims["probs"] == ["from_state", "state"]
    # A trailing axis of size num_states is not guessed to be "state".
    assert dims["belief"] == ["belief_dim_0", "belief_dim_1"]
    assert dims["y"] == ["y_dim_0", "y_dim_1"]
    dims, _ = model_dims(hmm_like, (jnp.zeros((T, 3)),), dims={"belief": ["time", "state"]})
    assert dims["belief"] == ["time", "state"]


def test_to_inference_data_groups_dims_coords():
    rng = np.random.default_rng(0)
    times = np.linspace(0.0, 1.0, T)
    idata = to_inference_data(
        {"x": rng.normal(size=(2, 5, T)), "scale": rng.normal(size=(2, 5))},
        sample_stats={
            "diverging": np.zeros((2, 5), bool),
            "loss": xr.DataArray(np.arange(7.0), dims=("svi_step",)),
        },
        log_likelihood={"y": rng.normal(size=(2, 5, T))},
        posterior_predictive={"y": rng.normal(size=(2, 5, T))},
        observed_data={"y": np.zeros(T)},
        constant_data={"times": times},
        extra_groups={"svi_params": {"loc": np.zeros(3)}},
        dims={"x": ["time"], "y": ["time"], "times": ["time"]},
        coords={"time": times},
        attrs={"method": "test"},
    )
    assert set(group_names(idata)) == {
        "posterior",
        "sample_stats",
        "log_likelihood",
        "posterior_predictive",
        "observed_data",
        "constant_data",
        "svi_params",
    }
    assert idata.posterior["x"].dims == ("chain", "draw", "time")
    np.testing.assert_array_equal(idata.posterior["time"].values, times)
    np.testing.assert_array_equal(idata.posterior["chain"].values, [0, 1])
    assert idata.observed_data["y"].dims == ("time",)
    assert idata.sample_stats["loss"].dims == ("svi_step",)
    assert idata.svi_params["loc"].dims == ("loc_dim_0",)
    assert idata.attrs == {"method": "test"}


def test_to_inference_data_rejects_inconsistent_dims():
    with pytest.raises(ValueError, match="dim 'time' has length 4"):
        to_inference_data(
            {"a": np.zeros((1, 2, 3)), "b": np.zeros((1, 2, 4))},
            dims={"a": ["time"], "b": ["time"]},
        )
    with pytest.raises(ValueError, match=r"coords\['time'\]"):
        to_inference_data({"a": np.zeros((1, 2, 3))}, dims={"a": ["time"]}, coords={"time": [0]})
    with pytest.raises(ValueError, match="leading axes"):
        to_inference_data({"a": np.zeros(3)})


def _ou_paths(save_substeps=False):
    from probdyn.kernels.sde import SDE
    from probdyn.processes.sde import sde_path

    ou = SDE(lambda t, y, p: -y, lambda t, y, p: 0.5 * jnp.ones_like(y))

    def model():
        init = dist.Normal(jnp.zeros(2), 1.0).to_event(1)
        with numpyro.plate("series", 3):
            sde_path("x", ou, init, jnp.linspace(0.0, 1.0, T), None, substeps=2,
                     save_substeps=save_substeps)  # fmt: skip

    return model


def test_sde_path_dims_time_and_state_noise_auxiliary():
    model = _ou_paths()
    dims, info = model_dims(model)
    assert dims["x"] == ["series", "time", "x_state"]
    assert info["x_noise"]["auxiliary"] and not info["x"]["auxiliary"]
    assert not info["x_init"]["auxiliary"]
    times = np.linspace(0.0, 1.0, T)
    dims, _ = model_dims(model, coords={"time": times, "x_state": ["a", "b"]})
    assert dims["x"] == ["series", "time", "x_state"]
    # user dims win; coords that do not fit are an error naming the coordinate
    dims, _ = model_dims(model, dims={"x": ["series", "t", "component"]})
    assert dims["x"] == ["series", "t", "component"]
    with pytest.raises(ValueError, match=r"coords\['time'\].*'x'"):
        model_dims(model, coords={"time": times[:-1]})
    with pytest.warns(UserWarning, match="'tme'"):
        model_dims(model, coords={"tme": times})
    dims, _ = model_dims(_ou_paths(save_substeps=True))
    assert dims["x"] == ["series", "x_step", "x_state"]  # 2T - 1 points are not "time"


def test_auxiliary_variables_are_marked_and_left_out_of_summary():
    from probdyn.report.plots import select_plot_vars
    from probdyn.report.summary import summary

    rng = np.random.default_rng(3)
    idata = to_inference_data(
        {"mu": rng.normal(size=(2, 100)), "x_noise": rng.normal(size=(2, 100, 40))},
        auxiliary=["x_noise"],
    )
    assert idata.posterior["x_noise"].attrs["probdyn_role"] == "auxiliary"
    assert list(summary(idata).table.index) == ["mu"]
    assert len(summary(idata, var_names=["x_noise"]).table) == 40  # when asked for by name
    assert select_plot_vars(idata) == ["mu"]
