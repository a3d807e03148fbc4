"""probdyn.models.lorenz: the stochastic Lorenz generator and the latent-SDE builder."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from numpyro import handlers
from numpyro.infer import SVI
from scipy.integrate import solve_ivp

from probdyn.infer.latent_sde import LatentSDE, LatentSDEELBO
from probdyn.kernels import sde as K_
from probdyn.models import lorenz as lz
from probdyn.nn import DiagonalDiffusionNet, PriorDriftMLP


def _lorenz_numpy(y, a):
    x1, x2, x3 = y
    return np.array([a[0] * (x2 - x1), a[1] * x1 - x2 - x1 * x3, x1 * x2 - a[2] * x3])


def test_drift_and_diffusion_match_formulas():
    rng = np.random.default_rng(0)
    a = np.array([9.0, 27.0, 2.5])
    b = np.array([0.2, 0.1, 0.4])
    for y in rng.normal(scale=8.0, size=(5, 3)):
        p = {"drift": a, "diffusion": b}
        f = np.asarray(lz.lorenz_drift(0.3, jnp.asarray(y), p))
        g = np.asarray(lz.lorenz_diffusion(0.3, jnp.asarray(y), p))
        np.testing.assert_allclose(f, _lorenz_numpy(y, a), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(g, b * y, rtol=1e-6)
    assert lz.SDE.noise == "diagonal" and lz.SDE.sde_type == "ito"
    np.testing.assert_allclose(lz.TRUE_PARAMS["drift"], [10.0, 28.0, 8.0 / 3.0])
    np.testing.assert_allclose(lz.TRUE_PARAMS["diffusion"], [0.1, 0.28, 0.3])


def test_one_euler_step_has_the_sde_moments(x64):
    # y' = y + f(y) h + g(y) sqrt(h) z exactly: mean y + f h, variance (b * y)^2 h
    y0 = jnp.array([1.5, -2.0, 20.0])
    h, n = 0.01, 20000
    times = jnp.array([0.0, h])
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    p = lz.TRUE_PARAMS
    ends = jax.vmap(lambda k: K_.simulate(k, lz.SDE, y0, times, p, solver="euler")[-1])(keys)
    ends = np.asarray(ends)
    y = np.asarray(y0)
    sd = lz.TRUE_PARAMS["diffusion"] * np.abs(y) * np.sqrt(h)
    mean = y + _lorenz_numpy(y, lz.TRUE_PARAMS["drift"]) * h
    assert np.all(np.abs(ends.mean(0) - mean) < 4 * sd / np.sqrt(n))
    assert np.all(np.abs(ends.var(0) / sd**2 - 1) < 4 * np.sqrt(2 / n))
    # the drift moves the mean by many standard errors (the test could fail)
    assert np.all(np.abs(mean - y) > 20 * sd / np.sqrt(n))


def test_zero_diffusion_matches_solve_ivp_with_first_order_error(x64):
    times = np.linspace(0.0, 0.25, 6)
    p = {"drift": lz.TRUE_PARAMS["drift"], "diffusion": np.zeros(3)}
    key = jax.random.PRNGKey(3)
    errs = []
    for substeps in (200, 400, 800):
        paths = np.asarray(lz.simulate_lorenz(key, 3, times, params=p, substeps=substeps))
        err = 0.0
        for path in paths:
            ref = solve_ivp(
                lambda t, y: _lorenz_numpy(y, p["drift"]),
                (0.0, 0.25),
                path[0],
                t_eval=times,
                rtol=1e-11,
                atol=1e-11,
                method="DOP853",
            ).y.T
            err = max(err, np.max(np.abs(path - ref)))
        errs.append(err / np.max(np.abs(ref)))
    # Euler (= Milstein without noise) converges with order 1: halving dt halves the error
    ratios = np.array(errs[1:]) / np.array(errs[:-1])
    assert np.all((ratios > 0.4) & (ratios < 0.6)), (errs, ratios)
    assert errs[-1] < 2e-3, errs


def test_simulate_lorenz_is_the_kernel_with_normal_initial_states(x64):
    times = np.linspace(0.0, 0.2, 5)
    key = jax.random.PRNGKey(1)
    paths = lz.simulate_lorenz(key, 4, times, substeps=5)
    k0, k1 = jax.random.split(key)
    y0 = jax.random.normal(k0, (4, 3))
    keys = jax.random.split(k1, 4)
    for i in range(4):
        ref = K_.simulate(
            keys[i], lz.SDE, y0[i], times, lz.TRUE_PARAMS, solver="milstein", substeps=5
        )
        np.testing.assert_allclose(paths[i], ref, rtol=1e-12)
    # the initial states are standard normal
    first = np.asarray(lz.simulate_lorenz(key, 4000, times[:2], substeps=1))[:, 0]
    assert np.all(np.abs(first.mean(0)) < 4 / np.sqrt(4000))
    assert np.all(np.abs(first.std(0) - 1) < 4 / np.sqrt(2 * 4000))


def test_normalise_and_denormalise():
    rng = np.random.default_rng(1)
    xs = rng.normal(loc=[1.0, -3.0, 20.0], scale=[2.0, 5.0, 9.0], size=(7, 11, 3))
    out, mean, std = lz.normalise(xs)
    np.testing.assert_allclose(mean, xs.reshape(-1, 3).mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, xs.reshape(-1, 3).std(0, ddof=1), rtol=1e-5)
    flat = np.asarray(out).reshape(-1, 3)
    np.testing.assert_allclose(flat.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(flat.std(0, ddof=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(lz.denormalise(out, mean, std), xs, rtol=1e-5, atol=1e-5)
    other = rng.normal(size=(2, 4, 3))
    out2, m2, s2 = lz.normalise(other, mean, std)
    np.testing.assert_allclose(out2, (other - np.asarray(mean)) / np.asarray(std), rtol=1e-5)
    np.testing.assert_array_equal(m2, mean)
    with pytest.raises(ValueError, match="xs has shape"):
        lz.normalise(xs[0])
    with pytest.raises(ValueError, match="both mean and std"):
        lz.normalise(xs, mean=mean)
    with pytest.raises(ValueError, match="mean/std"):
        lz.normalise(xs, mean[:2], std[:2])


def test_make_dataset():
    data = lz.make_dataset(
        jax.random.PRNGKey(0), 96, 16, num_timesteps=20, t1=1.0, obs_noise=0.05, substeps=10
    )
    assert data.times.shape == (20,) and data.times[0] == 0.0 and data.times[-1] == 1.0
    assert data.train.shape == (96, 20, 3) and data.test.shape == (16, 20, 3)
    clean = data.train_clean.reshape(-1, 3)
    np.testing.assert_allclose(clean.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(clean.std(0, ddof=1), 1.0, rtol=1e-4)
    # the test set uses the training constants, so its statistics differ slightly
    assert not np.allclose(data.test_clean.reshape(-1, 3).mean(0), 0.0, atol=1e-4)
    # raw states: the paths start at the N(0, I) initial states
    raw0 = np.asarray(lz.denormalise(data.train_clean[:, 0], data.mean, data.std))
    assert np.all(np.abs(raw0.mean(0)) < 4 / np.sqrt(96))
    noise = np.concatenate([(data.train - data.train_clean), (data.test - data.test_clean)])
    n = noise.size
    assert abs(noise.std() / 0.05 - 1) < 4 / np.sqrt(2 * n)
    assert abs(noise.mean()) < 4 * 0.05 / np.sqrt(n)
    again = lz.make_dataset(
        jax.random.PRNGKey(0), 96, 16, num_timesteps=20, t1=1.0, obs_noise=0.05, substeps=10
    )
    np.testing.assert_array_equal(again.test, data.test)
    with pytest.raises(ValueError, match="t1"):
        lz.make_dataset(jax.random.PRNGKey(0), 4, 2, t1=0.0)
    with pytest.raises(ValueError, match="obs_noise"):
        lz.make_dataset(jax.random.PRNGKey(0), 4, 2, obs_noise=-1.0)
    with pytest.raises(TypeError, match="num_train"):
        lz.make_dataset(jax.random.PRNGKey(0), 4.0, 2)


def test_simulate_lorenz_bad_input():
    key = jax.random.PRNGKey(0)
    t = np.linspace(0, 1, 3)
    with pytest.raises(ValueError, match="num_paths"):
        lz.simulate_lorenz(key, 0, t)
    with pytest.raises(ValueError, match="drift"):
        lz.simulate_lorenz(key, 2, t, params={"drift": [1.0, 2.0], "diffusion": [0, 0, 0]})
    with pytest.raises(ValueError, match="diffusion"):
        lz.simulate_lorenz(key, 2, t, params={"drift": [1, 2, 3], "diffusion": [-1, 0, 0]})
    with pytest.raises(ValueError, match="solver"):
        lz.simulate_lorenz(key, 2, t, solver="heun")
    with pytest.raises(ValueError, match="times"):
        lz.simulate_lorenz(key, 2, np.array([0.0, 1.0, 0.5]))


def test_diffusion_net_is_positive_and_diagonal():
    g = DiagonalDiffusionNet(4, 8, key=jax.random.PRNGKey(0))
    z = jax.random.normal(jax.random.PRNGKey(1), (4,)) * 3
    out = g(0.0, z)
    assert out.shape == (4,) and np.all(np.asarray(out) > 0) and np.all(np.asarray(out) < 1)
    jac = np.asarray(jax.jacfwd(lambda x: g(0.0, x))(z))
    np.testing.assert_array_equal(jac - np.diag(np.diag(jac)), 0.0)
    assert np.all(np.abs(np.diag(jac)) > 0)
    # coordinate i of g is the i-th one-dimensional network, evaluated by hand
    i = 2
    hidden = np.log1p(np.exp(np.asarray(g.w1[i]) * float(z[i]) + np.asarray(g.b1[i])))
    pre = hidden @ np.asarray(g.w2[i]) + float(g.b2[i])
    np.testing.assert_allclose(out[i], 1e-3 + (1 - 1e-3) / (1 + np.exp(-pre)), rtol=1e-5)
    drift = PriorDriftMLP(4, 8, key=jax.random.PRNGKey(2))
    assert drift(0.0, z).shape == (4,)


@pytest.mark.slow  # end-to-end fit, also run by a README section or a --smoke study
def test_build_latent_sde_shapes_and_one_svi_step():
    times = np.linspace(0.0, 1.0, 8)
    ys = jnp.asarray(np.random.default_rng(0).normal(size=(10, 8, 3)), jnp.float32)
    sde = lz.build_latent_sde(
        jax.random.PRNGKey(0), times, hidden_size=16, context_dim=8, encoder_size=8
    )
    assert isinstance(sde, LatentSDE)
    assert sde.state_dim == 4 and sde.obs_dim == 3 and sde.likelihood == "laplace"
    assert sde.obs_scale == lz.OBS_NOISE
    np.testing.assert_allclose(sde.dt, (times[1] - times[0]) / 2)
    model_tr = handlers.trace(handlers.seed(sde.model, 0)).get_trace(times, ys, batch_size=4)
    assert model_tr["z"]["value"].shape == (4, 8, 4)
    assert model_tr["y"]["value"].shape == (4, 8, 3)
    assert model_tr["y"]["scale"] == pytest.approx(10 / 4)
    guide_tr = handlers.trace(handlers.seed(sde.guide, 1)).get_trace(times, ys)
    assert guide_tr["z"]["value"].shape == (10, 8, 4)
    kl = np.asarray(guide_tr["z"]["fn"].log_density)
    assert kl.shape == (10,) and np.all(kl >= 0)
    svi = SVI(sde.model, sde.guide, optax.adam(1e-3), LatentSDEELBO(2))
    state = svi.init(jax.random.PRNGKey(3), times, ys, batch_size=4)
    params = svi.get_params(state)
    assert {"prior_drift$params", "diffusion$params", "posterior_drift$params"} <= set(params)
    assert {"encoder$params", "readout$params"} <= set(params)
    state, loss = jax.jit(lambda s: svi.update(s, times, ys, batch_size=4))(state)
    assert np.isfinite(float(loss))
    with pytest.raises(ValueError, match="times"):
        lz.build_latent_sde(jax.random.PRNGKey(0), np.array([0.0]))
    with pytest.raises(TypeError, match="state_dim"):
        lz.build_latent_sde(jax.random.PRNGKey(0), times, state_dim=2.5)
