"""Pseudo-spectral solvers for 1-D periodic PDEs: Kuramoto-Sivashinsky, viscous Burgers, KdV.

All three equations share the conservative quadratic nonlinearity and differ in a linear
operator that is diagonal in Fourier space,

.. math::

    u_t + \\tfrac12 (u^2)_x = \\mathcal L u, \\qquad
    \\hat{\\mathcal L}(k) = \\begin{cases}
        k^2 - k^4 & \\text{Kuramoto-Sivashinsky } (u_t + u u_x + u_{xx} + u_{xxxx} = 0)\\\\
        -\\nu k^2 & \\text{Burgers } (u_t + u u_x = \\nu u_{xx})\\\\
        i k^3 & \\text{KdV } (u_t + u u_x + u_{xxx} = 0)
    \\end{cases}

on :math:`[0, \\ell)` with :math:`k = 2\\pi m / \\ell`. Space is Fourier-collocation on
``num_points`` equispaced points, the product :math:`u^2` is de-aliased by the 2/3 rule,
and time is the exponential time-differencing Runge-Kutta scheme ETDRK4 of Cox & Matthews
with the coefficients evaluated by contour integrals (Kassam & Trefethen 2005), so the stiff
linear part is integrated exactly and the scheme is fourth order in ``dt``.

Initial conditions are sums of sines with random amplitudes, wavenumbers and phases, as in
the LPSDA benchmark (Brandstetter et al. 2022),

.. math::

    u_0(x) = \\sum_{j=1}^{J} A_j \\sin(2\\pi l_j x / \\ell + \\phi_j), \\quad
    A_j \\sim \\mathcal U(-a, a),\\ l_j \\sim \\mathcal U\\{1..l_{max}\\},\\
    \\phi_j \\sim \\mathcal U(0, 2\\pi).

:func:`burgers_cole_hopf` gives the exact Burgers solution for such initial conditions
(Cole-Hopf transform, evaluated by heat-kernel quadrature in log space); it is the test
oracle of the solver. :func:`make_dataset` returns ``N`` trajectories ``(N, T, X)`` with
their times and grid, generated under ``jit``/``vmap``.

References
----------
S. M. Cox and P. C. Matthews, "Exponential time differencing for stiff systems", J. Comput.
Phys. 176, 2002.
A.-K. Kassam and L. N. Trefethen, "Fourth-order time-stepping for stiff PDEs", SIAM J. Sci.
Comput. 26(4), 2005.
J. Brandstetter, M. Welling and D. E. Worrall, "Lie Point Symmetry Data Augmentation for
Neural PDE Solvers", ICML 2022.
E. Hopf, "The partial differential equation u_t + u u_x = mu u_xx", Comm. Pure Appl. Math. 3,
1950; J. D. Cole, Quart. Appl. Math. 9, 1951.
"""

from __future__ import annotations

import math
import operator
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

Array = jax.Array

__all__ = [
    "DEFAULTS",
    "EQUATIONS",
    "ETDRK4Coefficients",
    "PDEData",
    "SineSeries",
    "burgers_cole_hopf",
    "etdrk4_coefficients",
    "grid",
    "linear_operator",
    "make_dataset",
    "sample_sine_series",
    "sine_series",
    "solve",
    "wavenumbers",
]

EQUATIONS = ("ks", "burgers", "kdv")

#: Default configuration per equation: domain length, grid, viscosity, solver step, solver
#: steps per saved snapshot, snapshots (including ``t = 0``). KS and KdV follow the domain
#: lengths of the LPSDA data; Burgers is on :math:`[0, 2\pi)` with a resolved shock width.
DEFAULTS: dict[str, dict[str, float | int]] = {
    "ks": dict(
        length=64.0, num_points=128, viscosity=0.0, dt=0.25, save_every=2, num_timesteps=101
    ),
    "burgers": dict(
        length=2 * math.pi, num_points=128, viscosity=0.1, dt=0.01, save_every=10, num_timesteps=51
    ),
    "kdv": dict(
        length=128.0, num_points=128, viscosity=0.0, dt=0.05, save_every=20, num_timesteps=101
    ),
}


class SineSeries(NamedTuple):
    """A sum of sines :math:`\\sum_j A_j \\sin(2\\pi l_j x/\\ell + \\phi_j)`; leaves (..., J)."""

    amplitudes: Array
    wavenumbers: Array
    phases: Array


class ETDRK4Coefficients(NamedTuple):
    """Diagonal ETDRK4 coefficients, each of shape (num_points // 2 + 1,), complex."""

    e: Array
    e2: Array
    q: Array
    f1: Array
    f2: Array
    f3: Array


class PDEData(NamedTuple):
    """Trajectories of one equation on a periodic grid.

    Attributes
    ----------
    u : Array, shape (num_trajectories, num_timesteps, num_points)
    times : Array, shape (num_timesteps,)
        Snapshot times, starting at 0.
    x : Array, shape (num_points,)
        Grid points :math:`j \\ell / X`.
    equation : str
    length : float
    viscosity : float
    initial_conditions : SineSeries
        The sampled initial conditions, leaves of shape (num_trajectories, num_modes).
    """

    u: Array
    times: Array
    x: Array
    equation: str
    length: float
    viscosity: float
    initial_conditions: SineSeries


# ----------------------------------------------------------------------------- checks


def _check_int(name, value, minimum=1):
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    try:
        out = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if out < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return out


def _check_positive(name, value, allow_zero=False):
    try:
        out = float(value)
    except (TypeError, jax.errors.ConcretizationTypeError):
        raise TypeError(f"{name} must be a concrete float, got {value!r}") from None
    ok = out >= 0 if allow_zero else out > 0
    if not (math.isfinite(out) and ok):
        expected = "a finite float >= 0" if allow_zero else "a finite float > 0"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return out


def _check_equation(equation):
    if equation not in EQUATIONS:
        raise ValueError(f"equation must be one of {EQUATIONS}, got {equation!r}")
    return equation


def _check_num_points(num_points):
    num_points = _check_int("num_points", num_points, 4)
    if num_points % 2:
        raise ValueError(f"num_points must be even, got {num_points}")
    return num_points


# ----------------------------------------------------------------------------- spectral


def grid(num_points: int, length: float) -> np.ndarray:
    """Equispaced periodic grid :math:`x_j = j\\ell/X`, shape (num_points,)."""
    num_points = _check_num_points(num_points)
    return np.arange(num_points) * (_check_positive("length", length) / num_points)


def wavenumbers(num_points: int, length: float) -> np.ndarray:
    """Angular wavenumbers :math:`2\\pi m/\\ell` of ``rfft``, shape (num_points // 2 + 1,)."""
    num_points = _check_num_points(num_points)
    return 2 * np.pi / _check_positive("length", length) * np.arange(num_points // 2 + 1)


def linear_operator(equation: str, k: ArrayLike, viscosity: float = 0.0) -> np.ndarray:
    """Fourier symbol :math:`\\hat{\\mathcal L}(k)` of the linear part (see the module doc).

    Parameters
    ----------
    equation : {"ks", "burgers", "kdv"}
    k : array, shape (K,)
        Angular wavenumbers.
    viscosity : float
        :math:`\\nu` (Burgers only).

    Returns
    -------
    np.ndarray, shape (K,), complex128
    """
    k = np.asarray(k, np.float64)
    equation = _check_equation(equation)
    if equation == "ks":
        return (k**2 - k**4).astype(np.complex128)
    if equation == "burgers":
        return (-_check_positive("viscosity", viscosity) * k**2).astype(np.complex128)
    return 1j * k**3


def etdrk4_coefficients(linear: ArrayLike, dt: float, num_contour: int = 64) -> ETDRK4Coefficients:
    """ETDRK4 coefficients for a diagonal linear operator, by contour integrals.

    The functions :math:`\\varphi(z)` in the ETDRK4 update suffer cancellation near
    :math:`z = 0`; following Kassam & Trefethen (2005) each is evaluated as the mean of its
    values on ``num_contour`` points of the unit circle centred at :math:`z = h\\hat{\\mathcal
    L}`, which is exact for these entire functions up to an exponentially small error.

    .. math::

        Q = h\\,\\overline{\\frac{e^{z/2} - 1}{z}}, \\quad
        f_1 = h\\,\\overline{\\frac{-4 - z + e^z(4 - 3z + z^2)}{z^3}}, \\quad
        f_2 = h\\,\\overline{\\frac{2 + z + e^z(z - 2)}{z^3}}, \\quad
        f_3 = h\\,\\overline{\\frac{-4 - 3z - z^2 + e^z(4 - z)}{z^3}}.

    Parameters
    ----------
    linear : array, shape (K,)
        :math:`\\hat{\\mathcal L}`, real or complex.
    dt : float
        Time step :math:`h`.
    num_contour : int
        Points on the contour.

    Returns
    -------
    ETDRK4Coefficients
        ``e = exp(h L)``, ``e2 = exp(h L / 2)``, ``q``, ``f1``, ``f2``, ``f3``; complex128
        NumPy arrays of shape (K,).
    """
    dt = _check_positive("dt", dt)
    num_contour = _check_int("num_contour", num_contour, 8)
    lin = np.asarray(linear, np.complex128)
    roots = np.exp(2j * np.pi * (np.arange(1, num_contour + 1) - 0.5) / num_contour)
    z = dt * lin[:, None] + roots[None, :]
    ez = np.exp(z)
    q = dt * np.mean((np.exp(z / 2) - 1) / z, axis=1)
    f1 = dt * np.mean((-4 - z + ez * (4 - 3 * z + z**2)) / z**3, axis=1)
    f2 = dt * np.mean((2 + z + ez * (z - 2)) / z**3, axis=1)
    f3 = dt * np.mean((-4 - 3 * z - z**2 + ez * (4 - z)) / z**3, axis=1)
    return ETDRK4Coefficients(np.exp(dt * lin), np.exp(dt * lin / 2), q, f1, f2, f3)


def _dealias_mask(num_points):
    m = np.arange(num_points // 2 + 1)
    return (m <= num_points // 3) & (m < num_points // 2)


def _nonlinear(v, ik_half, mask, num_points):
    """:math:`-\\tfrac12 i k\\, \\widehat{u^2}` with the 2/3-rule mask, ``v`` = rfft(u)."""
    u = jnp.fft.irfft(v, n=num_points, axis=-1)
    return ik_half * jnp.fft.rfft(u * u, axis=-1) * mask


@partial(
    jax.jit,
    static_argnames=(
        "equation",
        "dt",
        "num_timesteps",
        "length",
        "viscosity",
        "save_every",
        "burn_in",
    ),
)
def _solve(u0, equation, dt, num_timesteps, length, viscosity, save_every, burn_in=0):
    num_points = u0.shape[-1]
    real = u0.dtype
    cdtype = jnp.result_type(real, jnp.complex64)
    k = wavenumbers(num_points, length)
    coeffs = etdrk4_coefficients(linear_operator(equation, k, viscosity), dt)
    e, e2, q, f1, f2, f3 = (jnp.asarray(c, cdtype) for c in coeffs)
    mask_np = _dealias_mask(num_points)
    mask = jnp.asarray(mask_np, real)
    ik_half = jnp.asarray(-0.5j * k, cdtype)

    def nl(v):
        return _nonlinear(v, ik_half, mask, num_points)

    def step(v, _):
        nv = nl(v)
        a = e2 * v + q * nv
        na = nl(a)
        b = e2 * v + q * na
        nb = nl(b)
        c = e2 * a + q * (2 * nb - nv)
        nc = nl(c)
        return e * v + nv * f1 + 2 * (na + nb) * f2 + nc * f3, None

    def snapshot(v, _):
        v, _ = lax.scan(step, v, None, length=save_every)
        return v, jnp.fft.irfft(v, n=num_points, axis=-1)

    v0 = jnp.fft.rfft(u0, axis=-1) * mask
    if burn_in:
        v0, _ = lax.scan(step, v0, None, length=burn_in * save_every)
    _, us = lax.scan(snapshot, v0, None, length=num_timesteps - 1)
    first = jnp.fft.irfft(v0, n=num_points, axis=-1)
    return jnp.concatenate([first[None], us], axis=0)


def solve(
    equation: str,
    u0: ArrayLike,
    *,
    dt: float,
    num_timesteps: int,
    length: float,
    viscosity: float = 0.0,
    save_every: int = 1,
    burn_in: int = 0,
) -> Array:
    """Integrate one equation from ``u0`` with Fourier collocation and ETDRK4.

    Parameters
    ----------
    equation : {"ks", "burgers", "kdv"}
    u0 : array, shape (num_points,)
        Initial field on :func:`grid`; ``num_points`` even. Batch with ``jax.vmap``.
    dt : float
        Solver step.
    num_timesteps : int
        Snapshots returned, the first at ``t = 0``.
    length : float
        Period :math:`\\ell`.
    viscosity : float
        :math:`\\nu` (Burgers only, > 0).
    save_every : int
        Solver steps between snapshots; snapshot ``n`` is at
        ``t = (burn_in + n) * save_every * dt``.
    burn_in : int
        Snapshot intervals integrated and discarded before the first returned snapshot
        (e.g. to skip the transient of KS from a smooth initial condition).

    Returns
    -------
    Array, shape (num_timesteps, num_points)
        The solution; without burn-in the first row is the de-aliased ``u0`` (equal to
        ``u0`` when it has no modes above ``num_points // 3``). Float32 unless ``u0`` is float64.
    """
    equation = _check_equation(equation)
    u0 = jnp.asarray(u0)
    if u0.ndim != 1:
        raise ValueError(f"u0 must have shape (num_points,), got {u0.shape}; vmap for batches")
    _check_num_points(u0.shape[0])
    if not jnp.issubdtype(u0.dtype, jnp.floating):
        u0 = u0.astype(jnp.result_type(float))
    viscosity = _check_positive("viscosity", viscosity, allow_zero=equation != "burgers")
    return _solve(
        u0,
        equation,
        _check_positive("dt", dt),
        _check_int("num_timesteps", num_timesteps, 1),
        _check_positive("length", length),
        viscosity,
        _check_int("save_every", save_every),
        _check_int("burn_in", burn_in, 0),
    )


# ----------------------------------------------------------------------------- initial conditions


def sample_sine_series(
    rng_key: Array,
    *,
    num_modes: int = 5,
    max_wavenumber: int = 3,
    amplitude: float = 0.5,
) -> SineSeries:
    """Random LPSDA initial condition: amplitudes, integer wavenumbers and phases.

    Parameters
    ----------
    rng_key : PRNGKey
    num_modes : int
        :math:`J`.
    max_wavenumber : int
        :math:`l_j \\in \\{1, ..., l_{max}\\}` (uniform).
    amplitude : float
        :math:`A_j \\sim \\mathcal U(-a, a)`.

    Returns
    -------
    SineSeries
        Leaves of shape (num_modes,); ``vmap`` over keys for many.
    """
    num_modes = _check_int("num_modes", num_modes)
    max_wavenumber = _check_int("max_wavenumber", max_wavenumber)
    amplitude = _check_positive("amplitude", amplitude)
    k1, k2, k3 = jax.random.split(rng_key, 3)
    return SineSeries(
        amplitudes=jax.random.uniform(k1, (num_modes,), minval=-amplitude, maxval=amplitude),
        wavenumbers=jax.random.randint(k2, (num_modes,), 1, max_wavenumber + 1),
        phases=jax.random.uniform(k3, (num_modes,), minval=0.0, maxval=2 * jnp.pi),
    )


def sine_series(series: SineSeries, x: ArrayLike, length: float) -> Array:
    """Evaluate a :class:`SineSeries` at points ``x`` of shape (X,) -> (X,)."""
    x = jnp.asarray(x)
    arg = 2 * jnp.pi * series.wavenumbers[:, None] * x[None, :] / length + series.phases[:, None]
    return jnp.sum(series.amplitudes[:, None] * jnp.sin(arg), axis=0)


def burgers_cole_hopf(
    series: SineSeries,
    x: ArrayLike,
    times: ArrayLike,
    *,
    length: float,
    viscosity: float,
    num_quadrature: int = 4096,
) -> np.ndarray:
    """Exact viscous-Burgers solution from a sum-of-sines initial condition (Cole-Hopf).

    With :math:`u = -2\\nu\\,\\partial_x \\log\\varphi` Burgers becomes the heat equation
    :math:`\\varphi_t = \\nu\\varphi_{xx}`, :math:`\\log\\varphi_0(y) = \\frac1{2\\nu}\\sum_j
    A_j \\frac{\\ell}{2\\pi l_j}\\cos(2\\pi l_j y/\\ell + \\phi_j)`, and

    .. math::

        u(x, t) = \\frac{\\sum_{y, n} \\frac{x - y - n\\ell}{t}\\,
            e^{\\log\\varphi_0(y) - (x - y - n\\ell)^2/(4\\nu t)}}
            {\\sum_{y, n} e^{\\log\\varphi_0(y) - (x - y - n\\ell)^2/(4\\nu t)}},

    a softmax-weighted mean over a periodic trapezoidal grid of ``num_quadrature`` points
    ``y`` and the periodic images ``n`` (spectrally accurate for a smooth periodic integrand,
    and free of overflow however small :math:`\\nu`).

    Parameters
    ----------
    series : SineSeries
        The initial condition, leaves of shape (J,); integer wavenumbers (mean-zero).
    x : array, shape (X,)
        Points at which to evaluate.
    times : array, shape (T,)
        Times :math:`\\ge 0`.
    length, viscosity : float
        :math:`\\ell` and :math:`\\nu > 0`.
    num_quadrature : int
        Quadrature points per period; the heat kernel's width
        :math:`\\sqrt{2\\nu t}` must span several of them (raises otherwise).

    Returns
    -------
    np.ndarray, shape (T, X), float64
    """
    length = _check_positive("length", length)
    viscosity = _check_positive("viscosity", viscosity)
    num_quadrature = _check_int("num_quadrature", num_quadrature, 16)
    amps, ls, phases = (np.asarray(a, np.float64) for a in series)
    x = np.asarray(x, np.float64)
    times = np.asarray(times, np.float64)
    if np.any(times < 0):
        raise ValueError(f"times must be >= 0, got {times}")
    y = np.arange(num_quadrature) * (length / num_quadrature)
    log_phi0 = np.sum(
        (amps * length / (2 * np.pi * ls))[:, None]
        * np.cos(2 * np.pi * ls[:, None] * y[None, :] / length + phases[:, None]),
        axis=0,
    ) / (2 * viscosity)
    out = np.empty((times.size, x.size))
    for i, t in enumerate(times):
        if t == 0:
            u0 = np.sum(
                amps[:, None]
                * np.sin(2 * np.pi * ls[:, None] * x[None, :] / length + phases[:, None]),
                axis=0,
            )
            out[i] = u0
            continue
        width = math.sqrt(2 * viscosity * t)
        if width < 4 * length / num_quadrature:
            raise ValueError(
                f"num_quadrature={num_quadrature} is too coarse for t={t}: the heat kernel's "
                f"width {width:.3g} must exceed 4 grid spacings; raise num_quadrature"
            )
        num_images = int(math.ceil(10 * width / length)) + 1
        shifts = length * np.arange(-num_images, num_images + 1)
        d = x[:, None, None] - y[None, :, None] - shifts[None, None, :]  # (X, Y, images)
        logw = log_phi0[None, :, None] - d**2 / (4 * viscosity * t)
        logw -= logw.max(axis=(1, 2), keepdims=True)
        w = np.exp(logw)
        out[i] = np.sum(w * d, axis=(1, 2)) / (t * np.sum(w, axis=(1, 2)))
    return out


# ----------------------------------------------------------------------------- datasets


@partial(jax.jit, static_argnames=("ic", "solver"))
def _generate(keys, x, ic, solver):
    ic, solver = dict(ic), dict(solver)
    series = jax.vmap(lambda k: sample_sine_series(k, **ic))(keys)
    u0 = jax.vmap(lambda s: sine_series(s, x, solver["length"]))(series).astype(x.dtype)
    return series, jax.vmap(lambda v: _solve(v, **solver))(u0)


def make_dataset(
    rng_key: Array,
    equation: str,
    num_trajectories: int,
    *,
    num_points: int | None = None,
    length: float | None = None,
    viscosity: float | None = None,
    dt: float | None = None,
    save_every: int | None = None,
    num_timesteps: int | None = None,
    burn_in: int = 0,
    num_modes: int = 5,
    max_wavenumber: int = 3,
    amplitude: float = 0.5,
    dtype=jnp.float32,
) -> PDEData:
    """``num_trajectories`` solutions from random sum-of-sines initial conditions.

    Parameters
    ----------
    rng_key : PRNGKey
    equation : {"ks", "burgers", "kdv"}
    num_trajectories : int
    num_points, length, viscosity, dt, save_every, num_timesteps : optional
        Override :data:`DEFAULTS` for ``equation`` (see :func:`solve`).
    burn_in : int
        Snapshot intervals simulated and dropped before the first snapshot (see
        :func:`solve`); ``times`` then starts at ``burn_in * save_every * dt``.
    num_modes, max_wavenumber, amplitude
        Initial-condition distribution (see :func:`sample_sine_series`).
    dtype : dtype
        Solver precision (float32 by default; float64 needs ``jax_enable_x64``).

    Returns
    -------
    PDEData
        ``u`` of shape (num_trajectories, num_timesteps, num_points).

    Raises
    ------
    FloatingPointError
        If a trajectory is not finite (the step ``dt`` is too large).
    """
    equation = _check_equation(equation)
    cfg = dict(DEFAULTS[equation])
    given = {
        "num_points": num_points,
        "length": length,
        "viscosity": viscosity,
        "dt": dt,
        "save_every": save_every,
        "num_timesteps": num_timesteps,
    }
    cfg.update({name: value for name, value in given.items() if value is not None})
    num_trajectories = _check_int("num_trajectories", num_trajectories)
    x = grid(cfg["num_points"], cfg["length"])
    ic = dict(
        num_modes=_check_int("num_modes", num_modes),
        max_wavenumber=_check_int("max_wavenumber", max_wavenumber),
        amplitude=_check_positive("amplitude", amplitude),
    )
    solver = dict(
        equation=equation,
        dt=_check_positive("dt", cfg["dt"]),
        num_timesteps=_check_int("num_timesteps", cfg["num_timesteps"]),
        length=_check_positive("length", cfg["length"]),
        viscosity=_check_positive("viscosity", cfg["viscosity"], allow_zero=equation != "burgers"),
        save_every=_check_int("save_every", cfg["save_every"]),
        burn_in=_check_int("burn_in", burn_in, 0),
    )
    keys = jax.random.split(rng_key, num_trajectories)
    series, u = _generate(keys, jnp.asarray(x, dtype), tuple(ic.items()), tuple(solver.items()))
    if not bool(jnp.all(jnp.isfinite(u))):
        raise FloatingPointError(
            f"some {equation} trajectories are not finite; reduce dt={cfg['dt']}"
        )
    times = (burn_in + np.arange(cfg["num_timesteps"])) * cfg["dt"] * cfg["save_every"]
    return PDEData(
        u=u,
        times=times,
        x=x,
        equation=equation,
        length=float(cfg["length"]),
        viscosity=float(cfg["viscosity"]),
        initial_conditions=series,
    )
