"""probdyn.models.double_well: densities, switching statistics and NUTS on the latent path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import MCMC, NUTS
from numpyro.infer.util import log_density
from scipy import integrate, stats

from probdyn.models import double_well as dw

TIMES = np.array([0.0, 0.7, 1.5, 2.0, 3.2])


def _euler_path(x0, z, times, theta, sigma, substeps):
    """Reference Euler-Maruyama path, a plain Python loop."""
    xs = [x0]
    k = 0
    for a, b in zip(times[:-1], times[1:], strict=True):
        dt = (b - a) / substeps
        for _ in range(substeps):
            x = xs[-1]
            xs.append(x + (theta * x - x**3) * dt + sigma * np.sqrt(dt) * z[k])
            k += 1
    return np.array(xs)


def _euler_log_prob(path, times, theta, sigma, substeps):
    total, k = 0.0, 0
    for a, b in zip(times[:-1], times[1:], strict=True):
        dt = (b - a) / substeps
        for _ in range(substeps):
            x, x1 = path[k], path[k + 1]
            total += stats.norm.logpdf(x1, x + (theta * x - x**3) * dt, sigma * np.sqrt(dt))
            k += 1
    return total


def _prior(lt, ls):
    return stats.norm.logpdf(lt, 0, 1) + stats.norm.logpdf(ls, np.log(0.5), 0.75)


def test_forward_log_density_matches_reference(x64):
    S, obs = 3, 0.2
    rng = np.random.default_rng(0)
    T = len(TIMES)
    y = rng.normal(size=T)
    p = {
        "log_theta": 0.3,
        "log_sigma": -0.4,
        "x_path_init": np.array([0.8]),
        "x_path_noise": rng.normal(size=((T - 1) * S, 1)),
    }
    kw = {"y": jnp.asarray(y), "obs_scale": obs, "substeps": S, "parametrisation": "forward"}
    lp, tr = log_density(dw.model, (jnp.asarray(TIMES),), kw, jax.tree.map(jnp.asarray, p))
    theta, sigma = np.exp(0.3), np.exp(-0.4)
    path = _euler_path(0.8, p["x_path_noise"][:, 0], TIMES, theta, sigma, S)
    x = path[::S]
    ref = (
        _prior(0.3, -0.4)
        + stats.norm.logpdf(0.8)
        + stats.norm.logpdf(p["x_path_noise"]).sum()
        + stats.norm.logpdf(y, x, obs).sum()
    )
    np.testing.assert_allclose(float(lp), ref, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(tr["x"]["value"]), x, rtol=1e-10)


def _mdb_path(s, z, times, sigma, S):
    """Reference modified diffusion bridge, built sequentially; returns (path, log-Jacobian)."""
    xs, log_j = [s[0]], 0.0
    for k in range(len(times) - 1):
        dt = (times[k + 1] - times[k]) / S
        x = s[k]
        for j in range(S - 1):
            scale = sigma * np.sqrt(dt * (S - j - 1) / (S - j))
            x = x + (s[k + 1] - x) / (S - j) + scale * z[k, j]
            log_j += np.log(scale)
            xs.append(x)
        xs.append(s[k + 1])
    return np.array(xs), log_j


@pytest.mark.parametrize("infer_obs", [False, True])
def test_bridge_log_density_is_the_euler_density(x64, infer_obs):
    # in (state, bridge_noise) coordinates the model is the Euler model: its density is the
    # Euler path density of the bridge path times the Jacobian of noise -> path
    S, T = 4, len(TIMES)
    rng = np.random.default_rng(1)
    y = rng.normal(size=T)
    s = rng.normal(size=T)
    z = rng.normal(size=(T - 1, S - 1))
    p = {"log_theta": -0.2, "log_sigma": -0.6, "state": s, "bridge_noise": z}
    obs = 0.25
    if infer_obs:
        p["obs_scale"] = obs
    kw = {"y": jnp.asarray(y), "obs_scale": None if infer_obs else obs, "substeps": S}
    lp, _ = log_density(dw.model, (jnp.asarray(TIMES),), kw, jax.tree.map(jnp.asarray, p))
    theta, sigma = np.exp(-0.2), np.exp(-0.6)
    path, log_j = _mdb_path(s, z, TIMES, sigma, S)
    ref = (
        _prior(-0.2, -0.6)
        + stats.norm.logpdf(s[0])
        + _euler_log_prob(path, TIMES, theta, sigma, S)
        + log_j
        + stats.norm.logpdf(y, s, obs).sum()
    )
    if infer_obs:
        ref += stats.halfnorm.logpdf(obs, scale=0.5)
    np.testing.assert_allclose(float(lp), ref, rtol=1e-10)
    got, log_det = dw.bridge_path(s, z, TIMES, sigma, S)
    np.testing.assert_allclose(np.asarray(got), path, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(float(log_det), log_j, rtol=1e-10)


def test_switching_rate_matches_quadrature(x64):
    def ref(th, sg, c):
        b, um = 2 / sg**2, -(th**2) / 4

        def U(x):
            return -th * x * x / 2 + x**4 / 4

        def inner(y):
            f = lambda z: np.exp(-b * (U(z) - um))  # noqa: E731
            return integrate.quad(f, -np.inf, y, epsabs=0, epsrel=1e-11)[0]

        g = lambda y: np.exp(b * (U(y) - um)) * inner(y)  # noqa: E731
        return 1 / (b * integrate.quad(g, -c, c, epsabs=0, epsrel=1e-11)[0])

    th = np.array([1.0, 1.5, 0.7])
    sg = np.array([0.6, 0.8, 0.4])
    got = dw.switching_rate(th, sg, 0.5)
    assert got.shape == (3,)
    want = [ref(a, b, 0.5) for a, b in zip(th, sg, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(dw.switching_rate(1.0, 0.6, 0.3), ref(1.0, 0.6, 0.3), rtol=1e-5)


def test_kramers_is_the_small_noise_limit():
    # Kramers' rate is asymptotic: the relative error of the exact rate shrinks with sigma
    sg = np.array([0.35, 0.25, 0.15])
    err = np.abs(dw.switching_rate(1.0, sg) / dw.kramers_rate(1.0, sg) - 1)
    assert np.all(np.diff(err) < 0)
    assert err[-1] < 0.02
    np.testing.assert_allclose(
        dw.kramers_rate(2.0, 1.0), np.sqrt(4 * 2) / (2 * np.pi) * np.exp(-1 / (1 / 2))
    )


def test_count_switches_matches_a_loop():
    rng = np.random.default_rng(2)
    paths = np.cumsum(rng.normal(scale=0.3, size=(20, 300)), axis=-1)

    def loop(x, c=0.5):
        well, n = 0, 0
        for v in x:
            side = 1 if v > c else (-1 if v < -c else 0)
            if side and well and side != well:
                n += 1
            if side:
                well = side
        return n

    got = dw.count_switches(paths)
    assert got.shape == (20,)
    np.testing.assert_array_equal(got, [loop(p) for p in paths])
    assert got.sum() > 20  # the test exercises switches
    assert dw.count_switches(np.array([0.0, -0.6, 0.4, -0.4, 0.6, 0.0, -0.7])) == 2


def test_simulated_switching_rate_matches_exact():
    # Euler at dt = 0.01, switches counted every 0.1, against the first-passage integral
    # with the continuity correction: Monte Carlo error from 200 independent paths, plus 3%
    # for the Euler bias and the O(dt) error of the correction
    n, horizon, sub = 200, 400.0, 10
    grid = jnp.arange(0.0, horizon + 0.05, 0.1)
    keys = jax.random.split(jax.random.PRNGKey(3), n)
    params = dw.TRUE_PARAMS

    def one(key):
        return dw.K_.simulate(key, dw.SDE, jnp.array([-1.0]), grid, params, substeps=sub)[:, 0]

    rates = dw.count_switches(np.asarray(jax.jit(jax.vmap(one))(keys))) / horizon
    se = rates.std(ddof=1) / np.sqrt(n)
    exact = dw.switching_rate(params["theta"], params["sigma"], monitor_dt=0.1)
    assert abs(rates.mean() - exact) < 4 * se + 0.03 * exact, (rates.mean(), exact, se)
    # without the correction the counted rate is clearly lower (touches are missed)
    assert rates.mean() + 4 * se < dw.switching_rate(params["theta"], params["sigma"])


def test_bad_input():
    t = jnp.asarray(TIMES)
    y = jnp.zeros(len(TIMES))
    with pytest.raises(ValueError, match="times"):
        dw.model(jnp.array([0.0, 1.0, 0.5]), y[:3])
    with pytest.raises(ValueError, match="y must have shape"):
        dw.model(t, y[:3])
    with pytest.raises(ValueError, match="parametrisation"):
        dw.model(t, y, parametrisation="centred")
    with pytest.raises(ValueError, match="substeps"):
        dw.model(t, y, substeps=1)
    with pytest.raises(ValueError, match="obs_scale"):
        dw.model(t, y, obs_scale=-1.0)
    with pytest.raises(ValueError, match="needs observations"):
        dw.model(t)
    with pytest.raises(ValueError, match="noise must have shape"):
        dw.bridge_path(y, jnp.zeros((len(TIMES) - 1, 2)), t, 0.5, 4)
    with pytest.raises(ValueError, match="sigma"):
        dw.kramers_rate(1.0, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        dw.count_switches(np.array([0.0, np.nan]))


def _nuts(times, y, S, num_chains, num, seed):
    mcmc = MCMC(
        NUTS(dw.model),
        num_warmup=num,
        num_samples=num,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(seed), times, y, substeps=S, extra_fields=("diverging",))
    return mcmc


@pytest.mark.slow  # end-to-end fit, also run by a README section or a --smoke study
def test_nuts_smoke_and_forward_prior_draws():
    times = jnp.arange(0.0, 11.0)
    _, _, y = dw.simulate_data(jax.random.PRNGKey(0), times, substeps=5)
    mcmc = _nuts(times, y, 5, 1, 100, 1)
    s = mcmc.get_samples()
    assert s["x"].shape == (100, 11) and s["bridge_noise"].shape == (100, 10, 4)
    assert np.all(np.isfinite(s["theta"])) and int(mcmc.get_extra_fields()["diverging"].sum()) == 0
    from numpyro.infer import Predictive

    prior = Predictive(dw.model, num_samples=3)(
        jax.random.PRNGKey(2), times, substeps=5, parametrisation="forward"
    )
    assert prior["y"].shape == (3, 11) and prior["x_path_noise"].shape == (3, 50, 1)


@pytest.mark.slow
def test_nuts_recovers_truth_at_default_settings():
    # data from the model's own Euler grid; 4 chains x 1000 draws at NUTS's defaults
    S = 5
    times = jnp.arange(0.0, 31.0)
    _, _, y = dw.simulate_data(jax.random.PRNGKey(10), times, substeps=S)
    mcmc = _nuts(times, y, S, 4, 1000, 11)
    assert int(mcmc.get_extra_fields()["diverging"].sum()) == 0
    from numpyro.diagnostics import summary

    sm = summary(mcmc.get_samples(group_by_chain=True), prob=0.9)
    for name in ("log_theta", "log_sigma", "state", "bridge_noise"):
        assert np.max(sm[name]["r_hat"]) < 1.01, name
    for name in ("theta", "sigma"):
        lo, hi = sm[name]["5.0%"], sm[name]["95.0%"]
        assert lo <= dw.TRUE_PARAMS[name] <= hi, (name, lo, hi)
