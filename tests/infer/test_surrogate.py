"""Autoregressive surrogates through probdyn.fit: BARNN and the alternatives, and weight
posteriors (NUTS, SG-MCMC) against the closed-form posterior predictive of a linear AR(1)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers
from scipy import stats

import probdyn
from probdyn.infer import AutoregressiveSurrogate, add_rollouts, make_windows
from probdyn.nn import BARNN, FNO1d, VariationalDropout
from probdyn.report.ensemble import rollout_metrics

NUM_POINTS = 8


@pytest.fixture(scope="module")
def fields():
    """Travelling waves, (trajectories, time, channel, space)."""
    x = np.linspace(0, 2 * np.pi, NUM_POINTS, endpoint=False)
    phase = np.random.default_rng(0).uniform(0, 2 * np.pi, 4)
    t = np.arange(5)
    u = np.sin(x[None, None] - 0.3 * t[None, :, None] + phase[:, None, None])
    return jnp.asarray(u[:, :, None, :], jnp.float32)


_FNO = []


def _fno():
    """One tiny FNO for every test (eager initialisation compiles op by op)."""
    if not _FNO:
        _FNO.append(FNO1d(1, 1, width=4, modes=2, num_layers=1, key=jax.random.PRNGKey(0)))
    return _FNO[0]


def test_make_windows(fields):
    inputs, targets, steps = make_windows(fields, t0=2)
    assert inputs.shape == (16, 1, NUM_POINTS)
    np.testing.assert_array_equal(inputs[5], fields[1, 1])
    np.testing.assert_array_equal(targets[5], fields[1, 2])
    np.testing.assert_array_equal(steps[:5], [2, 3, 4, 5, 2])


@pytest.fixture(scope="module")
def vectors():
    """A damped rotation in 3-D, (trajectories, time, state_dim)."""
    rng = np.random.default_rng(1)
    c, s = np.cos(0.3), np.sin(0.3)
    a = 0.95 * np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    u = np.zeros((4, 6, 3), np.float32)
    u[:, 0] = rng.normal(size=(4, 3))
    for t in range(5):
        u[:, t + 1] = u[:, t] @ a.T
    return jnp.asarray(u)


def _mlp(key=0):
    return eqx.nn.MLP(3, 3, 6, 1, key=jax.random.PRNGKey(key))


def test_barnn_model_minibatch_likelihood_and_kl(vectors):
    inputs, targets, steps = make_windows(vectors)
    barnn = BARNN(_mlp(), in_channels=3, width=4, depth=1, key=jax.random.PRNGKey(1))
    surrogate = AutoregressiveSurrogate(barnn, method="barnn", kl_weight=0.5, obs_scale=0.2)
    tr = handlers.trace(handlers.seed(surrogate.model, 0)).get_trace(
        inputs, targets, steps, batch_size=6
    )
    assert tr["windows"]["args"] == (20, 6)
    idx = np.asarray(tr["windows"]["value"])
    # minibatch terms are scaled by N / B, the KL factor is -kl_weight * tVAMP KL per window
    assert tr["du"]["scale"] == pytest.approx(20 / 6) and tr["kl"]["scale"] == pytest.approx(20 / 6)
    np.testing.assert_allclose(tr["du"]["value"], targets[idx] - inputs[idx])
    kl = -np.asarray(tr["kl"]["fn"].log_factor) / 0.5
    assert kl.shape == (6,) and np.all(kl >= 0)


@pytest.mark.slow
def test_barnn_through_fit_with_minibatches(vectors):
    inputs, targets, steps = make_windows(vectors)
    barnn = BARNN(_mlp(), in_channels=3, width=4, depth=1, key=jax.random.PRNGKey(1))
    surrogate = AutoregressiveSurrogate(barnn, method="barnn", kl_weight=0.5)
    idata = probdyn.fit(
        surrogate.model, inputs, targets, steps, method="svi", guide=surrogate.guide,
        num_steps=10, learning_rate=1e-2, num_chains=1, num_samples=1, progress_bar=False,
        model_kwargs={"batch_size": 6},
    )  # fmt: skip
    loss = np.asarray(idata.sample_stats["loss"])
    assert loss.shape == (10,) and np.all(np.isfinite(loss))
    fitted = surrogate.network_from_idata(idata)
    np.testing.assert_allclose(
        fitted.net.layers[0].weight, idata.svi_params["net$params_net_layers_0_weight"]
    )
    assert surrogate.obs_scale_from_idata(idata) > 0
    ens = surrogate.rollout(
        vectors[:2, 0], 6, rng_key=jax.random.PRNGKey(2), network=fitted, num_samples=3
    )
    assert ens.samples.shape == (3, 2, 6, 3) and ens.method == "barnn"
    assert float(ens.variance[:, 1:].min()) > 0
    add_rollouts(idata, ens, truth=vectors[:2])
    pp = idata.posterior_predictive["u"]
    assert pp.dims == ("chain", "draw", "trajectory", "time", "space")
    np.testing.assert_allclose(pp["time"], np.arange(6.0))
    assert idata.observed_data["u"].dims == ("trajectory", "time", "space")
    assert "du" in idata.observed_data  # the training data stays
    # the ensemble feeds the shared metrics as it is
    metrics = rollout_metrics(ens.samples, vectors[:2])
    assert metrics["rmse_per_step"].shape == (6,) and np.isfinite(metrics["crps"])


@pytest.mark.slow
def test_barnn_field_rollout(fields):
    barnn = BARNN(_fno(), in_channels=1, width=4, depth=1, key=jax.random.PRNGKey(1))
    surrogate = AutoregressiveSurrogate(barnn, method="barnn")
    ens = surrogate.rollout(fields[:2, 0], 3, rng_key=jax.random.PRNGKey(2), num_samples=2)
    assert ens.samples.shape == (2, 2, 3, 1, NUM_POINTS)
    assert float(ens.variance[:, 1:].min()) > 0


@pytest.mark.parametrize(
    "method", ["deterministic", "perturb", "mc_dropout", "variational_dropout", "ensemble"]
)
def test_every_method_gives_a_rollout_ensemble(vectors, method):
    net, network = _mlp(), None
    if method == "mc_dropout":
        layers = [
            eqx.nn.Linear(3, 6, key=jax.random.PRNGKey(0)),
            eqx.nn.Lambda(jnp.tanh),
            eqx.nn.Dropout(0.2),
            eqx.nn.Linear(6, 3, key=jax.random.PRNGKey(1)),
        ]
        net = eqx.nn.Sequential(layers)
    if method == "variational_dropout":
        net = VariationalDropout(net, init_log_alpha=-1.0)
    if method == "ensemble":
        network = [net, _mlp(5)]
    surrogate = AutoregressiveSurrogate(
        net, method="deterministic" if method == "ensemble" else method
    )
    ens = surrogate.rollout(
        vectors[:2, 0], 4, rng_key=jax.random.PRNGKey(3), network=network, num_samples=3
    )
    assert ens.samples.shape[1:] == (2, 4, 3)
    spread = float(ens.variance[:, 1:].max())
    if method == "deterministic":
        assert spread < 1e-10
    else:
        assert spread > 1e-8
    if method == "ensemble":
        assert ens.samples.shape[0] == 2 and ens.method == "ensemble"


def test_surrogate_errors():
    with pytest.raises(ValueError, match="method='nope'"):
        AutoregressiveSurrogate(_mlp(), method="nope")
    with pytest.raises(TypeError, match="BARNN"):
        AutoregressiveSurrogate(_mlp(), method="barnn")
    with pytest.raises(ValueError, match="obs_scale"):
        AutoregressiveSurrogate(_mlp(), method="deterministic", obs_scale=-1.0)
    bayes = AutoregressiveSurrogate(_mlp(), method="bayes")
    with pytest.raises(ValueError, match="MCMC"):
        bayes.guide(None, None, None)
    with pytest.raises(ValueError, match="weights"):
        bayes.rollout(jnp.zeros((1, 3)), 2, rng_key=jax.random.PRNGKey(0))


# --- linear-Gaussian AR(1): du = w y + b + sigma eps, prior w, b ~ N(0, 1) ---------------
SIGMA = 0.5
Y_STAR = np.array([-1.5, 0.3, 2.0])


@pytest.fixture(scope="module")
def ar_problem():
    rng = np.random.default_rng(0)
    y = np.zeros((3, 20, 1), np.float32)
    y[:, 0, 0] = rng.normal(0, 1, 3)
    for t in range(19):
        y[:, t + 1] = 0.8 * y[:, t] + SIGMA * rng.normal(size=(3, 1))
    windows = make_windows(jnp.asarray(y))
    inputs, targets, _ = (np.asarray(w) for w in windows)
    # exact Gaussian posterior of (w, b) and posterior predictive of y_{t+1} at Y_STAR
    x = np.concatenate([inputs, np.ones((len(inputs), 1))], 1)
    cov = np.linalg.inv(x.T @ x / SIGMA**2 + np.eye(2))
    mean = cov @ x.T @ (targets - inputs)[:, 0] / SIGMA**2
    xs = np.stack([Y_STAR, np.ones(3)], 1)
    pred_mean = Y_STAR + xs @ mean
    pred_sd = np.sqrt(SIGMA**2 + np.einsum("ij,jk,ik->i", xs, cov, xs))
    net = eqx.nn.Linear(1, 1, key=jax.random.PRNGKey(0))
    surrogate = AutoregressiveSurrogate(net, method="bayes", obs_scale=SIGMA)
    return surrogate, windows, mean, cov, pred_mean, pred_sd


def _check_predictive(surrogate, idata, ar_problem, num_eff, mean_tol):
    _, _, mean, cov, pred_mean, pred_sd = ar_problem
    post = np.stack(
        [
            idata.posterior["weights_0"].values.reshape(-1),
            idata.posterior["weights_1"].values.reshape(-1),
        ]
    )
    assert np.all(np.abs(post.mean(1) - mean) < mean_tol * np.sqrt(np.diag(cov)))
    ens = surrogate.rollout(
        jnp.asarray(Y_STAR[:, None], jnp.float32),
        2,
        rng_key=jax.random.PRNGKey(1),
        weights=surrogate.weight_draws(idata),
        process_noise=SIGMA,
    )
    draws = np.asarray(ens.samples[:, :, 1, 0])
    for level in (0.5, 0.9):
        lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
        content = stats.norm.cdf(hi, pred_mean, pred_sd) - stats.norm.cdf(lo, pred_mean, pred_sd)
        # the probability content of an interval between empirical quantiles of num_eff
        # independent draws has sd sqrt(level (1 - level) / num_eff)
        tol = 4 * np.sqrt(level * (1 - level) / num_eff)
        np.testing.assert_array_less(np.abs(content - level), tol)


@pytest.mark.slow
def test_nuts_weight_posterior_predictive_is_calibrated(ar_problem):
    surrogate, windows = ar_problem[:2]
    idata = probdyn.fit(
        surrogate.model,
        *windows,
        method="nuts",
        num_chains=1,
        num_warmup=200,
        num_samples=600,
        progress_bar=False,
    )
    _check_predictive(surrogate, idata, ar_problem, num_eff=300, mean_tol=0.3)


def test_sghmc_weight_posterior_predictive_is_calibrated_with_minibatches(ar_problem):
    surrogate, windows = ar_problem[:2]
    idata = probdyn.fit(
        surrogate.model,
        *windows,
        method="sghmc",
        num_chains=1,
        num_warmup=300,
        num_samples=3000,
        thinning=10,
        step_size=2e-3,
        model_kwargs={"batch_size": 19},
        progress_bar=False,
    )
    _check_predictive(surrogate, idata, ar_problem, num_eff=150, mean_tol=0.6)


@pytest.mark.slow
def test_csgld_and_long_sghmc_predictive_is_calibrated(ar_problem):
    surrogate, windows = ar_problem[:2]
    common = dict(
        num_chains=2,
        num_samples=10_000,
        thinning=10,
        progress_bar=False,
        model_kwargs={"batch_size": 19},
    )
    idata = probdyn.fit(
        surrogate.model,
        *windows,
        method="csgld",
        num_warmup=0,
        step_size=5e-3,
        cycle_length=2000,
        exploration_ratio=0.25,
        **common,
    )
    _check_predictive(surrogate, idata, ar_problem, num_eff=500, mean_tol=0.5)
    idata = probdyn.fit(
        surrogate.model, *windows, method="sghmc", num_warmup=1000, step_size=2e-3, **common
    )
    _check_predictive(surrogate, idata, ar_problem, num_eff=500, mean_tol=0.3)


def test_surrogate_rollout_compiles_once(vectors, monkeypatch):
    import probdyn.infer.surrogate as surrogate_module

    traces = []
    original = surrogate_module._increment

    def counting(*args):
        traces.append(1)  # runs only while tracing
        return original(*args)

    monkeypatch.setattr(surrogate_module, "_increment", counting)
    surrogate = AutoregressiveSurrogate(_mlp(), method="deterministic")
    first = surrogate.rollout(vectors[:2, 0], 7, rng_key=jax.random.PRNGKey(0))
    assert len(traces) == 1
    # another network of the same structure (fitted weights): the same program
    second = surrogate.rollout(vectors[:2, 0], 7, rng_key=jax.random.PRNGKey(0), network=_mlp(5))
    assert len(traces) == 1
    assert not np.allclose(first.samples, second.samples)
