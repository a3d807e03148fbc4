"""Hidden-state posteriors of HMM-like sites as an ArviZ group (``hidden_states``).

For every observed site whose distribution can smooth and decode its hidden chain
(:class:`probdyn.DiscreteHMM`, :class:`probdyn.ObservedCTMC`), and for every posterior
draw of the parameters, :func:`add_hidden_states` stores the smoothed marginals
:math:`p(z_t = k \\mid y, \\theta^{(s)})` (forward-backward, Rabiner 1989) and,
optionally, the Viterbi path :math:`\\arg\\max_z p(z \\mid y, \\theta^{(s)})`. Averaging
the marginals over draws gives :math:`p(z_t = k \\mid y)` with the parameter uncertainty
integrated out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from numpyro import distributions as dist
from numpyro import handlers
from numpyro.infer.initialization import init_to_sample

__all__ = ["add_hidden_states", "hidden_state_sites"]

_WRAPPERS = (dist.Independent, dist.MaskedDistribution)
GROUP = "hidden_states"


def _unwrap(fn):
    while isinstance(fn, _WRAPPERS):
        fn = fn.base_dist
    return fn


def _has_hidden_chain(fn) -> bool:
    fn = _unwrap(fn)
    return all(callable(getattr(fn, m, None)) for m in ("smooth", "viterbi")) and hasattr(
        fn, "num_states"
    )


def hidden_state_sites(
    model: Callable, args: Sequence = (), kwargs: Mapping[str, Any] | None = None
) -> list[str]:
    """Observed sites of ``model`` whose distribution has a hidden discrete chain.

    Parameters
    ----------
    model : callable
        A NumPyro model.
    args, kwargs : tuple, dict
        Its arguments (observed data included).

    Returns
    -------
    list of str
        Names of observed sites whose distribution (inside ``Independent``/masking) has
        ``smooth``, ``viterbi`` and ``num_states``: ``DiscreteHMM`` and ``ObservedCTMC``.
    """
    found: list[str] = []
    seeded = handlers.substitute(handlers.seed(model, 0), substitute_fn=init_to_sample)

    def run():
        tr = handlers.trace(seeded).get_trace(*args, **dict(kwargs or {}))
        for name, site in tr.items():
            if site["type"] == "sample" and site["is_observed"] and _has_hidden_chain(site["fn"]):
                found.append(name)
        return 0

    jax.eval_shape(run)
    return found


def _posterior_dict(idata) -> dict[str, np.ndarray]:
    post = idata.posterior
    return {str(k): np.asarray(v.values) for k, v in post.data_vars.items()}


def _dim_names(idata, site: str, ndim: int, num_states: int) -> tuple[list[str], str]:
    """Names of a site's (batch..., time) axes from observed_data, and of the state axis."""
    names = [f"{site}_dim_{i}" for i in range(ndim)]
    obs = getattr(idata, "observed_data", None)
    if obs is not None and site in obs.data_vars:
        obs_dims = list(obs[site].dims)
        names[: min(ndim, len(obs_dims))] = obs_dims[:ndim]
    state = "state"
    for group in ("posterior", "observed_data", "constant_data"):
        ds = getattr(idata, group, None) if hasattr(idata, group) else None
        if ds is not None and state in ds.sizes and ds.sizes[state] != num_states:
            state = f"{site}_state"
    return names, state


def _coords(idata, dims: Sequence[str]) -> dict[str, np.ndarray]:
    out = {}
    for group in ("posterior", "observed_data", "constant_data"):
        ds = getattr(idata, group, None) if hasattr(idata, group) else None
        if ds is None:
            continue
        for d in dims:
            if d in ds.coords and d not in out:
                out[d] = np.asarray(ds.coords[d].values)
    return out


def _add_group(idata, name: str, ds: xr.Dataset):
    """Add (or replace) a group on an ArviZ 0.x InferenceData or a 1.x DataTree."""
    if hasattr(idata, "add_groups"):
        if name in idata.groups():
            del idata[name]
        idata.add_groups({name: ds})
    else:  # pragma: no cover - ArviZ 1.x (xarray.DataTree)
        idata[name] = ds
    return idata


def add_hidden_states(
    idata,
    model: Callable,
    *args: Any,
    model_kwargs: Mapping[str, Any] | None = None,
    sites: Sequence[str] | None = None,
    viterbi: bool = True,
    batch_size: int = 256,
):
    """Add per-draw smoothed hidden-state marginals (and Viterbi paths) as ``hidden_states``.

    Parameters
    ----------
    idata : arviz.InferenceData (or xarray.DataTree)
        A result of :func:`probdyn.fit` for ``model``: its ``posterior`` has dims
        ``(chain, draw, ...)``; an ``svi_params`` group, if any, supplies the model's own
        ``numpyro.param`` values.
    model : callable
        The NumPyro model that was fitted.
    *args
        Its positional arguments (observed data included), as given to ``fit``.
    model_kwargs : dict, optional
        Its keyword arguments.
    sites : list of str, optional
        Observed sites to decode; default every site found by :func:`hidden_state_sites`.
    viterbi : bool
        Also store the most probable state path per draw.
    batch_size : int
        Draws processed at once (memory: ``batch_size * T * K`` floats per site).

    Returns
    -------
    The same object, with a group ``hidden_states`` holding, per site ``s`` with value of
    shape ``(*batch, T, *event)`` and ``K`` states:

    - ``<s>_probs``: float, dims ``(chain, draw, *batch dims, time, state)``, the smoothed
      marginals :math:`p(z_t = k \\mid y, \\theta)` at each draw (they sum to 1 over state).
    - ``<s>_viterbi``: int32, dims ``(chain, draw, *batch dims, time)`` (when ``viterbi``).

    The batch and time axes take the names of ``observed_data[s]`` (e.g. ``"time"``); the
    state axis is ``"state"`` (``"<s>_state"`` when the result already has a ``"state"``
    dim of another length).

    Raises
    ------
    ValueError
        No posterior group; ``sites`` naming a site without a hidden chain.

    References
    ----------
    Rabiner, L. R. (1989). A tutorial on hidden Markov models and selected applications in
    speech recognition. Proceedings of the IEEE 77(2), 257-286.

    Examples
    --------
    >>> idata = probdyn.fit(model, y, hidden_states=True)  # doctest: +SKIP
    >>> p = idata.hidden_states["y_probs"].mean(("chain", "draw"))  # (time, state)
    """
    if not hasattr(idata, "posterior"):
        raise ValueError(f"idata must have a posterior group; got {type(idata).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise TypeError(f"batch_size={batch_size!r} is not an int")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is out of range; expected an int >= 1")
    kwargs = dict(model_kwargs or {})
    available = hidden_state_sites(model, args, kwargs)
    if sites is None:
        sites = available
    else:
        sites = [str(s) for s in sites]
        bad = sorted(set(sites) - set(available))
        if bad:
            raise ValueError(
                f"sites={bad} are not observed sites with a hidden chain; expected some of "
                f"{available} (DiscreteHMM or ObservedCTMC sites)"
            )
    if not sites:
        return idata
    draws = _posterior_dict(idata)
    num_chains, num_draws = next(iter(draws.values())).shape[:2] if draws else (1, 1)
    flat = {
        k: jnp.asarray(v.reshape((num_chains * num_draws,) + v.shape[2:])) for k, v in draws.items()
    }
    params = {}
    if hasattr(idata, "svi_params"):
        params = {str(k): jnp.asarray(v.values) for k, v in idata.svi_params.data_vars.items()}

    def one(draw):
        data = {**params, **draw}
        tr = handlers.trace(handlers.substitute(handlers.seed(model, 0), data=data)).get_trace(
            *args, **kwargs
        )
        out = {}
        for name in sites:
            fn, value = _unwrap(tr[name]["fn"]), tr[name]["value"]
            out[f"{name}_probs"] = fn.smooth(value).smoothed_probs
            if viterbi:
                out[f"{name}_viterbi"] = fn.viterbi(value).astype(jnp.int32)
        return out

    result = jax.jit(lambda d: jax.lax.map(one, d, batch_size=int(batch_size)))(flat)
    variables = {}
    all_dims: list[str] = []
    for name in sites:
        probs = np.asarray(result[f"{name}_probs"])
        probs = probs.reshape((num_chains, num_draws) + probs.shape[1:])
        K = probs.shape[-1]
        names, state = _dim_names(idata, name, probs.ndim - 3, K)
        dims = ("chain", "draw", *names, state)
        variables[f"{name}_probs"] = xr.DataArray(probs, dims=dims)
        all_dims += list(dims)
        if viterbi:
            path = np.asarray(result[f"{name}_viterbi"])
            path = path.reshape((num_chains, num_draws) + path.shape[1:])
            variables[f"{name}_viterbi"] = xr.DataArray(path, dims=dims[:-1])
    coords = _coords(idata, dict.fromkeys(all_dims))
    ds = xr.Dataset(variables)
    ds = ds.assign_coords({d: v for d, v in coords.items() if ds.sizes.get(d) == len(v)})
    return _add_group(idata, GROUP, ds)
