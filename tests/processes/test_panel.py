"""PanelCTMC against per-subject scipy/brute-force references, and maximum likelihood."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import init_to_value
from scipy.linalg import expm

import probdyn
from probdyn.processes.panel import PanelCTMC, generator_from_log_rates

# illness-death with recovery: 0 healthy <-> 1 ill, 0 -> 2 and 1 -> 2 dead (absorbing)
STRUCTURE = np.array([[0, 1, 1], [1, 0, 1], [0, 0, 0]])  # R = 4: 01, 02, 10, 12
TRUE_LOG_RATES = np.log([0.3, 0.05, 0.2, 0.15])
TRUE_BETA = 0.5  # binary covariate on log q01


# --------------------------------------------------------------------------------------
# independent references (numpy/scipy, one subject at a time)
# --------------------------------------------------------------------------------------


def _ref_kernel(Q, dt, kind):
    """Transition kernel of one gap, written from the definitions."""
    K = Q.shape[0]
    P = expm(Q * dt)
    if kind == 1:
        return P
    out = np.zeros((K, K))
    for r in range(K):
        for s in range(K):
            if kind == 2:  # stay in r for dt, then jump to s (or stay) exactly at the time
                out[r, s] = np.exp(Q[r, r] * dt) * (1.0 if r == s else Q[r, s])
            else:  # enter s exactly at the time from an unobserved k != s
                out[r, s] = sum(P[r, k] * Q[k, s] for k in range(K) if k != s)
    return out


def _ref_emission(code, kind, t, K, E, censor):
    if t > 0 and kind in (2, 3):
        return np.eye(K)[code]
    base = np.eye(K) if E is None else E.T
    table = base if censor is None else np.vstack([base, censor])
    return table[code]


def _ref_brute(Q, times, codes, kinds, E=None, censor=None, init=None):
    """log p by summing over all K^L hidden paths of one subject (L observations)."""
    K, L = Q.shape[0], len(times)
    e = [_ref_emission(codes[t], kinds[t], t, K, E, censor) for t in range(L)]
    M = [None] + [_ref_kernel(Q, times[t] - times[t - 1], kinds[t]) for t in range(1, L)]
    w = np.ones(K) if init is None else np.asarray(init)
    total = 0.0
    for z in itertools.product(range(K), repeat=L):
        p = w[z[0]] * e[0][z[0]]
        for t in range(1, L):
            p *= M[t][z[t - 1], z[t]] * e[t][z[t]]
        total += p
    if init is None:
        total /= np.sum(e[0])
    return np.log(total)


def _ref_exact(Q, times, states):
    """Exactly observed snapshots: sum of log P(dt)[x_{t-1}, x_t]."""
    return sum(
        np.log(expm(Q * (times[t] - times[t - 1]))[states[t - 1], states[t]])
        for t in range(1, len(times))
    )


def _random_generator(rng, K=3):
    R = rng.uniform(0.1, 1.5, (K, K))
    np.fill_diagonal(R, 0.0)
    return R - np.diag(R.sum(1))


def _ragged_times(rng, N, T, lengths):
    times = np.cumsum(rng.uniform(0.1, 1.5, (N, T)), axis=1)
    times[np.arange(T)[None, :] >= lengths[:, None]] = np.nan  # padding: garbage
    return times


# --------------------------------------------------------------------------------------
# log_prob against references
# --------------------------------------------------------------------------------------


def test_exact_states_match_scipy_per_subject_generators(x64):
    rng = np.random.default_rng(0)
    N, T, K = 12, 6, 3
    lengths = rng.integers(1, T + 1, N)
    lengths[0] = T
    times = _ragged_times(rng, N, T, lengths)
    Qs = np.stack([_random_generator(rng, K) for _ in range(N)])
    y = rng.integers(0, K, (N, T))
    y[np.arange(T)[None, :] >= lengths[:, None]] = 77  # out-of-range padding
    d = PanelCTMC(Qs, times, lengths=lengths)
    lp = np.asarray(d.log_prob(y))
    assert lp.shape == (N,) and d.batch_shape == (N,) and d.event_shape == (T,)
    ref = [_ref_exact(Qs[n], times[n, : lengths[n]], y[n, : lengths[n]]) for n in range(N)]
    np.testing.assert_allclose(lp, ref, rtol=1e-10, atol=1e-12)
    assert np.all(lp[lengths == 1] == 0.0) and np.all(np.isfinite(lp))


@pytest.mark.parametrize("with_init", [False, True])
def test_misclassification_censoring_exact_times_match_brute_force(x64, with_init):
    rng = np.random.default_rng(1)
    N, T, K = 8, 5, 3
    Q = _random_generator(rng, K)  # all rates > 0, so every code sequence is possible
    E = np.array([[0.8, 0.1, 0.05, 0.05], [0.15, 0.7, 0.1, 0.05], [0.05, 0.05, 0.8, 0.1]])
    censor = np.array([[1, 1, 0], [0, 1, 1]])  # codes 4: "alive", 5: "ill or dead"
    lengths = rng.integers(1, T + 1, N)
    lengths[:2] = T
    times = _ragged_times(rng, N, T, lengths)
    kinds = rng.choice([1, 1, 2, 3], size=(N, T))
    codes = rng.integers(0, 6, (N, T))
    codes = np.where((kinds != 1) & (np.arange(T) > 0), rng.integers(0, K, (N, T)), codes)
    codes[0, 1:], kinds[0, 1:] = [0, 1, 1, 2], [1, 1, 1, 3]  # ends with an exact death
    init = np.array([0.6, 0.3, 0.1])
    d = PanelCTMC(
        Q,
        times,
        lengths=lengths,
        emission_matrix=E,
        censor_sets=censor,
        obs_type=kinds,
        initial_probs=init if with_init else None,
    )
    lp = np.asarray(d.log_prob(codes))
    ref = [
        _ref_brute(
            Q,
            times[n, : lengths[n]],
            codes[n, : lengths[n]],
            kinds[n, : lengths[n]],
            E,
            censor,
            init if with_init else None,
        )
        for n in range(N)
    ]
    np.testing.assert_allclose(lp, ref, rtol=1e-9)
    assert np.all(np.isfinite(lp))


def test_death_term_is_msm_formula(x64):
    # previous state known exactly: log P(dt)[r, r'] ... then sum_k P(dt)[r, k] q[k, 2]
    Q = np.array([[-0.5, 0.3, 0.2], [0.1, -0.6, 0.5], [0.0, 0.0, 0.0]])
    times = np.array([[0.0, 1.3, 2.0]])
    d = PanelCTMC(Q, times, obs_type=np.array([[1, 1, 3]]))
    P1, P2 = expm(Q * 1.3), expm(Q * 0.7)
    ref = np.log(P1[0, 1]) + np.log(P2[1, 0] * Q[0, 2] + P2[1, 1] * Q[1, 2])
    np.testing.assert_allclose(float(d.log_prob(np.array([[0, 1, 2]]))[0]), ref, rtol=1e-12)


# --------------------------------------------------------------------------------------
# gradients, padding, batching, transformations
# --------------------------------------------------------------------------------------


def _covariate_loglik(times, lengths, x, y, **kw):
    def f(params):
        coefs = jnp.zeros((1, 4)).at[0, 0].set(params[4])
        Q = generator_from_log_rates(STRUCTURE, params[:4], x, coefs)
        return PanelCTMC(Q, times, lengths=lengths, **kw).log_prob(y).sum()

    return f


def test_gradients_match_finite_differences(x64):
    rng = np.random.default_rng(2)
    N, T = 10, 5
    lengths = rng.integers(2, T + 1, N)
    times = _ragged_times(rng, N, T, lengths)
    x = rng.integers(0, 2, (N, 1)).astype(float)
    E = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.0, 0.0, 1.0]])
    Q = generator_from_log_rates(STRUCTURE, TRUE_LOG_RATES + 0.5)
    sim = PanelCTMC(Q, times, lengths=lengths, initial_probs=[0.5, 0.5, 0.0], emission_matrix=E)
    z, y = (np.asarray(a) for a in sim.sample_with_states(jax.random.PRNGKey(2)))
    death = (z == 2) & (np.roll(z, 1, axis=1) != 2)
    kinds = np.where(death, 3, 1)  # exact death times
    y = np.where((z < 2) & (rng.uniform(size=(N, T)) < 0.3), 3, y)  # code 3: "alive"
    kw = {"censor_sets": [[1, 1, 0]], "obs_type": kinds}

    @jax.jit
    def f(params):  # log-rates, beta and a misclassification probability
        a = params[5]
        Ea = jnp.array([[1 - a, a, 0.0], [0.2, 0.8, 0.0], [0.0, 0.0, 1.0]])
        return _covariate_loglik(times, lengths, x, y, emission_matrix=Ea, **kw)(params[:5])

    p0 = jnp.asarray(np.r_[TRUE_LOG_RATES, TRUE_BETA, 0.1])
    assert np.isfinite(f(p0)) and death.any()
    g = np.asarray(jax.jit(jax.grad(f))(p0))
    h = 1e-6
    fd = [(f(p0.at[i].add(h)) - f(p0.at[i].add(-h))) / (2 * h) for i in range(6)]
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_padding_and_mask_do_not_change_the_answer(x64):
    rng = np.random.default_rng(3)
    N, T, pad = 7, 4, 3
    Q = _random_generator(rng)
    times = np.cumsum(rng.uniform(0.1, 1.0, (N, T)), axis=1)
    y = rng.integers(0, 3, (N, T))
    kinds = rng.choice([1, 2], size=(N, T))
    lengths = rng.integers(1, T + 1, N)
    lengths[0] = 1
    ref = [_ref_brute(Q, times[n, :L], y[n, :L], kinds[n, :L]) for n, L in enumerate(lengths)]
    # pad to T + pad with garbage times, codes and kinds past each length
    Tp = T + pad
    tp = np.full((N, Tp), np.nan)
    yp = rng.integers(-5, 50, (N, Tp))
    kp = rng.integers(-3, 9, (N, Tp))
    for n in range(N):
        L = lengths[n]
        tp[n, :L], yp[n, :L], kp[n, :L] = times[n, :L], y[n, :L], kinds[n, :L]
        tp[n, L:] = -rng.uniform(0, 100, Tp - L)  # decreasing, negative
    valid = np.arange(Tp)[None, :] < lengths[:, None]
    by_len = PanelCTMC(Q, tp, lengths=lengths, obs_type=kp).log_prob(yp)
    by_mask = PanelCTMC(Q, tp, mask=valid, obs_type=kp).log_prob(yp)
    np.testing.assert_allclose(by_len, ref, rtol=1e-12)
    np.testing.assert_allclose(by_mask, ref, rtol=1e-12)
    assert float(by_len[0]) == 0.0  # one observation: conditioning only
    g = jax.grad(lambda q: PanelCTMC(q, tp, lengths=lengths).log_prob(yp).sum())(jnp.asarray(Q))
    assert np.all(np.isfinite(np.asarray(g)))


def test_shared_equals_per_subject_and_batching(x64):
    rng = np.random.default_rng(4)
    N, T = 9, 5
    lengths = rng.integers(1, T + 1, N)
    times = _ragged_times(rng, N, T, lengths)
    Q = _random_generator(rng)
    ys = rng.integers(0, 3, (2, 3, N, T))  # leading value dims
    shared = PanelCTMC(Q, times, lengths=lengths)
    per = PanelCTMC(np.broadcast_to(Q, (N, 3, 3)), times, lengths=lengths)
    lp = shared.log_prob(ys)
    assert lp.shape == (2, 3, N)
    np.testing.assert_allclose(per.log_prob(ys), lp, rtol=1e-12)
    np.testing.assert_allclose(lp[1, 2], shared.log_prob(ys[1, 2]), rtol=1e-12)
    # jit (the distribution as a pytree argument) and vmap over generators
    jitted = jax.jit(lambda d, y: d.log_prob(y))(shared, ys[0, 0])
    np.testing.assert_allclose(jitted, lp[0, 0], rtol=1e-12)
    Qs = jnp.stack([jnp.asarray(Q), 2.0 * jnp.asarray(Q)])
    vm = jax.vmap(lambda q: PanelCTMC(q, times, lengths=lengths).log_prob(ys[0, 0]))(Qs)
    np.testing.assert_allclose(vm[1], PanelCTMC(2 * Q, times, lengths=lengths).log_prob(ys[0, 0]))


def test_generator_from_log_rates():
    x = np.array([[0.0, 1.0], [1.0, 2.0]])
    coefs = np.array([[0.5, 0, 0, 0], [0, 0, -0.3, 0.1]])
    Q = np.asarray(generator_from_log_rates(STRUCTURE, TRUE_LOG_RATES, x, coefs))
    assert Q.shape == (2, 3, 3)
    for n in range(2):
        rates = np.exp(TRUE_LOG_RATES + x[n] @ coefs)
        want = np.zeros((3, 3))
        want[0, 1], want[0, 2], want[1, 0], want[1, 2] = rates
        want -= np.diag(want.sum(1))
        np.testing.assert_allclose(Q[n], want, rtol=1e-6)
    assert generator_from_log_rates(STRUCTURE, TRUE_LOG_RATES).shape == (3, 3)


# --------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------


def test_sample_marginals_match_expm(x64):
    """State and misclassified-code frequencies at each time vs pi0 P(t) (and @ E)."""
    N, T = 4000, 4
    Q = np.asarray(generator_from_log_rates(STRUCTURE, TRUE_LOG_RATES))
    t = np.array([0.0, 0.7, 2.0, 5.0])
    E = np.array([[0.85, 0.15, 0.0], [0.25, 0.75, 0.0], [0.0, 0.0, 1.0]])
    lengths = np.full(N, T)
    lengths[:100] = 2
    d = PanelCTMC(
        Q, np.tile(t, (N, 1)), lengths=lengths, initial_probs=[0.7, 0.3, 0.0], emission_matrix=E
    )
    states, obs = d.sample_with_states(jax.random.PRNGKey(0))
    states, obs = np.asarray(states), np.asarray(obs)
    assert states.shape == obs.shape == (N, T) and obs.dtype == np.int32
    assert np.all(states[:100, 2:] == states[:100, 1:2])  # padding repeats the last entry
    assert np.all(obs[:100, 2:] == obs[:100, 1:2])
    for j in range(T):
        keep = slice(100, None) if j >= 2 else slice(None)
        p = np.array([0.7, 0.3, 0.0]) @ expm(Q * t[j])
        for freq_of, probs in ((states, p), (obs, p @ E)):
            n = freq_of[keep, j].size
            freq = np.bincount(freq_of[keep, j], minlength=3) / n
            se = np.sqrt(probs * (1 - probs) / n)
            assert np.all(np.abs(freq - probs) <= 5 * se + 1e-12), (j, freq, probs)
    assert d.sample(jax.random.PRNGKey(1), (2,)).shape == (2, N, T)


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------

_T = np.array([[0.0, 1.0, 2.0], [0.0, 0.5, 3.0]])
_Q = np.array([[-1.0, 1.0], [0.5, -0.5]])


@pytest.mark.parametrize(
    "kwargs, value, match",
    [
        ({"generator": np.array([[-1.0, 2.0], [0.5, -0.5]])}, None, "generator rows"),
        ({"generator": np.array([[1.0, -1.0], [0.5, -0.5]])}, None, "generator off-diagonal"),
        ({"generator": np.ones((3, 2, 2))}, None, "generator must have shape"),
        ({"times": np.array([[0.0, 1.0, 1.0], [0.0, 0.5, 3.0]])}, None, "strictly increasing"),
        ({"times": np.array([[0.0, np.nan, 2.0], [0.0, 0.5, 3.0]])}, None, "times must be finite"),
        ({"lengths": np.array([0, 3])}, None, "lengths must lie"),
        ({"lengths": np.array([1.0, 3.0])}, None, "lengths must be integers"),
        ({"mask": np.array([[True, False, True], [True] * 3])}, None, "mask rows"),
        ({"emission_matrix": np.array([[0.9, 0.2], [0.0, 1.0]])}, None, "emission_matrix"),
        ({"emission_matrix": np.eye(3)}, None, "emission_matrix must have shape"),
        ({"censor_sets": np.array([[0, 0]])}, None, "censor_sets"),
        ({"initial_probs": np.array([0.5, 0.6])}, None, "initial_probs"),
        ({"obs_type": np.array([[1, 1, 4], [1, 1, 1]])}, None, "obs_type"),
        ({}, np.array([[0, 1, 2], [0, 0, 0]]), "value codes must lie in"),
        ({}, np.array([[0, 1, 0]]), "value must have shape"),
        ({}, np.zeros((2, 3)), "value must hold integer"),
        (
            {"obs_type": np.array([[1, 1, 3], [1, 1, 1]]), "censor_sets": [[1, 1]]},
            np.array([[0, 1, 2], [0, 0, 0]]),
            "obs_type 2/3",
        ),
    ],
)
def test_bad_input_names_the_argument(kwargs, value, match):
    args = {"generator": _Q, "times": _T, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        d = PanelCTMC(args.pop("generator"), args.pop("times"), **args)
        d.log_prob(np.zeros((2, 3), int) if value is None else value)


def test_sample_needs_initial_probs():
    with pytest.raises(ValueError, match="initial_probs"):
        PanelCTMC(_Q, _T).sample(jax.random.PRNGKey(0))


# --------------------------------------------------------------------------------------
# inference on simulated panel data
# --------------------------------------------------------------------------------------


def _simulate(N, seed):
    rng = np.random.default_rng(seed)
    T = 8
    n_obs = rng.integers(3, T + 1, N)
    times = np.cumsum(rng.uniform(0.5, 2.0, (N, T)), axis=1) - 0.5
    times[:, 0] = 0.0
    x = rng.integers(0, 2, (N, 1)).astype(float)
    coefs = np.zeros((1, 4))
    coefs[0, 0] = TRUE_BETA
    Q = generator_from_log_rates(STRUCTURE, TRUE_LOG_RATES, x, coefs)
    d = PanelCTMC(Q, times, lengths=n_obs, initial_probs=[1.0, 0.0, 0.0])
    y = d.sample(jax.random.PRNGKey(seed))
    return jnp.asarray(times), jnp.asarray(n_obs), jnp.asarray(x), y


def _model(times, lengths, x, y=None):
    log_rates = numpyro.sample("log_rates", dist.Normal(-2.0, 5.0).expand([4]).to_event(1))
    beta = numpyro.sample("beta", dist.Normal(0.0, 5.0))
    coefs = jnp.zeros((1, 4)).at[0, 0].set(beta)
    Q = generator_from_log_rates(STRUCTURE, log_rates, x, coefs)
    with numpyro.plate("subject", times.shape[0]):
        numpyro.sample("y", PanelCTMC(Q, times, lengths=lengths), obs=y)


def test_maximum_likelihood_recovers_rates_and_covariate_effect(x64):
    times, lengths, x, y = _simulate(2000, seed=5)
    n_counts = np.bincount(np.asarray(lengths))
    assert n_counts[3:9].min() > 200  # 3..8 observations per subject
    init = init_to_value(values={"log_rates": jnp.full(4, -2.0), "beta": 0.0})
    idata = probdyn.fit(
        _model,
        times,
        lengths,
        x,
        y,
        method="svi",
        guide="delta",
        guide_kwargs={"init_loc_fn": init},
        num_steps=300,
        learning_rate=optax.exponential_decay(0.05, 300, 0.1),
        num_chains=1,
        num_samples=1,
        progress_bar=False,
    )
    svi_est = np.r_[idata.posterior["log_rates"].values[0, 0], idata.posterior["beta"].values[0, 0]]
    loglik = _covariate_loglik(times, lengths, x, y)
    hess = jax.jit(jax.hessian(loglik))
    grad = jax.jit(jax.grad(loglik))
    est = svi_est
    for _ in range(3):  # polish the SVI estimate to the exact MLE by Newton steps
        est = est - np.linalg.solve(np.asarray(hess(est)), np.asarray(grad(est)))
    H, g = np.asarray(hess(est)), np.asarray(grad(est))
    h = 1e-5  # the Hessian agrees with central differences of the gradient
    fd = np.stack([(grad(est + h * e) - grad(est - h * e)) / (2 * h) for e in np.eye(5)])
    np.testing.assert_allclose(H, fd, rtol=1e-5, atol=1e-6 * np.abs(H).max())
    cov = np.linalg.inv(-H)
    se = np.sqrt(np.diag(cov))
    assert np.all(np.abs(cov @ g) < 1e-3 * se)  # converged
    assert np.all(np.abs(svi_est - est) < 0.5 * se), (svi_est, est, se)  # fit() got close
    truth = np.r_[TRUE_LOG_RATES, TRUE_BETA]
    z = (est - truth) / se
    assert np.all(np.abs(z) < 3), (est, truth, se)
    assert np.all(se < 0.15)  # the data are informative about every parameter


@pytest.mark.slow  # ~20 s CPU, nearly all compilation
def test_nuts_smoke():
    times, lengths, x, y = _simulate(100, seed=6)
    idata = probdyn.fit(
        _model,
        times,
        lengths,
        x,
        y,
        num_chains=1,
        num_warmup=20,
        num_samples=5,
        progress_bar=False,
    )
    assert idata.posterior["log_rates"].shape == (1, 5, 4)
    assert idata.log_likelihood["y"].shape == (1, 5, 100)
    assert np.all(np.isfinite(idata.posterior["beta"].values))


@pytest.mark.slow
def test_nuts_posterior_covers_truth():
    times, lengths, x, y = _simulate(2000, seed=5)
    idata = probdyn.fit(
        _model,
        times,
        lengths,
        x,
        y,
        num_chains=1,
        num_warmup=150,
        num_samples=150,
        dense_mass=True,
        progress_bar=False,
    )
    post = np.concatenate(
        [idata.posterior["log_rates"].values[0], idata.posterior["beta"].values[0][:, None]], 1
    )
    truth = np.r_[TRUE_LOG_RATES, TRUE_BETA]
    z = (post.mean(0) - truth) / post.std(0)
    assert np.all(np.abs(z) < 3.5), z
    assert int(idata.sample_stats["diverging"].sum()) == 0
