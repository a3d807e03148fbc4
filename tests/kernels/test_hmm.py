"""Tests for probdyn.kernels.hmm against independent references.

References: brute-force enumeration of all K^T state paths (float64 numpy), a float64 numpy
log-space forward-backward recursion, central finite differences (of the kernel and of the
brute-force likelihood), closed-form Markov chain marginals, and dynamax (test-only oracle).
Stochastic tests use fixed keys and tolerances of a few Monte Carlo standard errors.

Compilation dominates the cost of these tests, so every kernel output is computed by a
few jitted, vmapped helpers (sequential and parallel in one program), and cases that share
a shape share a compiled program. The full grid of shapes runs with ``-m slow``.
"""

from __future__ import annotations

import itertools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from probdyn.kernels.hmm import (
    hmm_backward,
    hmm_expected_transitions,
    hmm_filter,
    hmm_log_likelihood,
    hmm_posterior_mode,
    hmm_posterior_sample,
    hmm_sample_states,
    hmm_smoother,
    hmm_two_slice_marginals,
)

# Monte Carlo tolerance in standard errors. Keys are fixed, so the tests are deterministic;
# 5 SE keeps the chance that a correct implementation fails on another key below ~1e-5 per
# compared quantity.
N_SE = 5.0


@pytest.fixture
def dynamax_hmm():
    """dynamax.hidden_markov_model, imported without leaking its import-time side effect
    (it sets jax_default_matmul_precision globally, which would also change the jit cache
    key and force recompilation of every kernel in later tests)."""
    prev = jax.config.jax_default_matmul_precision
    try:
        import dynamax.hidden_markov_model as dynamax_hmm
    finally:
        jax.config.update("jax_default_matmul_precision", prev)
    return dynamax_hmm


# --------------------------------------------------------------------------------------
# problems and independent references (numpy, float64)
# --------------------------------------------------------------------------------------


def make_problem(seed, K, T, *, tv=False, kind="dense", scale=2.0, dtype=np.float64):
    """Random (pi, A, ll). ``kind``: dense | left_to_right | neg_inf."""
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.ones(K))
    A = rng.dirichlet(np.ones(K), size=(T - 1, K) if tv else (K,))
    ll = scale * rng.normal(size=(T, K))
    if kind == "left_to_right":
        pi = np.zeros(K)
        pi[0] = 1.0
        A = np.triu(A)
        A = A / A.sum(-1, keepdims=True)
    elif kind == "neg_inf":
        # one excluded state per step; a dense A keeps every observation sequence possible
        ll[np.arange(T), rng.integers(K, size=T)] = -np.inf
    elif kind != "dense":
        raise ValueError(kind)
    return pi.astype(dtype), A.astype(dtype), ll.astype(dtype)


def _log(x):
    with np.errstate(divide="ignore"):
        return np.log(x)


def _trans(A, t):
    return A[t] if A.ndim == 3 else A


def _all_paths(K, T):
    return np.array(list(itertools.product(range(K), repeat=T)), dtype=np.int64).reshape(-1, T)


def brute_log_joint(pi, A, ll):
    """All K^T paths (N, T) and log p(z, y) for each."""
    pi, A, ll = (np.asarray(x, np.float64) for x in (pi, A, ll))
    T, K = ll.shape
    z = _all_paths(K, T)
    lj = _log(pi)[z[:, 0]] + ll[np.arange(T), z].sum(axis=1)
    for t in range(T - 1):
        lj = lj + _log(_trans(A, t))[z[:, t], z[:, t + 1]]
    return z, lj


def brute_prob(pi, A, ll):
    """p(y) as a polynomial in (pi, A): defined for any real entries, so central finite
    differences are valid at structural zeros too."""
    pi, A, ll = (np.asarray(x, np.float64) for x in (pi, A, ll))
    T, K = ll.shape
    z = _all_paths(K, T)
    w = pi[z[:, 0]] * np.exp(ll[np.arange(T), z].sum(axis=1))
    for t in range(T - 1):
        w = w * _trans(A, t)[z[:, t], z[:, t + 1]]
    return w.sum()


def _last_marginal(pi, A, ll):
    z, lj = brute_log_joint(pi, A, ll)
    p = np.exp(lj - logsumexp(lj))
    return np.array([p[z[:, -1] == k].sum() for k in range(ll.shape[1])])


def brute_force(pi, A, ll):
    """Everything the kernels compute, by enumerating paths."""
    pi, A, ll = (np.asarray(x, np.float64) for x in (pi, A, ll))
    T, K = ll.shape
    z, lj = brute_log_joint(pi, A, ll)
    log_z = logsumexp(lj)
    post = np.exp(lj - log_z)
    onehot = (z[:, :, None] == np.arange(K)).astype(np.float64)  # (N, T, K)
    smoothed = np.einsum("n,ntk->tk", post, onehot)
    two_slice = np.einsum("n,nti,ntj->tij", post, onehot[:, :-1], onehot[:, 1:])

    def prefix_A(t):
        return A[:t] if A.ndim == 3 else A

    filtered = np.stack([_last_marginal(pi, prefix_A(t), ll[: t + 1]) for t in range(T)])
    predicted = [pi]
    for t in range(1, T):
        ll_pref = ll[: t + 1].copy()
        ll_pref[t] = 0.0
        predicted.append(_last_marginal(pi, prefix_A(t), ll_pref))
    # backward messages: beta_t(k) ∝ sum over suffixes of exp(suffix log weight); summing
    # over whole paths counts each suffix K^t times, a constant the max-1 scaling removes
    suffix = np.zeros((z.shape[0], T))
    for t in range(T - 2, -1, -1):
        step = _log(_trans(A, t))[z[:, t], z[:, t + 1]] + ll[t + 1, z[:, t + 1]]
        suffix[:, t] = suffix[:, t + 1] + step
    lb = np.array([[logsumexp(suffix[z[:, t] == k, t]) for k in range(K)] for t in range(T)])
    return dict(
        loglik=log_z,
        filtered=filtered,
        predicted=np.stack(predicted),
        smoothed=smoothed,
        two_slice=two_slice,
        expected=two_slice.sum(0),
        viterbi=z[np.argmax(lj)],
        backward=np.exp(lb - lb.max(axis=1, keepdims=True)),
        paths=z,
        path_probs=post,
    )


def _central_fd(f, x, eps=1e-6, where=None):
    x = np.asarray(x, np.float64)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        if where is not None and not where[idx]:
            continue
        e = np.zeros_like(x)
        e[idx] = eps
        g[idx] = (float(f(x + e)) - float(f(x - e))) / (2 * eps)
    return g


def _central_fd_vec(f, x, eps=1e-6):
    """Central differences of a vector-valued f: returns (len(f(x)), *x.shape)."""
    x = np.asarray(x, np.float64)
    g = np.zeros((len(f(x)),) + x.shape)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = eps
        g[(slice(None),) + idx] = (np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * eps)
    return g


def reference(pi, A, ll, mask=None, length=None):
    """Brute-force reference for a masked, padded sequence.

    Masked steps have no emission term; steps >= length are padding: the reference is the
    brute force on the first ``length`` steps, extended with the frozen-chain convention
    (marginals repeat the last valid step, backward messages are 1, two-slice marginals
    are 0, the Viterbi path repeats its last state). Gradients w.r.t. pi and A are central
    differences of the brute-force likelihood; w.r.t. ll they are the smoothed marginals.
    """
    T, K = ll.shape
    L = T if length is None else int(length)
    ll_eff = ll if mask is None else np.where(np.asarray(mask)[:, None], ll, 0.0)
    A_eff = A[: L - 1] if A.ndim == 3 else A
    r = brute_force(pi, A_eff, ll_eff[:L])
    pad = T - L

    def ext(x, fill):
        return np.concatenate([x, np.broadcast_to(fill, (pad,) + x.shape[1:])])

    smoothed = ext(r["smoothed"], r["smoothed"][-1])
    g_ll = np.where(np.isfinite(ll_eff), smoothed, 0.0)
    if mask is not None:
        g_ll = np.where(np.asarray(mask)[:, None], g_ll, 0.0)
    g_ll[L:] = 0.0

    def loglik(p, a):
        return np.log(brute_prob(p, a[: L - 1] if a.ndim == 3 else a, ll_eff[:L]))

    return dict(
        loglik=r["loglik"],
        filtered=ext(r["filtered"], r["filtered"][-1]),
        predicted=ext(r["predicted"], r["filtered"][-1]),
        smoothed=smoothed,
        backward=ext(r["backward"], 1.0),
        two_slice=ext(r["two_slice"], 0.0),
        expected=r["expected"],
        viterbi=ext(r["viterbi"], r["viterbi"][-1]),
        g_pi=_central_fd(lambda p: loglik(p, A), pi),
        g_A=_central_fd(lambda a: loglik(pi, a), A),
        g_ll=g_ll,
    )


def logspace_reference(pi, A, ll):
    """Float64 log-space forward-backward: an independent, underflow-free recursion."""
    pi, A, ll = (np.asarray(x, np.float64) for x in (pi, A, ll))
    T, K = ll.shape
    la = np.zeros((T, K))
    lb = np.zeros((T, K))
    la[0] = _log(pi) + ll[0]
    for t in range(1, T):
        la[t] = logsumexp(la[t - 1][:, None] + _log(_trans(A, t - 1)), axis=0) + ll[t]
    for t in range(T - 2, -1, -1):
        lb[t] = logsumexp(_log(_trans(A, t)) + (ll[t + 1] + lb[t + 1])[None, :], axis=1)
    log_z = logsumexp(la[-1])
    filtered = np.exp(la - logsumexp(la, axis=1, keepdims=True))
    smoothed = np.exp(la + lb - log_z)
    xi = np.zeros((T - 1, K, K))
    for t in range(T - 1):
        xi[t] = np.exp(
            la[t][:, None] + _log(_trans(A, t)) + (ll[t + 1] + lb[t + 1])[None, :] - log_z
        )
    return log_z, filtered, smoothed, xi


def _close(actual, desired, rtol=1e-9, atol=1e-10, err_msg=""):
    np.testing.assert_allclose(
        np.asarray(actual), np.asarray(desired), rtol=rtol, atol=atol, err_msg=err_msg
    )


# --------------------------------------------------------------------------------------
# jitted helpers: every output, sequential and parallel, in one compiled program
# --------------------------------------------------------------------------------------


def _outputs(pi, A, ll, mask=None, length=None, light=False):
    out = {}
    for name, parallel in (("seq", False), ("par", True)):
        kw = dict(mask=mask, length=length, parallel=parallel)
        post = hmm_smoother(pi, A, ll, **kw)
        if light:  # what the dynamax comparison needs
            out[name] = dict(
                loglik=hmm_log_likelihood(pi, A, ll, **kw),
                smoother_loglik=post.marginal_loglik,
                filtered=post.filtered_probs,
                predicted=post.predicted_probs,
                smoothed=post.smoothed_probs,
                two_slice=hmm_two_slice_marginals(pi, A, ll, **kw),
                expected=hmm_expected_transitions(pi, A, ll, **kw),
            )
            continue
        filt = hmm_filter(pi, A, ll, **kw)
        g_pi, g_A, g_ll = jax.grad(hmm_log_likelihood, argnums=(0, 1, 2))(pi, A, ll, **kw)
        out[name] = dict(
            loglik=hmm_log_likelihood(pi, A, ll, **kw),
            filter_loglik=filt.marginal_loglik,
            smoother_loglik=post.marginal_loglik,
            filtered=filt.filtered_probs,
            predicted=filt.predicted_probs,
            smoothed=post.smoothed_probs,
            smoother_filtered=post.filtered_probs,
            backward=hmm_backward(A, ll, **kw),
            two_slice=hmm_two_slice_marginals(pi, A, ll, **kw),
            expected=hmm_expected_transitions(pi, A, ll, **kw),
            g_pi=g_pi,
            g_A=g_A,
            g_ll=g_ll,
        )
    out["viterbi"] = hmm_posterior_mode(pi, A, ll, mask=mask, length=length)
    return out


_run_single = jax.jit(_outputs)
_run_light = jax.jit(partial(_outputs, light=True))
_run_batch = jax.jit(jax.vmap(_outputs))


def _stack(problems):
    return [np.stack(xs) for xs in zip(*problems, strict=True)]


def _take(out, b):
    return jax.tree.map(lambda x: np.asarray(x[b]), out)


def _check(out, ref, tol=1e-9, grad_tol=1e-6, msg=""):
    """Compare one problem's kernel outputs (both algorithms) with a reference dict."""
    for alg in ("seq", "par"):
        o = out[alg]
        m = f"{msg} {alg}"
        for key in ("loglik", "filter_loglik", "smoother_loglik"):
            _close(o[key], ref["loglik"], rtol=tol, atol=tol, err_msg=f"{m} {key}")
        for key in ("filtered", "predicted", "smoothed", "backward", "two_slice", "expected"):
            _close(o[key], ref[key], rtol=tol, atol=tol, err_msg=f"{m} {key}")
        _close(o["smoother_filtered"], ref["filtered"], rtol=tol, atol=tol, err_msg=m)
        _close(o["g_ll"], ref["g_ll"], rtol=tol, atol=tol, err_msg=f"{m} g_ll")
        for key in ("g_pi", "g_A"):
            assert np.isfinite(o[key]).all(), (m, key)
            _close(o[key], ref[key], rtol=grad_tol, atol=grad_tol, err_msg=f"{m} {key}")
    assert out["viterbi"].dtype == np.int32
    np.testing.assert_array_equal(out["viterbi"], ref["viterbi"], err_msg=f"{msg} viterbi")


# --------------------------------------------------------------------------------------
# 1. brute-force enumeration (float64), structural zeros and -inf emissions included
# --------------------------------------------------------------------------------------

_slow = pytest.mark.slow
BRUTE_CONFIGS = [
    pytest.param(2, 1, False, id="K2-T1-hom"),
    pytest.param(3, 2, True, id="K3-T2-tv", marks=_slow),
    pytest.param(3, 5, False, id="K3-T5-hom"),
    pytest.param(3, 5, True, id="K3-T5-tv"),
    pytest.param(2, 1, True, id="K2-T1-tv", marks=_slow),
    pytest.param(3, 1, False, id="K3-T1-hom", marks=_slow),
    pytest.param(2, 2, False, id="K2-T2-hom"),
    pytest.param(2, 2, True, id="K2-T2-tv", marks=_slow),
    pytest.param(3, 2, False, id="K3-T2-hom", marks=_slow),
    pytest.param(2, 5, False, id="K2-T5-hom", marks=_slow),
    pytest.param(2, 5, True, id="K2-T5-tv", marks=_slow),
]
KINDS = ("dense", "dense", "left_to_right", "neg_inf")


@pytest.mark.parametrize("K,T,tv", BRUTE_CONFIGS)
def test_brute_force(x64, K, T, tv):
    problems = [
        make_problem(100 * i + 10 * K + T, K, T, tv=tv, kind=k) for i, k in enumerate(KINDS)
    ]
    out = _run_batch(*_stack(problems))
    for b, (pi, A, ll) in enumerate(problems):
        _check(_take(out, b), reference(pi, A, ll), msg=f"{KINDS[b]}[{b}]")


def test_references_agree():
    """The two numpy references agree and are normalised (guards the references)."""
    pi, A, ll = make_problem(0, 3, 5, tv=True)
    ref = brute_force(pi, A, ll)
    log_z, filtered, smoothed, xi = logspace_reference(pi, A, ll)
    _close(ref["path_probs"].sum(), 1.0)
    _close(ref["loglik"], log_z)
    _close(ref["loglik"], np.log(brute_prob(pi, A, ll)))
    _close(ref["filtered"], filtered)
    _close(ref["smoothed"], smoothed)
    _close(ref["two_slice"], xi)


# --------------------------------------------------------------------------------------
# 5. masks and variable lengths (against brute force on the masked, truncated problem)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("tv", [False, True], ids=["hom", "tv"])
def test_mask_and_length(x64, tv):
    K, T = 3, 5
    cases = [  # (mask, length)
        (np.array([True, False, True, False, True]), 5),
        (np.ones(T, bool), 1),
        (np.array([False, True, True, True, False]), 2),
        (np.array([True, True, False, True, True]), 4),
    ]
    problems = [make_problem(200 + i, K, T, tv=tv) for i in range(len(cases))]
    masks = np.stack([m for m, _ in cases])
    lengths = np.array([n for _, n in cases])
    pis, As, lls = _stack(problems)
    garbage = np.where(masks[:, :, None], lls, -1e3)  # masked values must not matter
    out = _run_batch(pis, As, garbage, masks, lengths)
    for b, ((pi, A, ll), (mask, n)) in enumerate(zip(problems, cases, strict=True)):
        _check(_take(out, b), reference(pi, A, ll, mask, n), msg=f"case {b}")
    # a masked run equals a run with those emission rows set to zero (and no mask), except
    # that the gradient w.r.t. a masked emission is zero
    zeroed = np.where(masks[:, :, None], lls, 0.0)
    out0 = _run_batch(pis, As, zeroed, np.ones_like(masks), lengths)
    for alg in ("seq", "par"):
        for key in out[alg]:
            a, b = out[alg][key], out0[alg][key]
            if key == "g_ll":
                np.testing.assert_array_equal(a[~masks], 0.0)
                a, b = a[masks], b[masks]
            _close(a, b, rtol=1e-12, atol=1e-12, err_msg=key)
    np.testing.assert_array_equal(out["viterbi"], out0["viterbi"])
    # length=T and an all-True mask equal the plain call (keep flags all True vs absent)
    plain = _take(_run_batch(pis, As, zeroed), 0)
    for a, b in zip(jax.tree.leaves(_take(out0, 0)), jax.tree.leaves(plain), strict=True):
        _close(a, b, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------
# 2. FFBS vs the brute-force posterior over paths
# --------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames="num_samples")
def _ffbs_both(key, pi, A, ll, mask=None, length=None, *, num_samples):
    return tuple(
        hmm_posterior_sample(
            key, pi, A, ll, num_samples=num_samples, mask=mask, length=length, parallel=p
        )
        for p in (False, True)
    )


def _assert_path_frequencies(draws, paths, probs):
    """Each path's frequency within N_SE Monte Carlo standard errors (plus one count, for
    discreteness); structurally impossible paths never drawn."""
    n, T = draws.shape
    K = int(paths.max()) + 1
    weights = K ** np.arange(T)[::-1]
    counts = np.bincount(np.asarray(draws) @ weights, minlength=K**T)
    p = np.zeros(K**T)
    p[paths @ weights] = probs
    freq = counts / n
    tol = N_SE * np.sqrt(p * (1 - p) / n) + 1.0 / n
    bad = np.abs(freq - p) > tol
    assert not bad.any(), (freq[bad], p[bad], tol[bad])
    assert counts[p == 0].sum() == 0


@pytest.mark.parametrize("tv", [False, True], ids=["hom", "tv"])
@pytest.mark.parametrize("kind", ["dense", "left_to_right"])
def test_ffbs_path_frequencies(x64, kind, tv):
    K, T, n = 3, 4, 20_000
    pi, A, ll = make_problem(7, K, T, tv=tv, kind=kind, scale=1.0)
    ref = brute_force(pi, A, ll)
    for draws in _ffbs_both(jax.random.key(0), pi, A, ll, num_samples=n):
        assert draws.shape == (n, T) and draws.dtype == jnp.int32
        _assert_path_frequencies(np.asarray(draws), ref["paths"], ref["path_probs"])


# --------------------------------------------------------------------------------------
# 3. sampling from the prior
# --------------------------------------------------------------------------------------


def test_sample_states_homogeneous():
    K, T, n = 3, 30, 4000
    rng = np.random.default_rng(5)
    pi = rng.dirichlet(np.ones(K))
    A = rng.dirichlet(np.ones(K), size=K)
    sample = jax.jit(jax.vmap(partial(hmm_sample_states, num_timesteps=T), (0, None, None)))
    z = np.asarray(sample(jax.random.split(jax.random.key(0), n), pi, A))
    assert z.shape == (n, T) and z.dtype == np.int32 and z.min() >= 0 and z.max() < K
    marg = pi.copy()  # marginal of z_t is pi A^t; n independent draws per t
    for t in range(T):
        freq = np.bincount(z[:, t], minlength=K) / n
        assert np.all(np.abs(freq - marg) <= N_SE * np.sqrt(marg * (1 - marg) / n)), t
        marg = marg @ A
    # transitions out of state i, given the number of visits N_i, are multinomial(N_i, A_i)
    counts = np.zeros((K, K))
    np.add.at(counts, (z[:, :-1].ravel(), z[:, 1:].ravel()), 1)
    n_i = counts.sum(1, keepdims=True)
    assert np.all(np.abs(counts / n_i - A) <= N_SE * np.sqrt(A * (1 - A) / n_i))


def test_sample_states_time_varying_with_zeros():
    K, T, n = 3, 5, 20_000
    _, A, _ = make_problem(9, K, T, tv=True, kind="left_to_right")
    pi = np.array([0.6, 0.4, 0.0])
    sample = jax.jit(jax.vmap(partial(hmm_sample_states, num_timesteps=T), (0, None, None)))
    z = np.asarray(sample(jax.random.split(jax.random.key(1), n), pi, A))
    freq0 = np.bincount(z[:, 0], minlength=K) / n
    assert np.all(np.abs(freq0 - pi) <= N_SE * np.sqrt(pi * (1 - pi) / n))
    for t in range(T - 1):
        counts = np.zeros((K, K))
        np.add.at(counts, (z[:, t], z[:, t + 1]), 1)
        n_i = counts.sum(1, keepdims=True)
        seen = n_i[:, 0] > 0
        freq = counts[seen] / n_i[seen]
        p = A[t][seen]
        assert np.all(np.abs(freq - p) <= N_SE * np.sqrt(p * (1 - p) / n_i[seen])), t
        assert counts[A[t] == 0].sum() == 0  # structural zeros never taken
    assert hmm_sample_states(jax.random.key(0), pi, A[:0], 1).shape == (1,)


# --------------------------------------------------------------------------------------
# 4. sequential == parallel on longer random problems
# --------------------------------------------------------------------------------------


def _assert_seq_equals_par(out, rtol, atol):
    for key in out["seq"]:
        _close(out["par"][key], out["seq"][key], rtol=rtol, atol=atol, err_msg=key)


@pytest.mark.parametrize(
    "K,dtype,tv",
    [
        pytest.param(5, np.float32, False, id="K5-f32-hom"),
        pytest.param(2, np.float32, False, id="K2-f32-hom", marks=_slow),
        pytest.param(5, np.float32, True, id="K5-f32-tv", marks=_slow),
        pytest.param(2, np.float32, True, id="K2-f32-tv", marks=_slow),
        pytest.param(2, np.float64, True, id="K2-f64-tv", marks=_slow),
        pytest.param(5, np.float64, False, id="K5-f64-hom", marks=_slow),
    ],
)
def test_sequential_equals_parallel(x64, K, dtype, tv):
    # float64 agreement (K = 2, 4, 8, time-varying too) is checked in test_agrees_with_dynamax
    pi, A, ll = make_problem(K + 10 * tv, K, EXTREME_T, tv=tv, dtype=dtype)
    out = _run_single(pi, A, ll)
    assert out["seq"]["loglik"].dtype == dtype and out["par"]["filtered"].dtype == dtype
    tol = 1e-10 if dtype == np.float64 else 2e-5
    _assert_seq_equals_par(out, rtol=tol, atol=tol)


# --------------------------------------------------------------------------------------
# 6. dynamax as an oracle
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "K,tv",
    [
        pytest.param(2, True, id="K2-tv"),
        pytest.param(4, False, id="K4-hom"),
        pytest.param(8, True, id="K8-tv"),
        pytest.param(2, False, id="K2-hom", marks=_slow),
        pytest.param(4, True, id="K4-tv", marks=_slow),
        pytest.param(8, False, id="K8-hom", marks=_slow),
    ],
)
def test_agrees_with_dynamax(x64, dynamax_hmm, K, tv):
    dx_mode = dynamax_hmm.hmm_posterior_mode
    dx_smoother = dynamax_hmm.hmm_smoother

    T = 100
    for seed in range(3):
        pi, A, ll = (jnp.asarray(x) for x in make_problem(1000 + seed, K, T, tv=tv))
        out = _run_light(pi, A, ll)
        ref = dx_smoother(pi, A, ll)  # its filter fields come from dynamax's hmm_filter
        for alg in ("seq", "par"):
            o = out[alg]
            _close(o["loglik"], ref.marginal_loglik)
            _close(o["smoother_loglik"], ref.marginal_loglik)
            _close(o["filtered"], ref.filtered_probs)
            _close(o["predicted"], ref.predicted_probs)
            _close(o["smoothed"], ref.smoothed_probs)
            # dynamax returns per-step two-slice marginals for time-varying A, else the sum
            _close(o["two_slice"] if tv else o["expected"], ref.trans_probs)
        np.testing.assert_array_equal(out["viterbi"], dx_mode(pi, A, ll))
        _assert_seq_equals_par(out, rtol=1e-10, atol=1e-10)


@pytest.mark.slow  # compiling dynamax's parallel filter alone takes ~7 s of CPU
def test_agrees_with_dynamax_parallel_filter(x64, dynamax_hmm):
    # dynamax's parallel filter is for homogeneous chains only
    for seed in range(3):
        pi, A, ll = (jnp.asarray(x) for x in make_problem(1000 + seed, 4, 100))
        out = _run_light(pi, A, ll)
        ref = dynamax_hmm.parallel_hmm_filter(pi, A, ll)
        _close(out["par"]["loglik"], ref.marginal_loglik)
        _close(out["par"]["filtered"], ref.filtered_probs)
        _close(out["par"]["predicted"], ref.predicted_probs)


# --------------------------------------------------------------------------------------
# 7. numerical stability
# --------------------------------------------------------------------------------------


@jax.jit
def _loglik_and_grads(pi, A, ll):
    return tuple(
        jax.value_and_grad(partial(hmm_log_likelihood, parallel=p), argnums=(0, 1, 2))(pi, A, ll)
        for p in (False, True)
    )


def _scaled_forward_np(pi, A, ll):
    """Float64 numpy scaled forward recursion (Rabiner 1989): an independent reference."""
    B = np.exp(ll - ll.max(1, keepdims=True))
    alpha, total = pi, ll.max(1).sum()
    for t in range(ll.shape[0]):
        a = (alpha @ A if t else pi) * B[t]
        c = a.sum()
        alpha, total = a / c, total + np.log(c)
    return total


def _check_long(T):
    rng = np.random.default_rng(123)
    K = 3
    pi = rng.dirichlet(np.ones(K))
    A = 0.9 * np.eye(K) + 0.1 * rng.dirichlet(np.ones(K), size=K)
    ll = -0.5 * (rng.normal(size=(T, 1)) * 1.5 - np.arange(K)) ** 2
    ref = _scaled_forward_np(pi, A, ll)
    for val, (g_pi, g_A, g_ll) in _loglik_and_grads(*(x.astype(np.float32) for x in (pi, A, ll))):
        assert val.dtype == jnp.float32 and np.isfinite(val)
        np.testing.assert_allclose(float(val), ref, rtol=1e-4)
        assert all(np.isfinite(g).all() for g in (g_pi, g_A, g_ll))
        # d loglik / d log_likelihoods are the smoothed marginals: rows sum to one
        _close(np.asarray(g_ll, np.float64).sum(1), 1.0, rtol=0, atol=1e-4)


def test_long_sequence_float32_100k(x64):
    _check_long(100_000)


@pytest.mark.slow
def test_long_sequence_float32_1m(x64):
    _check_long(1_000_000)


EXTREME_K, EXTREME_T = 5, 300


def _extreme_case(name):
    rng = np.random.default_rng(77)
    K, T = EXTREME_K, EXTREME_T
    pi = rng.dirichlet(np.ones(K))
    A = rng.dirichlet(np.ones(K), size=K)
    ll = rng.normal(size=(T, K))
    low = np.full(K, -1e4)
    if name == "all_low":
        ll = ll - 1e4
    elif name == "one_state_explains":
        ll = np.full((T, K), -1e4)
        ll[np.arange(T), rng.integers(K, size=T)] = 0.0
    elif name == "tiny_predicted":
        # state 1 alone explains step 20, where its predicted probability is ~1e-30
        pi = np.eye(K)[0]
        A[0] = np.full(K, 1e-30)
        A[0, 0] = 1.0
        ll[:20] = low
        ll[:20, 0] = 0.0
        ll[20] = low
        ll[20, 1] = 0.0
    elif name == "zero_predicted":
        # state 1 alone explains steps 5-7 but cannot be reached (zero column of A, zero
        # initial probability): the true path pays -1e4 per step elsewhere, so the scaled
        # forward pass underflows and the fallback is needed
        pi[1] = 0.0
        pi /= pi.sum()
        A[:, 1] = 0.0
        A /= A.sum(1, keepdims=True)
        ll[5:8] = low - 50.0 * np.arange(K)
        ll[5:8, 1] = 0.0
    else:
        raise ValueError(name)
    return pi, A, ll


def _check_extreme(name, smoother=True):
    # the reference sees the same float32-rounded inputs (-1e4 + noise is quantised to
    # ~1e-3 in float32, which moves the posterior by ~1e-4)
    pi, A, ll = (x.astype(np.float32) for x in _extreme_case(name))
    log_z, filtered, smoothed, xi = logspace_reference(pi, A, ll)
    out = _run_single(pi, A, ll)
    for alg in ("seq", "par"):
        o = jax.tree.map(np.asarray, out[alg])
        # float32 rounding of a sum of terms up to 1e4 in size: relative 1e-6
        for key in ("loglik", "filter_loglik"):
            np.testing.assert_allclose(o[key], log_z, rtol=1e-6, err_msg=f"{alg} {key}")
        np.testing.assert_allclose(o["filtered"], filtered, atol=1e-5, err_msg=alg)
        if not smoother:
            continue
        assert np.isfinite(o["smoother_loglik"])
        assert np.isfinite(o["smoothed"]).all(), alg
        np.testing.assert_allclose(o["smoothed"], smoothed, atol=1e-5, err_msg=alg)
        assert not any(np.isnan(o[k]).any() for k in ("g_pi", "g_A", "g_ll")), alg
        np.testing.assert_allclose(o["g_ll"], smoothed, atol=1e-5, err_msg=alg)
        # where A_ij is not tiny, d loglik / dA_ij = sum_t xi_t(i, j) / A_ij
        pos = A > 1e-20
        g_ref = xi.sum(0)[pos] / A[pos]
        np.testing.assert_allclose(o["g_A"][pos], g_ref, rtol=1e-4, atol=1e-4, err_msg=alg)


@pytest.mark.parametrize("name", ["all_low", "one_state_explains", "tiny_predicted"])
def test_extreme_emissions(x64, name):
    _check_extreme(name)


def test_zero_predicted_probability_loglik_and_filter(x64):
    """The underflow fallback gives the right log-likelihood and filter, without NaN."""
    _check_extreme("zero_predicted", smoother=False)


def test_zero_predicted_probability_smoother_and_gradient(x64):
    _check_extreme("zero_predicted")


def test_predicted_probability_below_float32_range():
    pi = np.array([1.0, 1e-20, 0.0])
    A = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1e-20], [0.0, 0.0, 1.0]])
    ll = np.array([[0.0, 0.0, 0.0], [-1e4, -1e4, 0.0], [0.0, 0.0, 0.0]])
    log_z = logspace_reference(pi, A, ll)[0]
    val = hmm_log_likelihood(*(x.astype(np.float32) for x in (pi, A, ll)))
    np.testing.assert_allclose(float(val), log_z, rtol=1e-5)


def test_impossible_observation_gives_minus_inf():
    pi, A, ll = make_problem(0, 2, 3, kind="left_to_right", dtype=np.float32)
    ll[2] = -np.inf
    f = jax.jit(lambda *a: [hmm_log_likelihood(*a, parallel=p) for p in (False, True)])
    assert all(v == -np.inf for v in f(pi, A, ll))


# --------------------------------------------------------------------------------------
# 8. gradients
# --------------------------------------------------------------------------------------


def _loglik_both(pi, A, ll, mask, length):
    return jnp.stack(
        [hmm_log_likelihood(pi, A, ll, mask=mask, length=length, parallel=p) for p in (0, 1)]
    )


_loglik_both_jit = jax.jit(_loglik_both)


@jax.jit
def _derivatives(pi, A, ll, mask, length):
    args = (pi, A, ll, mask, length)
    return jax.jacrev(_loglik_both, (0, 1, 2))(*args), jax.jacfwd(_loglik_both, (0, 1, 2))(*args)


def test_gradients_vs_kernel_finite_differences(x64):
    """jax.grad and jax.jacfwd vs central differences of the kernel itself, with a mask, a
    length and time-varying transitions (brute-force-based gradient checks for every other
    configuration are in test_brute_force and test_mask_and_length)."""
    pi, A, ll = make_problem(51, 3, 5, tv=True)
    mask, length = np.array([True, False, True, True, False]), 4
    rev, fwd = _derivatives(pi, A, ll, mask, length)
    args = [pi, A, ll]
    for i, name in enumerate(("initial_probs", "transition_matrix", "log_likelihoods")):

        def f(x, i=i):
            a = list(args)
            a[i] = x
            return _loglik_both_jit(*a, mask, length)

        fd = _central_fd_vec(f, args[i])
        for alg in (0, 1):
            _close(rev[i][alg], fd[alg], rtol=1e-6, atol=1e-7, err_msg=name)
            _close(fwd[i][alg], rev[i][alg], rtol=1e-10, atol=1e-12, err_msg=name)
    np.testing.assert_array_equal(rev[2][:, ~mask], 0.0)  # no emission term when masked
    np.testing.assert_array_equal(rev[2][:, length:], 0.0)  # padding
    np.testing.assert_array_equal(rev[1][:, length - 1 :], 0.0)


def _softmax_np(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@jax.jit
def _softmax_loss_grads(a, B, mu, y):
    def loss(a, B, mu, parallel):
        ll = -0.5 * (y[:, None] - mu[None, :]) ** 2
        pi, A = jax.nn.softmax(a), jax.nn.softmax(B, axis=-1)
        return hmm_log_likelihood(pi, A, ll, parallel=parallel)

    return [jax.grad(loss, (0, 1, 2))(a, B, mu, p) for p in (False, True)]


def test_gradient_through_softmax_parameterisation(x64):
    K, T = 3, 6
    rng = np.random.default_rng(61)
    a, B, mu, y = (
        rng.normal(size=K),
        rng.normal(size=(K, K)),
        rng.normal(size=K),
        rng.normal(size=T),
    )

    def ref(a, B, mu):
        ll = -0.5 * (y[:, None] - mu[None, :]) ** 2
        return np.log(brute_prob(_softmax_np(a), _softmax_np(B), ll))

    fds = (
        _central_fd(lambda x: ref(x, B, mu), a),
        _central_fd(lambda x: ref(a, x, mu), B),
        _central_fd(lambda x: ref(a, B, x), mu),
    )
    for grads in _softmax_loss_grads(a, B, mu, y):
        for g, fd in zip(grads, fds, strict=True):
            _close(g, fd, rtol=1e-6, atol=1e-8)

    # structural zeros as -inf logits (left-to-right): finite gradient, zero at the zeros
    B0 = np.where(np.triu(np.ones((K, K))) > 0, B, -np.inf)

    def ref0(B):
        return ref(a, np.where(np.isfinite(B0), B, -np.inf), mu)

    fd = _central_fd(ref0, np.where(np.isfinite(B0), B0, 0.0), where=np.isfinite(B0))
    for _, g, _ in _softmax_loss_grads(a, B0, mu, y):
        assert np.isfinite(g).all()
        np.testing.assert_array_equal(np.asarray(g)[~np.isfinite(B0)], 0.0)
        _close(g, fd, rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------------------
# 9. jit and vmap
# --------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames="num_samples")
def _ffbs_batch(keys, pi, A, ll, mask, length, *, num_samples):
    def one(key, pi, A, ll, mask, length):
        return _ffbs_both(key, pi, A, ll, mask, length, num_samples=num_samples)

    return jax.vmap(one)(keys, pi, A, ll, mask, length)


def test_ffbs_vmap_over_lengths_and_masks(x64):
    """FFBS under jit + vmap over sequences with different lengths and masks (time-varying
    transitions): the tail after the end repeats the state at L-1, and the draws of the
    first L steps follow the brute-force posterior of the first L (masked) steps. (The other
    kernels run under jit + vmap over different lengths in test_mask_and_length.)"""
    K, T, n = 3, 6, 10_000
    problems = [make_problem(300 + i, K, T, tv=True, scale=1.0) for i in range(4)]
    lengths = np.array([1, 4, 6, 2])
    masks = np.array(
        [
            [True] * 6,
            [True, False, True, True, False, True],
            [False] + [True] * 5,
            [True, False] + [True] * 4,
        ]
    )
    pis, As, lls = _stack(problems)
    keys = jax.random.split(jax.random.key(0), 4)
    seq, par = _ffbs_batch(keys, pis, As, lls, masks, lengths, num_samples=n)
    assert seq.shape == par.shape == (4, n, T) and seq.dtype == jnp.int32
    for b, L in enumerate(lengths):
        pi, A, ll = problems[b]
        ref = brute_force(pi, A[: L - 1], np.where(masks[b, :L, None], ll[:L], 0.0))
        for draws in (np.asarray(seq[b]), np.asarray(par[b])):
            _assert_path_frequencies(draws[:, :L], ref["paths"], ref["path_probs"])
            np.testing.assert_array_equal(draws[:, L:], np.repeat(draws[:, L - 1 : L], T - L, 1))
    # a fixed key reproduces the draws; another key gives different ones
    again = _ffbs_batch(keys, pis, As, lls, masks, lengths, num_samples=n)
    np.testing.assert_array_equal(again[0], seq)
    other = _ffbs_batch(keys[::-1], pis, As, lls, masks, lengths, num_samples=n)
    assert not np.array_equal(other[0][2], seq[2])


# --------------------------------------------------------------------------------------
# 10. input errors
# --------------------------------------------------------------------------------------

K_, T_ = 3, 6
_PI = np.full(K_, 1 / K_)
_A = np.full((K_, K_), 1 / K_)
_LL = np.zeros((T_, K_))

BAD_INPUTS = [
    ("initial_probs", dict(initial_probs=np.full(K_ + 1, 0.25))),
    ("initial_probs", dict(initial_probs=np.full((1, K_), 1 / K_))),
    ("transition_matrix", dict(transition_matrix=np.full((K_, K_ + 1), 0.25))),
    ("transition_matrix", dict(transition_matrix=np.full((T_, K_, K_), 1 / K_))),
    ("transition_matrix", dict(transition_matrix=np.full(K_, 1 / K_))),
    ("log_likelihoods", dict(log_likelihoods=np.zeros(T_))),
    ("log_likelihoods", dict(log_likelihoods=np.zeros((0, K_)))),
    ("mask", dict(mask=np.ones(T_ + 1, bool))),
    ("length", dict(length=np.array([3, 4]))),
]

FUNCS = {
    "log_likelihood": hmm_log_likelihood,
    "filter": hmm_filter,
    "smoother": hmm_smoother,
    "two_slice": hmm_two_slice_marginals,
    "expected": hmm_expected_transitions,
    "mode": hmm_posterior_mode,
    "sample": partial(hmm_posterior_sample, jax.random.key(0)),
}
POSITIONAL = ("initial_probs", "transition_matrix", "log_likelihoods")


@pytest.mark.parametrize("fname", list(FUNCS))
@pytest.mark.parametrize(
    "argname,override", BAD_INPUTS, ids=[f"{a}-{i}" for i, (a, _) in enumerate(BAD_INPUTS)]
)
def test_bad_shapes_raise(fname, argname, override):
    args = dict(initial_probs=_PI, transition_matrix=_A, log_likelihoods=_LL)
    args.update({k: v for k, v in override.items() if k in POSITIONAL})
    kw = {k: v for k, v in override.items() if k not in POSITIONAL}
    with pytest.raises(ValueError, match=argname):
        FUNCS[fname](*(args[k] for k in POSITIONAL), **kw)


@pytest.mark.parametrize("argname,override", [b for b in BAD_INPUTS if b[0] != "initial_probs"])
def test_backward_bad_shapes_raise(argname, override):
    args = dict(transition_matrix=_A, log_likelihoods=_LL)
    args.update({k: v for k, v in override.items() if k in args})
    kw = {k: v for k, v in override.items() if k not in POSITIONAL}
    with pytest.raises(ValueError, match=argname):
        hmm_backward(args["transition_matrix"], args["log_likelihoods"], **kw)


@pytest.mark.parametrize(
    "argname,args",
    [
        ("initial_probs", (np.full((1, K_), 1 / K_), _A, T_)),
        ("transition_matrix", (_PI, np.full((K_ + 1, K_ + 1), 0.25), T_)),
        ("transition_matrix", (_PI, np.full((T_, K_, K_), 1 / K_), T_)),
        ("num_timesteps", (_PI, _A, 0)),
    ],
)
def test_sample_states_bad_shapes_raise(argname, args):
    with pytest.raises(ValueError, match=argname):
        hmm_sample_states(jax.random.key(0), *args)


# --------------------------------------------------------------------------------------
# small-K fast path and fused forward-backward scan vs the plain dot / separate scans
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("K", [2, 4, 8, 9])
def test_small_k_products_equal_dot(K):
    """The multiply-and-sum products (K <= SMALL_K) equal ``@`` (and large K uses ``@``)."""
    from probdyn.kernels.hmm import _matvec, _vecmat

    rng = np.random.default_rng(K)
    A = rng.random((K, K)).astype(np.float32)
    x = rng.random(K).astype(np.float32)
    np.testing.assert_allclose(_vecmat(jnp.asarray(x), jnp.asarray(A)), x @ A, rtol=1e-6)
    np.testing.assert_allclose(_matvec(jnp.asarray(A), jnp.asarray(x)), A @ x, rtol=1e-6)


@pytest.mark.parametrize("tv", [False, True], ids=["hom", "tv"])
def test_fused_scan_equals_separate_dot_scans(x64, monkeypatch, tv):
    """New path (small-K products, forward and backward in one scan) vs the old one
    (``@`` per step, two scans), with a length so the keep flags are exercised."""
    from probdyn.kernels import hmm as H
    from probdyn.kernels._hmm_inputs import prepare

    pi, A, ll = make_problem(3, 4, 7, tv=tv)
    pi, A, ll, keep = prepare(pi, A, ll, None, jnp.asarray(6))
    fwd, bwd = H._forward_backward_seq(pi, A, ll, keep)
    monkeypatch.setattr(H, "SMALL_K", 0)  # eager scans retrace: the ``@`` path
    old_fwd, old_bwd = H._forward_seq(pi, A, ll, keep), H._backward_seq(A, ll, keep)
    for new, old in zip((*fwd, *bwd), (*old_fwd, *old_bwd), strict=True):
        np.testing.assert_allclose(new, old, rtol=1e-12, atol=1e-14)
