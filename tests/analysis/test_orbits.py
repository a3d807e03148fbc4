"""Orbits: PCA against numpy's SVD, rotation phase of an exact rotation, the radius-noise
law of a noisy linear rotation against the discrete Lyapunov equation, phase binning
against a loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import solve_discrete_lyapunov

from probdyn.analysis import (
    emission_along_phase,
    emission_probabilities,
    fit_pca,
    linear_fit,
    orbit_radius,
    orbit_radius_vs_noise,
    project,
    rollout,
    rotation_phase,
    symbols,
)


def _rotation(theta, rho=1.0):
    c, s = np.cos(theta), np.sin(theta)
    return rho * np.array([[c, -s], [s, c]])


def test_pca_matches_numpy_svd():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5)) @ np.diag([3.0, 2.0, 1.0, 0.5, 0.1]) @ np.linalg.qr(
        rng.normal(size=(5, 5))
    )[0] + rng.normal(size=5)
    pca = fit_pca(X.reshape(30, 10, 5), num_components=3)  # leading axes pooled
    Xc = X - X.mean(0)
    _, s, vt = np.linalg.svd(Xc, full_matrices=False)
    np.testing.assert_allclose(pca.explained_variance, s[:3] ** 2 / 299, rtol=1e-4)
    np.testing.assert_allclose(pca.explained_variance_ratio, s[:3] ** 2 / np.sum(s**2), rtol=1e-4)
    signs = np.sign(np.sum(np.asarray(pca.components) * vt[:3], axis=1))
    np.testing.assert_allclose(np.asarray(pca.components), signs[:, None] * vt[:3], atol=1e-4)
    np.testing.assert_allclose(project(X, pca), (Xc @ vt[:3].T) * signs, atol=1e-3)
    # deterministic sign: largest-magnitude loading positive
    comps = np.asarray(pca.components)
    assert np.all(comps[np.arange(3), np.argmax(np.abs(comps), axis=1)] > 0)


def test_rotation_phase_of_exact_rotation():
    theta = 0.3
    R = _rotation(theta)
    p = [np.array([2.0, 0.0])]
    for _ in range(99):
        p.append(R @ p[-1])
    phase = rotation_phase(np.stack(p))
    np.testing.assert_allclose(phase, theta * np.arange(100), atol=1e-4)  # ~4.8 turns
    np.testing.assert_allclose(np.diff(rotation_phase(np.stack(p)[::-1])), -theta, atol=1e-4)
    r, m2 = orbit_radius(np.stack(p))
    np.testing.assert_allclose(r, 2.0, atol=0.05)  # centre ~ origin over whole turns
    assert abs(float(m2) - 4.0) < 0.2


def test_radius_vs_noise_matches_discrete_lyapunov():
    """h' = A h + B x, x ~ N(0, v I): stationary covariance v P, P = A P A' + B B'."""
    A = _rotation(0.4, rho=0.7)
    B = np.array([[1.0, 0.3], [0.0, 0.5]])
    A32, B32 = jnp.asarray(A, jnp.float32), jnp.asarray(B, jnp.float32)
    variances = np.array([0.5, 1.0, 2.0, 3.0])
    sweep = orbit_radius_vs_noise(
        jax.random.PRNGKey(0),
        lambda h, x: A32 @ h + B32 @ x,
        np.zeros((16, 2)),
        noise_dim=2,
        noise_variances=variances,
        num_timesteps=2000,
        burn_in=50,
    )
    P = solve_discrete_lyapunov(A, B @ B.T)
    expected = variances * np.trace(P)
    z = (sweep.mean_square_radius - expected) / sweep.mean_square_radius_se
    assert np.all(np.abs(z) < 4), z
    fit = sweep.mean_square_fit
    assert abs(fit.slope - np.trace(P)) < 0.03 * np.trace(P)
    assert abs(fit.intercept) < 0.05 * np.trace(P)
    assert fit.r_squared > 0.999
    # mean radius grows like sqrt(v): between Jensen's bound and its square root ratio
    assert np.all(sweep.radius**2 <= sweep.mean_square_radius)
    assert np.all(np.diff(sweep.radius) > 0)
    np.testing.assert_allclose(sweep.radius / np.sqrt(variances), sweep.radius[1], rtol=0.05)


def test_linear_fit_matches_scipy():
    from scipy import stats

    rng = np.random.default_rng(1)
    x = rng.uniform(size=20)
    y = 2.0 * x + 0.5 + 0.1 * rng.normal(size=20)
    fit, ref = linear_fit(x, y), stats.linregress(x, y)
    np.testing.assert_allclose(
        [fit.slope, fit.intercept, fit.r_squared], [ref.slope, ref.intercept, ref.rvalue**2]
    )
    with pytest.raises(ValueError, match="x must hold"):
        linear_fit([1.0, 1.0], [0.0, 1.0])


def test_emission_along_phase_matches_loop():
    rng = np.random.default_rng(2)
    phase = rng.uniform(-3 * np.pi, 3 * np.pi, size=500)
    probs = rng.dirichlet(np.ones(3), size=500)
    centers, mean, counts = emission_along_phase(phase, probs, num_bins=8)
    wrapped = np.angle(np.exp(1j * phase))
    for k, c in enumerate(centers):
        inside = np.abs(np.angle(np.exp(1j * (wrapped - c)))) < np.pi / 8
        assert counts[k] == inside.sum()
        np.testing.assert_allclose(mean[k], probs[inside].mean(0))
    assert counts.sum() == 500


def test_rollout_and_readouts(relu_rnn):
    h0 = jnp.zeros((4, 8))
    traj = rollout(jax.random.PRNGKey(0), relu_rnn.step, h0, 20, noise_dim=3)
    assert traj.shape == (4, 20, 8)
    # the first step by hand with the same noise draws
    key = jax.random.split(jax.random.split(jax.random.PRNGKey(0), 4)[0], 20)[0]
    x = jax.random.normal(key, (3,))
    np.testing.assert_allclose(traj[0, 0], relu_rnn.step(h0[0], x), atol=1e-6)
    # zero noise gives the input-free map
    quiet = rollout(jax.random.PRNGKey(1), relu_rnn.step, h0[0], 3, 3, noise_scale=0.0)
    np.testing.assert_allclose(quiet[0], relu_rnn.step(h0[0], jnp.zeros(3)), atol=1e-6)
    p = emission_probabilities(relu_rnn.readout, traj)
    assert p.shape == (4, 20, 3)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(symbols(relu_rnn.readout, traj), np.argmax(p, axis=-1))
    with pytest.raises(ValueError, match="noise_scale"):
        rollout(jax.random.PRNGKey(0), relu_rnn.step, h0, 5, 3, noise_scale=-1.0)
