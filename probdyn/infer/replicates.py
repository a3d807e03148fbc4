"""Many independent NUTS/HMC fits in one compiled program, the replicates over devices.

Simulation-based calibration (:func:`probdyn.report.sbc`) and coverage studies
(:func:`probdyn.report.replicate_coverage`) fit the same model to hundreds of data sets.
:func:`fit_replicates` runs NumPyro's functional NUTS/HMC (``numpyro.infer.hmc.hmc``,
warmup adaptation included) as a ``lax.scan`` per replicate, ``vmap``-ed within a device,
with the replicate axis split over every device (of every process) by
:func:`probdyn.distributed.map_over_devices`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from probdyn.distributed import map_over_devices
from probdyn.infer._checks import check_int

__all__ = ["ReplicateFits", "fit_replicates"]

_HMC_OPTIONS = (
    "target_accept_prob",
    "max_tree_depth",
    "dense_mass",
    "step_size",
    "num_steps",
    "trajectory_length",
)


class ReplicateFits(NamedTuple):
    """Result of :func:`fit_replicates`.

    Attributes
    ----------
    draws : dict of str to np.ndarray
        Constrained draws of each requested site, shape ``(R, num_samples // thinning,
        *site_shape)``.
    divergences : np.ndarray of int, shape (R,)
        Divergent transitions after warmup, per replicate.
    """

    draws: dict[str, np.ndarray]
    divergences: np.ndarray


def fit_replicates(
    model: Callable,
    data: Mapping[str, Any],
    *args: Any,
    model_kwargs: Mapping[str, Any] | None = None,
    params: Sequence[str] | None = None,
    method: str = "nuts",
    num_warmup: int = 500,
    num_samples: int = 500,
    thinning: int = 1,
    seed: int = 0,
    mesh: Mesh | None = None,
    **options: Any,
) -> ReplicateFits:
    """One NUTS/HMC chain per replicate data set, all replicates in one program.

    Parameters
    ----------
    model : callable
        NumPyro model taking its per-replicate data as keyword arguments.
    data : mapping of str to array
        Model keyword -> replicate data with a leading replicate axis ``(R, ...)``: every
        argument that differs between replicates (observations, observation times).
    *args
        Positional model arguments shared by all replicates.
    model_kwargs : mapping, optional
        Keyword arguments shared by all replicates.
    params : sequence of str, optional
        Sites to return (latent or deterministic); default every latent sample site.
    method : {"nuts", "hmc"}
    num_warmup, num_samples, thinning : int
        Warmup iterations (adaptation of step size and mass matrix) and post-warmup
        iterations per replicate; every ``thinning``-th draw is kept.
    seed : int
        Seeds initial points (uniform on ``(-2, 2)`` in the unconstrained space, as
        NumPyro's ``init_to_uniform``) and sampling. Replicate ``r`` gets its own key, so
        its draws do not depend on how many devices or processes run the others.
    mesh : jax.sharding.Mesh, optional
        1-D mesh the replicate axis is split over (default every device,
        :func:`probdyn.distributed.device_mesh`). With ``R`` not a multiple of the number
        of devices the last replicate is computed again on the spare slots and dropped.
    **options
        ``target_accept_prob``, ``max_tree_depth``, ``dense_mass``, ``step_size``,
        ``num_steps``, ``trajectory_length`` of ``numpyro.infer.hmc.hmc``'s ``init_kernel``.

    Returns
    -------
    ReplicateFits
        ``draws`` (R, num_samples // thinning, ...) per site and ``divergences`` (R,).

    Notes
    -----
    Under ``vmap`` each NUTS step of a device's block lasts as long as the deepest tree
    among its replicates; on several devices each block waits only for its own.

    References
    ----------
    Hoffman, M. D. and Gelman, A. (2014). The No-U-Turn sampler. JMLR 15, 1593-1623.
    """
    from numpyro.infer.hmc import hmc
    from numpyro.infer.util import initialize_model

    if method not in ("nuts", "hmc"):
        raise ValueError(f"method={method!r} is not supported; expected 'nuts' or 'hmc'")
    unknown = sorted(set(options) - set(_HMC_OPTIONS))
    if unknown:
        raise TypeError(f"fit_replicates got unknown options {unknown}; expected some of "
                        f"{list(_HMC_OPTIONS)}")  # fmt: skip
    num_warmup = check_int("num_warmup", num_warmup, 0)
    num_samples = check_int("num_samples", num_samples, 1)
    thinning = check_int("thinning", thinning, 1)
    seed = check_int("seed", seed, 0, 2**32 - 1)
    if num_samples < thinning:
        raise ValueError(f"num_samples={num_samples} keeps no draw with thinning={thinning}; "
                         "expected num_samples >= thinning")  # fmt: skip
    if not isinstance(data, Mapping) or not data:
        raise ValueError(f"data={data!r} must be a non-empty dict of batched model keywords")
    data = {k: jnp.asarray(v) for k, v in data.items()}
    sizes = {k: (v.shape[0] if v.ndim else None) for k, v in data.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise ValueError(f"data must share one leading replicate axis; got sizes {sizes}")
    num_reps = next(iter(sizes.values()))
    model_kwargs = dict(model_kwargs or {})

    key_init, key_z, key_run = jax.random.split(jax.random.key(seed), 3)
    first = {**model_kwargs, **jax.tree.map(lambda x: x[0], data)}
    info = initialize_model(key_init, model, model_args=args, model_kwargs=first, dynamic_args=True)
    if params is None:
        params = list(info.param_info.z)
    params = list(params)
    init_kernel, sample_kernel = hmc(
        potential_fn_gen=info.potential_fn, algo="NUTS" if method == "nuts" else "HMC"
    )
    # numpyro's default init_to_uniform: uniform(-2, 2) in the unconstrained space
    leaves, treedef = jax.tree.flatten(info.param_info.z)
    zkeys = jax.random.split(key_z, len(leaves))
    z0 = treedef.unflatten(
        [
            jax.random.uniform(k, (num_reps, *jnp.shape(x)), minval=-2.0, maxval=2.0)
            for k, x in zip(zkeys, leaves, strict=True)
        ]
    )
    init_opts = {k: options[k] for k in _HMC_OPTIONS if k in options}
    num_iter, num_draws = num_samples, num_samples // thinning

    def run_one(key_data, z_init, obs):
        kwargs = {**model_kwargs, **obs}
        state = init_kernel(
            z_init,
            num_warmup,
            model_args=args,
            model_kwargs=kwargs,
            rng_key=jax.random.wrap_key_data(key_data),
            **init_opts,
        )

        def body(st, _):
            st = sample_kernel(st, model_args=args, model_kwargs=kwargs)
            return st, (st.z, st.diverging)

        _, (zs, div) = jax.lax.scan(body, state, None, length=num_warmup + num_iter)
        zs = jax.tree.map(lambda x: x[num_warmup::thinning][:num_draws], zs)
        constrained = jax.vmap(info.postprocess_fn(*args, **kwargs))(zs)
        return {p: constrained[p] for p in params}, div[num_warmup:].sum()

    keys = jax.random.key_data(jax.random.split(key_run, num_reps))
    draws, div = map_over_devices(run_one, mesh)(keys, z0, data)
    return ReplicateFits({p: np.asarray(v) for p, v in draws.items()}, np.asarray(div))
