"""SDE path distributions, a non-centred path helper and linear-Gaussian SDEs for NumPyro.

- :class:`SDEPath`: a distribution over a latent path on a time grid, with the
  Euler-Maruyama (or exact linear) Gaussian transition density (centred form).
- :func:`sde_path`: the same path written as a deterministic function of standard-normal
  increments, a sample site ``f"{name}_noise"`` (non-centred form, for NUTS without
  funnels between the diffusion scale and the path).
- :class:`LinearSDE`: :math:`dX = (AX + b)dt + L dW` observed at irregular times through
  :math:`y_i = H x(t_i) + \\varepsilon_i`, :math:`\\varepsilon_i \\sim \\mathcal N(0, R)`,
  with the path marginalised exactly by a Kalman filter (``lax.scan``); OU and Matérn
  constructors.

References
----------
S. Särkkä and A. Solin, "Applied Stochastic Differential Equations", Cambridge University
Press, 2019 (LTI transitions, Matérn state-space forms, RTS smoothing).
J. Hartikainen and S. Särkkä, "Kalman filtering and smoothing solutions to temporal
Gaussian process regression models", IEEE MLSP 2010.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.typing import ArrayLike
from numpyro.distributions import Distribution, constraints

from probdyn.kernels import kalman as KL
from probdyn.kernels import sde as K_
from probdyn.kernels._checks import check_substeps, check_time_grid
from probdyn.kernels.kalman import KalmanFilterResult, KalmanSmootherResult
from probdyn.processes._batch import flat_map
from probdyn.processes._checks import concrete as _concrete
from probdyn.processes._checks import validate_sample as _validate_sample

__all__ = [
    "KalmanFilterResult",
    "KalmanSmootherResult",
    "LinearSDE",
    "SDEPath",
    "sde_path",
]


def _initial_dim(initial, name="initial"):
    if isinstance(initial, Distribution):
        if len(initial.event_shape) != 1:
            raise ValueError(
                f"{name} must be a distribution with event shape (D,); got "
                f"event_shape={initial.event_shape} (use .to_event(1))"
            )
        return initial.event_shape[0], tuple(initial.batch_shape)
    initial = jnp.asarray(initial)
    if initial.ndim < 1:
        raise ValueError(f"{name} must be a distribution or an array (..., D); got a scalar")
    return initial.shape[-1], tuple(initial.shape[:-1])


class SDEPath(Distribution):
    r"""Distribution over an SDE path on a (sub-stepped) time grid.

    With the grid :math:`s_0 < \dots < s_N` of ``substeps`` equal sub-steps between
    consecutive ``times`` (:func:`probdyn.kernels.sde.refine_times`, N = (T-1) * substeps),

    .. math::

        \log p(y_{0:N}) = \log p_0(y_0) + \sum_{n=0}^{N-1}
            \log \mathcal N\big(y_{n+1};\, y_n + f(s_n, y_n)\,\Delta_n,\,
            g g^\top(s_n, y_n)\,\Delta_n\big),

    the Euler-Maruyama density, or with ``solver="exact"`` (``sde`` from
    :func:`probdyn.kernels.sde.lti_sde`) the exact linear-Gaussian transitions, so that
    ``sample`` and ``log_prob`` describe the same distribution.

    Parameters
    ----------
    sde : probdyn.kernels.sde.SDE
        Itô SDE.
    initial : Distribution or ArrayLike
        Distribution of :math:`y_0` with event shape (D,), or a fixed state (..., D) (then
        it contributes no density and ``value[..., 0, :]`` is taken as given).
    times : ArrayLike, shape (T,)
        Strictly increasing observation times.
    params : pytree
        Parameters of ``drift``/``diffusion`` (shared by all batch members).
    solver : {"euler", "exact"}
        Other solvers have no tractable transition density: use :func:`sde_path`.
    substeps : int
        Sub-steps per observation interval; the sub-step states are part of the value.
    validate_args : bool, optional

    Notes
    -----
    ``event_shape`` is ``((T-1) * substeps + 1, D)`` (``(T, D)`` for ``substeps=1``);
    ``value[..., ::substeps, :]`` are the states at ``times``. ``batch_shape`` is that of
    ``initial``.
    """

    arg_constraints = {"times": constraints.ordered_vector}
    pytree_data_fields = ("initial", "times", "params")
    pytree_aux_fields = ("sde", "solver", "substeps")
    support = constraints.independent(constraints.real, 2)

    def __init__(
        self,
        sde: K_.SDE,
        initial: Distribution | ArrayLike,
        times: ArrayLike,
        params: Any = None,
        solver: str = "euler",
        substeps: int = 1,
        validate_args: bool | None = None,
    ):
        if solver not in ("euler", "exact"):
            raise ValueError(
                f"solver must be 'euler' or 'exact' for SDEPath (a tractable density); got "
                f"{solver!r}; use sde_path(...) for other solvers"
            )
        K_._get_solver(solver, sde)
        times = check_time_grid(times)
        substeps = check_substeps(substeps)
        D, batch_shape = _initial_dim(initial)
        if not isinstance(initial, Distribution):
            initial = jnp.asarray(initial)
        K_._check_sde_shapes(sde, jnp.zeros(D, times.dtype), times[0], params)
        self.sde, self.initial, self.times, self.params = sde, initial, times, params
        self.solver, self.substeps = solver, substeps
        N = (times.shape[0] - 1) * substeps
        super().__init__(batch_shape, (N + 1, D), validate_args=validate_args)

    @property
    def grid(self) -> jax.Array:
        """Time grid of the value's time axis, shape ((T-1) * substeps + 1,)."""
        return K_.refine_times(self.times, self.substeps)

    def log_prob(self, value: ArrayLike) -> jax.Array:
        """Log-density of paths ``value`` (..., N+1, D); returns (...)."""
        value = jnp.asarray(value)
        if value.ndim < 2 or value.shape[-2:] != self.event_shape:
            raise ValueError(f"value must have shape (..., {self.event_shape}); got {value.shape}")
        if self._validate_args:
            _validate_sample(self, value)
        batch = jnp.broadcast_shapes(value.shape[:-2], self.batch_shape)
        grid = self.grid

        def one(path):
            return K_.path_log_prob(self.sde, path, grid, self.params, solver=self.solver)

        lp = flat_map(one, (value,), (2,), batch, direct="scalar")
        if isinstance(self.initial, Distribution):
            lp = lp + self.initial.log_prob(value[..., 0, :])
        return lp

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """Simulated paths, shape (*sample_shape, *batch_shape, N+1, D)."""
        shape = tuple(sample_shape) + self.batch_shape
        k0, k1 = jax.random.split(key)
        if isinstance(self.initial, Distribution):
            y0 = self.initial.expand(self.batch_shape).sample(k0, tuple(sample_shape))
        else:
            y0 = jnp.broadcast_to(self.initial, shape + self.event_shape[-1:])
        keys = jax.random.split(k1, int(np.prod(shape))).reshape(shape + (-1,))

        def one(k, y):
            return K_.simulate(
                k,
                self.sde,
                y,
                self.times,
                self.params,
                solver=self.solver,
                substeps=self.substeps,
                save_substeps=True,
            )

        return flat_map(one, (keys, y0), (1, 1), shape, direct="scalar")


def sde_path(
    name: str,
    sde: K_.SDE,
    initial: Distribution | ArrayLike,
    times: ArrayLike,
    params: Any = None,
    *,
    solver: str = "euler",
    substeps: int = 1,
    save_substeps: bool = False,
) -> jax.Array:
    """Non-centred SDE path inside a NumPyro model.

    Draws the initial state as the site ``f"{name}_init"`` (when ``initial`` is a
    distribution) and standard normals ``f"{name}_noise"`` of shape
    ``((T-1) * substeps, *noise_shape)`` (:func:`probdyn.kernels.sde.noise_shape`), maps them
    through :func:`probdyn.kernels.sde.simulate_from_noise`, records the path with
    ``numpyro.deterministic(name, path)`` and returns it. The noise site is marked
    ``infer={"auxiliary": True}``, so :func:`probdyn.report.summary` leaves it out unless
    asked for by name. In results the path's last two axes are named ``"time"``
    (``f"{name}_step"`` with ``save_substeps``) and ``f"{name}_state"``; ``dims``/``coords``
    given to :func:`probdyn.fit` win. The model's density over the latent sites is then the
    prior of ``initial`` plus N(0, 1) terms, independent of ``params``, which removes the
    funnel between diffusion parameters and the path.
    Any solver works. Inside a ``numpyro.plate`` the noise site gets the plate's batch axes
    and the path is simulated for each.

    Parameters
    ----------
    name : str
    sde : probdyn.kernels.sde.SDE
    initial : Distribution or ArrayLike
        Distribution with event shape (D,), or a fixed state (D,).
    times : ArrayLike, shape (T,)
    params : pytree
    solver : str
    substeps : int
    save_substeps : bool
        Return (and record) the sub-step states too.

    Returns
    -------
    Array, shape (..., T, D), or (..., (T-1) * substeps + 1, D) with ``save_substeps``
    """
    times = check_time_grid(times)
    substeps = check_substeps(substeps)
    D, _ = _initial_dim(initial)
    if isinstance(initial, Distribution):
        y0 = numpyro.sample(f"{name}_init", initial)
    else:
        y0 = jnp.asarray(initial)
    y_probe = jnp.zeros(D, jnp.result_type(y0, times))
    K_._check_sde_shapes(sde, y_probe, times[0], params)
    nshape = ((times.shape[0] - 1) * substeps,) + K_.noise_shape(sde, y_probe, params, solver)
    z = numpyro.sample(
        f"{name}_noise",
        dist.Normal(0.0, 1.0).expand(nshape).to_event(2),
        infer={"auxiliary": True},  # left out of probdyn.summary by default
    )
    batch = jnp.broadcast_shapes(y0.shape[:-1], z.shape[:-2])

    def one(y, zz):
        return K_.simulate_from_noise(
            sde,
            y,
            times,
            params,
            zz,
            solver=solver,
            substeps=substeps,
            save_substeps=save_substeps,
        )

    path = flat_map(one, (y0, z), (1, 2), batch, direct="scalar") if batch else one(y0, z)
    _warn_nonfinite(name, sde, path)
    time_dim = "time" if path.shape[-2] == times.shape[0] else f"{name}_step"
    _deterministic(name, path, event_dims=[time_dim, f"{name}_state"])
    return path


def _deterministic(name: str, value, *, event_dims: list[str]):
    """``numpyro.deterministic`` that also records ``infer={"event_dims": ...}``, which
    :func:`probdyn.report.idata.model_dims` reads to name the value's trailing axes."""
    if not numpyro.primitives._PYRO_STACK:
        return value
    msg = {
        "type": "deterministic",
        "name": name,
        "value": value,
        "cond_indep_stack": [],
        "infer": {"event_dims": list(event_dims)},
    }
    return numpyro.primitives.apply_stack(msg)["value"]


def _warn_nonfinite(name, sde, path):
    """Say which SDE and which step left the float range (concrete paths only: inside
    ``jit`` the path is NaN from that step on, see :func:`probdyn.kernels.sde.simulate`)."""
    c = _concrete(path)
    if c is None or np.all(np.isfinite(c)):
        return
    rows = ~np.all(np.isfinite(c), axis=-1)  # (..., N+1)
    first = int(np.argmax(rows.reshape(-1, rows.shape[-1]).any(0)))
    warnings.warn(
        f"sde_path {name!r}: the path of {sde!r} left the float range at grid step {first} "
        f"of {rows.shape[-1] - 1} (NaN from there on; the drift or diffusion blows up for "
        "these parameters, or the step is too large); densities that use it will be NaN",
        RuntimeWarning,
        stacklevel=2,
    )


# --------------------------------------------------------------------------------------
# linear-Gaussian SDEs, Kalman filtering
# --------------------------------------------------------------------------------------


def _matern_state_space(nu, lengthscale, variance, dtype):
    """(A, L) of the Matérn-nu prior (nu in {0.5, 1.5, 2.5}); Särkkä & Solin (2019) 12.3."""
    ell, s2 = jnp.asarray(lengthscale, dtype), jnp.asarray(variance, dtype)
    z, o = jnp.zeros((), dtype), jnp.ones((), dtype)
    if nu == 0.5:
        lam = 1.0 / ell
        return -lam.reshape(1, 1), jnp.sqrt(2.0 * lam * s2).reshape(1, 1)
    if nu == 1.5:
        lam = math.sqrt(3.0) / ell
        A = jnp.stack([jnp.stack([z, o]), jnp.stack([-(lam**2), -2.0 * lam])])
        return A, jnp.stack([z, jnp.sqrt(4.0 * lam**3 * s2)]).reshape(2, 1)
    lam = math.sqrt(5.0) / ell
    A = jnp.stack(
        [jnp.stack([z, o, z]), jnp.stack([z, z, o]), jnp.stack([-(lam**3), -3 * lam**2, -3 * lam])]
    )
    return A, jnp.stack([z, z, jnp.sqrt(16.0 / 3.0 * lam**5 * s2)]).reshape(3, 1)


class LinearSDE(Distribution):
    r"""A linear time-invariant SDE observed with Gaussian noise; the path marginalised.

    .. math::

        dX = (AX + b)\,dt + L\,dW, \quad X(t_0) \sim \mathcal N(m_0, P_0), \quad
        y_i = H X(t_i) + \varepsilon_i, \;\varepsilon_i \sim \mathcal N(0, R),

    a distribution over observations ``y`` with event shape (T, obs_dim). ``log_prob`` is
    the exact marginal likelihood from a Kalman filter over the exact transitions
    :math:`X_{i+1} \mid X_i \sim \mathcal N(\Phi_i X_i + c_i, Q_i)` (one ``lax.scan``),
    differentiable in every parameter. With ``initial_cov=None`` the process starts
    stationary (:math:`P_0 = P_\infty`, the Lyapunov solution; A must be stable) and
    :math:`Q_i = P_\infty - \Phi_i P_\infty \Phi_i^\top` (no cancellation at long gaps);
    otherwise :math:`Q_i` comes from Van Loan's matrix exponential.

    Parameters
    ----------
    A : ArrayLike, shape (D, D)
    b : ArrayLike, shape (D,)
    L : ArrayLike, shape (D, M)
    H : ArrayLike, shape (obs_dim, D)
    obs_cov : ArrayLike, shape (obs_dim, obs_dim)
        Observation noise covariance R (positive definite).
    times : ArrayLike, shape (T,)
        Strictly increasing observation times.
    initial_mean : ArrayLike, shape (D,), optional
        Defaults to the stationary mean :math:`-A^{-1} b`.
    initial_cov : ArrayLike, shape (D, D), optional
        Defaults to the stationary covariance.
    validate_args : bool, optional

    Notes
    -----
    ``batch_shape`` is (): parameters are not batched, but ``log_prob``/``filter``/
    ``smooth`` accept values with leading batch axes. Missing observations are not
    supported. Constructors: :meth:`ou`, :meth:`matern`.
    """

    arg_constraints = {
        "A": constraints.real_matrix,
        "b": constraints.real_vector,
        "L": constraints.real_matrix,
        "H": constraints.real_matrix,
        "obs_cov": constraints.positive_definite,
        "times": constraints.ordered_vector,
        "initial_mean": constraints.real_vector,
        "initial_cov": constraints.positive_definite,
    }
    pytree_data_fields = ("A", "b", "L", "H", "obs_cov", "times", "initial_mean", "initial_cov")
    pytree_aux_fields = ("stationary",)
    support = constraints.independent(constraints.real, 2)

    def __init__(
        self,
        A: ArrayLike,
        b: ArrayLike,
        L: ArrayLike,
        H: ArrayLike,
        obs_cov: ArrayLike,
        times: ArrayLike,
        initial_mean: ArrayLike | None = None,
        initial_cov: ArrayLike | None = None,
        validate_args: bool | None = None,
    ):
        A, b, L = K_._check_lti(A, b, L)
        D = A.shape[0]
        dtype = A.dtype
        H, R = jnp.asarray(H, dtype), jnp.asarray(obs_cov, dtype)
        if H.ndim != 2 or H.shape[1] != D:
            raise ValueError(f"H must have shape (obs_dim, D) with D={D}; got {H.shape}")
        O = H.shape[0]
        if R.shape != (O, O):
            raise ValueError(
                f"obs_cov must have shape (obs_dim, obs_dim) = ({O}, {O}); got {R.shape}"
            )
        times = check_time_grid(times).astype(dtype)
        self.stationary = initial_cov is None
        if initial_mean is None:
            initial_mean = jnp.linalg.solve(A, -b)
        if initial_cov is None:
            initial_cov = K_.stationary_covariance(A, L)
        m0, P0 = jnp.asarray(initial_mean, dtype), jnp.asarray(initial_cov, dtype)
        if m0.shape != (D,):
            raise ValueError(f"initial_mean must have shape (D,) = ({D},); got {m0.shape}")
        if P0.shape != (D, D):
            raise ValueError(f"initial_cov must have shape (D, D) = ({D}, {D}); got {P0.shape}")
        self.A, self.b, self.L, self.H, self.obs_cov, self.times = A, b, L, H, R, times
        self.initial_mean, self.initial_cov = m0, P0
        super().__init__((), (times.shape[0], O), validate_args=validate_args)

    # ---------------------------------------------------------------- constructors

    @classmethod
    def ou(
        cls,
        theta: ArrayLike,
        mu: ArrayLike,
        sigma: ArrayLike,
        times: ArrayLike,
        obs_scale: ArrayLike,
        validate_args: bool | None = None,
    ) -> LinearSDE:
        """Stationary scalar OU :math:`dX = \\theta(\\mu - X)dt + \\sigma dW`, observed with
        N(0, obs_scale^2) noise; event shape (T, 1)."""
        th, mu, sg = (jnp.asarray(x, dtype=jnp.result_type(float)) for x in (theta, mu, sigma))
        for name, v, ok, want in (
            ("theta", th, lambda c: c > 0, "positive (mean reversion; stationary OU)"),
            ("sigma", sg, lambda c: c >= 0, "non-negative"),
            ("mu", mu, lambda c: True, "finite"),
            ("obs_scale", jnp.asarray(obs_scale), lambda c: c > 0, "positive"),
        ):
            c = _concrete(v)
            if c is not None and not (np.all(np.isfinite(c)) and np.all(ok(c))):
                raise ValueError(f"{name} must be {want}; got {c.tolist()}")
        one = jnp.ones((1, 1), th.dtype)
        return cls(
            -th * one,
            (th * mu).reshape(1),
            sg * one,
            one,
            jnp.asarray(obs_scale, th.dtype) ** 2 * one,
            times,
            validate_args=validate_args,
        )

    @classmethod
    def matern(
        cls,
        nu: float,
        lengthscale: ArrayLike,
        variance: ArrayLike,
        times: ArrayLike,
        obs_scale: ArrayLike,
        validate_args: bool | None = None,
    ) -> LinearSDE:
        """Stationary zero-mean GP with a Matérn-nu kernel (nu in {0.5, 1.5, 2.5}) as a
        state-space model with state dim nu + 1/2, observing the first state component with
        N(0, obs_scale^2) noise; event shape (T, 1). Kernels: :math:`\\sigma^2 e^{-r/\\ell}`,
        :math:`\\sigma^2 (1 + \\sqrt3 r/\\ell) e^{-\\sqrt3 r/\\ell}`,
        :math:`\\sigma^2 (1 + \\sqrt5 r/\\ell + 5r^2/3\\ell^2) e^{-\\sqrt5 r/\\ell}`."""
        if nu not in (0.5, 1.5, 2.5):
            raise ValueError(f"nu must be 0.5, 1.5 or 2.5; got {nu!r}")
        dtype = jnp.result_type(float)
        A, L = _matern_state_space(nu, lengthscale, variance, dtype)
        D = A.shape[0]
        H = jnp.zeros((1, D), dtype).at[0, 0].set(1.0)
        R = (jnp.asarray(obs_scale, dtype) ** 2).reshape(1, 1)
        return cls(A, jnp.zeros(D, dtype), L, H, R, times, validate_args=validate_args)

    # ---------------------------------------------------------------- transitions

    def transitions(self):
        """Exact transitions between consecutive times: Phi (T-1, D, D), c (T-1, D),
        Q (T-1, D, D)."""
        return KL.lti_transitions(
            self.A,
            self.b,
            self.L,
            self.times,
            self.initial_mean,
            self.initial_cov,
            stationary=self.stationary,
        )

    def _check_value(self, value, name="value"):
        value = jnp.asarray(value)
        if value.ndim < 2 or value.shape[-2:] != self.event_shape:
            raise ValueError(f"{name} must have shape (..., {self.event_shape}); got {value.shape}")
        return value

    def _map(self, fn, value):
        value = self._check_value(value)
        batch = value.shape[:-2]
        args = (*self.transitions(), self.H, self.obs_cov, self.initial_mean, self.initial_cov)
        out = fn(value.reshape((-1,) + self.event_shape).astype(self.A.dtype), *args)
        return jax.tree.map(lambda x: x.reshape(batch + x.shape[1:]), out)

    def filter(self, obs: ArrayLike) -> KalmanFilterResult:
        """Kalman filter of ``obs`` (..., T, obs_dim): filtered and one-step predicted
        means (..., T, D) and covariances (..., T, D, D), log-likelihood (...)."""
        return self._map(_kalman_filter_batched, obs)

    def smooth(self, obs: ArrayLike) -> KalmanSmootherResult:
        """Rauch-Tung-Striebel smoother: marginal posterior means (..., T, D) and
        covariances (..., T, D, D) of the state at ``times``, and the log-likelihood."""
        return self._map(_rts_smoother_batched, obs)

    def log_prob(self, value: ArrayLike) -> jax.Array:
        """Exact marginal log-likelihood of observations (..., T, obs_dim); returns (...)."""
        value = self._check_value(value)
        if self._validate_args:
            _validate_sample(self, value)
        return self.filter(value).log_likelihood

    def pointwise_log_prob(self, value: ArrayLike) -> jax.Array:
        """One-step-ahead log predictive densities (the Kalman filter's innovation
        log-densities) :math:`\\log p(y_t \\mid y_{0:t-1})`, shape (..., T).

        They sum over time to :meth:`log_prob`; the pointwise log-likelihood of
        :func:`probdyn.fit` and :func:`probdyn.report.lfo`.
        """
        value = self._check_value(value)
        if self._validate_args:
            _validate_sample(self, value)
        return self._map(_kalman_innovations_batched, value)

    def sample_with_states(self, key: jax.Array, sample_shape: tuple[int, ...] = ()):
        """Draw states (*sample_shape, T, D) and observations (*sample_shape, T, obs_dim)."""
        Phi, c, Q = self.transitions()
        Cq = _chol_batched(Q)
        C0 = KL.psd_cholesky(self.initial_cov)
        Cr = jnp.linalg.cholesky(self.obs_cov)
        T, O = self.event_shape
        D = self.A.shape[0]
        k0, k1, k2 = jax.random.split(key, 3)
        shape = tuple(sample_shape)
        dtype = self.A.dtype
        x0 = self.initial_mean + jax.random.normal(k0, shape + (D,), dtype) @ C0.T
        z = jax.random.normal(k1, shape + (T - 1, D), dtype)

        n = int(np.prod(shape))
        xs = _sample_states_batched(x0.reshape(n, D), z.reshape(n, T - 1, D), Phi, c, Cq)
        xs = xs.reshape(shape + (T, D))
        e = jax.random.normal(k2, shape + (T, O), dtype) @ Cr.T
        return xs, xs @ self.H.T + e

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """Draw observations, shape (*sample_shape, T, obs_dim)."""
        return self.sample_with_states(key, sample_shape)[1]


# Kalman kernels (probdyn.kernels.kalman), batched over sequences and jitted at module level
# so that compilations are shared by instances
_IN_AXES = (0,) + (None,) * 7
_kalman_filter_batched = jax.jit(jax.vmap(KL.kalman_filter, in_axes=_IN_AXES))
_kalman_innovations_batched = jax.jit(jax.vmap(KL.kalman_innovations, in_axes=_IN_AXES))
_rts_smoother_batched = jax.jit(jax.vmap(KL.kalman_smoother, in_axes=_IN_AXES))
_chol_batched = jax.jit(jax.vmap(KL.psd_cholesky))
_sample_states_batched = jax.jit(
    jax.vmap(KL.kalman_sample_states, in_axes=(0, 0, None, None, None))
)
