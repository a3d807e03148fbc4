"""The one place that knows which ArviZ is installed.

ArviZ 0.x (Python 3.11) calls a fit's result an :class:`arviz.InferenceData`; ArviZ 1.x
(Python >= 3.12) uses :class:`xarray.DataTree` with one child node per group. Everything
else in probdyn goes through the helpers here, so both are accepted everywhere and the
result follows the installed ArviZ. Groups always come back as :class:`xarray.Dataset`.

Both write the same netCDF layout (one netCDF group per ArviZ group, the result's
attributes at the root), so a file saved under either version reads under the other.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import xarray as xr
from scipy.special import logsumexp

__all__ = [
    "psislw",
    "ARVIZ_1",
    "Result",
    "add_groups",
    "as_result",
    "from_netcdf",
    "get_group",
    "group_names",
    "has_group",
    "is_result",
    "make_result",
    "plot_rank_into",
    "plot_trace_figure",
    "summary_table",
    "to_netcdf",
]

#: True when ArviZ 1.x (DataTree based) is installed.
ARVIZ_1: bool = int(az.__version__.split(".")[0]) >= 1

#: The installed ArviZ's result type: ``arviz.InferenceData`` on 0.x, ``xarray.DataTree`` on 1.x.
Result = xr.DataTree if ARVIZ_1 else az.InferenceData

_ENGINE = "h5netcdf"


def is_result(obj: Any) -> bool:
    """Whether ``obj`` is an ArviZ result of either version (InferenceData or DataTree)."""
    return isinstance(obj, xr.DataTree) or (not ARVIZ_1 and isinstance(obj, az.InferenceData))


def _check(obj: Any, argname: str = "idata") -> None:
    if not is_result(obj):
        raise TypeError(
            f"{argname} must be an ArviZ result (arviz.InferenceData or xarray.DataTree); "
            f"got {type(obj).__name__}"
        )


def make_result(
    group_data: Mapping[str, xr.Dataset], attrs: Mapping[str, Any] | None = None
) -> Any:
    """The installed ArviZ's result from ``{group name: Dataset}`` and root attributes.

    Parameters
    ----------
    group_data : dict of str to xarray.Dataset
        Groups in the order given (e.g. ``posterior``, ``sample_stats``).
    attrs : dict, optional
        Attributes of the result (strings or numbers, so they survive netCDF).

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
        :data:`Result` of the installed ArviZ.
    """
    for name, ds in group_data.items():
        if not isinstance(ds, xr.Dataset):
            raise TypeError(f"group {name!r} must be an xarray.Dataset; got {type(ds).__name__}")
    if ARVIZ_1:
        out = xr.DataTree.from_dict(dict(group_data))
        out.attrs.update(dict(attrs or {}))
        return out
    return az.InferenceData(attrs=dict(attrs or {}), **dict(group_data))


def group_names(obj: Any) -> list[str]:
    """Names of the groups of ``obj`` (e.g. ``["posterior", "sample_stats"]``), in order."""
    _check(obj)
    if isinstance(obj, xr.DataTree):
        return [str(name) for name in obj.children]
    return list(obj.groups())


def has_group(obj: Any, name: str) -> bool:
    """Whether ``obj`` (either version's result) has a group ``name``."""
    return is_result(obj) and name in group_names(obj)


def get_group(obj: Any, name: str) -> xr.Dataset:
    """Group ``name`` of ``obj`` as an :class:`xarray.Dataset` (KeyError naming the groups)."""
    if not has_group(obj, name):
        raise KeyError(
            f"the result has no group {name!r}; it has "
            f"{group_names(obj) if is_result(obj) else type(obj).__name__}"
        )
    if isinstance(obj, xr.DataTree):
        return obj[name].to_dataset()
    return obj[name]


def add_groups(obj: Any, group_data: Mapping[str, xr.Dataset]) -> Any:
    """Add or replace groups of ``obj`` in place; returns ``obj``."""
    _check(obj)
    if isinstance(obj, xr.DataTree):
        for name, ds in group_data.items():
            obj[name] = xr.DataTree(ds)
        return obj
    for name in group_data:
        if name in obj.groups():
            delattr(obj, name)
    obj.add_groups(dict(group_data))
    return obj


def as_result(obj: Any) -> Any:
    """``obj`` as the installed ArviZ's result.

    Parameters
    ----------
    obj : arviz.InferenceData, xarray.DataTree, str or Path
        A result of either ArviZ version, or the path of a netCDF file.

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
    """
    if isinstance(obj, str | os.PathLike):
        return from_netcdf(obj)
    _check(obj, "obj")
    if isinstance(obj, Result):
        return obj
    if isinstance(obj, xr.DataTree):  # a DataTree under ArviZ 0.x
        return make_result({g: get_group(obj, g) for g in group_names(obj)}, obj.attrs)
    # An InferenceData cannot exist beside ArviZ 1.x, so nothing else is left.
    raise TypeError(f"cannot convert {type(obj).__name__}")  # pragma: no cover


def to_netcdf(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` (either version's result) to ``path`` as netCDF-4 (h5netcdf).

    The layout is ArviZ's own: one netCDF group per result group, attributes at the root,
    readable by :func:`from_netcdf` and ``arviz.from_netcdf`` of both versions.
    """
    _check(obj)
    obj.to_netcdf(str(path), engine=_ENGINE)
    return Path(path)


def from_netcdf(path: str | os.PathLike) -> Any:
    """Read a result written by either ArviZ version, fully into memory (file closed).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
        :data:`Result` of the installed ArviZ.
    """
    if ARVIZ_1:
        with xr.open_datatree(str(path), engine=_ENGINE) as tree:
            out = tree.load().copy()
        return out
    idata = az.from_netcdf(str(path), engine=_ENGINE)
    for name in idata.groups():
        ds = getattr(idata, name)
        ds.load()
        ds.close()
    return idata


def psislw(log_ratios: np.ndarray) -> tuple[np.ndarray, float]:
    """Pareto-smoothed importance log weights, normalised, and the Pareto shape k.

    Parameters
    ----------
    log_ratios : np.ndarray, shape (S,)
        Log importance ratios of S draws.

    Returns
    -------
    (np.ndarray of shape (S,), float)
        Smoothed log weights with ``logsumexp == 0``, and k (Vehtari et al., 2024).
    """
    r = np.asarray(log_ratios, dtype=np.float64)
    if ARVIZ_1:
        from arviz_stats.base.array import array_stats

        # arviz-stats smooths the ratios of LOO, exp(-log_lik): pass the negated ratios
        lw, k = array_stats.psislw(-r, r_eff=1.0)
    else:
        lw, k = az.psislw(r, reff=1.0, normalize=True)
    lw = np.asarray(lw, dtype=np.float64)
    return lw - logsumexp(lw), float(np.asarray(k))


def summary_table(obj: Any, var_names: Sequence[str] | None = None, kind: str = "all"):
    """``arviz.summary`` of the posterior as a pandas DataFrame, for either version.

    Both versions give one row per scalar element (labels like ``"A[0, 1]"``) and the
    columns ``mean``, ``sd``, ``ess_bulk``, ``ess_tail``, ``r_hat`` (the last three only
    for ``kind="all"``); the interval columns differ (HDI on 0.x, ETI on 1.x).
    """
    names = list(var_names) if var_names is not None else None
    return az.summary(as_result(obj), var_names=names, kind=kind)


def plot_trace_figure(obj: Any, var_names: Sequence[str], figsize: tuple[float, float]):
    """Trace and marginal density per variable; a new :class:`matplotlib.figure.Figure`.

    ArviZ 0.x draws into axes we make (``plot_trace(compact=True)``); ArviZ 1.x builds its
    own figure (``plot_trace_dist``), which is detached from pyplot before it is returned.
    """
    obj = as_result(obj)
    if ARVIZ_1:
        pc = az.plot_trace_dist(
            _indexed(obj),
            var_names=list(var_names),
            backend="matplotlib",
            figure_kwargs={"figsize": figsize},
        )
        return _detach(pc.viz["figure"].item())
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    axes = fig.subplots(len(var_names), 2, squeeze=False)
    az.plot_trace(obj, var_names=list(var_names), compact=True, axes=axes, show=False)
    return fig


def plot_rank_into(obj: Any, var_names: Sequence[str], num_elements: int, figsize):
    """Rank plots (one panel per scalar element); a new :class:`matplotlib.figure.Figure`.

    ArviZ 0.x: rank histograms per chain (``plot_rank``); ArviZ 1.x: the rank-ECDF
    difference plot with simultaneous envelope (``plot_rank``, Säilynoja et al. 2022).
    """
    obj = as_result(obj)
    if ARVIZ_1:
        pc = az.plot_rank(
            _indexed(obj),
            var_names=list(var_names),
            backend="matplotlib",
            figure_kwargs={"figsize": figsize},
        )
        return _detach(pc.viz["figure"].item())
    from matplotlib.figure import Figure

    ncols = min(3, num_elements)
    nrows = int(np.ceil(num_elements / ncols))
    fig = Figure(figsize=figsize)
    grid = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in grid[num_elements:]:
        fig.delaxes(ax)
    az.plot_rank(obj, var_names=list(var_names), ax=grid[:num_elements], show=False)
    return fig


def _indexed(obj: Any) -> Any:
    """``obj``'s posterior and sample_stats with an index on every dim (arviz-plots needs one)."""
    out = {}
    for name in ("posterior", "sample_stats"):
        if has_group(obj, name):
            ds = get_group(obj, name)
            missing = {d: np.arange(n) for d, n in ds.sizes.items() if d not in ds.coords}
            out[name] = ds.assign_coords(missing)
    return make_result(out)


def _detach(fig):
    """Close ``fig`` in pyplot (no leak of open figures); it can still be saved."""
    import matplotlib.pyplot as plt

    plt.close(fig)
    return fig
