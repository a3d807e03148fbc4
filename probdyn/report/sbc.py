"""Simulation-based calibration (SBC) of an inference method on a NumPyro model.

If parameters are drawn from the prior, data simulated from them, and the posterior
computed exactly, then the rank of each true parameter among its posterior draws is
uniform. A rank histogram that is U-shaped (posterior too narrow), hump-shaped (too wide)
or skewed (biased) exposes an inference method -- or a model -- that does not compute the
posterior it claims to.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

__all__ = [
    "SBCResult",
    "default_num_bins",
    "rank_statistics",
    "rank_uniformity_pvalues",
    "sbc",
]


@dataclass
class SBCResult:
    """Outcome of :func:`sbc`.

    Attributes
    ----------
    param_names : list of str
        One label per scalar parameter, e.g. ``"mu"``, ``"theta[1]"``.
    ranks : np.ndarray of int, shape (num_replicates, num_params)
        Rank of the true value among the ``num_posterior_draws`` thinned draws, in
        ``{0, ..., num_posterior_draws}``.
    prior_draws : np.ndarray, shape (num_replicates, num_params)
        The true parameter values.
    num_posterior_draws : int
        Posterior draws each rank is computed from (after thinning).
    num_bins : int
        Bins of the chi-squared test and of the histogram.
    pvalues : np.ndarray, shape (num_params,)
        Chi-squared test of uniform ranks, per parameter.
    method : str
        Inference method that was checked.
    thin : int
        Thinning applied to each chain before ranking.
    """

    param_names: list[str]
    ranks: np.ndarray
    prior_draws: np.ndarray
    num_posterior_draws: int
    num_bins: int
    pvalues: np.ndarray
    method: str = ""
    thin: int = 1
    extra: dict = field(default_factory=dict)

    @property
    def num_replicates(self) -> int:
        return int(self.ranks.shape[0])

    def failed(self, alpha: float = 0.01) -> list[str]:
        """Parameters whose rank uniformity is rejected at level ``alpha``."""
        return [n for n, p in zip(self.param_names, self.pvalues, strict=True) if p < alpha]

    def plot(self, path: str | Path | None = None):
        """Rank histograms with the binomial 99% band; see :func:`plot_sbc_ranks`."""
        from probdyn.report.plots import plot_sbc_ranks

        return plot_sbc_ranks(self, path)

    def to_markdown(self) -> str:
        rows = [
            f"| {n} | {p:.3g} | {'ok' if p >= 0.01 else 'FAIL'} |"
            for n, p in zip(self.param_names, self.pvalues, strict=True)
        ]
        head = (
            f"SBC of `{self.method}`: {self.num_replicates} replicates, "
            f"{self.num_posterior_draws} posterior draws (thin {self.thin}), "
            f"{self.num_bins} bins\n\n| parameter | chi-squared p | verdict |\n|---|---|---|"
        )
        return "\n".join([head, *rows]) + "\n"

    def __str__(self) -> str:
        return self.to_markdown()


def rank_statistics(
    prior_values: ArrayLike, posterior_draws: ArrayLike, seed: int | None = 0
) -> np.ndarray:
    r"""SBC rank of each true value among its posterior draws, ties broken at random.

    .. math::

        r = \#\{l : \theta_l < \theta^\ast\} + U, \quad
        U \sim \mathrm{Uniform}\{0, \dots, \#\{l : \theta_l = \theta^\ast\}\}

    (ties only arise for discrete parameters).

    Parameters
    ----------
    prior_values : array_like, shape (num_replicates, num_params)
        True values :math:`\theta^\ast`.
    posterior_draws : array_like, shape (num_replicates, num_posterior_draws, num_params)
        Posterior draws :math:`\theta_l` for each replicate.
    seed : int, optional
        Seed of the tie-breaking generator.

    Returns
    -------
    np.ndarray of int, shape (num_replicates, num_params)
        Values in ``{0, ..., num_posterior_draws}``.
    """
    theta = np.asarray(prior_values)
    draws = np.asarray(posterior_draws)
    if theta.ndim != 2:
        raise ValueError(
            f"prior_values must have shape (num_replicates, num_params); got {theta.shape}"
        )
    if draws.ndim != 3 or draws.shape[0] != theta.shape[0] or draws.shape[2] != theta.shape[1]:
        raise ValueError(
            "posterior_draws must have shape (num_replicates, num_posterior_draws, num_params)"
            f" = ({theta.shape[0]}, L, {theta.shape[1]}); got {draws.shape}"
        )
    less = np.sum(draws < theta[:, None, :], axis=1)
    ties = np.sum(draws == theta[:, None, :], axis=1)
    rng = np.random.default_rng(seed)
    return less + rng.integers(0, ties + 1)


def default_num_bins(num_replicates: int, num_posterior_draws: int) -> int:
    """Number of histogram bins: at most 20, about 5 or more replicates expected per bin,
    dividing ``num_posterior_draws + 1`` when possible so that bins hold equally many
    ranks (Talts et al. 2018)."""
    num_ranks = num_posterior_draws + 1
    cap = max(2, min(20, num_replicates // 5, num_ranks))
    divisors = [b for b in range(2, cap + 1) if num_ranks % b == 0]
    return max(divisors) if divisors else cap


def rank_uniformity_pvalues(
    ranks: ArrayLike, num_posterior_draws: int, num_bins: int | None = None
) -> np.ndarray:
    """Chi-squared test that SBC ranks are uniform on ``{0, ..., num_posterior_draws}``.

    Ranks are grouped into ``num_bins`` contiguous bins; the expected count of a bin is
    proportional to the number of rank values it holds, so bins need not be equal.

    Parameters
    ----------
    ranks : array_like of int, shape (num_replicates, num_params)
    num_posterior_draws : int
        Largest possible rank.
    num_bins : int, optional
        Default :func:`default_num_bins`.

    Returns
    -------
    np.ndarray, shape (num_params,)
        p-values of ``scipy.stats.chisquare``.
    """
    r = np.asarray(ranks)
    if r.ndim != 2:
        raise ValueError(f"ranks must have shape (num_replicates, num_params); got {r.shape}")
    if r.size and (r.min() < 0 or r.max() > num_posterior_draws):
        raise ValueError(
            f"ranks must lie in [0, num_posterior_draws={num_posterior_draws}]; "
            f"got values in [{r.min()}, {r.max()}]"
        )
    num_ranks = num_posterior_draws + 1
    if num_bins is None:
        num_bins = default_num_bins(r.shape[0], num_posterior_draws)
    if isinstance(num_bins, bool) or not isinstance(num_bins, int | np.integer):
        raise TypeError(f"num_bins={num_bins!r} is a {type(num_bins).__name__}; expected an int")
    if not 2 <= num_bins <= num_ranks:
        raise ValueError(f"num_bins must be in [2, {num_ranks}]; got {num_bins}")
    bin_of = (np.arange(num_ranks) * num_bins) // num_ranks
    widths = np.bincount(bin_of, minlength=num_bins)
    expected = r.shape[0] * widths / num_ranks
    pvals = []
    for j in range(r.shape[1]):
        counts = np.bincount(bin_of[r[:, j]], minlength=num_bins)
        pvals.append(stats.chisquare(counts, expected).pvalue)
    return np.asarray(pvals)


def _flat_labels(name: str, shape: tuple[int, ...]) -> list[str]:
    if not shape:
        return [name]
    return [f"{name}[{','.join(map(str, idx))}]" for idx in np.ndindex(*shape)]


def _latent_sites(model, args, kwargs, obs_sites, rng_key):
    from numpyro import handlers

    tr = handlers.trace(handlers.seed(model, rng_key)).get_trace(*args, **kwargs)
    for s in obs_sites:
        if s not in tr or tr[s]["type"] != "sample":
            raise ValueError(
                f"obs_sites must name sample sites of the model; {s!r} is not one "
                f"(sample sites: {[k for k, v in tr.items() if v['type'] == 'sample']})"
            )
        if tr[s]["is_observed"]:
            raise ValueError(
                f"obs site {s!r} is still observed when its model argument is None; "
                "check obs_kwargs (which model keyword holds the observations)"
            )
    return [
        k
        for k, v in tr.items()
        if v["type"] == "sample" and not v["is_observed"] and k not in obs_sites
    ]


def _accepts_kwarg(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return True
    if name in params:
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


_VECTOR_OPTIONS = {
    "num_warmup",
    "num_chains",
    "target_accept_prob",
    "max_tree_depth",
    "dense_mass",
    "step_size",
    "num_steps",
    "trajectory_length",
}


def _fit_vectorized_hmc(
    model, args, model_kwargs, obs_batch, params, method, num_draws, thin, seed, options, mesh=None
):
    """All replicates in one program through :func:`probdyn.infer.fit_replicates` (the
    replicate axis over every device). Returns (draws (R, num_draws, ...) per param,
    divergences (R,))."""
    from probdyn.infer.replicates import fit_replicates

    unknown = sorted(set(options) - _VECTOR_OPTIONS)
    if unknown:
        raise TypeError(
            f"vectorized=True accepts fit options {sorted(_VECTOR_OPTIONS)}; got {unknown} "
            "(use vectorized=False to pass them to probdyn.infer.fit)"
        )
    if int(options.get("num_chains", 1)) != 1:
        raise ValueError(
            f"vectorized=True runs one chain per replicate; got num_chains={options['num_chains']}"
        )
    hmc_options = {k: v for k, v in options.items() if k not in ("num_warmup", "num_chains")}
    fits = fit_replicates(
        model,
        obs_batch,
        *args,
        model_kwargs=model_kwargs,
        params=params,
        method=method,
        num_warmup=int(options.get("num_warmup", 500)),
        num_samples=num_draws * thin,
        thinning=thin,
        seed=seed,
        mesh=mesh,
        **hmc_options,
    )
    return fits.draws, fits.divergences


def _has_named_param(fn: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _fit_loop(
    fit_fn,
    fit_model,
    args,
    model_kwargs,
    sims,
    kw_of,
    params,
    method,
    num_replicates,
    num_posterior_draws,
    thin,
    seed,
    progress_bar,
    fit_options,
    num_params,
):
    """One ``fit`` call per replicate; returns (draws (R, L, P), divergences (R,))."""
    if fit_fn is None:
        from probdyn.infer.fit import fit as fit_fn
    options = dict(fit_options)
    num_chains = int(options.setdefault("num_chains", 1))
    options.setdefault("num_samples", -(-num_posterior_draws * thin // num_chains))
    if _has_named_param(fit_fn, "progress_bar"):
        options.setdefault("progress_bar", False)
    fit_seeds = np.random.SeedSequence(seed).generate_state(num_replicates)

    reps = range(num_replicates)
    if progress_bar:
        from tqdm.auto import tqdm

        reps = tqdm(reps, desc=f"SBC ({method})", unit="fit")
    divergences = np.zeros(num_replicates, dtype=int)
    post = np.empty((num_replicates, num_posterior_draws, num_params))
    for r in reps:
        kwargs = {**model_kwargs, **{kw: sims[s][r] for s, kw in kw_of.items()}}
        idata = fit_fn(
            fit_model,
            *args,
            method=method,
            model_kwargs=kwargs,
            seed=int(fit_seeds[r]),
            **options,
        )
        cols = []
        for p in params:
            da = idata.posterior[p]
            v = np.asarray(da.transpose("chain", "draw", ...).values)[:, ::thin]
            cols.append(v.reshape(v.shape[0] * v.shape[1], -1))
        draws = np.concatenate(cols, axis=1)
        if draws.shape[0] < num_posterior_draws:
            raise ValueError(
                f"fit returned {draws.shape[0]} draws after thin={thin}, fewer than "
                f"num_posterior_draws={num_posterior_draws}; raise num_samples"
            )
        post[r] = draws[:num_posterior_draws]
        stats = getattr(idata, "sample_stats", None)
        if stats is not None and "diverging" in stats:
            divergences[r] = int(np.asarray(stats["diverging"]).sum())

    return post, divergences


def sbc(
    model: Callable,
    *args,
    obs_sites: Sequence[str] = ("y",),
    obs_kwargs: Mapping[str, str] | None = None,
    method: str = "nuts",
    num_replicates: int = 100,
    num_posterior_draws: int = 99,
    thin: int = 2,
    num_bins: int | None = None,
    seed: int = 0,
    model_kwargs: dict | None = None,
    params: Sequence[str] | None = None,
    fit_model: Callable | None = None,
    fit_fn: Callable | None = None,
    vectorized: bool = False,
    progress_bar: bool = True,
    mesh=None,
    **fit_options,
) -> SBCResult:
    """Simulation-based calibration of ``method`` on ``model`` (Talts et al. 2018).

    1. Draw ``num_replicates`` parameter sets from the prior and simulate data from each,
       with ``numpyro.infer.Predictive(model, num_samples=num_replicates)``, calling
       ``model(*args, **model_kwargs)`` with every observation keyword set to ``None``.
    2. Fit each simulated data set with :func:`probdyn.infer.fit` (``method``,
       ``fit_options``), passing the simulated data through the observation keywords.
    3. Thin each chain by ``thin``, keep ``num_posterior_draws`` draws, and rank each true
       scalar parameter among them; test uniformity of the ranks with a chi-squared test.

    How observations are passed: the model takes its observations as keyword arguments
    that are ``None`` when simulating, e.g. ``def model(t, y=None): ...
    numpyro.sample("y", ..., obs=y)``. ``obs_sites`` names the observed sample sites;
    ``obs_kwargs`` maps each site to its keyword (default: the keyword has the site's name).

    By default replicates are fitted one after another in a Python loop (with a tqdm
    progress bar), for every method: ``fit`` returns an ``InferenceData`` per call, which
    cannot be vmapped, and each call compiles anew (several seconds per replicate even for
    tiny models). With ``vectorized=True`` (NUTS and HMC only) all replicates run in one
    compiled program instead: ``jax.vmap`` over replicates of a ``lax.scan`` of NumPyro's
    functional sampler (``numpyro.infer.hmc.hmc``, same warmup adaptation as ``fit``), one
    chain per replicate; only the options ``num_warmup`` (default 500),
    ``target_accept_prob``, ``max_tree_depth``, ``dense_mass``, ``step_size``,
    ``num_steps`` and ``trajectory_length`` apply. Under ``vmap`` each NUTS step lasts as
    long as the deepest tree among the replicates.

    Parameters
    ----------
    model : callable
        NumPyro model.
    *args
        Positional model arguments (covariates, times), shared by all replicates.
    obs_sites : sequence of str
        Observed sample sites.
    obs_kwargs : mapping of str to str, optional
        Site name -> model keyword holding its observations.
    method : str
        Inference method passed to ``fit``.
    num_replicates : int
        Number of simulated data sets.
    num_posterior_draws : int
        Posterior draws per rank, ``L``; ranks lie in ``{0, ..., L}``. Choose ``L + 1``
        divisible by the number of bins (99 -> 100 ranks).
    thin : int
        Keep every ``thin``-th draw of each chain, to reduce autocorrelation; ``fit`` is
        asked for ``ceil(L * thin / num_chains)`` samples per chain.
    num_bins : int, optional
        Bins of the chi-squared test; default :func:`default_num_bins`.
    seed : int
        Seeds simulation, fits and tie-breaking.
    model_kwargs : dict, optional
        Other keyword arguments of the model.
    params : sequence of str, optional
        Latent sites to check; default every latent sample site. Vector sites are checked
        element by element.
    fit_model : callable, optional
        Model used for fitting, if not ``model`` (e.g. to show that SBC detects a wrong
        prior). Must have the same latent sites.
    fit_fn : callable, optional
        Replacement for :func:`probdyn.infer.fit` with the same signature and return type.
    vectorized : bool
        Run all replicates in one vmapped NUTS/HMC program instead of calling ``fit``
        (:func:`probdyn.infer.fit_replicates`: the replicate axis is split over every
        device, and over every process under :func:`probdyn.distributed.initialize`).
    progress_bar : bool
        Show a tqdm bar over replicates (the per-fit bars are always off).
    mesh : jax.sharding.Mesh, optional
        With ``vectorized=True``: the 1-D device mesh of the replicates (default all
        devices, :func:`probdyn.distributed.device_mesh`).
    **fit_options
        Passed to ``fit`` (``num_warmup``, ``num_chains`` (default 1 here), ...).

    Returns
    -------
    SBCResult
        Ranks, p-values, and ``plot()``; ``extra["num_divergences"]`` (num_replicates,)
        counts divergent transitions per replicate (zeros when the method has none).

    References
    ----------
    Talts, S., Betancourt, M., Simpson, D., Vehtari, A. and Gelman, A. (2018). Validating
    Bayesian inference algorithms with simulation-based calibration. arXiv:1804.06788.
    """
    from numpyro.infer import Predictive

    if isinstance(obs_sites, str):
        obs_sites = (obs_sites,)
    obs_sites = tuple(obs_sites)
    if not obs_sites:
        raise ValueError("obs_sites must name at least one observed site; got ()")
    for name, val in (
        ("num_replicates", num_replicates),
        ("num_posterior_draws", num_posterior_draws),
        ("thin", thin),
    ):
        if isinstance(val, bool) or not isinstance(val, int | np.integer) or val < 1:
            raise ValueError(f"{name} must be a positive integer; got {val!r}")
    if num_bins is not None and (
        isinstance(num_bins, bool)
        or not isinstance(num_bins, int | np.integer)
        or not 2 <= num_bins <= num_posterior_draws + 1
    ):
        raise ValueError(
            f"num_bins={num_bins!r} is not valid; expected None (the default) or an integer "
            f"in [2, num_posterior_draws + 1 = {num_posterior_draws + 1}]"
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**32:
        raise ValueError(f"seed={seed!r} is not valid; expected an integer in [0, 2**32)")
    if vectorized and (method not in ("nuts", "hmc") or fit_fn is not None):
        raise ValueError(
            "vectorized=True supports method 'nuts' or 'hmc' without fit_fn; got "
            f"method={method!r}" + (" and a fit_fn" if fit_fn is not None else "")
        )
    obs_kwargs = dict(obs_kwargs or {})
    unknown = set(obs_kwargs) - set(obs_sites)
    if unknown:
        raise ValueError(f"obs_kwargs keys must be among obs_sites {obs_sites}; got {unknown}")
    kw_of = {s: obs_kwargs.get(s, s) for s in obs_sites}
    fit_model = fit_model or model
    for s, kw in kw_of.items():
        if not _accepts_kwarg(model, kw):
            raise ValueError(
                f"the model has no keyword {kw!r} for observed site {s!r}; pass "
                f"obs_kwargs={{{s!r}: '<keyword>'}}"
            )
    model_kwargs = dict(model_kwargs or {})
    sim_kwargs = {**model_kwargs, **{kw: None for kw in kw_of.values()}}

    key = jax.random.key(seed)
    key_trace, key_sim = jax.random.split(key)
    latent = _latent_sites(model, args, sim_kwargs, obs_sites, key_trace)
    if params is None:
        params = latent
    params = list(params)
    bad = [p for p in params if p not in latent]
    if bad or not params:
        raise ValueError(f"params must be latent sample sites among {latent}; got {params}")

    sims = Predictive(model, num_samples=num_replicates)(key_sim, *args, **sim_kwargs)
    prior_cols, labels = [], []
    for p in params:
        val = np.asarray(sims[p]).reshape(num_replicates, -1)
        prior_cols.append(val)
        labels += _flat_labels(p, tuple(np.shape(sims[p])[1:]))
    prior = np.concatenate(prior_cols, axis=1)

    if vectorized:
        obs_batch = {kw: jax.numpy.asarray(sims[s]) for s, kw in kw_of.items()}
        draws, divergences = _fit_vectorized_hmc(
            fit_model,
            args,
            model_kwargs,
            obs_batch,
            params,
            method,
            num_posterior_draws,
            thin,
            seed,
            fit_options,
            mesh,
        )
        post = np.concatenate(
            [np.asarray(draws[p]).reshape(num_replicates, num_posterior_draws, -1) for p in params],
            axis=2,
        )
    else:
        post, divergences = _fit_loop(
            fit_fn,
            fit_model,
            args,
            model_kwargs,
            sims,
            kw_of,
            params,
            method,
            num_replicates,
            num_posterior_draws,
            thin,
            seed,
            progress_bar,
            fit_options,
            prior.shape[1],
        )

    ranks = rank_statistics(prior, post, seed=seed)
    if num_bins is None:
        num_bins = default_num_bins(num_replicates, num_posterior_draws)
    pvals = rank_uniformity_pvalues(ranks, num_posterior_draws, num_bins)
    return SBCResult(
        param_names=labels,
        ranks=ranks,
        prior_draws=prior,
        num_posterior_draws=num_posterior_draws,
        num_bins=num_bins,
        pvalues=pvals,
        method=method,
        thin=thin,
        extra={"num_divergences": divergences},
    )
