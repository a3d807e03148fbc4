r"""Jacobians, eigenvalues and the stability of fixed points of a discrete-time map.

For a map :math:`h_{t+1} = F(h_t, x_t)` a fixed point :math:`h^*` of the input-free map
:math:`F(\cdot, 0)` is locally attracting when every eigenvalue of the Jacobian
:math:`J = \partial F / \partial h` at :math:`h^*` lies inside the unit circle. Torre et al.
(2025) read the spectrum through the Moebius map :math:`z = (\lambda - 1)/(\lambda + 1)`,
which sends the inside of the unit circle to the left half-plane, so that
:math:`\operatorname{Re} z > 0` counts unstable directions as for a continuous-time system:

.. math::
    \operatorname{Re}\frac{\lambda - 1}{\lambda + 1} = \frac{|\lambda|^2 - 1}{|\lambda + 1|^2}.

References
----------
Sussillo, D. & Barak, O. (2013). Opening the black box: low-dimensional dynamics in
high-dimensional recurrent neural networks. Neural Computation 25(3), 626-649.

Torre, E., Viscione, M., Pompe, L., Grewe, B. F. & Mante, V. (2025). Mechanistic
interpretability of RNNs emulating hidden Markov models. arXiv:2510.25674.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from probdyn.analysis._checks import check_array, check_callable, check_int, check_positive

try:  # optional: present wherever scikit-learn is
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

__all__ = [
    "STABILITY_LABELS",
    "Stability",
    "classify_stability",
    "jacobian",
    "jacobians",
    "local_growth_rate",
    "mobius_transform",
    "relu_jacobian",
]

STABILITY_LABELS = ("stable", "saddle", "unstable", "marginal")
"""Names of the codes in :attr:`Stability.label` (0, 1, 2, 3)."""


def jacobian(
    step_fn: Callable[[jax.Array, jax.Array], jax.Array],
    h: ArrayLike,
    x: ArrayLike,
) -> jax.Array:
    r"""Jacobian :math:`\partial F(h, x) / \partial h` of any map, by forward-mode autodiff.

    Parameters
    ----------
    step_fn : callable
        ``step_fn(h, x) -> h_next`` with ``h`` of shape (hidden_size,).
    h : array_like, shape (hidden_size,)
        Where to evaluate it.
    x : array_like, shape (noise_dim,)
        The input held fixed (zeros for the autonomous map).

    Returns
    -------
    jax.Array, shape (hidden_size, hidden_size)
        ``J[i, j] = d F_i / d h_j``.
    """
    check_callable("step_fn", step_fn)
    h = jnp.asarray(h)
    x = jnp.asarray(x)
    if h.ndim != 1:
        raise ValueError(f"h must have shape (hidden_size,), got shape {h.shape}")
    return jax.jacfwd(lambda hh: step_fn(hh, x))(h)


def jacobians(
    step_fn: Callable[[jax.Array, jax.Array], jax.Array],
    states: ArrayLike,
    noise_dim: int,
) -> jax.Array:
    r"""Jacobians of the input-free map :math:`F(\cdot, 0)` at many states (vmapped, jitted).

    Parameters
    ----------
    step_fn : callable
        ``step_fn(h, x) -> h_next``.
    states : array_like, shape (num_points, hidden_size)
        Where to evaluate them.
    noise_dim : int
        Length of the input ``x``, set to zeros.

    Returns
    -------
    jax.Array, shape (num_points, hidden_size, hidden_size)
    """
    check_callable("step_fn", step_fn)
    noise_dim = check_int("noise_dim", noise_dim)
    states = check_array("states", states, 2)
    x0 = jnp.zeros(noise_dim, dtype=jnp.result_type(float))
    jac = jax.jit(jax.vmap(jax.jacfwd(lambda h: step_fn(h, x0))))
    return jac(jnp.asarray(states, dtype=x0.dtype))


def relu_jacobian(W_hh: ArrayLike, preactivation: ArrayLike) -> jax.Array:
    r"""Closed-form Jacobian of :math:`h \mapsto \mathrm{ReLU}(W_{hh} h + W_{ih} x)`.

    .. math:: J = \operatorname{diag}(\mathbb{1}[a > 0])\, W_{hh},
        \qquad a = W_{hh} h + W_{ih} x.

    Parameters
    ----------
    W_hh : array_like, shape (hidden_size, hidden_size)
        Recurrent weights.
    preactivation : array_like, shape (..., hidden_size)
        The pre-activation ``a`` (batched over leading axes).

    Returns
    -------
    jax.Array, shape (..., hidden_size, hidden_size)
    """
    W_hh = jnp.asarray(W_hh)
    a = jnp.asarray(preactivation)
    if W_hh.ndim != 2 or W_hh.shape[0] != W_hh.shape[1]:
        raise ValueError(f"W_hh must be square (hidden_size, hidden_size), got {W_hh.shape}")
    if a.ndim < 1 or a.shape[-1] != W_hh.shape[0]:
        raise ValueError(
            f"preactivation must have last axis hidden_size={W_hh.shape[0]}, got {a.shape}"
        )
    return (a > 0).astype(W_hh.dtype)[..., :, None] * W_hh


def mobius_transform(eigenvalues: ArrayLike) -> np.ndarray:
    r"""The paper's map :math:`z = (\lambda - 1) / (\lambda + 1)` (unit disc -> left half-plane).

    Parameters
    ----------
    eigenvalues : array_like, complex, any shape

    Returns
    -------
    numpy.ndarray, complex, same shape
        ``Re z < 0`` exactly where ``|lambda| < 1``; ``lambda = -1`` gives an infinite value.
    """
    lam = np.asarray(eigenvalues, dtype=complex)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (lam - 1.0) / (lam + 1.0)


def _eigvals(J: np.ndarray) -> np.ndarray:
    """Batched eigenvalues, with BLAS limited to one thread when threadpoolctl is installed:
    for many small matrices OpenBLAS's worker threads only spin, and on a busy machine that
    made the loop ~25x slower (measured: 20 matrices of 150 x 150, 6.4 s vs 0.23 s CPU)."""
    if threadpool_limits is None:
        return np.linalg.eigvals(J)
    with threadpool_limits(1, user_api="blas"):
        return np.linalg.eigvals(J)


class Stability(NamedTuple):
    """Spectrum and stability class of each Jacobian.

    Attributes
    ----------
    eigenvalues : numpy.ndarray, complex, shape (num_points, hidden_size)
        Sorted by decreasing modulus.
    mobius : numpy.ndarray, complex, shape (num_points, hidden_size)
        :func:`mobius_transform` of the eigenvalues.
    spectral_radius : numpy.ndarray, shape (num_points,)
        Largest modulus.
    num_unstable : numpy.ndarray of int, shape (num_points,)
        Eigenvalues with modulus > 1 + tol (``Re mobius > 0``), counting each of a complex
        pair.
    label : numpy.ndarray of int, shape (num_points,)
        Index into :data:`STABILITY_LABELS`: 0 stable (all moduli < 1 - tol), 1 saddle
        (some inside, some outside), 2 unstable (all outside), 3 marginal (the largest
        modulus within ``tol`` of 1 and none outside).
    """

    eigenvalues: np.ndarray
    mobius: np.ndarray
    spectral_radius: np.ndarray
    num_unstable: np.ndarray
    label: np.ndarray


def classify_stability(jacobian_matrices: ArrayLike, tol: float = 1e-6) -> Stability:
    """Eigenvalues of discrete-time Jacobians and the stability class of each point.

    Parameters
    ----------
    jacobian_matrices : array_like, shape (hidden_size, hidden_size) or
        (num_points, hidden_size, hidden_size)
        Jacobians of the map at its fixed points (e.g. from :func:`jacobians`).
    tol : float
        Band around the unit circle counted as marginal.

    Returns
    -------
    Stability
        With a leading ``num_points`` axis (1 for a single matrix).
    """
    J = check_array("jacobian_matrices", jacobian_matrices, (2, 3))
    tol = check_positive("tol", tol, allow_zero=True)
    if J.ndim == 2:
        J = J[None]
    if J.shape[-1] != J.shape[-2]:
        raise ValueError(f"jacobian_matrices must be square, got shape {J.shape}")
    if not np.all(np.isfinite(J)):
        raise ValueError("jacobian_matrices must be finite, got non-finite entries")
    lam = _eigvals(J.astype(np.float64))
    order = np.argsort(-np.abs(lam), axis=-1, kind="stable")
    lam = np.take_along_axis(lam, order, axis=-1)
    mod = np.abs(lam)
    n_out = np.sum(mod > 1.0 + tol, axis=-1)
    n_in = np.sum(mod < 1.0 - tol, axis=-1)
    size = J.shape[-1]
    label = np.where(
        n_in == size,
        0,
        np.where(n_out == size, 2, np.where(n_out > 0, 1, 3)),
    )
    return Stability(
        eigenvalues=lam,
        mobius=mobius_transform(lam),
        spectral_radius=mod[:, 0],
        num_unstable=n_out.astype(int),
        label=label.astype(int),
    )


def local_growth_rate(
    rng_key: jax.Array,
    step_fn: Callable[[jax.Array, jax.Array], jax.Array],
    point: ArrayLike,
    noise_dim: int,
    radius: float = 1e-3,
    num_directions: int = 64,
    num_steps: int = 50,
) -> jax.Array:
    r"""Per-step growth of small perturbations of a point under the input-free map.

    .. math:: g = \max_v \left(\frac{\lVert F^k(p + r v) - F^k(p) \rVert}{r}\right)^{1/k}

    over ``num_directions`` random unit vectors :math:`v`. For a smooth map at a fixed point
    this tends to the spectral radius of the Jacobian as :math:`k` grows (error of order
    :math:`1/k`). It needs no derivative, so it also applies where the Jacobian is not
    defined: at :math:`h = 0` of a bias-free ReLU network every pre-activation is 0, autodiff
    (and :func:`relu_jacobian`) return the zero matrix, yet the map is positively homogeneous
    and perturbations grow or decay at the rate this function measures. :math:`g < 1`: the
    point attracts; :math:`g > 1`: it repels in some direction.

    Parameters
    ----------
    rng_key : jax.Array
    step_fn : callable
        ``step_fn(h, x) -> h_next``.
    point : array_like, shape (hidden_size,)
    noise_dim : int
        Length of the input, set to zeros.
    radius : float
        Size :math:`r` of the perturbations.
    num_directions : int
    num_steps : int
        :math:`k`.

    Returns
    -------
    jax.Array, scalar
    """
    check_callable("step_fn", step_fn)
    noise_dim = check_int("noise_dim", noise_dim)
    radius = check_positive("radius", radius)
    num_directions = check_int("num_directions", num_directions)
    num_steps = check_int("num_steps", num_steps)
    p = check_array("point", point, 1)
    dtype = jnp.result_type(float)
    x0 = jnp.zeros(noise_dim, dtype)

    @jax.jit
    def run(key, p):
        v = jax.random.normal(key, (num_directions, p.shape[0]), dtype)
        v = v / jnp.linalg.norm(v, axis=1, keepdims=True)
        h = jnp.concatenate([p[None], p[None] + radius * v])

        def body(h, _):
            return jax.vmap(lambda s: step_fn(s, x0))(h), None

        h, _ = jax.lax.scan(body, h, None, length=num_steps)
        d = jnp.linalg.norm(h[1:] - h[0], axis=1) / radius
        return jnp.max(d) ** (1.0 / num_steps)

    return run(rng_key, jnp.asarray(p, dtype))
