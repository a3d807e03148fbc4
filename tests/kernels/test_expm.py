"""Tests for probdyn.kernels.expm: the eigendecomposition adjoint of the batched expm.

References: the Padé-13 Fréchet recursion (the previous VJP, itself tested against finite
differences of ``scipy.linalg.expm`` in test_ctmc.py), central finite differences of
``scipy.linalg.expm`` (float64), and the float64 gradient for float32 accuracy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
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


@jax.jit
def _pade_vjp(Q, dts, G):
    L = E._frechet_adjoint(Q, dts, G)
    return jnp.einsum("n,nij->ij", dts, L)


@jax.jit
def _eig_vjp(Q, dts, G):
    return E._eig_adjoint(Q, dts, G, E._eig64(Q))


@pytest.mark.parametrize("kind", ["nonrev", "rev", "absorbing"])
def test_eig_adjoint_matches_pade_frechet_float64(x64, kind):
    # stiff rates 1e-2..1e2 and gaps 1e-3..40: both VJPs, dQ and d dts
    Q = jnp.asarray(make_generator(5, 5, kind, -2, 2))
    dts = jnp.asarray(DTS)
    G = jnp.asarray(np.random.default_rng(1).normal(size=(len(DTS), 5, 5)))
    assert bool(E._eig_ok(E._eig64(Q), Q.dtype))
    dQ, ddts = _eig_vjp(Q, dts, G)
    ref = _pade_vjp(Q, dts, G)
    np.testing.assert_allclose(dQ, ref, rtol=1e-8, atol=1e-8 * np.abs(ref).max())
    P = E.expm_pade(Q, dts)
    ref_d = jnp.einsum("nij,nij->n", G, jnp.einsum("ik,nkj->nij", Q, P))
    np.testing.assert_allclose(ddts, ref_d, rtol=1e-8, atol=1e-10)


def test_eig_vjp_vs_scipy_finite_differences(x64):
    # the public path (transition_matrices' VJP now goes through eig) against scipy
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


def test_eig_adjoint_float32_closer_to_float64_than_pade():
    # float32, stiff (rates 1e-3..1e3): the float64 eigendecomposition keeps the VJP
    # accurate; measured 2e-7 / 5e-5 (eig, K=3 / 10) against 2e-4 / 1.5e-3 (Padé)
    K = 10
    Q64 = make_generator(110, K, "nonrev")
    G64 = np.random.default_rng(0).normal(size=(len(DTS), K, K))
    with jax.enable_x64(True):
        ref = np.asarray(_pade_vjp(jnp.asarray(Q64), jnp.asarray(DTS), jnp.asarray(G64)))
    args = [jnp.asarray(a, jnp.float32) for a in (Q64, DTS, G64)]
    dQ = np.asarray(_eig_vjp(*args)[0])
    assert dQ.dtype == np.float32
    err = np.abs(dQ - ref).max() / np.abs(ref).max()
    err_pade = np.abs(np.asarray(_pade_vjp(*args)) - ref).max() / np.abs(ref).max()
    assert err < 5e-4 and err < err_pade, (err, err_pade)


def test_defective_generator_falls_back_to_pade(x64):
    # a Jordan block (eigenvalue -1 twice, one eigenvector): cond(V) is huge, the VJP
    # must be the Padé one, finite and exact
    Q = jnp.array([[-1.0, 1.0, 0.0], [0.0, -1.0, 1.0], [0.0, 0.0, 0.0]])
    dts = jnp.asarray(DTS)
    eig = E._eig64(Q)
    assert not bool(E._eig_ok(eig, Q.dtype))
    G = jnp.asarray(np.random.default_rng(3).normal(size=(len(DTS), 3, 3)))
    dQ, ddts = jax.jit(lambda q, d, g: jax.vjp(E.expm_uniformization, q, d)[1](g))(Q, dts, G)
    np.testing.assert_allclose(dQ, _pade_vjp(Q, dts, G), rtol=1e-10)
    assert np.all(np.isfinite(ddts))


def test_non_finite_generator_gives_non_finite_gradient():
    Q = jnp.array([[-jnp.inf, jnp.inf], [1.0, -1.0]], jnp.float32)
    dts = jnp.array([0.5, 1.0], jnp.float32)
    dQ = jax.jit(jax.grad(lambda q: jnp.sum(E.expm_pade(q, dts))))(Q)
    assert not np.all(np.isfinite(dQ))


def test_eig_vjp_under_vmap_over_generators():
    Qs = jnp.stack(
        [jnp.asarray(make_generator(s, 3, "nonrev", -1, 1), jnp.float32) for s in (1, 2)]
    )
    dts = jnp.asarray(DTS, jnp.float32)

    def f(Q):
        return jnp.sum(jnp.log(E.expm_uniformization(Q, dts)[:, 0, 1]))

    g = jax.jit(jax.vmap(jax.grad(f)))(Qs)
    g1 = jax.jit(jax.grad(f))(Qs[1])
    np.testing.assert_allclose(g[1], g1, rtol=1e-5)
