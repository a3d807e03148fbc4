"""The ArviZ version layer: the same calls on ArviZ 0.x (InferenceData) and 1.x (DataTree).

Files are compared with ones written by plain xarray in each version's own layout (0.x:
one ``Dataset.to_netcdf(group=...)`` per group after a root Dataset holding the attributes;
1.x: ``DataTree.to_netcdf``), so a file from either version is read on the installed one.
"""

import arviz as az
import numpy as np
import pytest
import xarray as xr

from probdyn.report import _arviz
from probdyn.report._arviz import (
    ARVIZ_1,
    Result,
    add_groups,
    as_result,
    from_netcdf,
    get_group,
    group_names,
    has_group,
    make_result,
    summary_table,
    to_netcdf,
)

ATTRS = {"method": "nuts", "seed": 3}


def _groups():
    rng = np.random.default_rng(0)
    post = xr.Dataset(
        {
            "mu": (("chain", "draw"), rng.normal(size=(2, 40))),
            "x": (("chain", "draw", "time"), rng.normal(size=(2, 40, 3)).astype(np.float32)),
        },
        coords={"chain": [0, 1], "draw": np.arange(40), "time": [0.0, 0.5, 1.5]},
    )
    stats = xr.Dataset(
        {"diverging": (("chain", "draw"), np.zeros((2, 40), bool))},
        coords={"chain": [0, 1], "draw": np.arange(40)},
    )
    obs = xr.Dataset({"y": (("time",), np.array([1, 0, 2]))}, coords={"time": [0.0, 0.5, 1.5]})
    return {"posterior": post, "sample_stats": stats, "observed_data": obs}


def _assert_same(result, groups, attrs):
    assert isinstance(result, Result)
    assert group_names(result) == list(groups)
    for name, ds in groups.items():
        got = get_group(result, name)
        assert isinstance(got, xr.Dataset)
        xr.testing.assert_identical(got, ds)
    assert dict(result.attrs) == attrs


def test_result_type_follows_installed_arviz():
    expected = xr.DataTree if int(az.__version__.split(".")[0]) >= 1 else az.InferenceData
    assert Result is expected and ARVIZ_1 == (expected is xr.DataTree)
    groups = _groups()
    result = make_result(groups, ATTRS)
    _assert_same(result, groups, ATTRS)
    assert has_group(result, "posterior") and not has_group(result, "prior")
    assert not has_group({"posterior": 1}, "posterior")


def test_errors_name_the_argument():
    with pytest.raises(TypeError, match="idata must be an ArviZ result.*dict"):
        group_names({"posterior": None})
    with pytest.raises(KeyError, match="no group 'prior'.*posterior"):
        get_group(make_result(_groups()), "prior")
    with pytest.raises(TypeError, match="group 'posterior' must be an xarray.Dataset"):
        make_result({"posterior": {"mu": np.zeros((1, 2))}})


def test_add_groups_adds_and_replaces():
    groups = _groups()
    result = make_result(groups, ATTRS)
    short = groups["posterior"].isel(draw=slice(0, 5))
    extra = xr.Dataset({"loc": (("k",), np.arange(2.0))})
    assert add_groups(result, {"posterior": short, "svi_params": extra}) is result
    assert set(group_names(result)) == {*groups, "svi_params"}
    xr.testing.assert_identical(get_group(result, "posterior"), short)
    xr.testing.assert_identical(get_group(result, "svi_params"), extra)


def test_netcdf_round_trip_and_file_released(tmp_path):
    groups = _groups()
    path = tmp_path / "r.nc"
    to_netcdf(make_result(groups, ATTRS), path)
    back = from_netcdf(path)
    _assert_same(back, groups, ATTRS)
    to_netcdf(back, path)  # read fully and closed: the same path can be rewritten
    _assert_same(from_netcdf(path), groups, ATTRS)
    _assert_same(as_result(str(path)), groups, ATTRS)


def _write_0x_layout(groups, attrs, path):
    """ArviZ 0.x's InferenceData.to_netcdf, with plain xarray."""
    xr.Dataset(attrs=attrs).to_netcdf(path, mode="w", engine="h5netcdf")
    for name, ds in groups.items():
        ds.to_netcdf(path, mode="a", group=name, engine="h5netcdf")


def _write_1x_layout(groups, attrs, path):
    """ArviZ 1.x's DataTree.to_netcdf, with plain xarray."""
    tree = xr.DataTree.from_dict(groups)
    tree.attrs.update(attrs)
    tree.to_netcdf(path, engine="h5netcdf")


@pytest.mark.parametrize("writer", [_write_0x_layout, _write_1x_layout])
def test_reads_files_of_either_version(tmp_path, writer):
    groups = _groups()
    path = tmp_path / "other.nc"
    writer(groups, ATTRS, path)
    _assert_same(from_netcdf(path), groups, ATTRS)
    # and arviz's own reader agrees on the groups
    assert group_names(az.from_netcdf(str(path))) == list(groups)


def test_as_result_converts_a_datatree():
    groups = _groups()
    tree = xr.DataTree.from_dict(groups)
    tree.attrs.update(ATTRS)
    _assert_same(as_result(tree), groups, ATTRS)
    result = make_result(groups, ATTRS)
    assert as_result(result) is result
    with pytest.raises(TypeError, match="obj must be an ArviZ result"):
        as_result(groups)


def test_summary_table_columns_and_rows():
    result = make_result(_groups())
    table = summary_table(result, ["mu", "x"])
    assert list(table.index) == ["mu", "x[0.0]", "x[0.5]", "x[1.5]"]  # coordinate labels
    assert {"mean", "sd", "ess_bulk", "ess_tail", "r_hat"} <= set(table.columns)
    draws = get_group(result, "posterior")["mu"].values
    assert float(table.loc["mu", "mean"]) == pytest.approx(draws.mean(), abs=0.01)


def test_plots_need_no_coordinates():
    """ArviZ 1.x's plots need an index on every dim; a result without coords still plots."""
    rng = np.random.default_rng(1)
    post = xr.Dataset({"theta": (("chain", "draw", "k"), rng.normal(size=(2, 30, 2)))})
    result = make_result({"posterior": post})
    fig = _arviz.plot_trace_figure(result, ["theta"], figsize=(6, 2))
    assert len(fig.axes) == 2
    fig = _arviz.plot_rank_into(result, ["theta"], 2, figsize=(6, 2))
    assert len(fig.axes) == 2


def test_report_accepts_a_datatree_and_a_result():
    """Either version's result object goes into probdyn.report (a DataTree also on 0.x)."""
    from probdyn.report import plot_rank, plot_trace, pointwise_log_predictive_density, summary

    rng = np.random.default_rng(2)
    groups = _groups()
    groups["log_likelihood"] = xr.Dataset(
        {"y": (("chain", "draw", "time"), rng.normal(size=(2, 40, 3)))},
        coords={"chain": [0, 1], "draw": np.arange(40), "time": [0.0, 0.5, 1.5]},
    )
    tree = xr.DataTree.from_dict(groups)
    tree.attrs.update(ATTRS)
    for obj in (tree, make_result(groups, ATTRS)):
        res = summary(obj)
        assert res.num_chains == 2 and res.num_draws == 40 and res.num_divergences == 0
        assert list(res.table.index)[:2] == ["mu", "x[0.0]"]
        lpd = pointwise_log_predictive_density(obj)
        assert lpd.dims == ("time",) and lpd.shape == (3,)
        assert len(plot_trace(obj, var_names=["mu"]).axes) == 2
        assert len(plot_rank(obj, var_names=["x"]).axes) == 3
