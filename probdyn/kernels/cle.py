"""The chemical Langevin equation of a reaction network, by Euler-Maruyama: pure JAX.

The diffusion approximation of a reaction network (Gillespie 2000) is the Itô SDE

.. math::

    \\mathrm{d}X = \\nu^\\top h(X)\\,\\mathrm{d}t
        + \\nu^\\top \\mathrm{diag}\\big(\\sqrt{h(X)}\\big)\\,\\mathrm{d}W,

with :math:`\\nu` the stoichiometry (R, S), :math:`h` the propensities and W an
R-dimensional Brownian motion. It is an :class:`probdyn.kernels.sde.SDE` with general
(S, R) noise, stepped by the project's one Euler-Maruyama step
(:func:`probdyn.kernels.sde.step`); this module adds only the observation grid (each
interval cut into steps of at most ``dt``, the last one shorter, so every observation
time is hit exactly) and the noise layout (step i draws from ``fold_in(rng_key, i)``).

References
----------
D. T. Gillespie, "The chemical Langevin equation", J. Chem. Phys. 113(1), 297-306, 2000.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from probdyn.kernels import sde as _sde
from probdyn.kernels._checks import check_times, concrete
from probdyn.kernels.network import Network, PropensityFn, as_network

Array = jax.Array

__all__ = ["chemical_langevin", "cle_sde", "flag_nonfinite"]


def flag_nonfinite(path: ArrayLike, return_overflow: bool = False):
    """Rows of ``path`` (T, S) from the first non-finite one on set to NaN.

    Returns the path, and with ``return_overflow=True`` also the flag (shape ()) that
    such a row exists.
    """
    bad = jnp.cumsum(~jnp.all(jnp.isfinite(path), axis=-1)) > 0
    path = jnp.where(bad[:, None], jnp.nan, path)
    return (path, bad[-1]) if return_overflow else path


def _sqrt0(h):
    pos = h > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, h, 1.0)), 0.0)


def cle_sde(network: Network) -> _sde.SDE:
    """The chemical Langevin equation of ``network`` as an :class:`~probdyn.kernels.sde.SDE`.

    Drift :math:`\\nu^\\top h(x^+)` (S,) and general diffusion
    :math:`\\nu^\\top \\mathrm{diag}(\\sqrt{h(x^+)})` (S, R), with propensities evaluated at
    :math:`x^+ = \\max(x, 0)`; ``params`` are the rates (R,).

    Parameters
    ----------
    network : Network

    Returns
    -------
    SDE
        Itô, ``noise="general"`` with R noise dimensions.
    """
    V = np.asarray(network.stoichiometry, np.float64)
    prop = network.propensity

    def drift(t, x, rates):
        return prop(jnp.maximum(x, 0.0), rates) @ V.astype(x.dtype)

    def diffusion(t, x, rates):
        return V.T.astype(x.dtype) * _sqrt0(prop(jnp.maximum(x, 0.0), rates))[None, :]

    return _sde.SDE(drift, diffusion, noise="general")


def chemical_langevin(
    rng_key: Array,
    x0: ArrayLike,
    times: ArrayLike,
    stoichiometry: Network | ArrayLike,
    rates: ArrayLike,
    *,
    reactants: ArrayLike | None = None,
    propensity_fn: PropensityFn | None = None,
    dt: ArrayLike,
    t0: ArrayLike = 0.0,
    return_overflow: bool = False,
) -> Array | tuple[Array, Array]:
    """Chemical Langevin equation by Euler-Maruyama, read at ``times``.

    A step of length :math:`\\delta` is
    :math:`X \\leftarrow X + \\nu^\\top (h\\,\\delta + \\sqrt{h}\\sqrt{\\delta}\\,Z)`,
    :math:`Z \\sim N(0, I_R)`. Each interval between observation times is cut into
    :math:`\\lceil \\Delta / dt \\rceil` steps (the last one shorter), so every
    observation time is hit exactly.

    The CLE does not keep X non-negative. Propensities are evaluated at
    :math:`\\max(X, 0)`: a species that overshoots below zero stops driving the
    reactions that consume it (its propensities vanish, e.g. a pure-death species is
    absorbed at its negative value instead of oscillating around zero), while X itself is
    returned unclipped. Choose ``dt`` so that :math:`h\\,dt` is small next to the counts;
    the weak error is :math:`O(dt)`. For networks with linear propensities the mean and
    covariance of the exact CLE equal those of the chemical master equation (while X
    stays positive).

    With concrete ``times``, ``t0`` and ``dt`` the loop is a :func:`jax.lax.scan` of
    static length (``max`` steps per interval, shorter intervals padded with empty
    steps), differentiable in ``rates`` and ``x0`` in both modes (reparameterised paths);
    with traced ones it is a loop of dynamic length (forward-mode only). Both draw the
    same noise: step i uses ``fold_in(rng_key, i)``.

    Parameters
    ----------
    rng_key : Array
    x0 : ArrayLike, shape (S,)
        Initial state (finite, non-negative; need not be integer).
    times : ArrayLike, shape (T,)
        Strictly increasing observation times ``>= t0``.
    stoichiometry : Network or ArrayLike of int, shape (R, S)
        The network, or its net changes (then give ``reactants`` or ``propensity_fn``).
    rates : ArrayLike, shape (R,)
    reactants, propensity_fn
        As for :func:`probdyn.kernels.ssa.gillespie`.
    dt : ArrayLike, shape ()
        Largest step (positive).
    t0 : ArrayLike, shape (), default 0
    return_overflow : bool, default False
        Also return the ``overflow`` flag.

    Returns
    -------
    states : Array, shape (T, S)
        :math:`X(t_k)`, in the floating dtype of ``rates``. Explosive growth can leave
        the float range: from the first non-finite row on, every row is NaN.
    overflow : Array of bool, shape ()
        With ``return_overflow=True``: True when the path left the float range.

    References
    ----------
    D. T. Gillespie, "The chemical Langevin equation", J. Chem. Phys. 113(1), 297-306,
    2000.
    """
    net = as_network(stoichiometry, reactants, propensity_fn)
    rates = net.check_rates(rates)
    dtype = rates.dtype
    c, ct, c0, cd = (concrete(a) for a in (x0, times, t0, dt))  # static grid if concrete
    x0 = jnp.asarray(x0)
    if x0.shape != (net.num_species,):
        raise ValueError(f"x0 must have shape ({net.num_species},); got {x0.shape}")
    if c is not None and not (np.all(np.isfinite(c)) and np.all(c >= 0)):
        raise ValueError(f"x0 must be finite and non-negative; got {c.tolist()}")
    t0 = check_times("t0", t0, dtype, ndim=0)
    times = check_times("times", times, dtype, ndim=1, t0=t0)
    dt = check_times("dt", dt, dtype, ndim=0)
    if cd is not None and not cd > 0:
        raise ValueError(f"dt must be positive; got {float(cd)}")
    x0 = x0.astype(dtype)
    sde = cle_sde(net)
    starts = jnp.concatenate([t0[None], times[:-1]])
    R = net.num_reactions

    def step(x, t_a, t_b, k, n, offset):
        s = t_a + k * dt
        e = jnp.where(k + 1 >= n, t_b, jnp.minimum(t_a + (k + 1) * dt, t_b))
        delta = jnp.where(k < n, e - s, 0.0)
        z = jax.random.normal(jax.random.fold_in(rng_key, offset + k), (R,), dtype)
        return _sde.step("euler", sde, s, x, delta, z, rates)

    if ct is not None and c0 is not None and cd is not None:
        gaps = np.diff(np.concatenate([[c0], ct]).astype(np.float64))
        ns = np.maximum(np.ceil(gaps / float(cd) * (1 - 1e-5)), 1).astype(np.int32)
        offsets = np.concatenate([[0], np.cumsum(ns)[:-1]]).astype(np.int32)
        n_max = int(ns.max())

        def interval(x, xs):
            t_a, t_b, n, off = xs
            x = lax.fori_loop(0, n_max, lambda k, x: step(x, t_a, t_b, k, n, off), x)
            return x, x

        _, out = lax.scan(interval, x0, (starts, times, jnp.asarray(ns), offsets))
        return flag_nonfinite(out, return_overflow)

    def dyn_interval(carry, xs):
        x, off = carry
        t_a, t_b = xs
        n = jnp.maximum(jnp.ceil((t_b - t_a) / dt * (1 - 1e-5)), 1).astype(jnp.int32)
        x = lax.fori_loop(0, n, lambda k, x: step(x, t_a, t_b, k, n, off), x)
        return (x, off + n), x

    _, out = lax.scan(dyn_interval, (x0, jnp.int32(0)), (starts, times))
    return flag_nonfinite(out, return_overflow)
