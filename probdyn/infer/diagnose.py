"""Which sample sites make a model's log-density non-finite (for :func:`probdyn.fit` errors).

Also :func:`observed_values`, the observed data of a model, refusing NaN data that would
make the log-density NaN.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from numpyro import handlers
from numpyro.infer.initialization import init_to_sample

__all__ = ["nonfinite_sites", "observed_values"]


def nonfinite_sites(
    model: Callable,
    args: tuple = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    num_tries: int = 10,
    seed: int = 0,
) -> dict[str, str]:
    """Sample sites whose log-density is not finite at every one of a few prior draws.

    The model is run ``num_tries`` times with latent sites drawn from the prior; for each
    sample site the summed ``log_prob`` of its value is evaluated. A site is reported when
    it is non-finite in every run (a problem of the model or data, not of one unlucky
    draw), with the reason: non-finite observed values, or the log-density itself.

    Parameters
    ----------
    model : callable
        A NumPyro model.
    args, kwargs : tuple, dict
        Its arguments.
    num_tries : int
        Prior draws to try.
    seed : int
        Seed of the prior draws.

    Returns
    -------
    dict of str to str
        Site name -> plain-English reason; empty when every site was finite at least once
        (or the model could not be run; the original error then stands).
    """
    kwargs = dict(kwargs or {})
    bad: dict[str, str] | None = None
    for key in jax.random.split(jax.random.PRNGKey(seed), num_tries):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trace = handlers.trace(handlers.seed(model, key)).get_trace(*args, **kwargs)
        except Exception:  # noqa: BLE001 - the diagnosis must never hide the real error
            return {}
        found = {}
        for name, site in trace.items():
            if site["type"] != "sample" or site.get("infer", {}).get("is_auxiliary"):
                continue
            value = site["value"]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    logp = float(np.sum(np.asarray(site["fn"].log_prob(value))))
            except Exception as err:  # noqa: BLE001
                found[name] = f"log_prob raised {type(err).__name__}: {err}"
                continue
            if np.isfinite(logp):
                continue
            arr = np.asarray(value)
            nonfinite = int(np.sum(~np.isfinite(arr))) if arr.dtype.kind in "fc" else 0
            kind = "observed" if site["is_observed"] else "latent"
            if site["is_observed"] and nonfinite:
                found[name] = (
                    f"observed site with {nonfinite} non-finite value(s) (NaN/inf); mark "
                    "missing observations with a mask (the distribution's mask=..., e.g. "
                    "DiscreteHMM/ObservedCTMC, or numpyro.handlers.mask)"
                )
            else:
                found[name] = (
                    f"{kind} site whose log-density is {logp} (values outside the support, "
                    "or invalid distribution parameters)"
                )
        bad = found if bad is None else {k: v for k, v in bad.items() if k in found}
        if not bad:
            return {}
    return bad or {}


def observed_values(
    model: Callable, args: tuple, kwargs: Mapping[str, Any], names: list[str]
) -> dict:
    """Observed values of the sites ``names``, from one concrete trace; NaN data refused.

    Latent sites take ``init_to_sample`` values (a uniform draw on the unconstrained space
    where the prior cannot be sampled, e.g. ``ImproperUniform``), so every model NumPyro's
    samplers accept can be traced.

    Returns
    -------
    dict of str to np.ndarray

    Raises
    ------
    ValueError
        An observed site holds NaN and its log-density is then not finite (the message
        says to use the distribution's ``mask``).
    """
    if not names:
        return {}
    seeded = handlers.substitute(handlers.seed(model, 0), substitute_fn=init_to_sample)
    trace = handlers.trace(seeded).get_trace(*args, **kwargs)
    values = {k: np.asarray(trace[k]["value"]) for k in names}
    for name, value in values.items():
        if value.dtype.kind not in "fc" or not np.isnan(value).any():
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                logp = np.asarray(trace[name]["fn"].log_prob(trace[name]["value"]))
            # not excused by numpyro.handlers.mask: a NaN under jnp.where still gives NaN
            # gradients, so the data need a finite placeholder there
            finite = bool(np.all(np.isfinite(logp)))
        except ValueError:
            finite = False
        if not finite:
            raise ValueError(
                f"observed site {name!r} has {int(np.isnan(value).sum())} NaN value(s) of "
                f"{value.size} and its log-density is then not finite; mark missing "
                "observations with a mask instead: DiscreteHMM(..., mask=...) and "
                "ObservedCTMC(..., mask=...) accept NaN placeholders at the masked steps; "
                "for other distributions use numpyro.handlers.mask with a finite "
                "placeholder (e.g. 0) in the data (NaN gives NaN gradients even if masked)"
            )
    return values
