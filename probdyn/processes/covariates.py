"""Per-subject CTMC generators from log-linear covariate effects on the allowed rates
(the ``msm`` parametrisation, used with :class:`probdyn.processes.PanelCTMC`).

References
----------
C. H. Jackson, "Multi-state models for panel data: the msm package for R", Journal of
Statistical Software 38(8), 2011.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from probdyn.processes._ctmc import concrete, float_array

__all__ = ["generator_from_log_rates"]


def generator_from_log_rates(
    structure: ArrayLike,
    log_rates: ArrayLike,
    covariates: ArrayLike | None = None,
    coefs: ArrayLike | None = None,
) -> jax.Array:
    r"""Generator(s) with log-linear covariate effects on the allowed transition rates.

    The R allowed transitions are the non-zero off-diagonal entries of ``structure``,
    taken in row-major order (as ``msm`` orders its ``qmatrix``). Subject n gets

    .. math::

        q^{(n)}_{r} = \exp\big(\texttt{log\_rates}_r + \textstyle\sum_p x_{np}\,
            \beta_{pr}\big), \qquad r = 1, \dots, R,

    and :math:`q^{(n)}_{ii} = -\sum_{j \ne i} q^{(n)}_{ij}`. A covariate acting on one
    rate only has zeros in the other columns of ``coefs``.

    Parameters
    ----------
    structure : ArrayLike of bool or 0/1, shape (K, K)
        Allowed transitions; must be concrete (it fixes R), with a zero diagonal.
    log_rates : ArrayLike, shape (R,)
        Baseline log-rates of the allowed transitions.
    covariates : ArrayLike, shape (N, P), optional
        Covariates of each subject.
    coefs : ArrayLike, shape (P, R), optional
        Effect of covariate p on log-rate r. Required with ``covariates``.

    Returns
    -------
    Array, shape (K, K) without covariates, (N, K, K) with them.

    Examples
    --------
    Illness-death model (0 healthy, 1 ill, 2 dead) with a binary covariate acting on
    the onset rate 0 -> 1 only:

    >>> import jax.numpy as jnp
    >>> structure = jnp.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]])  # R = 3: 01, 02, 12
    >>> x = jnp.array([[0.0], [1.0]])
    >>> beta = 0.7
    >>> Q = generator_from_log_rates(structure, jnp.log(jnp.array([0.2, 0.05, 0.3])), x,
    ...                              jnp.array([[beta, 0.0, 0.0]]))
    >>> Q.shape
    (2, 3, 3)
    """
    s = concrete(structure)
    if s is None:
        raise TypeError("structure must be a concrete (K, K) array, not a traced value")
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"structure must be a square (K, K) matrix; got shape {s.shape}")
    if np.any(np.diagonal(s) != 0):
        raise ValueError("structure must have a zero diagonal (it lists the jumps i -> j != i)")
    rows, cols = np.nonzero(s)
    R = rows.size
    K = s.shape[0]
    lr = float_array(log_rates)
    if lr.shape != (R,):
        raise ValueError(
            f"log_rates must have shape ({R},), one per allowed transition of structure; "
            f"got {lr.shape}"
        )
    if (covariates is None) != (coefs is None):
        raise ValueError("covariates and coefs must be given together")
    if covariates is not None:
        x = float_array(covariates)
        b = float_array(coefs)
        if x.ndim != 2:
            raise ValueError(f"covariates must have shape (N, P); got {x.shape}")
        if b.shape != (x.shape[1], R):
            raise ValueError(
                f"coefs must have shape (P, R) = ({x.shape[1]}, {R}) for covariates of "
                f"shape {x.shape}; got {b.shape}"
            )
        lr = lr + x @ b
    rates = jnp.zeros(lr.shape[:-1] + (K, K), lr.dtype).at[..., rows, cols].set(jnp.exp(lr))
    return rates - jnp.eye(K, dtype=lr.dtype) * jnp.sum(rates, axis=-1, keepdims=True)
