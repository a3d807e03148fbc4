"""Tests for probdyn.processes.sde: SDEPath, sde_path, LinearSDE (Kalman)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import scipy.linalg
import scipy.stats
from numpyro import handlers
from numpyro.infer import MCMC, NUTS
from numpyro.infer.util import log_density

import probdyn
from probdyn.kernels import sde as S
from probdyn.processes.sde import LinearSDE, SDEPath, sde_path
from probdyn.report import summary

NONLIN = S.SDE(
    lambda t, y, p: p["a"] * jnp.sin(y) - y,
    lambda t, y, p: p["s"] * (1.0 + 0.2 * jnp.cos(y)),
)
PARAMS = {"a": 0.8, "s": 0.4}


def _np_em_path_logpdf(path, grid, a, s):
    out = 0.0
    for i in range(len(grid) - 1):
        dt = grid[i + 1] - grid[i]
        y = path[i]
        m = y + (a * np.sin(y) - y) * dt
        sd = s * (1 + 0.2 * np.cos(y)) * np.sqrt(dt)
        out += scipy.stats.norm(m, sd).logpdf(path[i + 1]).sum()
    return out


def test_sdepath_log_prob_vs_scipy_with_substeps(x64):
    times = jnp.array([0.0, 0.3, 0.5, 1.2])
    init = dist.Normal(jnp.zeros(2), 1.0).to_event(1)
    d = SDEPath(NONLIN, init, times, PARAMS, substeps=2)
    assert d.event_shape == (7, 2) and d.batch_shape == ()
    path = np.random.default_rng(0).normal(size=(3, 7, 2))
    lp = d.log_prob(path)
    assert lp.shape == (3,)
    grid = np.array([0.0, 0.15, 0.3, 0.4, 0.5, 0.85, 1.2])
    np.testing.assert_allclose(d.grid, grid, rtol=1e-12)
    for i in range(3):
        ref = _np_em_path_logpdf(path[i], grid, 0.8, 0.4)
        ref += scipy.stats.norm(0, 1).logpdf(path[i, 0]).sum()
        np.testing.assert_allclose(lp[i], ref, rtol=1e-10)


def test_sdepath_matches_numpyro_euler_maruyama(x64):
    times = jnp.array([0.0, 0.2, 0.5, 0.6, 1.0])
    init = dist.Normal(jnp.array([0.1, -0.2]), 0.5).to_event(1)

    def sde_fn(y, t):
        return 0.8 * jnp.sin(y) - y, 0.4 * (1.0 + 0.2 * jnp.cos(y))

    ref = dist.EulerMaruyama(times, sde_fn, init)
    ours = SDEPath(NONLIN, init, times, PARAMS)
    path = ref.sample(jax.random.PRNGKey(0), (4,))
    np.testing.assert_allclose(ours.log_prob(path), ref.log_prob(path), rtol=1e-10)


def test_sdepath_sample_goodness_of_fit(x64):
    """Standardised EM increments of sampled paths are iid N(0, 1) (KS test)."""
    times = jnp.array([0.0, 0.1, 0.45, 0.5, 1.0])
    init = dist.Normal(jnp.zeros(1), 1.0).to_event(1)
    d = SDEPath(NONLIN, init, times, PARAMS, substeps=3)
    paths = np.asarray(d.sample(jax.random.PRNGKey(1), (500,)))
    assert paths.shape == (500, 13, 1)
    grid = np.asarray(d.grid)
    dt = np.diff(grid)[None, :, None]
    y = paths[:, :-1]
    z = (paths[:, 1:] - y - (0.8 * np.sin(y) - y) * dt) / (
        0.4 * (1 + 0.2 * np.cos(y)) * np.sqrt(dt)
    )
    assert scipy.stats.kstest(z.ravel(), "norm").pvalue > 0.01
    assert scipy.stats.kstest(paths[:, 0, 0], "norm").pvalue > 0.01
    # batched initial states broadcast into the batch shape
    db = SDEPath(NONLIN, jnp.zeros((3, 1)), times, PARAMS)
    assert db.batch_shape == (3,)
    assert db.sample(jax.random.PRNGKey(2), (2,)).shape == (2, 3, 5, 1)
    assert db.log_prob(db.sample(jax.random.PRNGKey(2))).shape == (3,)


def test_sdepath_exact_linear(x64):
    theta, mu, sigma = 1.5, 0.5, 0.7
    p = {"A": -theta * jnp.eye(1), "b": theta * mu * jnp.ones(1), "L": sigma * jnp.eye(1)}
    times = jnp.array([0.0, 0.4, 2.0, 2.1])
    d = SDEPath(S.lti_sde(), jnp.zeros(1), times, p, solver="exact")
    path = np.asarray(d.sample(jax.random.PRNGKey(0), (2000,)))[..., 0]
    ref = np.zeros(2000)
    for i in range(3):
        dt = float(times[i + 1] - times[i])
        e = np.exp(-theta * dt)
        m = mu + (path[:, i] - mu) * e
        v = sigma**2 / (2 * theta) * (1 - e**2)
        ref += scipy.stats.norm(m, np.sqrt(v)).logpdf(path[:, i + 1])
        z = (path[:, i + 1] - m) / np.sqrt(v)
        assert scipy.stats.kstest(z, "norm").pvalue > 0.01
    np.testing.assert_allclose(d.log_prob(path[..., None]), ref, rtol=1e-9)


def test_sdepath_under_jit_and_grad(x64):
    times = jnp.linspace(0.0, 1.0, 6)
    path = SDEPath(NONLIN, jnp.zeros(1), times, PARAMS).sample(jax.random.PRNGKey(0))

    def lp(a):
        return SDEPath(NONLIN, jnp.zeros(1), times, {"a": a, "s": 0.4}).log_prob(path)

    g = jax.jit(jax.grad(lp))(0.8)
    # the distribution is a pytree: it crosses a jit boundary
    d = SDEPath(NONLIN, jnp.zeros(1), times, PARAMS)
    np.testing.assert_allclose(jax.jit(lambda d, v: d.log_prob(v))(d, path), lp(0.8), rtol=1e-12)
    fd = (lp(0.8 + 1e-6) - lp(0.8 - 1e-6)) / 2e-6
    np.testing.assert_allclose(g, fd, rtol=1e-6)


def test_sdepath_bad_input():
    times = jnp.array([0.0, 1.0])
    with pytest.raises(ValueError, match="solver must be 'euler' or 'exact'"):
        SDEPath(NONLIN, jnp.zeros(1), times, PARAMS, solver="milstein")
    with pytest.raises(ValueError, match="initial must be a distribution with event shape"):
        SDEPath(NONLIN, dist.Normal(0.0, 1.0), times, PARAMS)
    with pytest.raises(ValueError, match="times must be strictly increasing"):
        SDEPath(NONLIN, jnp.zeros(1), jnp.array([0.0, 2.0, 1.0]), PARAMS)
    with pytest.raises(ValueError, match="substeps must be a positive int"):
        SDEPath(NONLIN, jnp.zeros(1), times, PARAMS, substeps=-2)
    d = SDEPath(NONLIN, jnp.zeros(1), times, PARAMS)
    with pytest.raises(ValueError, match="value must have shape"):
        d.log_prob(jnp.zeros((3, 1)))


# --------------------------------------------------------------------------- sde_path


OU = S.SDE(
    lambda t, y, p: -p["theta"] * y,
    lambda t, y, p: p["sigma"] * jnp.ones_like(y),
)


def test_sde_path_deterministic_and_density(x64):
    times = jnp.array([0.0, 0.5, 0.8, 2.0])
    init = dist.Normal(jnp.zeros(1), 2.0).to_event(1)
    p = {"theta": 1.3, "sigma": 0.6}

    def model():
        return sde_path("x", OU, init, times, p, solver="milstein", substeps=2)

    tr = handlers.trace(handlers.seed(model, 0)).get_trace()
    assert tr["x_noise"]["value"].shape == (6, 1)
    ref = S.simulate_from_noise(
        OU, tr["x_init"]["value"], times, p, tr["x_noise"]["value"], solver="milstein", substeps=2
    )
    np.testing.assert_allclose(tr["x"]["value"], ref, rtol=1e-12)
    assert tr["x"]["type"] == "deterministic" and tr["x"]["value"].shape == (4, 1)
    values = {"x_init": tr["x_init"]["value"], "x_noise": tr["x_noise"]["value"]}
    ld, _ = log_density(model, (), {}, values)
    expected = scipy.stats.norm(0, 2).logpdf(values["x_init"]).sum()
    expected += scipy.stats.norm(0, 1).logpdf(values["x_noise"]).sum()
    np.testing.assert_allclose(ld, expected, rtol=1e-12)


def test_sde_path_in_plate():
    times = jnp.linspace(0.0, 1.0, 4)

    def model():
        with numpyro.plate("series", 3):
            return sde_path("x", OU, jnp.zeros(1), times, {"theta": 1.0, "sigma": 0.5})

    tr = handlers.trace(handlers.seed(model, 0)).get_trace()
    assert tr["x_noise"]["value"].shape == (3, 3, 1)
    assert tr["x"]["value"].shape == (3, 4, 1)
    one = S.simulate_from_noise(
        OU, jnp.zeros(1), times, {"theta": 1.0, "sigma": 0.5}, tr["x_noise"]["value"][2]
    )
    np.testing.assert_allclose(tr["x"]["value"][2], one, rtol=1e-6)


def test_sde_path_nuts_ou_smoke():
    times = jnp.linspace(0.0, 5.0, 21)
    true = S.simulate(jax.random.PRNGKey(0), OU, jnp.ones(1), times, {"theta": 1.0, "sigma": 0.5})
    y = true[:, 0] + 0.1 * jax.random.normal(jax.random.PRNGKey(1), (21,))

    def model(y):
        theta = numpyro.sample("theta", dist.LogNormal(0.0, 0.5))
        sigma = numpyro.sample("sigma", dist.LogNormal(-0.5, 0.5))
        init = dist.Normal(jnp.zeros(1), 1.0).to_event(1)
        x = sde_path("x", OU, init, times, {"theta": theta, "sigma": sigma})
        numpyro.sample("y", dist.Normal(x[:, 0], 0.1), obs=y)

    idata = probdyn.fit(model, y, num_warmup=60, num_samples=60, num_chains=1, seed=2,
                        coords={"time": np.asarray(times)})  # fmt: skip
    x = idata.posterior["x"]
    assert x.dims == ("chain", "draw", "time", "x_state") and x.shape == (1, 60, 21, 1)
    np.testing.assert_allclose(x["time"].values, times)  # coords["time"] is used
    assert np.all(np.isfinite(idata.posterior["theta"])) and np.all(np.isfinite(x))
    assert float(idata.sample_stats["diverging"].mean()) < 0.2
    # the 20 noise increments are kept but left out of the summary unless asked for
    rows = list(summary(idata).table.index)
    assert not any(r.startswith("x_noise") for r in rows) and "theta" in rows
    assert len(summary(idata, var_names=["x_noise"]).table) == 20


# --------------------------------------------------------------------------- LinearSDE


def _matern(nu, r, ell, var):
    if nu == 0.5:
        return var * np.exp(-r / ell)
    if nu == 1.5:
        a = np.sqrt(3) * r / ell
        return var * (1 + a) * np.exp(-a)
    a = np.sqrt(5) * r / ell
    return var * (1 + a + a**2 / 3) * np.exp(-a)


TIMES = np.array([0.0, 0.3, 0.35, 1.1, 2.9, 3.0, 4.5])


@pytest.mark.parametrize("nu", [0.5, 1.5, 2.5])
def test_matern_kalman_vs_dense_gp(x64, nu):
    ell, var, obs = 0.8, 1.7, 0.3
    d = LinearSDE.matern(nu, ell, var, TIMES, obs)
    y = np.random.default_rng(1).normal(size=(len(TIMES), 1))
    K = _matern(nu, np.abs(TIMES[:, None] - TIMES[None]), ell, var) + obs**2 * np.eye(7)
    ref = scipy.stats.multivariate_normal(np.zeros(7), K).logpdf(y[:, 0])
    np.testing.assert_allclose(d.log_prob(y), ref, rtol=1e-9)
    # the state-space stationary covariance starts at the kernel variance
    np.testing.assert_allclose(d.initial_cov[0, 0], var, rtol=1e-10)

    if nu != 1.5:
        return

    @jax.jit
    def f(theta):
        return LinearSDE.matern(nu, theta[0], theta[1], TIMES, theta[2]).log_prob(y)

    th = jnp.array([ell, var, obs])
    g = jax.jit(jax.grad(f))(th)
    for i in range(3):
        e = jnp.zeros(3).at[i].set(1e-6)
        np.testing.assert_allclose(g[i], (f(th + e) - f(th - e)) / 2e-6, rtol=1e-5)


def test_ou_kalman_vs_dense_and_nonstationary_start(x64):
    theta, mu, sigma, obs = 1.2, 0.7, 0.9, 0.25
    d = LinearSDE.ou(theta, mu, sigma, TIMES, obs)
    y = np.random.default_rng(2).normal(size=(2, len(TIMES), 1))
    r = np.abs(TIMES[:, None] - TIMES[None])
    K = sigma**2 / (2 * theta) * np.exp(-theta * r) + obs**2 * np.eye(7)
    ref = scipy.stats.multivariate_normal(mu * np.ones(7), K).logpdf(y[..., 0])
    np.testing.assert_allclose(d.log_prob(y), ref, rtol=1e-9)
    # fixed (non-stationary) start uses the Van Loan transitions: dense reference
    m0, p0 = -1.0, 0.05
    d2 = LinearSDE(
        -theta * np.eye(1),
        theta * mu * np.ones(1),
        sigma * np.eye(1),
        np.eye(1),
        obs**2 * np.eye(1),
        TIMES,
        initial_mean=m0 * np.ones(1),
        initial_cov=p0 * np.eye(1),
    )
    s, t = np.minimum.outer(TIMES, TIMES), np.maximum.outer(TIMES, TIMES)
    mean = mu + (m0 - mu) * np.exp(-theta * TIMES)
    var_s = p0 * np.exp(-2 * theta * s) + sigma**2 / (2 * theta) * (1 - np.exp(-2 * theta * s))
    K2 = var_s * np.exp(-theta * (t - s)) + obs**2 * np.eye(7)
    ref2 = scipy.stats.multivariate_normal(mean, K2).logpdf(y[0, :, 0])
    np.testing.assert_allclose(d2.log_prob(y[0]), ref2, rtol=1e-9)


def test_rts_smoother_vs_dense_conditioning(x64):
    ell, var, obs = 0.9, 1.3, 0.4
    d = LinearSDE.matern(1.5, ell, var, TIMES, obs)
    y = np.random.default_rng(3).normal(size=(len(TIMES), 1))
    res = d.smooth(y)
    # dense joint of the states (T*D) via Cov(x_i, x_j) = expm(A (t_j - t_i)) P_inf, j >= i
    A, P = np.asarray(d.A), np.asarray(d.initial_cov)
    T, D = len(TIMES), 2
    C = np.zeros((T * D, T * D))
    for i in range(T):
        for j in range(T):
            if j >= i:
                blk = (scipy.linalg.expm(A * (TIMES[j] - TIMES[i])) @ P).T
            else:
                blk = scipy.linalg.expm(A * (TIMES[i] - TIMES[j])) @ P
            C[i * D : (i + 1) * D, j * D : (j + 1) * D] = blk
    Hbig = np.kron(np.eye(T), np.array([[1.0, 0.0]]))
    S_ = Hbig @ C @ Hbig.T + obs**2 * np.eye(T)
    G = C @ Hbig.T @ np.linalg.inv(S_)
    post_mean = (G @ y[:, 0]).reshape(T, D)
    post_cov = C - G @ Hbig @ C
    np.testing.assert_allclose(res.smoothed_means, post_mean, rtol=1e-8, atol=1e-10)
    for i in range(T):
        blk = post_cov[i * D : (i + 1) * D, i * D : (i + 1) * D]
        np.testing.assert_allclose(res.smoothed_covs[i], blk, rtol=1e-7, atol=1e-10)
    # the filter's last step equals the smoother's
    f = d.filter(y)
    np.testing.assert_allclose(f.filtered_means[-1], res.smoothed_means[-1], rtol=1e-12)
    np.testing.assert_allclose(f.log_likelihood, res.log_likelihood, rtol=1e-12)


def test_linear_sde_sample_goodness_of_fit(x64):
    """Whitened samples: y^T K^-1 y ~ chi2(T) for the Matérn-3/2 + noise covariance."""
    ell, var, obs = 0.8, 1.7, 0.3
    d = LinearSDE.matern(1.5, ell, var, TIMES, obs)
    ys = np.asarray(d.sample(jax.random.PRNGKey(0), (3000,)))
    assert ys.shape == (3000, 7, 1)
    K = _matern(1.5, np.abs(TIMES[:, None] - TIMES[None]), ell, var) + obs**2 * np.eye(7)
    q = np.einsum("ni,ij,nj->n", ys[..., 0], np.linalg.inv(K), ys[..., 0])
    assert scipy.stats.kstest(q, scipy.stats.chi2(7).cdf).pvalue > 0.01


@pytest.mark.slow
def test_linear_sde_nuts_marginalised_smoke():
    y = LinearSDE.matern(1.5, 1.0, 1.0, TIMES, 0.2).sample(jax.random.PRNGKey(0))

    def model(y):
        ell = numpyro.sample("ell", dist.LogNormal(0.0, 0.5))
        var = numpyro.sample("var", dist.LogNormal(0.0, 0.5))
        numpyro.sample("y", LinearSDE.matern(1.5, ell, var, TIMES, 0.2), obs=y)

    mcmc = MCMC(NUTS(model), num_warmup=50, num_samples=50, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(1), y)
    assert np.all(np.isfinite(mcmc.get_samples()["ell"]))


def test_linear_sde_bad_input():
    with pytest.raises(ValueError, match="nu must be"):
        LinearSDE.matern(1.0, 1.0, 1.0, TIMES, 0.1)
    with pytest.raises(ValueError, match="H must have shape"):
        LinearSDE(-np.eye(2), np.zeros(2), np.eye(2), np.ones((1, 3)), np.eye(1), TIMES)
    with pytest.raises(ValueError, match="obs_cov must have shape"):
        LinearSDE(-np.eye(2), np.zeros(2), np.eye(2), np.ones((1, 2)), np.eye(2), TIMES)
    with pytest.raises(ValueError, match="times must be strictly increasing"):
        LinearSDE.ou(1.0, 0.0, 1.0, np.array([0.0, 1.0, 0.5]), 0.1)
    d = LinearSDE.ou(1.0, 0.0, 1.0, TIMES, 0.1)
    with pytest.raises(ValueError, match="value must have shape"):
        d.log_prob(np.zeros((3, 1)))
