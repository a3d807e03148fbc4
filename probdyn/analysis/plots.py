"""Figures for the dynamical-systems analysis; each returns a
:class:`matplotlib.figure.Figure` and saves a PNG when given a ``path``.

Figures are bare ``Figure`` objects rendered by the Agg canvas (nothing registered in
pyplot), as in :mod:`probdyn.report.plots`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from probdyn.analysis._checks import check_array
from probdyn.analysis.dwell import DWELL_LABELS, DwellRegions
from probdyn.analysis.kicks import RateSweep
from probdyn.analysis.orbits import OrbitSweep, emission_along_phase
from probdyn.analysis.stability import STABILITY_LABELS, Stability

__all__ = [
    "plot_ablation",
    "plot_dwell_regions",
    "plot_fixed_points",
    "plot_orbit",
    "plot_radius_vs_noise",
    "plot_spread",
]

_STABILITY_COLORS = ("tab:blue", "tab:orange", "tab:red", "tab:purple")
_DWELL_COLORS = ("#f4a261", "#9b2226", "#6c757d", "#d9d9d9")
_SYMBOL_COLORS = np.array(
    [[0.85, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.3, 0.85], [0.9, 0.6, 0.1], [0.5, 0.2, 0.6]]
)


def _save(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, bbox_inches="tight")
    return fig


def _emission_colors(probs: np.ndarray) -> np.ndarray:
    """RGB per point: probability-weighted mix of one colour per symbol."""
    k = probs.shape[1]
    if k > len(_SYMBOL_COLORS):
        return _SYMBOL_COLORS[np.argmax(probs, axis=1) % len(_SYMBOL_COLORS)]
    return np.clip(probs @ _SYMBOL_COLORS[:k], 0.0, 1.0)


def plot_fixed_points(
    projected_states: ArrayLike,
    projected_points: ArrayLike,
    stability: Stability,
    path: str | Path | None = None,
    *,
    mobius: bool = True,
) -> Figure:
    """Fixed points in the PC plane over the visited states, and their spectra.

    Parameters
    ----------
    projected_states : array_like, shape (num_states, >= 2)
        Visited states in PC coordinates (grey background).
    projected_points : array_like, shape (num_points, >= 2)
        Fixed points in the same coordinates.
    stability : Stability
        Of the same points (:func:`~probdyn.analysis.classify_stability`).
    path : str or Path, optional
        Where to save the PNG.
    mobius : bool
        Add a panel with the Moebius-mapped spectrum (unstable where real part > 0).

    Returns
    -------
    matplotlib.figure.Figure
        Two or three axes.
    """
    xs = check_array("projected_states", projected_states, 2)
    ps = check_array("projected_points", projected_points, 2)
    if len(ps) != len(stability.label):
        raise ValueError(
            f"projected_points has {len(ps)} rows but stability {len(stability.label)} points"
        )
    fig = Figure(figsize=(5 * (3 if mobius else 2), 4.2))
    axes = fig.subplots(1, 3 if mobius else 2)
    ax = axes[0]
    ax.scatter(xs[:, 0], xs[:, 1], s=3, c="0.7", alpha=0.5, label="visited states")
    for i, lab in enumerate(stability.label):
        ax.scatter(
            ps[i, 0], ps[i, 1], s=90, marker="*", c=_STABILITY_COLORS[lab], edgecolors="k",
            label=STABILITY_LABELS[lab] if lab not in stability.label[:i] else None,
        )  # fmt: skip
    ax.set(xlabel="PC1", ylabel="PC2", title="fixed points")
    ax.legend(fontsize=8)
    ax = axes[1]
    t = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(t), np.sin(t), "k--", lw=0.8)
    for i, lab in enumerate(stability.label):
        lam = stability.eigenvalues[i]
        ax.scatter(lam.real, lam.imag, s=12, c=_STABILITY_COLORS[lab], alpha=0.8)
    ax.set(xlabel="Re λ", ylabel="Im λ", title="Jacobian eigenvalues", aspect="equal")
    if mobius:
        ax = axes[2]
        ax.axvline(0.0, color="k", ls="--", lw=0.8)
        for i, lab in enumerate(stability.label):
            z = stability.mobius[i]
            z = z[np.isfinite(z)]
            ax.scatter(z.real, z.imag, s=12, c=_STABILITY_COLORS[lab], alpha=0.8)
        ax.set(xlabel="Re (λ-1)/(λ+1)", ylabel="Im", title="Moebius map (unstable: Re > 0)")
    fig.tight_layout()
    return _save(fig, path)


def plot_orbit(
    projected: ArrayLike,
    probs: ArrayLike,
    phase: ArrayLike | None = None,
    path: str | Path | None = None,
    *,
    symbol_names: Sequence[str] | None = None,
    num_bins: int = 24,
) -> Figure:
    """A noisy trajectory in the PC plane coloured by emission, and emissions along phase.

    Parameters
    ----------
    projected : array_like, shape (num_timesteps, >= 2)
        Trajectory in PC coordinates.
    probs : array_like, shape (num_timesteps, num_symbols)
        Emission probabilities at the same states.
    phase : array_like, shape (num_timesteps,), optional
        Rotation phase; with it a second panel shows the mean emission per phase bin.
    path : str or Path, optional
    symbol_names : sequence of str, optional
    num_bins : int
        Phase bins.

    Returns
    -------
    matplotlib.figure.Figure
        One or two axes.
    """
    p = check_array("projected", projected, 2)
    pr = check_array("probs", probs, 2)
    if len(pr) != len(p):
        raise ValueError(f"probs must have {len(p)} rows (one per state), got {len(pr)}")
    names = list(symbol_names) if symbol_names else [f"symbol {k}" for k in range(pr.shape[1])]
    fig = Figure(figsize=(10 if phase is not None else 5, 4.2))
    axes = np.atleast_1d(fig.subplots(1, 2 if phase is not None else 1))
    ax = axes[0]
    ax.plot(p[:, 0], p[:, 1], color="0.8", lw=0.4, zorder=0)
    ax.scatter(p[:, 0], p[:, 1], s=5, c=_emission_colors(pr))
    for k, name in enumerate(names[: len(_SYMBOL_COLORS)]):
        ax.scatter([], [], c=[_SYMBOL_COLORS[k]], label=name)
    ax.legend(fontsize=8)
    ax.set(xlabel="PC1", ylabel="PC2", title="orbit coloured by emission")
    if phase is not None:
        centers, mean, _ = emission_along_phase(np.asarray(phase), pr, num_bins)
        ax = axes[1]
        for k, name in enumerate(names):
            ax.plot(centers, mean[:, k], "o-", ms=3, label=name,
                    color=_SYMBOL_COLORS[k % len(_SYMBOL_COLORS)])  # fmt: skip
        ax.set(xlabel="phase (rad)", ylabel="mean emission probability", ylim=(0, 1))
        ax.set_title("emission along the rotation phase")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_dwell_regions(
    projected: ArrayLike, regions: DwellRegions, path: str | Path | None = None
) -> Figure:
    """States in the PC plane coloured by dwell region, and the dwell-time histogram.

    Parameters
    ----------
    projected : array_like, shape (num_states, >= 2)
        The states of ``regions`` in PC coordinates.
    regions : DwellRegions
    path : str or Path, optional

    Returns
    -------
    matplotlib.figure.Figure
        Two axes.
    """
    p = check_array("projected", projected, 2)
    if len(p) != len(regions.labels):
        raise ValueError(f"projected has {len(p)} rows but regions {len(regions.labels)}")
    fig = Figure(figsize=(10, 4.2))
    ax, ax2 = fig.subplots(1, 2)
    for code, name in enumerate(DWELL_LABELS):
        m = regions.labels == code
        if m.any():
            ax.scatter(p[m, 0], p[m, 1], s=5, c=_DWELL_COLORS[code],
                       label=f"{name} ({m.sum()})")  # fmt: skip
    ax.set(xlabel="PC1", ylabel="PC2", title="dwell regions")
    ax.legend(fontsize=8, markerscale=3)
    bins = np.linspace(0.5, max(np.max(regions.dwell_times), 1.0) + 0.5, 40)
    ax2.hist(regions.dwell_times, bins=bins, color="0.4")
    for x in (2, 8):
        ax2.axvline(x, color="k", ls="--", lw=0.8)
    ax2.set(xlabel="mean dwell time (steps)", ylabel="states", title="dwell times")
    fig.tight_layout()
    return _save(fig, path)


def plot_ablation(
    sweeps: Mapping[str, RateSweep],
    path: str | Path | None = None,
    *,
    xlabel: str = "μ",
) -> Figure:
    """Grouped bars of switching rate against the scale factor, one colour per group.

    Parameters
    ----------
    sweeps : mapping of str to RateSweep
        E.g. ``{"kick neurons": ..., "random units": ...}`` from
        :func:`~probdyn.analysis.ablation_sweep` (or noise sensitivity sweeps).
    path : str or Path, optional
    xlabel : str
        Name of the factor.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not sweeps:
        raise ValueError("sweeps must hold at least one RateSweep, got none")
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    width = 0.8 / len(sweeps)
    for i, (name, sw) in enumerate(sweeps.items()):
        x = np.arange(len(sw.values)) + (i - (len(sweeps) - 1) / 2) * width
        ax.bar(x, sw.rate, width, yerr=sw.rate_se, capsize=3, label=name)
    first = next(iter(sweeps.values()))
    ax.set_xticks(np.arange(len(first.values)), [f"{v:g}" for v in first.values])
    ax.set(xlabel=xlabel, ylabel="symbol switches per step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_radius_vs_noise(sweep: OrbitSweep, path: str | Path | None = None) -> Figure:
    """Orbit radius and mean-square radius against noise variance, with the linear fits.

    Parameters
    ----------
    sweep : OrbitSweep
    path : str or Path, optional

    Returns
    -------
    matplotlib.figure.Figure
        Two axes.
    """
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    v = sweep.noise_variances
    grid = np.linspace(0, v.max(), 50)
    for ax, y, se, fit, name in (
        (axes[0], sweep.radius, sweep.radius_se, sweep.radius_fit, "mean radius"),
        (axes[1], sweep.mean_square_radius, sweep.mean_square_radius_se,
         sweep.mean_square_fit, "mean-square radius"),
    ):  # fmt: skip
        ax.errorbar(v, y, yerr=se, fmt="o", color="k")
        ax.plot(grid, fit.slope * grid + fit.intercept, "r-",
                label=f"slope {fit.slope:.3g}, R² {fit.r_squared:.3f}")  # fmt: skip
        ax.set(xlabel="noise variance", ylabel=name)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_spread(
    spreads: Mapping[str, ArrayLike],
    gammas: ArrayLike,
    path: str | Path | None = None,
) -> Figure:
    """Trajectory spread over time from chosen states, one panel per state.

    Parameters
    ----------
    spreads : mapping of str to array_like, shape (num_gammas, num_timesteps + 1)
        E.g. ``{"cluster state": ..., "kick-zone state": ...}`` from
        :func:`~probdyn.analysis.trajectory_spread`.
    gammas : array_like, shape (num_gammas,)
    path : str or Path, optional

    Returns
    -------
    matplotlib.figure.Figure
        One axis per entry (sharing the y axis).
    """
    if not spreads:
        raise ValueError("spreads must hold at least one array, got none")
    g = np.asarray(gammas, float)
    fig = Figure(figsize=(4.5 * len(spreads), 3.8))
    axes = np.atleast_1d(fig.subplots(1, len(spreads), sharey=True))
    for ax, (name, sp) in zip(axes, spreads.items(), strict=True):
        sp = np.asarray(sp, float)
        if sp.shape[0] != len(g):
            raise ValueError(f"spreads[{name!r}] must have {len(g)} rows, got {sp.shape}")
        for k, gk in enumerate(g):
            ax.plot(np.arange(sp.shape[1]), sp[k], "o-", ms=3, label=f"γ = {gk:g}")
        ax.set(xlabel="step", title=name)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("trace of covariance across trajectories")
    fig.tight_layout()
    return _save(fig, path)
