"""Figures for fits and forecasts: each saves a PNG when given a ``path`` and returns the
:class:`matplotlib.figure.Figure`.

Figures are built as bare ``Figure`` objects (rendered by the Agg canvas), not through
``pyplot``: nothing is registered in pyplot's global figure list, so plotting in a loop
leaks no memory and the user's interactive backend is left alone. They still display in
Jupyter.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from scipy import stats

from probdyn.report import _arviz as _az

__all__ = [
    "plot_predictive_bands",
    "plot_rank",
    "plot_sbc_ranks",
    "plot_state_posterior",
    "plot_trace",
    "select_plot_vars",
]


def _save(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, bbox_inches="tight")
    return fig


def _pool(x) -> np.ndarray:
    if isinstance(x, xr.DataArray):
        if "chain" in x.dims and "draw" in x.dims:
            x = x.stack(__sample__=("chain", "draw")).transpose("__sample__", ...)
        x = x.values
    return np.asarray(x, dtype=float)


def _is_idata(x) -> bool:
    """An ArviZ result (InferenceData or DataTree), as opposed to an array of times."""
    return hasattr(x, "groups") and not isinstance(x, np.ndarray | xr.DataArray)


def _group_names(idata) -> list[str]:
    # InferenceData.groups() vs DataTree.groups (paths such as "/posterior"): one helper
    return _az.group_names(idata)


def _idata_var(idata, var_name, group, groups_in_order, coords):
    """The DataArray ``var_name`` from ``group`` (or the first of ``groups_in_order`` that
    has it), with ``coords`` selected."""
    if not isinstance(var_name, str):
        raise TypeError(
            f"var_name must be the name of a variable of idata (a str); got {var_name!r}"
        )
    present = _group_names(idata)
    candidates = [group] if group is not None else [g for g in groups_in_order if g in present]
    if group is not None and group not in present:
        raise ValueError(f"group={group!r} is not in idata; it has groups {present}")
    for g in candidates:
        ds = _az.get_group(idata, g)
        if var_name in ds.data_vars:
            da = ds[var_name]
            break
    else:
        have = {g: list(_az.get_group(idata, g).data_vars) for g in candidates}
        raise ValueError(
            f"var_name={var_name!r} is not a variable of the groups {candidates}; they have {have}"
        )
    if coords:
        bad = sorted(set(coords) - set(da.dims))
        if bad:
            raise ValueError(f"coords names dims {bad} that {var_name!r} lacks; dims {da.dims}")
        da = da.sel(coords)
    return da, g


def _time_dim(da, exclude=("chain", "draw")) -> str:
    rest = [d for d in da.dims if d not in exclude]
    if not rest:
        raise ValueError(f"{da.name!r} has no axis besides {exclude}; dims {da.dims}")
    return "time" if "time" in rest else rest[0]


def plot_predictive_bands(
    idata,
    var_name: str | ArrayLike | xr.DataArray | None = None,
    obs: ArrayLike | None = None,
    levels: tuple[float, ...] = (0.5, 0.9),
    path: str | Path | None = None,
    *,
    group: str | None = None,
    coords: dict | None = None,
    labels: list[str] | None = None,
) -> Figure:
    """Predictive median and central bands over time, one panel per observed dimension.

    ``plot_predictive_bands(idata, "y")`` draws ``idata.posterior_predictive["y"]`` (or
    ``idata.posterior["y"]`` when there is no predictive group, e.g. a latent path) over
    its time coordinate, with ``idata.observed_data["y"]`` as dots when present. The array
    form ``plot_predictive_bands(times, draws, obs)`` is detected and still works.

    Parameters
    ----------
    idata : arviz.InferenceData, or array_like of shape (num_timesteps,)
        A result of :func:`probdyn.fit`; or, in the array form, the time of each step.
    var_name : str, or (array form) array_like or xarray.DataArray
        The variable to draw; its dims are ``("chain", "draw", time, [obs_dim])``, where
        time is the dim called ``"time"`` or else the first non-sample dim, and other dims
        must be selected away with ``coords``. In the array form: draws of shape
        (num_draws, num_timesteps) or (num_draws, num_timesteps, obs_dim), or a DataArray
        with dims ``("chain", "draw", ...)``, which is pooled.
    obs : array_like, optional, shape (num_timesteps,) or (num_timesteps, obs_dim)
        Observations, drawn as dots (NaNs skipped). Default in the idata form: the
        variable of the same name in ``observed_data``, if any; pass ``False`` for none.
    levels : tuple of float
        Central interval levels in (0, 1), one shaded band each.
    path : str or Path, optional
        Where to save the PNG.
    group : str, optional
        idata form: group to read ``var_name`` from (default ``posterior_predictive``, then
        ``posterior``, then ``prior_predictive``).
    coords : dict, optional
        idata form: values to select on other dims, e.g. ``{"sequence": 0}``.
    labels : list of str, optional
        Panel titles, one per ``obs_dim`` (idata form: default the coordinate values).

    Returns
    -------
    matplotlib.figure.Figure
        With ``obs_dim`` axes (one for 2-d draws).

    Examples
    --------
    >>> idata = probdyn.fit(model, y, predictive=True)  # doctest: +SKIP
    >>> plot_predictive_bands(idata, "y", path="bands.png")  # doctest: +SKIP
    """
    if _is_idata(idata):
        da, _ = _idata_var(
            idata,
            var_name,
            group,
            ("posterior_predictive", "posterior", "prior_predictive"),
            coords,
        )
        tdim = _time_dim(da)
        rest = [d for d in da.dims if d not in ("chain", "draw", tdim)]
        if len(rest) > 1:
            raise ValueError(
                f"{var_name!r} has dims {da.dims}: at most one dim besides chain, draw and "
                f"{tdim!r} can be drawn as panels; select the others with coords="
            )
        da = da.transpose("chain", "draw", tdim, *rest)
        times = da[tdim].values
        if obs is None and "observed_data" in _group_names(idata):
            od = _az.get_group(idata, "observed_data")
            if var_name in od.data_vars:
                o = od[var_name]
                o = o.sel({k: v for k, v in (coords or {}).items() if k in o.dims})
                if set(o.dims) == {tdim, *rest}:
                    obs = o.transpose(tdim, *rest).values
        if obs is False:
            obs = None
        if labels is None and rest:
            labels = [f"{rest[0]} = {v}" for v in da[rest[0]].values]
        draws = da
    else:
        if isinstance(var_name, str):
            raise TypeError(
                "idata must be an ArviZ result (e.g. from probdyn.fit) when var_name is a "
                f"name; got {type(idata).__name__}"
            )
        times, draws = idata, var_name
        if draws is None:
            raise TypeError("the array form needs plot_predictive_bands(times, draws, obs)")
        if obs is False:
            obs = None
    return _bands(times, draws, obs, levels, path, labels)


def _bands(times, draws, obs, levels, path, labels) -> Figure:
    t = np.asarray(times, dtype=float)
    if t.ndim != 1:
        raise ValueError(f"times must have shape (num_timesteps,); got shape {t.shape}")
    x = _pool(draws)
    if x.ndim not in (2, 3) or x.shape[1] != t.shape[0]:
        raise ValueError(
            f"draws must have shape (num_draws, num_timesteps={t.shape[0]}) or "
            f"(num_draws, {t.shape[0]}, obs_dim); got shape {x.shape}"
        )
    if x.ndim == 2:
        x = x[..., None]
    obs_dim = x.shape[2]
    y = None
    if obs is not None:
        y = np.asarray(obs, dtype=float)
        if y.ndim == 1:
            y = y[:, None]
        if y.shape != (t.shape[0], obs_dim):
            raise ValueError(
                f"obs must have shape ({t.shape[0]},) or ({t.shape[0]}, {obs_dim}) to match "
                f"draws; got shape {np.shape(obs)}"
            )
    levels = tuple(sorted(float(v) for v in np.atleast_1d(levels)))
    if any(not 0.0 < v < 1.0 for v in levels):
        raise ValueError(f"levels must be numbers strictly between 0 and 1; got {levels!r}")
    if labels is not None and len(labels) != obs_dim:
        raise ValueError(f"labels must have {obs_dim} entries; got {len(labels)}")
    fig = Figure(figsize=(8, 2.6 * obs_dim))
    axes = fig.subplots(obs_dim, 1, sharex=True, squeeze=False)
    for d, ax in enumerate(axes[:, 0]):
        for k, level in enumerate(reversed(levels)):
            lo, hi = np.quantile(x[:, :, d], [(1 - level) / 2, (1 + level) / 2], axis=0)
            alpha = 0.2 + 0.25 * k
            ax.fill_between(t, lo, hi, color="C0", alpha=alpha, lw=0, label=f"{level:.0%}")
        ax.plot(t, np.median(x[:, :, d], axis=0), color="C0", lw=1.5, label="median")
        if y is not None:
            ax.plot(t, y[:, d], "k.", ms=3, label="observed")
        if labels is not None:
            ax.set_title(labels[d])
        ax.legend(loc="upper left", fontsize="small", ncols=len(levels) + 2)
    axes[-1, 0].set_xlabel("time")
    fig.tight_layout()
    return _save(fig, path)


def plot_state_posterior(
    idata,
    var_name: str | ArrayLike | None = None,
    true_states: ArrayLike | None = None,
    path: str | Path | None = None,
    *,
    group: str | None = None,
    coords: dict | None = None,
) -> Figure:
    """Heatmap of the posterior probability of each hidden state over time.

    ``plot_state_posterior(idata, "z")`` reads the variable ``z`` from the posterior (or
    the group given): per-draw state probabilities with dims ``("chain", "draw", time,
    state)`` are averaged over draws; integer state paths with dims ``("chain", "draw",
    time)`` (FFBS or Viterbi draws) are turned into the frequency of each state. The
    array form ``plot_state_posterior(times, state_probs)`` is detected and still works.

    Parameters
    ----------
    idata : arviz.InferenceData, or array_like of shape (num_timesteps,)
        A result holding ``var_name``; or, in the array form, the time of each step
        (increasing).
    var_name : str, or (array form) array_like of shape (num_timesteps, num_states)
        The variable; in the array form the marginal posterior
        :math:`p(z_t = k \\mid y)`, rows summing to one.
    true_states : array_like of int, optional, shape (num_timesteps,)
        Known states, drawn as a line on top.
    path : str or Path, optional
        Where to save the PNG.
    group : str, optional
        idata form: the group holding ``var_name`` (default: the first of posterior,
        posterior_predictive and any other group that has it).
    coords : dict, optional
        idata form: values to select on other dims, e.g. ``{"sequence": 0}``.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: the heatmap and its colour bar.
    """
    if _is_idata(idata):
        order = ["posterior", "posterior_predictive"]
        order += [g for g in _group_names(idata) if g not in order]
        da, _ = _idata_var(idata, var_name, group, order, coords)
        tdim = _time_dim(da)
        rest = [d for d in da.dims if d not in ("chain", "draw", tdim)]
        samples = [d for d in ("chain", "draw") if d in da.dims]
        if not rest and np.issubdtype(da.dtype, np.integer):
            z = da.transpose(*samples, tdim).values.reshape(-1, da.sizes[tdim])
            top = z.max() if true_states is None else max(z.max(), np.max(true_states))
            num_states = int(top) + 1
            state_probs = (z[..., None] == np.arange(num_states)).mean(0)
        elif len(rest) == 1:
            state_probs = da.mean(samples).transpose(tdim, rest[0]).values
        else:
            raise ValueError(
                f"{var_name!r} has dims {da.dims}; expected integer states ('chain', 'draw', "
                f"time) or probabilities ('chain', 'draw', time, state); select other dims "
                "with coords="
            )
        times = da[tdim].values
    else:
        if isinstance(var_name, str):
            raise TypeError(
                f"idata must be an ArviZ result when var_name is a name; got {type(idata).__name__}"
            )
        times, state_probs = idata, var_name
    t = np.asarray(times, dtype=float)
    p = np.asarray(state_probs, dtype=float)
    if t.ndim != 1:
        raise ValueError(f"times must have shape (num_timesteps,); got shape {t.shape}")
    if p.ndim != 2 or p.shape[0] != t.shape[0]:
        raise ValueError(
            f"state_probs must have shape (num_timesteps={t.shape[0]}, num_states); "
            f"got shape {p.shape}"
        )
    if true_states is not None:
        z = np.asarray(true_states)
        if z.shape != t.shape:
            raise ValueError(f"true_states must have shape ({t.shape[0]},); got shape {z.shape}")
    num_states = p.shape[1]
    if t.size > 1:
        mid = (t[1:] + t[:-1]) / 2
        edges = np.concatenate([[t[0] - (mid[0] - t[0])], mid, [t[-1] + (t[-1] - mid[-1])]])
    else:
        edges = np.array([t[0] - 0.5, t[0] + 0.5])
    fig = Figure(figsize=(8, 1.0 + 0.4 * num_states))
    ax = fig.subplots()
    mesh = ax.pcolormesh(
        edges,
        np.arange(num_states + 1) - 0.5,
        p.T,
        cmap="Blues",
        vmin=0,
        vmax=1,
        shading="flat",
    )
    if true_states is not None:
        ax.step(t, z, where="mid", color="C3", lw=1.2, label="true state")
        ax.legend(loc="upper right", fontsize="small")
    ax.set_yticks(np.arange(num_states))
    ax.set_ylabel("state")
    ax.set_xlabel("time")
    fig.colorbar(mesh, ax=ax, label="posterior probability")
    fig.tight_layout()
    return _save(fig, path)


def select_plot_vars(idata, max_elements: int = 8, max_vars: int = 8) -> list[str]:
    """Posterior variables small enough to draw one panel per element.

    Parameters
    ----------
    idata : arviz.InferenceData or xarray.DataTree
        With a ``posterior`` group.
    max_elements : int
        Variables with more scalar elements per draw (e.g. latent trajectories) are skipped.
    max_vars : int
        At most this many variables, in posterior order.

    Returns
    -------
    list of str
    """
    _check_idata(idata)
    post = _az.get_group(idata, "posterior")
    out = []
    for name, da in post.data_vars.items():
        if da.attrs.get("probdyn_role") == "auxiliary":
            continue
        size = int(np.prod([n for d, n in da.sizes.items() if d not in ("chain", "draw")]))
        if size <= max_elements:
            out.append(str(name))
    return out[:max_vars]


def _num_elements(idata, var_names: list[str]) -> int:
    post = _az.get_group(idata, "posterior")
    total = 0
    for name in var_names:
        sizes = post[name].sizes
        total += int(np.prod([n for d, n in sizes.items() if d not in ("chain", "draw")]))
    return total


def _check_idata(idata) -> None:
    if not _az.has_group(idata, "posterior"):
        raise ValueError(
            "idata must be an ArviZ result (InferenceData or DataTree) with a posterior "
            f"group; got {type(idata).__name__}"
        )


def _plot_vars(idata, var_names):
    """Checked ``var_names``, defaulting to :func:`select_plot_vars`."""
    _check_idata(idata)
    var_names = list(var_names) if var_names is not None else select_plot_vars(idata)
    if not var_names:
        raise ValueError("var_names is empty: idata has no posterior variable small enough")
    return var_names


def plot_trace(idata, path: str | Path | None = None, var_names: list[str] | None = None):
    """Trace and marginal density of each posterior variable (``arviz.plot_trace``).

    Parameters
    ----------
    idata : arviz.InferenceData or xarray.DataTree
        With a ``posterior`` group of dims ``("chain", "draw", ...)``.
    path : str or Path, optional
        Where to save the PNG.
    var_names : list of str, optional
        Default: :func:`select_plot_vars` (skips long latent trajectories).

    Returns
    -------
    matplotlib.figure.Figure
        ``2 * len(var_names)`` axes (density and trace per variable). ArviZ 0.x draws
        the density as a KDE, ArviZ 1.x as an ECDF (``plot_trace_dist``).
    """
    var_names = _plot_vars(idata, var_names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig = _az.plot_trace_figure(idata, var_names, figsize=(9, 2.0 * len(var_names)))
    fig.tight_layout()
    return _save(fig, path)


def plot_rank(idata, path: str | Path | None = None, var_names: list[str] | None = None):
    """Rank plots per chain (``arviz.plot_rank``; Vehtari et al. 2021).

    Parameters
    ----------
    idata : arviz.InferenceData or xarray.DataTree
        With a ``posterior`` group of dims ``("chain", "draw", ...)``.
    path : str or Path, optional
        Where to save the PNG.
    var_names : list of str, optional
        Default: :func:`select_plot_vars`.

    Returns
    -------
    matplotlib.figure.Figure
        One axis per scalar element of the selected variables: rank histograms per
        chain on ArviZ 0.x, rank-ECDF differences with a simultaneous band on ArviZ 1.x.
    """
    var_names = _plot_vars(idata, var_names)
    n = _num_elements(idata, var_names)
    ncols = min(3, n)
    nrows = int(np.ceil(n / ncols))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig = _az.plot_rank_into(idata, var_names, n, figsize=(3.4 * ncols, 2.4 * nrows))
    fig.tight_layout()
    return _save(fig, path)


def plot_sbc_ranks(result, path: str | Path | None = None, num_bins: int | None = None):
    """Histogram of SBC rank statistics per parameter, with the binomial 99% band.

    Under calibration each rank is uniform on ``{0, ..., num_posterior_draws}``, so each
    bin count is Binomial(num_replicates, 1 / num_bins); the grey band spans its 0.5% to
    99.5% quantiles (Talts et al. 2018).

    Parameters
    ----------
    result : SBCResult
        From :func:`probdyn.report.sbc.sbc` (anything with ``ranks`` (num_replicates,
        num_params), ``param_names``, ``num_posterior_draws``, ``num_bins``, ``pvalues``).
    path : str or Path, optional
        Where to save the PNG.
    num_bins : int, optional
        Default ``result.num_bins``.

    Returns
    -------
    matplotlib.figure.Figure
        One axis per parameter.
    """
    ranks = np.asarray(result.ranks)
    if ranks.ndim != 2:
        raise ValueError(
            f"result.ranks must have shape (num_replicates, num_params); got {ranks.shape}"
        )
    num_reps, num_params = ranks.shape
    num_bins = int(num_bins or result.num_bins)
    max_rank = int(result.num_posterior_draws)
    edges = np.linspace(-0.5, max_rank + 0.5, num_bins + 1)
    lo, hi = stats.binom.ppf([0.005, 0.995], num_reps, 1.0 / num_bins)
    ncols = min(4, num_params)
    nrows = int(np.ceil(num_params / ncols))
    fig = Figure(figsize=(3.2 * ncols, 2.6 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for j in range(nrows * ncols):
        ax = axes.ravel()[j]
        if j >= num_params:
            fig.delaxes(ax)
            continue
        ax.axhspan(lo, hi, color="0.85", zorder=0, label="99% band")
        ax.axhline(num_reps / num_bins, color="0.5", lw=0.8)
        ax.hist(ranks[:, j], bins=edges, color="C0", edgecolor="white", zorder=1)
        pval = result.pvalues[j] if getattr(result, "pvalues", None) is not None else None
        title = str(result.param_names[j])
        if pval is not None:
            title += f"  (p = {pval:.2g})"
        ax.set_title(title, fontsize="small")
        ax.set_xlabel("rank")
    fig.tight_layout()
    return _save(fig, path)
