"""Tests for probdyn.processes.reaction against independent references.

References: the truncated chemical master equation built here with Python loops and
``math.perm`` and solved with ``scipy.linalg.expm``/``null_space``; the Poisson stationary
law of the immigration-death process (closed form); the transient mean and variance of
linear networks (closed form, plus the exact moment recursion of the Euler-Maruyama scheme
to bound the discretisation bias); a hand-computed path likelihood; the closed-form score
and MLE of mass-action rates; the conjugate Gamma posterior of mass-action rates. Monte
Carlo tolerances are N_SE standard errors; p-value floors are 1e-3.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC, NUTS
from scipy import linalg, stats

from probdyn.kernels import ssa
from probdyn.processes.reaction import ReactionNetwork, ReactionPath

N_SE = 5.0
P_FLOOR = 1e-3

BD = ReactionNetwork.from_equations(["0 -> X", "X -> 0"])  # immigration-death
LV = ReactionNetwork.from_equations(
    ["prey -> 2 prey", "prey + predator -> 2 predator", "predator -> 0"]
)
LV_RATES = jnp.array([1.0, 0.005, 0.6])
LV_X0 = jnp.array([50, 100])


def keys(seed, n):
    return jax.random.split(jax.random.key(seed), n)


def brute_generator(reactants, products, rates, max_counts, sink=False):
    """CME generator by loops over states (C order) and reactions; drops or sinks exits."""
    reactants, products = np.asarray(reactants), np.asarray(products)
    grid = [range(m + 1) for m in max_counts]
    states = [tuple(s) for s in np.stack(np.meshgrid(*grid, indexing="ij"), -1).reshape(-1, 2)]
    index = {s: i for i, s in enumerate(states)}
    K = len(states)
    Q = np.zeros((K + sink, K + sink))
    for s, i in index.items():
        for r, p, c in zip(reactants, products, rates, strict=True):
            h = c * math.prod(math.perm(x, o) for x, o in zip(s, r, strict=True))
            tgt = tuple(x + d for x, d in zip(s, p - r, strict=True))
            if h == 0 or tgt == s:
                continue
            if tgt in index:
                Q[i, index[tgt]] += h
            elif sink:
                Q[i, K] += h
            else:
                continue
            Q[i, i] -= h
    return Q


# --------------------------------------------------------------------------------------
# construction
# --------------------------------------------------------------------------------------


def test_from_equations_and_properties():
    assert LV.species == ("prey", "predator")
    np.testing.assert_array_equal(LV.reactants, [[1, 0], [1, 1], [0, 1]])
    np.testing.assert_array_equal(LV.products, [[2, 0], [0, 2], [0, 0]])
    np.testing.assert_array_equal(LV.stoichiometry, [[1, 0], [-1, 1], [0, -1]])
    assert (LV.num_species, LV.num_reactions) == (2, 3)
    assert LV.reactions == ("prey -> 2 prey", "prey + predator -> 2 predator", "predator -> 0")
    assert "prey + predator -> 2 predator" in repr(LV)
    assert LV.coords == {"species": ["prey", "predator"], "reaction": list(LV.reactions)}
    # coefficient spellings, empty sides, explicit species order, repeated terms
    net = ReactionNetwork.from_equations(
        ["2A -> B", "2*B + A -> ", "\u2205 -> 3 C", "A + A -> C"], species=["C", "B", "A", "D"]
    )
    np.testing.assert_array_equal(
        net.reactants, [[0, 0, 2, 0], [0, 2, 1, 0], [0] * 4, [0, 0, 2, 0]]
    )
    np.testing.assert_array_equal(net.products, [[0, 1, 0, 0], [0] * 4, [3, 0, 0, 0], [1, 0, 0, 0]])
    assert net.reactions[1] == "2 B + A -> 0"
    assert BD.species == ("X",) and BD == ReactionNetwork([[0], [1]], [[1], [0]], species=["X"])
    assert hash(BD) == hash(ReactionNetwork.from_equations(["0 -> X", "X -> 0"]))
    plain = ReactionNetwork([[1, 0]], [[0, 1]])
    assert plain.species == ("X0", "X1") and plain.reactions == ("X0 -> X1",)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (([[-1]], [[0]]), {}, "reactants"),
        (([[1]], [[0.5]]), {}, "products"),
        (([[1, 0]], [[0]]), {}, "same shape"),
        (([1, 0], [0, 1]), {}, "reactants"),
        (([[1]], [[0]]), {"species": ["A", "B"]}, "species"),
        (([[1], [0]], [[0], [1]]), {"reactions": ["r", "r"]}, "reactions"),
        (([[1]], [[0]]), {"propensity": "hill"}, "propensity"),
    ],
)
def test_constructor_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReactionNetwork(*args, **kwargs)


@pytest.mark.parametrize(
    "equations, kwargs, match",
    [
        (["A -> B -> C"], {}, "LHS -> RHS"),
        (["A => B"], {}, "LHS -> RHS"),
        (["A + -> B"], {}, "cannot parse"),
        (["2.5 A -> B"], {}, "cannot parse"),
        (["A -> B"], {"species": ["A"]}, "missing"),
    ],
)
def test_from_equations_errors(equations, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReactionNetwork.from_equations(equations, **kwargs)
    with pytest.raises(TypeError, match="equations"):
        ReactionNetwork.from_equations("A -> B")


# --------------------------------------------------------------------------------------
# propensities and simulation wrappers
# --------------------------------------------------------------------------------------


def test_propensities_mass_action_and_custom():
    net = ReactionNetwork.from_equations(["2 A -> B", "A + B -> 0", "0 -> A"])
    rates = np.array([0.5, 0.1, 3.0])
    x = np.array([[5, 3], [1, 2], [0, 0]])
    want = [[0.5 * 5 * 4, 0.1 * 15, 3.0], [0.0, 0.1 * 2, 3.0], [0.0, 0.0, 3.0]]
    np.testing.assert_allclose(net.propensities(x, rates), want, rtol=1e-6)

    def mm(x, r):  # Michaelis-Menten degradation
        return jnp.stack([r[0], r[1] * x[0] / (2.0 + x[0])])

    custom = ReactionNetwork([[0], [1]], [[1], [0]], propensity=mm)
    np.testing.assert_allclose(
        custom.propensities(jnp.array([[2], [6]]), jnp.array([1.0, 4.0])), [[1, 2], [1, 3]]
    )
    assert "custom propensity" in repr(custom)
    path = custom.gillespie(jax.random.key(0), jnp.array([3]), 10.0, jnp.array([1.0, 4.0]), 500)
    ref = ssa.gillespie(
        jax.random.key(0), jnp.array([3]), 10.0, [[1], [-1]], jnp.array([1.0, 4.0]),
        propensity_fn=mm, max_jumps=500,
    )  # fmt: skip
    for a, b in zip(path, ref, strict=True):
        np.testing.assert_array_equal(a, b)


def test_wrappers_match_kernels():
    k = jax.random.key(3)
    times = jnp.array([0.5, 1.0, 2.0])
    kw = {"reactants": LV.reactants}
    p = LV.gillespie(k, LV_X0, 2.0, LV_RATES, 3000)
    q = ssa.gillespie(k, LV_X0, 2.0, LV.stoichiometry, LV_RATES, max_jumps=3000, **kw)
    for a, b in zip(p, q, strict=True):
        np.testing.assert_array_equal(a, b)
    s, o = LV.gillespie_at(k, LV_X0, times, LV_RATES, 3000)
    s2, o2 = ssa.gillespie_at(k, LV_X0, times, LV.stoichiometry, LV_RATES, max_jumps=3000, **kw)
    np.testing.assert_array_equal(s, s2)
    assert not bool(o) and not bool(o2)
    tl = LV.tau_leap(k, LV_X0, times, LV_RATES, 0.01)
    tl2 = ssa.tau_leap(k, LV_X0, times, LV.stoichiometry, LV_RATES, tau=0.01, **kw)
    np.testing.assert_array_equal(tl, tl2)


def test_method_input_errors():
    k, x0 = jax.random.key(0), jnp.array([3])
    good = jnp.array([1.0, 1.0])
    with pytest.raises(ValueError, match="rates"):
        BD.gillespie(k, x0, 1.0, jnp.array([1.0, -1.0]), 10)
    with pytest.raises(ValueError, match="rates"):
        BD.propensities(x0, jnp.array([1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="times"):
        BD.gillespie_at(k, x0, jnp.array([1.0, 0.5]), good, 10)
    with pytest.raises(ValueError, match="times"):
        BD.chemical_langevin(k, x0, jnp.array([1.0, 1.0]), good, 0.1)
    with pytest.raises(ValueError, match="dt"):
        BD.chemical_langevin(k, x0, jnp.array([1.0]), good, 0.0)
    with pytest.raises(ValueError, match="x0"):
        BD.chemical_langevin(k, jnp.array([-1.0]), jnp.array([1.0]), good, 0.1)
    with pytest.raises(ValueError, match="max_counts"):
        BD.generator(good, -1)
    with pytest.raises(ValueError, match="max_counts"):
        LV.states([3, 4, 5])
    # overflow: flagged, and the path likelihood is NaN
    path = BD.gillespie(k, x0, 100.0, jnp.array([5.0, 1.0]), 10)
    assert bool(path.overflow)
    assert np.isnan(BD.path_log_prob(path, jnp.array([5.0, 1.0]), 100.0))


# --------------------------------------------------------------------------------------
# truncated CME generator
# --------------------------------------------------------------------------------------


def test_states_table_and_index():
    net = ReactionNetwork.from_equations(["2 A -> B", "B -> A", "0 -> A"])
    X = net.states((2, 1))
    np.testing.assert_array_equal(X, [[0, 0], [0, 1], [1, 0], [1, 1], [2, 0], [2, 1]])
    np.testing.assert_array_equal(net.state_index(X, (2, 1)), np.arange(6))
    assert net.states(3).shape == (16, 2)


@pytest.mark.parametrize("sink", [False, True])
def test_generator_matches_brute_force(x64, sink):
    net = ReactionNetwork.from_equations(["2 A -> B", "B -> A + A", "0 -> A", "B -> 0"])
    rates = jnp.array([0.3, 1.1, 2.0, 0.4])
    m = (4, 3)
    Q = net.generator(rates, m, sink=sink)
    want = brute_generator(net.reactants, net.products, np.asarray(rates), m, sink=sink)
    np.testing.assert_allclose(Q, want, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(Q.sum(axis=1), 0.0, atol=1e-12)
    # jit in rates; linear in rates for mass action: dQ/dc_j = Q(e_j)
    jac = jax.jacfwd(jax.jit(lambda r: net.generator(r, m, sink=sink)))(rates)
    for j in range(4):
        np.testing.assert_allclose(jac[..., j], net.generator(jnp.eye(4)[j], m, sink=sink))


def test_generator_transient_vs_gillespie_histogram():
    rates, x0, t, n = jnp.array([5.0, 1.0]), 2, 0.7, 4000
    Q = np.asarray(BD.generator(rates, 30), np.float64)
    p = linalg.expm(Q * t)[x0]
    states, overflow = jax.vmap(
        lambda k: BD.gillespie_at(k, jnp.array([x0]), jnp.array([t]), rates, 300)
    )(keys(0, n))
    assert not bool(jnp.any(overflow))
    x = np.asarray(states[:, 0, 0])
    exp = p * n
    hi = int(np.max(np.nonzero(exp >= 5)[0]))  # pool the upper tail (lower bins all >= 5)
    assert exp[: hi + 1].min() >= 5
    obs = np.append([np.sum(x == v) for v in range(hi)], np.sum(x >= hi))
    expected = np.append(exp[:hi], n - exp[:hi].sum())
    assert stats.chisquare(obs, expected).pvalue > P_FLOOR


def test_generator_stationary_poisson(x64):
    kb, kd = 5.0, 1.0
    pois = stats.poisson.pmf(np.arange(41), kb / kd)
    for m, want in [(40, pois), (12, pois[:13] / pois[:13].sum())]:
        # reflecting truncation keeps detailed balance: the truncated Poisson exactly
        Q = np.asarray(BD.generator(jnp.array([kb, kd]), m))
        pi = linalg.null_space(Q.T)[:, 0]
        np.testing.assert_allclose(pi / pi.sum(), want, atol=1e-12)


def test_generator_sink_is_fsp_error(x64):
    rates, x0, t = jnp.array([5.0, 1.0]), 2, 1.5
    P = linalg.expm(np.asarray(BD.generator(rates, 80)) * t)[x0]  # essentially exact
    Qs = np.asarray(BD.generator(rates, 7, sink=True))
    p = linalg.expm(Qs * t)[x0]
    assert 1e-3 < p[-1] < 0.5
    assert np.all(P[:8] - p[:8] >= -1e-12)
    l1 = np.abs(P[:8] - p[:8]).sum() + P[8:].sum()
    np.testing.assert_allclose(l1, p[-1], rtol=1e-10)


# --------------------------------------------------------------------------------------
# chemical Langevin equation
# --------------------------------------------------------------------------------------


def _euler_moments(A, b, c, D, x0, steps):
    """Exact mean and covariance of Euler-Maruyama for dX = (A X + b) dt + noise with
    covariance rate D(m) = c + sum_s D[s] m_s (linear propensities)."""
    m, P = np.asarray(x0, float), np.zeros((len(x0), len(x0)))
    for dt in steps:
        F = np.eye(len(m)) + A * dt
        P = F @ P @ F.T + (c + np.tensordot(m, D, 1)) * dt
        m = F @ m + b * dt
    return m, P


def test_cle_immigration_death_moments():
    kb, kd, x0, dt, n = 100.0, 1.0, 20.0, 0.005, 4000
    times = np.array([1.0, 2.0, 3.0])
    X = jax.vmap(
        lambda k: BD.chemical_langevin(k, jnp.array([x0]), times, jnp.array([kb, kd]), dt)
    )(keys(1, n))[..., 0]
    X = np.asarray(X, np.float64)
    assert X.min() > 0  # the clipping at max(X, 0) never triggers here
    e = np.exp(-kd * times)
    mean = kb / kd + (x0 - kb / kd) * e
    var = x0 * e * (1 - e) + kb / kd * (1 - e)  # Binomial(x0, e) + Poisson(kb/kd (1 - e))
    for i, t in enumerate(times):
        m_eu, v_eu = _euler_moments(
            np.array([[-kd]]), np.array([kb]), np.array([[kb]]), np.array([[[kd]]]), [x0],
            [dt] * round(t / dt),
        )  # fmt: skip
        bias_m, bias_v = abs(m_eu[0] - mean[i]), abs(v_eu[0, 0] - var[i])
        se_m, se_v = np.sqrt(var[i] / n), var[i] * np.sqrt(2 / (n - 1))
        assert abs(X[:, i].mean() - mean[i]) < N_SE * se_m + bias_m
        assert abs(X[:, i].var(ddof=1) - var[i]) < N_SE * se_v + bias_v


def test_cle_linear_network_mean_follows_ode():
    net = ReactionNetwork.from_equations(["0 -> A", "A -> B", "B -> A", "B -> 0"])
    k = np.array([200.0, 1.0, 0.5, 0.8])
    x0, dt, n = np.array([100.0, 50.0]), 0.01, 2000
    times = np.array([0.5, 1.5, 3.0])
    X = jax.vmap(lambda key: net.chemical_langevin(key, jnp.asarray(x0), times, k, dt))(keys(2, n))
    X = np.asarray(X, np.float64)
    assert X.min() > 0
    A = np.array([[-k[1], k[2]], [k[1], -k[2] - k[3]]])
    b = np.array([k[0], 0.0])
    aug = np.zeros((3, 3))
    aug[:2, :2], aug[:2, 2] = A, b
    steps = [0.5] + [1.0] + [1.5]
    grid = np.concatenate([[dt] * round(s / dt) for s in steps])
    for i, t in enumerate(times):
        ode = (linalg.expm(aug * t) @ np.append(x0, 1.0))[:2]
        m_eu, _ = _euler_moments(
            A, b, np.zeros((2, 2)), np.zeros((2, 2, 2)), x0, grid[: round(t / dt)]
        )
        se = X[:, i].std(axis=0, ddof=1) / np.sqrt(n)
        np.testing.assert_array_less(np.abs(X[:, i].mean(0) - ode), N_SE * se + np.abs(m_eu - ode))


def test_cle_static_and_traced_times_agree_and_gradient(x64):
    k, x0, rates = jax.random.key(5), jnp.array([30.0]), jnp.array([50.0, 1.0])
    times = jnp.array([0.3, 1.0, 1.25])
    static = BD.chemical_langevin(k, x0, times, rates, 0.05)
    traced = jax.jit(lambda t: BD.chemical_langevin(k, x0, t, rates, 0.05))(times)
    np.testing.assert_allclose(static, traced, rtol=1e-12)

    @jax.jit
    def f(r):
        return BD.chemical_langevin(k, x0, times, r, 0.05)[-1, 0]

    g = jax.grad(f)(rates)
    eps = 1e-6
    fd = [(f(rates + eps * e) - f(rates - eps * e)) / (2 * eps) for e in jnp.eye(2)]
    np.testing.assert_allclose(g, fd, rtol=1e-6)


# --------------------------------------------------------------------------------------
# path likelihood
# --------------------------------------------------------------------------------------


def test_path_log_prob_hand_computed(x64):
    kb, kd = 2.0, 0.7
    path = ssa.Path(
        times=jnp.array([0.0, 0.5, 1.2, 2.0]),
        states=jnp.array([[1], [2], [1], [1]]),
        reaction=jnp.array([0, 1, -1]),
        num_jumps=jnp.int32(2),
        overflow=jnp.bool_(False),
    )
    want = np.log(kb) + np.log(kd * 2) - ((kb + kd) * 0.5 + (kb + 2 * kd) * 0.7 + (kb + kd) * 0.8)
    np.testing.assert_allclose(BD.path_log_prob(path, jnp.array([kb, kd]), 2.0), want)


def _score_stats(path, t_end):
    """n_j and G_j = int h_j / c_j dt for Lotka-Volterra, by a loop over events."""
    n = int(path.num_jumps)
    t = np.append(np.asarray(path.times[: n + 1]), t_end)
    x = np.asarray(path.states[: n + 1], np.float64)
    counts = np.bincount(np.asarray(path.reaction[:n]), minlength=3)
    mono = np.stack([x[:, 0], x[:, 0] * x[:, 1], x[:, 1]], axis=1)
    return counts, (mono * np.diff(t)[:, None]).sum(0)


def test_path_log_prob_score_and_mle(x64):
    t_end, rates = 30.0, jnp.asarray(LV_RATES, jnp.float64)
    path = LV.gillespie(jax.random.key(11), LV_X0, t_end, rates, 40_000)
    assert not bool(path.overflow)
    ll = LV.path_log_prob(path, rates, t_end)
    ref = ssa.path_log_likelihood(
        path, LV.stoichiometry, rates, reactants=LV.reactants, t_end=t_end
    )
    assert ll == ref
    n, G = _score_stats(path, t_end)
    assert n.min() > 500
    score = jax.grad(LV.path_log_prob, argnums=1)(path, rates, t_end)
    np.testing.assert_allclose(score, n / rates - G, rtol=1e-8)
    mle = n / G  # closed form; the score vanishes there
    at_mle = jax.grad(LV.path_log_prob, argnums=1)(path, jnp.asarray(mle), t_end)
    np.testing.assert_array_less(np.abs(at_mle), 1e-9 * G)
    # asymptotic standard error c_j / sqrt(n_j)
    np.testing.assert_array_less(np.abs(mle - rates), N_SE * rates / np.sqrt(n))


# --------------------------------------------------------------------------------------
# ReactionPath distribution
# --------------------------------------------------------------------------------------


def test_reaction_path_encoding_and_log_prob():
    k, rates = jax.random.key(4), LV_RATES
    d = LV.path_distribution(LV_X0, rates, 2.0, 3000)
    assert isinstance(d, ReactionPath)
    assert d.event_shape == (3001, 4) and d.batch_shape == ()
    path = LV.gillespie(k, LV_X0, 2.0, rates, 3000)
    v = ReactionPath.encode(path)
    n = int(path.num_jumps)
    np.testing.assert_array_equal(v[0], [0.0, -1, 50, 100])
    np.testing.assert_array_equal(v[1 : n + 1, 1], path.reaction[:n])
    assert np.all(v[n + 1 :, 1] == -1)
    back = ReactionPath.decode(v)
    assert int(back.num_jumps) == n and not bool(back.overflow)
    np.testing.assert_array_equal(back.states, path.states)
    np.testing.assert_allclose(d.log_prob(v), LV.path_log_prob(path, rates, 2.0), rtol=1e-6)
    g = jax.grad(lambda r: LV.path_distribution(LV_X0, r, 2.0, 3000).log_prob(v))(rates)
    np.testing.assert_allclose(
        # float32 sums of ~1,000 terms in two evaluation orders: agree to ~1e-5 relative
        g,
        jax.grad(LV.path_log_prob, argnums=1)(path, rates, 2.0),
        rtol=1e-4,
    )
    # a sample scores as its own decoded path; a wrong start scores -inf
    s = d.sample(k)
    np.testing.assert_allclose(
        d.log_prob(s), LV.path_log_prob(ReactionPath.decode(s), rates, 2.0), rtol=1e-6
    )
    other = LV.path_distribution(jnp.array([50, 99]), rates, 2.0, 3000)
    assert other.log_prob(v) == -jnp.inf
    # pytree: through jit as an argument
    lp = jax.jit(lambda dd, vv: dd.log_prob(vv))(d, v)
    np.testing.assert_allclose(lp, d.log_prob(v), rtol=1e-6)


def test_reaction_path_batch_shapes():
    rates = jnp.array([[5.0, 1.0], [2.0, 0.5]])
    d = ReactionPath(BD, jnp.array([3]), rates, 4.0, 200)
    assert d.batch_shape == (2,) and d.event_shape == (201, 3)
    v = d.sample(jax.random.key(0), (3,))
    assert v.shape == (3, 2, 201, 3)
    lp = d.log_prob(v)
    assert lp.shape == (3, 2)
    for i in range(3):
        for b in range(2):
            want = BD.path_log_prob(ReactionPath.decode(v[i, b]), rates[b], 4.0)
            np.testing.assert_allclose(lp[i, b], want, rtol=1e-6)
    # vmap over parameters (the distribution is built inside the mapped function)
    lp_v = jax.vmap(lambda r: ReactionPath(BD, jnp.array([3]), r, 4.0, 200).log_prob(v[0, 0]))
    np.testing.assert_allclose(lp_v(rates), [lp[0, 0], d.log_prob(v[0, 0])[1]], rtol=1e-6)


def test_reaction_path_overflow_and_validation():
    rates = jnp.array([5.0, 1.0])
    d = BD.path_distribution(jnp.array([3]), rates, 100.0, 10, validate_args=False)
    v = d.sample(jax.random.key(0))
    assert np.all(np.isnan(v[:, 0])) and np.isnan(d.log_prob(v))
    assert bool(ReactionPath.decode(v).overflow)
    dv = BD.path_distribution(jnp.array([3]), rates, 100.0, 10, validate_args=True)
    with pytest.raises(ValueError, match="overflow"):
        dv.sample(jax.random.key(0))
    with pytest.raises(ValueError, match="overflow"):
        dv.log_prob(v)
    good = BD.path_distribution(jnp.array([3]), rates, 0.5, 10, validate_args=True)
    v = good.sample(jax.random.key(1))
    assert int(ReactionPath.decode(v).num_jumps) >= 2 and np.isfinite(good.log_prob(v))
    with pytest.raises(ValueError, match="stoichiometry"):
        good.log_prob(v.at[1, 2].add(1.0))
    with pytest.raises(ValueError, match="times"):
        good.log_prob(v.at[1, 0].set(5.0))
    with pytest.raises(ValueError, match="shape"):
        good.log_prob(v[:-1])
    with pytest.raises(ValueError, match="rates"):
        BD.path_distribution(jnp.array([3]), jnp.array([-1.0, 1.0]), 2.0, 10, validate_args=True)
    with pytest.raises(ValueError, match="x0"):
        BD.path_distribution(jnp.array([1.5]), rates, 2.0, 10, validate_args=True)
    with pytest.raises(ValueError, match="rates"):
        BD.path_distribution(jnp.array([3]), jnp.array([1.0]), 2.0, 10)
    with pytest.raises(TypeError, match="max_jumps"):
        BD.path_distribution(jnp.array([3]), rates, 2.0, 10.0)


def test_nuts_recovers_conjugate_gamma_posterior():
    """Gamma(a, b) priors on mass-action rates: posterior Gamma(a + n_j, b + G_j)."""
    a, b, t_end, M = 2.0, 1.0, 20.0, 400
    truth = jnp.array([5.0, 0.5])
    path = BD.gillespie(jax.random.key(7), jnp.array([10]), t_end, truth, M)
    assert not bool(path.overflow)
    v = ReactionPath.encode(path)
    nj = int(path.num_jumps)
    t = np.append(np.asarray(path.times[: nj + 1]), t_end)
    x = np.asarray(path.states[: nj + 1, 0], np.float64)
    n = np.bincount(np.asarray(path.reaction[:nj]), minlength=2)
    G = np.array([t_end, np.sum(x * np.diff(t))])
    post_mean, post_sd = (a + n) / (b + G), np.sqrt(a + n) / (b + G)

    def model(obs):
        rates = numpyro.sample("rates", dist.Gamma(a, b).expand([2]).to_event(1))
        numpyro.sample("path", BD.path_distribution(jnp.array([10]), rates, t_end, M), obs=obs)

    mcmc = MCMC(NUTS(model), num_warmup=500, num_samples=2000, progress_bar=False)
    mcmc.run(jax.random.key(8), v)
    draws = np.asarray(mcmc.get_samples()["rates"], np.float64)
    ess = effective_sample_size(draws[None])
    assert ess.min() > 200
    se_mean = post_sd / np.sqrt(ess)
    np.testing.assert_array_less(np.abs(draws.mean(0) - post_mean), N_SE * se_mean)
    se_sd = post_sd / np.sqrt(2 * ess)
    np.testing.assert_array_less(np.abs(draws.std(0) - post_sd), N_SE * se_sd)
