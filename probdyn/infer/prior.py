"""Prior and prior predictive draws as ArviZ groups (``prior``, ``prior_predictive``).

:func:`sample_prior` is the stand-alone entry point (what ``az.from_numpyro(prior=...)``
gives a NumPyro user); :func:`probdyn.fit` calls :func:`prior_groups` when given
``prior=True`` or a number of draws, so the prior sits beside the posterior in one result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from numpyro import handlers
from numpyro.infer import Predictive

from probdyn.infer._checks import check_int
from probdyn.infer.diagnose import observed_values
from probdyn.report.idata import model_dims, to_inference_data

__all__ = ["prior_groups", "sample_prior"]


def prior_groups(
    model: Callable,
    args: Sequence,
    kwargs: Mapping[str, Any],
    *,
    info: Mapping[str, Mapping[str, Any]],
    num_samples: int,
    rng_key: jax.Array,
) -> dict[str, dict[str, np.ndarray]]:
    """Draws from the prior of the latent and deterministic sites and of the observed ones.

    Parameters
    ----------
    model : callable
        A NumPyro model; its observed sites are sampled (``handlers.uncondition``).
    args, kwargs : tuple, dict
        Model arguments, as for inference.
    info : dict
        Site information from :func:`probdyn.report.idata.model_dims`.
    num_samples : int
        Number of draws.
    rng_key : jax.Array
        PRNG key.

    Returns
    -------
    dict
        ``{"prior": {site: array (1, num_samples, ...)}, "prior_predictive": {...}}``, one
        chain as in ``arviz.from_numpyro``; ``prior`` holds latent and deterministic sites,
        ``prior_predictive`` the observed ones.

    Raises
    ------
    ValueError
        A prior that cannot be sampled (e.g. ``ImproperUniform``).
    """
    observed = [k for k, s in info.items() if s["type"] == "sample" and s["is_observed"]]
    latent = [k for k, s in info.items() if k not in observed]
    try:
        draws = Predictive(
            handlers.uncondition(model),
            num_samples=num_samples,
            return_sites=latent + observed,
        )(rng_key, *args, **kwargs)
    except NotImplementedError as err:
        raise ValueError(
            "prior draws need every prior to be a distribution that can be sampled; this "
            "model has one that cannot (e.g. numpyro's ImproperUniform): give it a proper "
            "prior, or leave prior draws out"
        ) from err

    def chain(names):
        return {k: np.asarray(draws[k])[None] for k in names if k in draws}

    return {"prior": chain(latent), "prior_predictive": chain(observed)}


def sample_prior(
    model: Callable,
    *args: Any,
    num_samples: int = 500,
    rng_key: jax.Array | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    dims: Mapping[str, Sequence[str]] | None = None,
    coords: Mapping[str, Any] | None = None,
):
    """Prior and prior predictive draws of a NumPyro model, as an ArviZ result.

    The same result type, dims and coords as :func:`probdyn.fit`, so prior and posterior
    can be compared site by site (e.g. ``az.plot_dist`` of both, or a prior predictive
    check with ``az.plot_ppc(idata, group="prior")``).

    Parameters
    ----------
    model : callable
        A NumPyro model.
    *args
        Its positional arguments (observed data included: the observed sites are then
        sampled, and the data kept as ``observed_data``).
    num_samples : int
        Number of prior draws.
    rng_key : jax.Array, optional
        PRNG key; default ``jax.random.PRNGKey(0)``.
    model_kwargs : dict, optional
        Keyword arguments of the model.
    dims, coords : dict, optional
        As for :func:`probdyn.fit`.

    Returns
    -------
    arviz.InferenceData
        Groups ``prior`` (latent and deterministic sites), ``prior_predictive`` (observed
        sites) with dims ``("chain", "draw", ...)`` of sizes ``(1, num_samples)``, and
        ``observed_data`` when the model has observed data; ``attrs["method"] ==
        "prior"``.

    Raises
    ------
    ValueError
        A bad ``num_samples``; a prior that cannot be sampled (``ImproperUniform``).

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist, jax.numpy as jnp
    >>> def model(y):
    ...     mu = numpyro.sample("mu", dist.Normal(0, 10))
    ...     with numpyro.plate("obs_id", y.shape[0]):
    ...         numpyro.sample("y", dist.Normal(mu, 1), obs=y)
    >>> idata = sample_prior(model, jnp.zeros(3), num_samples=100)
    >>> idata.prior["mu"].shape, idata.prior_predictive["y"].dims
    ((1, 100), ('chain', 'draw', 'obs_id'))
    """
    if not callable(model):
        raise TypeError(f"model={model!r} is not callable; expected a NumPyro model function")
    num_samples = check_int("num_samples", num_samples, 1)
    if model_kwargs is not None and not isinstance(model_kwargs, Mapping):
        raise TypeError(f"model_kwargs={model_kwargs!r} is not a dict")
    kwargs = dict(model_kwargs or {})
    key = jax.random.PRNGKey(0) if rng_key is None else rng_key
    site_dims, info = model_dims(model, args, kwargs, dims=dims, coords=coords)
    groups = prior_groups(model, args, kwargs, info=info, num_samples=num_samples, rng_key=key)
    observed = [k for k, s in info.items() if s["type"] == "sample" and s["is_observed"]]
    observed_data = {}
    if observed:
        observed_data = observed_values(model, args, kwargs, observed)
    return to_inference_data(
        {},
        prior=groups["prior"],
        prior_predictive=groups["prior_predictive"],
        observed_data=observed_data,
        dims=site_dims,
        coords=dict(coords or {}),
        attrs={"method": "prior", "num_samples": num_samples},
    )
