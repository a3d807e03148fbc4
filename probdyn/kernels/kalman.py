"""Linear-Gaussian state-space kernels: Kalman filter, RTS smoother, state simulation.

Pure functions of arrays (no NumPyro), for the model

.. math::

    x_0 \\sim \\mathcal N(m_0, P_0), \\quad
    x_{t+1} \\mid x_t \\sim \\mathcal N(\\Phi_t x_t + c_t, Q_t), \\quad
    y_t \\mid x_t \\sim \\mathcal N(H x_t, R), \\qquad t = 0, \\dots, T-1,

with time-varying transitions (``transition_matrices`` (T-1, D, D), ``transition_offsets``
(T-1, D), ``transition_covs`` (T-1, D, D)) and a fixed emission (``emission_matrix``
(obs_dim, D), ``obs_cov`` (obs_dim, obs_dim)). Each function handles one sequence; ``vmap``
for batches. :func:`lti_transitions` gives the exact transitions of a linear SDE
:math:`dX = (AX + b)dt + L dW` between observation times. Used by
:class:`probdyn.processes.LinearSDE`; the layout follows dynamax's ``lgssm_filter`` /
``lgssm_smoother``.

References
----------
R. E. Kalman, "A new approach to linear filtering and prediction problems", J. Basic Eng.
82 (1960).
H. E. Rauch, F. Tung and C. T. Striebel, "Maximum likelihood estimates of linear dynamic
systems", AIAA J. 3 (1965).
S. Särkkä, "Bayesian Filtering and Smoothing", Cambridge University Press, 2013 (4.3, 8.2).
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from probdyn.kernels.sde import lti_transition

Array = jax.Array
_LOG_2PI = math.log(2.0 * math.pi)

__all__ = [
    "KalmanFilterResult",
    "KalmanSmootherResult",
    "kalman_filter",
    "kalman_innovations",
    "kalman_sample_states",
    "kalman_smoother",
    "lti_transitions",
    "mvn_log_prob_chol",
    "psd_cholesky",
]


class KalmanFilterResult(NamedTuple):
    """Kalman filter output: means (T, D), covariances (T, D, D), log-likelihood ()."""

    filtered_means: Array
    filtered_covs: Array
    predicted_means: Array
    predicted_covs: Array
    log_likelihood: Array


class KalmanSmootherResult(NamedTuple):
    """RTS smoother output: means (T, D), covariances (T, D, D), log-likelihood ()."""

    smoothed_means: Array
    smoothed_covs: Array
    log_likelihood: Array


def psd_cholesky(cov: ArrayLike) -> Array:
    """Lower Cholesky factor (D, D) of a PSD matrix ``cov`` (D, D), with a relative jitter
    of ``eps * max diag`` so that singular covariances (no noise in a component) factor."""
    Q = jnp.asarray(cov)
    jitter = jnp.finfo(Q.dtype).eps * jnp.max(jnp.abs(jnp.diagonal(Q)))
    return jnp.linalg.cholesky(Q + jitter * jnp.eye(Q.shape[0], dtype=Q.dtype))


def mvn_log_prob_chol(r: ArrayLike, chol: ArrayLike) -> Array:
    """:math:`\\log \\mathcal N(r; 0, C C^\\top)` for a residual ``r`` (D,) and a lower
    Cholesky factor ``chol`` C (D, D); returns ()."""
    r, C = jnp.asarray(r), jnp.asarray(chol)
    w = jax.scipy.linalg.solve_triangular(C, r, lower=True)
    return -0.5 * (w @ w) - jnp.sum(jnp.log(jnp.diagonal(C))) - 0.5 * r.shape[0] * _LOG_2PI


@partial(jax.jit, static_argnames="stationary")
def lti_transitions(
    A: ArrayLike,
    b: ArrayLike,
    L: ArrayLike,
    times: ArrayLike,
    initial_mean: ArrayLike,
    initial_cov: ArrayLike,
    stationary: bool = False,
) -> tuple[Array, Array, Array]:
    """Exact transitions of :math:`dX = (AX + b)dt + L dW` between consecutive ``times``.

    With ``stationary=False``, Van Loan's exponential per gap
    (:func:`probdyn.kernels.sde.lti_transition`). With ``stationary=True`` the process is
    taken to start at its stationary law ``(initial_mean, initial_cov)`` = :math:`(m_\\infty,
    P_\\infty)` and :math:`c = m_\\infty - \\Phi m_\\infty`,
    :math:`Q = P_\\infty - \\Phi P_\\infty \\Phi^\\top` (no cancellation at long gaps).

    Parameters
    ----------
    A : ArrayLike, shape (D, D)
    b : ArrayLike, shape (D,)
    L : ArrayLike, shape (D, M)
    times : ArrayLike, shape (T,)
        Strictly increasing (not checked here).
    initial_mean : ArrayLike, shape (D,)
    initial_cov : ArrayLike, shape (D, D)
    stationary : bool, static

    Returns
    -------
    transition_matrices : Array, shape (T-1, D, D)
    transition_offsets : Array, shape (T-1, D)
    transition_covs : Array, shape (T-1, D, D)
        Symmetrised.
    """
    dts = jnp.diff(times)
    if not stationary:
        return jax.vmap(lambda dt: lti_transition(A, b, L, dt))(dts)
    Phi = jax.vmap(lambda dt: jax.scipy.linalg.expm(A * dt))(dts)
    c = initial_mean - Phi @ initial_mean
    Q = initial_cov - jnp.einsum("nij,jk,nlk->nil", Phi, initial_cov, Phi)
    return Phi, c, 0.5 * (Q + jnp.swapaxes(Q, -1, -2))


def _scan(obs, Phi, c, Q, H, R, m0, P0):
    """The filter's scan: filtered/predicted moments and per-step log-likelihoods."""
    D = m0.shape[0]
    eye = jnp.eye(D, dtype=Phi.dtype)
    pad = (eye[None], jnp.zeros((1, D), c.dtype), jnp.zeros_like(Q[:1]))
    xs = (obs,) + tuple(jnp.concatenate([a, p]) for a, p in zip((Phi, c, Q), pad, strict=True))

    def body(carry, x):
        m, P = carry
        yt, F, ct, Qt = x
        S = H @ P @ H.T + R
        C = jnp.linalg.cholesky(S)
        Kt = jax.scipy.linalg.cho_solve((C, True), H @ P).T  # P H^T S^-1
        r = yt - H @ m
        ll = mvn_log_prob_chol(r, C)
        mf = m + Kt @ r
        IKH = eye - Kt @ H
        Pf = IKH @ P @ IKH.T + Kt @ R @ Kt.T  # Joseph form
        mp = F @ mf + ct
        Pp = F @ Pf @ F.T + Qt
        return (mp, 0.5 * (Pp + Pp.T)), (mf, Pf, m, P, ll)

    _, out = jax.lax.scan(body, (m0, P0), xs)
    return out


def kalman_filter(
    obs: ArrayLike,
    transition_matrices: ArrayLike,
    transition_offsets: ArrayLike,
    transition_covs: ArrayLike,
    emission_matrix: ArrayLike,
    obs_cov: ArrayLike,
    initial_mean: ArrayLike,
    initial_cov: ArrayLike,
) -> KalmanFilterResult:
    """Kalman filter of one sequence (Joseph-form update, one ``lax.scan``).

    .. math::

        \\log p(y_{0:T-1}) = \\sum_t \\log \\mathcal N(y_t;\\, H m_{t|t-1},\\,
            H P_{t|t-1} H^\\top + R).

    Parameters
    ----------
    obs : ArrayLike, shape (T, obs_dim)
    transition_matrices : ArrayLike, shape (T-1, D, D)
    transition_offsets : ArrayLike, shape (T-1, D)
    transition_covs : ArrayLike, shape (T-1, D, D)
    emission_matrix : ArrayLike, shape (obs_dim, D)
    obs_cov : ArrayLike, shape (obs_dim, obs_dim)
        Positive definite.
    initial_mean : ArrayLike, shape (D,)
    initial_cov : ArrayLike, shape (D, D)

    Returns
    -------
    KalmanFilterResult
        ``filtered_means`` (T, D), ``filtered_covs`` (T, D, D), one-step
        ``predicted_means`` (T, D) and ``predicted_covs`` (T, D, D) (index 0: the
        initial law), ``log_likelihood`` ().
    """
    args = (obs, transition_matrices, transition_offsets, transition_covs)
    args += (emission_matrix, obs_cov, initial_mean, initial_cov)
    mf, Pf, mp, Pp, ll = _scan(*(jnp.asarray(a) for a in args))
    return KalmanFilterResult(mf, Pf, mp, Pp, jnp.sum(ll))


def kalman_innovations(
    obs: ArrayLike,
    transition_matrices: ArrayLike,
    transition_offsets: ArrayLike,
    transition_covs: ArrayLike,
    emission_matrix: ArrayLike,
    obs_cov: ArrayLike,
    initial_mean: ArrayLike,
    initial_cov: ArrayLike,
) -> Array:
    """One-step log predictive densities :math:`\\log p(y_t \\mid y_{0:t-1})`, shape (T,)
    (the innovation log-densities of :func:`kalman_filter`; they sum to its
    ``log_likelihood``). Arguments as :func:`kalman_filter`."""
    args = (obs, transition_matrices, transition_offsets, transition_covs)
    args += (emission_matrix, obs_cov, initial_mean, initial_cov)
    return _scan(*(jnp.asarray(a) for a in args))[-1]


def kalman_smoother(
    obs: ArrayLike,
    transition_matrices: ArrayLike,
    transition_offsets: ArrayLike,
    transition_covs: ArrayLike,
    emission_matrix: ArrayLike,
    obs_cov: ArrayLike,
    initial_mean: ArrayLike,
    initial_cov: ArrayLike,
) -> KalmanSmootherResult:
    """Rauch-Tung-Striebel smoother of one sequence: marginals :math:`p(x_t \\mid y_{0:T-1})`.

    .. math::

        G_t = P_{t|t} \\Phi_t^\\top P_{t+1|t}^{-1}, \\quad
        m_{t|T} = m_{t|t} + G_t (m_{t+1|T} - m_{t+1|t}), \\quad
        P_{t|T} = P_{t|t} + G_t (P_{t+1|T} - P_{t+1|t}) G_t^\\top.

    Arguments as :func:`kalman_filter`.

    Returns
    -------
    KalmanSmootherResult
        ``smoothed_means`` (T, D), ``smoothed_covs`` (T, D, D), ``log_likelihood`` ().
    """
    f = kalman_filter(
        obs,
        transition_matrices,
        transition_offsets,
        transition_covs,
        emission_matrix,
        obs_cov,
        initial_mean,
        initial_cov,
    )

    def body(carry, x):
        ms, Ps = carry
        mf, Pf, F, mp, Pp = x
        C = jnp.linalg.cholesky(Pp)
        G = jax.scipy.linalg.cho_solve((C, True), F @ Pf).T  # Pf F^T Pp^-1
        m = mf + G @ (ms - mp)
        P = Pf + G @ (Ps - Pp) @ G.T
        return (m, 0.5 * (P + P.T)), (m, 0.5 * (P + P.T))

    xs = (f.filtered_means[:-1], f.filtered_covs[:-1], jnp.asarray(transition_matrices))
    xs = xs + (f.predicted_means[1:], f.predicted_covs[1:])
    init = (f.filtered_means[-1], f.filtered_covs[-1])
    _, (ms, Ps) = jax.lax.scan(body, init, xs, reverse=True)
    ms = jnp.concatenate([ms, init[0][None]])
    Ps = jnp.concatenate([Ps, init[1][None]])
    return KalmanSmootherResult(ms, Ps, f.log_likelihood)


def kalman_sample_states(
    initial_state: ArrayLike,
    noise: ArrayLike,
    transition_matrices: ArrayLike,
    transition_offsets: ArrayLike,
    transition_chols: ArrayLike,
) -> Array:
    """States :math:`x_{t+1} = \\Phi_t x_t + c_t + C_t z_t` from standard normals ``noise``
    (the non-centred form of the latent chain; ``vmap`` over keys' draws for samples).

    Parameters
    ----------
    initial_state : ArrayLike, shape (D,)
    noise : ArrayLike, shape (T-1, D)
        Standard normal draws :math:`z_t`.
    transition_matrices : ArrayLike, shape (T-1, D, D)
    transition_offsets : ArrayLike, shape (T-1, D)
    transition_chols : ArrayLike, shape (T-1, D, D)
        Lower Cholesky factors :math:`C_t` of the transition covariances
        (:func:`psd_cholesky`).

    Returns
    -------
    Array, shape (T, D)
        The path, ``initial_state`` first.
    """
    x0 = jnp.asarray(initial_state)

    def body(x, inp):
        F, ct, C, zt = inp
        x = F @ x + ct + C @ zt
        return x, x

    xs = tuple(jnp.asarray(a) for a in (transition_matrices, transition_offsets))
    xs += (jnp.asarray(transition_chols), jnp.asarray(noise))
    return jnp.concatenate([x0[None], jax.lax.scan(body, x0, xs)[1]])
