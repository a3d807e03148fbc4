r"""Debiased Sinkhorn divergence between point clouds, in geomloss's conventions.

The loss of Torre et al. (2025) is geomloss's ``SamplesLoss("sinkhorn", p=2,
blur=0.2)``: the debiased entropic optimal-transport divergence

.. math::

    S_\varepsilon(\alpha, \beta) = \mathrm{OT}_\varepsilon(\alpha, \beta)
        - \tfrac12 \mathrm{OT}_\varepsilon(\alpha, \alpha)
        - \tfrac12 \mathrm{OT}_\varepsilon(\beta, \beta)

with ground cost :math:`c(x, y) = \tfrac12 |x - y|^2` and :math:`\varepsilon =
\text{blur}^2` (geomloss's blur is a length; :math:`\varepsilon = \text{blur}^p`, p = 2).
The transport problems are solved by ott-jax's Sinkhorn solver with geomloss's
:math:`\varepsilon`-scaling: :math:`\varepsilon` starts at the squared diameter of the
data and shrinks by ``scaling**2`` per iteration down to ``blur**2``, followed by
``extra_iterations`` at the target. On one-hot sequences (integer squared distances,
many ties) Sinkhorn at :math:`\varepsilon = 0.04` without annealing does not converge in
2,000 iterations, so, like geomloss, the annealed iterate is the loss; its gradient treats
the dual potentials as constants (Danskin's theorem), as geomloss does.

References
----------
J. Feydy, T. Séjourné, F.-X. Vialard, S. Amari, A. Trouvé, G. Peyré. "Interpolating
between Optimal Transport and MMD using Sinkhorn Divergences." AISTATS 2019.
M. Cuturi et al. "Optimal Transport Tools (OTT): A JAX Toolbox for all things
Wasserstein." arXiv:2201.12324, 2022.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from ott.geometry import costs
from ott.geometry.epsilon_scheduler import Epsilon
from ott.tools.sinkhorn_divergence import sinkdiv

__all__ = ["bounding_box_diameter", "sinkhorn_divergence"]


def bounding_box_diameter(x: ArrayLike, y: ArrayLike) -> float:
    """Diagonal of the bounding box of two point clouds (geomloss's diameter estimate).

    Parameters
    ----------
    x : ArrayLike, shape (N, D)
    y : ArrayLike, shape (M, D)

    Returns
    -------
    float
    """
    z = np.concatenate([np.asarray(x).reshape(len(x), -1), np.asarray(y).reshape(len(y), -1)])
    return float(np.sqrt(np.sum((z.max(0) - z.min(0)) ** 2)))


def sinkhorn_divergence(
    x: ArrayLike,
    y: ArrayLike,
    *,
    blur: float = 0.2,
    diameter: float | None = None,
    scaling: float = 0.5,
    extra_iterations: int = 10,
) -> jax.Array:
    r"""Debiased Sinkhorn divergence with cost :math:`|x-y|^2/2` and
    :math:`\varepsilon = \text{blur}^2`, uniform weights.

    Parameters
    ----------
    x : ArrayLike, shape (N, D)
        First point cloud (e.g. N sequences flattened to T x S one-hot vectors).
    y : ArrayLike, shape (M, D)
        Second point cloud.
    blur : float
        Entropic blur, a length (geomloss's ``blur``); :math:`\varepsilon = \text{blur}^2`.
    diameter : float, optional
        Upper bound on the distance between points, the start of the
        :math:`\varepsilon`-schedule. Default: the bounding-box diagonal of ``x`` and
        ``y``, which needs concrete arrays; under ``jit`` pass it (for one-hot sequences
        of length T over S symbols, :math:`\sqrt{TS}`).
    scaling : float
        Geomloss's ``scaling`` in (0, 1): the blur shrinks by this factor per iteration.
    extra_iterations : int
        Sinkhorn iterations at the target :math:`\varepsilon` after the annealing.

    Returns
    -------
    Array, shape ()
        The divergence, zero for identical clouds and positive otherwise.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have shapes (N, D) and (M, D) with the same D; got {x.shape} "
            f"and {y.shape}"
        )
    if not blur > 0:
        raise ValueError(f"blur must be positive; got {blur!r}")
    if not 0 < scaling < 1:
        raise ValueError(f"scaling must lie in (0, 1); got {scaling!r}")
    if diameter is None:
        if isinstance(x, jax.core.Tracer) or isinstance(y, jax.core.Tracer):
            raise ValueError("diameter must be given when x or y is traced (under jit/grad)")
        diameter = bounding_box_diameter(x, y)
    diameter = max(float(diameter), float(blur))
    num_anneal = max(int(math.ceil(math.log(diameter / blur) / math.log(1.0 / scaling))), 0)
    num_iterations = num_anneal + 1 + int(extra_iterations)
    eps = float(blur) ** 2
    schedule = Epsilon(target=eps, init=(diameter / blur) ** 2, decay=scaling**2)
    # cost |x - y|^2 / 2 as ott's squared Euclidean cost of the points scaled by 1/sqrt(2)
    s = 1.0 / math.sqrt(2.0)
    value, _ = sinkdiv(
        x * s,
        y * s,
        cost_fn=costs.SqEuclidean(),
        epsilon=schedule,
        solve_kwargs={
            "min_iterations": num_iterations,
            "max_iterations": num_iterations,
            "inner_iterations": 1,
            "implicit_diff": None,
            "use_danskin": True,
        },
    )
    return value
