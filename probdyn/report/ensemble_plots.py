"""Figures comparing rollout ensembles of several methods: calibration and error vs horizon.

Inputs are results of :func:`probdyn.report.ensemble.calibration_curve` and
:func:`probdyn.report.ensemble.rollout_metrics`, keyed by method label. Like
:mod:`probdyn.report.plots`, every function builds a bare ``Figure``, saves a PNG when given
``path`` and returns the figure. Rollouts with bands at chosen grid points are
:func:`probdyn.report.plots.plot_predictive_bands` of ``samples[:, n][..., points]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

__all__ = ["plot_calibration_curves", "plot_metrics_vs_horizon"]


def _save(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, bbox_inches="tight")
    return fig


def plot_calibration_curves(
    curves: dict[str, tuple[ArrayLike, ArrayLike]], path: str | Path | None = None
) -> Figure:
    """Observed against nominal quantile level, one line per method, and the diagonal.

    Parameters
    ----------
    curves : dict
        ``{label: (levels, observed)}``, each array of shape (num_levels,), as returned
        by :func:`~probdyn.report.ensemble.calibration_curve`.
    path : str or Path, optional
        Where to save a PNG.

    Returns
    -------
    matplotlib.figure.Figure
        One axes; a calibrated method lies on the dashed diagonal.
    """
    if not curves:
        raise ValueError("curves must map at least one label to (levels, observed)")
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="ideal")
    for label, (levels, observed) in curves.items():
        levels, observed = np.asarray(levels, float), np.asarray(observed, float)
        if levels.ndim != 1 or levels.shape != observed.shape:
            raise ValueError(
                f"curves[{label!r}] must be two arrays of one shape (num_levels,); "
                f"got {levels.shape} and {observed.shape}"
            )
        ax.plot(levels, observed, lw=1.5, label=label)
    ax.set(xlabel="nominal quantile level", ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_metrics_vs_horizon(
    results: dict[str, dict[str, ArrayLike]],
    names: tuple[str, ...] = ("rmse", "nll", "crps", "coverage_90"),
    times: ArrayLike | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Per-step metrics against the rollout horizon, one panel per metric.

    Parameters
    ----------
    results : dict
        ``{label: rollout_metrics(...) result}``; each needs ``f"{name}_per_step"``.
    names : tuple of str
        Metrics to plot (any with a ``_per_step`` array).
    times : array_like, shape (num_timesteps,), optional
        x axis (default the step index).
    path : str or Path, optional
        Where to save a PNG.

    Returns
    -------
    matplotlib.figure.Figure
        ``len(names)`` axes.
    """
    if not results:
        raise ValueError("results must map at least one label to rollout metrics")
    if not names:
        raise ValueError("names must list at least one metric")
    fig = Figure(figsize=(4 * len(names), 3.2))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        for label, metrics in results.items():
            key = f"{name}_per_step"
            if key not in metrics:
                raise ValueError(f"results[{label!r}] has no {key!r}; pass rollout_metrics results")
            values = np.asarray(metrics[key], float)
            x = np.arange(values.size) if times is None else np.asarray(times, float)
            if x.shape != values.shape:
                raise ValueError(
                    f"times has shape {x.shape}; expected {values.shape} for {label!r}"
                )
            ax.plot(x, values, lw=1.5, label=label)
        if name.startswith("coverage_"):
            ax.axhline(int(name.split("_")[1]) / 100, color="k", ls="--", lw=1)
        ax.set(xlabel="time" if times is not None else "step", title=name)
    axes[0].legend(fontsize="small")
    return _save(fig, path)
