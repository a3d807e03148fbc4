"""HMMEmulator: recurrence against a step-by-step loop, exact sampling, straight-through."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from probdyn.nn import HMMEmulator, gumbel_softmax_straight_through


@pytest.fixture(scope="module")
def emulator():
    return HMMEmulator(hidden_size=8, noise_dim=4, num_symbols=3, rng_key=jax.random.PRNGKey(0))


def test_contract(emulator):
    assert emulator.W_hh.shape == (8, 8)
    assert emulator.W_ih.shape == (8, 4)
    assert emulator.W_out.shape == (3, 8)
    assert (emulator.hidden_size, emulator.noise_dim, emulator.num_symbols) == (8, 4, 3)
    h = jnp.ones(8)
    x = jnp.arange(4.0)
    expect = np.maximum(np.asarray(emulator.W_hh) @ np.ones(8) + np.asarray(emulator.W_ih) @ x, 0)
    np.testing.assert_allclose(emulator.step(h, x), expect, rtol=1e-5)
    np.testing.assert_allclose(
        emulator.readout(h), np.asarray(emulator.W_out) @ np.ones(8), rtol=1e-5
    )


def test_hidden_states_match_step_loop(emulator):
    noise = jax.random.normal(jax.random.PRNGKey(1), (2, 6, 4))
    hs = emulator.hidden_states(noise)
    h = jnp.zeros((2, 8))
    for t in range(6):
        h = emulator.step(h, noise[:, t])
        np.testing.assert_allclose(hs[:, t], h, rtol=1e-5, atol=1e-6)


def test_sample_shapes_jit_vmap(emulator):
    s, h = emulator.sample(jax.random.PRNGKey(2), 5, 7, return_hidden=True)
    assert s.shape == (5, 7) and s.dtype == jnp.int32 and h.shape == (5, 7, 8)
    assert bool(jnp.all(h >= 0))
    s_jit = eqx.filter_jit(lambda m, k: m.sample(k, 5, 7))(emulator, jax.random.PRNGKey(2))
    np.testing.assert_array_equal(s, s_jit)
    many = jax.vmap(lambda k: emulator.sample(k, 2, 3))(jax.random.split(jax.random.PRNGKey(3), 4))
    assert many.shape == (4, 2, 3)
    # noise_scale = 0 keeps h at 0: uniform logits
    _, h0 = emulator.sample(jax.random.PRNGKey(2), 2, 3, noise_scale=0.0, return_hidden=True)
    assert float(jnp.abs(h0).max()) == 0.0


def test_bad_sizes(emulator):
    with pytest.raises(ValueError, match="hidden_size"):
        HMMEmulator(0, 4, 3, rng_key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="num_sequences"):
        emulator.sample(jax.random.PRNGKey(0), 0, 3)
    with pytest.raises(ValueError, match="noise_dim=4"):
        emulator.hidden_states(jnp.zeros((2, 3, 5)))


def test_straight_through_forward_is_exact_categorical():
    logits = jnp.array([0.5, -1.0, 1.2])
    n = 20000
    y = gumbel_softmax_straight_through(jax.random.PRNGKey(4), jnp.broadcast_to(logits, (n, 3)))
    assert bool(jnp.all((y == 0) | (y == 1))) and bool(jnp.all(y.sum(-1) == 1))
    counts = np.asarray(y.sum(0))
    p = np.asarray(jax.nn.softmax(logits))
    assert stats.chisquare(counts, n * p).pvalue > 1e-3


def test_straight_through_gradient():
    """Finite; equal to the relaxed sample's gradient (the ST definition); and, averaged
    over Gumbel noise, aligned with the exact gradient of E[c . y] = c . softmax(l). The ST
    estimator is biased, so only alignment (not equality) is asserted; the relaxed
    estimator's mean is checked against its own expectation by Monte Carlo."""
    logits = jnp.array([0.3, -0.2, 0.1])
    c = jnp.array([1.0, -2.0, 0.5])
    keys = jax.random.split(jax.random.PRNGKey(5), 20000)

    def st(l, k):
        return c @ gumbel_softmax_straight_through(k, l)

    def relaxed(l, k):
        g = jax.random.gumbel(k, l.shape)
        return c @ jax.nn.softmax(l + g)

    g_st = jax.vmap(jax.grad(st), in_axes=(None, 0))(logits, keys)
    g_rel = jax.vmap(jax.grad(relaxed), in_axes=(None, 0))(logits, keys)
    assert bool(jnp.all(jnp.isfinite(g_st)))
    np.testing.assert_allclose(g_st, g_rel, rtol=1e-5, atol=1e-6)
    exact = jax.grad(lambda l: c @ jax.nn.softmax(l))(logits)
    mean = g_st.mean(0)
    cos = float(mean @ exact / jnp.linalg.norm(mean) / jnp.linalg.norm(exact))
    assert cos > 0.9
    # gradients sum to zero over symbols (softmax invariance), exactly for every draw
    np.testing.assert_allclose(g_st.sum(-1), 0.0, atol=1e-5)
