"""models.sir: the exact likelihood against scipy's sparse expm_multiply on the (S, I) box,
and the particle-filter model against the exact likelihood."""

import jax
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg
from numpyro import handlers
from numpyro.infer.util import log_density
from scipy import stats

from probdyn.models import sir

TIMES = np.array([1.0, 2.0, 4.0])
Y = np.array([3, 5, 4])


def _reference_log_likelihood(beta, gamma, times, y):
    N, s0, i0 = sir.POPULATION, sir.POPULATION - sir.INITIAL_INFECTED, sir.INITIAL_INFECTED
    states = [(s, i) for s in range(s0 + 1) for i in range(N + 1) if s + i <= N]
    index = {st: k for k, st in enumerate(states)}
    rows, cols, vals = [], [], []
    for (s, i), k in index.items():
        for (s2, i2), rate in (((s - 1, i + 1), beta * s * i / N), ((s, i - 1), gamma * i)):
            if rate > 0:
                rows += [k, k]
                cols += [index[(s2, i2)], k]
                vals += [rate, -rate]
    Q = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(len(states),) * 2)
    infected = np.array([i for _, i in states])
    p = np.zeros(len(states))
    p[index[(s0, i0)]] = 1.0
    total, t_prev = 0.0, 0.0
    for t, yt in zip(times, y, strict=True):
        p = scipy.sparse.linalg.expm_multiply(Q.T * (t - t_prev), p)
        p = p * stats.binom.pmf(yt, infected, sir.REPORTING)
        total += np.log(p.sum())
        p, t_prev = p / p.sum(), t
    return total


@pytest.mark.parametrize("beta, gamma", [(0.6, 0.25), (1.2, 0.4)])
def test_exact_log_likelihood_matches_sparse_expm(beta, gamma):
    got = float(sir.exact_log_likelihood(beta, gamma, TIMES, Y))
    ref = _reference_log_likelihood(beta, gamma, TIMES, Y)
    np.testing.assert_allclose(got, ref, rtol=2e-4)


def test_particle_filter_model_is_unbiased_for_the_likelihood():
    # the bootstrap filter's estimate of the likelihood (not its log) is unbiased: the mean
    # of exp(log-estimate) over independent runs matches the exact value within its MC error
    beta, gamma = 0.6, 0.25
    exact = _reference_log_likelihood(beta, gamma, TIMES, Y)

    def one(key):
        seeded = handlers.seed(sir.model, key)
        model = handlers.substitute(seeded, data={"beta": beta, "gamma": gamma})
        return log_density(model, (TIMES, Y), {"num_particles": 200}, {})[0]

    est = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(0), 64)))
    pri = sir.prior()  # log_density also counts the priors of the substituted rates
    est = est - float(pri["beta"].log_prob(beta) + pri["gamma"].log_prob(gamma))
    ratio = np.exp(est - exact)
    se = ratio.std(ddof=1) / np.sqrt(len(ratio))
    assert np.all(np.isfinite(est))
    assert abs(ratio.mean() - 1.0) < 4 * se + 0.02, (ratio.mean(), se)


def test_model_requires_data():
    with pytest.raises(ValueError, match="y is required"):
        with handlers.seed(rng_seed=0):
            sir.model(TIMES)
