"""Latent-SDE variational inference: path KL, gradients, SVI fits, forecasting."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from numpyro import handlers
from numpyro.infer import SVI, Predictive

import probdyn
from probdyn.infer.latent_sde import (
    KL_STEP_SITE,
    LatentSDE,
    LatentSDEELBO,
    OrnsteinUhlenbeckDrift,
    linear_kl_schedule,
)
from probdyn.nn import GRUEncoder, PosteriorDriftMLP


class LinearPosteriorDrift(eqx.Module):
    """Posterior drift -b z (ignores time and context)."""

    b: jax.Array

    def __call__(self, t, z, context):
        return -self.b * z


def _ou_sde(a, b, s, z0_loc, z0_scale, dt, **kwargs):
    return LatentSDE(
        OrnsteinUhlenbeckDrift(a, 0.0),
        LinearPosteriorDrift(jnp.asarray(b)),
        diffusion=s,
        state_dim=1,
        z0_loc=z0_loc,
        z0_scale=z0_scale,
        dt=dt,
        learn_prior=False,
        **kwargs,
    )


def _ou_closed_form(a, b, s, m_q, s_q, m_p, s_p, T, y=None, obs_scale=None):
    """KL(q || p) for OU prior (rate a) and OU posterior (rate b), same diffusion s, plus
    (when y is given) the Gaussian expected negative log-likelihood of y at time T."""
    kl0 = jnp.log(s_p / s_q) + (s_q**2 + (m_q - m_p) ** 2) / (2 * s_p**2) - 0.5
    e = 1.0 - jnp.exp(-2 * b * T)
    # E_q X_t^2 = (m^2 + v0) e^{-2bt} + s^2 (1 - e^{-2bt}) / (2b), integrated over [0, T]
    integral = (m_q**2 + s_q**2) * e / (2 * b) + s**2 / (2 * b) * (T - e / (2 * b))
    kl = kl0 + 0.5 * (a - b) ** 2 / s**2 * integral
    if y is None:
        return kl
    mean = m_q * jnp.exp(-b * T)
    var = s_q**2 * jnp.exp(-2 * b * T) + s**2 * e / (2 * b)
    nll = 0.5 * jnp.log(2 * jnp.pi * obs_scale**2) + ((y - mean) ** 2 + var) / (2 * obs_scale**2)
    return kl + nll


def test_path_kl_matches_ou_closed_form(x64):
    # dX = -a X dt + s dW (prior) vs dX = -b X dt + s dW (posterior), X_0 ~ N(m_q, s_q^2)
    a, b, s, T = 0.5, 2.0, 0.8, 1.0
    m_p, s_p, m_q, s_q = 0.2, 0.5, 1.0, 0.3
    n = 20000
    dt = 2e-3
    sde = _ou_sde(a, b, s, m_p, s_p, dt=dt, t0=0.0)
    ys = jnp.zeros((n, 1, 1))
    params = {"qz0_loc": jnp.array([m_q]), "qz0_scale": jnp.array([s_q])}
    guide = handlers.substitute(handlers.seed(sde.guide, 0), data=params)
    site = handlers.trace(guide).get_trace(np.array([T]), ys)["z"]
    kl = np.asarray(site["fn"].log_density)  # the guide's log-density of z: the KL
    assert kl.shape == (n,)
    expected = float(_ou_closed_form(a, b, s, m_q, s_q, m_p, s_p, T))
    se = kl.std() / np.sqrt(n)
    # Euler's O(dt) bias on E X^2 is ~ b dt relative
    assert abs(kl.mean() - expected) < 4 * se + 2 * b * dt * expected, (kl.mean(), expected)
    # the path term is a sizeable part of the total (else the test could not fail)
    kl0 = float(_ou_closed_form(a, a, s, m_q, s_q, m_p, s_p, T))
    assert expected - kl0 > 0.3 * kl0 and expected - kl0 > 20 * se
    # the endpoint of the posterior path has the posterior's OU marginal
    z_end = np.asarray(site["value"])[:, -1, 0]
    mean = m_q * np.exp(-b * T)
    var = s_q**2 * np.exp(-2 * b * T) + s**2 * (1 - np.exp(-2 * b * T)) / (2 * b)
    assert abs(z_end.mean() - mean) < 4 * np.sqrt(var / n)
    assert abs(z_end.var() - var) < 4 * var * np.sqrt(2 / n) + 2 * b * dt * var


def test_elbo_gradient_unbiased(x64):
    # d E[loss] / d b: averaged reparameterised gradients vs finite differences (common
    # random numbers) and vs the derivative of the closed-form expected loss.
    a, b, s, T, y, obs_scale = 0.5, 2.0, 0.8, 1.0, 0.5, 0.3
    m_p, s_p, m_q, s_q = 0.2, 0.5, 1.0, 0.3
    sde = _ou_sde(a, b, s, m_p, s_p, dt=2e-3, t0=0.0, obs_scale=obs_scale)
    times, ys = np.array([T]), jnp.full((1, 1, 1), y)
    elbo = LatentSDEELBO(num_particles=250)
    base = {"qz0_loc": jnp.array([m_q]), "qz0_scale": jnp.array([s_q])}

    def loss(b_value, key):
        params = {**base, "posterior_drift$params": LinearPosteriorDrift(b_value)}
        return elbo.loss(key, params, sde.model, sde.guide, times, ys)

    keys = jax.random.split(jax.random.PRNGKey(1), 40)
    grads = jax.jit(jax.vmap(jax.grad(loss), (None, 0)))(jnp.asarray(b), keys)
    g_mean, g_se = float(grads.mean()), float(grads.std() / np.sqrt(len(keys)))
    h = 1e-4
    fd = jax.jit(jax.vmap(lambda k: (loss(b + h, k) - loss(b - h, k)) / (2 * h)))(keys)
    np.testing.assert_allclose(g_mean, float(fd.mean()), rtol=1e-5)
    exact = float(
        jax.grad(lambda bb: _ou_closed_form(a, bb, s, m_q, s_q, m_p, s_p, T, y, obs_scale))(b)
    )
    assert abs(exact) > 10 * g_se  # the test can fail
    assert abs(g_mean - exact) < 4 * g_se + 0.02 * abs(exact), (g_mean, exact, g_se)


def test_prior_predictive_matches_ou_stationary_law():
    theta, sigma = 1.0, 0.5
    stat = sigma / np.sqrt(2 * theta)
    sde = LatentSDE(
        OrnsteinUhlenbeckDrift(theta, 0.3),
        PosteriorDriftMLP(1, width=8, key=jax.random.PRNGKey(0)),
        diffusion=sigma,
        state_dim=1,
        z0_loc=0.3,
        z0_scale=stat,
        obs_scale=0.1,
        dt=0.01,
    )
    times = np.array([0.0, 0.5, 2.0])
    draws = Predictive(sde.model, num_samples=1000)(jax.random.PRNGKey(3), times, num_sequences=4)
    z, y = np.asarray(draws["z"]), np.asarray(draws["y"])
    assert z.shape == (1000, 4, 3, 1) and y.shape == (1000, 4, 3, 1)
    n = 4000
    zs = z.reshape(n, 3)
    assert np.all(np.abs(zs.mean(0) - 0.3) < 4 * stat / np.sqrt(n))
    # Euler's stationary variance is sigma^2 / (theta (2 - theta dt)): 0.5% off
    assert np.all(np.abs(zs.var(0) / stat**2 - 1) < 4 * np.sqrt(2 / n) + 0.01)
    np.testing.assert_allclose(np.var(y - z), 0.1**2, rtol=0.1)


def test_kl_annealing_schedule_and_counter():
    schedule = linear_kl_schedule(4)
    np.testing.assert_allclose([schedule(i) for i in range(6)], [0.25, 0.5, 0.75, 1, 1, 1])
    sde = _ou_sde(0.5, 2.0, 0.8, 0.0, 1.0, dt=0.05, t0=0.0, obs_scale=0.3)
    times, ys = np.array([0.5, 1.0]), jnp.zeros((3, 2, 1))
    elbo = LatentSDEELBO(8, kl_schedule=lambda k: 0.25 * k)
    svi = SVI(sde.model, sde.guide, optax.sgd(0.0), elbo)
    state = svi.init(jax.random.PRNGKey(0), times, ys)
    assert int(state.mutable_state[KL_STEP_SITE]["step"]) == 0
    update = jax.jit(lambda st: svi.update(st, times, ys))
    for _ in range(3):
        state = update(state)[0]
    assert int(state.mutable_state[KL_STEP_SITE]["step"]) == 3

    # same key, KL weight 0, 0.5, 1 (steps 0, 2, 4): the loss is affine in the weight,
    # growing by the (positive) mean KL
    @jax.jit
    def loss_at(step):
        params = {**svi.get_params(state), KL_STEP_SITE: {"step": step}}
        return elbo.loss(jax.random.PRNGKey(5), params, sde.model, sde.guide, times, ys)

    l0, lh, l1 = (float(loss_at(jnp.int32(k))) for k in (0, 2, 4))
    assert l1 > l0 + 0.1
    np.testing.assert_allclose(lh, 0.5 * (l0 + l1), rtol=1e-5)


def test_minibatch_loss_is_unbiased():
    # E over subsamples and paths of the minibatch loss equals the full-data loss.
    key = jax.random.PRNGKey(0)
    enc = GRUEncoder(1, 1, context_dim=2, hidden_size=4, key=key)
    sde = LatentSDE(
        OrnsteinUhlenbeckDrift(1.0, 0.0),
        PosteriorDriftMLP(1, context_dim=2, width=8, key=key),
        diffusion=0.3,
        state_dim=1,
        encoder=enc,
        obs_scale=0.5,
        dt=0.05,
    )
    times = np.linspace(0.0, 1.0, 5)
    ys = jnp.asarray(np.random.RandomState(0).normal(size=(6, 5, 1)))
    svi = SVI(sde.model, sde.guide, optax.sgd(0.0), LatentSDEELBO(1))
    params = svi.get_params(svi.init(key, times, ys))
    elbo = LatentSDEELBO(1)
    keys = jax.random.split(jax.random.PRNGKey(1), 1000)

    def losses(batch_size):
        def f(k):
            return elbo.loss(k, params, sde.model, sde.guide, times, ys, batch_size=batch_size)

        return np.asarray(jax.jit(jax.vmap(f))(keys))

    full, mini = losses(None), losses(2)
    assert mini.std() > 2 * full.std()  # subsampling adds variance
    se = np.sqrt(full.var() / len(keys) + mini.var() / len(keys))
    assert abs(full.mean() - mini.mean()) < 4 * se, (full.mean(), mini.mean(), se)
    trace = handlers.trace(handlers.seed(sde.model, 0)).get_trace(times, ys, batch_size=2)
    assert trace["y"]["scale"] == pytest.approx(3.0)
    assert trace["z"]["value"].shape == (2, 5, 1)


def test_fit_sine_end_to_end():
    # the torchsde toy (small network, Normal likelihood): loss falls, the posterior
    # passes near the data, forecasts have the right shapes and stay finite
    times = np.linspace(0.4, 1.6, 12)
    ys = 0.8 * np.sin(2 * np.pi * times)[:, None]
    sde = LatentSDE(
        OrnsteinUhlenbeckDrift(1.0, 0.0),
        PosteriorDriftMLP(1, width=32, key=jax.random.PRNGKey(0)),
        diffusion=0.5,
        state_dim=1,
        likelihood="normal",
        obs_scale=0.1,
        z0_scale=0.5 / np.sqrt(2.0),
        dt=0.02,
        t0=0.0,
    )
    idata = probdyn.fit(
        sde.model,
        times,
        ys,
        method="svi",
        guide=sde.guide,
        loss=LatentSDEELBO(32, kl_schedule=linear_kl_schedule(50)),
        optimizer=optax.adam(optax.exponential_decay(2e-2, 1, 0.998)),
        num_steps=400,
        num_chains=1,
        num_samples=100,
        progress_bar=False,
        seed=0,
    )
    losses = idata.sample_stats["loss"].values
    assert losses.shape == (400,)
    assert losses[-50:].mean() < 0.3 * losses[:50].mean()
    z = idata.posterior["z"]
    assert z.dims == ("chain", "draw", "sequences", "time", "state")
    assert z.shape == (1, 100, 1, 12, 1)
    assert idata.log_likelihood["y"].shape == (1, 100, 1)
    err = np.abs(np.median(z.values[0, :, 0, :, 0], axis=0) - ys[:, 0])
    assert err.mean() < 0.15 and err.max() < 0.4, err
    params = sde.params_from_idata(idata)
    assert set(params) >= {"posterior_drift$params", "prior_drift$params", "qz0_loc"}
    post = sde.sample_posterior(
        jax.random.PRNGKey(1), params, times, ys, num_paths=64, eval_times=times
    )
    assert post.shape == (64, 1, 12, 1)
    np.testing.assert_allclose(np.median(post[:, 0, :, 0], 0), ys[:, 0], atol=0.4)
    horizon = np.linspace(1.7, 3.0, 7)
    fc = sde.forecast(
        jax.random.PRNGKey(2), z.values[..., -1, :], times[-1], horizon, params=params
    )
    assert fc["z"].shape == (1, 100, 1, 7, 1) and fc["y"].shape == (1, 100, 1, 7, 1)
    assert np.all(np.isfinite(fc["z"])) and np.all(np.isfinite(fc["y"]))


def test_bad_input_raises():
    key = jax.random.PRNGKey(0)
    post = PosteriorDriftMLP(1, width=4, key=key)
    ou = OrnsteinUhlenbeckDrift()
    with pytest.raises(ValueError, match="diffusion"):
        LatentSDE(ou, post, diffusion=-1.0, state_dim=1)
    with pytest.raises(ValueError, match="dt"):
        LatentSDE(ou, post, diffusion=1.0, state_dim=1, dt=0.0)
    with pytest.raises(ValueError, match="likelihood"):
        LatentSDE(ou, post, diffusion=1.0, state_dim=1, likelihood="cauchy")
    with pytest.raises(TypeError, match="state_dim"):
        LatentSDE(ou, post, diffusion=1.0, state_dim=1.5)
    with pytest.raises(ValueError, match="obs_dim"):
        LatentSDE(ou, post, diffusion=1.0, state_dim=1, obs_dim=2)
    sde = LatentSDE(ou, post, diffusion=1.0, state_dim=1, obs_scale=0.1)
    seeded = handlers.seed(sde.model, 0)
    with pytest.raises(ValueError, match="times"):
        seeded(np.array([0.0, 0.0, 1.0]), np.zeros((1, 3, 1)))
    with pytest.raises(ValueError, match="ys has shape"):
        seeded(np.array([0.0, 0.5, 1.0]), np.zeros((1, 4, 1)))
    with pytest.raises(ValueError, match="NaN"):
        seeded(np.array([0.0, 0.5, 1.0]), np.full((1, 3, 1), np.nan))
    with pytest.raises(ValueError, match="ys is required"):
        handlers.seed(sde.guide, 0)(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="forecast_times"):
        sde.forecast(key, jnp.zeros((3, 1)), 1.0, np.array([0.5, 2.0]))
    with pytest.raises(ValueError, match="kl_schedule"):
        LatentSDEELBO(2, kl_schedule=linear_kl_schedule(3)).loss(
            key, {}, sde.model, sde.model, np.array([0.0, 1.0]), np.zeros((1, 2, 1))
        )
    with pytest.raises(ValueError, match="num_particles"):
        LatentSDEELBO(0)


def test_particles_as_one_batch_match_vmapped_particles():
    # the tiled fast path (particles = batch of one Euler scan) and the vmapped particles
    # (model/guide wrapped, so the fast path is off) estimate the same loss: means over
    # keys agree within Monte Carlo error, and both have the same per-key spread
    sde = _ou_sde(0.5, 2.0, 0.8, 0.0, 1.0, dt=0.05, t0=0.0, obs_scale=0.3)
    times, ys = np.array([0.5, 1.0]), jnp.asarray([[[0.3], [-0.2]], [[0.1], [0.4]]])
    params = {"qz0_loc": jnp.array([0.5]), "qz0_scale": jnp.array([0.4])}
    elbo = LatentSDEELBO(16)
    from probdyn.infer.latent_sde_elbo import _tile_particles

    tiled = _tile_particles(sde.model, sde.guide, (times, ys), {}, 16)
    assert tiled is not None and tiled[0][1].shape == (32, 2, 1)
    assert _tile_particles(sde.model, sde.guide, (times, ys), {"batch_size": 1}, 16) is None

    def model(*a, **k):
        return sde.model(*a, **k)

    def guide(*a, **k):
        return sde.guide(*a, **k)

    keys = jax.random.split(jax.random.PRNGKey(0), 200)
    fast = jax.jit(jax.vmap(lambda k: elbo.loss(k, params, sde.model, sde.guide, times, ys)))
    slow = jax.jit(jax.vmap(lambda k: elbo.loss(k, params, model, guide, times, ys)))
    a, b = np.asarray(fast(keys)), np.asarray(slow(keys))
    se = np.sqrt((a.var() + b.var()) / len(keys))
    assert abs(a.mean() - b.mean()) < 4 * se, (a.mean(), b.mean(), se)
    assert 0.7 < a.std() / b.std() < 1.4
    assert not np.allclose(a, b)  # the two paths really differ (else the test is vacuous)
