"""Tests for models/langevin_flow.py: metrics, Langevin dynamics, Lorenz data, ELBO, forecasts."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.linalg import expm
from scipy.stats import poisson

from probdyn.models import langevin_flow as lf
from probdyn.nn import LangevinDynamics

# --------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------


def test_bits_per_spike_matches_hand_computation():
    rng = np.random.default_rng(0)
    rates = rng.uniform(0.1, 3.0, size=(4, 7, 5))
    spikes = rng.poisson(rates)
    null = spikes.reshape(-1, 5).mean(0)
    ll = poisson.logpmf(spikes, rates).sum()
    ll0 = poisson.logpmf(spikes, np.broadcast_to(null, spikes.shape)).sum()
    want = (ll - ll0) / (np.log(2) * spikes.sum())
    assert lf.bits_per_spike(rates, spikes) == pytest.approx(want, rel=1e-10)
    # explicit null rates
    null2 = np.full(5, 1.3)
    ll0 = poisson.logpmf(spikes, np.broadcast_to(null2, spikes.shape)).sum()
    want2 = (ll - ll0) / (np.log(2) * spikes.sum())
    assert lf.bits_per_spike(rates, spikes, null2) == pytest.approx(want2, rel=1e-10)
    # the null model itself scores exactly zero
    assert lf.bits_per_spike(np.broadcast_to(null, spikes.shape), spikes) == pytest.approx(0.0)
    np.testing.assert_allclose(
        lf.poisson_log_prob(rates, spikes), poisson.logpmf(spikes, rates), rtol=1e-5
    )


def test_bits_per_spike_bad_input():
    with pytest.raises(ValueError, match="one shape"):
        lf.bits_per_spike(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="rates must be positive"):
        lf.bits_per_spike(np.zeros((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="no spikes"):
        lf.bits_per_spike(np.ones((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="spikes must be non-negative"):
        lf.bits_per_spike(np.ones((2, 3)), -np.ones((2, 3)))


def test_r2_score():
    rng = np.random.default_rng(1)
    t = rng.normal(size=(50, 3))
    assert lf.r2_score(t, t) == pytest.approx(1.0)
    assert lf.r2_score(np.broadcast_to(t.mean(0), t.shape), t) == pytest.approx(0.0, abs=1e-12)
    p = t + 0.5 * rng.normal(size=t.shape)
    want = np.mean([1 - np.sum((t[:, j] - p[:, j]) ** 2) / (49 * t[:, j].var(ddof=1))
                    for j in range(3)])  # fmt: skip
    assert lf.r2_score(p, t) == pytest.approx(want, rel=1e-10)


# --------------------------------------------------------------------------------------
# Langevin dynamics
# --------------------------------------------------------------------------------------


def _quadratic_langevin(d, k, gamma, sigma, c=0.5):
    dyn = LangevinDynamics(
        d, jax.random.PRNGKey(0), stiffness=k, coupling=c, gamma=gamma, sigma=sigma, mlp_scale=0.0
    )
    return dyn


def _rollout(dyn, state0, noise, dt):
    def body(s, z):
        s = dyn.step(s, z, dt)
        return s, s

    return jax.lax.scan(body, state0, noise)[1]


def test_langevin_damped_oscillator_closed_form(x64):
    # d = 1: q'' = -k q - gamma q', no forcing: q(t) = e^{-gamma t/2}(q0 cos wt + B sin wt)
    k, gamma, h, n = 2.0, 0.4, 0.01, 500
    dyn = _quadratic_langevin(1, k, gamma, 0.7)
    q0, v0 = 1.0, -0.3
    states = np.asarray(_rollout(dyn, jnp.array([q0, v0]), jnp.zeros((n, 1)), h))
    t = h * np.arange(1, n + 1)
    w = np.sqrt(k - gamma**2 / 4)
    q = np.exp(-gamma * t / 2) * (q0 * np.cos(w * t) + (v0 + gamma * q0 / 2) / w * np.sin(w * t))
    # BAOAB is second order: the global error is O(h^2) ~ 1e-4
    np.testing.assert_allclose(states[:, 0], q, atol=5e-4)
    # energy 0.5 v^2 + U(q) decays like e^{-gamma t} on average; never grows over a period
    E = 0.5 * states[:, 1] ** 2 + 0.5 * k * states[:, 0] ** 2
    period = int(2 * np.pi / w / h)
    assert np.all(E[period:] < E[:-period])
    assert E[-1] == pytest.approx(E[0] * np.exp(-gamma * t[-1]), rel=0.3)


def test_langevin_coupled_mean_and_covariance_match_linear_sde(x64):
    # d = 2 coupled oscillators with forcing: the mean follows the linear ODE exactly
    # (expm of the drift matrix), the covariance the Lyapunov ODE; BAOAB error O(h^2)
    k, c, gamma, sigma, h, n, m = 1.5, 0.8, 0.5, 0.6, 0.02, 100, 4000
    dyn = _quadratic_langevin(2, k, gamma, sigma, c=c)
    co = dyn.coefficients()
    np.testing.assert_allclose(co["k"], [k, k])
    np.testing.assert_allclose(co["c"], [c])
    K = np.array([[k + c, -c], [-c, k + c]])
    F = np.block([[np.zeros((2, 2)), np.eye(2)], [-K, -gamma * np.eye(2)]])
    x0 = np.array([1.0, -0.5, 0.2, 0.4])
    noise = jax.random.normal(jax.random.PRNGKey(3), (m, n, 2))
    paths = jax.vmap(lambda z: _rollout(dyn, jnp.asarray(x0), z, h))(noise)
    xT = np.asarray(paths[:, -1])
    T = n * h
    mean = expm(F * T) @ x0
    se = xT.std(0) / np.sqrt(m)
    assert np.all(np.abs(xT.mean(0) - mean) < 4 * se + 1e-3)
    # covariance from Van Loan-free quadrature of int e^{Fs} L L^T e^{F^T s} ds
    LLt = np.diag([0, 0, sigma**2, sigma**2])
    s = np.linspace(0, T, 2001)
    integrand = np.stack([expm(F * u) @ LLt @ expm(F * u).T for u in s])
    cov = np.trapezoid(integrand, s, axis=0)
    var_se = np.sqrt(2 / m) * np.diag(cov)
    assert np.all(np.abs(xT.var(0) - np.diag(cov)) < 4 * var_se + 2e-3)


def test_langevin_potential_gradient_includes_mlp(x64):
    dyn = LangevinDynamics(3, jax.random.PRNGKey(1), mlp_scale=0.3)
    q = jnp.array([0.3, -0.2, 0.5])
    co = dyn.coefficients()
    quad = 0.5 * jnp.sum(co["k"] * q**2) + 0.5 * jnp.sum(co["c"] * jnp.diff(q) ** 2)
    assert dyn.potential(q) == pytest.approx(float(quad + 0.3 * dyn.mlp(q)))


# --------------------------------------------------------------------------------------
# Lorenz data
# --------------------------------------------------------------------------------------


def test_lorenz_matches_solve_ivp(x64):
    x0 = np.array([1.0, 2.0, 20.0])
    dt, n = 0.002, 500
    ours = np.asarray(lf.lorenz_trajectory(x0, n, dt))

    def rhs(t, x):
        return [10 * (x[1] - x[0]), x[0] * (28 - x[2]) - x[1], x[0] * x[1] - 8 / 3 * x[2]]

    ref = solve_ivp(rhs, (0, n * dt), x0, t_eval=dt * np.arange(n + 1), rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(ours, ref.y.T, atol=1e-5)


def test_lorenz_stays_on_attractor_and_is_chaotic(x64):
    a = np.asarray(lf.lorenz_trajectory(np.array([1.0, 1.0, 1.0]), 20000, 0.005))[4000:]
    assert np.all(np.abs(a[:, 0]) < 25) and np.all(np.abs(a[:, 1]) < 30)
    assert np.all((a[:, 2] > 0) & (a[:, 2] < 55))
    # nearby starts separate at roughly the leading Lyapunov exponent (~0.9)
    b = np.asarray(lf.lorenz_trajectory(a[0] + np.array([1e-8, 0, 0]), 2000, 0.005))
    sep = np.linalg.norm(b - a[:2001], axis=1)
    rate = np.log(sep[1600] / sep[400]) / (1200 * 0.005)
    assert 0.4 < rate < 1.6


def test_simulate_lorenz_population():
    d = lf.simulate_lorenz_population(3, 6, 20, 9)
    assert d.spikes.shape == d.rates.shape == (6, 20, 9)
    assert d.latents.shape == (6, 20, 3)
    assert np.all(np.abs(d.latents) <= 1.0)
    np.testing.assert_allclose(d.rates, np.exp(d.latents @ d.readout.T + d.bias))
    np.testing.assert_allclose(d.bias, np.log(15.0 * 0.02))
    assert d.spikes.dtype == np.int32 and d.spikes.min() >= 0
    with pytest.raises(ValueError, match="num_neurons"):
        lf.simulate_lorenz_population(0, 2, 10, 0)
    with pytest.raises(ValueError, match="base_rate"):
        lf.simulate_lorenz_population(0, 2, 10, 3, base_rate=-1.0)


# --------------------------------------------------------------------------------------
# model: ELBO, training, forecasts
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    d = lf.simulate_lorenz_population(0, 24, 16, 10)
    return d, d.spikes[:, :12, :8]


@pytest.mark.parametrize("kind", ["langevin", "lds", "latent_sde"])
def test_elbo_finite(tiny, kind):
    d, y_in = tiny
    m = lf.make_model(kind, 8, 10, jax.random.PRNGKey(0), hidden_size=8)
    val = eqx.filter_jit(lf.elbo)(m, jax.random.PRNGKey(1), y_in, d.spikes)
    assert np.isfinite(float(val))
    # with KL weight 0 the value is the expected log-likelihood, larger than the ELBO
    val0 = eqx.filter_jit(lf.elbo)(m, jax.random.PRNGKey(1), y_in, d.spikes, 0.0)
    assert float(val0) > float(val)


@pytest.mark.slow  # end-to-end fit, also run by a README section or a --smoke study
def test_fit_increases_elbo_and_forecast_shapes(tiny):
    d, y_in = tiny
    m0 = lf.make_model(
        "langevin", 8, 10, jax.random.PRNGKey(0), hidden_size=8, mean_counts=d.spikes.mean((0, 1))
    )
    m1, losses = lf.train(
        m0, jax.random.PRNGKey(2), y_in, d.spikes, num_steps=40, batch_size=8, kl_warmup=0.0
    )
    assert losses.shape == (40,) and np.all(np.isfinite(losses))
    f = eqx.filter_jit(lambda m, k: lf.elbo(m, k, y_in, d.spikes))
    keys = jax.random.split(jax.random.PRNGKey(9), 8)
    before = np.mean([float(f(m0, k)) for k in keys])
    after = np.mean([float(f(m1, k)) for k in keys])
    assert after > before
    assert np.mean(losses[-10:]) < np.mean(losses[:10])

    p = lf.predict(m1, jax.random.PRNGKey(3), y_in[:5], 16, num_samples=3)
    assert p.rates.shape == (5, 16, 10)
    assert p.rate_samples.shape == (3, 5, 16, 10)
    assert p.state_samples.shape == (3, 5, 16, 6)
    np.testing.assert_allclose(p.rates, p.rate_samples.mean(0), rtol=1e-6)
    assert np.all(p.rates > 0)
    # forecast draws differ after the observed window (prior forcing), agree at bin 0 only in law
    assert np.std(p.state_samples[:, 0, -1], axis=0).min() > 0

    with pytest.raises(ValueError, match="num_timesteps"):
        lf.predict(m1, jax.random.PRNGKey(3), y_in, 10)
    with pytest.raises(ValueError, match="encoder reads 8"):
        lf.predict(m1, jax.random.PRNGKey(3), d.spikes[:, :12], 16)
    with pytest.raises(ValueError, match="non-negative"):
        lf.predict(m1, jax.random.PRNGKey(3), -y_in, 16)


def test_make_model_bad_input():
    with pytest.raises(ValueError, match="dynamics"):
        lf.make_model("gru", 3, 4, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="hidden_size"):
        lf.make_model("lds", 3, 4, jax.random.PRNGKey(0), hidden_size=0)
    with pytest.raises(ValueError, match="mean_counts"):
        lf.make_model("lds", 3, 4, jax.random.PRNGKey(0), mean_counts=np.ones(3))
    m = lf.make_model("lds", 3, 4, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="spikes must have shape"):
        lf.train(m, jax.random.PRNGKey(0), np.ones((2, 5, 3)), np.ones((3, 5, 4)), num_steps=1)
