"""Pseudo-spectral ETDRK4 solvers against the exact Cole-Hopf solution and invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from probdyn.models import pde

SERIES = pde.SineSeries(
    amplitudes=jnp.array([0.4, -0.3, 0.25]),
    wavenumbers=jnp.array([1, 2, 3]),
    phases=jnp.array([0.3, 1.7, 4.0]),
)
TWO_PI = 2 * np.pi


def _burgers(num_points, dt, t_end, viscosity=0.2, num_timesteps=2):
    x = pde.grid(num_points, TWO_PI)
    u0 = pde.sine_series(SERIES, jnp.asarray(x), TWO_PI)
    steps = int(round(t_end / dt / (num_timesteps - 1)))
    u = pde.solve(
        "burgers",
        u0,
        dt=dt,
        num_timesteps=num_timesteps,
        length=TWO_PI,
        viscosity=viscosity,
        save_every=steps,
    )
    times = np.arange(num_timesteps) * steps * dt
    return x, times, np.asarray(u)


def test_etdrk4_coefficients_limits_and_direct_formula():
    h = 0.5
    lin = np.array([0.0, -1e-9, -50.0, 30j, -4.0 + 3j])
    c = pde.etdrk4_coefficients(lin, h)
    # z -> 0: Q = h/2 and f1 = f2 = f3 = h/6 (Taylor limits, where the direct formula cancels).
    for coef, limit in [(c.q, h / 2), (c.f1, h / 6), (c.f2, h / 6), (c.f3, h / 6)]:
        np.testing.assert_allclose(coef[:2], limit, rtol=1e-9)
    # |z| large: the direct formulas of Cox & Matthews are accurate there.
    z = h * lin[2:]
    ez = np.exp(z)
    np.testing.assert_allclose(c.q[2:], h * (np.exp(z / 2) - 1) / z, rtol=1e-12)
    np.testing.assert_allclose(c.f1[2:], h * (-4 - z + ez * (4 - 3 * z + z**2)) / z**3, rtol=1e-11)
    np.testing.assert_allclose(c.f2[2:], h * (2 + z + ez * (z - 2)) / z**3, rtol=1e-11)
    np.testing.assert_allclose(c.f3[2:], h * (-4 - 3 * z - z**2 + ez * (4 - z)) / z**3, rtol=1e-11)
    np.testing.assert_allclose(c.e, np.exp(h * lin))


@pytest.fixture(scope="module")
def burgers_dt_series():
    """Burgers on 64 points to t = 1 with dt = 0.1, 0.05, 0.025 (float64) and Cole-Hopf."""
    prev = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", True)
    try:
        runs = [_burgers(64, dt, 1.0, num_timesteps=6) for dt in (0.1, 0.05, 0.025)]
        x, times = runs[0][0], runs[0][1]
        exact = pde.burgers_cole_hopf(SERIES, x, times, length=TWO_PI, viscosity=0.2)
    finally:
        jax.config.update("jax_enable_x64", prev)
    return times, exact, [r[2] for r in runs]


def test_burgers_matches_cole_hopf(burgers_dt_series):
    _, exact, runs = burgers_dt_series
    assert np.abs(exact[-1] - exact[0]).max() > 0.1  # the solution does move
    np.testing.assert_allclose(runs[-1], exact, atol=2e-7)


def test_etdrk4_is_fourth_order_in_time(burgers_dt_series):
    _, exact, runs = burgers_dt_series
    errors = np.array([np.abs(u[-1] - exact[-1]).max() for u in runs])
    orders = np.log2(errors[:-1] / errors[1:])
    assert np.all(np.abs(orders - 4) < 0.4), orders


def test_spectral_convergence_in_space(x64):
    # Exponential convergence: doubling then tripling the grid cuts the error by > 50x each
    # time; an algebraic order p = 4 would give only (1/2)^4 = 0.06 and (2/3)^4 = 0.2.
    errors = []
    for n in (16, 32, 48):
        x, times, u = _burgers(n, 0.025, 1.0)
        exact = pde.burgers_cole_hopf(SERIES, x, times[-1:], length=TWO_PI, viscosity=0.2)
        errors.append(np.abs(u[-1] - exact[0]).max())
    errors = np.array(errors)
    assert np.all(errors[1:] / errors[:-1] < 0.02), errors
    assert errors[-1] < 1e-6


@pytest.mark.slow
def test_burgers_steep_front_matches_cole_hopf(x64):
    # A smaller viscosity: a steep front that 128 points still resolve.
    x, times, u = _burgers(128, 0.005, 1.5, viscosity=0.05, num_timesteps=4)
    exact = pde.burgers_cole_hopf(SERIES, x, times, length=TWO_PI, viscosity=0.05)
    assert np.abs(np.diff(exact[-1])).max() / (x[1] - x[0]) > 2.0  # steep gradient
    np.testing.assert_allclose(u, exact, atol=1e-5)


@pytest.mark.slow
def test_ks_fourth_order_against_fine_step(x64):
    # The stiff case (k^4): the contour-integral coefficients keep the order at 4.
    length = 64.0
    u0 = pde.sine_series(SERIES, jnp.asarray(pde.grid(64, length)), length)

    def final(dt):
        return pde.solve(
            "ks", u0, dt=dt, num_timesteps=2, length=length, save_every=int(round(8 / dt))
        )[-1]

    ref = final(0.0125)
    errors = np.array([np.abs(final(dt) - ref).max() for dt in (0.4, 0.2, 0.1)])
    orders = np.log2(errors[:-1] / errors[1:])
    assert np.all(np.abs(orders - 4) < 0.4), orders


@pytest.mark.parametrize("equation, length", [("ks", 64.0), ("kdv", 128.0)])
def test_matches_method_of_lines_with_scipy(x64, equation, length):
    # Independent reference for the signs and symbols of KS and KdV: the PDE written in
    # physical space with NumPy FFT derivatives, (u^2)_x de-aliased by the same 2/3 rule,
    # integrated by scipy's DOP853 at tight tolerances.
    n = 64
    u0 = np.asarray(pde.sine_series(SERIES, jnp.asarray(pde.grid(n, length)), length))
    k = 2 * np.pi / length * np.fft.fftfreq(n, 1.0 / n)
    m = np.abs(np.fft.fftfreq(n, 1.0 / n))
    keep = (m <= n // 3) & (m < n // 2)

    def deriv(u, p):
        return np.real(np.fft.ifft((1j * k) ** p * np.fft.fft(u)))

    def rhs(t, u):
        flux = -0.5 * np.real(np.fft.ifft(keep * 1j * k * np.fft.fft(u * u)))
        if equation == "ks":
            return flux - deriv(u, 2) - deriv(u, 4)
        return flux - deriv(u, 3)

    ref = solve_ivp(rhs, (0.0, 5.0), u0, method="DOP853", rtol=1e-11, atol=1e-12).y[:, -1]
    u = pde.solve(equation, u0, dt=0.01, num_timesteps=2, length=length, save_every=500)[-1]
    assert np.abs(ref - u0).max() > 0.2  # the field evolves
    np.testing.assert_allclose(u, ref, atol=1e-9)


@pytest.mark.parametrize("equation, length", [("ks", 64.0), ("kdv", 128.0)])
def test_mean_is_conserved(x64, equation, length):
    u0 = pde.sine_series(SERIES, jnp.asarray(pde.grid(64, length)), length) + 0.3
    u = pde.solve(equation, u0, dt=0.1, num_timesteps=3, length=length, save_every=50)
    assert np.abs(u[-1] - u[0]).max() > 0.1  # the field evolves
    np.testing.assert_allclose(u.mean(axis=-1), 0.3, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_kdv_conserves_energy(x64):
    # KdV also conserves the L2 norm; the de-aliased Galerkin truncation keeps it exactly, so
    # the drift is the time-stepping error only.
    length = 128.0
    u0 = 2 * pde.sine_series(SERIES, jnp.asarray(pde.grid(128, length)), length)
    u = pde.solve("kdv", u0, dt=0.02, num_timesteps=5, length=length, save_every=250)
    energy = np.mean(np.asarray(u) ** 2, axis=-1)
    np.testing.assert_allclose(energy, energy[0], rtol=1e-7)


@pytest.fixture(scope="module")
def burgers_data():
    return pde.make_dataset(jax.random.PRNGKey(0), "burgers", 8, num_points=64, num_timesteps=6)


def test_make_dataset_shapes_and_exactness(burgers_data):
    d = burgers_data
    assert d.u.shape == (8, 6, 64) and d.u.dtype == jnp.float32
    np.testing.assert_allclose(d.times, np.arange(6) * 0.1)
    np.testing.assert_allclose(d.x, np.arange(64) * TWO_PI / 64)
    assert d.initial_conditions.amplitudes.shape == (8, 5)
    for i in (0, 5):
        series = jax.tree.map(lambda a, i=i: a[i], d.initial_conditions)
        exact = pde.burgers_cole_hopf(series, d.x, d.times, length=d.length, viscosity=d.viscosity)
        np.testing.assert_allclose(d.u[i], exact, atol=2e-5)
    amps = np.asarray(d.initial_conditions.amplitudes)
    assert np.all(np.abs(amps) <= 0.5) and amps.std() > 0.1
    assert set(np.unique(d.initial_conditions.wavenumbers)) <= {1, 2, 3}


@pytest.mark.slow
@pytest.mark.parametrize("equation", ["ks", "kdv"])
def test_make_dataset_ks_kdv(equation):
    d = pde.make_dataset(jax.random.PRNGKey(1), equation, 3, num_points=64, num_timesteps=4)
    assert d.u.shape == (3, 4, 64)
    assert np.all(np.isfinite(d.u))
    np.testing.assert_allclose(np.asarray(d.u).mean(-1), 0.0, atol=1e-5)
    assert not np.allclose(d.u[0], d.u[1])


def test_burn_in_skips_the_start(burgers_data):
    d = pde.make_dataset(
        jax.random.PRNGKey(0), "burgers", 8, num_points=64, num_timesteps=4, burn_in=2
    )
    np.testing.assert_allclose(d.times, [0.2, 0.3, 0.4, 0.5])
    np.testing.assert_allclose(d.u, burgers_data.u[:, 2:], atol=1e-6)


def test_invalid_arguments():
    u0 = jnp.zeros(16)
    with pytest.raises(ValueError, match="equation"):
        pde.solve("heat", u0, dt=0.1, num_timesteps=2, length=1.0)
    with pytest.raises(ValueError, match="viscosity"):
        pde.solve("burgers", u0, dt=0.1, num_timesteps=2, length=1.0)
    with pytest.raises(ValueError, match="num_points must be even"):
        pde.solve("ks", jnp.zeros(15), dt=0.1, num_timesteps=2, length=1.0)
    with pytest.raises(ValueError, match="u0 must have shape"):
        pde.solve("ks", jnp.zeros((2, 16)), dt=0.1, num_timesteps=2, length=1.0)
    with pytest.raises(ValueError, match="dt"):
        pde.solve("ks", u0, dt=-0.1, num_timesteps=2, length=1.0)
    with pytest.raises(TypeError, match="num_trajectories"):
        pde.make_dataset(jax.random.PRNGKey(0), "ks", 2.5)
    with pytest.raises(ValueError, match="num_quadrature"):
        pde.burgers_cole_hopf(SERIES, [0.0], [1e-6], length=TWO_PI, viscosity=0.01)
