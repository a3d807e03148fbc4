"""Tests for probdyn.kernels.ssa against independent references.

References used: closed forms (Poisson stationary law of the birth-death process,
exponential dwell times of the telegraph process), the chemical master equation solved
exactly on a truncated state space (scipy.linalg.expm of the generator, built here with
``math.perm`` for the mass-action falling factorials), a hand-computed path likelihood and
central finite differences. Stochastic tests use fixed keys; tolerances are a few Monte
Carlo standard errors computed from the reference moments, or p-value floors of 1e-3.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import linalg, stats

from probdyn.kernels.ssa import (
    Path,
    gillespie,
    gillespie_at,
    mass_action_propensities,
    path_log_likelihood,
    tau_leap,
)

# Monte Carlo tolerance in standard errors (chance of a false failure per quantity ~6e-7).
N_SE = 5.0
P_FLOOR = 1e-3

# birth-death: 0 -> X (k1), X -> 0 (k2 x)
BD_V = [[1], [-1]]
BD_R = [[0], [1]]
# birth + annihilation: 0 -> X (k1), 2X -> 0 (k2 x (x - 1))
DIM_V = [[1], [-2]]
DIM_R = [[0], [2]]
# Lotka-Volterra: prey birth X -> 2X, predation X + Y -> 2Y, predator death Y -> 0
LV_V = np.array([[1, 0], [-1, 1], [0, -1]])
LV_R = np.array([[1, 0], [1, 1], [0, 1]])
LV_RATES = jnp.array([1.0, 0.005, 0.6])
LV_X0 = jnp.array([50, 100])


def keys(seed, n):
    return jax.random.split(jax.random.key(seed), n)


def cme_1d(stoich, reactants, rates, x0, t, n_max):
    """Distribution at time t of a one-species mass-action network, truncated to 0..n_max.

    Reactions leaving the truncated space are dropped (their mass is negligible for the
    n_max used: checked by the caller through the tail mass).
    """
    Q = np.zeros((n_max + 1, n_max + 1))
    for x in range(n_max + 1):
        for (dx,), (r,), c in zip(stoich, reactants, rates, strict=True):
            h = c * math.perm(x, r)
            if h > 0 and 0 <= x + dx <= n_max:
                Q[x, x + dx] += h
                Q[x, x] -= h
    p0 = np.zeros(n_max + 1)
    p0[x0] = 1.0
    return p0 @ linalg.expm(Q * t)


def moments(p):
    n = np.arange(p.size)
    mean = p @ n
    var = p @ (n - mean) ** 2
    mu4 = p @ (n - mean) ** 4
    return mean, var, mu4


# --------------------------------------------------------------------------------------
# propensities
# --------------------------------------------------------------------------------------


def test_mass_action_falling_factorials():
    reactants = np.array([[0, 0], [1, 0], [2, 0], [1, 1], [0, 3], [2, 1], [0, 4]])
    rates = np.array([0.5, 1.5, 2.0, 0.1, 3.0, 0.7, 1.0])
    for x in [(5, 3), (1, 2), (0, 0), (7, 4)]:
        got = mass_action_propensities(jnp.array(x), jnp.array(rates), reactants)
        want = [
            c * math.perm(x[0], r[0]) * math.perm(x[1], r[1])
            for c, r in zip(rates, reactants, strict=True)
        ]
        np.testing.assert_allclose(got, want, rtol=1e-6)


# --------------------------------------------------------------------------------------
# exact simulation: distributional checks
# --------------------------------------------------------------------------------------


def test_birth_death_stationary_poisson():
    """At t = 12 relaxation times, x(t) ~ Poisson(k1/k2) up to a e^-12 remainder."""
    k1, k2, n = 10.0, 1.0, 4000
    f = jax.vmap(
        lambda k: gillespie_at(
            k, jnp.array([10]), jnp.array([12.0]), BD_V, jnp.array([k1, k2]),
            reactants=BD_R, max_jumps=2000,
        )
    )  # fmt: skip
    states, overflow = f(keys(0, n))
    assert not bool(jnp.any(overflow))
    x = np.asarray(states[:, 0, 0])
    p = stats.poisson.pmf(np.arange(200), k1 / k2)
    exp = p * n
    lo, hi = np.argmax(exp >= 5), len(exp) - np.argmax(exp[::-1] >= 5) - 1
    obs = np.array([np.sum(x <= lo)] + [np.sum(x == v) for v in range(lo + 1, hi)])
    obs = np.append(obs, np.sum(x >= hi))
    expected = np.concatenate([[p[: lo + 1].sum()], p[lo + 1 : hi], [1 - p[:hi].sum()]]) * n
    assert stats.chisquare(obs, expected).pvalue > P_FLOOR


def test_telegraph_dwell_times_exponential():
    ka, kb = 2.0, 0.5
    V = [[-1, 1], [1, -1]]  # A -> B, B -> A
    paths = jax.vmap(
        lambda k: gillespie(
            k,
            jnp.array([1, 0]),
            50.0,
            V,
            jnp.array([ka, kb]),
            reactants=[[1, 0], [0, 1]],
            max_jumps=200,
        )
    )(keys(1, 40))
    assert not bool(jnp.any(paths.overflow))
    dwell = {0: [], 1: []}
    for p in range(40):
        n = int(paths.num_jumps[p])
        t = np.asarray(paths.times[p, : n + 1])
        in_a = np.asarray(paths.states[p, :n, 0]) == 1
        d = np.diff(t)  # the last, censored, sojourn (t_n, t_end] is excluded
        dwell[0].append(d[in_a])
        dwell[1].append(d[~in_a])
    da, db = np.concatenate(dwell[0]), np.concatenate(dwell[1])
    assert da.size > 500 and db.size > 500
    assert stats.kstest(da, stats.expon(scale=1 / ka).cdf).pvalue > P_FLOOR
    assert stats.kstest(db, stats.expon(scale=1 / kb).cdf).pvalue > P_FLOOR


@pytest.mark.parametrize(
    "stoich, reactants, rates, x0",
    [(BD_V, BD_R, (4.0, 0.5), 20), (DIM_V, DIM_R, (20.0, 0.05), 3)],
    ids=["birth-death", "annihilation"],
)
def test_moments_vs_cme(stoich, reactants, rates, x0):
    """Mean and variance at t = 1.5 against the truncated CME (5 standard errors).

    The annihilation network 2X -> 0 checks the x(x-1) mass-action convention: x^2 or
    x(x-1)/2 would move the mean by many standard errors.
    """
    t, n, n_max = 1.5, 4000, 150
    p = cme_1d(stoich, reactants, rates, x0, t, n_max)
    assert p[-20:].sum() < 1e-12
    mean, var, mu4 = moments(p)
    states, overflow = jax.vmap(
        lambda k: gillespie_at(
            k, jnp.array([x0]), jnp.array([t]), stoich, jnp.array(rates),
            reactants=reactants, max_jumps=5000,
        )
    )(keys(2, n))  # fmt: skip
    assert not bool(jnp.any(overflow))
    x = np.asarray(states[:, 0, 0], dtype=float)
    assert abs(x.mean() - mean) < N_SE * np.sqrt(var / n)
    assert abs(x.var() - var) < N_SE * np.sqrt((mu4 - var**2) / n)


def test_tau_leap_mean_vs_cme():
    """Tau-leap mean within 5 SE plus the O(tau) bias bound of the CME mean.

    For linear propensities the tau-leap mean is explicit Euler on m' = k1 - k2 m, so
    |m_tau(t) - m(t)| <= |x0 - k1/k2| * k2^2 * tau * t / 2 (clipping never triggers here:
    k2 x tau <= 0.5 while x ~ 10-20).
    """
    k1, k2, x0, tau, n = 4.0, 0.5, 20, 0.05, 4000
    times = np.array([0.5, 1.5])
    states = jax.vmap(
        lambda k: tau_leap(
            k, jnp.array([x0]), jnp.array(times), BD_V, jnp.array([k1, k2]),
            reactants=BD_R, tau=tau,
        )
    )(keys(3, n))  # fmt: skip
    for i, t in enumerate(times):
        mean, var, _ = moments(cme_1d(BD_V, BD_R, (k1, k2), x0, t, 120))
        bias = abs(x0 - k1 / k2) * k2**2 * tau * t / 2
        x = np.asarray(states[:, i, 0], dtype=float)
        assert abs(x.mean() - mean) < N_SE * np.sqrt(var / n) + bias
    # the same with a 10x larger step is visibly biased: the check has power
    coarse = jax.vmap(
        lambda k: tau_leap(
            k, jnp.array([x0]), jnp.array(times), BD_V, jnp.array([k1, k2]),
            reactants=BD_R, tau=1.0,
        )
    )(keys(4, n))  # fmt: skip
    assert abs(float(coarse[:, 1, 0].mean()) - mean) > N_SE * np.sqrt(var / n)


# --------------------------------------------------------------------------------------
# path structure, overflow, gillespie_at
# --------------------------------------------------------------------------------------


def test_overflow_flag_is_exact():
    rates = jnp.array([5.0, 1.0])
    key = jax.random.key(7)
    full = gillespie(key, jnp.array([2]), 4.0, BD_V, rates, reactants=BD_R, max_jumps=500)
    n = int(full.num_jumps)
    assert not bool(full.overflow) and n > 5
    # padding: times t_end, states the final state, reactions -1
    np.testing.assert_array_equal(full.times[n + 1 :], 4.0)
    np.testing.assert_array_equal(
        full.states[n + 1 :], np.broadcast_to(full.states[n], (500 - n, 1))
    )
    np.testing.assert_array_equal(full.reaction[n:], -1)
    assert np.all(np.diff(np.asarray(full.times[: n + 1])) > 0)
    exact = gillespie(key, jnp.array([2]), 4.0, BD_V, rates, reactants=BD_R, max_jumps=n)
    assert not bool(exact.overflow) and int(exact.num_jumps) == n
    np.testing.assert_array_equal(exact.states, full.states[: n + 1])
    short = gillespie(key, jnp.array([2]), 4.0, BD_V, rates, reactants=BD_R, max_jumps=n - 1)
    assert bool(short.overflow) and int(short.num_jumps) == n - 1
    ll = path_log_likelihood(short, BD_V, rates, reactants=BD_R, t_end=4.0)
    assert np.isnan(float(ll))
    _, of = gillespie_at(
        key, jnp.array([2]), jnp.array([1.0, 4.0]), BD_V, rates, reactants=BD_R, max_jumps=n - 1
    )
    assert bool(of)
    _, of = gillespie_at(
        key, jnp.array([2]), jnp.array([1.0, 4.0]), BD_V, rates, reactants=BD_R, max_jumps=n
    )
    assert not bool(of)


def test_absorbing_state_stops_without_overflow():
    """A -> B from (3, 0) is absorbed after 3 jumps; the loop stops, no overflow."""
    p = gillespie(
        jax.random.key(0), jnp.array([3, 0]), 1e3, [[-1, 1]], jnp.array([1.0]),
        reactants=[[1, 0]], max_jumps=3,
    )  # fmt: skip
    assert int(p.num_jumps) == 3 and not bool(p.overflow)
    np.testing.assert_array_equal(p.states, [[3, 0], [2, 1], [1, 2], [0, 3]])
    assert np.all(np.diff(np.asarray(p.times)) > 0)


def state_at(path, t):
    """Right-continuous reading of a padded path at times t."""
    n = int(path.num_jumps)
    idx = np.searchsorted(np.asarray(path.times[: n + 1]), t, side="right") - 1
    return np.asarray(path.states[idx])


def test_gillespie_at_matches_full_path_and_jit_vmap():
    times = jnp.array([0.5, 1.0, 2.5, 4.0, 7.0, 10.0])
    run_path = jax.jit(
        jax.vmap(
            lambda k, r: gillespie(k, LV_X0, 10.0, LV_V, r, reactants=LV_R, max_jumps=5000),
            in_axes=(0, None),
        )
    )
    run_at = jax.jit(
        jax.vmap(
            lambda k, r: gillespie_at(k, LV_X0, times, LV_V, r, reactants=LV_R, max_jumps=5000),
            in_axes=(0, None),
        )
    )
    ks = keys(5, 6)
    paths = run_path(ks, LV_RATES)
    states, overflow = run_at(ks, LV_RATES)
    assert not bool(jnp.any(paths.overflow)) and not bool(jnp.any(overflow))
    for i in range(6):
        np.testing.assert_array_equal(
            states[i], state_at(jax.tree.map(lambda a, i=i: a[i], paths), times)
        )
    # a single path under jit, with traced t_end and rates, is entry 2 of the batch
    traced = jax.jit(
        lambda k, r, t: gillespie(k, LV_X0, t, LV_V, r, reactants=LV_R, max_jumps=5000)
    )(ks[2], LV_RATES, 10.0)
    for a, b in zip(traced, paths, strict=True):
        if jnp.issubdtype(a.dtype, jnp.floating):
            # the same path; jit alone and jit(vmap) may round a jump time differently
            np.testing.assert_allclose(a, b[2], rtol=1e-6)
        else:
            np.testing.assert_array_equal(a, b[2])


def test_propensity_fn_matches_mass_action():
    def lv_propensities(x, rates):
        return rates * jnp.array([x[0], x[0] * x[1], x[1]])

    key = jax.random.key(11)
    a = gillespie(key, LV_X0, 5.0, LV_V, LV_RATES, reactants=LV_R, max_jumps=3000)
    b = gillespie(key, LV_X0, 5.0, LV_V, LV_RATES, propensity_fn=lv_propensities, max_jumps=3000)
    np.testing.assert_array_equal(a.states, b.states)
    np.testing.assert_array_equal(a.reaction, b.reaction)
    la = path_log_likelihood(a, LV_V, LV_RATES, reactants=LV_R, t_end=5.0)
    lb = path_log_likelihood(b, LV_V, LV_RATES, propensity_fn=lv_propensities, t_end=5.0)
    np.testing.assert_allclose(la, lb, rtol=1e-6)


# --------------------------------------------------------------------------------------
# path likelihood
# --------------------------------------------------------------------------------------


def test_path_log_likelihood_hand_computed(x64):
    k1, k2 = 2.0, 0.7
    # x = 1 on [0, .3), birth -> 2 on [.3, .5), death -> 1 on [.5, 1]; two padding slots
    path = Path(
        times=jnp.array([0.0, 0.3, 0.5, 1.0, 1.0]),
        states=jnp.array([[1], [2], [1], [1], [1]]),
        reaction=jnp.array([0, 1, -1, -1]),
        num_jumps=jnp.array(2),
        overflow=jnp.array(False),
    )
    want = (
        np.log(k1) - (k1 + k2) * 0.3
        + np.log(2 * k2) - (k1 + 2 * k2) * 0.2
        - (k1 + k2) * 0.5
    )  # fmt: skip
    got = path_log_likelihood(path, BD_V, jnp.array([k1, k2]), reactants=BD_R, t_end=1.0)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # a fired reaction of zero propensity: -inf with finite (zero-NaN) gradients
    dead = path._replace(reaction=jnp.array([1, 1, -1, -1]), states=jnp.zeros((5, 1), int))
    f = lambda r: path_log_likelihood(dead, BD_V, r, reactants=BD_R, t_end=1.0)  # noqa: E731
    assert float(f(jnp.array([k1, k2]))) == -np.inf
    assert not np.any(np.isnan(jax.grad(f)(jnp.array([k1, k2]))))


def test_path_log_likelihood_gradient_fd(x64):
    rates = jnp.array([1.0, 0.005, 0.6], dtype=jnp.float64)
    path = gillespie(jax.random.key(3), LV_X0, 3.0, LV_V, rates, reactants=LV_R, max_jumps=2000)
    assert not bool(path.overflow)
    f = jax.jit(lambda r: path_log_likelihood(path, LV_V, r, reactants=LV_R, t_end=3.0))
    g = jax.grad(f)(rates)
    assert np.all(np.isfinite(g))
    for j in range(3):
        eps = 1e-6 * float(rates[j])
        e = jnp.zeros(3).at[j].set(eps)
        fd = (f(rates + e) - f(rates - e)) / (2 * eps)
        np.testing.assert_allclose(g[j], fd, rtol=1e-6)
    # mass action: the score vanishes at c_j = n_j / int g_j (closed-form MLE)
    n_fired = np.bincount(np.asarray(path.reaction[: int(path.num_jumps)]), minlength=3)
    mle = jnp.asarray(n_fired / (n_fired / rates - g))
    np.testing.assert_allclose(jax.grad(f)(mle), 0.0, atol=1e-8)


# --------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"stoichiometry": [1, -1]}, "stoichiometry"),
        ({"stoichiometry": [[1.5], [-1]]}, "stoichiometry must hold integers"),
        ({"rates": jnp.array([1.0, -1.0])}, "rates must be non-negative"),
        ({"rates": jnp.array([1.0, 1.0, 1.0])}, "rates must have shape"),
        ({"x0": jnp.array([-1])}, "x0"),
        ({"x0": jnp.array([1, 2])}, "x0 must have shape"),
        ({"reactants": [[0, 0], [1, 0]]}, "reactants must have shape"),
        ({"reactants": [[0], [-1]]}, "reactants must be non-negative"),
        ({"reactants": None}, "exactly one of reactants"),
        ({"times": jnp.array([1.0, 1.0])}, "times must be non-empty and strictly increasing"),
        ({"times": jnp.array([2.0, 1.0])}, "times must be non-empty and strictly increasing"),
        ({"times": jnp.array([1.0, jnp.inf])}, "times must be finite"),
        ({"max_jumps": 0}, "max_jumps"),
    ],
)
def test_input_checks(kwargs, match):
    args = dict(
        x0=jnp.array([1]), times=jnp.array([1.0, 2.0]), stoichiometry=BD_V,
        rates=jnp.array([1.0, 1.0]), reactants=BD_R, max_jumps=10,
    )  # fmt: skip
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        gillespie_at(jax.random.key(0), **args)


def test_input_checks_other_entry_points():
    k = jax.random.key(0)
    with pytest.raises(ValueError, match="t_end must be finite"):
        gillespie(k, [1], jnp.inf, BD_V, [1.0, 1.0], reactants=BD_R, max_jumps=5)
    with pytest.raises(ValueError, match="tau must be positive"):
        tau_leap(k, [1], [1.0], BD_V, [1.0, 1.0], reactants=BD_R, tau=0.0)
    with pytest.raises(ValueError, match="times must not precede"):
        tau_leap(k, [1], [1.0], BD_V, [1.0, 1.0], reactants=BD_R, tau=0.1, t0=2.0)
    with pytest.raises(TypeError, match="stoichiometry is network structure"):
        jax.jit(lambda v: gillespie(k, [1], 1.0, v, [1.0, 1.0], reactants=BD_R, max_jumps=5))(
            jnp.array(BD_V)
        )
