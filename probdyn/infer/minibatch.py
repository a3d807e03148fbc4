"""Minibatches drawn by the model's own subsampled plates, and the full-data model.

A ``numpyro.plate("data", N, subsample_size=B)`` draws ``B`` indices per evaluation and
scales the log-likelihood inside it by ``N / B``. The SG-MCMC kernels
(:mod:`probdyn.infer.sgmcmc`) run the model under :class:`iid_plates` (indices i.i.d.
uniform, O(B) per step); :func:`full_data_model` runs every subsampled plate over all
``N`` indices with scale 1, for log-likelihoods, posterior predictive draws and SVI's
final guide draws.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import random
from numpyro.primitives import Messenger

Array = jax.Array

__all__ = ["full_data_model", "full_plates", "iid_indices", "iid_plates"]


def iid_indices(size: int, subsample_size: int, rng_key: Array | None = None) -> Array:
    """``subsample_size`` indices i.i.d. uniform on ``range(size)`` (with replacement)."""
    return random.randint(rng_key, (subsample_size,), 0, size)


class iid_plates(Messenger):
    """Subsampled plates draw i.i.d. uniform indices; only the plate's ``fn`` changes, so
    the ``seed`` handler still supplies the key and :func:`full_data_model` still wins."""

    def process_message(self, msg):
        if msg["type"] == "plate" and msg["value"] is None:
            msg["fn"] = iid_indices


class full_plates(Messenger):
    """Every subsampled plate over its full index range ``arange(size)`` (scale 1)."""

    def process_message(self, msg):
        # a subsampled plate sends value None (its indices are drawn below this handler)
        if msg["type"] == "plate" and msg["value"] is None:
            size = msg["args"][0]
            msg["args"] = (size, size)
            msg["value"] = jnp.arange(size)


def full_data_model(model: Callable) -> Callable:
    """The model with every subsampled plate running over its full index range.

    Subsampled plates then cover all ``N`` points with scale 1, so the returned model
    gives full-data log-likelihoods (``numpyro.infer.log_likelihood``, ArviZ) and posterior
    predictive draws of the whole data set (``Predictive``) from SG-MCMC draws; call it with
    the same arguments as ``model``.

    Parameters
    ----------
    model
        NumPyro model.

    Returns
    -------
    model
        ``model`` under a handler that sets every subsampled plate's indices to
        ``arange(size)``.
    """
    return full_plates(model)
