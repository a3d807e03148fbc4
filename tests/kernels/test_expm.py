"""Gradients of the batched matrix exponentials (kernels/expm.py): scipy finite differences,
vmap over generators, non-finite generators."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg as sl

from probdyn.kernels import expm as E


def make_generator(seed, K, kind, lo=-3.0, hi=3.0):
    """Random generator, rates log-uniform in [10^lo, 10^hi] (as in test_ctmc.py)."""
    rng = np.random.default_rng(seed)
    r = 10.0 ** rng.uniform(lo, hi, size=(K, K))
    if kind == "rev":
        pi = rng.dirichlet(2.0 * np.ones(K))
        r = np.sqrt(r * r.T) * np.sqrt(pi[None, :] / pi[:, None])
    elif kind == "absorbing":
        r[-1] = 0.0
    np.fill_diagonal(r, 0.0)
    return r - np.diag(r.sum(axis=1))


DTS = np.array([1e-3, 0.05, 0.7, 3.0, 40.0])


def test_vjp_vs_scipy_finite_differences(x64):
    # the public path (transition_matrices' Fréchet VJP) against scipy
    from probdyn.kernels.ctmc import transition_matrices

    Q = make_generator(7, 4, "nonrev", -2, 2)
    rng = np.random.default_rng(2)
    G, V = rng.normal(size=(len(DTS), 4, 4)), rng.normal(size=(4, 4))

    def f(Q):
        return jnp.sum(G * transition_matrices(Q, jnp.asarray(DTS), method="uniformization"))

    g = jax.grad(f)(jnp.asarray(Q))

    def ref(Q):
        return sum(np.sum(G[n] * sl.expm(Q * t)) for n, t in enumerate(DTS))

    h = 1e-6
    fd = (ref(Q + h * V) - ref(Q - h * V)) / (2 * h)
    np.testing.assert_allclose(float(jnp.sum(g * V)), fd, rtol=1e-6)


def test_non_finite_generator_gives_non_finite_gradient():
    Q = jnp.array([[-jnp.inf, jnp.inf], [1.0, -1.0]], jnp.float32)
    dts = jnp.array([0.5, 1.0], jnp.float32)
    dQ = jax.jit(jax.grad(lambda q: jnp.sum(E.expm_pade(q, dts))))(Q)
    assert not np.all(np.isfinite(dQ))


def test_vjp_under_vmap_over_generators():
    Qs = jnp.stack(
        [jnp.asarray(make_generator(s, 3, "nonrev", -1, 1), jnp.float32) for s in (1, 2)]
    )
    dts = jnp.asarray(DTS, jnp.float32)

    def f(Q):
        return jnp.sum(jnp.log(E.expm_uniformization(Q, dts)[:, 0, 1]))

    g = jax.jit(jax.vmap(jax.grad(f)))(Qs)
    g1 = jax.jit(jax.grad(f))(Qs[1])
    np.testing.assert_allclose(g[1], g1, rtol=1e-5)
