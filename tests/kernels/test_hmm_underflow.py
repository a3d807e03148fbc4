"""The HMM kernels where the scaled recursions underflow: brute force over a grid.

Reference: enumeration of all K^T state paths in float64 numpy (on the inputs rounded to
the dtype under test). The grid crosses log-likelihood gaps from tens of nats to 1000
with the zero patterns of ``initial_probs`` and ``transition_matrix`` that let a state
whose probability underflowed come back (identity, cycle, left-to-right, a zero column)
and a dense matrix, in float32 and float64. Every kernel output is compared: the
log-likelihood (sequential and parallel), filtered and smoothed marginals, two-slice
marginals, expected transitions and the gradient. Problems of one dtype run as one
vmapped program (under ``vmap`` the fallback is a select, so both branches are checked),
plus a few unbatched calls (where it is a ``lax.cond``).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from probdyn.kernels import _hmm_precision
from probdyn.kernels.hmm import (
    hmm_expected_transitions,
    hmm_filter,
    hmm_log_likelihood,
    hmm_smoother,
    hmm_two_slice_marginals,
)

K, T = 3, 4
GAPS = [30.0, 90.0, 200.0, 400.0, 800.0, 1000.0]
PATTERNS = ["dense", "identity", "cycle", "left_to_right", "zero_column"]


def _transition(pattern, rng):
    if pattern == "dense":
        return rng.dirichlet(np.ones(K), size=K)
    if pattern == "identity":
        return np.eye(K)
    if pattern == "cycle":  # the issue's matrix
        return np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5]])
    if pattern == "left_to_right":
        return np.array([[0.6, 0.4, 0.0], [0.0, 0.7, 0.3], [0.0, 0.0, 1.0]])
    if pattern == "zero_column":
        A = rng.dirichlet(np.ones(K), size=K)
        A[:, 1] = 0.0
        return A / A.sum(1, keepdims=True)
    raise ValueError(pattern)


def _problems():
    """(pattern, gap, seed) -> (pi, A, ll) in float64."""
    out = []
    cases = itertools.product(itertools.product(PATTERNS, GAPS), range(2))
    for i, ((pattern, gap), seed) in enumerate(cases):
        rng = np.random.default_rng(1000 + i)
        A = _transition(pattern, rng)
        pi = np.ones(K) / K if seed == 0 else np.array([1.0, 0.0, 0.0])
        # each entry 0, -gap/2 or -gap, plus O(1) noise: some state is always at the max
        ll = -gap * rng.integers(0, 3, size=(T, K)) / 2.0 + rng.normal(size=(T, K))
        out.append(((pattern, gap, seed), pi, A, ll))
    # a state lost at t = 0 that wins later, every step normaliser ~e^-50 (no underflow
    # of the normaliser): the scaled pass alone returns about -150 silently; truth -100
    pi = np.array([0.5, 0.5, 0.0])
    ll = np.array([[0.0, -100.0, 0.0], [-50.0, 0.0, 0.0], [-50.0, 0.0, 0.0], [-50.0, 0.0, 0.0]])
    out.append((("silent_loss", 100.0, 0), pi, np.eye(K), ll))
    # the issue's reproduction (last)
    issue = np.array([[-100, -200, -200], [-100, -200, -200], [-200, -200, 0.0], [0, 0, 0]])
    out.append((("issue", 100.0, 0), np.ones(K) / K, _transition("cycle", None), issue))
    return out


def brute(pi, A, ll):
    """log Z, filtered, smoothed, two-slice (T-1, K, K) and dlogZ/dA, by enumeration."""
    with np.errstate(divide="ignore"):
        lpi, lA = np.log(pi), np.log(A)
    z = np.array(list(itertools.product(range(K), repeat=T)))
    lj = lpi[z[:, 0]] + ll[np.arange(T), z].sum(1)
    for t in range(T - 1):
        lj = lj + lA[z[:, t], z[:, t + 1]]
    log_z = logsumexp(lj)
    if not np.isfinite(log_z):
        return log_z, None, None, None
    post = np.exp(lj - log_z)
    onehot = (z[:, :, None] == np.arange(K)).astype(float)
    smoothed = np.einsum("n,ntk->tk", post, onehot)
    xi = np.einsum("n,nti,ntj->tij", post, onehot[:, :-1], onehot[:, 1:])
    filtered = []
    for t in range(T):
        lpre = lpi[z[:, 0]] + ll[np.arange(t + 1), z[:, : t + 1]].sum(1)
        for s in range(t):
            lpre = lpre + lA[z[:, s], z[:, s + 1]]
        w = np.exp(lpre - logsumexp(lpre))
        filtered.append(np.array([w[z[:, t] == k].sum() for k in range(K)]))
    return log_z, np.array(filtered), smoothed, xi


def _outputs(pi, A, ll):
    out = {}
    for par in (False, True):
        kw = dict(parallel=par)
        post = hmm_smoother(pi, A, ll, **kw)
        g_A, g_ll = jax.grad(hmm_log_likelihood, argnums=(1, 2))(pi, A, ll, **kw)
        out[par] = dict(
            loglik=hmm_log_likelihood(pi, A, ll, **kw),
            filtered=hmm_filter(pi, A, ll, **kw).filtered_probs,
            smoothed=post.smoothed_probs,
            smoother_loglik=post.marginal_loglik,
            xi=hmm_two_slice_marginals(pi, A, ll, **kw),
            counts=hmm_expected_transitions(pi, A, ll, **kw),
            g_A=g_A,
            g_ll=g_ll,
        )
    return out


_batched = jax.jit(jax.vmap(_outputs))
_single = jax.jit(_outputs)

TOL = {  # (loglik relative, probabilities absolute)
    np.float32: (2e-6, 2e-4),
    np.float64: (1e-12, 1e-9),
}


def _check(o, ref, dtype, tag):
    log_z, filtered, smoothed, xi = ref
    rtol, atol = TOL[dtype]
    for par, r in o.items():
        msg = f"{tag} parallel={par}"
        if not np.isfinite(log_z):
            assert r["loglik"] == -np.inf, msg
            continue
        for key in ("loglik", "smoother_loglik"):
            np.testing.assert_allclose(r[key], log_z, rtol=rtol, atol=rtol, err_msg=msg)
        np.testing.assert_allclose(r["filtered"], filtered, atol=atol, err_msg=msg)
        np.testing.assert_allclose(r["smoothed"], smoothed, atol=atol, err_msg=msg)
        np.testing.assert_allclose(r["g_ll"], smoothed, atol=atol, err_msg=msg)
        np.testing.assert_allclose(r["xi"], xi, atol=atol, err_msg=msg)
        np.testing.assert_allclose(r["counts"], xi.sum(0), atol=T * atol, err_msg=msg)
        A = r["_A"]
        pos = A > 0
        # d log Z / dA_ij = sum_t xi_t(i, j) / A_ij where A_ij > 0
        np.testing.assert_allclose(
            r["g_A"][pos], xi.sum(0)[pos] / A[pos], rtol=1e-3, atol=T * atol / 0.3, err_msg=msg
        )


BAD = ["nan_A", "negative_A", "nan_pi", "nan_ll"]


def _bad_case(bad):
    pi = np.full(K, 1 / K)
    A = np.full((K, K), 1 / K)
    ll = np.zeros((T, K))
    if bad == "nan_A":
        A[0, 0] = np.nan
    elif bad == "negative_A":
        A[0, 0], A[0, 1] = -0.2, 1 / 3 + 0.2 + 1 / 3  # the row still sums to one
    elif bad == "nan_pi":
        pi[1] = np.nan
    else:
        ll[2, 1] = np.nan
    return pi, A, ll


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grid_against_brute_force(x64, dtype):
    """The grid, and (in the same program) invalid probabilities: NaN, never finite."""
    probs = _problems()
    bad = [_bad_case(b) for b in BAD]
    stack = [
        np.stack([p[i].astype(dtype) for p in probs] + [c[i - 1].astype(dtype) for c in bad])
        for i in (1, 2, 3)
    ]
    out = jax.tree.map(np.asarray, _batched(*stack))
    for b, (tag, pi, A, ll) in enumerate(probs):
        args = [x.astype(dtype) for x in (pi, A, ll)]
        ref = brute(*(x.astype(np.float64) for x in args))
        o = {par: {k: v[b] for k, v in out[par].items()} for par in out}
        for par in o:
            o[par]["_A"] = args[1]
        _check(o, ref, dtype, f"{tag} {dtype.__name__}")
    for i, name in enumerate(BAD):
        for par in out:
            r = {k: v[len(probs) + i] for k, v in out[par].items()}
            for key in ("loglik", "smoother_loglik"):
                assert np.isnan(r[key]), (name, par, key)
            for key in ("smoothed", "filtered", "g_A", "xi"):
                assert np.isnan(r[key]).any(), (name, par, key)


@pytest.mark.slow
def test_issue_case_unbatched():
    """The reproduction from the issue, without vmap (the fallback is a real lax.cond).

    Slow only for its compile time: the batched grid holds the same case in both dtypes."""
    tag, pi, A, ll = _problems()[-1]
    args = [x.astype(np.float32) for x in (pi, A, ll)]
    out = jax.tree.map(np.asarray, _single(*args))
    for par in out:
        out[par]["_A"] = args[1]
    _check(out, brute(*(x.astype(np.float64) for x in args)), np.float32, "issue")
    assert abs(out[False]["loglik"] - (-302.4849)) < 1e-3
    # the scaled pass alone is wrong here (it underflows): that is what the check catches
    assert not np.isclose(float(hmm_log_likelihood(*args, robust=False)), -302.4849)


def test_precision_check_passes_on_ordinary_problems():
    """The fallback is not taken on an ordinary problem (so it costs nothing there): a dense
    sticky matrix over 2000 steps. It is taken (by design: the check is conservative) for
    a left-to-right chain over 2000 steps, whose first states fall below float32 range
    (0.9^2000) and could come back, being reachable only from themselves."""
    rng = np.random.default_rng(0)
    n = 2000
    pi = np.full(4, 0.25, np.float32)
    A = (np.full((4, 4), 0.1 / 3) + np.eye(4) * (0.9 - 0.1 / 3)).astype(np.float32)
    ll = (-0.5 * (rng.normal(size=(n, 1)) - np.linspace(-2, 2, 4)) ** 2).astype(np.float32)
    lr = np.triu(A) / np.triu(A).sum(1, keepdims=True)

    from probdyn.kernels.hmm import _fast_posterior

    def run(A, ll):
        return jnp.stack([_fast_posterior(pi, A, ll, None, p)[1] for p in (False, True)])

    ok = np.asarray(jax.jit(jax.vmap(run, (0, None)))(np.stack([A, lr]), ll))
    assert ok[0].all()
    assert not ok[1].any()
    assert _hmm_precision.theta(np.float32) == pytest.approx(1.17549435e-38 / 1.1920929e-07)
