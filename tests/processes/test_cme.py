"""CMEObservations: against a dense generator and scipy.linalg.expm, the Poisson tail rule
for the number of terms, truncation flags, sampling, and a tiny NUTS fit."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import linalg, stats

import probdyn
from probdyn import CMEObservations, ReactionNetwork

# telegraph gene expression: gene off/on (conserved: G + Gon = 1), mRNA made while on
TELEGRAPH = ReactionNetwork.from_equations(["G -> Gon", "Gon -> G", "Gon -> Gon + M", "M -> 0"])
RATES = np.array([1.0, 2.0, 8.0, 1.0])
BOX = (1, 1, 22)
TIMES = np.array([0.5, 1.0, 2.0, 3.5])


def _dense(net, rates, m):
    """Reference: states of the box and the dense generator, leaving reactions off."""
    states = np.array(np.meshgrid(*[np.arange(v + 1) for v in m], indexing="ij"))
    states = states.reshape(len(m), -1).T
    index = {tuple(s): k for k, s in enumerate(states)}
    Q = np.zeros((len(states),) * 2)
    for k, x in enumerate(states):
        for r, v, c in zip(net.reactants, net.stoichiometry, rates, strict=True):
            y = tuple(x + v)
            h = c * np.prod([np.prod(x[s] - np.arange(r[s])) for s in range(len(x))])
            if y in index and h > 0:
                Q[k, index[y]] += h
                Q[k, k] -= h
    return states, Q


def _forward_expm(net, rates, m, times, t0, x0, obs_lik):
    """Reference forward algorithm with scipy.linalg.expm; obs_lik(t, states) -> (K,)."""
    states, Q = _dense(net, rates, m)
    p = np.array([float(np.all(s == x0)) for s in states])
    total, prev = 0.0, t0
    for i, t in enumerate(times):
        p = p @ linalg.expm(Q * (t - prev))
        a = p * obs_lik(i, states)
        total += np.log(a.sum())
        p, prev = a / a.sum(), t
    return total


Y = np.array([0, 3, 6, 2])
KW = dict(max_counts=BOX, initial_state=[1, 0, 0], t0=0.0, tol=1e-10)


def _exact_lik(i, s):
    return (s[:, 2] == Y[i]) * 1.0


def test_log_prob_matches_expm_and_terms_follow_the_poisson_tail(x64):
    """Exact counts: log_prob against the dense forward algorithm with expm (an infinite
    series), and the terms chosen per gap are the smallest multiple of the block whose
    Poisson tail is below tol (scipy's Poisson quantile)."""
    d = CMEObservations(TELEGRAPH, RATES, TIMES, observed="M", **KW)
    assert d.event_shape == (4,)
    ref = _forward_expm(TELEGRAPH, RATES, BOX, TIMES, 0.0, [1, 0, 0], _exact_lik)
    r = d.truncation(Y)
    np.testing.assert_allclose(float(r.log_normalizers.sum()), ref, rtol=1e-9)
    np.testing.assert_allclose(float(d.log_prob(Y)), ref, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(d.pointwise_log_prob(Y)), r.log_normalizers)
    _, Q = _dense(TELEGRAPH, RATES, BOX)
    lam = -Q.diagonal().min() * 1.0001  # the uniformisation rate
    gaps = np.diff(np.concatenate([[0.0], TIMES]))
    need = stats.poisson.isf(1e-10, lam * gaps) + 1  # smallest n with P(N >= n) <= tol
    used = np.asarray(r.num_terms)
    assert np.all(used >= need) and np.all(used - 16 < need), (used, need)
    assert np.all(np.asarray(r.series_tail) <= 1e-10)
    assert np.all(np.asarray(r.exit_mass) < 1e-6)  # box large enough; G = 1 face not counted
    # a pytree (jit/vmap can carry it): the rebuilt distribution gives the same density
    leaves, treedef = jax.tree_util.tree_flatten(d)
    rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
    assert rebuilt.support == d.support and rebuilt.event_shape == d.event_shape
    np.testing.assert_allclose(float(rebuilt.log_prob(Y)), ref, rtol=1e-9)


def test_log_prob_noisy_counts_matches_expm(x64):
    z = np.array([1.0, 0.0, 4.0, 2.0])

    def emission(x):  # Poisson reads of half the mRNA plus background
        return dist.Poisson(0.5 * x[:, 2] + 0.2)

    d = CMEObservations(TELEGRAPH, RATES, TIMES, emission=emission, **KW)
    ref = _forward_expm(
        TELEGRAPH,
        RATES,
        BOX,
        TIMES,
        0.0,
        [1, 0, 0],
        lambda i, s: stats.poisson.pmf(z[i], 0.5 * s[:, 2] + 0.2),
    )
    np.testing.assert_allclose(float(d.log_prob(z)), ref, rtol=1e-9)


@pytest.mark.slow
def test_gradient_and_batches_and_coarse_tolerance(x64):
    """Reverse-mode gradient against central differences of the expm reference; batched
    values; a coarse tol costs fewer terms and stays within its error bound."""
    g = jax.grad(lambda k: CMEObservations(TELEGRAPH, k, TIMES, observed="M", **KW).log_prob(Y))(
        jnp.asarray(RATES)
    )
    eps = 1e-5
    for j in range(4):
        e = np.eye(4)[j] * eps
        fd = (
            _forward_expm(TELEGRAPH, RATES + e, BOX, TIMES, 0.0, [1, 0, 0], _exact_lik)
            - _forward_expm(TELEGRAPH, RATES - e, BOX, TIMES, 0.0, [1, 0, 0], _exact_lik)
        ) / (2 * eps)
        np.testing.assert_allclose(float(g[j]), fd, rtol=1e-5, atol=1e-7)
    d = CMEObservations(TELEGRAPH, RATES, TIMES, observed="M", **KW)
    ref = _forward_expm(TELEGRAPH, RATES, BOX, TIMES, 0.0, [1, 0, 0], _exact_lik)
    lp = d.log_prob(np.stack([Y, Y[::-1]]))
    assert lp.shape == (2,)
    np.testing.assert_allclose(float(lp[0]), ref, rtol=1e-9)
    coarse = CMEObservations(TELEGRAPH, RATES, TIMES, observed="M", **dict(KW, tol=1e-3))
    r = coarse.truncation(Y)
    assert np.all(np.asarray(r.num_terms) <= np.asarray(d.truncation(Y).num_terms))
    # total-variation error <= tol per gap; each conditional density is >= 0.03 here
    assert abs(float(r.log_normalizers.sum()) - ref) <= 4 * 1e-3 / 0.03


def test_truncation_is_flagged_not_hidden(x64):
    """Too few terms and too small a box both give NaN and a warning naming the fix; the
    gene's faces (conserved G + Gon = 1) do not count as truncation."""
    kw = dict(KW, max_counts=(1, 1, 7), max_terms=16)
    d = CMEObservations(TELEGRAPH, RATES, TIMES, observed="M", **kw)
    r = d.truncation(Y)
    assert np.asarray(r.series_tail).max() > 1e-10  # 16 terms cannot reach 1e-10
    assert float(r.exit_mass.max()) > 1e-2  # mRNA reaches 7
    with pytest.warns(RuntimeWarning, match="max_terms=16.*max_counts"):
        assert np.isnan(float(d.log_prob(Y)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default box and terms: no warning
        assert np.isfinite(float(CMEObservations(TELEGRAPH, RATES, TIMES, **KW, observed="M")
                                 .log_prob(Y)))  # fmt: skip
    # eager argument checks
    ok = dict(KW, observed="M")
    with pytest.raises(ValueError, match="max_counts"):
        CMEObservations(TELEGRAPH, RATES, TIMES, **ok).log_prob(np.array([0, 3, 30, 2]))
    with pytest.raises(ValueError, match="initial_state"):
        CMEObservations(TELEGRAPH, RATES, TIMES, max_counts=BOX, observed="M")
    with pytest.raises(ValueError, match="observed"):
        CMEObservations(TELEGRAPH, RATES, TIMES, **dict(ok, observed="mRNA"))
    with pytest.raises(ValueError, match="times"):
        CMEObservations(TELEGRAPH, RATES, TIMES[::-1], **ok)
    with pytest.raises(ValueError, match="rates"):
        CMEObservations(TELEGRAPH, RATES[:3], TIMES, **ok)
    with pytest.raises(ValueError, match="tol"):
        CMEObservations(TELEGRAPH, RATES, TIMES, **dict(ok, tol=2.0))


def test_sample_marginal_matches_the_cme():
    """Draws at each time follow the CME marginal (chi-square, fixed key)."""
    d = CMEObservations(
        TELEGRAPH, RATES, TIMES[:2], max_counts=BOX, initial_state=[1, 0, 0], t0=0.0
    )
    x = np.asarray(d.sample(jax.random.PRNGKey(0), (500,)))
    assert x.shape == (500, 2, 3) and np.all(x[..., 0] + x[..., 1] == 1)
    states, Q = _dense(TELEGRAPH, RATES, BOX)
    p0 = np.array([float(np.all(s == [1, 0, 0])) for s in states])
    p = p0 @ linalg.expm(Q * TIMES[1])
    counts = np.array([np.sum(np.all(x[:, 1] == s, axis=-1)) for s in states])
    keep = p * 500 >= 5
    expected = np.append(p[keep], p[~keep].sum()) * 500
    observed = np.append(counts[keep], counts[~keep].sum())
    chi2 = np.sum((observed - expected) ** 2 / expected)
    assert stats.chi2.sf(chi2, len(expected) - 1) > 1e-3


@pytest.mark.slow
def test_fit_records_observed_data_and_recovers_rates():
    """A tiny NUTS run: y is a real observed site (observed_data, log_likelihood)."""
    net = ReactionNetwork.from_equations(["0 -> X", "X -> 0"])
    times = np.arange(1.0, 9.0)
    truth = np.array([6.0, 1.0])
    y = np.asarray(
        CMEObservations(
            net, truth, times, max_counts=25, initial_state=[0], t0=0.0, observed=0
        ).sample(jax.random.PRNGKey(1), (4,))
    )

    def model(y):
        birth = numpyro.sample("birth", dist.LogNormal(1.0, 1.0))
        rates = jnp.stack([birth, 1.0])
        with numpyro.plate("cell", y.shape[0]):
            numpyro.sample(
                "y",
                CMEObservations(
                    net, rates, times, max_counts=25, initial_state=[0], t0=0.0, observed=0
                ),
                obs=y,
            )

    idata = probdyn.fit(model, y, num_warmup=100, num_samples=100, num_chains=1, seed=0)
    np.testing.assert_array_equal(idata.observed_data["y"].values, y)
    assert idata.observed_data["y"].dims == ("cell", "time")
    assert idata.log_likelihood["y"].shape[:3] == (1, 100, 4)
    # 32 counts of a birth-death process: posterior sd of the birth rate is about 0.6
    assert abs(float(idata.posterior["birth"].mean()) - truth[0]) < 2.0
