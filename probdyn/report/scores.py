"""Proper scores and calibration checks for predicted trajectories.

Every function takes ``draws`` of shape ``(num_draws, num_timesteps, ...)`` and, where it
compares against data, ``obs`` of shape ``(num_timesteps, ...)``. ``draws`` may also be an
``xarray.DataArray`` from ``idata.posterior_predictive[name]`` with dims
``("chain", "draw", ...)``; chains and draws are then pooled into the leading axis.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike
from scipy.special import gammaln, logsumexp

from probdyn.report import _arviz as _az

__all__ = [
    "CRPSResult",
    "CoverageResult",
    "bits_per_spike",
    "crps",
    "interval_coverage",
    "lpd",
    "pointwise_log_predictive_density",
    "r2_score",
]


class CRPSResult(NamedTuple):
    """Continuous ranked probability score of a sample-based forecast.

    Attributes
    ----------
    pointwise : np.ndarray, shape (num_timesteps, ...)
        CRPS of every observed value (NaN where ``obs`` is NaN).
    per_step : np.ndarray, shape (num_timesteps,)
        Mean over the non-time axes of ``pointwise`` (NaNs ignored).
    mean : float
        Mean over all observed values (NaNs ignored). Lower is better.
    """

    pointwise: np.ndarray
    per_step: np.ndarray
    mean: float


class CoverageResult(NamedTuple):
    """Empirical coverage of central predictive intervals.

    Attributes
    ----------
    levels : tuple of float
        Nominal coverage levels, e.g. ``(0.5, 0.9)``.
    lower, upper : np.ndarray, shape (num_levels, num_timesteps, ...)
        Interval ends: the ``(1 - level) / 2`` and ``(1 + level) / 2`` sample quantiles.
    covered : np.ndarray of bool, shape (num_levels, num_timesteps, ...)
        Whether ``lower <= obs <= upper``.
    per_step : np.ndarray, shape (num_levels, num_timesteps)
        Fraction covered at each time step, over the non-time axes.
    overall : np.ndarray, shape (num_levels,)
        Fraction covered over all observed values; close to ``levels`` when calibrated.
    """

    levels: tuple[float, ...]
    lower: np.ndarray
    upper: np.ndarray
    covered: np.ndarray
    per_step: np.ndarray
    overall: np.ndarray


def _pool_draws(x, name: str) -> np.ndarray:
    """Return ``x`` as an array with the draws on axis 0, pooling xarray chain/draw dims."""
    if isinstance(x, xr.DataArray):
        if "chain" in x.dims and "draw" in x.dims:
            x = x.stack(__sample__=("chain", "draw")).transpose("__sample__", ...)
        elif "draw" in x.dims:
            x = x.transpose("draw", ...)
        x = x.values
    arr = np.asarray(x, dtype=float)
    if arr.ndim < 1 or arr.shape[0] < 1:
        raise ValueError(
            f"{name} must have shape (num_draws, ...) with at least one draw; got shape {arr.shape}"
        )
    return arr


def _check_pair(draws, obs) -> tuple[np.ndarray, np.ndarray]:
    x = _pool_draws(draws, "draws")
    y = np.asarray(obs.values if isinstance(obs, xr.DataArray) else obs, dtype=float)
    if y.ndim < 1:
        raise ValueError(f"obs must have shape (num_timesteps, ...); got a scalar {y!r}")
    if x.shape[1:] != y.shape:
        raise ValueError(
            f"draws must have shape (num_draws, *obs.shape) = (num_draws, {y.shape}); "
            f"got draws.shape={x.shape} and obs.shape={y.shape}"
        )
    return x, y


def _per_step(values: np.ndarray) -> np.ndarray:
    flat = values.reshape(values.shape[0], -1)
    with np.errstate(invalid="ignore"):
        counts = np.sum(~np.isnan(flat), axis=1)
        sums = np.nansum(flat, axis=1)
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def crps(draws: ArrayLike | xr.DataArray, obs: ArrayLike, *, fair: bool = False) -> CRPSResult:
    r"""Sample-based continuous ranked probability score, in :math:`O(S \log S)`.

    Uses the energy form

    .. math::

        \mathrm{CRPS}(F, y) = \mathbb{E}|X - y| - \tfrac12 \mathbb{E}|X - X'|,

    with :math:`X, X'` independent draws of the forecast. For sorted draws
    :math:`x_{(1)} \le \dots \le x_{(S)}` the second term is computed without the
    :math:`O(S^2)` double sum:

    .. math::

        \sum_{i,j} |x_i - x_j| = 2 \sum_{i=1}^{S} (2i - S - 1)\, x_{(i)}.

    With ``fair=False`` the double sum is divided by :math:`S^2` (the CRPS of the empirical
    distribution of the draws); with ``fair=True`` by :math:`S(S-1)`, which is unbiased for
    the CRPS of the distribution the draws come from (Ferro 2014).

    Parameters
    ----------
    draws : array_like or xarray.DataArray, shape (num_draws, num_timesteps, ...)
        Predictive draws. A DataArray with dims ``("chain", "draw", ...)`` is pooled.
    obs : array_like, shape (num_timesteps, ...)
        Observed values; NaN entries are scored as NaN and left out of the means.
    fair : bool
        Use the unbiased ("fair") estimator of the spread term.

    Returns
    -------
    CRPSResult
        ``pointwise`` (num_timesteps, ...), ``per_step`` (num_timesteps,) and ``mean``.

    References
    ----------
    Gneiting, T. and Raftery, A. E. (2007). Strictly proper scoring rules, prediction, and
    estimation. JASA 102(477), 359-378.
    Ferro, C. A. T. (2014). Fair scores for ensemble forecasts. QJRMS 140, 1917-1923.
    """
    x, y = _check_pair(draws, obs)
    num_draws = x.shape[0]
    if fair and num_draws < 2:
        raise ValueError(f"fair=True needs at least 2 draws; got draws.shape={x.shape}")
    abs_err = np.mean(np.abs(x - y[None]), axis=0)
    xs = np.sort(x, axis=0)
    weights = 2.0 * np.arange(1, num_draws + 1) - num_draws - 1
    weights = weights.reshape((num_draws,) + (1,) * (x.ndim - 1))
    pair_sum = 2.0 * np.sum(weights * xs, axis=0)  # sum_{i,j} |x_i - x_j|
    denom = num_draws * (num_draws - 1) if fair else num_draws**2
    pointwise = abs_err - 0.5 * pair_sum / denom
    pointwise = np.where(np.isnan(y), np.nan, pointwise)
    per_step = _per_step(pointwise)
    mean = float(np.nanmean(pointwise)) if np.any(~np.isnan(pointwise)) else float("nan")
    return CRPSResult(pointwise=pointwise, per_step=per_step, mean=mean)


def interval_coverage(
    draws: ArrayLike | xr.DataArray, obs: ArrayLike, levels: tuple[float, ...] = (0.5, 0.9)
) -> CoverageResult:
    """Empirical coverage of central predictive intervals, per time step and overall.

    For each level :math:`\\ell` the interval runs from the :math:`(1-\\ell)/2` to the
    :math:`(1+\\ell)/2` sample quantile of the draws (linear interpolation). A calibrated
    forecast covers a fraction close to :math:`\\ell` of the observations.

    Parameters
    ----------
    draws : array_like or xarray.DataArray, shape (num_draws, num_timesteps, ...)
        Predictive draws. A DataArray with dims ``("chain", "draw", ...)`` is pooled.
    obs : array_like, shape (num_timesteps, ...)
        Observed values; NaN entries count as not observed.
    levels : tuple of float
        Nominal levels, each strictly between 0 and 1.

    Returns
    -------
    CoverageResult
        Interval ends and coverage, see :class:`CoverageResult` for shapes.
    """
    x, y = _check_pair(draws, obs)
    levels = tuple(float(v) for v in np.atleast_1d(levels))
    if not levels or any(not 0.0 < v < 1.0 for v in levels):
        raise ValueError(f"levels must be numbers strictly between 0 and 1; got {levels!r}")
    lev = np.asarray(levels)
    qs = np.concatenate([(1.0 - lev) / 2.0, (1.0 + lev) / 2.0])
    quant = np.quantile(x, qs, axis=0)
    lower, upper = quant[: len(levels)], quant[len(levels) :]
    observed = ~np.isnan(y)
    covered = (lower <= y[None]) & (y[None] <= upper) & observed[None]
    frac = np.where(observed[None], covered, np.nan)
    per_step = np.stack([_per_step(f) for f in frac])
    with np.errstate(invalid="ignore"):
        overall = np.array([np.nanmean(f) if observed.any() else np.nan for f in frac])
    return CoverageResult(levels, lower, upper, covered, per_step, overall)


def lpd(log_lik: ArrayLike | xr.DataArray) -> np.ndarray:
    r"""Pointwise log predictive density from log-likelihood draws (log-mean-exp).

    .. math::

        \mathrm{lpd}_i = \log \frac{1}{S} \sum_{s=1}^{S} p(y_i \mid \theta_s)
                       = \operatorname{logsumexp}_s \ell_{s,i} - \log S,

    computed stably with ``scipy.special.logsumexp``.

    Parameters
    ----------
    log_lik : array_like or xarray.DataArray, shape (num_draws, ...)
        :math:`\ell_{s,i} = \log p(y_i \mid \theta_s)`. A DataArray with dims
        ``("chain", "draw", ...)`` is pooled.

    Returns
    -------
    np.ndarray, shape (...)
        The log predictive density of every observation; sum it for the total lpd.

    References
    ----------
    Vehtari, A., Gelman, A. and Gabry, J. (2017). Practical Bayesian model evaluation using
    leave-one-out cross-validation and WAIC. Statistics and Computing 27, 1413-1432.
    """
    ll = _pool_draws(log_lik, "log_lik")
    return logsumexp(ll, axis=0) - np.log(ll.shape[0])


def pointwise_log_predictive_density(idata, var_name: str | None = None) -> xr.DataArray:
    """Pointwise log predictive density of an observed site, from ``idata.log_likelihood``.

    Parameters
    ----------
    idata : arviz.InferenceData or xarray.DataTree
        Must have a ``log_likelihood`` group with dims ``("chain", "draw", ...)``.
    var_name : str, optional
        Observed site; may be omitted when ``log_likelihood`` holds a single variable.

    Returns
    -------
    xarray.DataArray, shape (...)
        :func:`lpd` of every observation, keeping the observation dims (e.g. ``"time"``).
    """
    if not _az.has_group(idata, "log_likelihood"):
        got = _az.group_names(idata) if _az.is_result(idata) else type(idata).__name__
        raise ValueError(f"idata must have a log_likelihood group; got {got}")
    log_lik = _az.get_group(idata, "log_likelihood")
    names = list(log_lik.data_vars)
    if var_name is None:
        if len(names) != 1:
            raise ValueError(
                f"var_name must name one of the log_likelihood variables {names} "
                "when there is more than one; got None"
            )
        var_name = names[0]
    if var_name not in names:
        raise ValueError(f"var_name must be one of {names}; got {var_name!r}")
    da = log_lik[var_name]
    other_dims = [d for d in da.dims if d not in ("chain", "draw")]
    values = lpd(da)
    coords = {d: da.coords[d] for d in other_dims if d in da.coords}
    return xr.DataArray(values, dims=other_dims, coords=coords, name=f"lpd_{var_name}")


# --------------------------------------------------------------------------------------
# spike-train metrics (moved from probdyn.models.langevin_flow)
# --------------------------------------------------------------------------------------


def _poisson_logpmf_np(rates, counts):
    return counts * np.log(rates) - rates - gammaln(counts + 1.0)


def bits_per_spike(
    rates: ArrayLike, spikes: ArrayLike, null_rates: ArrayLike | None = None
) -> float:
    """Poisson log-likelihood gain over a per-neuron mean-rate model, in bits per spike.

    .. math::

        \\mathrm{bps} = \\frac{\\log p(y \\mid \\hat\\lambda) - \\log p(y \\mid
        \\bar\\lambda)}{\\ln 2 \\sum y}

    (the Neural Latents Benchmark convention).

    Parameters
    ----------
    rates : ArrayLike, shape (..., num_neurons)
        Predicted expected counts per bin, positive.
    spikes : ArrayLike, same shape
        Observed counts.
    null_rates : ArrayLike, shape (num_neurons,), optional
        The null model's rate per neuron; default the mean of ``spikes`` over all other
        axes.

    Returns
    -------
    float
    """
    rates = np.asarray(rates, dtype=float)
    spikes = np.asarray(spikes, dtype=float)
    if rates.shape != spikes.shape:
        raise ValueError(f"rates {rates.shape} and spikes {spikes.shape} must have one shape")
    if not np.all(np.isfinite(rates)) or np.any(rates <= 0):
        raise ValueError("rates must be positive and finite")
    if np.any(spikes < 0) or not np.all(np.isfinite(spikes)):
        raise ValueError("spikes must be non-negative counts")
    total = spikes.sum()
    if total <= 0:
        raise ValueError("spikes contains no spikes; bits per spike is undefined")
    if null_rates is None:
        null_rates = spikes.reshape(-1, spikes.shape[-1]).mean(0)
    null = np.broadcast_to(np.maximum(np.asarray(null_rates, dtype=float), 1e-12), spikes.shape)
    gain = np.sum(_poisson_logpmf_np(rates, spikes)) - np.sum(_poisson_logpmf_np(null, spikes))
    return float(gain / (np.log(2.0) * total))


def r2_score(pred: ArrayLike, target: ArrayLike) -> float:
    """Coefficient of determination per output column, averaged over columns.

    Parameters
    ----------
    pred, target : ArrayLike, shape (..., num_outputs)
        Flattened over all leading axes.
    """
    pred = np.asarray(pred, dtype=float)
    target = np.asarray(target, dtype=float)
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} must have one shape")
    p = pred.reshape(-1, pred.shape[-1])
    t = target.reshape(-1, target.shape[-1])
    ss_res = ((t - p) ** 2).sum(0)
    ss_tot = ((t - t.mean(0)) ** 2).sum(0)
    return float(np.mean(1.0 - ss_res / ss_tot))
