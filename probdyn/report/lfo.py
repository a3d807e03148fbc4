"""Leave-future-out cross-validation (exact and approximate PSIS-LFO) for sequence models.

The M-step-ahead leave-future-out (LFO) elpd of a time series :math:`y_{0:T-1}` is

.. math::

    \\mathrm{elpd}_{\\mathrm{LFO}} = \\sum_{i=L}^{T-M}
        \\log p(y_{i:i+M-1} \\mid y_{0:i-1}), \\qquad
    p(y_{i:i+M-1} \\mid y_{0:i-1}) = \\int p(y_{i:i+M-1} \\mid y_{0:i-1}, \\theta)\\,
        p(\\theta \\mid y_{0:i-1})\\, d\\theta,

with ``min_history`` L and ``horizon`` M. Exact LFO refits the model for every i.
Approximate PSIS-LFO (Bürkner, Gabry & Vehtari 2020, section 3) fits once on
:math:`y_{0:L-1}` and moves forward: for a posterior fitted on :math:`y_{0:i^*-1}`,
draws are reweighted to :math:`p(\\theta \\mid y_{0:i-1})` with the ratios

.. math::

    \\log r_s^{(i)} = \\sum_{j=i^*}^{i-1} \\log p(y_j \\mid y_{0:j-1}, \\theta_s),

Pareto-smoothed (PSIS, Vehtari et al. 2024); when the Pareto shape :math:`\\hat k`
exceeds ``k_threshold`` (0.7), the model is refitted on :math:`y_{0:i-1}` and
:math:`i^* = i`. The one-step-ahead terms come from one replay of the model on the full
data per fit (:func:`probdyn.report.pointwise_log_likelihood`): a sequence model's
``pointwise_log_prob`` at step j conditions on the past only, so the same array serves
every i.

All ArviZ calls are in :func:`_psis` (one place to switch ArviZ versions).

References
----------
P.-C. Bürkner, J. Gabry and A. Vehtari (2020), "Approximate leave-future-out
cross-validation for Bayesian time series models", Journal of Statistical Computation
and Simulation 90(14), 2499-2523.
A. Vehtari, D. Simpson, A. Gelman, Y. Yao and J. Gabry (2024), "Pareto smoothed
importance sampling", JMLR 25(72).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy.special import logsumexp

__all__ = ["LFOResult", "lfo", "psis_lfo"]


class LFOResult(NamedTuple):
    """Result of :func:`lfo` / :func:`psis_lfo`.

    Attributes
    ----------
    elpd : float
        :math:`\\sum_i \\log p(y_{i:i+M-1} \\mid y_{0:i-1})` estimated.
    se : float
        Its standard error, :math:`\\sqrt{n \\operatorname{Var}(\\text{pointwise})}` (as
        ``arviz.loo``).
    pointwise : np.ndarray, shape (n,)
        One term per predicted block.
    history : np.ndarray of int, shape (n,)
        The history length i of each term: it predicts ``y[i:i+horizon]`` from ``y[:i]``.
    pareto_k : np.ndarray, shape (n,)
        PSIS shape estimate of each term's weights; NaN where the term used a fit on
        exactly ``y[:i]`` (no importance sampling).
    refits : np.ndarray of int
        History lengths at which the model was (re)fitted (the first is ``min_history``).
    refit_seconds : np.ndarray, shape (len(refits),)
        Wall time of each fit, including the replay for the pointwise log-likelihood.
    k_threshold : float
    horizon : int
    exact : bool
        True for exact LFO (a fit for every term).
    """

    elpd: float
    se: float
    pointwise: np.ndarray
    history: np.ndarray
    pareto_k: np.ndarray
    refits: np.ndarray
    refit_seconds: np.ndarray
    k_threshold: float
    horizon: int
    exact: bool


def _psis(log_ratios: np.ndarray) -> tuple[np.ndarray, float]:
    """Pareto-smoothed, normalised log weights (S,) and the shape estimate k."""
    from probdyn.report._arviz import psislw

    return psislw(log_ratios)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int; got {value!r} ({type(value).__name__})")
    if value < low:
        raise ValueError(f"{name} must be at least {low}; got {value}")
    return int(value)


def psis_lfo(
    log_lik_fn: Callable[[int], Any],
    num_timesteps: int,
    *,
    min_history: int,
    horizon: int = 1,
    k_threshold: float = 0.7,
    exact: bool = False,
    progress_bar: bool = False,
) -> LFOResult:
    """Leave-future-out cross-validation from a function that fits and evaluates.

    Parameters
    ----------
    log_lik_fn : callable
        ``log_lik_fn(i)`` fits the model to ``y[:i]`` and returns the one-step-ahead
        log-likelihood of the *full* series under its posterior draws: an array of shape
        (S, num_timesteps) whose column j is :math:`\\log p(y_j \\mid y_{0:j-1},
        \\theta_s)`.
    num_timesteps : int
        T, the length of the series.
    min_history : int
        L, the shortest history used for a prediction (the first fit).
    horizon : int
        M, the number of steps predicted jointly.
    k_threshold : float
        Refit when the Pareto k of the weights exceeds it (0.7, Bürkner et al. 2020).
    exact : bool
        Refit for every history length (exact LFO; ``k_threshold`` unused).
    progress_bar : bool
        A tqdm bar over the predicted steps, showing the number of refits.

    Returns
    -------
    LFOResult
    """
    T = _check_int("num_timesteps", num_timesteps, 2)
    horizon = _check_int("horizon", horizon, 1)
    L = _check_int("min_history", min_history, 1)
    if L > T - horizon:
        raise ValueError(
            f"min_history={L} leaves nothing to predict with horizon={horizon} and "
            f"num_timesteps={T}; expected min_history <= {T - horizon}"
        )
    k_threshold = float(k_threshold)
    if not np.isfinite(k_threshold):
        raise ValueError(f"k_threshold must be finite; got {k_threshold}")
    from tqdm.auto import tqdm

    refits, seconds = [], []

    def refit(i):
        t0 = time.perf_counter()
        ll = np.asarray(log_lik_fn(i), dtype=np.float64)
        seconds.append(time.perf_counter() - t0)
        refits.append(i)
        if ll.ndim != 2 or ll.shape[1] != T:
            raise ValueError(
                f"log_lik_fn({i}) returned shape {ll.shape}; expected (num_draws, {T})"
            )
        return ll

    steps = range(L, T - horizon + 1)
    pointwise, ks = [], []
    ll, i_star = refit(L), L
    bar = tqdm(steps, disable=not progress_bar, desc="LFO", unit="step")
    for i in bar:
        k = np.nan
        if i > i_star:
            if exact:
                ll, i_star = refit(i), i
            else:
                lw, k = _psis(ll[:, i_star:i].sum(axis=1))
                if not k <= k_threshold:  # NaN k refits too
                    ll, i_star, k = refit(i), i, np.nan
        pred = ll[:, i : i + horizon].sum(axis=1)
        if i == i_star:
            value = logsumexp(pred) - np.log(len(pred))
        else:
            value = logsumexp(lw + pred)
        pointwise.append(value)
        ks.append(k)
        bar.set_postfix(refits=len(refits))
    bar.close()
    pw = np.asarray(pointwise)
    return LFOResult(
        elpd=float(pw.sum()),
        se=float(np.sqrt(len(pw) * np.var(pw))),
        pointwise=pw,
        history=np.asarray(list(steps), dtype=int),
        pareto_k=np.asarray(ks, dtype=np.float64),
        refits=np.asarray(refits, dtype=int),
        refit_seconds=np.asarray(seconds),
        k_threshold=k_threshold,
        horizon=horizon,
        exact=bool(exact),
    )


def _slot_ids(time_arg) -> list[int | str]:
    ids = list(time_arg) if isinstance(time_arg, list | tuple) else [time_arg]
    for a in ids:
        if isinstance(a, bool) or not isinstance(a, int | str):
            raise TypeError(
                f"time_arg must be an int (position in args), a str (name in model_kwargs) "
                f"or a list of them; got {a!r}"
            )
    return ids


def lfo(
    model: Callable,
    *args: Any,
    min_history: int,
    horizon: int = 1,
    time_arg: int | str | Sequence[int | str] = 0,
    time_axis: int = 0,
    var_name: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    k_threshold: float = 0.7,
    exact: bool = False,
    seed: int = 0,
    progress_bar: bool = True,
    **fit_kwargs: Any,
) -> LFOResult:
    """Leave-future-out cross-validation of a NumPyro sequence model, fitted with
    :func:`probdyn.fit` (approximate PSIS-LFO, or exact with ``exact=True``).

    Parameters
    ----------
    model : callable
        A NumPyro model whose observed sequence site has a pointwise (one-step-ahead)
        log-likelihood (:class:`~probdyn.DiscreteHMM`, :class:`~probdyn.ObservedCTMC`,
        :class:`~probdyn.LinearSDE`, or any site with ``pointwise_log_prob``). The model
        must run on any prefix ``y[:i]``, and its latent sites must not change shape with
        the length (parameters, not per-step latent states).
    *args
        Model arguments, with the full series.
    min_history : int
        L: the first fit uses ``y[:L]``; predictions are made from histories L, L+1, ...
    horizon : int
        M: each term is the joint log predictive density of ``y[i:i+M]``.
    time_arg : int, str or list of them
        The arguments that carry time: positions in ``args`` (ints) or names in
        ``model_kwargs`` (strs); each is sliced to ``[:i]`` along ``time_axis`` for a fit.
        Default: the first positional argument.
    time_axis : int
        Axis of time in those arrays (e.g. 1 for a batch of sequences (N, T)).
    var_name : str, optional
        The observed site; required when the model has several with a pointwise form.
    model_kwargs : dict, optional
    k_threshold : float
        Pareto k above which the model is refitted (0.7).
    exact : bool
        Refit at every step: exact LFO.
    seed : int
        Seed of the fit at history i is ``seed + i``.
    progress_bar : bool
        A bar over the steps with the number of refits (the fits' own bars stay off).
    **fit_kwargs
        Passed to :func:`probdyn.fit` (``num_chains``, ``num_warmup``, ``num_samples``,
        ``method``, ...). ``predictive`` and ``checkpoint`` are not allowed.

    Returns
    -------
    LFOResult
        ``elpd``, ``se``, ``pointwise`` and ``history`` (one per predicted block),
        ``pareto_k``, ``refits`` and ``refit_seconds``.

    Raises
    ------
    ValueError
        Bad sizes; a time argument too short or not found; no observed site with a
        pointwise log-likelihood; a latent site whose shape depends on the length.

    Examples
    --------
    >>> res = lfo(model, y, min_history=100, num_chains=1, num_warmup=200,
    ...           num_samples=200)  # doctest: +SKIP
    >>> res.elpd, res.se, res.refits  # doctest: +SKIP
    """
    from probdyn.infer.fit import fit
    from probdyn.report.idata import model_dims
    from probdyn.report.pointwise import pointwise_log_likelihood

    if not callable(model):
        raise TypeError(f"model={model!r} is not callable; expected a NumPyro model function")
    for bad in ("predictive", "checkpoint", "checkpoint_every"):
        if bad in fit_kwargs:
            raise TypeError(f"lfo does not pass {bad}= to probdyn.fit; remove it")
    kwargs = dict(model_kwargs or {})
    ids = _slot_ids(time_arg)
    series = {}
    for a in ids:
        if isinstance(a, int):
            if not -len(args) <= a < len(args):
                raise ValueError(f"time_arg={a} is not a position in args (len {len(args)})")
            series[a] = np.asarray(args[a])
        else:
            if a not in kwargs:
                raise ValueError(f"time_arg={a!r} is not in model_kwargs {sorted(kwargs)}")
            series[a] = np.asarray(kwargs[a])
    lengths = set()
    for v in series.values():
        try:
            lengths.add(np.shape(v)[time_axis])
        except IndexError:
            lengths.add(None)
    if None in lengths or len(lengths) != 1:
        raise ValueError(
            f"the time arguments {ids} must all have one length along time_axis={time_axis}; "
            f"got shapes {[np.shape(v) for v in series.values()]}"
        )
    T = lengths.pop()

    def prefix(i):
        a, kw = list(args), dict(kwargs)
        for slot, v in series.items():
            cut = np.take(v, np.arange(i), axis=time_axis)
            if isinstance(slot, int):
                a[slot] = cut
            else:
                kw[slot] = cut
        return tuple(a), kw

    _, full_info = model_dims(model, args, kwargs)
    latent = [k for k, s in full_info.items() if s["type"] == "sample" and not s["is_observed"]]

    def log_lik_fn(i):
        a, kw = prefix(i)
        _, info = model_dims(model, a, kw)
        for k in latent:
            if k in info and info[k]["shape"] != full_info[k]["shape"]:
                raise ValueError(
                    f"latent site {k!r} has shape {info[k]['shape']} on y[:{i}] but "
                    f"{full_info[k]['shape']} on the full series; lfo needs latent sites "
                    "whose shape does not depend on the length"
                )
        idata = fit(model, *a, model_kwargs=kw, seed=seed + i, progress_bar=False, **fit_kwargs)
        post = idata.posterior
        draws = {k: np.asarray(post[k]).reshape((-1,) + np.shape(post[k])[2:]) for k in latent}
        ll = pointwise_log_likelihood(model, draws, *args, batch_ndims=1, **kwargs)
        name = var_name
        if name is None:
            cands = [k for k, v in ll.items() if np.ndim(v) >= 2 and np.shape(v)[-1] == T]
            if len(cands) != 1:
                raise ValueError(
                    f"var_name must name the observed sequence site; candidates with a "
                    f"time axis of length {T}: {cands}"
                )
            name = cands[0]
        if name not in ll:
            raise ValueError(f"var_name={name!r} is not an observed site; got {sorted(ll)}")
        v = np.asarray(ll[name])
        if v.ndim < 2 or v.shape[-1] != T:
            raise ValueError(
                f"site {name!r} has no pointwise log-likelihood with a time axis of length "
                f"{T} (shape {v.shape}); its distribution needs a pointwise_log_prob method"
            )
        return v.reshape(v.shape[0], -1, T).sum(axis=1)

    return psis_lfo(
        log_lik_fn,
        T,
        min_history=min_history,
        horizon=horizon,
        k_threshold=k_threshold,
        exact=exact,
        progress_bar=progress_bar,
    )
