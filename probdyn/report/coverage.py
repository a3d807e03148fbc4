"""Frequentist coverage of Bayesian intervals over replicate data sets with a fixed truth.

Simulation-based calibration (:mod:`probdyn.report.sbc`) draws the truth from the prior; a
scientist who asks "if the channel's rates are these, how often does my 90% interval
contain them?" needs the truth held fixed instead. :func:`replicate_coverage` fits every
replicate data set with NUTS in one compiled program
(:func:`probdyn.infer.fit_replicates`: ``vmap`` over replicates within a device, the
replicates split over devices) and counts, per scalar parameter and interval level, how often
the central interval contains the true value. With ``R`` replicates and nominal level
``p`` the count is Binomial(R, p) when intervals are calibrated; the result reports the
two-sided binomial p-value of that hypothesis.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from probdyn.report.sbc import _flat_labels

__all__ = ["ReplicateCoverage", "replicate_coverage"]


@dataclass
class ReplicateCoverage:
    """Outcome of :func:`replicate_coverage`.

    Attributes
    ----------
    param_names : list of str
        One label per scalar parameter, e.g. ``"log_rates[2]"``.
    truth : np.ndarray, shape (P,)
        True values.
    levels : tuple of float
        Nominal central-interval levels.
    covered : np.ndarray of bool, shape (R, P, L)
        Whether replicate r's level-l interval contains parameter p's true value.
    lower, upper : np.ndarray, shape (R, P, L)
        Interval end points.
    posterior_mean : np.ndarray, shape (R, P)
    divergences : np.ndarray of int, shape (R,)
        Divergent transitions per replicate.
    """

    param_names: list[str]
    truth: np.ndarray
    levels: tuple[float, ...]
    covered: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    posterior_mean: np.ndarray
    divergences: np.ndarray
    extra: dict = field(default_factory=dict)

    @property
    def num_replicates(self) -> int:
        return int(self.covered.shape[0])

    @property
    def coverage(self) -> np.ndarray:
        """Fraction of replicates covering the truth, shape (P, L)."""
        return self.covered.mean(axis=0)

    @property
    def pvalues(self) -> np.ndarray:
        """Two-sided binomial p-values of ``coverage == level``, shape (P, L)."""
        R = self.num_replicates
        counts = self.covered.sum(axis=0)
        out = np.empty(counts.shape)
        for idx in np.ndindex(counts.shape):
            out[idx] = stats.binomtest(int(counts[idx]), R, self.levels[idx[1]]).pvalue
        return out

    def to_markdown(self) -> str:
        """Coverage table: one row per parameter, one column per level."""
        head = "| parameter | truth | " + " | ".join(f"{lv:.0%} coverage" for lv in self.levels)
        head += " | mean width (largest level) |"
        lines = [head, "|---" * (len(self.levels) + 3) + "|"]
        width = (self.upper - self.lower)[..., -1].mean(axis=0)
        pv = self.pvalues
        for j, name in enumerate(self.param_names):
            cells = " | ".join(
                f"{self.coverage[j, i]:.0%} (p={pv[j, i]:.2f})" for i in range(len(self.levels))
            )
            lines.append(f"| {name} | {self.truth[j]:.4g} | {cells} | {width[j]:.3g} |")
        return "\n".join(lines)

    def plot(self, path: str | Path | None = None, max_params: int = 8):
        """Intervals of every replicate against the truth (one panel per parameter)."""
        import matplotlib

        if path is not None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        P = min(len(self.param_names), max_params)
        fig, axes = plt.subplots(1, P, figsize=(2.6 * P, 3.6), squeeze=False)
        R = self.num_replicates
        for j, ax in enumerate(axes[0]):
            lo, hi = self.lower[:, j, -1], self.upper[:, j, -1]
            ok = self.covered[:, j, -1]
            order = np.argsort(self.posterior_mean[:, j])
            for y, r in enumerate(order):
                ax.plot([lo[r], hi[r]], [y, y], color="C0" if ok[r] else "C3", lw=1.2)
            ax.plot(self.posterior_mean[order, j], np.arange(R), ".", color="k", ms=2)
            ax.axvline(self.truth[j], color="C1", lw=2)
            ax.set_title(f"{self.param_names[j]}\n{self.coverage[j, -1]:.0%} covered", fontsize=9)
            ax.set_yticks([])
        axes[0][0].set_ylabel(f"replicate ({self.levels[-1]:.0%} intervals; red: miss)")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
            plt.close(fig)
        return fig


def replicate_coverage(
    model: Callable,
    datasets: Mapping[str, object],
    truth: Mapping[str, object],
    *args,
    model_kwargs: Mapping | None = None,
    levels: Sequence[float] = (0.5, 0.9),
    num_warmup: int = 500,
    num_samples: int = 500,
    seed: int = 0,
    mesh=None,
    **nuts_options,
) -> ReplicateCoverage:
    """Coverage of the true parameters by central posterior intervals over replicates.

    Parameters
    ----------
    model : callable
        NumPyro model taking its data as keyword arguments.
    datasets : mapping of str to array
        Model keywords -> replicate data, each with a leading replicate axis (R, ...);
        everything that differs between replicates (observations, observation times).
    truth : mapping of str to array
        Latent site -> true value (the same for every replicate).
    *args
        Positional model arguments shared by all replicates.
    model_kwargs : mapping, optional
        Keyword arguments shared by all replicates.
    levels : sequence of float
        Central interval levels in (0, 1), increasing.
    num_warmup, num_samples : int
        NUTS warmup and draws, one chain per replicate.
    seed : int
        Seeds initialisation and sampling.
    mesh : jax.sharding.Mesh, optional
        1-D device mesh the replicates are split over (default every device, of every
        process; :func:`probdyn.infer.fit_replicates`).
    **nuts_options
        ``target_accept_prob``, ``max_tree_depth``, ``dense_mass``.

    Returns
    -------
    ReplicateCoverage
    """
    import jax

    from probdyn.infer.replicates import fit_replicates  # here: infer imports report

    levels = tuple(float(lv) for lv in levels)
    if not levels or any(not 0 < lv < 1 for lv in levels) or list(levels) != sorted(levels):
        raise ValueError(f"levels must be increasing numbers in (0, 1); got {levels}")
    if not datasets:
        raise ValueError("datasets must hold at least one batched model keyword")
    sizes = {k: np.shape(v)[0] if np.ndim(v) else None for k, v in datasets.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise ValueError(f"datasets must share one leading replicate axis; got sizes {sizes}")
    if not truth:
        raise ValueError("truth must name at least one latent site")
    obs_batch = {k: jax.numpy.asarray(v) for k, v in datasets.items()}
    params = list(truth)
    draws, divergences = fit_replicates(
        model,
        obs_batch,
        *args,
        model_kwargs=model_kwargs,
        params=params,
        method="nuts",
        num_warmup=num_warmup,
        num_samples=num_samples,
        seed=seed,
        mesh=mesh,
        **nuts_options,
    )
    R = next(iter(sizes.values()))
    names, true_cols, draw_cols = [], [], []
    for p in params:
        t = np.asarray(truth[p], dtype=float)
        d = np.asarray(draws[p]).reshape(R, num_samples, -1)
        if d.shape[-1] != t.size:
            raise ValueError(f"truth[{p!r}] has {t.size} values; the site has {d.shape[-1]}")
        names += _flat_labels(p, t.shape)
        true_cols.append(t.reshape(-1))
        draw_cols.append(d)
    true_vals = np.concatenate(true_cols)
    d = np.concatenate(draw_cols, axis=-1)  # (R, S, P)
    qs = np.array([[(1 - lv) / 2, (1 + lv) / 2] for lv in levels])  # (L, 2)
    q = np.quantile(d, qs.reshape(-1), axis=1).reshape(len(levels), 2, R, -1)
    lower = np.moveaxis(q[:, 0], 0, -1)  # (R, P, L)
    upper = np.moveaxis(q[:, 1], 0, -1)
    covered = (lower <= true_vals[None, :, None]) & (true_vals[None, :, None] <= upper)
    return ReplicateCoverage(
        param_names=names,
        truth=true_vals,
        levels=levels,
        covered=covered,
        lower=lower,
        upper=upper,
        posterior_mean=d.mean(axis=1),
        divergences=np.asarray(divergences),
    )
