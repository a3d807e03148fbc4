"""DiscreteHMM against brute-force enumeration, goodness of fit, and NumPyro inference."""

import itertools

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions.gof import auto_goodness_of_fit, multinomial_goodness_of_fit
from numpyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO
from numpyro.infer.autoguide import AutoDelta, AutoNormal

from probdyn import DiscreteHMM

GOF_THRESHOLD = 1e-3  # p-value below which a gof test fails (fixed keys: deterministic)


def _brute_log_prob(pi, A, emission_log_prob, y):
    """log p(y) by summing over all K^T state paths (A may be (T-1, K, K))."""
    T = len(y)
    K = len(pi)
    total = -np.inf
    for path in itertools.product(range(K), repeat=T):
        lp = np.log(pi[path[0]]) + sum(emission_log_prob(y[t], path[t]) for t in range(T))
        for t in range(T - 1):
            At = A if A.ndim == 2 else A[t]
            lp += np.log(At[path[t], path[t + 1]])
        total = np.logaddexp(total, lp)
    return total


@pytest.fixture
def params():
    rng = np.random.default_rng(0)
    K = 3
    pi = rng.dirichlet(np.ones(K))
    A = rng.dirichlet(np.ones(K) * 2, size=K)
    return pi, A


def test_log_prob_poisson_matches_enumeration(params):
    pi, A = params
    rates = np.array([0.5, 3.0, 9.0])
    y = np.array([0, 4, 9, 8, 1])
    d = DiscreteHMM(jnp.asarray(pi), jnp.asarray(A), dist.Poisson(jnp.asarray(rates)))
    ref = _brute_log_prob(pi, A, lambda yt, k: float(dist.Poisson(rates[k]).log_prob(yt)), y)
    np.testing.assert_allclose(float(d.log_prob(jnp.asarray(y))), ref, rtol=1e-5)


def test_log_prob_logits_time_varying_mvn_match_enumeration(params):
    pi, _ = params
    rng = np.random.default_rng(1)
    T, K, D = 4, 3, 2
    A_t = rng.dirichlet(np.ones(K), size=(T - 1, K))
    locs = rng.normal(size=(K, D)) * 2
    y = rng.normal(size=(T, D))
    emission = dist.MultivariateNormal(jnp.asarray(locs), jnp.eye(D))
    d = DiscreteHMM(
        initial_logits=jnp.log(jnp.asarray(pi)) + 3.0,  # unnormalised on purpose
        transition_logits=jnp.log(jnp.asarray(A_t)),
        emission=emission,
        time_varying=True,
    )
    assert d.event_shape == (T, D)
    ref = _brute_log_prob(
        pi, A_t, lambda yt, k: float(dist.MultivariateNormal(locs[k], np.eye(D)).log_prob(yt)), y
    )
    np.testing.assert_allclose(float(d.log_prob(jnp.asarray(y))), ref, rtol=1e-5)


def test_categorical_probabilities_sum_to_one_and_gof(params):
    """All C^T observation sequences: probabilities sum to 1; samples fit log_prob."""
    pi, A = params
    C, T = 3, 4
    B = np.random.default_rng(2).dirichlet(np.ones(C), size=3)
    d = DiscreteHMM(
        jnp.asarray(pi), jnp.asarray(A), dist.Categorical(jnp.asarray(B)), num_timesteps=T
    )
    outcomes = jnp.asarray(list(itertools.product(range(C), repeat=T)))
    probs = np.exp(np.asarray(d.log_prob(outcomes), np.float64))
    np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-5)
    samples = np.asarray(d.sample(jax.random.PRNGKey(0), (20000,)))
    codes = samples @ (C ** np.arange(T)[::-1])
    counts = np.bincount(codes, minlength=C**T)
    assert multinomial_goodness_of_fit(probs, counts) > GOF_THRESHOLD


def test_gaussian_matches_mixture_reference_and_gof(params):
    """With T=2 the HMM is a 9-component mixture over (y0, y1): compare exactly, then gof."""
    pi, A = params
    mu = jnp.array([-2.0, 0.0, 3.0])
    d = DiscreteHMM(jnp.asarray(pi), jnp.asarray(A), dist.Normal(mu, 0.7), num_timesteps=2)
    w = jnp.asarray((pi[:, None] * A).reshape(-1))
    locs = jnp.stack(jnp.meshgrid(mu, mu, indexing="ij"), -1).reshape(-1, 2)
    ref = dist.MixtureSameFamily(dist.Categorical(w), dist.Normal(locs, 0.7).to_event(1))
    x = ref.sample(jax.random.PRNGKey(0), (50,))
    np.testing.assert_allclose(d.log_prob(x), ref.log_prob(x), rtol=1e-5, atol=1e-5)
    # the nearest-neighbour gof statistic is noisy even for exact samplers; under the null
    # the median of 5 independent p-values falls below 0.01 with probability ~1e-5.
    pvals = []
    for seed in range(5):
        samples = d.sample(jax.random.PRNGKey(seed), (5000,))
        pvals.append(auto_goodness_of_fit(samples, jnp.exp(d.log_prob(samples))))
    assert np.median(pvals) > 0.01, pvals


def test_sample_with_states_consistent(params):
    """Observations are drawn from the emission of the sampled state."""
    pi, A = params
    d = DiscreteHMM(
        jnp.asarray(pi),
        jnp.asarray(A),
        dist.Normal(jnp.array([-100.0, 0.0, 100.0]), 1e-3),
        num_timesteps=30,
    )
    z, y = d.sample_with_states(jax.random.PRNGKey(0), (7,))
    assert z.shape == (7, 30) and y.shape == (7, 30)
    np.testing.assert_allclose(np.asarray(y), 100.0 * (np.asarray(z) - 1), atol=0.01)
    # first-state frequencies agree with initial_probs (MC tolerance: 5 standard errors)
    z0 = np.asarray(
        DiscreteHMM(
            jnp.asarray(pi), jnp.asarray(A), dist.Normal(jnp.zeros(3), 1.0), num_timesteps=2
        ).sample_with_states(jax.random.PRNGKey(1), (20000,))[0][:, 0]
    )
    freq = np.bincount(z0, minlength=3) / len(z0)
    se = np.sqrt(pi * (1 - pi) / len(z0))
    assert np.all(np.abs(freq - pi) < 5 * se)


def test_batch_shapes_broadcast():
    K = 2
    pi = jnp.ones(K) / K
    A = jnp.broadcast_to(jnp.array([[0.9, 0.1], [0.3, 0.7]]), (4, K, K))
    emission = dist.Normal(jnp.zeros((3, 1, K)), 1.0)
    d = DiscreteHMM(pi, A, emission, num_timesteps=6)
    assert d.batch_shape == (3, 4)
    y = d.sample(jax.random.PRNGKey(0), (2,))
    assert y.shape == (2, 3, 4, 6)
    lp = d.log_prob(y)
    assert lp.shape == (2, 3, 4)
    # each batch element equals the unbatched distribution on its own
    single = DiscreteHMM(pi, A[1], dist.Normal(jnp.zeros(K), 1.0), num_timesteps=6)
    np.testing.assert_allclose(lp[1, 2, 1], single.log_prob(y[1, 2, 1]), rtol=1e-6)
    assert d.smooth(y).smoothed_probs.shape == (2, 3, 4, 6, K)
    assert d.viterbi(y).shape == (2, 3, 4, 6)
    assert d.sample_posterior(jax.random.PRNGKey(1), y, 5).shape == (5, 2, 3, 4, 6)


def test_mask_and_lengths_equal_truncation(params):
    pi, A = params
    pi, A = jnp.asarray(pi), jnp.asarray(A)
    em = dist.Poisson(jnp.array([1.0, 4.0, 10.0]))
    y = DiscreteHMM(pi, A, em, num_timesteps=12).sample(jax.random.PRNGKey(0))
    # lengths: the padded sequence scores like its prefix
    d_len = DiscreteHMM(pi, A, em, num_timesteps=12, lengths=jnp.array(7))
    d_pre = DiscreteHMM(pi, A, em, num_timesteps=7)
    np.testing.assert_allclose(d_len.log_prob(y), d_pre.log_prob(y[:7]), rtol=1e-6)
    np.testing.assert_allclose(
        d_len.smooth(y).smoothed_probs[:7], d_pre.smooth(y[:7]).smoothed_probs, atol=1e-6
    )
    np.testing.assert_array_equal(d_len.viterbi(y)[:7], d_pre.viterbi(y[:7]))
    # a mask of trailing missing values is the same as truncation too
    mask = jnp.arange(12) < 7
    d_mask = DiscreteHMM(pi, A, em, mask=mask)
    np.testing.assert_allclose(d_mask.log_prob(y), d_pre.log_prob(y[:7]), rtol=1e-6)
    # interior missing values with a NaN placeholder: marginalise that step's emission
    y_nan = jnp.asarray(y, jnp.float32).at[3].set(jnp.nan)
    d_gap = DiscreteHMM(
        pi, A, dist.Normal(jnp.array([0.0, 4.0, 9.0]), 1.0), mask=jnp.arange(12) != 3
    )
    A2 = np.asarray(A) @ np.asarray(A)  # two steps over the gap
    lp_gap = d_gap.log_prob(y_nan)
    assert np.isfinite(lp_gap)
    ref_normal = dist.Normal(jnp.array([0.0, 4.0, 9.0]), 1.0)
    ll = np.asarray(ref_normal.log_prob(jnp.asarray(y, jnp.float32)[:, None]), np.float64)
    # forward recursion in float64 over the steps without the gap
    alpha = np.asarray(pi) * np.exp(ll[0])
    for t in range(1, 12):
        if t == 3:
            continue
        alpha = alpha @ (A2 if t == 4 else np.asarray(A)) * np.exp(ll[t])
    np.testing.assert_allclose(float(lp_gap), np.log(alpha.sum()), rtol=1e-5)
    # a batch with different lengths
    d_b = DiscreteHMM(pi, A, em, num_timesteps=12, lengths=jnp.array([3, 12, 7]))
    lp_b = d_b.log_prob(jnp.broadcast_to(y, (3, 12)))
    np.testing.assert_allclose(
        lp_b[0], DiscreteHMM(pi, A, em, num_timesteps=3).log_prob(y[:3]), rtol=1e-6
    )
    np.testing.assert_allclose(lp_b[2], d_pre.log_prob(y[:7]), rtol=1e-6)


def test_posterior_draws_match_smoothed_marginals(params):
    pi, A = params
    d = DiscreteHMM(
        jnp.asarray(pi),
        jnp.asarray(A),
        dist.Normal(jnp.array([0.0, 1.0, 2.0]), 1.0),
        num_timesteps=15,
    )
    y = d.sample(jax.random.PRNGKey(0))
    n = 4000
    paths = np.asarray(d.sample_posterior(jax.random.PRNGKey(1), y, n))
    freq = np.stack([np.bincount(paths[:, t], minlength=3) for t in range(15)]) / n
    smoothed = np.asarray(d.smooth(y).smoothed_probs)
    se = np.sqrt(smoothed * (1 - smoothed) / n) + 1e-12
    assert np.all(np.abs(freq - smoothed) < 5 * se + 1e-9)


def test_parallel_equals_sequential(params):
    pi, A = params
    em = dist.Normal(jnp.array([0.0, 1.0, 2.0]), 0.5)
    d_seq = DiscreteHMM(jnp.asarray(pi), jnp.asarray(A), em, num_timesteps=300)
    d_par = DiscreteHMM(jnp.asarray(pi), jnp.asarray(A), em, num_timesteps=300, parallel=True)
    y = d_seq.sample(jax.random.PRNGKey(0), (2,))
    np.testing.assert_allclose(d_seq.log_prob(y), d_par.log_prob(y), rtol=1e-5)
    np.testing.assert_allclose(
        d_seq.smooth(y).smoothed_probs, d_par.smooth(y).smoothed_probs, atol=1e-4
    )


def test_validation_errors(params):
    pi, A = params
    pi, A = jnp.asarray(pi), jnp.asarray(A)
    em = dist.Poisson(jnp.ones(3))
    with pytest.raises(ValueError, match="initial_probs"):
        DiscreteHMM(jnp.array([0.5, 0.6, -0.1 + 0.0]), A, em, validate_args=True)
    with pytest.raises(ValueError, match="transition_matrix"):
        DiscreteHMM(pi, A.at[0, 0].add(0.2), em, validate_args=True)
    with pytest.raises(ValueError, match="transition_matrix"):
        DiscreteHMM(pi, jnp.ones((2, 2)) / 2, em)
    with pytest.raises(ValueError, match="emission"):
        DiscreteHMM(pi, A, dist.Poisson(jnp.ones(2)))
    with pytest.raises(TypeError, match="emission"):
        DiscreteHMM(pi, A, jnp.ones(3))
    with pytest.raises(ValueError, match="exactly one"):
        DiscreteHMM(pi, A, em, initial_logits=jnp.zeros(3))
    with pytest.raises(ValueError, match="parallel"):
        DiscreteHMM(pi, A, em, parallel="yes")
    with pytest.raises(ValueError, match="lengths"):
        DiscreteHMM(pi, A, em, num_timesteps=5, lengths=jnp.array([0, 3]))
    d = DiscreteHMM(pi, A, em, num_timesteps=5)
    with pytest.raises(ValueError, match="value"):
        d.log_prob(jnp.ones(4))
    with pytest.raises(ValueError, match="num_timesteps"):
        DiscreteHMM(pi, A, em).sample(jax.random.PRNGKey(0))
    mvn = DiscreteHMM(
        pi, A, dist.MultivariateNormal(jnp.zeros((3, 2)), jnp.eye(2)), num_timesteps=5
    )
    with pytest.raises(ValueError, match="event shape"):
        mvn.log_prob(jnp.ones((5, 3)))


def test_jit_vmap_grad(params):
    pi, A = params
    y = jnp.array([0, 3, 8, 9, 2, 1, 0], jnp.float32)

    def lp(log_rates, logits):
        return DiscreteHMM(
            jnp.asarray(pi), transition_logits=logits, emission=dist.Poisson(jnp.exp(log_rates))
        ).log_prob(y)

    x0 = jnp.log(jnp.array([0.5, 3.0, 9.0]))
    L0 = jnp.log(jnp.asarray(A))
    g = jax.jit(jax.grad(lp, argnums=(0, 1)))(x0, L0)
    eps = 1e-3
    for i in range(3):
        e = jnp.zeros(3).at[i].set(eps)
        fd = (lp(x0 + e, L0) - lp(x0 - e, L0)) / (2 * eps)
        np.testing.assert_allclose(g[0][i], fd, rtol=2e-2, atol=2e-3)
    batch = jax.vmap(lp, in_axes=(0, None))(jnp.stack([x0, x0 + 0.1]), L0)
    assert batch.shape == (2,)


def _poisson_hmm_model(y=None, T=None):
    """2-state Poisson HMM with ordered rates (label switching removed)."""
    K = 2
    r0 = numpyro.sample("r0", dist.Gamma(2.0, 1.0))
    gap = numpyro.sample("gap", dist.Gamma(2.0, 0.5))
    rates = numpyro.deterministic("rates", jnp.stack([r0, r0 + gap]))
    A = numpyro.sample("A", dist.Dirichlet(jnp.array([[8.0, 2.0], [2.0, 8.0]])))
    T = T if y is None else y.shape[-1]
    numpyro.sample(
        "y", DiscreteHMM(jnp.ones(K) / K, A, dist.Poisson(rates), num_timesteps=T), obs=y
    )


@pytest.mark.slow  # end-to-end fit, also run by a README section or a --smoke study
def test_nuts_recovers_poisson_hmm():
    true_A = jnp.array([[0.95, 0.05], [0.1, 0.9]])
    true_rates = jnp.array([1.0, 6.0])
    y = DiscreteHMM(
        jnp.array([0.5, 0.5]), true_A, dist.Poisson(true_rates), num_timesteps=400
    ).sample(jax.random.PRNGKey(42))
    mcmc = MCMC(
        NUTS(_poisson_hmm_model),
        num_warmup=300,
        num_samples=300,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(0), y=y)
    idata = az.from_numpyro(mcmc)
    rhat = az.rhat(idata, var_names=["r0", "gap", "A"])
    assert max(float(rhat[v].max()) for v in rhat.data_vars) < 1.02
    post = mcmc.get_samples()
    rates = np.asarray(post["rates"])
    # truth within 4 posterior standard deviations
    assert np.all(np.abs(rates.mean(0) - np.asarray(true_rates)) < 4 * rates.std(0))
    Apost = np.asarray(post["A"])
    assert np.all(np.abs(Apost.mean(0) - np.asarray(true_A)) < 4 * Apost.std(0) + 1e-6)
    assert int(mcmc.get_extra_fields()["diverging"].sum()) == 0


@pytest.mark.slow  # end-to-end fit, also run by a README section or a --smoke study
def test_svi_and_predictive():
    y = DiscreteHMM(
        jnp.array([0.5, 0.5]),
        jnp.array([[0.9, 0.1], [0.2, 0.8]]),
        dist.Poisson(jnp.array([1.0, 7.0])),
        num_timesteps=200,
    ).sample(jax.random.PRNGKey(0))
    for guide_cls in (AutoNormal, AutoDelta):
        guide = guide_cls(_poisson_hmm_model)
        svi = SVI(_poisson_hmm_model, guide, numpyro.optim.Adam(0.05), Trace_ELBO())
        res = svi.run(jax.random.PRNGKey(1), 400, y=y, progress_bar=False)
        assert np.isfinite(res.losses[-1]) and res.losses[-1] < res.losses[0]
        med = guide.median(res.params)
        rates = np.array([med["r0"], med["r0"] + med["gap"]])
        assert np.all(np.abs(rates - np.array([1.0, 7.0])) < 1.0)
    prior = Predictive(_poisson_hmm_model, num_samples=10)(jax.random.PRNGKey(2), T=50)
    assert prior["y"].shape == (10, 50)
    post = Predictive(guide, params=res.params, num_samples=5)(jax.random.PRNGKey(3), y=y)
    pp = Predictive(_poisson_hmm_model, post)(jax.random.PRNGKey(4), T=200)
    assert pp["y"].shape == (5, 200)


def test_nan_observations_without_mask_name_the_fix():
    em = dist.Normal(jnp.array([0.0, 3.0]), 1.0)
    d = DiscreteHMM(jnp.array([0.5, 0.5]), jnp.array([[0.9, 0.1], [0.2, 0.8]]), em)
    y = jnp.array([0.1, jnp.nan, 2.9])
    with pytest.raises(ValueError, match=r"1 NaN observation.*DiscreteHMM\(\.\.\., mask=\.\.\.\)"):
        d.log_prob(y)
    # with mask=, NaN placeholders are ignored: test_mask_and_lengths_equal_truncation
