"""Draws to an ArviZ result with named dims and coords.

Two public functions:

- :func:`to_inference_data` assembles groups from dicts of arrays (draws carry leading
  ``(chain, draw)`` axes) and names every axis, deterministically (no timestamps), so the
  same inputs give a bit-identical object: an :class:`arviz.InferenceData` under ArviZ 0.x,
  an :class:`xarray.DataTree` under ArviZ 1.x (see :mod:`probdyn.report._arviz`).
- :func:`model_dims` reads the dims a NumPyro model implies for each site from one
  abstract trace (no array computation): plate names for batch axes, a site's
  ``infer={"event_dims": [...]}`` for event axes, and ``"time"`` for the leading event
  axis of trajectory distributions (``probdyn.processes`` and NumPyro's time-series
  distributions), which by the project's contract is time.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import xarray as xr
from numpyro import distributions as dist
from numpyro import handlers
from numpyro.infer.initialization import init_to_sample

from probdyn.report._arviz import Result, make_result

__all__ = ["model_dims", "to_inference_data"]

# Distributions whose leading event axis is time (besides everything in probdyn.processes).
_TIME_SERIES = {"GaussianRandomWalk", "EulerMaruyama", "GaussianStateSpace"}
_WRAPPERS = (dist.Independent, dist.ExpandedDistribution, dist.MaskedDistribution)


def _default_dim(name: str, axis: int) -> str:
    return f"{name}_dim_{axis}"


def _is_time_series(fn) -> bool:
    while isinstance(fn, _WRAPPERS):
        fn = fn.base_dist
    cls = type(fn)
    return cls.__module__.startswith("probdyn.processes") or cls.__name__ in _TIME_SERIES


def _site_info(model: Callable, args: Sequence, kwargs: Mapping) -> dict[str, dict]:
    """Shapes, plates and flags of every sample/deterministic site, from an abstract trace."""
    info: dict[str, dict] = {}

    def run():
        seeded = handlers.substitute(handlers.seed(model, 0), substitute_fn=init_to_sample)
        trace = handlers.trace(seeded).get_trace(*args, **kwargs)
        for name, site in trace.items():
            if site["type"] not in ("sample", "deterministic"):
                continue
            shape = tuple(np.shape(site["value"]))
            entry = {
                "type": site["type"],
                "shape": shape,
                "is_observed": bool(site.get("is_observed", False)),
                "plates": {f.dim: (f.name, f.size) for f in site.get("cond_indep_stack", ())},
                "event_dims": list((site.get("infer") or {}).get("event_dims", []) or []),
                "event_ndim": 0,
                "time_series": False,
                "auxiliary": bool((site.get("infer") or {}).get("auxiliary", False)),
            }
            if site["type"] == "deterministic" and entry["event_dims"]:
                entry["event_ndim"] = min(len(entry["event_dims"]), len(shape))
            if site["type"] == "sample":
                fn = site["fn"]
                entry["event_ndim"] = len(fn.event_shape)
                entry["batch_ndim"] = len(shape) - len(fn.event_shape)
                entry["time_series"] = _is_time_series(fn) and len(fn.event_shape) > 0
            info[name] = entry
        return 0

    jax.eval_shape(run)
    return info


def model_dims(
    model: Callable,
    args: Sequence = (),
    kwargs: Mapping | None = None,
    *,
    dims: Mapping[str, Sequence[str]] | None = None,
    coords: Mapping[str, Any] | None = None,
) -> tuple[dict[str, list[str]], dict[str, dict]]:
    """Name the axes of every site of a NumPyro model.

    Parameters
    ----------
    model : callable
        A NumPyro model.
    args, kwargs : tuple, dict
        Model arguments (observed data included), as the model is called for inference.
    dims : dict of str to list of str, optional
        User dims per site; they win over everything read from the model.
    coords : dict of str to array, optional
        Coordinate values; ``coords["time"]`` (length T) lets a trajectory site's leading
        event axis be called ``"time"`` only if its length is T.

    Returns
    -------
    site_dims : dict of str to list of str
        Names of each site's value axes (``batch_shape + event_shape`` for sample sites,
        the value's shape for deterministic sites), without chain/draw. Unknown axes get
        ArviZ's default ``"<site>_dim_<i>"``.
    info : dict of str to dict
        Per site: ``type`` ("sample"/"deterministic"), ``shape``, ``is_observed``,
        ``event_ndim``, ``batch_ndim`` (sample sites), ``auxiliary`` (the site was marked
        ``infer={"auxiliary": True}``: kept in results, left out of summaries).

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist, jax.numpy as jnp
    >>> def model(y):
    ...     mu = numpyro.sample("mu", dist.Normal(0, 1))
    ...     with numpyro.plate("obs_id", y.shape[0]):
    ...         numpyro.sample("y", dist.Normal(mu, 1), obs=y)
    >>> model_dims(model, (jnp.zeros(3),))[0]
    {'mu': [], 'y': ['obs_id']}
    """
    kwargs = dict(kwargs or {})
    dims = dict(dims or {})
    coords = dict(coords or {})
    info = _site_info(model, args, kwargs)
    unknown = sorted(set(dims) - set(info))
    if unknown:
        raise ValueError(
            f"dims names sites {unknown} that the model does not have; "
            f"expected a subset of {sorted(info)}"
        )
    site_dims: dict[str, list[str]] = {}
    auto_time: dict[str, int] = {}  # site -> axis index given the automatic "time" name
    for name, site in info.items():
        shape = site["shape"]
        ndim = len(shape)
        names = [_default_dim(name, i) for i in range(ndim)]
        event_ndim = site["event_ndim"]
        batch_ndim = ndim - event_ndim
        # Plates name batch axes: frame.dim counts from the right of the batch shape.
        for dim, (plate_name, size) in site["plates"].items():
            axis = batch_ndim + dim
            if 0 <= axis < batch_ndim and shape[axis] == size:
                names[axis] = plate_name
        if site["event_dims"] and len(site["event_dims"]) == event_ndim:
            names[batch_ndim:] = [str(d) for d in site["event_dims"]]
        elif site["time_series"]:
            names[batch_ndim] = "time"
            auto_time[name] = batch_ndim
        if name in dims:
            user = [str(d) for d in dims[name]]
            if len(user) > ndim:
                raise ValueError(
                    f"dims[{name!r}]={user} names {len(user)} axes but site {name!r} has "
                    f"{ndim} (shape {shape}); expected at most {ndim} names"
                )
            names[: len(user)] = user
            if name in auto_time and auto_time[name] < len(user):
                del auto_time[name]
        site_dims[name] = names
    unused = sorted(set(coords) - {d for names in site_dims.values() for d in names})
    unused = [d for d in unused if d not in ("chain", "draw")]
    if unused:
        warnings.warn(
            f"coords names dims {unused} that no site of the model has, so they are not "
            f"used; the sites' dims are {site_dims} (name axes with dims=...)",
            UserWarning,
            stacklevel=3,
        )
    # The automatic "time" name must agree with coords["time"] and across sites.
    sizes = {info[s]["shape"][a] for s, a in auto_time.items()}
    if "time" in coords:
        wanted = {len(np.asarray(coords["time"]))}
    else:
        wanted = sizes if len(sizes) == 1 else set()
    for s, a in auto_time.items():
        if info[s]["shape"][a] not in wanted:
            site_dims[s][a] = _default_dim(s, a)
    for name, names in site_dims.items():
        for axis, d in enumerate(names):
            size = info[name]["shape"][axis]
            if d in coords and np.shape(coords[d]) != (size,):
                raise ValueError(
                    f"coords[{d!r}] has shape {np.shape(coords[d])} but axis {axis} of site "
                    f"{name!r} (shape {info[name]['shape']}) is named {d!r}; expected "
                    f"shape ({size},)"
                )
    return site_dims, info


def _as_numpy(x) -> np.ndarray:
    return np.asarray(jax.device_get(x))


def _dataset(
    group: str,
    data: Mapping[str, Any],
    dims: Mapping[str, Sequence[str]],
    coords: Mapping[str, Any],
    sample_dims: tuple[str, ...],
) -> xr.Dataset:
    variables = {}
    used: dict[str, tuple[int, str]] = {}
    for name, value in data.items():
        if isinstance(value, xr.DataArray):
            variables[name] = value
            for d, n in value.sizes.items():
                used.setdefault(d, (n, name))
            continue
        arr = _as_numpy(value)
        if arr.ndim < len(sample_dims):
            raise ValueError(
                f"{group}[{name!r}] has shape {arr.shape}; expected leading axes {sample_dims}"
            )
        rest = arr.ndim - len(sample_dims)
        names = [_default_dim(name, i) for i in range(rest)]
        user = list(dims.get(name, ()))[:rest]
        names[: len(user)] = user
        all_dims = tuple(sample_dims) + tuple(names)
        for d, n in zip(all_dims, arr.shape, strict=True):
            if d in used and used[d][0] != n:
                raise ValueError(
                    f"dims: dim {d!r} has length {n} in {group}[{name!r}] but "
                    f"{used[d][0]} in {group}[{used[d][1]!r}]; expected equal lengths"
                )
            used.setdefault(d, (n, name))
        variables[name] = xr.DataArray(arr, dims=all_dims)
    ds_coords = {}
    for d, (n, name) in used.items():
        if d in coords:
            values = np.asarray(coords[d])
            if values.ndim != 1 or len(values) != n:
                raise ValueError(
                    f"coords[{d!r}] has shape {values.shape} but dim {d!r} of "
                    f"{group}[{name!r}] has length {n}; expected shape ({n},)"
                )
            ds_coords[d] = values
        else:
            ds_coords[d] = np.arange(n)
    return xr.Dataset(variables, coords=ds_coords)


def to_inference_data(
    posterior: Mapping[str, Any],
    *,
    sample_stats: Mapping[str, Any] | None = None,
    log_likelihood: Mapping[str, Any] | None = None,
    posterior_predictive: Mapping[str, Any] | None = None,
    observed_data: Mapping[str, Any] | None = None,
    prior: Mapping[str, Any] | None = None,
    prior_predictive: Mapping[str, Any] | None = None,
    constant_data: Mapping[str, Any] | None = None,
    extra_groups: Mapping[str, Mapping[str, Any]] | None = None,
    dims: Mapping[str, Sequence[str]] | None = None,
    coords: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
    auxiliary: Sequence[str] = (),
) -> Result:
    """Build the installed ArviZ's result from dicts of arrays, with named axes.

    Parameters
    ----------
    posterior : dict of str to array, each of shape (num_chains, num_draws, ...)
        Posterior draws per site (deterministic sites included).
    sample_stats : dict of str to array of shape (num_chains, num_draws, ...), optional
        Sampler statistics. A value that is an :class:`xarray.DataArray` is used as is
        (e.g. an SVI loss trace with dims ``("svi_step",)``).
    log_likelihood : dict of str to array of shape (num_chains, num_draws, ...), optional
        Pointwise log-likelihood per observed site.
    posterior_predictive : dict of str to array of shape (num_chains, num_draws, ...), optional
        Replicated observations per observed site.
    observed_data, constant_data : dict of str to array, optional
        Data without sample axes.
    prior, prior_predictive : dict of str to array of shape (num_chains, num_draws, ...), optional
        Prior draws of latent/deterministic sites and of observed sites.
    extra_groups : dict of str to dict of str to array, optional
        Further groups whose arrays have no sample axes (e.g. ``svi_params``).
    dims : dict of str to list of str, optional
        Names of the non-sample axes of each variable (a prefix is enough; the rest get
        ``"<var>_dim_<i>"``). Applied in every group where the variable appears; for
        ``log_likelihood`` only as many names as it has axes are used.
    coords : dict of str to 1-D array, optional
        Coordinate values per dim; other dims get ``0, 1, ..., n - 1``.
    attrs : dict, optional
        Attributes of the result (strings or numbers, so they survive netCDF).
    auxiliary : sequence of str
        Variables to mark ``attrs["probdyn_role"] = "auxiliary"`` in every group (e.g.
        the noise increments of ``sde_path``): kept, but left out of
        :func:`probdyn.report.summary` and the default plots.

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
        :class:`arviz.InferenceData` under ArviZ 0.x, :class:`xarray.DataTree` (one child
        per group) under ArviZ 1.x; with the groups given (empty ones left out). No
        timestamp is added.

    Raises
    ------
    ValueError
        If a dim has two lengths in one group or a coordinate's length disagrees.

    Examples
    --------
    >>> import numpy as np
    >>> idata = to_inference_data(
    ...     {"x": np.zeros((2, 5, 3))}, dims={"x": ["time"]}, coords={"time": [0.0, 0.5, 1.0]}
    ... )
    >>> dict(idata.posterior["x"].sizes)
    {'chain': 2, 'draw': 5, 'time': 3}
    """
    dims = dict(dims or {})
    coords = dict(coords or {})
    groups: dict[str, xr.Dataset] = {}
    sampled = {
        "posterior": posterior,
        "posterior_predictive": posterior_predictive,
        "log_likelihood": log_likelihood,
        "sample_stats": sample_stats,
        "prior": prior,
        "prior_predictive": prior_predictive,
    }
    for group, data in sampled.items():
        if data:
            groups[group] = _dataset(group, data, dims, coords, ("chain", "draw"))
    plain = {"observed_data": observed_data, "constant_data": constant_data}
    plain.update(dict(extra_groups or {}))
    for group, data in plain.items():
        if data:
            groups[group] = _dataset(group, data, dims, coords, ())
    for ds in groups.values():
        for name in auxiliary:
            if name in ds.data_vars:
                ds[name].attrs["probdyn_role"] = "auxiliary"
    return make_result(groups, attrs)
