"""Variational-dropout layers and KL terms against Monte Carlo, closed forms and quadrature."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from probdyn.nn import (
    BARNN,
    FNO1d,
    VariationalDropout,
    VariationalLayer,
    ard_kl,
    layer_moments,
    log_uniform_kl,
    num_weights,
    tvamp_kl,
)

NUM_MC = 20_000


def _weight_draws(layer, log_alpha, parametrisation, key):
    """Explicit weight samples of the posterior the layer stands for (the reference)."""
    alpha = jnp.exp(log_alpha)

    def draw(key):
        kw, kb = jax.random.split(key)
        w, b = layer.weight, layer.bias
        if parametrisation == "barnn":  # N(alpha W, alpha^2 W^2)
            w = alpha * w * (1 + jax.random.normal(kw, w.shape))
            b = alpha * b * (1 + jax.random.normal(kb, b.shape))
        else:  # N(W, alpha W^2)
            w = w * (1 + jnp.sqrt(alpha) * jax.random.normal(kw, w.shape))
            b = b * (1 + jnp.sqrt(alpha) * jax.random.normal(kb, b.shape))
        return eqx.tree_at(lambda m: (m.weight, m.bias), layer, (w, b))

    return draw


@pytest.mark.parametrize(
    ("parametrisation", "kind"),
    [
        ("barnn", "conv"),
        pytest.param("gaussian", "linear", marks=pytest.mark.slow),
        pytest.param("barnn", "linear", marks=pytest.mark.slow),
        pytest.param("gaussian", "conv", marks=pytest.mark.slow),
    ],
)
def test_local_reparameterisation_matches_weight_sampling(parametrisation, kind):
    key = jax.random.PRNGKey(0)
    k_layer, k_x, k_mc1, k_mc2 = jax.random.split(key, 4)
    if kind == "linear":
        layer = eqx.nn.Linear(4, 3, key=k_layer)
        x = jax.random.normal(k_x, (4,))
    else:
        layer = eqx.nn.Conv1d(2, 3, 3, padding=1, key=k_layer)
        x = jax.random.normal(k_x, (2, 5))
    log_alpha = jnp.log(0.7)
    draw = _weight_draws(layer, log_alpha, parametrisation, None)
    by_weights = jax.jit(jax.vmap(lambda k: draw(k)(x)))(jax.random.split(k_mc1, NUM_MC))

    def local(k):
        return VariationalLayer(layer, log_alpha, k, parametrisation)(x)

    by_layer = jax.jit(jax.vmap(local))(jax.random.split(k_mc2, NUM_MC))
    mean, var = layer_moments(layer, x)
    alpha = 0.7
    if parametrisation == "barnn":
        exact_mean, exact_var = alpha * mean, alpha**2 * var
    else:
        exact_mean, exact_var = mean, alpha * var
    for draws in (by_weights, by_layer):
        # Monte Carlo standard errors of the mean and of the variance (Gaussian draws)
        se_mean = np.sqrt(exact_var / NUM_MC)
        se_var = exact_var * np.sqrt(2.0 / (NUM_MC - 1))
        np.testing.assert_array_less(np.abs(draws.mean(0) - exact_mean), 5 * se_mean + 1e-6)
        np.testing.assert_array_less(np.abs(draws.var(0) - exact_var), 5 * se_var + 1e-6)


def test_layer_moments_against_explicit_sums():
    layer = eqx.nn.Linear(3, 2, key=jax.random.PRNGKey(1))
    x = jnp.array([0.5, -1.0, 2.0])
    mean, var = layer_moments(layer, x)
    w, b = np.asarray(layer.weight), np.asarray(layer.bias)
    np.testing.assert_allclose(mean, w @ x + b, rtol=1e-6)
    np.testing.assert_allclose(var, (w**2) @ (x**2) + b**2, rtol=1e-6)
    assert num_weights(layer) == 3 * 2 + 2


def _gauss_kl(m1, v1, m2, v2):
    return 0.5 * (np.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1)


def test_tvamp_kl_equals_gaussian_kl_per_weight():
    log_alpha = np.log(np.array([[0.3, 1.5], [0.8, 0.2], [2.0, 1.0]]))  # (batch 3, 2)
    alpha = np.exp(log_alpha)
    weights = np.array([0.7, -1.3, 0.05])
    got = np.asarray(jax.jit(tvamp_kl)(log_alpha))
    prior_mean = alpha.mean(0)
    prior_second = (alpha**2).mean(0)
    for w in weights:  # the KL per weight does not depend on the weight
        direct = _gauss_kl(alpha * w, alpha**2 * w**2, prior_mean * w, prior_second * w**2)
        np.testing.assert_allclose(got, direct, rtol=1e-5)
    # the aggregated posterior of an homogeneous batch is each posterior: KL = 0
    np.testing.assert_allclose(jax.jit(tvamp_kl)(jnp.full((3, 2), -0.5)), 0.0, atol=1e-6)


def test_tvamp_kl_monte_carlo():
    log_alpha = jnp.log(jnp.array([0.4, 1.2]))
    alpha = np.exp(np.asarray(log_alpha))
    w = 0.9
    m2, v2 = alpha.mean() * w, (alpha**2).mean() * w**2
    z = stats.norm.rvs(size=200_000, random_state=0)
    omega = alpha[0] * w + alpha[0] * abs(w) * z
    logq = stats.norm.logpdf(omega, alpha[0] * w, alpha[0] * abs(w))
    logp = stats.norm.logpdf(omega, m2, np.sqrt(v2))
    diff = logq - logp
    se = diff.std() / np.sqrt(diff.size)
    assert abs(diff.mean() - float(tvamp_kl(log_alpha)[0])) < 5 * se


def _log_uniform_kl_quadrature(alpha):
    """KL(N(1, alpha) || log-uniform) + const by quadrature (-> 0 as alpha -> inf)."""
    s = np.sqrt(alpha)

    def f(z):
        return np.log(abs(1 + s * z)) * stats.norm.pdf(z)

    e = sum(
        integrate.quad(f, lo, hi, limit=200)[0] for lo, hi in [(-np.inf, -1 / s), (-1 / s, np.inf)]
    )
    k1 = (np.euler_gamma + np.log(2)) / 2  # -E log|z| for z ~ N(0, 1)
    return -(0.5 * np.log(alpha) - e - k1)


@pytest.mark.parametrize("log_alpha", [-6.0, -3.0, -1.0, 0.0, 1.0, 3.0])
def test_log_uniform_kl_matches_quadrature(log_alpha):
    # Molchanov et al. report the approximation to within 0.01 nats
    exact = _log_uniform_kl_quadrature(np.exp(log_alpha))
    assert abs(float(log_uniform_kl(log_alpha)) - exact) < 0.01


def test_ard_kl_is_gaussian_kl_at_optimal_prior_variance():
    for alpha in (0.05, 0.5, 3.0):
        theta = 1.7
        tau2 = (1 + alpha) * theta**2
        direct = _gauss_kl(theta, alpha * theta**2, 0.0, tau2)
        np.testing.assert_allclose(float(ard_kl(np.log(alpha))), direct, rtol=1e-5)


@pytest.fixture(scope="module")
def fno():
    return FNO1d(1, 1, width=6, modes=3, num_layers=2, key=jax.random.PRNGKey(3))


@pytest.fixture(scope="module")
def mlp():
    return eqx.nn.MLP(3, 2, 5, 1, key=jax.random.PRNGKey(3))


def test_gaussian_dropout_with_alpha_to_zero_is_the_deterministic_network(mlp):
    u = jnp.array([0.3, -1.2, 2.0])
    vd = VariationalDropout(mlp, init_log_alpha=-40.0)
    call = eqx.filter_jit(lambda m, u: (m(u, key=jax.random.PRNGKey(0)), m.net(u)))
    out, deterministic = call(vd, u)
    np.testing.assert_allclose(out, deterministic, atol=1e-5)
    # and a visible rate gives a visibly different output
    noisy, _ = call(VariationalDropout(mlp, init_log_alpha=0.0), u)
    assert float(jnp.max(jnp.abs(noisy - deterministic))) > 1e-2


def test_barnn_mean_path_at_unit_rate_is_the_deterministic_network(mlp):
    u = jnp.array([0.5, 1.0, -0.7])
    barnn = BARNN(mlp, in_channels=3, width=4, depth=1, key=jax.random.PRNGKey(4))
    zeros = jnp.zeros((barnn.num_layers,))  # log alpha = 0: alpha = 1
    mean_path = eqx.filter_jit(lambda m, u: (m.apply(u, zeros, key=None), m.net(u)))
    got, deterministic = mean_path(barnn, u)
    np.testing.assert_allclose(got, deterministic, atol=1e-5)
    # noise variance -> 0 with alpha -> 0 (the BARNN parametrisation scales the mean too)
    layer = eqx.nn.Conv1d(6, 2, 1, key=jax.random.PRNGKey(5))
    x = jax.random.normal(jax.random.PRNGKey(5), (6, 16))
    small = jax.jit(jax.vmap(lambda k: VariationalLayer(layer, -12.0, k)(x)))(
        jax.random.split(jax.random.PRNGKey(6), 64)
    )
    assert float(small.std(0).max()) < 1e-4


@pytest.mark.parametrize("kind", ["vector", pytest.param("field", marks=pytest.mark.slow)])
def test_barnn_rates_and_kl_shapes_and_finite_gradients(request, kind):
    if kind == "field":
        barnn = BARNN(request.getfixturevalue("fno"), in_channels=1, key=jax.random.PRNGKey(7))
        assert barnn.num_weights == (6 * 6 + 6, 6 * 6 + 6, 6 + 1)
        u, rates_shape = jax.random.normal(jax.random.PRNGKey(8), (4, 1, 16)), (4, 3, 16)
    else:
        mlp = eqx.nn.MLP(3, 2, 5, 1, key=jax.random.PRNGKey(7))
        barnn = BARNN(mlp, in_channels=3, width=4, depth=1, key=jax.random.PRNGKey(7))
        assert barnn.num_weights == (3 * 5 + 5, 5 * 2 + 2)
        u, rates_shape = jax.random.normal(jax.random.PRNGKey(8), (4, 3)), (4, 2)
    t = jnp.arange(4)

    def loss(model):
        out, log_alpha = jax.vmap(lambda t_, u_, k: model(t_, u_, key=k))(
            t, u, jax.random.split(jax.random.PRNGKey(9), 4)
        )
        assert log_alpha.shape == rates_shape
        return jnp.mean(out**2) + jnp.mean(model.kl(log_alpha))

    grads = eqx.filter_jit(eqx.filter_grad(loss))(barnn)
    leaves = jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads.encoder))


def test_errors_name_the_argument(mlp):
    with pytest.raises(ValueError, match="prior"):
        BARNN(mlp, in_channels=3, prior="gauss", key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="parametrisation"):
        VariationalLayer(mlp.layers[0], 0.0, None, "other")
    with pytest.raises(ValueError, match="log_alpha"):
        VariationalLayer(eqx.nn.Linear(2, 2, key=jax.random.PRNGKey(0)), jnp.zeros(3), None)
    with pytest.raises(ValueError, match="no eqx.nn.Linear"):
        VariationalDropout(eqx.nn.Identity())
    barnn = BARNN(mlp, in_channels=3, width=4, depth=1, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="u has shape"):
        barnn(0, jnp.zeros((2, 16)), key=None)


def _cell_weight_draw(cell, alpha, key):
    """A cell with explicit weights drawn from N(alpha W, alpha^2 W^2) (the reference)."""
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    keys = jax.random.split(key, 4)
    drawn = [
        alpha * getattr(cell, n) * (1 + jax.random.normal(k, getattr(cell, n).shape))
        for n, k in zip(names, keys, strict=True)
    ]
    return eqx.tree_at(lambda c: [getattr(c, n) for n in names], cell, drawn)


@pytest.mark.parametrize(
    "kind",
    [
        "lstm",
        pytest.param("gru", marks=pytest.mark.slow),
        pytest.param("elman", marks=pytest.mark.slow),
    ],
)
def test_variational_cells_match_weight_sampling(kind):
    from probdyn.nn import ElmanCell, GRUCell, LSTMCell

    num_mc = 4000
    k_cell, k_x, k_mc1, k_mc2 = jax.random.split(jax.random.PRNGKey(10), 4)
    cls = {"gru": GRUCell, "lstm": LSTMCell, "elman": ElmanCell}[kind]
    cell = cls(3, 2, key=k_cell)
    x = jax.random.normal(k_x, (3,))
    h = jnp.array([0.4, -0.8])
    state = (h, jnp.array([0.3, 0.1])) if kind == "lstm" else h
    alpha = 0.6

    def first(out):
        return out[0] if kind == "lstm" else out

    by_weights = jax.jit(jax.vmap(lambda k: first(_cell_weight_draw(cell, alpha, k)(x, state))))(
        jax.random.split(k_mc1, num_mc)
    )
    by_layer = jax.jit(
        jax.vmap(lambda k: first(VariationalLayer(cell, jnp.log(alpha), k)(x, state)))
    )(jax.random.split(k_mc2, num_mc))
    a, b = np.asarray(by_weights, float), np.asarray(by_layer, float)
    se_mean = np.sqrt((a.var(0) + b.var(0)) / num_mc)
    se_var = np.sqrt((a.var(0) ** 2 + b.var(0) ** 2) * 2.0 / num_mc) * 2  # heavier tails
    np.testing.assert_array_less(np.abs(a.mean(0) - b.mean(0)), 5 * se_mean)
    np.testing.assert_array_less(np.abs(a.var(0) - b.var(0)), 5 * se_var)
    assert float(b.var(0).min()) > 1e-4  # the noise is visible
    # the mean path at unit rate is the deterministic cell; one rate governs every weight
    np.testing.assert_allclose(
        first(VariationalLayer(cell, 0.0, None)(x, state)), first(cell(x, state)), atol=1e-6
    )
    assert num_weights(cell) == cell.weight_ih.size + cell.weight_hh.size + 2 * cell.bias_ih.size


def test_barnn_wraps_probdyn_lstm_cell():
    from probdyn.nn import LSTMCell

    class Step(eqx.Module):
        cell: LSTMCell
        readout: eqx.nn.Linear

        def __call__(self, x, state):
            h, c = self.cell(x, state)
            return self.readout(h), (h, c)

    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(11), 3)
    step = Step(LSTMCell(3, 4, key=k1), eqx.nn.Linear(4, 2, key=k2))
    barnn = BARNN(step, in_channels=4, width=4, depth=1, key=k3)
    assert barnn.num_layers == 2
    assert barnn.num_weights == (4 * 4 * (3 + 4) + 2 * 16, 4 * 2 + 2)
    x, state = jnp.array([0.2, -0.5, 1.0]), (jnp.full(4, 0.1), jnp.zeros(4))
    zeros = jnp.zeros(2)
    run = eqx.filter_jit(lambda m, k: m.apply(x, zeros, state, key=k))
    got, _ = run(barnn, None)
    want, _ = step(x, state)
    np.testing.assert_allclose(got, want, atol=1e-6)
    noisy, _ = run(barnn, jax.random.PRNGKey(0))
    assert float(jnp.max(jnp.abs(noisy - want))) > 1e-3


@pytest.mark.parametrize("shape", [(5, 7), (16, 64), (1,)])
def test_standard_normal_is_jax_non_partitionable_threefry_normal(shape):
    # the fast noise of the local reparameterisation is jax.random.normal's own stream
    # with partitionable Threefry off: bit-identical for raw and typed keys, and under vmap
    from probdyn.nn.variational import _standard_normal

    for key in (jax.random.PRNGKey(3), jax.random.key(3)):
        ours = _standard_normal(key, shape, jnp.float32)
        with jax.threefry_partitionable(False):
            ref = jax.random.normal(key, shape, jnp.float32)
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))
    keys = jax.random.split(jax.random.PRNGKey(4), 3)
    batched = jax.vmap(lambda k: _standard_normal(k, shape, jnp.float32))(keys)
    with jax.threefry_partitionable(False):
        ref = jnp.stack([jax.random.normal(k, shape, jnp.float32) for k in keys])
    np.testing.assert_array_equal(np.asarray(batched), np.asarray(ref))


def test_standard_normal_moments_and_fallback():
    from probdyn.nn.variational import _standard_normal

    z = np.asarray(_standard_normal(jax.random.PRNGKey(0), (200_000,), jnp.float32))
    # mean and variance within 5 Monte Carlo standard errors; a normal shape (KS test)
    assert abs(z.mean()) < 5 / np.sqrt(z.size)
    assert abs(z.var() - 1.0) < 5 * np.sqrt(2.0 / z.size)
    assert stats.kstest(z[:20_000], "norm").pvalue > 1e-3
    # another dtype goes through jax.random.normal itself
    key = jax.random.PRNGKey(1)
    half = _standard_normal(key, (4,), jnp.float16)
    np.testing.assert_array_equal(
        np.asarray(half), np.asarray(jax.random.normal(key, (4,), jnp.float16))
    )
