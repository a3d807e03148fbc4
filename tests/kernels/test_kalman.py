"""Tests for probdyn.kernels.kalman against dense joint-Gaussian conditioning (numpy/scipy)."""

import jax
import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from probdyn.kernels import kalman as KL
from probdyn.kernels.sde import lti_transition, stationary_covariance

T, D, O = 5, 2, 2


@pytest.fixture(scope="module")
def lgssm():
    """A time-varying model (T=5, D=2, obs_dim=2) and one observation sequence."""
    rng = np.random.default_rng(0)
    Phi = 0.6 * rng.normal(size=(T - 1, D, D))
    c = rng.normal(size=(T - 1, D))
    B = rng.normal(size=(T - 1, D, D))
    Q = B @ np.swapaxes(B, -1, -2) + 0.1 * np.eye(D)
    H = rng.normal(size=(O, D))
    R = np.array([[0.5, 0.1], [0.1, 0.3]])
    m0, P0 = rng.normal(size=D), np.array([[1.0, 0.3], [0.3, 0.8]])
    y = rng.normal(size=(T, O))
    return y, Phi, c, Q, H, R, m0, P0


def _dense(Phi, c, Q, m0, P0):
    """Mean (T*D,) and covariance (T*D, T*D) of the stacked states x_{0:T-1}."""
    means, covs = [m0], [P0]
    for t in range(T - 1):
        means.append(Phi[t] @ means[-1] + c[t])
        covs.append(Phi[t] @ covs[-1] @ Phi[t].T + Q[t])
    C = np.zeros((T * D, T * D))
    for i in range(T):
        F = np.eye(D)
        for j in range(i, T):  # Cov(x_j, x_i) = Phi_{j-1} ... Phi_i P_i
            if j > i:
                F = Phi[j - 1] @ F
            blk = F @ covs[i]
            C[j * D : (j + 1) * D, i * D : (i + 1) * D] = blk
            C[i * D : (i + 1) * D, j * D : (j + 1) * D] = blk.T
    return np.concatenate(means), C


def test_filter_and_innovations_vs_dense(x64, lgssm):
    y, Phi, c, Q, H, R, m0, P0 = lgssm
    mx, Cx = _dense(Phi, c, Q, m0, P0)
    Hb = np.kron(np.eye(T), H)
    my, Cy = Hb @ mx, Hb @ Cx @ Hb.T + np.kron(np.eye(T), R)
    f = KL.kalman_filter(*lgssm)
    ref = scipy.stats.multivariate_normal(my, Cy).logpdf(y.ravel())
    np.testing.assert_allclose(f.log_likelihood, ref, rtol=1e-10)
    # innovations: log p(y_t | y_{0:t-1}) = log p(y_{0:t}) - log p(y_{0:t-1})
    cum = [
        scipy.stats.multivariate_normal(my[: (t + 1) * O], Cy[: (t + 1) * O, : (t + 1) * O]).logpdf(
            y[: t + 1].ravel()
        )
        for t in range(T)
    ]
    np.testing.assert_allclose(KL.kalman_innovations(*lgssm), np.diff(cum, prepend=0.0), rtol=1e-9)
    # filtered moments at t: condition x_t on y_{0:t}
    for t in range(T):
        n = (t + 1) * O
        G = Cx[t * D : (t + 1) * D] @ Hb[:n].T @ np.linalg.inv(Cy[:n, :n])
        mean = mx[t * D : (t + 1) * D] + G @ (y[: t + 1].ravel() - my[:n])
        cov = Cx[t * D : (t + 1) * D, t * D : (t + 1) * D] - G @ Hb[:n] @ Cx[:, t * D : (t + 1) * D]
        np.testing.assert_allclose(f.filtered_means[t], mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(f.filtered_covs[t], cov, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(f.predicted_means[0], m0)


def test_smoother_vs_dense(x64, lgssm):
    y, Phi, c, Q, H, R, m0, P0 = lgssm
    mx, Cx = _dense(Phi, c, Q, m0, P0)
    Hb = np.kron(np.eye(T), H)
    Cy = Hb @ Cx @ Hb.T + np.kron(np.eye(T), R)
    G = Cx @ Hb.T @ np.linalg.inv(Cy)
    post_mean = (mx + G @ (y.ravel() - Hb @ mx)).reshape(T, D)
    post_cov = Cx - G @ Hb @ Cx
    s = KL.kalman_smoother(*lgssm)
    np.testing.assert_allclose(s.smoothed_means, post_mean, rtol=1e-9, atol=1e-12)
    for t in range(T):
        blk = post_cov[t * D : (t + 1) * D, t * D : (t + 1) * D]
        np.testing.assert_allclose(s.smoothed_covs[t], blk, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(s.log_likelihood, KL.kalman_filter(*lgssm).log_likelihood)


def test_sample_states_recursion_and_cholesky(x64, lgssm):
    _, Phi, c, Q, *_ = lgssm
    z = np.random.default_rng(1).normal(size=(T - 1, D))
    x0 = np.array([0.5, -1.0])
    Cq = jax.vmap(KL.psd_cholesky)(Q)
    np.testing.assert_allclose(Cq @ np.swapaxes(Cq, -1, -2), Q, rtol=1e-12)
    xs = KL.kalman_sample_states(x0, z, Phi, c, Cq)
    ref = [x0]
    for t in range(T - 1):
        ref.append(Phi[t] @ ref[-1] + c[t] + np.linalg.cholesky(Q[t]) @ z[t])
    np.testing.assert_allclose(xs, np.stack(ref), rtol=1e-10)
    r = np.array([0.3, -1.2])
    ref_lp = scipy.stats.multivariate_normal(np.zeros(D), Q[0]).logpdf(r)
    np.testing.assert_allclose(KL.mvn_log_prob_chol(r, Cq[0]), ref_lp, rtol=1e-12)
    # a singular covariance (no noise in one component) still factors
    assert np.all(np.isfinite(KL.psd_cholesky(np.diag([1.0, 0.0]))))


def test_lti_transitions_vs_expm(x64):
    A = np.array([[-1.0, 0.4], [-0.3, -0.7]])
    b, L = np.array([0.2, -0.1]), np.array([[0.5], [0.2]])
    times = np.array([0.0, 0.2, 1.5, 1.6])
    P = np.asarray(stationary_covariance(A, L))
    m = np.linalg.solve(A, -b)
    Phi, c, Q = KL.lti_transitions(A, b, L, times, m, P, stationary=True)
    Phi2, c2, Q2 = KL.lti_transitions(A, b, L, times, m, P, stationary=False)
    for i, dt in enumerate(np.diff(times)):
        F = scipy.linalg.expm(A * dt)
        np.testing.assert_allclose(Phi[i], F, rtol=1e-10)
        np.testing.assert_allclose(Q[i], P - F @ P @ F.T, rtol=1e-9, atol=1e-13)
        ref = lti_transition(A, b, L, dt)
        for got, want in zip((Phi2[i], c2[i], Q2[i]), ref, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-12)
        # started at stationarity the two forms agree
        np.testing.assert_allclose(c[i], c2[i], rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(Q[i], Q2[i], rtol=1e-8, atol=1e-13)
