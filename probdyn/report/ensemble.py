"""Metrics of rollout ensembles: accuracy, calibration and decorrelation against the truth.

An autoregressive or recurrent surrogate rolled out ``num_samples`` times from the initial
condition of each of ``num_trajectories`` test trajectories gives ``samples`` of shape
``(num_samples, num_trajectories, num_timesteps, *space)``; ``truth`` has shape
``(num_trajectories, num_timesteps, *space)``. At every time step the predictive
distribution of a value is summarised by the ensemble mean :math:`\\mu` and variance
:math:`\\sigma^2` (unbiased, ``ddof=1``; zero for one sample), i.e. the Gaussian
:math:`\\mathcal N(\\mu, \\sigma^2)` used by Coscia et al. (2025) for the NLL and the ECE.
Every metric is averaged over trajectories and space at each step (the ``*_per_step``
arrays) and then over time (the scalars).

References
----------
D. Coscia, M. Welling, N. Demo, G. Rozza, "BARNN: A Bayesian Autoregressive and Recurrent
Neural Network", ICML 2025 (arXiv 2501.18665), section 5 (NLL, ECE, RMSE).
V. Kuleshov, N. Fenner, S. Ermon, "Accurate Uncertainties for Deep Learning Using
Calibrated Regression", ICML 2018 (calibration curve of quantile levels).
T. Gneiting and A. E. Raftery, "Strictly proper scoring rules, prediction, and
estimation", JASA 102, 2007 (CRPS).
V. Fortin, M. Abaza, F. Anctil, R. Turcotte, "Why should ensemble spread match the RMSE of
the ensemble mean?", J. Hydrometeorology 15, 2014 (spread-skill ratio).
P. Lippe, B. S. Veeling, P. Perdikaris, R. E. Turner, J. Brandstetter, "PDE-Refiner:
Achieving Accurate Long Rollouts with Neural PDE Solvers", NeurIPS 2023 (correlation time).
"""

from __future__ import annotations

import operator

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtr

from probdyn.report.scores import crps

__all__ = [
    "METRIC_NAMES",
    "calibration_curve",
    "metrics_table",
    "rollout_metrics",
    "scalar_metrics",
]

#: The scalar metrics returned by :func:`rollout_metrics`; each but ``correlation_time`` also
#: comes per step as ``f"{name}_per_step"``.
METRIC_NAMES = (
    "nll",
    "ece",
    "rmse",
    "crps",
    "coverage_50",
    "coverage_90",
    "spread_skill",
    "correlation_time",
)


def _as_rollouts(samples, truth, time_axis):
    x = np.asarray(samples, dtype=float)
    y = np.asarray(truth, dtype=float)
    if y.ndim < 2:
        raise ValueError(
            f"truth must have shape (num_trajectories, num_timesteps, *space); got shape {y.shape}"
        )
    if isinstance(time_axis, bool):
        raise TypeError(f"time_axis must be an int, got {time_axis!r}")
    try:
        axis = operator.index(time_axis)
    except TypeError:
        raise TypeError(f"time_axis must be an int, got {time_axis!r}") from None
    if not -y.ndim <= axis < y.ndim:
        raise ValueError(f"time_axis={time_axis} is out of range for truth of shape {y.shape}")
    axis %= y.ndim
    if axis == 0:
        raise ValueError("time_axis must not be 0: axis 0 of truth indexes trajectories")
    if x.shape[1:] != y.shape or x.shape[0] < 1:
        raise ValueError(
            "samples must have shape (num_samples, *truth.shape) = "
            f"(num_samples, {', '.join(map(str, y.shape))}); got samples.shape={x.shape}"
        )
    if not np.all(np.isfinite(y)):
        raise ValueError("truth must be finite; got NaN or infinite values")
    y = np.moveaxis(y, axis, 1)
    x = np.moveaxis(x, axis + 1, 2)
    return x, y


def _moments(x):
    mean = x.mean(axis=0)
    if x.shape[0] == 1:
        return mean, np.zeros_like(mean)
    return mean, x.var(axis=0, ddof=1)


def _step_mean(values):
    """Mean over every axis but the time axis 1 of (N, T, ...) -> (T,); NaN propagates."""
    moved = np.moveaxis(values, 1, 0)
    return moved.reshape(moved.shape[0], -1).mean(axis=1)


def _pit(mean, var, y):
    """Gaussian probability integral transform; NaN where the predictive is not finite."""
    sd = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (y - mean) / sd
        # Zero spread: a point mass at the mean, PIT 0 or 1 (0.5 on the dot).
        z = np.where(sd == 0, np.where(y == mean, 0.0, np.sign(y - mean) * np.inf), z)
    u = ndtr(z)
    return np.where(np.isfinite(mean) & np.isfinite(var), u, np.nan)


def _levels(num_levels):
    if isinstance(num_levels, bool):
        raise TypeError(f"num_levels must be an integer >= 2, got {num_levels!r}")
    try:
        n = operator.index(num_levels)
    except TypeError:
        raise TypeError(f"num_levels must be an integer >= 2, got {num_levels!r}") from None
    if n < 2:
        raise ValueError(f"num_levels must be an integer >= 2, got {num_levels!r}")
    return (np.arange(1, n + 1) - 0.5) / n


def _coverage(u, levels):
    """Fraction of PIT values <= each level: (N, T, ...) -> (T, L) per step and (L,) pooled."""
    flat = np.moveaxis(u, 1, 0).reshape(u.shape[1], -1)  # (T, M)
    nan = np.isnan(flat)
    per_step = np.stack([(flat <= p).mean(axis=1) for p in levels], axis=-1)
    per_step[np.any(nan, axis=1)] = np.nan
    pooled = per_step.mean(axis=0)
    return per_step, pooled


def calibration_curve(
    samples: ArrayLike, truth: ArrayLike, num_levels: int = 100, *, time_axis: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Observed against nominal quantile levels of the Gaussian ensemble predictive.

    For each level :math:`p`, the fraction of truth values below the :math:`p`-quantile
    :math:`\\mu + \\sigma\\Phi^{-1}(p)` of :math:`\\mathcal N(\\mu, \\sigma^2)`, pooled over
    trajectories, time and space. A calibrated ensemble lies on the diagonal; the mean of
    ``|observed - levels|`` is the ECE of :func:`rollout_metrics`.

    Parameters
    ----------
    samples : array_like, shape (num_samples, num_trajectories, num_timesteps, *space)
    truth : array_like, shape (num_trajectories, num_timesteps, *space)
    num_levels : int
        Levels :math:`p_i = (i - 1/2)/L`, :math:`i = 1..L`.
    time_axis : int
        Axis of time in ``truth`` (one more in ``samples``).

    Returns
    -------
    levels : np.ndarray, shape (num_levels,)
    observed : np.ndarray, shape (num_levels,)
        NaN if any prediction is not finite.
    """
    levels = _levels(num_levels)
    x, y = _as_rollouts(samples, truth, time_axis)
    mean, var = _moments(x)
    _, pooled = _coverage(_pit(mean, var, y), levels)
    return levels, pooled


def rollout_metrics(
    samples: ArrayLike,
    truth: ArrayLike,
    *,
    time_axis: int = 1,
    num_levels: int = 100,
    correlation_threshold: float = 0.8,
) -> dict[str, float | np.ndarray]:
    """Accuracy and calibration of a rollout ensemble, per time step and averaged over time.

    With ensemble mean :math:`\\mu`, unbiased variance :math:`\\sigma^2` and truth :math:`y`,
    at each step (averages over trajectories and space):

    - ``nll``: :math:`\\tfrac12\\log(2\\pi\\sigma^2) + (y - \\mu)^2/(2\\sigma^2)` (``inf``
      where :math:`\\sigma = 0`);
    - ``rmse``: :math:`\\sqrt{\\overline{(y - \\mu)^2}}`;
    - ``crps``: ensemble CRPS :math:`\\mathbb E|X - y| - \\tfrac12\\mathbb E|X - X'|` over
      the samples (:func:`probdyn.report.scores.crps`);
    - ``coverage_50``, ``coverage_90``: fraction of :math:`y` inside the central Gaussian
      interval :math:`\\mu \\pm \\Phi^{-1}((1 + q)/2)\\,\\sigma`;
    - ``spread_skill``: :math:`\\sqrt{\\overline{\\sigma^2}} / \\mathrm{rmse}` (1 when the
      spread matches the error, < 1 overconfident);
    - ``ece``: :math:`\\frac1L\\sum_i |p_i - \\hat p_i|` with :math:`\\hat p_i` the fraction
      of :math:`y` below the :math:`p_i`-quantile of :math:`\\mathcal N(\\mu, \\sigma^2)`,
      :math:`p_i = (i - 1/2)/L`;
    - ``correlation``: Pearson correlation over space of :math:`\\mu` and :math:`y`, per
      trajectory, averaged over trajectories (NaN without space axes).

    The scalars are the time averages of the per-step values, except ``ece``, which (as in
    Coscia et al. 2025) pools all trajectories, steps and points into one calibration curve
    (:func:`calibration_curve`), and ``correlation_time``: the first step index at which
    ``correlation_per_step`` drops below ``correlation_threshold`` (``num_timesteps`` if it
    never does; multiply by the step size for time units).

    Parameters
    ----------
    samples : array_like, shape (num_samples, num_trajectories, num_timesteps, *space)
        Rollouts; the per-step predictive of every value is its ensemble over axis 0.
    truth : array_like, shape (num_trajectories, num_timesteps, *space)
        True trajectories (finite).
    time_axis : int
        Axis of time in ``truth`` (default 1, as above; ``samples`` has it one later).
    num_levels : int
        Quantile levels of the ECE.
    correlation_threshold : float
        Threshold of the correlation time.

    Returns
    -------
    dict
        Scalars (float) ``nll``, ``ece``, ``rmse``, ``crps``, ``coverage_50``,
        ``coverage_90``, ``spread_skill``, ``correlation_time``; arrays of shape
        (num_timesteps,) ``nll_per_step``, ``ece_per_step``, ``rmse_per_step``,
        ``crps_per_step``, ``coverage_50_per_step``, ``coverage_90_per_step``,
        ``spread_skill_per_step``, ``spread_per_step``, ``correlation_per_step``.
        Non-finite samples give NaN metrics, never finite ones.
    """
    threshold = float(correlation_threshold)
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"correlation_threshold must be in [-1, 1], got {correlation_threshold!r}")
    levels = _levels(num_levels)
    x, y = _as_rollouts(samples, truth, time_axis)
    num_timesteps = y.shape[1]
    mean, var = _moments(x)
    err2 = (y - mean) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        nll = 0.5 * np.log(2 * np.pi * var) + err2 / (2 * var)
    nll = np.where(var == 0, np.where(err2 == 0, -np.inf, np.inf), nll)
    nll = np.where(np.isfinite(mean) & np.isfinite(var), nll, np.nan)
    out: dict[str, float | np.ndarray] = {}
    out["nll_per_step"] = _step_mean(nll)
    rmse = np.sqrt(_step_mean(err2))
    out["rmse_per_step"] = rmse
    draws = np.moveaxis(x, 2, 1)  # (S, T, N, ...): time right after the draws, as scores expects
    pointwise = crps(draws, np.moveaxis(y, 1, 0)).pointwise  # (T, N, ...), NaN if a draw is
    out["crps_per_step"] = _step_mean(np.moveaxis(pointwise, 0, 1))  # NaN: no nan-skipping
    u = _pit(mean, var, y)
    for q in (0.5, 0.9):
        inside = np.abs(u - 0.5) <= q / 2
        out[f"coverage_{round(100 * q)}_per_step"] = _step_mean(
            np.where(np.isnan(u), np.nan, inside)
        )
    spread = np.sqrt(_step_mean(var))
    out["spread_per_step"] = spread
    with np.errstate(divide="ignore", invalid="ignore"):
        out["spread_skill_per_step"] = spread / rmse
    per_step_cov, pooled_cov = _coverage(u, levels)
    out["ece_per_step"] = np.abs(per_step_cov - levels).mean(axis=1)
    corr = _correlation(mean, y)
    out["correlation_per_step"] = corr
    for name in METRIC_NAMES[:-1]:
        out[name] = float(np.mean(out[f"{name}_per_step"]))
    out["ece"] = float(np.abs(pooled_cov - levels).mean())
    if np.all(np.isnan(corr)):
        out["correlation_time"] = float("nan")
    else:
        below = np.flatnonzero(~(corr >= threshold))  # NaN counts as decorrelated
        out["correlation_time"] = float(below[0] if below.size else num_timesteps)
    return out


def _correlation(mean, y):
    """Pearson correlation over space per trajectory and step, averaged over trajectories."""
    if mean.ndim == 2:
        return np.full(mean.shape[1], np.nan)
    m = mean.reshape(mean.shape[0], mean.shape[1], -1)
    t = y.reshape(y.shape[0], y.shape[1], -1)
    m = m - m.mean(axis=-1, keepdims=True)
    t = t - t.mean(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (m * t).sum(-1) / np.sqrt((m * m).sum(-1) * (t * t).sum(-1))
    return r.mean(axis=0)


def scalar_metrics(metrics: dict[str, float | np.ndarray]) -> dict[str, float]:
    """The time-averaged scalars of a :func:`rollout_metrics` result, as plain floats.

    Parameters
    ----------
    metrics : dict
        A result of :func:`rollout_metrics`.

    Returns
    -------
    dict
        ``{name: float}`` for every name of :data:`METRIC_NAMES` (ready for ``json.dump``).
    """
    missing = [name for name in METRIC_NAMES if name not in metrics]
    if missing:
        raise ValueError(f"metrics is missing {missing}; pass a result of rollout_metrics")
    return {name: float(metrics[name]) for name in METRIC_NAMES}


def metrics_table(
    results: dict[str, dict[str, float | np.ndarray]],
    *,
    names: tuple[str, ...] = METRIC_NAMES,
    digits: int = 3,
) -> str:
    """A Markdown table with one row per method and one column per metric.

    Parameters
    ----------
    results : dict
        ``{method label: rollout_metrics(...) result}`` (or any dict of scalars).
    names : tuple of str
        Metrics to show, in order (default :data:`METRIC_NAMES`).
    digits : int
        Significant digits.

    Returns
    -------
    str
        The table, header and separator included, without a trailing newline.
    """
    if not results:
        raise ValueError("results must map at least one method label to its metrics")
    header = "| method | " + " | ".join(names) + " |"
    lines = [header, "|" + "---|" * (len(names) + 1)]
    for label, metrics in results.items():
        missing = [name for name in names if name not in metrics]
        if missing:
            raise ValueError(f"results[{label!r}] is missing {missing}")
        cells = [f"{float(metrics[name]):.{digits}g}" for name in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
