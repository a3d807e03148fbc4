"""Sinkhorn divergence against a plain log-domain Sinkhorn written here, and geomloss."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from probdyn.kernels import bounding_box_diameter, sinkhorn_divergence


def _ot_eps(x, y, eps, iters=600):
    """Entropic OT (dual value) with cost |x-y|^2/2 by plain alternating Sinkhorn."""
    C = 0.5 * ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    la, lb = -np.log(len(x)) * np.ones(len(x)), -np.log(len(y)) * np.ones(len(y))
    f, g = np.zeros(len(x)), np.zeros(len(y))
    for _ in range(iters):
        f = -eps * logsumexp(lb[None, :] + (g[None, :] - C) / eps, axis=1)
        g = -eps * logsumexp(la[:, None] + (f[:, None] - C) / eps, axis=0)
    return np.exp(la) @ f + np.exp(lb) @ g


def _reference_divergence(x, y, eps):
    return _ot_eps(x, y, eps) - 0.5 * _ot_eps(x, x, eps) - 0.5 * _ot_eps(y, y, eps)


@pytest.fixture(scope="module")
def clouds():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))
    y = rng.normal(size=(25, 3)) + np.array([1.0, 0.0, -0.5])
    return x, y


def test_matches_plain_sinkhorn(clouds):
    x, y = clouds
    blur = 0.5
    ref = _reference_divergence(x, y, blur**2)
    ours = float(sinkhorn_divergence(x, y, blur=blur, extra_iterations=300))
    assert ours == pytest.approx(ref, rel=2e-3)


def test_zero_for_identical_and_positive_otherwise(clouds):
    x, y = clouds
    assert abs(float(sinkhorn_divergence(x, x))) < 1e-3
    d_xy = float(sinkhorn_divergence(x, y))
    # a bigger shift gives a bigger divergence (about |shift|^2 / 2 for a translation)
    d_far = float(sinkhorn_divergence(x, x + 3.0))
    assert d_xy > 0.1 and d_far > d_xy
    assert d_far == pytest.approx(0.5 * 3 * 9.0, rel=0.05)


def test_one_hot_sequences_under_jit_and_grad():
    key = jax.random.PRNGKey(0)
    T, S, N = 12, 3, 40
    a = jax.nn.one_hot(jax.random.randint(key, (N, T), 0, S), S).reshape(N, -1)
    b = jax.nn.one_hot(jnp.zeros((N, T), jnp.int32), S).reshape(N, -1)
    f = jax.jit(jax.value_and_grad(lambda u: sinkhorn_divergence(u, b, diameter=math.sqrt(T * S))))
    v, g = f(a)
    assert float(v) > 1.0 and bool(jnp.all(jnp.isfinite(g)))
    assert bounding_box_diameter(a, b) == pytest.approx(math.sqrt(T * S))


def test_bad_input():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="same D"):
        sinkhorn_divergence(x, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="blur"):
        sinkhorn_divergence(x, x, blur=0.0)
    with pytest.raises(ValueError, match="diameter"):
        jax.jit(sinkhorn_divergence)(x, x)


def test_close_to_geomloss():
    geomloss = pytest.importorskip("geomloss")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    T, S, N = 20, 3, 64
    a = np.eye(S)[rng.integers(0, S, (N, T))].reshape(N, -1).astype(np.float32)
    b = np.eye(S)[rng.choice(S, (N, T), p=[0.6, 0.3, 0.1])].reshape(N, -1).astype(np.float32)
    ref = float(geomloss.SamplesLoss(blur=0.2, scaling=0.9)(torch.tensor(a), torch.tensor(b)))
    ours = float(sinkhorn_divergence(a, b, blur=0.2, scaling=0.9))
    assert ours == pytest.approx(ref, rel=0.02)
