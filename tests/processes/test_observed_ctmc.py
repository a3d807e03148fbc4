"""ObservedCTMC (processes/observed_ctmc.py) against brute force, scipy, closed forms; NUTS."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import scipy.linalg
import scipy.stats
from numpyro.infer import MCMC, NUTS

from probdyn.processes.hmm import DiscreteHMM
from probdyn.processes.mjp import MarkovJumpProcess
from probdyn.processes.observed_ctmc import ObservedCTMC


def _random_generator(rng, K, low=0.2, high=2.0):
    R = np.exp(rng.uniform(np.log(low), np.log(high), size=(K, K)))
    np.fill_diagonal(R, 0.0)
    return R - np.diag(R.sum(1))


def _brute_posterior(pi, Q, times, ll):
    """All K^T hidden sequences at ``times`` with emission log-likelihoods ``ll`` (T, K).

    Returns (paths (K^T, T), log joint (K^T,)) with scipy.linalg.expm transitions.
    """
    T, K = ll.shape
    P = [scipy.linalg.expm(Q * dt) for dt in np.diff(times)]
    paths = np.array(list(itertools.product(range(K), repeat=T)))
    lj = np.log(pi[paths[:, 0]]) + ll[np.arange(T), paths].sum(1)
    for t in range(T - 1):
        lj += np.log(P[t][paths[:, t], paths[:, t + 1]])
    return paths, lj


def _normal_ll(y, means, sd):
    return scipy.stats.norm.logpdf(np.asarray(y)[:, None], means[None, :], sd)


@pytest.fixture
def setup():
    rng = np.random.default_rng(0)
    K = 3
    Q = _random_generator(rng, K)
    pi = rng.dirichlet(np.ones(K))
    times = np.array([0.0, 0.3, 1.1, 3.0])
    means, sd = np.array([-1.0, 0.5, 2.0]), 0.8
    y = np.array([-0.7, 1.2, 0.1, 2.4])
    return Q, pi, times, means, sd, y


def test_observed_log_prob_matches_enumeration_and_discrete_hmm(x64, setup):
    Q, pi, times, means, sd, y = setup
    em = dist.Normal(jnp.asarray(means), sd)
    d = ObservedCTMC(jnp.asarray(Q), jnp.asarray(pi), jnp.asarray(times), em)
    assert d.event_shape == (4,) and d.batch_shape == ()
    _, lj = _brute_posterior(pi, Q, times, _normal_ll(y, means, sd))
    ref = scipy.special.logsumexp(lj)
    np.testing.assert_allclose(float(d.log_prob(jnp.asarray(y))), ref, rtol=1e-10)
    # DiscreteHMM with scipy expm(Q dt) time-varying transitions
    P = np.stack([scipy.linalg.expm(Q * dt) for dt in np.diff(times)])
    hmm = DiscreteHMM(jnp.asarray(pi), jnp.asarray(P), em, time_varying=True)
    np.testing.assert_allclose(d.log_prob(jnp.asarray(y)), hmm.log_prob(jnp.asarray(y)), rtol=1e-10)
    np.testing.assert_allclose(d.transition_matrices, P, atol=1e-12)
    # t0 < times[0]: an unobserved first point with zero log-likelihood
    d0 = ObservedCTMC(jnp.asarray(Q), jnp.asarray(pi), jnp.asarray(times), em, t0=-0.7)
    ll0 = np.vstack([np.zeros(3), _normal_ll(y, means, sd)])
    _, lj0 = _brute_posterior(pi, Q, np.concatenate([[-0.7], times]), ll0)
    np.testing.assert_allclose(float(d0.log_prob(jnp.asarray(y))), scipy.special.logsumexp(lj0))
    # a missing observation drops its emission term
    mask = np.array([True, False, True, True])
    dm = ObservedCTMC(jnp.asarray(Q), jnp.asarray(pi), jnp.asarray(times), em, mask=mask)
    llm = _normal_ll(y, means, sd) * mask[:, None]
    _, ljm = _brute_posterior(pi, Q, times, llm)
    ym = jnp.asarray(y).at[1].set(jnp.nan)
    np.testing.assert_allclose(float(dm.log_prob(ym)), scipy.special.logsumexp(ljm), rtol=1e-10)


def test_observed_gradients_match_finite_differences(x64, setup):
    _, pi, times, _, sd, y = setup
    off = ~np.eye(3, dtype=bool)

    def lp(log_rates, means):
        R = jnp.zeros((3, 3)).at[off].set(jnp.exp(log_rates))
        Q = R - jnp.diag(R.sum(1))
        d = ObservedCTMC(Q, jnp.asarray(pi), jnp.asarray(times), dist.Normal(means, sd))
        return d.log_prob(jnp.asarray(y))

    x0 = jnp.asarray(np.random.default_rng(1).normal(size=6) * 0.5)
    m0 = jnp.array([-1.0, 0.5, 2.0])
    g = jax.jit(jax.grad(lp, argnums=(0, 1)))(x0, m0)
    eps = 1e-6
    for i in range(6):
        e = jnp.zeros(6).at[i].set(eps)
        fd = (lp(x0 + e, m0) - lp(x0 - e, m0)) / (2 * eps)
        np.testing.assert_allclose(g[0][i], fd, rtol=1e-6, atol=1e-8)
    for i in range(3):
        e = jnp.zeros(3).at[i].set(eps)
        fd = (lp(x0, m0 + e) - lp(x0, m0 - e)) / (2 * eps)
        np.testing.assert_allclose(g[1][i], fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("use_x64", [True, False])
def test_stiff_rates_and_gaps_are_finite(use_x64):
    prev = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", use_x64)
    try:
        rng = np.random.default_rng(3)
        K = 3
        Q = _random_generator(rng, K, 1e-3, 1e3)
        times = np.concatenate([[0.0], np.cumsum([1e-3, 1e2, 0.5, 3e-3, 20.0])])
        means = np.array([0.0, 1.0, 2.0])
        y = rng.normal(size=times.size) + 1.0
        pi = np.ones(K) / K

        def lp(log_q):
            Qj = jnp.asarray(Q) * jnp.exp(log_q)
            d = ObservedCTMC(Qj, jnp.asarray(pi), jnp.asarray(times), dist.Normal(means, 0.5))
            return d.log_prob(jnp.asarray(y))

        val, g = jax.value_and_grad(lp)(0.0)
        assert np.isfinite(val) and np.isfinite(g)
        _, lj = _brute_posterior(pi, Q, times, _normal_ll(y, means, 0.5))
        np.testing.assert_allclose(val, scipy.special.logsumexp(lj), rtol=1e-9 if use_x64 else 1e-4)
    finally:
        jax.config.update("jax_enable_x64", prev)


def test_filter_smooth_viterbi_match_enumeration(x64, setup):
    Q, pi, times, means, sd, y = setup
    d = ObservedCTMC(jnp.asarray(Q), jnp.asarray(pi), jnp.asarray(times), dist.Normal(means, sd))
    ll = _normal_ll(y, means, sd)
    paths, lj = _brute_posterior(pi, Q, times, ll)
    w = np.exp(lj - scipy.special.logsumexp(lj))
    smoothed = np.stack([np.bincount(paths[:, t], w, minlength=3) for t in range(4)])
    np.testing.assert_allclose(d.smooth(jnp.asarray(y)).smoothed_probs, smoothed, atol=1e-12)
    for t in range(4):  # filtered: condition on y[:t+1] only
        llp = ll.copy()
        llp[t + 1 :] = 0.0
        p_, ljp = _brute_posterior(pi, Q, times, llp)
        wp = np.exp(ljp - scipy.special.logsumexp(ljp))
        np.testing.assert_allclose(
            d.filter(jnp.asarray(y)).filtered_probs[t], np.bincount(p_[:, t], wp), atol=1e-12
        )
    pair = np.zeros((3, 3, 3))
    for t in range(3):
        np.add.at(pair[t], (paths[:, t], paths[:, t + 1]), w)
    np.testing.assert_allclose(d.two_slice_marginals(jnp.asarray(y)), pair, atol=1e-12)
    np.testing.assert_array_equal(d.viterbi(jnp.asarray(y)), paths[np.argmax(lj)])


def test_sample_posterior_frequencies_match_smoothed(setup):
    Q, pi, times, means, sd, y = setup
    d = ObservedCTMC(jnp.asarray(Q), jnp.asarray(pi), jnp.asarray(times), dist.Normal(means, sd))
    S = 20000
    z = np.asarray(d.sample_posterior(jax.random.PRNGKey(0), jnp.asarray(y), S))
    assert z.shape == (S, 4)
    freq = np.stack([np.bincount(z[:, t], minlength=3) / S for t in range(4)])
    gamma = np.asarray(d.smooth(jnp.asarray(y)).smoothed_probs, np.float64)
    se = np.sqrt(gamma * (1 - gamma) / S) + 1e-6
    assert np.all(np.abs(freq - gamma) < 5 * se)


def _occupation(value, K, t_end):
    """Time in each state of encoded paths (..., M+1, 2) over [value[0, 0], t_end]."""
    t, s = np.asarray(value[..., 0]), np.asarray(value[..., 1]).astype(int)
    nxt = np.concatenate([t[..., 1:], np.full(t.shape[:-1] + (1,), t_end)], -1)
    return np.stack([((nxt - t) * (s == k)).sum(-1) for k in range(K)], -1)


def _state_at(value, when):
    t, s = np.asarray(value[..., 0]), np.asarray(value[..., 1]).astype(int)
    idx = np.sum(t[..., None, :] <= when[..., :, None], -1) - 1  # last row entered <= when
    return np.take_along_axis(s, idx, -1)


@pytest.mark.parametrize("t0", [None, -0.7])
def test_sample_path_hits_states_and_matches_expected_occupation(x64, setup, t0):
    """Occupation times of posterior paths vs the exact value.

    Given the states at consecutive points (a, b), the expected time in k over a gap dt is
    :math:`\\int_0^{dt} P(s)_{ak} P(dt-s)_{kb} ds / P(dt)_{ab}`, the top-right block of
    :math:`\\exp([[Q, E_{kk}], [0, Q]]\\, dt)` (Van Loan, 1978) divided by P(dt)_{ab}; the
    pair weights come from brute-force enumeration.
    """
    Q, pi, times, means, sd, y = setup
    K = 3
    em = dist.Normal(jnp.asarray(means), sd)
    d = ObservedCTMC(jnp.asarray(Q), jnp.asarray(pi), jnp.asarray(times), em, t0=t0)
    S = 3000
    out = d.sample_path(jax.random.PRNGKey(1), jnp.asarray(y), 48, num_samples=S)
    assert out.value.shape == (S, 49, 2) and out.states.shape == (S, 4)
    assert not np.any(out.overflow)
    v = np.asarray(out.value)
    # the path passes through the FFBS states, starts at t0 / times[0], ends at times[-1]
    np.testing.assert_array_equal(_state_at(v, np.broadcast_to(times, (S, 4))), out.states)
    np.testing.assert_allclose(v[:, 0, 0], times[0] if t0 is None else t0)
    assert np.all(np.diff(v[..., 0], axis=-1) >= 0) and np.all(v[..., -1, 0] <= times[-1])
    # each path is a valid MarkovJumpProcess value (validated, finite log-density)
    start = times[0] if t0 is None else t0
    mjp = MarkovJumpProcess(jnp.asarray(Q), jnp.ones(K) / K, times[-1], 48, t0=start)
    assert np.all(np.isfinite(mjp.log_prob(out.value[:50])))
    # exact expected occupation
    ll = _normal_ll(y, means, sd)
    grid = times
    if t0 is not None:
        ll, grid = np.vstack([np.zeros(K), ll]), np.concatenate([[t0], times])
    paths, lj = _brute_posterior(pi, Q, grid, ll)
    w = np.exp(lj - scipy.special.logsumexp(lj))
    expected = np.zeros(K)
    for i, dt in enumerate(np.diff(grid)):
        pair = np.zeros((K, K))
        np.add.at(pair, (paths[:, i], paths[:, i + 1]), w)
        P = scipy.linalg.expm(Q * dt)
        for k in range(K):
            E = np.zeros((K, K))
            E[k, k] = 1.0
            big = scipy.linalg.expm(np.block([[Q, E], [np.zeros((K, K)), Q]]) * dt)
            expected[k] += np.sum(pair * big[:K, K:] / P)
    occ = _occupation(v, K, times[-1])
    np.testing.assert_allclose(occ.sum(-1), times[-1] - start, rtol=1e-12)
    se = occ.std(0) / np.sqrt(S)
    assert np.all(np.abs(occ.mean(0) - expected) < 5 * se), (occ.mean(0), expected, se)
    # fast rates: > 48 jumps on [0, 3] nearly surely; flagged and NaN-marked, not truncated
    fast = ObservedCTMC(jnp.asarray(Q) * 20, jnp.asarray(pi), jnp.asarray(times), em, t0=t0)
    out = fast.sample_path(jax.random.PRNGKey(2), jnp.asarray(y), 48, num_samples=S)
    assert np.mean(out.overflow) > 0.99
    assert np.all(np.isnan(np.asarray(out.value[..., -1, 0])) == np.asarray(out.overflow))


def test_observed_sample_and_batching(setup):
    Q, pi, times, means, sd, _ = setup
    em = dist.Normal(jnp.asarray(means), 1e-3)
    d = ObservedCTMC(jnp.asarray(Q), jnp.asarray(pi), jnp.asarray(times), em)
    z, y = d.sample_with_states(jax.random.PRNGKey(0), (5000,))
    assert z.shape == (5000, 4) and y.shape == (5000, 4)
    np.testing.assert_allclose(np.asarray(y), means[np.asarray(z)], atol=0.01)
    # state at times[-1] ~ pi P(times[-1] - times[0]) (exact propagation)
    p_end = pi @ scipy.linalg.expm(Q * (times[-1] - times[0]))
    freq = np.bincount(np.asarray(z[:, -1]), minlength=3) / 5000
    assert np.all(np.abs(freq - p_end) < 5 * np.sqrt(p_end * (1 - p_end) / 5000))
    # batch of two generators and two time grids
    Qb = jnp.stack([jnp.asarray(Q), 2 * jnp.asarray(Q)])
    tb = jnp.stack([jnp.asarray(times), jnp.asarray(times) * 1.5 + 1.0])
    emb = dist.Normal(jnp.asarray(means), sd)
    db = ObservedCTMC(Qb, jnp.asarray(pi), tb, emb)
    assert db.batch_shape == (2,)
    yb = db.sample(jax.random.PRNGKey(1), (3,))
    assert yb.shape == (3, 2, 4)
    lp = db.log_prob(yb)
    for b in range(2):
        single = ObservedCTMC(Qb[b], jnp.asarray(pi), tb[b], emb)
        np.testing.assert_allclose(lp[:, b], single.log_prob(yb[:, b]), rtol=1e-5)
    np.testing.assert_allclose(db.mean_dwell_times[1], -0.5 / np.diag(Q), rtol=1e-6)
    # vmap over the generator's scale inside a traced constructor equals the batch above
    vm = jax.vmap(
        lambda c: ObservedCTMC(jnp.asarray(Q) * c, jnp.asarray(pi), tb[0], emb).log_prob(yb[:, 0])
    )
    np.testing.assert_allclose(vm(jnp.array([1.0, 2.0]))[0], lp[:, 0], rtol=1e-5)


def test_bad_arguments_name_the_argument(setup):
    Q, pi, times, means, sd, _ = setup
    Q, pi, times = jnp.asarray(Q), jnp.asarray(pi), jnp.asarray(times)
    em = dist.Normal(jnp.asarray(means), sd)
    bad_off = Q.at[0, 1].set(-0.1).at[0, 0].add(0.1 + Q[0, 1])
    for cls_args in (
        lambda g, p: MarkovJumpProcess(g, p, 1.0, 4),
        lambda g, p: ObservedCTMC(g, p, times, em),
    ):
        with pytest.raises(ValueError, match=r"generator off-diagonal.*generator\[0, 1\]"):
            cls_args(bad_off, pi)
        with pytest.raises(ValueError, match="generator rows must sum to zero"):
            cls_args(Q.at[1, 2].add(0.5), pi)
        with pytest.raises(ValueError, match="generator must have shape"):
            cls_args(Q[:, :2], pi)
        with pytest.raises(ValueError, match="initial_probs must be a probability"):
            cls_args(Q, pi * 1.1)
        with pytest.raises(ValueError, match="initial_probs must have shape"):
            cls_args(Q, pi[:2] / pi[:2].sum())
    with pytest.raises(ValueError, match=r"row 1 of generator\[1\]"):
        MarkovJumpProcess(jnp.stack([Q, Q.at[1, 2].add(0.5)]), pi, 1.0, 4)
    with pytest.raises(ValueError, match="times must be strictly increasing"):
        ObservedCTMC(Q, pi, times.at[2].set(0.3), em)
    with pytest.raises(ValueError, match="times must have shape"):
        ObservedCTMC(Q, pi, jnp.asarray(1.0), em)
    with pytest.raises(ValueError, match="t0 must be"):
        ObservedCTMC(Q, pi, times, em, t0=0.0)
    with pytest.raises(ValueError, match="emission"):
        ObservedCTMC(Q, pi, times, dist.Normal(jnp.zeros(2), 1.0))
    with pytest.raises(TypeError, match="emission"):
        ObservedCTMC(Q, pi, times, jnp.zeros(3))
    with pytest.raises(ValueError, match="mask"):
        ObservedCTMC(Q, pi, times, em, mask=jnp.ones(3, bool))
    with pytest.raises(ValueError, match="do not broadcast"):
        ObservedCTMC(jnp.stack([Q, Q]), pi, jnp.stack([times] * 3), em)
    with pytest.raises(ValueError, match="t_end"):
        MarkovJumpProcess(Q, pi, -1.0, 4)
    with pytest.raises(ValueError, match="max_jumps"):
        MarkovJumpProcess(Q, pi, 1.0, 0)
    with pytest.raises(ValueError, match="value"):
        ObservedCTMC(Q, pi, times, em).log_prob(jnp.zeros(5))


def _channel_model(times, y=None):
    """Two-state ion channel (closed 0 / open 1) with log-normal priors on the rates."""
    log_k = numpyro.sample("log_k", dist.Normal(0.0, 1.5).expand([2]).to_event(1))
    k = jnp.exp(log_k)
    Q = jnp.array([[-1.0, 1.0], [0.0, 0.0]]) * k[0] + jnp.array([[0.0, 0.0], [1.0, -1.0]]) * k[1]
    em = dist.Normal(jnp.array([0.0, 1.0]), 0.3)
    numpyro.sample("y", ObservedCTMC(Q, jnp.array([0.5, 0.5]), times, em), obs=y)


@pytest.mark.slow  # end-to-end fit, also run by a README section or a --smoke study
def test_nuts_recovers_channel_rates():
    true_log_k = np.log([0.5, 1.5])
    times = jnp.asarray(np.cumsum(np.random.default_rng(0).exponential(0.4, size=300)))
    y = numpyro.infer.Predictive(_channel_model, {"log_k": jnp.asarray(true_log_k)[None]})(
        jax.random.PRNGKey(0), times
    )["y"][0]
    mcmc = MCMC(NUTS(_channel_model), num_warmup=250, num_samples=250, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(1), times, y)
    post = np.asarray(mcmc.get_samples()["log_k"])
    assert np.all(np.abs(post.mean(0) - true_log_k) < 4 * post.std(0)), (post.mean(0), post.std(0))
    assert np.all(post.std(0) < 0.5)


def test_observed_ctmc_nan_observations_without_mask_name_the_fix():
    Q = jnp.array([[-1.0, 1.0], [2.0, -2.0]])
    d = ObservedCTMC(Q, jnp.array([0.5, 0.5]), jnp.array([0.0, 0.4, 1.1]),
                     dist.Normal(jnp.array([0.0, 1.0]), 0.3))  # fmt: skip
    with pytest.raises(ValueError, match=r"NaN observation.*ObservedCTMC\(\.\.\., mask=\.\.\.\)"):
        d.log_prob(jnp.array([0.1, jnp.nan, 0.9]))
