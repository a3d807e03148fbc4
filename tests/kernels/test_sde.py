"""Tests for probdyn.kernels.sde against closed forms, scipy and convergence theory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import scipy.stats

from probdyn.kernels import sde as S

GBM = S.SDE(lambda t, y, p: p["mu"] * y, lambda t, y, p: p["sigma"] * y)
GBM_STRAT = S.SDE(
    lambda t, y, p: p["mu"] * y, lambda t, y, p: p["sigma"] * y, sde_type="stratonovich"
)


def _brownian(key, num_paths, num_fine, T=1.0):
    return np.asarray(jax.random.normal(key, (num_paths, num_fine))) * np.sqrt(T / num_fine)


def _terminal_errors(sde, solver, dW_fine, exact, params, steps_list):
    """Mean absolute terminal error for each number of coarse steps (same Brownian paths)."""
    errs = []
    num_paths, num_fine = dW_fine.shape
    for k in steps_list:
        h = 1.0 / k
        dW = dW_fine.reshape(num_paths, k, num_fine // k).sum(-1)
        z = jnp.asarray(dW / np.sqrt(h))[..., None]
        times = jnp.linspace(0.0, 1.0, k + 1)

        def run(zz, times=times):
            return S.simulate_from_noise(sde, jnp.ones(1), times, params, zz, solver=solver)

        yT = np.asarray(jax.jit(jax.vmap(run))(z))[:, -1, 0]
        errs.append(np.mean(np.abs(yT - exact)))
    return np.array(errs)


def _slope(steps_list, errs):
    return np.polyfit(np.log(1.0 / np.asarray(steps_list)), np.log(errs), 1)[0]


@pytest.mark.parametrize("solver, order", [("euler", 0.5), ("milstein", 1.0)])
def test_strong_order_gbm(x64, solver, order):
    p = {"mu": 0.5, "sigma": 1.0}
    dW = _brownian(jax.random.PRNGKey(0), 400, 512)
    WT = dW.sum(-1)
    exact = np.exp((p["mu"] - 0.5 * p["sigma"] ** 2) + p["sigma"] * WT)
    steps = [8, 16, 32, 64, 128]
    errs = _terminal_errors(GBM, solver, dW, exact, p, steps)
    assert np.all(np.diff(errs) < 0)
    assert abs(_slope(steps, errs) - order) < 0.2
    assert S.SOLVERS[solver].strong_order == order


def test_heun_converges_to_stratonovich_solution(x64):
    p = {"mu": 0.5, "sigma": 1.0}
    dW = _brownian(jax.random.PRNGKey(1), 400, 512)
    exact = np.exp(p["mu"] + p["sigma"] * dW.sum(-1))  # Stratonovich GBM closed form
    steps = [8, 16, 32, 64, 128]
    errs = _terminal_errors(GBM_STRAT, "heun", dW, exact, p, steps)
    # 1-D noise is commutative: strong order 1
    assert abs(_slope(steps, errs) - 1.0) < 0.25
    assert errs[-1] < 0.02
    # the Ito solution differs by exp(sigma^2 / 2): Heun is not converging to it
    ito = np.exp((p["mu"] - 0.5) + p["sigma"] * dW.sum(-1))
    assert np.mean(np.abs(exact - ito)) > 20 * errs[-1]
    # Milstein in Stratonovich form converges to the same solution
    errs_m = _terminal_errors(GBM_STRAT, "milstein", dW, exact, p, [32, 128])
    assert errs_m[1] < errs_m[0] < 0.1


def test_weak_order_euler_gbm_mean(x64):
    """EM mean of GBM is y0 (1 + mu h)^N exactly; its bias against e^{mu T} is O(h)."""
    p = {"mu": 1.0, "sigma": 0.5}
    n = 20000
    keys = jax.random.split(jax.random.PRNGKey(2), n)
    biases, ses = [], []
    for k in (4, 8):
        times = jnp.linspace(0.0, 1.0, k + 1)
        run = jax.jit(jax.vmap(lambda kk, t=times: S.simulate(kk, GBM, jnp.ones(1), t, p)[-1, 0]))
        yT = np.asarray(run(keys))
        se = yT.std() / np.sqrt(n)
        em_mean = (1.0 + p["mu"] / k) ** k
        assert abs(yT.mean() - em_mean) < 4 * se
        biases.append(np.exp(p["mu"]) - yT.mean())
        ses.append(se)
    ratio = biases[0] / biases[1]
    assert 1.5 < ratio < 2.5  # halving dt halves the weak error


def test_weak_ou_variance(x64):
    """EM on OU: sample variance at T matches the EM variance recursion, and its error
    against the exact variance is O(dt)."""
    theta, sigma = 2.0, 1.0
    ou = S.SDE(lambda t, y, p: -theta * y, lambda t, y, p: sigma * jnp.ones_like(y))
    n = 40000
    for k, tol_ratio in ((4, None), (8, None)):
        h = 1.0 / k
        times = jnp.linspace(0.0, 1.0, k + 1)
        yT = np.asarray(S.simulate(jax.random.PRNGKey(k), ou, jnp.zeros(n), times, None)[-1])
        v = 0.0
        for _ in range(k):
            v = (1 - theta * h) ** 2 * v + sigma**2 * h
        se = v * np.sqrt(2.0 / (n - 1))
        assert abs(yT.var() - v) < 4 * se
        del tol_ratio
    exact = sigma**2 / (2 * theta) * (1 - np.exp(-2 * theta))
    e4 = abs((lambda h: sum((1 - theta * h) ** (2 * j) for j in range(4)) * h)(0.25) - exact)
    e8 = abs((lambda h: sum((1 - theta * h) ** (2 * j) for j in range(8)) * h)(0.125) - exact)
    assert 1.5 < e4 / e8 < 3.0


# --------------------------------------------------------------------------- exact LTI


def test_exact_ou_transition_closed_form(x64):
    theta, mu, sigma, dt = np.array([0.7, 3.0]), np.array([1.0, -2.0]), np.array([0.5, 2.0]), 0.37
    Phi, c, Q = S.lti_transition(-np.diag(theta), theta * mu, np.diag(sigma), dt)
    e = np.exp(-theta * dt)
    np.testing.assert_allclose(Phi, np.diag(e), rtol=1e-12)
    np.testing.assert_allclose(c, mu * (1 - e), rtol=1e-12)
    np.testing.assert_allclose(Q, np.diag(sigma**2 / (2 * theta) * (1 - e**2)), rtol=1e-10)


def _random_stable_lti(rng, D=3, M=2):
    A = rng.normal(size=(D, D)) - 2.5 * np.eye(D)
    assert np.all(np.linalg.eigvals(A).real < 0)
    return A, rng.normal(size=D), rng.normal(size=(D, M))


def test_van_loan_vs_scipy_quadrature(x64):
    A, b, L = _random_stable_lti(np.random.default_rng(0))
    dt = 0.8
    Phi, c, Q = S.lti_transition(A, b, L, dt)
    E = lambda s: scipy.linalg.expm(A * s)  # noqa: E731
    c_ref = scipy.integrate.quad_vec(lambda s: E(s) @ b, 0, dt, epsabs=1e-13)[0]
    Q_ref = scipy.integrate.quad_vec(lambda s: E(s) @ L @ L.T @ E(s).T, 0, dt, epsabs=1e-13)[0]
    np.testing.assert_allclose(Phi, E(dt), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(c, c_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(Q, Q_ref, rtol=1e-9, atol=1e-12)
    # stationary form agrees: Q = P_inf - Phi P_inf Phi^T
    P = scipy.linalg.solve_continuous_lyapunov(A, -L @ L.T)
    np.testing.assert_allclose(S.stationary_covariance(A, L), P, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(Q, P - E(dt) @ P @ E(dt).T, rtol=1e-9, atol=1e-12)


def test_exact_simulation_moments_and_density(x64):
    A, b, L = _random_stable_lti(np.random.default_rng(1))
    p = {"A": jnp.asarray(A), "b": jnp.asarray(b), "L": jnp.asarray(L)}
    lti = S.lti_sde()
    times = jnp.array([0.0, 0.3, 1.1, 1.5])
    y0 = jnp.array([1.0, -1.0, 0.5])
    n = 20000
    keys = jax.random.split(jax.random.PRNGKey(3), n)
    paths = jax.vmap(lambda k: S.simulate(k, lti, y0, times, p, solver="exact"))(keys)
    yT = np.asarray(paths[:, -1])
    # closed-form marginal at T from t0 = 0 via scipy
    T = 1.5
    mean = scipy.linalg.expm(A * T) @ y0 + np.linalg.solve(
        A, (scipy.linalg.expm(A * T) - np.eye(3)) @ b
    )
    E = lambda s: scipy.linalg.expm(A * s)  # noqa: E731
    cov = scipy.integrate.quad_vec(lambda s: E(s) @ L @ L.T @ E(s).T, 0, T, epsabs=1e-12)[0]
    se = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(yT.mean(0) - mean) < 4 * se)
    np.testing.assert_allclose(np.cov(yT.T), cov, atol=4 * np.sqrt(2.0 / n) * np.max(cov))
    # exact path density = sum of scipy Gaussian transitions
    path = np.asarray(paths[0])
    ref = 0.0
    for i in range(3):
        dt = float(times[i + 1] - times[i])
        m = E(dt) @ path[i] + np.linalg.solve(A, (E(dt) - np.eye(3)) @ b)
        Q = scipy.integrate.quad_vec(lambda s: E(s) @ L @ L.T @ E(s).T, 0, dt, epsabs=1e-13)[0]
        ref += scipy.stats.multivariate_normal(m, Q).logpdf(path[i + 1])
    lp = S.path_log_prob(lti, path, times, p, solver="exact")
    np.testing.assert_allclose(lp, ref, rtol=1e-8)
    # Euler on the same LTI runs too (general noise)
    assert S.simulate(keys[0], lti, y0, times, p, solver="euler", substeps=4).shape == (4, 3)


# --------------------------------------------------------------------------- Langevin


def test_baoab_harmonic_stationary_variance_at_large_step(x64):
    k, beta, gamma, h = 1.0, 2.0, 1.0, 1.5
    lang = S.langevin_sde(lambda q, p: p["k"] * q)
    p = {"k": k, "gamma": gamma, "beta": beta}
    times = jnp.arange(201) * h
    n = 4000
    keys = jax.random.split(jax.random.PRNGKey(4), n)

    def final_q(solver):
        run = jax.vmap(lambda kk: S.simulate(kk, lang, jnp.zeros(2), times, p, solver=solver))
        return np.asarray(jax.jit(run)(keys))[:, -1, 0]

    q = final_q("baoab")
    var = 1.0 / (beta * k)
    se = var * np.sqrt(2.0 / (n - 1))
    assert abs(q.var() - var) < 4 * se
    assert abs(q.mean()) < 4 * np.sqrt(var / n)
    # Euler-Maruyama at the same step is unstable (spectral radius sqrt(1.75) > 1)
    with np.errstate(over="ignore", invalid="ignore"):
        q_em = final_q("euler")
        assert not np.isfinite(q_em.var()) or q_em.var() > 100 * var


# --------------------------------------------------------------------------- densities


def _np_em_logpdf(path, times, f, g_cov):
    out = 0.0
    for i in range(len(times) - 1):
        dt = times[i + 1] - times[i]
        m = path[i] + f(times[i], path[i]) * dt
        out += scipy.stats.multivariate_normal(m, g_cov(times[i], path[i]) * dt).logpdf(path[i + 1])
    return out


@pytest.mark.parametrize("noise", ["diagonal", "scalar", "general"])
def test_path_log_prob_vs_scipy(x64, noise):
    rng = np.random.default_rng(5)
    D = 2
    W = rng.normal(size=(D, D))
    G = rng.normal(size=(D, 3))
    f = lambda t, y: np.sin(y) - 0.3 * y + t  # noqa: E731
    if noise == "diagonal":
        g = lambda t, y, p: 0.5 + 0.1 * y**2  # noqa: E731
        gc = lambda t, y: np.diag((0.5 + 0.1 * y**2) ** 2)  # noqa: E731
    elif noise == "scalar":
        g = lambda t, y, p: 0.3 + jnp.sum(y**2)  # noqa: E731
        gc = lambda t, y: (0.3 + np.sum(y**2)) ** 2 * np.eye(D)  # noqa: E731
    else:
        g = lambda t, y, p: jnp.asarray(G) * (1.0 + 0.1 * y[0])  # noqa: E731
        gc = lambda t, y: (G @ G.T) * (1.0 + 0.1 * y[0]) ** 2  # noqa: E731
    sde = S.SDE(lambda t, y, p: jnp.sin(y) - 0.3 * y + t, g, noise=noise)
    times = np.array([0.0, 0.1, 0.35, 0.4, 1.0])
    path = rng.normal(size=(5, D)) @ W
    lp = S.path_log_prob(sde, path, times, None)
    np.testing.assert_allclose(lp, _np_em_logpdf(path, times, f, gc), rtol=1e-10)


def test_simulate_shapes_substeps_and_batching():
    sde = S.SDE(lambda t, y, p: -y, lambda t, y, p: 0.5 * jnp.ones_like(y))
    times = jnp.array([0.0, 0.5, 0.7, 2.0])
    y0 = jnp.ones(2)
    key = jax.random.PRNGKey(0)
    full = S.simulate(key, sde, y0, times, None, substeps=3, save_substeps=True)
    obs = S.simulate(key, sde, y0, times, None, substeps=3)
    assert full.shape == (10, 2) and obs.shape == (4, 2)
    np.testing.assert_allclose(full[::3], obs, rtol=1e-6)
    grid = S.refine_times(times, 3)
    np.testing.assert_allclose(grid[::3], times)
    np.testing.assert_allclose(np.diff(grid)[3:6], 0.2 / 3, rtol=1e-6)
    # from noise: same as simulate with the same draws, and a hand loop of EM steps
    z = jax.random.normal(key, (9, 2))
    path = S.simulate_from_noise(sde, y0, times, None, z, substeps=3, save_substeps=True)
    y, ref = np.ones(2), [np.ones(2)]
    for n in range(9):
        dt = float(grid[n + 1] - grid[n])
        y = y - y * dt + 0.5 * np.sqrt(dt) * np.asarray(z[n])
        ref.append(y)
    np.testing.assert_allclose(path, np.array(ref), rtol=1e-5)
    np.testing.assert_allclose(
        S.step("euler", sde, 0.0, y0, 0.25, z[0], None), y0 - 0.25 * y0 + 0.25 * z[0], rtol=1e-6
    )
    # jit + vmap over keys agrees with single calls
    keys = jax.random.split(key, 3)
    run = jax.jit(jax.vmap(lambda k: S.simulate(k, sde, y0, times, None, substeps=2)))
    np.testing.assert_allclose(
        run(keys)[1], S.simulate(keys[1], sde, y0, times, None, substeps=2), rtol=1e-6
    )


def test_gradients_through_simulation_and_density(x64):
    sde = S.SDE(lambda t, y, p: -p["theta"] * y, lambda t, y, p: p["sigma"] * jnp.ones_like(y))
    times = jnp.linspace(0.0, 1.0, 6)
    z = jax.random.normal(jax.random.PRNGKey(0), (5, 1))

    def f(theta):
        p = {"theta": theta, "sigma": 0.3}
        return jnp.sum(S.simulate_from_noise(sde, jnp.ones(1), times, p, z, solver="milstein"))

    g = jax.grad(f)(1.2)
    fd = (f(1.2 + 1e-6) - f(1.2 - 1e-6)) / 2e-6
    np.testing.assert_allclose(g, fd, rtol=1e-6)
    path = S.simulate_from_noise(sde, jnp.ones(1), times, {"theta": 1.0, "sigma": 0.3}, z)

    def lp(theta):
        return S.path_log_prob(sde, path, times, {"theta": theta, "sigma": 0.3})

    fd = (lp(1.2 + 1e-6) - lp(1.2 - 1e-6)) / 2e-6
    np.testing.assert_allclose(jax.grad(lp)(1.2), fd, rtol=1e-6)


# --------------------------------------------------------------------------- bad input


def test_bad_input_errors():
    sde = S.SDE(lambda t, y, p: -y, lambda t, y, p: jnp.ones_like(y))
    key, y0 = jax.random.PRNGKey(0), jnp.ones(2)
    with pytest.raises(ValueError, match="times must be strictly increasing"):
        S.simulate(key, sde, y0, jnp.array([0.0, 1.0, 1.0]), None)
    with pytest.raises(ValueError, match="times must have shape"):
        S.simulate(key, sde, y0, jnp.array([0.0]), None)
    for bad in (-1, 0, 1.5, True):
        with pytest.raises(ValueError, match="substeps must be a positive int"):
            S.simulate(key, sde, y0, jnp.array([0.0, 1.0]), None, substeps=bad)
    bad_drift = S.SDE(lambda t, y, p: jnp.ones(3), lambda t, y, p: jnp.ones_like(y))
    with pytest.raises(ValueError, match="drift must return shape"):
        S.simulate(key, bad_drift, y0, jnp.array([0.0, 1.0]), None)
    bad_diff = S.SDE(lambda t, y, p: -y, lambda t, y, p: jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="diffusion must return shape"):
        S.simulate(key, bad_diff, y0, jnp.array([0.0, 1.0]), None)
    with pytest.raises(ValueError, match="y0 must have shape"):
        S.simulate(key, sde, jnp.ones((2, 2)), jnp.array([0.0, 1.0]), None)
    with pytest.raises(ValueError, match="dt must be positive"):
        S.step("euler", sde, 0.0, y0, 0.0, jnp.zeros(2), None)
    with pytest.raises(ValueError, match="dt must be positive"):
        S.lti_transition(-np.eye(2), np.zeros(2), np.eye(2), -0.1)
    with pytest.raises(ValueError, match="solver='heun' needs sde.sde_type"):
        S.simulate(key, sde, y0, jnp.array([0.0, 1.0]), None, solver="heun")
    with pytest.raises(ValueError, match="solver must be one of"):
        S.simulate(key, sde, y0, jnp.array([0.0, 1.0]), None, solver="rk4")
    with pytest.raises(ValueError, match="noise must have shape"):
        S.simulate_from_noise(sde, y0, jnp.array([0.0, 1.0]), None, jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match="noise must be one of"):
        S.SDE(lambda t, y, p: y, lambda t, y, p: y, noise="full")
    with pytest.raises(ValueError, match="L must have shape"):
        S.lti_transition(-np.eye(2), np.zeros(2), np.eye(3), 0.1)
    with pytest.raises(ValueError, match="path must have shape"):
        S.path_log_prob(sde, jnp.zeros((3, 2)), jnp.array([0.0, 1.0]), None)
