"""Tests for probdyn.kernels.ctmc (and the matrix exponentials in probdyn.kernels.expm).

References used: ``scipy.linalg.expm`` (float64) across a stiffness grid, central finite
differences, a numpy null-space solve for the stationary distribution, direct numpy sums
and the exponential density for path likelihoods, the closed-form MLE score of a CTMC,
and, for the bridge sampler, exact endpoint-conditioned marginals
``P(s)[a, k] P(t-s)[k, b] / P(t)[a, b]`` and the exact jump-count distribution from the
expm of a count-augmented generator. Stochastic tests use fixed keys and 5 Monte Carlo
standard errors.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sl

from probdyn.kernels.ctmc import (
    check_generator,
    generator_from_rates,
    path_log_likelihood,
    sample_bridge,
    stationary_distribution,
    transition_matrices,
)

N_SE = 5.0
DTS = 10.0 ** np.linspace(-3, 2, 12)  # gaps 1e-3 .. 1e2
# Max abs error vs scipy.linalg.expm on the grid below: measured worst case over K and kind
# (module docstring of probdyn.kernels.ctmc) times a margin of 3..10.
# measured (float64 / float32): pade 1.0e-12 / 1.6e-6, uniformization 1.0e-12 / 1.2e-6,
# eigh 6.8e-12 / 2.4e-3 (eigh in float32 depends on how XLA fuses the jitted code; it
# measured 1.3e-6 eagerly, which is why "auto" never uses it in float32).
TOL = {
    ("pade", "float64"): 1e-11,
    ("uniformization", "float64"): 1e-11,
    ("eigh", "float64"): 5e-11,
    ("pade", "float32"): 1e-5,
    ("uniformization", "float32"): 1e-5,
    ("eigh", "float32"): 1e-2,
}


def make_generator(seed, K, kind, lo=-3.0, hi=3.0):
    """Random generator with rates log-uniform in [10^lo, 10^hi] (numpy float64).

    ``kind``: ``nonrev`` (independent rates), ``rev`` (pi_i q_ij symmetric, random pi) or
    ``absorbing`` (state K-1 absorbing, others as ``nonrev``).
    """
    rng = np.random.default_rng(seed)
    r = 10.0 ** rng.uniform(lo, hi, size=(K, K))
    if kind == "rev":
        pi = rng.dirichlet(2.0 * np.ones(K))
        r = np.sqrt(r * r.T) * np.sqrt(pi[None, :] / pi[:, None])
    elif kind == "absorbing":
        r[-1] = 0.0
    elif kind != "nonrev":
        raise ValueError(kind)
    np.fill_diagonal(r, 0.0)
    return r - np.diag(r.sum(axis=1))


def scipy_P(Q, dts):
    return np.stack([sl.expm(Q * t) for t in dts])


def methods_for(kind):
    return ["auto", "pade", "uniformization"] + (["eigh"] if kind == "rev" else [])


def _tol(method, kind, dtype):
    if method == "auto":
        method = "eigh" if kind == "rev" else "uniformization"
    return TOL[(method, dtype)]


# --------------------------------------------------------------------------------------
# transition matrices
# --------------------------------------------------------------------------------------


def _check_against_scipy(K, kind, method, dtype):
    Q = make_generator(100 + K, K, kind)
    ref = scipy_P(Q, DTS)
    P = np.asarray(
        transition_matrices(jnp.asarray(Q, dtype), jnp.asarray(DTS, dtype), method=method)
    )
    assert P.shape == (len(DTS), K, K)
    assert np.all(np.isfinite(P))
    assert P.min() >= 0.0
    tol = _tol(method, kind, dtype)
    np.testing.assert_allclose(P.sum(-1), 1.0, atol=tol)
    assert np.abs(P - ref).max() < tol, (method, np.abs(P - ref).max())


@pytest.mark.parametrize("K", [2, 3, 10])
@pytest.mark.parametrize("kind", ["nonrev", "rev", "absorbing"])
def test_transition_matrices_float64_vs_scipy(x64, K, kind):
    for method in methods_for(kind):
        _check_against_scipy(K, kind, method, "float64")


@pytest.mark.parametrize("kind", ["nonrev", "rev"])
def test_transition_matrices_float32_vs_scipy(kind):
    for method in ["auto", "pade"]:
        _check_against_scipy(3, kind, method, "float32")


@pytest.mark.slow
@pytest.mark.parametrize("K", [2, 3, 10])
@pytest.mark.parametrize("kind", ["nonrev", "rev", "absorbing"])
def test_transition_matrices_float32_vs_scipy_full(K, kind):
    for method in methods_for(kind):
        _check_against_scipy(K, kind, method, "float32")


def test_auto_picks_eigh_for_reversible(x64):
    from probdyn.kernels.ctmc import _eigh_ok

    for kind, expected in [("rev", True), ("nonrev", False), ("absorbing", False)]:
        for K in [3, 10]:
            Q = jnp.asarray(make_generator(7 + K, K, kind))
            assert bool(_eigh_ok(Q, stationary_distribution(Q))) == expected, (kind, K)
    Q2 = jnp.asarray(make_generator(7, 2, "nonrev"))  # every 2-state chain is reversible
    assert bool(_eigh_ok(Q2, stationary_distribution(Q2)))


def test_jax_expm_nans_where_ours_is_finite(x64):
    # ||Q dt||_1 = 1.8e6 needs 19 squarings > jax's cap of 16 -> jax returns NaN
    Q = np.full((10, 10), 1e3)
    np.fill_diagonal(Q, 0.0)
    Q = Q - np.diag(Q.sum(1))
    dts = jnp.asarray(DTS)  # ends at 1e2; same shapes as the grid tests (compiled once)
    Pj = jax.vmap(lambda t: jax.scipy.linalg.expm(jnp.asarray(Q) * t))(dts)
    assert np.isnan(np.asarray(Pj)[-1]).all() and np.isfinite(np.asarray(Pj)[0]).all()
    for method in ["auto", "pade", "uniformization", "eigh"]:
        P = np.asarray(transition_matrices(Q, dts, method=method))
        assert np.isfinite(P).all()
        # closed form for equal rates r: P(t) = J/K + (I - J/K) exp(-K r t); scipy itself is
        # off by 1e-10 at t = 1e2 here (19 squarings)
        exact = 0.1 + (np.eye(10) - 0.1)[None] * np.exp(-1e4 * DTS)[:, None, None]
        tol = 1e-10 if method in ("auto", "eigh") else 1e-12  # auto -> eigh here (measured 7e-11)
        assert np.abs(P - exact).max() < tol, (method, np.abs(P - exact).max())


def test_many_gaps_one_compilation_and_vmap_over_generators():
    dts = jnp.asarray(10.0 ** np.random.default_rng(0).uniform(-3, 2, size=4096), jnp.float32)
    Qs = jnp.stack(
        [
            jnp.asarray(make_generator(s, 3, k), jnp.float32)
            for s, k in [(1, "nonrev"), (2, "rev"), (3, "absorbing")]
        ]
    )
    f = jax.jit(jax.vmap(lambda Q: transition_matrices(Q, dts)))
    P = f(Qs)
    assert P.shape == (3, 4096, 3, 3)
    assert bool(jnp.isfinite(P).all())
    f(Qs * 2.0)  # new values, same shapes: no retrace
    assert f._cache_size() == 1
    np.testing.assert_allclose(P.sum(-1), 1.0, atol=1e-3)


def test_zero_gap_and_zero_generator(x64):
    Q = make_generator(0, 3, "nonrev", -1, 1)
    for method in ["auto", "pade", "uniformization"]:
        np.testing.assert_allclose(
            transition_matrices(Q, jnp.zeros(12), method=method),
            np.eye(3)[None].repeat(12, 0),
            atol=1e-15,
        )
        np.testing.assert_allclose(
            transition_matrices(np.zeros((3, 3)), jnp.ones(12), method=method),
            np.eye(3)[None].repeat(12, 0),
            atol=0,
        )


# --------------------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------------------


def _fd_check(Q, dts, method, seed=0, h=1e-6, rtol=1e-6):
    rng = np.random.default_rng(seed)
    K = Q.shape[0]
    G = rng.normal(size=(len(dts), K, K))
    # arbitrary direction (Q + hV need not be a generator, let alone reversible): scipy
    # differences exp(Q + hV); AD differentiates at the generator Q itself
    V = rng.normal(size=(K, K))
    Vd = rng.normal(size=len(dts)) * dts

    def f(Q, d):
        return jnp.sum(G * transition_matrices(Q, d, method=method))

    gQ, gd = jax.grad(f, argnums=(0, 1))(jnp.asarray(Q), jnp.asarray(dts))

    def ref(Q, d):
        return float(np.sum(G * scipy_P(Q, d)))

    fdQ = (ref(Q + h * V, dts) - ref(Q - h * V, dts)) / (2 * h)
    fdd = (ref(Q, dts + h * Vd) - ref(Q, dts - h * Vd)) / (2 * h)
    np.testing.assert_allclose(float(jnp.sum(gQ * V)), fdQ, rtol=rtol)
    np.testing.assert_allclose(float(jnp.sum(gd * Vd)), fdd, rtol=rtol)


@pytest.mark.parametrize(
    "kind, methods",
    [("nonrev", ["auto"]), ("rev", ["auto"]), ("absorbing", ["pade"])],
)
def test_gradients_vs_finite_differences(x64, kind, methods):
    Q = make_generator(11, 4, kind, -1, 1)
    dts = np.array([0.01, 0.3, 2.0, 50.0])
    for method in methods:
        _fd_check(Q, dts, method)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["nonrev", "rev", "absorbing"])
def test_gradients_vs_finite_differences_all_methods(x64, kind):
    Q = make_generator(11, 4, kind, -1, 1)
    dts = np.array([0.01, 0.3, 2.0, 50.0])
    for method in methods_for(kind):
        _fd_check(Q, dts, method)


@pytest.mark.slow
def test_gradients_stiff(x64):
    Q = make_generator(12, 3, "nonrev", -2, 2)
    for method in ["pade", "uniformization"]:
        _fd_check(Q, np.array([1e-3, 0.1, 10.0]), method, h=1e-7, rtol=1e-5)


def test_gradients_degenerate_eigenvalues(x64):
    # all rates equal: repeated eigenvalues, where the gradient of eigh itself is NaN
    Qd = np.ones((3, 3)) - 3 * np.eye(3)
    _fd_check(Qd, np.array([0.1, 1.0, 5.0]), "eigh")


def test_eigh_forward_mode_matches_reverse(x64):
    Q = jnp.asarray(make_generator(3, 3, "rev", -1, 1))
    d = jnp.array([0.2, 3.0])
    V = jnp.asarray(np.random.default_rng(0).normal(size=(3, 3)))
    f = lambda Q: jnp.sum(transition_matrices(Q, d, method="eigh") ** 2)  # noqa: E731
    _, jv = jax.jvp(f, (Q,), (V,))
    np.testing.assert_allclose(jv, jnp.sum(jax.grad(f)(Q) * V), rtol=1e-10)


# --------------------------------------------------------------------------------------
# stationary distribution, helpers
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["nonrev", "rev", "absorbing"])
def test_stationary_distribution(x64, kind):
    Q = make_generator(5, 5, kind)
    pi = np.asarray(stationary_distribution(Q))
    ns = sl.null_space(Q.T)[:, 0]
    np.testing.assert_allclose(pi, ns / ns.sum(), atol=1e-12)
    if kind == "absorbing":
        np.testing.assert_allclose(pi, np.eye(5)[-1], atol=1e-12)


def test_generator_from_rates():
    r = np.arange(9.0).reshape(3, 3)
    Q = np.asarray(generator_from_rates(r))
    np.testing.assert_allclose(Q, [[-3.0, 1, 2], [3, -8, 5], [6, 7, -13]])
    check_generator(Q)


# --------------------------------------------------------------------------------------
# path likelihood
# --------------------------------------------------------------------------------------


def test_path_log_likelihood_hand_path(x64):
    Q = make_generator(1, 3, "nonrev", -1, 1)
    p0 = np.array([0.2, 0.5, 0.3])
    states = np.array([1, 0, 2, 0, -7, 99])  # last two entries are padding
    times = np.array([123.0, 0.4, 1.1, 2.5, -1.0, 0.0])
    t_end = 3.2
    ref = (
        np.log(p0[1])
        + np.log(Q[1, 0])
        + np.log(Q[0, 2])
        + np.log(Q[2, 0])
        + Q[1, 1] * 0.4
        + Q[0, 0] * 0.7
        + Q[2, 2] * 1.4
        + Q[0, 0] * 0.7
    )
    ll = path_log_likelihood(Q, p0, states, times, t_end, 3)
    np.testing.assert_allclose(ll, ref, rtol=1e-13)
    jit_ll = jax.jit(path_log_likelihood)(Q, p0, states, times, t_end, 3)
    np.testing.assert_allclose(jit_ll, ref, rtol=1e-13)


def test_path_log_likelihood_single_interval_is_exponential(x64):
    from scipy.stats import expon

    Q = make_generator(2, 3, "nonrev", -1, 1)
    p0 = np.ones(3) / 3
    q0 = -Q[0, 0]
    for tau in [0.01, 0.7, 4.0]:
        # one jump 0 -> 1 at tau, window ends there: density of Exp(q0) times jump choice
        ll = path_log_likelihood(Q, p0, np.array([0, 1]), np.array([0.0, tau]), tau, 1)
        ref = np.log(1 / 3) + expon.logpdf(tau, scale=1 / q0) + np.log(Q[0, 1] / q0)
        np.testing.assert_allclose(ll, ref, rtol=1e-12)
        # no jump in [0, tau]: survival function
        ll0 = path_log_likelihood(Q, p0, np.array([0, 1]), np.array([0.0, 0.0]), tau, 0)
        np.testing.assert_allclose(ll0, np.log(1 / 3) + expon.logsf(tau, scale=1 / q0), rtol=1e-12)


def test_path_log_likelihood_score_is_mle_score(x64):
    # d/d r_ij log L = N_ij / r_ij - T_i (counts N and occupation times T of the path)
    rng = np.random.default_rng(3)
    K, M = 3, 12
    r = rng.uniform(0.5, 2.0, size=(K, K))
    states = [0]
    for _ in range(M - 1):
        states.append(int(rng.choice([k for k in range(K) if k != states[-1]])))
    states = np.array(states)
    times = np.concatenate([[0.0], np.cumsum(rng.exponential(size=M - 1))])
    t_end = times[-1] + 0.3
    g = jax.grad(
        lambda r: path_log_likelihood(
            generator_from_rates(r), np.ones(K) / K, states, times, t_end, M - 1
        )
    )(jnp.asarray(r))
    N = np.zeros((K, K))
    np.add.at(N, (states[:-1], states[1:]), 1)
    hold = np.diff(np.concatenate([times, [t_end]]))
    T = np.bincount(states, weights=hold, minlength=K)
    ref = N / r - T[:, None]
    np.fill_diagonal(ref, 0.0)
    np.testing.assert_allclose(g, ref, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------
# bridges
# --------------------------------------------------------------------------------------


def _jump_count_distribution(Q, a, b, t, J):
    """p(N_t = j, X_t = b | X_0 = a) for j < J: expm of the count-augmented generator."""
    K = Q.shape[0]
    A = np.zeros((K * (J + 1), K * (J + 1)))
    off = Q - np.diag(np.diag(Q))
    for j in range(J + 1):
        s = slice(j * K, (j + 1) * K)
        A[s, s] = np.diag(np.diag(Q))
        nxt = slice(min(j + 1, J) * K, (min(j + 1, J) + 1) * K)
        A[s, nxt] += off
    E = sl.expm(A * t)
    return np.array([E[a, j * K + b] for j in range(J)])


def test_bridge_statistics(x64):
    Q = np.array([[-1.0, 0.6, 0.4], [0.5, -1.5, 1.0], [0.3, 0.9, -1.2]])
    a, b, t, n = 0, 2, 2.0, 20000
    keys = jax.random.split(jax.random.key(42), n)
    paths = jax.jit(jax.vmap(lambda k: sample_bridge(k, Q, a, b, t, 12)))(keys)
    states, times = np.asarray(paths.states), np.asarray(paths.times)
    nj = np.asarray(paths.num_jumps)
    assert not np.asarray(paths.overflow).any()
    assert (states[:, 0] == a).all() and (states[np.arange(n), nj] == b).all()
    assert (np.diff(times, axis=1) >= 0).all() and (times[:, -1] == t).all()
    assert (
        states[:, 1:][np.arange(12) < nj[:, None]] != states[:, :-1][np.arange(12) < nj[:, None]]
    ).all()
    # number of jumps
    Pt = sl.expm(Q * t)
    J = 6
    exact = _jump_count_distribution(Q, a, b, t, J) / Pt[a, b]
    emp = np.bincount(nj, minlength=J + 1)[:J] / n
    se = np.sqrt(exact * (1 - exact) / n)
    assert np.all(np.abs(emp - exact) < N_SE * se + 1e-12), (emp, exact)
    # state occupied at s
    for s in [0.3, 1.0, 1.7]:
        idx = np.sum(times[:, 1:] <= s, axis=1)
        idx = np.minimum(idx, nj)
        occ = states[np.arange(n), idx]
        exact = sl.expm(Q * s)[a] * sl.expm(Q * (t - s))[:, b] / Pt[a, b]
        emp = np.bincount(occ, minlength=3) / n
        se = np.sqrt(exact * (1 - exact) / n)
        assert np.all(np.abs(emp - exact) < N_SE * se), (s, emp, exact)


def test_bridge_overflow_flag():
    Q = jnp.array([[-5.0, 5.0], [5.0, -5.0]])
    keys = jax.random.split(jax.random.key(0), 200)
    p = jax.vmap(lambda k: sample_bridge(k, Q, 0, 0, 10.0, 4))(keys)
    assert np.asarray(p.overflow).mean() > 0.9  # ~50 jumps expected, only 4 stored
    assert (np.asarray(p.num_jumps) <= 4).all()


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------


GOOD = np.array([[-1.0, 1.0], [2.0, -2.0]])


@pytest.mark.parametrize(
    "Q, match",
    [
        (np.array([[1.0, -1.0], [2.0, -2.0]]), "off-diagonal"),
        (np.array([[-1.0, 0.5], [2.0, -2.0]]), "sum to zero"),
        (np.ones((2, 3)), "square"),
        (np.array([[np.nan, 1.0], [2.0, -2.0]]), "finite"),
    ],
)
def test_bad_generator(Q, match):
    with pytest.raises(ValueError, match=f"generator.*{match}"):
        check_generator(Q)
    with pytest.raises(ValueError, match="generator"):
        transition_matrices(Q, np.ones(2))


def test_bad_transition_inputs():
    with pytest.raises(ValueError, match="dts"):
        transition_matrices(GOOD, np.array([1.0, -0.1]))
    with pytest.raises(ValueError, match="dts"):
        transition_matrices(GOOD, np.ones((2, 2)))
    with pytest.raises(ValueError, match="method"):
        transition_matrices(GOOD, np.ones(2), method="krylov")
    with pytest.raises(ValueError, match="reversible"):
        transition_matrices(make_generator(0, 3, "nonrev", -1, 1), np.ones(2), method="eigh")
    with pytest.raises(ValueError, match="rates"):
        generator_from_rates(-np.ones((2, 2)))


def test_bad_path_inputs():
    p0 = np.array([0.5, 0.5])
    ok = dict(
        states=np.array([0, 1, 0]), jump_times=np.array([0.0, 1.0, 2.0]), t_end=3.0, num_jumps=2
    )

    def call(**kw):
        return path_log_likelihood(GOOD, p0, **{**ok, **kw})

    call()
    with pytest.raises(ValueError, match="jump_times"):
        call(jump_times=np.array([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="jump_times"):
        call(t_end=1.5)
    with pytest.raises(ValueError, match="states"):
        call(states=np.array([0, 2, 0]))
    with pytest.raises(ValueError, match="states"):
        call(states=np.array([0, 0, 1]))
    with pytest.raises(ValueError, match="num_jumps"):
        call(num_jumps=3)
    with pytest.raises(ValueError, match="t_end"):
        call(t_end=-1.0)
    with pytest.raises(ValueError, match="initial_probs"):
        path_log_likelihood(GOOD, np.ones(3) / 3, **ok)


def test_bad_bridge_inputs():
    k = jax.random.key(0)
    with pytest.raises(ValueError, match="start_state"):
        sample_bridge(k, GOOD, 2, 0, 1.0, 4)
    with pytest.raises(ValueError, match="end_state"):
        sample_bridge(k, GOOD, 0, -1, 1.0, 4)
    with pytest.raises(ValueError, match="t must"):
        sample_bridge(k, GOOD, 0, 1, 0.0, 4)
    with pytest.raises(ValueError, match="max_jumps"):
        sample_bridge(k, GOOD, 0, 1, 1.0, 0)


@pytest.mark.parametrize("method", ["pade", "uniformization"])
def test_non_finite_generator_terminates_with_non_finite_output(method):
    """An overflowed generator (NUTS at an extreme step) must not hang the squaring loop."""
    Q = jnp.array([[-jnp.inf, jnp.inf], [1.0, -1.0]])
    for bad in (Q, jnp.full((2, 2), jnp.nan)):
        # traced, so the input check is skipped, as inside a sampler
        P = jax.jit(lambda q: transition_matrices(q, jnp.array([0.5, 2.0]), method=method))(bad)
        assert not np.all(np.isfinite(np.asarray(P)))
    g = jax.jit(jax.grad(lambda q: transition_matrices(q, jnp.array([0.5]), method=method).sum()))
    assert g(Q).shape == (2, 2)
