r"""Data-parallel minibatch gradients for SG-MCMC: the data split over devices, a ``psum``.

The observations of a subsampled plate are split over the ``D`` devices of a 1-D mesh
(:func:`probdyn.distributed.device_mesh`) along their leading axis. Every step, device
``d`` runs the model on its own shard of ``N / D`` rows, draws ``B / D`` i.i.d. indices in
it (key ``fold_in(key, d)``), and differentiates

.. math::

    \tilde U_d(\theta) = -\frac{1}{D}\log p(\theta)
        - \frac{N/D}{B/D} \sum_{i \in S_d} \log p(y_i \mid \theta),

and the gradients are summed over devices with ``jax.lax.psum``. The sum is the gradient
of the one-device minibatch potential with the ``B`` indices :math:`\bigcup_d S_d`
(stratified over the shards) and the same :math:`N/B` scale, so the estimator stays
unbiased; only the order of the floating-point additions differs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax.sharding import Mesh, PartitionSpec
from numpyro.handlers import seed
from numpyro.primitives import Messenger

from probdyn.distributed import AXIS, device_mesh
from probdyn.infer.minibatch import iid_indices

__all__ = ["sharded_plates", "sharded_grad_estimator"]


class sharded_plates(Messenger):
    """The model as one of ``num_shards`` devices runs it on its shard of the data.

    Subsampled plates draw ``subsample_size // num_shards`` i.i.d. indices (the plate's
    size is its shard's, so its scale stays ``N / B``); latent sample sites have their
    log-density scaled by ``1 / num_shards``, so summing the shards counts the prior once.
    """

    def __init__(self, fn: Callable | None = None, num_shards: int = 1):
        self.num_shards = num_shards
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "plate" and msg["value"] is None:
            size, subsample_size = msg["args"]
            if subsample_size % self.num_shards:
                raise ValueError(
                    f"plate {msg['name']!r}: subsample_size={subsample_size} is not a multiple "
                    f"of the {self.num_shards} devices the data is split over"
                )
            msg["args"] = (size, subsample_size // self.num_shards)
            msg["fn"] = iid_indices
        elif msg["type"] == "sample" and not msg["is_observed"]:
            scale = msg.get("scale")
            msg["scale"] = (1.0 if scale is None else scale) / self.num_shards


def sharded_grad_estimator(
    potential_fn_gen: Callable,
    model_args: tuple,
    model_kwargs: dict,
    data: Sequence[int | str],
    mesh: Mesh | None = None,
) -> Callable:
    """``(z, rng_key) -> grad log density``, the data of ``data`` split over ``mesh``.

    Parameters
    ----------
    potential_fn_gen : callable
        ``potential_fn_gen(*model_args, **model_kwargs) -> potential(z)``, from
        ``initialize_model(sharded_plates(model, D), dynamic_args=True)``.
    model_args, model_kwargs : tuple, dict
        The model's arguments, the data whole.
    data : sequence of int or str
        Positions (in ``model_args``) or names (in ``model_kwargs``) of the arrays split
        along their leading axis, whose length must be a multiple of the device count.
    mesh : jax.sharding.Mesh, optional
        1-D mesh with axis ``"devices"`` (default every device).

    Returns
    -------
    callable
        BlackJAX's gradient-estimator contract: the key chooses the minibatch.
    """
    mesh = device_mesh() if mesh is None else mesh
    positions = [d for d in data if isinstance(d, int)]
    names = [d for d in data if isinstance(d, str)]
    sharded = tuple(model_args[i] for i in positions) + tuple(model_kwargs[n] for n in names)
    num_devices = mesh.devices.size
    for label, x in zip(positions + names, sharded, strict=True):
        if not jax.numpy.ndim(x) or jax.numpy.shape(x)[0] % num_devices:
            raise ValueError(
                f"data_parallel argument {label!r} has shape {jax.numpy.shape(x)}; expected a "
                f"leading axis that is a multiple of the {num_devices} devices"
            )

    def local_grad(z: Any, rng_key: jax.Array, *local: Any) -> Any:
        args, kwargs = list(model_args), dict(model_kwargs)
        for i, x in zip(positions, local[: len(positions)], strict=True):
            args[i] = x
        for n, x in zip(names, local[len(positions) :], strict=True):
            kwargs[n] = x
        key = jax.random.fold_in(rng_key, jax.lax.axis_index(AXIS))
        potential = potential_fn_gen(*args, **kwargs)

        def with_key(z):
            with seed(rng_seed=key):
                return potential(z)

        grad = jax.grad(with_key)(z)
        return jax.tree.map(lambda g: -jax.lax.psum(g, AXIS), grad)

    rep, split = PartitionSpec(), PartitionSpec(AXIS)
    mapped = jax.shard_map(
        local_grad,
        mesh=mesh,
        in_specs=(rep, rep) + (split,) * len(sharded),
        out_specs=rep,
        check_vma=False,
    )
    return lambda z, rng_key: mapped(z, rng_key, *sharded)
