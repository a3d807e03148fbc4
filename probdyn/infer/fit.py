"""One front door for inference: ``probdyn.fit(model, *args, method=...)`` -> InferenceData.

Every method (NUTS, HMC, SVI, SGLD, SGHMC, SGNHT, cSGLD, PMMH) returns the installed
ArviZ's result (:class:`arviz.InferenceData` on ArviZ 0.x, :class:`xarray.DataTree` on
ArviZ 1.x) with the same groups and named dims, and every method can
checkpoint to disk and resume bit-identically after the process is killed.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import xarray as xr
from numpyro import handlers
from numpyro.infer import HMC, NUTS, Predictive

import probdyn
from probdyn.infer._checks import check_bool, check_hmc_options, check_int, check_path
from probdyn.infer.checkpoint import Checkpoint, _short, fingerprint
from probdyn.infer.diagnose import nonfinite_sites, observed_values
from probdyn.infer.minibatch import full_data_model
from probdyn.infer.prior import prior_groups
from probdyn.infer.segments import run_mcmc
from probdyn.infer.svi import draw_from_guide, run_svi, validate_svi_options
from probdyn.report._arviz import Result
from probdyn.report.hidden import add_hidden_states
from probdyn.report.idata import model_dims, to_inference_data
from probdyn.report.pointwise import pointwise_log_likelihood

__all__ = ["METHODS", "fit"]

_HMC_METHODS = ("nuts", "hmc")
_SG_METHODS = ("sgld", "sghmc", "sgnht", "csgld")
# Particle marginal Metropolis-Hastings for models with a particle-filter likelihood.
_PMMH_METHODS = ("pmmh",)
#: Every ``method`` that :func:`fit` accepts.
METHODS = (*_HMC_METHODS, "svi", *_SG_METHODS, *_PMMH_METHODS)
_CHAIN_METHODS = ("sharded", "vectorized", "sequential", "parallel")
# probdyn.infer.pmmh.PMMHState field -> ArviZ sample_stats name.
_PMMH_STATS = {
    "accept_prob": "acceptance_rate",
    "accepted": "accepted",
    "log_likelihood": "log_likelihood_estimate",
    "potential_energy": "lp",
    "scale": "proposal_scale",
}
# numpyro HMCState field -> ArviZ sample_stats name.
_HMC_STATS = {
    "diverging": "diverging",
    "num_steps": "n_steps",
    "accept_prob": "acceptance_rate",
    "adapt_state.step_size": "step_size",
    "energy": "energy",
    "potential_energy": "lp",
}


def _kernel_class(method: str) -> type:
    if method == "nuts":
        return NUTS
    if method == "hmc":
        return HMC
    if method == "pmmh":
        from probdyn.infer.pmmh import PMMH

        return PMMH
    try:
        sgmcmc = importlib.import_module("probdyn.infer.sgmcmc")
    except ImportError as err:  # pragma: no cover - until probdyn.infer.sgmcmc lands
        raise ImportError(
            f"method={method!r} needs probdyn.infer.sgmcmc, which could not be imported"
        ) from err
    return sgmcmc.KERNELS[method]


def _kernel_options(cls: type) -> set[str] | None:
    """Keyword arguments a kernel class accepts (None: any, it takes ``**kwargs``)."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return {n for n in params if n not in ("self", "model", "potential_fn")}


def _check_mapping(name: str, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name}={value!r} is a {type(value).__name__}; expected a dict")
    return dict(value)


def _split_options(method: str, options: dict, num_chains: int) -> tuple[dict, dict]:
    """(kernel or SVI options, run settings) with unknown names refused."""
    if method == "svi":
        return validate_svi_options(options), {}
    options = dict(options)
    data_parallel = options.get("data_parallel") is not None
    default = "vectorized" if data_parallel and num_chains > 1 else None
    chain_method = options.pop("chain_method", default or _default_chain_method(num_chains))
    if not isinstance(chain_method, str) or chain_method not in _CHAIN_METHODS:
        raise ValueError(f"chain_method={chain_method!r} is not known; expected {_CHAIN_METHODS}")
    if data_parallel and chain_method in ("sharded", "parallel"):
        raise ValueError(
            f"chain_method={chain_method!r} with data_parallel: the devices already hold "
            "the data shards; expected 'vectorized' or 'sequential'"
        )
    if method in _HMC_METHODS:
        check_hmc_options(options)
    accepted = _kernel_options(_kernel_class(method))
    if accepted is not None:
        unknown = sorted(set(options) - accepted)
        if unknown:
            raise TypeError(
                f"fit(method={method!r}) got unexpected options {unknown}; expected some of "
                f"{sorted(accepted | {'chain_method'})} (model arguments go in *args or "
                "model_kwargs)"
            )
    return options, {"chain_method": chain_method}


def _default_chain_method(num_chains: int) -> str:
    """The default layout: sharded over several devices (of all processes), else
    vectorized; one chain: sequential."""
    if num_chains == 1:
        return "sequential"
    return "sharded" if jax.device_count() > 1 else "vectorized"


def _sample_stats(method: str, stats: dict) -> dict:
    if method == "pmmh":
        out = {_PMMH_STATS[k]: v for k, v in stats.items() if k in _PMMH_STATS}
        if "lp" in out:
            out["lp"] = -out["lp"]
        return out
    if method not in _HMC_METHODS:
        out = {}
        for field, value in stats.items():
            name = field.rsplit(".", 1)[-1]
            out[field.replace(".", "_") if name in out else name] = value
        return out
    out = {_HMC_STATS[k]: v for k, v in stats.items() if k in _HMC_STATS}
    if "lp" in out:
        out["lp"] = -out["lp"]
    if method == "nuts" and "n_steps" in out:
        # A NUTS tree of depth d takes between 2**(d-1) and 2**d - 1 leapfrog steps.
        n = np.maximum(out["n_steps"], 1)
        out["tree_depth"] = (np.floor(np.log2(n)) + 1).astype(np.int64)
    return out


def _explain_init_failure(run: Callable, model: Callable, args, kwargs, *rest, **options):
    """``run(*rest, **options)``; NumPyro's "Cannot find valid initial parameters" names sites."""
    try:
        return run(*rest, **options)
    except RuntimeError as err:
        if "valid initial parameters" not in str(err):
            raise
        sites = nonfinite_sites(_full_data(model), args, kwargs)
        where = (
            "; ".join(f"{name!r}: {why}" for name, why in sites.items())
            if sites
            else "no single site is non-finite at every prior draw (check the model's "
            "support, constraints and init_strategy)"
        )
        raise ValueError(
            f"fit could not find initial parameters with a finite log-density. Sites whose "
            f"log-density is not finite: {where}"
        ) from err


def _full_data(model: Callable) -> Callable:
    """``model`` with subsampled plates over all their indices (for log-likelihood etc.)."""
    return full_data_model(model)


def fit(
    model: Callable,
    *args: Any,
    method: str = "nuts",
    model_kwargs: Mapping[str, Any] | None = None,
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    seed: int = 0,
    thinning: int = 1,
    predictive: bool = False,
    log_likelihood: bool = True,
    prior: bool | int = False,
    hidden_states: bool = False,
    dims: Mapping[str, list[str]] | None = None,
    coords: Mapping[str, Any] | None = None,
    constant_data: Mapping[str, Any] | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    progress_bar: bool = True,
    **options: Any,
) -> Result:
    r"""Fit a NumPyro model and return the installed ArviZ's result.

    Parameters
    ----------
    model : callable
        A NumPyro model.
    *args
        Positional arguments of the model (observed data included).
    method : {"nuts", "hmc", "svi", "sgld", "sghmc", "sgnht", "csgld", "pmmh"}
        Inference method. The SG-MCMC kernels come from :mod:`probdyn.infer.sgmcmc`;
        "pmmh" (particle marginal Metropolis-Hastings, :class:`probdyn.infer.pmmh.PMMH`)
        is for models whose likelihood is a particle-filter estimate
        (:func:`probdyn.infer.particle.pf_likelihood`; gradient-based methods raise
        ``TypeError`` on such models).
    model_kwargs : dict, optional
        Keyword arguments of the model.
    num_chains : int
        Chains (MCMC). For SVI, the ``num_chains * num_samples`` independent guide draws
        are laid out as ``num_chains`` groups, so every method gives the same shapes.
    num_warmup : int
        Warmup (adaptation / burn-in) iterations per chain; unused by SVI.
    num_samples : int
        Post-warmup iterations per chain; ``num_samples // thinning`` draws are kept.
        For SVI, draws per chain from the fitted guide.
    seed : int
        Seed of everything random; the same seed and arguments give a bit-identical
        result on the same machine.
    thinning : int
        Keep every ``thinning``-th iteration (MCMC; must be 1 for SVI).
    predictive : bool
        Add a ``posterior_predictive`` group (observed sites only).
    log_likelihood : bool
        Add the pointwise ``log_likelihood`` group (default True: :func:`arviz.loo`,
        :func:`arviz.compare` and :func:`probdyn.report.lfo` need it). It is one
        compiled replay of the model over all draws, in chunks of at most 64 KiB of
        terms (:func:`probdyn.report.pointwise_log_likelihood`), and holds
        ``num_chains * num_draws`` terms per observation: 400 MB of float32 for 10,000
        draws of 10,000 observations. False skips it.
    prior : bool or int
        Add ``prior`` and ``prior_predictive`` groups: ``True`` for ``num_samples`` prior
        draws, an int for that many (one chain, as ``arviz.from_numpyro(prior=...)``;
        see :func:`probdyn.infer.prior.sample_prior`). Needs priors that can be sampled.
    hidden_states : bool
        Add a ``hidden_states`` group: for each observed ``DiscreteHMM``/``ObservedCTMC``
        site ``s``, the smoothed marginals ``<s>_probs`` (chain, draw, time, state) and the
        Viterbi paths ``<s>_viterbi`` (chain, draw, time) at every posterior draw (see
        :func:`probdyn.report.add_hidden_states`; memory ``num_chains * num_draws * T * K``
        floats per site).
    dims : dict of str to list of str, optional
        Names of each site's axes after (chain, draw), e.g. ``{"x": ["time", "state"]}``.
        Sites without user dims get plate names for batch axes, their
        ``infer={"event_dims": [...]}`` names, ``"time"`` for the leading event axis of a
        trajectory distribution (when its length matches ``coords["time"]``, if given),
        and ArviZ's ``"<site>_dim_<i>"`` otherwise. Sites marked
        ``infer={"auxiliary": True}`` (e.g. ``sde_path`` noise) get
        ``attrs["probdyn_role"] = "auxiliary"`` and are left out of ``summary``.
    coords : dict of str to 1-D array, optional
        Coordinate values per dim, e.g. ``{"time": times}``; one whose length does not fit
        an axis named that dim is a ``ValueError`` (an automatic ``"time"`` of a trajectory
        distribution falls back to the default name instead), one no axis uses a warning.
    constant_data : dict of str to array, optional
        Stored as the ``constant_data`` group.
    checkpoint : str or path, optional
        A netCDF file to checkpoint to (see :mod:`probdyn.infer.checkpoint`). If it holds
        a finished run with the same fingerprint it is loaded and returned; an unfinished
        one is resumed; one from another model, data or arguments raises ``ValueError``.
    checkpoint_every : int, optional
        Save every this many kept draws per chain (MCMC) or optimisation steps (SVI).
        Without it, only the post-warmup state and the final result are saved. The draws
        are bit-identical whether or not the run was interrupted.
    progress_bar : bool
        Show NumPyro's progress bars.
    **options
        Options of the method.

        - ``"nuts"``/``"hmc"``: keyword arguments of :class:`numpyro.infer.NUTS` /
          :class:`~numpyro.infer.HMC` (``target_accept_prob``, ``max_tree_depth``,
          ``dense_mass``, ``init_strategy``, ...) and ``chain_method``:

          * ``"sharded"`` (the default when ``jax.device_count() > 1``): the chains
            split over every device (of every process, under
            :func:`probdyn.distributed.initialize`) by a ``NamedSharding`` on a 1-D mesh,
            ``vmap``-ed within a device (:func:`probdyn.distributed.map_over_devices`;
            chains not a multiple of the devices: the last chain runs again on the spare
            slots and is dropped). Each chain computes what it computes on one device:
            SG-MCMC chains are bit-identical to ``"vectorized"`` (tested with 6 chains on
            4 forced host devices); NUTS chains agree up to float rounding (XLA
            vectorises blocks of different sizes differently, ~1e-6), which the
            discrete tree choices amplify, so they are equal in distribution. No
            progress bar.
          * ``"vectorized"`` (the default on one device): one program advancing all
            chains in lockstep on the default device.
          * ``"sequential"``: chain after chain; ``"parallel"``: NumPyro's ``pmap``
            (one chain per local device).
        - ``"svi"``: ``guide`` ("normal", "mvn", "lowrank", "delta", "iaf", "laplace", an
          AutoGuide class or a guide callable; default "normal"), ``guide_kwargs``,
          ``optimizer`` (a name: "adam", "adamw", "adabelief", "adagrad", "rmsprop",
          "sgd", or an optax optimiser; default "adam"), ``learning_rate`` (float or optax
          schedule; default 1e-2), ``num_steps`` (5000), ``num_particles`` (1), ``loss``
          (a NumPyro ELBO; default :class:`~probdyn.infer.svi.OrderedTraceELBO`),
          ``stable_update`` (False), ``average_last`` (fraction of the final steps whose
          iterates are averaged into the returned parameters,
          :func:`~probdyn.infer.svi.tail_average`; default 0.5 with the default
          learning rate, 0 when a ``learning_rate`` or an optimiser object is given: at a
          constant rate the last iterate jitters by about the rate, which on a
          posterior of sd 0.022 put it 0.1-0.5 sd off the optimum).
        - SG-MCMC: keyword arguments of ``probdyn.infer.sgmcmc.KERNELS[method]``
          (``step_size``, ``schedule``, ``data_parallel`` -- the model arguments whose
          subsampled data is split over the devices, gradients summed with a ``psum``,
          :mod:`probdyn.infer.data_parallel` --, ...) and ``chain_method`` (as for NUTS;
          "vectorized" by default with ``data_parallel``). Choosing
          ``step_size`` (there is no adaptation and no Metropolis correction, so it sets
          both mixing and bias): (1) estimate the posterior scale sigma of the
          parameters in the unconstrained space, e.g. from a short ``method="svi"``
          fit, or as ~1/sqrt(N) for N informative observations; (2) start SGLD at
          ``step_size`` ~ sigma**2 / 100 (each step then moves ~0.14 sigma and a chain
          decorrelates in ~100 steps: for a unit-scale model that is ~1/(100 N)); SGHMC
          and SGNHT take about the square root of that; (3) run 2-4 chains from
          different starts and read :func:`probdyn.report.summary`: R-hat above 1.1 on
          SG-MCMC draws comes with a step-size diagnosis. Chains whose traces still
          drift away from their starts mean a step too small (raise it ~10x); chains
          wider than an SVI/NUTS check on a data subset, jumping, or NaN mean a step too
          large (lower it). With ``num_samples`` draws, aim for
          ``num_samples * step_size`` of at least ~20 sigma**2.
        - ``"pmmh"``: keyword arguments of :class:`probdyn.infer.pmmh.PMMH`
          (``step_size``, ``target_accept_prob``, ``adapt``, ``init_strategy``) and
          ``chain_method``. The number of particles is an argument of the model's
          ``pf_likelihood`` call (pass it through ``*args`` or ``model_kwargs``).

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
        Whichever the installed ArviZ calls its result (0.x / 1.x). Groups (arrays
        have leading dims ``(chain, draw)`` of sizes ``(num_chains, num_samples //
        thinning)`` unless noted):

        - ``posterior``: latent and deterministic sites, constrained.
        - ``sample_stats``: NUTS/HMC ``diverging``, ``n_steps``, ``acceptance_rate``,
          ``step_size``, ``energy``, ``lp`` (and NUTS ``tree_depth``); SG-MCMC the
          kernel's per-chain scalar state fields; SVI ``loss`` (negative ELBO per step,
          dims ``("svi_step",)``); PMMH ``acceptance_rate`` (the step's
          Metropolis-Hastings acceptance probability), ``accepted``,
          ``log_likelihood_estimate`` (the stored particle-filter estimate of the current
          draw), ``lp`` (log prior + that estimate, unconstrained) and ``proposal_scale``.
        - ``log_likelihood`` (unless ``log_likelihood=False``): pointwise log-density of
          each observed site (event axes
          summed), so :func:`arviz.loo` works; for a sequence site (DiscreteHMM,
          ObservedCTMC, LinearSDE) the one-step-ahead terms
          :math:`\log p(y_t \mid y_{0:t-1}, \theta)` with dim ``"time"``
          (:func:`probdyn.report.pointwise_log_likelihood`). Omitted for PMMH: a
          particle-filter estimate is one noisy number per draw, not a pointwise log-density, and
          ``arviz.loo`` on it would be meaningless.
        - ``observed_data``, ``constant_data`` (when given), ``posterior_predictive``
          (when ``predictive=True``; not available for PMMH, which raises).
        - ``prior`` and ``prior_predictive`` (when ``prior`` is given): dims ``(chain,
          draw, ...)`` of sizes ``(1, num_prior_draws)``, drawn with a key of their own
          (``fold_in(PRNGKey(seed), 1)``), so they leave the posterior unchanged.
        - ``hidden_states`` (when ``hidden_states=True``): ``<site>_probs`` and
          ``<site>_viterbi`` per ``DiscreteHMM``/``ObservedCTMC`` site.
        - ``svi_params`` (SVI): the final variational parameters, constrained.
        - ``attrs``: ``method``, ``seed``, sizes, ``options`` (JSON of strings),
          ``chain_method``, ``probdyn_version``, library versions.

    Raises
    ------
    ValueError
        Unknown ``method``; bad sizes or option values (e.g. ``target_accept_prob``
        outside (0, 1), ``max_tree_depth < 1``, ``step_size <= 0``, a non-finite
        ``learning_rate``), checked before anything is compiled; bad dims/coords; a
        checkpoint from another run, an unreadable one, or an unwritable folder; no
        finite initial log-density (naming the sites).
    TypeError
        Options the method does not take, arguments of the wrong type (a float
        ``num_samples``, a string ``seed``, a non-bool flag).

    Notes
    -----
    *Reproducibility.* Keys come from ``jax.random.PRNGKey(seed)`` split into (run,
    guide draws, posterior predictive); chains get keys split from the run key. The
    result contains no timestamp, so the same call on the same machine gives a
    bit-identical InferenceData, in the same process or another one: SVI's default loss
    is :class:`probdyn.infer.svi.OrderedTraceELBO`, which sums the ELBO's per-site terms
    in name order (NumPyro's ``Trace_ELBO`` sums them in the order of a Python set, which
    changes with the process's string-hash seed, so its loss traces differed between
    processes in the last bits). A ``loss=`` of your own, e.g. NumPyro's
    ``Trace_ELBO()``, is used as given and may not be reproducible across processes
    unless ``PYTHONHASHSEED`` is fixed.

    *Checkpoints.* MCMC warms up in one piece (the adaptation schedule needs it), saves
    the post-warmup state, then draws in segments of ``checkpoint_every`` kept draws,
    continuing each chain from the saved state and its own key, so the draws do not depend
    on where the run was interrupted. All segments run through one compiled sampler
    (compiled once per segment length, :mod:`probdyn.infer.segments`), so a run of
    hundreds of segments neither recompiles nor grows in memory; its draws are identical
    whether or not the run was interrupted, though not bit-identical to a run without a
    checkpoint (another compiled program). SVI saves the optimiser state and the loss
    trace every ``checkpoint_every`` steps; the guide draws are made at the end.

    *What a checkpoint contains* (``checkpoint="run.nc"``): ``run.nc``, a netCDF
    InferenceData (the draws so far, then the full result) whose root attributes hold
    the status (``"partial"``/``"complete"``), the number of draws done and the run's
    fingerprint (hashes of the model source, data and every setting above) as JSON; and,
    until the run completes, ``run.nc.state.npz``: NumPy arrays only (read with
    ``allow_pickle=False``) -- the sampler or optimiser state (PRNG keys as raw key
    data), the draws or losses so far -- and a JSON header with the fingerprint and the
    counters. Nothing is unpickled or executed: the header's fingerprint is compared
    with this call's before any array is read, the arrays must fit the structure,
    shapes and dtypes of the state this process builds, and the counters must agree
    with the saved arrays; a truncated or edited file is refused with an error naming
    it, and an old ``run.nc.state.pkl`` is refused unopened. The folder must be writable
    (checked before warmup).

    *Initialisation.* When no initial point with a finite log-density is found, the
    error names the sample sites whose log-density is not finite at a prior draw (see
    :func:`probdyn.infer.diagnose.nonfinite_sites`), instead of NumPyro's bare "Cannot
    find valid initial parameters".
    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist, jax.numpy as jnp
    >>> def model(y):
    ...     mu = numpyro.sample("mu", dist.Normal(0, 10))
    ...     with numpyro.plate("obs_id", y.shape[0]):
    ...         numpyro.sample("y", dist.Normal(mu, 1), obs=y)
    >>> y = jnp.array([0.3, -0.1, 1.2])
    >>> idata = fit(model, y, num_chains=2, num_warmup=200, num_samples=200,
    ...             progress_bar=False)  # doctest: +SKIP
    >>> idata.posterior["mu"].shape  # doctest: +SKIP
    (2, 200)
    >>> idata = fit(model, y, method="svi", guide="mvn", num_steps=2000,
    ...             progress_bar=False)  # doctest: +SKIP
    >>> idata.sample_stats["loss"].dims  # doctest: +SKIP
    ('svi_step',)
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method={method!r} is not known; expected one of {METHODS}")
    if not callable(model):
        raise TypeError(f"model={model!r} is not callable; expected a NumPyro model function")
    kwargs = _check_mapping("model_kwargs", model_kwargs)
    num_chains = check_int("num_chains", num_chains, 1)
    num_warmup = check_int("num_warmup", num_warmup, 0)
    num_samples = check_int("num_samples", num_samples, 1)
    # PRNGKey keeps 32 bits of the seed without x64: larger seeds would collide
    seed = check_int("seed", seed, 0, 2**32 - 1)
    predictive = check_bool("predictive", predictive)
    log_likelihood = check_bool("log_likelihood", log_likelihood)
    hidden_states = check_bool("hidden_states", hidden_states)
    if isinstance(prior, (bool, np.bool_)):
        num_prior = num_samples if prior else 0
    else:
        num_prior = check_int("prior", prior, 1)
    progress_bar = check_bool("progress_bar", progress_bar)
    if checkpoint is not None:
        check_path("checkpoint", checkpoint)
    thinning = check_int("thinning", thinning, 1)
    if num_samples < thinning:
        raise ValueError(
            f"num_samples={num_samples} keeps no draw with thinning={thinning}; expected "
            "num_samples >= thinning"
        )
    if method == "svi" and thinning != 1:
        raise ValueError(f"thinning={thinning} has no meaning for method='svi'; expected 1")
    if method == "pmmh" and predictive:
        raise ValueError(
            "predictive=True is not available for method='pmmh': a particle-filter "
            "likelihood site cannot be sampled; simulate from the posterior draws instead"
        )
    if checkpoint_every is not None:
        checkpoint_every = check_int("checkpoint_every", checkpoint_every, 1)
        if checkpoint is None:
            raise ValueError(
                f"checkpoint_every={checkpoint_every} was given without checkpoint; "
                "expected checkpoint=<path of a .nc file>"
            )
    dims = _check_mapping("dims", dims)
    coords = _check_mapping("coords", coords)
    constant_data = _check_mapping("constant_data", constant_data)
    method_options, run_settings = _split_options(method, options, num_chains)
    num_draws = num_samples // thinning

    data_model = _full_data(model)  # what log-likelihoods, predictions and dims see
    site_dims, info = model_dims(data_model, args, kwargs, dims=dims, coords=coords)
    observed = [k for k, s in info.items() if s["type"] == "sample" and s["is_observed"]]
    latent = [k for k, s in info.items() if s["type"] == "sample" and not s["is_observed"]]
    deterministic = [k for k, s in info.items() if s["type"] == "deterministic"]
    attrs = {
        "method": method,
        "seed": seed,
        "num_chains": num_chains,
        "num_warmup": num_warmup,
        "num_samples": num_samples,
        "thinning": thinning,
        "options": json.dumps({k: _short(v) for k, v in sorted(options.items())}),
        "probdyn_version": probdyn.__version__,
        "inference_library": "numpyro",
        "inference_library_version": numpyro.__version__,
        "arviz_version": az.__version__,
    }
    attrs.update({k: str(v) for k, v in run_settings.items()})

    def build(posterior, sample_stats, **groups):
        return to_inference_data(
            posterior, sample_stats=sample_stats, dims=site_dims, coords=coords, attrs=attrs,
            auxiliary=[k for k, s in info.items() if s["auxiliary"]], **groups,
        )  # fmt: skip

    ckpt = None
    if checkpoint is not None:
        fp = fingerprint(
            model,
            args,
            kwargs,
            method=method,
            options=options,
            num_chains=num_chains,
            num_warmup=num_warmup,
            num_samples=num_samples,
            seed=seed,
            thinning=thinning,
            checkpoint_every=checkpoint_every,
            predictive=bool(predictive),
            **({} if log_likelihood else {"log_likelihood": False}),
            **({"prior": num_prior} if num_prior else {}),
            **({"hidden_states": True} if hidden_states else {}),
            dims=dims,
            coords=coords,
            constant_data=constant_data,
            run_settings=run_settings,
        )
        ckpt = Checkpoint(checkpoint, fp)
        finished = ckpt.load_complete()
        if finished is not None:
            return finished

    observed_data = observed_values(data_model, args, kwargs, observed)
    prior_draws = {}
    if num_prior:  # before the run: a prior that cannot be sampled fails at once
        key_prior = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
        prior_draws = prior_groups(
            data_model, args, kwargs, info=info, num_samples=num_prior, rng_key=key_prior
        )
    key_run, key_draws, key_pp = jax.random.split(jax.random.PRNGKey(seed), 3)
    extra_groups = {}
    if method == "svi":
        guide, params, losses = run_svi(
            model,
            args,
            kwargs,
            rng_key=key_run,
            options=method_options,
            checkpoint=ckpt,
            checkpoint_every=checkpoint_every,
            progress_bar=progress_bar,
            partial_idata=lambda losses: build({}, {"loss": _loss_array(losses)}),
        )
        # the model's own numpyro.param sites (e.g. a learned readout) keep their fitted
        # values whenever the model is replayed: deterministic sites, log_likelihood,
        # posterior_predictive
        data_model = handlers.substitute(data_model, data=params)
        posterior = draw_from_guide(
            data_model,
            guide,
            params,
            args,
            kwargs,
            rng_key=key_draws,
            shape=(num_chains, num_samples),
            latent=latent,
            deterministic=deterministic,
        )
        posterior = {k: np.asarray(v) for k, v in posterior.items()}
        sample_stats = {"loss": _loss_array(losses)}
        extra_groups["svi_params"] = _flat_params(params)
        attrs["svi_final_loss"] = float(losses[-1]) if len(losses) else float("nan")
    else:
        kernel = _kernel_class(method)(model, **method_options)
        # NUTS/HMC: the statistics ArviZ knows; SG-MCMC: the kernel's default_fields.
        fields = tuple(f for f in _HMC_STATS if f != "diverging") if method in _HMC_METHODS else ()
        posterior, stats = _explain_init_failure(
            run_mcmc,
            model,
            args,
            kwargs,
            kernel,
            args,
            kwargs,
            rng_key=key_run,
            method=method,
            num_chains=num_chains,
            num_warmup=num_warmup,
            num_draws=num_draws,
            thinning=thinning,
            chain_method=run_settings["chain_method"],
            progress_bar=progress_bar,
            checkpoint=ckpt,
            checkpoint_every=checkpoint_every,
            partial_idata=lambda s, st: build(s, _sample_stats(method, st)),
            fields=fields,
            make_kernel=lambda: _kernel_class(method)(model, **method_options),
        )
        sample_stats = _sample_stats(method, stats)

    latent_draws = {k: jnp.asarray(posterior[k]) for k in latent if k in posterior}
    groups: dict[str, Any] = {"extra_groups": extra_groups}
    if log_likelihood and observed and method != "pmmh":
        # one-step-ahead terms (time axis last) for sequence sites, log_prob otherwise
        ll = pointwise_log_likelihood(data_model, latent_draws, *args, batch_ndims=2, **kwargs)
        groups["log_likelihood"] = {k: np.asarray(ll[k]) for k in observed if k in ll}
    if observed:
        groups["observed_data"] = observed_data
    if predictive and observed:
        pp = Predictive(
            handlers.uncondition(data_model),
            posterior_samples=latent_draws,
            return_sites=observed,
            batch_ndims=2,
        )(key_pp, *args, **kwargs)
        groups["posterior_predictive"] = {k: np.asarray(pp[k]) for k in observed}
    if constant_data:
        groups["constant_data"] = constant_data
    groups.update(prior_draws)
    idata = build(posterior, sample_stats, **groups)
    if hidden_states:
        add_hidden_states(idata, data_model, *args, model_kwargs=kwargs)
    if ckpt is not None:
        ckpt.save_complete(idata, num_draws)
    return idata


def _flat_params(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Guide parameters as named arrays; nested ones (IAF networks) as ``<name>_<index>...``."""
    out = {}
    for name, value in params.items():
        for path, leaf in jax.tree_util.tree_flatten_with_path(value)[0]:
            suffix = re.sub(r"[^0-9A-Za-z]+", "_", jax.tree_util.keystr(path)).strip("_")
            out[f"{name}_{suffix}" if suffix else name] = np.asarray(leaf)
    return out


def _loss_array(losses: np.ndarray) -> xr.DataArray:
    losses = np.asarray(losses)
    return xr.DataArray(losses, dims=("svi_step",), coords={"svi_step": np.arange(len(losses))})
