"""Bootstrap particle filter against exact likelihoods (truncated CTMC forward algorithm,
Kalman filter), resampling schemes against their expected counts, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax.scipy.stats import norm, poisson

from probdyn.infer.fit import fit
from probdyn.infer.particle import (
    RESAMPLING,
    particle_filter,
    pf_likelihood,
    reaction_transition,
    resample,
)
from probdyn.kernels.ctmc import transition_matrices
from probdyn.kernels.hmm import hmm_log_likelihood

# immigration-death: 0 -> X at rate A, X -> 0 at rate B x; Poisson(x + 0.5) observations
STOICH = np.array([[1], [-1]])
REACTANTS = np.array([[0], [1]])
A, B, X0 = 5.0, 0.5, 3
TIMES = np.array([0.5, 1.3, 2.0, 3.7, 4.1])
Y = np.array([2, 4, 6, 8, 9])
MASK = np.array([True, True, False, True, True])
K_MAX = 60  # P(x > 60) < 1e-20 on this horizon


def _obs_log_prob(y, x, t):
    return poisson.logpmf(y, x[0].astype(jnp.result_type(float)) + 0.5)


def exact_immigration_death(a, b=B, mask=None):
    """log p(y) of the truncated CTMC (exact to ~1e-15) by the forward algorithm."""
    k = np.arange(K_MAX + 1)
    Q = np.zeros((K_MAX + 1, K_MAX + 1))
    Q[k[:-1], k[:-1] + 1] = a
    Q[k[1:], k[1:] - 1] = b * k[1:]
    Q -= np.diag(Q.sum(1))
    dts = np.diff(np.concatenate([[0.0], TIMES]))
    P = transition_matrices(jnp.asarray(Q), jnp.asarray(dts), method="pade")
    initial = P[0][X0]
    ll = poisson.logpmf(Y[:, None], k[None, :] + 0.5)
    return float(hmm_log_likelihood(initial, P[1:], ll, mask=mask))


def _mc_check(log_estimates, exact_log, max_rel_se):
    """mean of exp(estimates) equals exp(exact) within 4 standard errors."""
    w = np.exp(np.asarray(log_estimates, np.float64) - exact_log)
    assert np.all(np.isfinite(w))
    mean, se = w.mean(), w.std(ddof=1) / np.sqrt(w.size)
    assert se < max_rel_se, se  # the test has power
    assert abs(mean - 1.0) < 4 * se, (mean, se)


def test_unbiased_on_immigration_death_with_missing_obs(x64):
    exact = exact_immigration_death(A, mask=MASK)
    # the mask matters: the full-data likelihood differs by far more than the MC error
    assert abs(exact - exact_immigration_death(A)) > 1.0
    transition = reaction_transition(STOICH, REACTANTS, jnp.array([A, B]), max_jumps=200)

    def run(key):
        res = particle_filter(
            key, lambda k: jnp.array([X0]), transition, _obs_log_prob, TIMES, Y,
            num_particles=100, mask=MASK,
        )  # fmt: skip
        return res.log_likelihood, res.num_overflow, res.log_likelihood_increments

    ll, overflow, inc = jax.jit(jax.vmap(run))(jax.random.split(jax.random.PRNGKey(0), 1000))
    assert int(overflow.sum()) == 0
    assert np.all(np.asarray(inc)[:, 2] == 0.0)  # the missing observation adds nothing
    _mc_check(ll, exact, 0.02)


@pytest.mark.slow
@pytest.mark.parametrize("resampling", RESAMPLING)
@pytest.mark.parametrize("ess_threshold", [1.0, 0.5])
def test_unbiased_every_scheme(x64, resampling, ess_threshold):
    exact = exact_immigration_death(A)
    transition = reaction_transition(STOICH, REACTANTS, jnp.array([A, B]), max_jumps=200)

    def run(key):
        return particle_filter(
            key, lambda k: jnp.array([X0]), transition, _obs_log_prob, TIMES, Y,
            num_particles=200, resampling=resampling, ess_threshold=ess_threshold,
        ).log_likelihood  # fmt: skip

    ll = jax.jit(jax.vmap(run))(jax.random.split(jax.random.PRNGKey(1), 2000))
    _mc_check(ll, exact, 0.01)


# --------------------------------------------------------------------------------------
# linear-Gaussian (Ornstein-Uhlenbeck) state space model vs the Kalman filter
# --------------------------------------------------------------------------------------

THETA, SIGMA, R = 0.7, 1.0, 0.5**2
OU_TIMES = np.array([0.3, 0.5, 1.4, 1.6, 2.9, 3.0, 4.2, 5.5])


def _ou(dt):
    phi = np.exp(-THETA * dt)
    return phi, SIGMA**2 * (1 - phi**2) / (2 * THETA)


def simulate_ou(seed):
    rng = np.random.default_rng(seed)
    x, t_prev, y = rng.normal(), 0.0, []
    for t in OU_TIMES:
        phi, q = _ou(t - t_prev)
        x = phi * x + np.sqrt(q) * rng.normal()
        y.append(x + np.sqrt(R) * rng.normal())
        t_prev = t
    return np.array(y)


def kalman_log_likelihood(y, times, m0=0.0, p0=1.0):
    m, p, ll, t_prev = m0, p0, 0.0, 0.0
    for yk, t in zip(y, times, strict=True):
        phi, q = _ou(t - t_prev)
        m, p = phi * m, phi**2 * p + q
        s = p + R
        ll += -0.5 * (np.log(2 * np.pi * s) + (yk - m) ** 2 / s)
        gain = p / s
        m, p = m + gain * (yk - m), (1 - gain) * p
        t_prev = t
    return ll


def _ou_transition(key, x, t_prev, t_next):
    phi = jnp.exp(-THETA * (t_next - t_prev))
    sd = jnp.sqrt(SIGMA**2 * (1 - phi**2) / (2 * THETA))
    return {"x": phi * x["x"] + sd * jax.random.normal(key, x["x"].shape)}


def _ou_obs(y, x, t):
    return norm.logpdf(y, x["x"][0], np.sqrt(R))


def test_unbiased_on_linear_gaussian_pytree_particles(x64):
    y = simulate_ou(3)
    exact = kalman_log_likelihood(y, OU_TIMES)

    def run(key):
        return particle_filter(
            key, lambda k: {"x": jax.random.normal(k, (1,))}, _ou_transition, _ou_obs,
            OU_TIMES, y, num_particles=100, resampling="stratified", ess_threshold=0.5,
        ).log_likelihood  # fmt: skip

    ll = jax.jit(jax.vmap(run))(jax.random.split(jax.random.PRNGKey(2), 1000))
    _mc_check(ll, exact, 0.06)


def test_filtered_mean_and_particles(x64):
    y = simulate_ou(4)
    init = {"x": jax.random.normal(jax.random.PRNGKey(5), (500, 1))}
    res = particle_filter(
        jax.random.PRNGKey(6), init, _ou_transition, _ou_obs, OU_TIMES, y,
        num_particles=500, return_particles=True,
    )  # fmt: skip
    w = np.exp(np.asarray(res.log_weights))
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-12)
    mean = np.einsum("tn,tn->t", w, np.asarray(res.particles["x"])[..., 0])
    np.testing.assert_allclose(np.asarray(res.filtered_mean["x"])[:, 0], mean, rtol=1e-10)
    assert np.all(np.asarray(res.resampled))
    ess = np.asarray(res.ess)
    np.testing.assert_allclose(ess, 1.0 / (w**2).sum(1), rtol=1e-10)
    assert np.all((ess > 1) & (ess <= 500))


# --------------------------------------------------------------------------------------
# degenerate cases
# --------------------------------------------------------------------------------------


def test_all_weights_zero_gives_minus_inf_not_nan():
    def obs_log_prob(y, x, t):
        return jnp.where(t > 1.0, -jnp.inf, 0.0)  # impossible observation at t = 2

    res = particle_filter(
        jax.random.PRNGKey(0), lambda k: jnp.zeros(2), lambda k, x, a, b: x + 1.0,
        obs_log_prob, jnp.array([1.0, 2.0, 3.0]), jnp.zeros(3), num_particles=10,
        return_particles=True,
    )  # fmt: skip
    assert res.log_likelihood == -jnp.inf
    assert float(res.log_likelihood_increments[0]) == 0.0
    assert float(res.log_likelihood_increments[1]) == -np.inf
    assert float(res.ess[1]) == 0.0
    for leaf in jax.tree.leaves(res):
        assert not np.any(np.isnan(np.asarray(leaf)))


def test_overflow_gets_weight_zero_and_is_counted():
    # 0 -> X at rate 100 over unit intervals: ~100 events, far more than max_jumps=5
    transition = reaction_transition(
        np.array([[1]]), np.array([[0]]), jnp.array([100.0]), max_jumps=5
    )
    res = particle_filter(
        jax.random.PRNGKey(0), lambda k: jnp.array([0]), transition,
        lambda y, x, t: 0.0, jnp.array([1.0, 2.0]), jnp.zeros(2), num_particles=16,
    )  # fmt: skip
    np.testing.assert_array_equal(res.num_overflow, [16, 16])
    assert res.log_likelihood == -jnp.inf
    # a generous cap: no overflow, estimate exactly 0 (obs_log_prob is 0)
    transition = reaction_transition(
        np.array([[1]]), np.array([[0]]), jnp.array([100.0]), max_jumps=1000
    )
    res = particle_filter(
        jax.random.PRNGKey(0), lambda k: jnp.array([0]), transition,
        lambda y, x, t: 0.0, jnp.array([1.0, 2.0]), jnp.zeros(2), num_particles=16,
    )  # fmt: skip
    np.testing.assert_array_equal(res.num_overflow, [0, 0])
    assert float(res.log_likelihood) == 0.0
    # filtered mean of a pure birth process at t = 1, 2: about 100, 200
    np.testing.assert_allclose(res.filtered_mean[:, 0], [100.0, 200.0], rtol=0.15)


def test_tau_leap_transition_close_to_exact(x64):
    exact = exact_immigration_death(A)
    transition = reaction_transition(
        STOICH, REACTANTS, jnp.array([A, B]), method="tau_leap", tau=0.02
    )
    res = particle_filter(
        jax.random.PRNGKey(0), lambda k: jnp.array([X0]), transition, _obs_log_prob,
        TIMES, Y, num_particles=1000,
    )  # fmt: skip
    # sd of the estimate at N = 1000 is ~0.1 (measured with Gillespie); tau-leap bias at
    # tau = 0.02 (Euler error of the mean, ~1%) moves it by less than that
    assert abs(float(res.log_likelihood) - exact) < 0.4


# --------------------------------------------------------------------------------------
# resampling
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", RESAMPLING)
def test_resampling_expected_counts(method):
    w = np.array([0.3, 0.0, 0.05, 0.25, 0.1, 0.2, 0.07, 0.03])
    n, reps = w.size, 4000
    log_w = jnp.log(jnp.asarray(w)) + 3.0  # unnormalised
    idx = jax.vmap(lambda k: resample(k, log_w, method=method))(
        jax.random.split(jax.random.PRNGKey(0), reps)
    )
    counts = np.stack([np.bincount(np.asarray(i), minlength=n) for i in idx])
    assert counts[:, 1].max() == 0  # zero weight never drawn
    mean = counts.mean(0)
    se = counts.std(0, ddof=1) / np.sqrt(reps)
    keep = w > 0
    assert np.all(np.abs(mean - n * w)[keep] < 4 * se[keep] + 1e-12), (mean, n * w, se)
    if method == "systematic":  # each count is floor(N w_i) or ceil(N w_i)
        assert np.all(counts >= np.floor(n * w - 1e-6)) and np.all(counts <= np.ceil(n * w + 1e-6))
    if method == "multinomial":  # binomial variance N w (1 - w)
        np.testing.assert_allclose(counts.var(0)[keep], (n * w * (1 - w))[keep], rtol=0.15)


def test_resample_other_num_samples():
    idx = resample(jax.random.PRNGKey(0), jnp.log(jnp.array([0.5, 0.5])), num_samples=6)
    assert idx.shape == (6,)
    assert np.bincount(np.asarray(idx), minlength=2).tolist() == [3, 3]


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------


def _pf(**overrides):
    kwargs = dict(
        rng_key=jax.random.PRNGKey(0),
        initial=lambda k: jnp.zeros(1),
        transition=lambda k, x, a, b: x,
        obs_log_prob=lambda y, x, t: 0.0,
        times=jnp.array([1.0, 2.0, 3.0]),
        obs=jnp.zeros(3),
        num_particles=4,
    )
    kwargs.update(overrides)
    args = [kwargs.pop(k) for k in ("rng_key", "initial", "transition", "obs_log_prob")]
    args += [kwargs.pop("times"), kwargs.pop("obs")]
    return particle_filter(*args, **kwargs)


@pytest.mark.parametrize(
    "overrides, error, word",
    [
        ({"num_particles": 0}, ValueError, "num_particles"),
        ({"num_particles": 2.0}, TypeError, "num_particles"),
        ({"times": jnp.array([1.0, 3.0, 2.0])}, ValueError, "times"),
        ({"times": jnp.array([1.0, 1.0, 2.0])}, ValueError, "times"),
        ({"times": jnp.array([-1.0, 1.0, 2.0])}, ValueError, "t0"),
        ({"obs": jnp.zeros(4)}, ValueError, "obs"),
        ({"mask": jnp.ones(2, bool)}, ValueError, "mask"),
        ({"resampling": "residual"}, ValueError, "resampling"),
        ({"ess_threshold": 1.5}, ValueError, "ess_threshold"),
        ({"initial": jnp.zeros((3, 1))}, ValueError, "initial"),
        ({"transition": None}, TypeError, "transition"),
        ({"transition": lambda k, x, a, b: jnp.zeros(2)}, ValueError, "transition"),
    ],
)
def test_bad_input_names_the_argument(overrides, error, word):
    with pytest.raises(error, match=word):
        _pf(**overrides)


def test_reaction_transition_bad_input():
    with pytest.raises(ValueError, match="max_jumps"):
        reaction_transition(STOICH, REACTANTS, jnp.array([A, B]))
    with pytest.raises(ValueError, match="tau"):
        reaction_transition(STOICH, REACTANTS, jnp.array([A, B]), method="tau_leap")
    with pytest.raises(ValueError, match="method"):
        reaction_transition(STOICH, REACTANTS, jnp.array([A, B]), method="euler")


# --------------------------------------------------------------------------------------
# NumPyro models
# --------------------------------------------------------------------------------------


def _ou_model(y):
    theta = numpyro.sample("theta", dist.LogNormal(0.0, 0.5))

    def transition(key, x, t_prev, t_next):
        phi = jnp.exp(-theta * (t_next - t_prev))
        return phi * x + jnp.sqrt((1 - phi**2) / (2 * theta)) * jax.random.normal(key, x.shape)

    pf_likelihood(
        "y", lambda k: jax.random.normal(k, (1,)), transition,
        lambda yk, x, t: norm.logpdf(yk, x[0], 0.5), OU_TIMES, y, num_particles=20,
    )  # fmt: skip


def test_pf_likelihood_site_is_the_estimate():
    y = jnp.zeros(OU_TIMES.size)
    with numpyro.handlers.trace() as tr, numpyro.handlers.seed(rng_seed=0):
        _ou_model(y)
    site = tr["y"]
    assert site["is_observed"] and site["infer"]["particle_filter"]
    np.testing.assert_array_equal(site["value"], y)
    ll = site["fn"].log_prob(site["value"])
    assert ll.shape == () and np.isfinite(ll)
    # a fresh seed gives a fresh estimate
    with numpyro.handlers.trace() as tr2, numpyro.handlers.seed(rng_seed=1):
        _ou_model(y)
    assert float(tr2["y"]["fn"].log_prob(y)) != float(ll)


def test_gradient_based_inference_is_refused():
    with pytest.raises(TypeError, match="pmmh"):
        fit(_ou_model, jnp.zeros(OU_TIMES.size), method="nuts", num_chains=1,
            num_warmup=2, num_samples=2, progress_bar=False)  # fmt: skip


def test_pf_likelihood_needs_a_seed():
    with pytest.raises(RuntimeError, match="seed"), pytest.warns(UserWarning):
        pf_likelihood(
            "y", lambda k: jnp.zeros(1), lambda k, x, a, b: x, lambda y, x, t: 0.0,
            jnp.array([1.0]), jnp.zeros(1), num_particles=2,
        )  # fmt: skip


def test_fractional_mask_is_refused_or_nan():
    # issue 9: a mask of 0.5 was treated as True
    def walk(key, x, t_prev, t):
        return x + jnp.sqrt(t - t_prev) * jax.random.normal(key, x.shape)

    def obs(y, x, t):
        return norm.logpdf(y, x[0], 1.0)

    times, y = jnp.array([1.0, 2.0, 3.0]), jnp.array([0.1, -0.2, 0.3])

    def run(mask):
        return particle_filter(
            jax.random.PRNGKey(0), lambda k: jnp.zeros(1), walk, obs, times, y,
            num_particles=8, mask=mask,
        ).log_likelihood  # fmt: skip

    with pytest.raises(ValueError, match=r"mask has values \[0.5\]"):
        run(jnp.array([1.0, 0.5, 1.0]))
    with pytest.raises(TypeError, match="mask has dtype"):
        run(jnp.array([1 + 0j, 0, 1]))
    jitted = jax.jit(run)  # under jit a fractional mask cannot raise: NaN, not a number
    assert np.isnan(float(jitted(jnp.array([1.0, 0.5, 1.0]))))
    as_bool = float(jitted(jnp.array([True, False, True])))
    assert np.isfinite(as_bool)
    assert float(jitted(jnp.array([1.0, 0.0, 1.0]))) == as_bool
