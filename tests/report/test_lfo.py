"""Leave-future-out cross-validation: PSIS-LFO and exact LFO against the closed form of a
conjugate model, and exact vs PSIS-LFO on a small HMM fitted with NUTS."""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy.stats import multivariate_normal, norm

from probdyn import DiscreteHMM
from probdyn.report import lfo, psis_lfo

# y_t ~ N(mu, 1) iid, mu ~ N(0, 1): p(mu | y_{0:i-1}) = N(m_i, v_i) with v_i = 1 / (1 + i),
# m_i = v_i * sum(y_{0:i-1}); p(y_{i:i+M-1} | y_{0:i-1}) = N(m_i 1, I + v_i 1 1^T).
T = 40
Y = np.random.default_rng(0).normal(0.8, 1.0, size=T)
S = 4000


def _posterior(i):
    v = 1.0 / (1.0 + i)
    return v * Y[:i].sum(), v


def _log_lik_fn(i):
    m, v = _posterior(i)
    mu = np.random.default_rng(100 + i).normal(m, np.sqrt(v), size=S)
    return norm.logpdf(Y[None, :], mu[:, None], 1.0)  # (S, T)


def _closed_form(L, M):
    out = []
    for i in range(L, T - M + 1):
        m, v = _posterior(i)
        cov = np.eye(M) + v * np.ones((M, M))
        out.append(multivariate_normal(np.full(M, m), cov).logpdf(Y[i : i + M]))
    return np.asarray(out)


@pytest.mark.parametrize("horizon", [1, 3])
def test_exact_and_psis_lfo_match_closed_form(horizon):
    L = 3
    ref = _closed_form(L, horizon)
    exact = psis_lfo(_log_lik_fn, T, min_history=L, horizon=horizon, exact=True)
    approx = psis_lfo(_log_lik_fn, T, min_history=L, horizon=horizon)
    n = T - horizon - L + 1
    assert exact.pointwise.shape == approx.pointwise.shape == (n,)
    np.testing.assert_array_equal(exact.history, np.arange(L, L + n))
    assert list(exact.refits) == list(range(L, L + n))
    assert np.all(np.isnan(exact.pareto_k))
    # Monte Carlo standard error of each log-mean-exp over S draws (delta method)
    se = []
    for i in exact.history:
        w = np.exp(_log_lik_fn(i)[:, i : i + horizon].sum(1))
        se.append(w.std() / w.mean() / np.sqrt(S))
    assert np.all(np.abs(exact.pointwise - ref) < 4 * np.asarray(se))
    # PSIS: the posterior narrows slowly (variance 1/(1+i)), so no refit is needed
    assert approx.refits[0] == L and len(approx.refits) < n / 4
    used = ~np.isnan(approx.pareto_k)
    assert used.sum() == n - len(approx.refits) and np.all(approx.pareto_k[used] <= 0.7)
    np.testing.assert_allclose(approx.pointwise, ref, atol=0.05)
    assert abs(approx.elpd - ref.sum()) < 0.1
    np.testing.assert_allclose(approx.se, np.sqrt(n * np.var(approx.pointwise)))
    assert len(approx.refit_seconds) == len(approx.refits)


def test_psis_lfo_threshold_controls_refits():
    few = psis_lfo(_log_lik_fn, T, min_history=3, k_threshold=5.0)
    many = psis_lfo(_log_lik_fn, T, min_history=3, k_threshold=-5.0)
    assert list(few.refits) == [3]
    assert len(many.refits) == T - 3  # every step refits: exact LFO


def test_psis_lfo_rejects_bad_arguments():
    with pytest.raises(ValueError, match="min_history"):
        psis_lfo(_log_lik_fn, T, min_history=T)
    with pytest.raises(TypeError, match="horizon"):
        psis_lfo(_log_lik_fn, T, min_history=3, horizon=1.5)
    with pytest.raises(ValueError, match="expected \\(num_draws, 40\\)"):
        psis_lfo(lambda i: np.zeros((5, T - 1)), T, min_history=3)


def hmm_model(y):
    mu = numpyro.sample("mu", dist.Normal(jnp.array([-1.0, 1.0]), 1.0).to_event(1))
    A = jnp.array([[0.9, 0.1], [0.1, 0.9]])
    numpyro.sample("y", DiscreteHMM(jnp.ones(2) / 2, A, dist.Normal(mu, 0.5)), obs=y)


def _hmm_data(n):
    truth = DiscreteHMM(
        jnp.ones(2) / 2,
        jnp.array([[0.9, 0.1], [0.1, 0.9]]),
        dist.Normal(jnp.array([-1.0, 1.0]), 0.5),
        num_timesteps=n,
    )
    import jax

    return truth.sample(jax.random.PRNGKey(0))


def test_lfo_rejects_bad_time_arg():
    y = _hmm_data(10)
    with pytest.raises(ValueError, match="time_arg"):
        lfo(hmm_model, y, min_history=5, time_arg=3)
    with pytest.raises(ValueError, match="time_arg"):
        lfo(hmm_model, y, min_history=5, time_arg="obs")
    with pytest.raises(TypeError, match="predictive"):
        lfo(hmm_model, y, min_history=5, predictive=True)


@pytest.mark.slow
def test_psis_lfo_agrees_with_exact_lfo_on_an_hmm():
    """T = 36, L = 24: exact LFO refits 12 times; PSIS-LFO needs far fewer fits."""
    y = _hmm_data(36)
    kw = {"num_chains": 1, "num_warmup": 300, "num_samples": 1000, "progress_bar": False}
    exact = lfo(hmm_model, y, min_history=24, exact=True, **kw)
    approx = lfo(hmm_model, y, min_history=24, **kw)
    assert len(exact.refits) == 12 and len(approx.refits) < 6
    # per-step MC error of both is ~0.02; the approximation adds < 0.05 per step here
    np.testing.assert_allclose(approx.pointwise, exact.pointwise, atol=0.1)
    assert abs(approx.elpd - exact.elpd) < 0.3
