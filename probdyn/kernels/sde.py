"""Fixed-step SDE solvers as pure-JAX transition kernels; no NumPyro here.

An SDE :math:`dY = f(t, Y)\\,dt + g(t, Y) \\circ_{\\text{ito/strat}} dW` is an :class:`SDE`:
``drift(t, y, params) -> (D,)`` and ``diffusion(t, y, params)`` returning

============  =====================  ================================================
``noise``     diffusion output       noise term, :math:`W` of dimension
============  =====================  ================================================
"diagonal"    (D,)                   ``g * dW``, D independent Brownian motions
"scalar"      ()                     ``g * dW``, D independent motions, isotropic g
"general"     (D, M)                 ``g @ dW``, M independent Brownian motions
============  =====================  ================================================

Configuration (functions, noise type, solver, substeps) is static; ``params`` is any
pytree. Noise is always passed as *standard-normal* draws ``noise``; a step of size ``dt``
uses the Brownian increment :math:`\\Delta W = \\sqrt{dt}\\, z` (the exact and BAOAB steps
use their own standard normals, see below).

Solvers (``SOLVERS``; each declares ``strong_order``/``weak_order``):

``"euler"``
    Euler-Maruyama, :math:`y' = y + f\\,dt + g\\,\\Delta W`. Itô; strong 0.5, weak 1.
``"milstein"``
    Itô or Stratonovich Milstein for diagonal noise,
    :math:`y'_i = y_i + f_i dt + g_i \\Delta W_i + \\tfrac12 (J_g g)_i (\\Delta W_i^2 - dt)`
    (no ``- dt`` for Stratonovich), with :math:`J_g g` one ``jax.linearize`` of the diffusion
    applied to g. For diagonal noise (:math:`g_i` depends on y only through :math:`y_i`)
    :math:`(J_g g)_i = g_i \\partial_i g_i` and the scheme has strong order 1; if
    :math:`g_i` depends on other components, the term is the directional derivative and the
    order drops to 0.5.
``"heun"``
    Stochastic Heun (predictor-corrector trapezoid) for Stratonovich SDEs, any noise; weak
    order 1, strong order 1 for commutative noise (e.g. D = 1, additive, diagonal), 0.5 in
    general.
``"exact"``
    Exact transition of a linear time-invariant SDE :math:`dX = (AX + b)dt + L dW`
    (:func:`lti_sde`): :math:`X' = \\Phi X + c + \\mathrm{chol}(Q) z` with ``z`` (D,) and
    :math:`(\\Phi, c, Q)` from :func:`lti_transition` (Van Loan, 1978). OU is the case
    :math:`A = -\\theta`, :math:`b = \\theta\\mu`, :math:`L = \\sigma`.
``"baoab"``
    The BAOAB splitting of Leimkuhler & Matthews (2013) for underdamped Langevin dynamics
    (:func:`langevin_sde`) with the exact Ornstein-Uhlenbeck O-step; ``z`` (d,) for the
    velocity. For a harmonic potential its position marginal is exact at every stable step
    size :math:`h < 2/\\sqrt{k}`; two gradient evaluations per step.

:func:`simulate` / :func:`simulate_from_noise` run one ``lax.scan`` (nested when only
observation times are saved) over ``(T-1) * substeps`` equal sub-steps between the
observation ``times``; :func:`path_log_prob` sums the Euler-Maruyama (or exact linear)
Gaussian transition densities of a path on a grid.

References
----------
P. E. Kloeden and E. Platen, "Numerical Solution of Stochastic Differential Equations",
Springer, 1992.
C. F. Van Loan, "Computing integrals involving the matrix exponential", IEEE Trans.
Automatic Control 23(3), 1978.
B. Leimkuhler and C. Matthews, "Rational construction of stochastic numerical methods for
molecular sampling", Applied Mathematics Research eXpress 2013(1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from probdyn.kernels._checks import check_substeps as _check_substeps
from probdyn.kernels._checks import check_time_grid as _check_times
from probdyn.kernels._checks import concrete

Array = jax.Array

__all__ = [
    "SDE",
    "SOLVERS",
    "Solver",
    "langevin_sde",
    "lti_sde",
    "lti_transition",
    "noise_shape",
    "path_log_prob",
    "refine_times",
    "simulate",
    "simulate_from_noise",
    "stationary_covariance",
    "step",
    "transition_log_prob",
]

_NOISE = ("diagonal", "scalar", "general")
_SDE_TYPES = ("ito", "stratonovich")


@dataclasses.dataclass(frozen=True)
class SDE:
    """A stochastic differential equation, static configuration (hashable).

    Parameters
    ----------
    drift : callable
        ``drift(t, y, params) -> (D,)`` for the state ``y`` (D,).
    diffusion : callable
        ``diffusion(t, y, params)`` returning (D,) for ``noise="diagonal"``, a scalar () for
        ``"scalar"`` and (D, M) for ``"general"``.
    noise : {"diagonal", "scalar", "general"}
    sde_type : {"ito", "stratonovich"}
        How the noise term is read; Euler-Maruyama and the densities need "ito", Heun
        needs "stratonovich", Milstein handles both.
    kind : {"general", "linear", "langevin"}
        Set by :func:`lti_sde` and :func:`langevin_sde`; enables the "exact" and "baoab"
        solvers.
    grad_potential : callable, optional
        ``grad_potential(q, params) -> (d,)`` for ``kind="langevin"``.
    """

    drift: Callable
    diffusion: Callable
    noise: str = "diagonal"
    sde_type: str = "ito"
    kind: str = "general"
    grad_potential: Callable | None = None

    def __post_init__(self):
        if not callable(self.drift):
            raise TypeError(f"drift must be callable drift(t, y, params); got {self.drift!r}")
        if not callable(self.diffusion):
            raise TypeError(
                f"diffusion must be callable diffusion(t, y, params); got {self.diffusion!r}"
            )
        if self.noise not in _NOISE:
            raise ValueError(f"noise must be one of {_NOISE}; got {self.noise!r}")
        if self.sde_type not in _SDE_TYPES:
            raise ValueError(f"sde_type must be one of {_SDE_TYPES}; got {self.sde_type!r}")
        if self.kind not in ("general", "linear", "langevin"):
            raise ValueError(f"kind must be 'general', 'linear' or 'langevin'; got {self.kind!r}")


# --------------------------------------------------------------------------------------
# linear time-invariant SDEs
# --------------------------------------------------------------------------------------


def _lti_drift(t, y, p):
    return p["A"] @ y + p["b"]


def _lti_diffusion(t, y, p):
    return p["L"]


def lti_sde() -> SDE:
    """The linear SDE :math:`dX = (AX + b)\\,dt + L\\,dW` with general noise.

    ``params`` is a dict with ``"A"`` (D, D), ``"b"`` (D,) and ``"L"`` (D, M).
    Supports every solver that takes general Itô noise, and ``"exact"``.
    """
    return SDE(_lti_drift, _lti_diffusion, noise="general", kind="linear")


def lti_transition(A: ArrayLike, b: ArrayLike, L: ArrayLike, dt: ArrayLike):
    """Exact transition of :math:`dX = (AX + b)dt + L dW` over a step ``dt``.

    .. math::

        X_{t+dt} \\mid X_t \\sim \\mathcal N(\\Phi X_t + c, Q), \\quad \\Phi = e^{A dt},\\;
        c = \\int_0^{dt} e^{As} b\\, ds,\\; Q = \\int_0^{dt} e^{As} L L^\\top e^{A^\\top s} ds,

    all from one exponential (Van Loan, 1978) with the augmented drift
    :math:`\\tilde A = \\begin{pmatrix}A & b\\\\ 0 & 0\\end{pmatrix}` and noise
    :math:`\\tilde L = (L; 0)`: :math:`F = \\exp\\begin{pmatrix}-\\tilde A & \\tilde L
    \\tilde L^\\top\\\\ 0 & \\tilde A^\\top\\end{pmatrix} dt` gives
    :math:`e^{\\tilde A dt} = F_{22}^\\top = \\begin{pmatrix}\\Phi & c\\\\ 0 & 1
    \\end{pmatrix}` and :math:`Q` as the leading block of :math:`F_{22}^\\top F_{12}`. That form
    cancels digits when :math:`dt\\,\\|A\\|` is large (the blocks grow like
    :math:`e^{|\\lambda| dt}`); for a stable A prefer
    :math:`Q = P_\\infty - \\Phi P_\\infty \\Phi^\\top` with :func:`stationary_covariance`.

    Parameters
    ----------
    A : ArrayLike, shape (D, D)
    b : ArrayLike, shape (D,)
    L : ArrayLike, shape (D, M)
    dt : ArrayLike, scalar
        Positive step.

    Returns
    -------
    Phi : Array, shape (D, D)
    c : Array, shape (D,)
    Q : Array, shape (D, D)
        Symmetrised.
    """
    dtc = concrete(dt)
    if dtc is not None and not np.all(dtc > 0):
        raise ValueError(f"dt must be positive; got {dtc}")
    return _lti_transition(*_check_lti(A, b, L), dt)


@jax.jit
def _lti_transition(A, b, L, dt):
    # one exponential: Van Loan on the augmented drift [[A, b], [0, 0]] and noise [L; 0]
    D = A.shape[0]
    Aa = jnp.zeros((D + 1, D + 1), A.dtype).at[:D, :D].set(A).at[:D, D].set(b)
    LL = jnp.zeros((D + 1, D + 1), A.dtype).at[:D, :D].set(L @ L.T)
    E = jax.scipy.linalg.expm(jnp.block([[-Aa, LL], [jnp.zeros_like(Aa), Aa.T]]) * dt)
    F22t = E[D + 1 :, D + 1 :].T  # expm(Aa dt) = [[Phi, c], [0, 1]]
    Q = (F22t @ E[: D + 1, D + 1 :])[:D, :D]
    return F22t[:D, :D], F22t[:D, D], 0.5 * (Q + Q.T)


def stationary_covariance(A: ArrayLike, L: ArrayLike) -> Array:
    """Solution P (D, D) of the Lyapunov equation :math:`AP + PA^\\top + LL^\\top = 0`.

    Solved as the linear system :math:`(I \\otimes A + A \\otimes I)\\,\\mathrm{vec}\\,P =
    -\\mathrm{vec}\\,LL^\\top` (:math:`D^2` unknowns: meant for small state dimensions).
    A must be stable (eigenvalues with negative real part); differentiable.
    """
    A, L = jnp.asarray(A), jnp.asarray(L)
    D = A.shape[0]
    eye = jnp.eye(D, dtype=A.dtype)
    K = jnp.kron(eye, A) + jnp.kron(A, eye)
    P = jnp.linalg.solve(K, -(L @ L.T).reshape(-1)).reshape(D, D)
    return 0.5 * (P + P.T)


def _check_lti(A, b, L):
    A, b, L = jnp.asarray(A), jnp.asarray(b), jnp.asarray(L)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must have shape (D, D); got {A.shape}")
    D = A.shape[0]
    if b.shape != (D,):
        raise ValueError(f"b must have shape (D,) = ({D},); got {b.shape}")
    if L.ndim != 2 or L.shape[0] != D:
        raise ValueError(f"L must have shape (D, M) with D={D}; got {L.shape}")
    dtype = jnp.result_type(A, b, L, float)
    return A.astype(dtype), b.astype(dtype), L.astype(dtype)


def _chol_psd(Q):
    """Cholesky factor of a PSD matrix with a relative jitter of ``eps * max diag``."""
    jitter = jnp.finfo(Q.dtype).eps * jnp.max(jnp.abs(jnp.diagonal(Q)))
    return jnp.linalg.cholesky(Q + jitter * jnp.eye(Q.shape[0], dtype=Q.dtype))


# --------------------------------------------------------------------------------------
# underdamped Langevin
# --------------------------------------------------------------------------------------


def langevin_sde(grad_potential: Callable) -> SDE:
    """Underdamped Langevin dynamics with unit mass, state ``y = concat(q, v)`` (2d,).

    .. math::

        dq = v\\,dt, \\quad dv = -\\nabla U(q)\\,dt - \\gamma v\\,dt
            + \\sqrt{2\\gamma/\\beta}\\, dW .

    Parameters
    ----------
    grad_potential : callable
        ``grad_potential(q, params) -> (d,)``, the gradient of U (e.g. ``jax.grad(U)``).
        ``params`` is the whole params pytree, which must be a dict holding ``"gamma"``
        (friction) and ``"beta"`` (inverse temperature).

    Returns
    -------
    SDE
        Diagonal Itô noise (zero on q); solvers "euler", "milstein", "baoab".
    """
    if not callable(grad_potential):
        raise TypeError(f"grad_potential must be callable; got {grad_potential!r}")
    return SDE(
        _LangevinDrift(grad_potential),
        _langevin_diffusion,
        noise="diagonal",
        kind="langevin",
        grad_potential=grad_potential,
    )


@dataclasses.dataclass(frozen=True)
class _LangevinDrift:
    grad_potential: Callable

    def __call__(self, t, y, p):
        q, v = jnp.split(y, 2)
        return jnp.concatenate([v, -self.grad_potential(q, p) - p["gamma"] * v])


def _langevin_diffusion(t, y, p):
    d = y.shape[0] // 2
    s = jnp.sqrt(2.0 * p["gamma"] / p["beta"])
    return jnp.concatenate([jnp.zeros(d, y.dtype), jnp.full((d,), s, y.dtype)])


# --------------------------------------------------------------------------------------
# one step of each solver: advance(sde, params, t, y, dt, sqrt_dt, z, extra)
# --------------------------------------------------------------------------------------


def _noise_term(noise, g, dW):
    return g @ dW if noise == "general" else g * dW


def _euler(sde, p, t, y, dt, sdt, z, extra):
    # (g * sqrt(dt)) * z, not g * (sqrt(dt) * z): for a state-independent g the scaling is
    # then per step, not per element of a vmapped batch of paths
    return y + sde.drift(t, y, p) * dt + _noise_term(sde.noise, sde.diffusion(t, y, p) * sdt, z)


def _milstein(sde, p, t, y, dt, sdt, z, extra):
    dW = sdt * z
    g, jvp = jax.linearize(lambda x: sde.diffusion(t, x, p), y)
    Jg = jvp(g)
    dW2 = dW * dW if sde.sde_type == "stratonovich" else dW * dW - dt
    return y + sde.drift(t, y, p) * dt + g * dW + 0.5 * Jg * dW2


def _heun(sde, p, t, y, dt, sdt, z, extra):
    dW = sdt * z
    f0 = sde.drift(t, y, p)
    n0 = _noise_term(sde.noise, sde.diffusion(t, y, p), dW)
    y1 = y + f0 * dt + n0
    f1 = sde.drift(t + dt, y1, p)
    n1 = _noise_term(sde.noise, sde.diffusion(t + dt, y1, p), dW)
    return y + 0.5 * (f0 + f1) * dt + 0.5 * (n0 + n1)


@jax.jit
def _exact_prepare(p, dts):
    A, b, L = _check_lti(p["A"], p["b"], p["L"])
    Phi, c, Q = jax.vmap(lambda dt: _lti_transition(A, b, L, dt))(dts)
    return Phi, c, jax.vmap(_chol_psd)(Q)


def _exact(sde, p, t, y, dt, sdt, z, extra):
    Phi, c, C = extra
    return Phi @ y + c + C @ z


def _baoab(sde, p, t, y, dt, sdt, z, extra):
    q, v = jnp.split(y, 2)
    gam, beta = p["gamma"], p["beta"]
    a = jnp.exp(-gam * dt)
    v = v - 0.5 * dt * sde.grad_potential(q, p)
    q = q + 0.5 * dt * v
    v = a * v + jnp.sqrt((1.0 - a * a) / beta) * z
    q = q + 0.5 * dt * v
    v = v - 0.5 * dt * sde.grad_potential(q, p)
    return jnp.concatenate([q, v])


@dataclasses.dataclass(frozen=True)
class Solver:
    """A fixed-step solver: its step, its orders and what it applies to.

    Attributes
    ----------
    name : str
    strong_order, weak_order : float
        Convergence orders for the SDEs the solver applies to (``inf`` for exact steps).
    sde_types, noise_types, kinds : tuple of str
        Admissible :class:`SDE` fields.
    """

    name: str
    strong_order: float
    weak_order: float
    sde_types: tuple
    noise_types: tuple
    kinds: tuple
    advance: Callable
    prepare: Callable | None = None


_ALL_KINDS = ("general", "linear", "langevin")
SOLVERS = {
    "euler": Solver("euler", 0.5, 1.0, ("ito",), _NOISE, _ALL_KINDS, _euler),
    "milstein": Solver("milstein", 1.0, 1.0, _SDE_TYPES, ("diagonal",), _ALL_KINDS, _milstein),
    "heun": Solver("heun", 0.5, 1.0, ("stratonovich",), _NOISE, ("general",), _heun),
    "exact": Solver(
        "exact", float("inf"), float("inf"), ("ito",), ("general",), ("linear",), _exact
    ),
    "baoab": Solver("baoab", 1.0, 2.0, ("ito",), ("diagonal",), ("langevin",), _baoab),
}
SOLVERS["exact"] = dataclasses.replace(SOLVERS["exact"], prepare=_exact_prepare)


def _get_solver(solver, sde: SDE) -> Solver:
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be a probdyn.kernels.sde.SDE; got {type(sde).__name__}")
    if isinstance(solver, str):
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {sorted(SOLVERS)}; got {solver!r}")
        solver = SOLVERS[solver]
    if not isinstance(solver, Solver):
        raise TypeError(f"solver must be a name or a Solver; got {type(solver).__name__}")
    for field, allowed in (
        ("sde_type", solver.sde_types),
        ("noise", solver.noise_types),
        ("kind", solver.kinds),
    ):
        value = getattr(sde, field)
        if value not in allowed:
            raise ValueError(
                f"solver={solver.name!r} needs sde.{field} in {allowed}; got {value!r}"
            )
    return solver


def noise_shape(sde: SDE, y0: ArrayLike, params: Any, solver: str | Solver = "euler") -> tuple:
    """Shape of the standard-normal draw one step of ``solver`` consumes.

    (D,) for diagonal/scalar noise and for "exact", (M,) for general noise with a (D, M)
    diffusion, (D/2,) for "baoab".
    """
    solver = _get_solver(solver, sde)
    D = jnp.shape(y0)[-1]
    if solver.name == "exact":
        return (D,)
    if solver.name == "baoab":
        return (D // 2,)
    if sde.noise == "general":
        y = jax.ShapeDtypeStruct((D,), jnp.result_type(y0, float))
        return (jax.eval_shape(sde.diffusion, 0.0, y, params).shape[-1],)
    return (D,)


# --------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------


def _check_sde_shapes(sde, y0, t0, params):
    """Shape-check drift and diffusion at (t0, y0) with ``jax.eval_shape`` (no compute)."""
    y0 = jnp.asarray(y0)
    if y0.ndim != 1:
        raise ValueError(f"y0 must have shape (D,); got {y0.shape}")
    if not jnp.issubdtype(y0.dtype, jnp.floating):
        y0 = y0.astype(jnp.result_type(float))
    D = y0.shape[0]
    if sde.kind == "langevin" and D % 2:
        raise ValueError(f"y0 must be concat(q, v) with an even length for Langevin; got {D}")
    if sde.kind == "linear":
        A, b, L = _check_lti(params["A"], params["b"], params["L"])
        if A.shape[0] != D:
            raise ValueError(
                f"params['A'] must be ({D}, {D}) to match y0 {y0.shape}; got {A.shape}"
            )
    f = jax.eval_shape(sde.drift, t0, y0, params)
    if f.shape != (D,):
        raise ValueError(f"drift must return shape (D,) = ({D},) for y0 {y0.shape}; got {f.shape}")
    g = jax.eval_shape(sde.diffusion, t0, y0, params)
    want = {"diagonal": "(D,)", "scalar": "()", "general": "(D, M)"}[sde.noise]
    ok = {
        "diagonal": g.shape == (D,),
        "scalar": g.shape == (),
        "general": len(g.shape) == 2 and g.shape[0] == D,
    }[sde.noise]
    if not ok:
        raise ValueError(
            f"diffusion must return shape {want} with D={D} for noise={sde.noise!r}; got {g.shape}"
        )
    return y0


def refine_times(times: ArrayLike, substeps: int) -> Array:
    """The grid of ``substeps`` equal sub-steps between consecutive ``times``.

    Parameters
    ----------
    times : ArrayLike, shape (T,)
    substeps : int

    Returns
    -------
    Array, shape ((T-1) * substeps + 1,)
        ``times[i] + k (times[i+1] - times[i]) / substeps``; every ``substeps``-th entry is
        an observation time (exactly).
    """
    times = _check_times(times)
    substeps = _check_substeps(substeps)
    if substeps == 1:
        return times
    frac = jnp.arange(substeps, dtype=times.dtype) / substeps
    inner = times[:-1, None] + jnp.diff(times)[:, None] * frac
    return jnp.concatenate([inner.reshape(-1), times[-1:]])


# --------------------------------------------------------------------------------------
# simulation
# --------------------------------------------------------------------------------------


def step(
    solver: str | Solver,
    sde: SDE,
    t: ArrayLike,
    y: ArrayLike,
    dt: ArrayLike,
    noise: ArrayLike,
    params: Any,
) -> Array:
    """One step of ``solver`` from ``(t, y)`` to ``t + dt``.

    Parameters
    ----------
    solver : str or Solver
        A key of :data:`SOLVERS`.
    sde : SDE
    t : ArrayLike, scalar
    y : ArrayLike, shape (D,)
    dt : ArrayLike, scalar
        Positive step.
    noise : ArrayLike, shape :func:`noise_shape`
        Standard-normal draws; the Brownian increment is ``sqrt(dt) * noise``.
    params : pytree

    Returns
    -------
    Array, shape (D,)
    """
    solver = _get_solver(solver, sde)
    dtc = concrete(dt)
    if dtc is not None and not np.all(dtc > 0):
        raise ValueError(f"dt must be positive; got {dtc}")
    y = jnp.asarray(y)
    extra = None
    if solver.prepare is not None:
        extra = jax.tree.map(lambda x: x[0], solver.prepare(params, jnp.reshape(dt, (1,))))
    return solver.advance(sde, params, t, y, dt, jnp.sqrt(dt), jnp.asarray(noise), extra)


def simulate(
    rng_key: Array,
    sde: SDE,
    y0: ArrayLike,
    times: ArrayLike,
    params: Any,
    *,
    solver: str | Solver = "euler",
    substeps: int = 1,
    save_substeps: bool = False,
    return_overflow: bool = False,
) -> Array | tuple[Array, Array]:
    """Simulate one path observed at ``times``, ``substeps`` solver steps per interval.

    Parameters
    ----------
    rng_key : Array
    sde : SDE
    y0 : ArrayLike, shape (D,)
        State at ``times[0]``.
    times : ArrayLike, shape (T,)
        Strictly increasing, irregular allowed.
    params : pytree
        Passed to ``drift``/``diffusion``.
    solver : str or Solver
        "euler", "milstein", "heun", "exact" or "baoab" (see the module docstring).
    substeps : int
        Equal solver steps per observation interval.
    save_substeps : bool
        Return the sub-step states too.
    return_overflow : bool
        Also return the ``overflow`` flag.

    Returns
    -------
    path : Array, shape (T, D), or ((T-1) * substeps + 1, D) with ``save_substeps``
        Row 0 is ``y0``. Batch over keys/initial states with :func:`jax.vmap`. A path
        that leaves the float range (a drift that blows up, a step too large) is NaN from
        the first non-finite solver step on, never inf or a wrapped-around number.
    overflow : Array of bool, shape ()
        With ``return_overflow=True``: True when that happened.
    """
    solver = _get_solver(solver, sde)
    times = _check_times(times)
    substeps = _check_substeps(substeps)
    y0 = _check_sde_shapes(sde, y0, times[0], params)
    N = (times.shape[0] - 1) * substeps
    dtype = jnp.result_type(y0, times)
    z = jax.random.normal(rng_key, (N,) + noise_shape(sde, y0, params, solver), dtype)
    path, over = _integrate(solver, sde, y0, times, params, z, substeps, save_substeps)
    return (path, over) if return_overflow else path


def simulate_from_noise(
    sde: SDE,
    y0: ArrayLike,
    times: ArrayLike,
    params: Any,
    noise: ArrayLike,
    *,
    solver: str | Solver = "euler",
    substeps: int = 1,
    save_substeps: bool = False,
    return_overflow: bool = False,
) -> Array | tuple[Array, Array]:
    """:func:`simulate` driven by given standard-normal ``noise`` (non-centred form).

    Parameters
    ----------
    noise : ArrayLike, shape ((T-1) * substeps, *noise_shape)
        One standard-normal draw per solver step (:func:`noise_shape`), e.g. ``(N, D)``
        for diagonal noise.

    Other parameters and the return value are those of :func:`simulate`; the result is a
    deterministic, differentiable function of ``(y0, params, noise)``.
    """
    solver = _get_solver(solver, sde)
    times = _check_times(times)
    substeps = _check_substeps(substeps)
    y0 = _check_sde_shapes(sde, y0, times[0], params)
    N = (times.shape[0] - 1) * substeps
    want = (N,) + noise_shape(sde, y0, params, solver)
    noise = jnp.asarray(noise)
    if noise.shape != want:
        raise ValueError(
            f"noise must have shape ((T-1)*substeps, *noise_shape) = {want}; got {noise.shape}"
        )
    path, over = _integrate(solver, sde, y0, times, params, noise, substeps, save_substeps)
    return (path, over) if return_overflow else path


@partial(jax.jit, static_argnames=("solver", "sde", "substeps", "save_substeps"))
def _integrate(solver, sde, y0, times, params, z, substeps, save_substeps):
    grid = refine_times(times, substeps)
    dtype = jnp.result_type(y0, grid, z)
    y0, grid, z = y0.astype(dtype), grid.astype(dtype), z.astype(dtype)
    dts = jnp.diff(grid)
    xs = (grid[:-1], dts, jnp.sqrt(dts), z)
    extra = solver.prepare(params, dts) if solver.prepare is not None else None
    advance = solver.advance

    def body(y, x):
        (t, dt, sdt, zz), e = x
        y = advance(sde, params, t, y, dt, sdt, zz, e)
        # once non-finite, NaN for good (inf - inf and overflow would mix inf, NaN, 0)
        y = jnp.where(jnp.all(jnp.isfinite(y)), y, jnp.nan)
        return y, y

    if save_substeps or substeps == 1:
        _, ys = lax.scan(body, y0, (xs, extra))
    else:
        T1 = times.shape[0] - 1
        blocks = jax.tree.map(lambda a: a.reshape((T1, substeps) + a.shape[1:]), (xs, extra))

        def inner(y, x):
            return body(y, x)[0], None

        def outer(y, x):
            y = lax.scan(inner, y, x)[0]
            return y, y

        _, ys = lax.scan(outer, y0, blocks)
    path = jnp.concatenate([y0[None], ys])
    return path, ~jnp.all(jnp.isfinite(path))


# --------------------------------------------------------------------------------------
# transition densities
# --------------------------------------------------------------------------------------

_LOG_2PI = float(np.log(2 * np.pi))


def _mvn_logpdf_chol(r, C):
    """log N(r; 0, C C^T) for a lower Cholesky factor C (D, D)."""
    w = jax.scipy.linalg.solve_triangular(C, r, lower=True)
    return -0.5 * (w @ w) - jnp.sum(jnp.log(jnp.diagonal(C))) - 0.5 * r.shape[0] * _LOG_2PI


def transition_log_prob(
    sde: SDE, t: ArrayLike, y: ArrayLike, y_next: ArrayLike, dt: ArrayLike, params: Any
) -> Array:
    """Euler-Maruyama Gaussian transition log-density :math:`\\log p(y_{next} \\mid y)`.

    .. math::

        y_{next} \\mid y \\sim \\mathcal N\\big(y + f(t, y)\\,dt,\\; g g^\\top dt\\big)

    with :math:`g g^\\top` = ``diag(g**2)`` (diagonal), ``g**2 I`` (scalar) or ``G @ G.T``
    (general, via a Cholesky factor; it must be positive definite, which needs M >= D and G
    of full row rank, otherwise the result is NaN). A zero diffusion entry gives -inf/NaN.

    Parameters
    ----------
    sde : SDE
        Itô.
    t, dt : ArrayLike, scalars
    y, y_next : ArrayLike, shape (D,)
    params : pytree

    Returns
    -------
    Array, scalar
    """
    r = y_next - y - sde.drift(t, y, params) * dt
    g = sde.diffusion(t, y, params)
    if sde.noise == "general":
        return _mvn_logpdf_chol(r, jnp.linalg.cholesky(g @ g.T * dt))
    var = jnp.broadcast_to(g * g * dt, r.shape)
    return -0.5 * jnp.sum(r * r / var + jnp.log(var) + _LOG_2PI)


def path_log_prob(
    sde: SDE,
    path: ArrayLike,
    times: ArrayLike,
    params: Any,
    *,
    solver: str = "euler",
) -> Array:
    """Sum of transition log-densities of a path on a grid (the initial state excluded).

    Parameters
    ----------
    sde : SDE
    path : ArrayLike, shape (T, D)
        States at ``times`` (for a path with sub-steps pass the refined grid,
        :func:`refine_times`).
    times : ArrayLike, shape (T,)
    params : pytree
    solver : {"euler", "exact"}
        "euler": :func:`transition_log_prob` at every step (vectorised, no scan); "exact":
        the exact Gaussian transitions of a linear SDE (:func:`lti_transition`).

    Returns
    -------
    Array, scalar
    """
    if solver not in ("euler", "exact"):
        raise ValueError(f"solver must be 'euler' or 'exact' for densities; got {solver!r}")
    _get_solver(solver, sde)
    times = _check_times(times)
    path = jnp.asarray(path)
    if path.ndim != 2 or path.shape[0] != times.shape[0]:
        raise ValueError(
            f"path must have shape (T, D) with T={times.shape[0]} (from times); got {path.shape}"
        )
    _check_sde_shapes(sde, path[0], times[0], params)
    return _path_log_prob(sde, path, times, params, solver)


@partial(jax.jit, static_argnames=("sde", "solver"))
def _path_log_prob(sde, path, times, params, solver):
    dts = jnp.diff(times)
    if solver == "exact":
        Phi, c, C = _exact_prepare(params, dts)
        r = path[1:] - jnp.einsum("nij,nj->ni", Phi, path[:-1]) - c
        return jnp.sum(jax.vmap(_mvn_logpdf_chol)(r, C))
    t, y, y1 = times[:-1], path[:-1], path[1:]
    f = jax.vmap(lambda t, y: sde.drift(t, y, params))(t, y)
    g = jax.vmap(lambda t, y: sde.diffusion(t, y, params))(t, y)
    r = y1 - y - f * dts[:, None]
    if sde.noise == "general":
        C = jnp.linalg.cholesky(jnp.einsum("nij,nkj->nik", g, g) * dts[:, None, None])
        return jnp.sum(jax.vmap(_mvn_logpdf_chol)(r, C))
    # transition_log_prob vectorised over the steps; two flat sums and the constant hoisted
    # out compile to leaner XLA than a per-step sum (about 1.5x faster value_and_grad at
    # T = 10^4, bench/sde.py)
    var = (g * g if sde.noise == "diagonal" else (g * g)[:, None]) * dts[:, None]
    var = jnp.broadcast_to(var, r.shape)
    return -0.5 * (jnp.sum(r * r * (1.0 / var)) + jnp.sum(jnp.log(var)) + r.size * _LOG_2PI)
