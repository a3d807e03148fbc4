"""hidden_states group: per-draw smoothed marginals and Viterbi paths against brute force."""

import itertools

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import scipy.linalg
import scipy.stats

from probdyn import DiscreteHMM, ObservedCTMC, fit
from probdyn.report import add_hidden_states, hidden_state_sites, to_inference_data

Y = jnp.asarray([0.2, 2.7, 3.4, -0.4], jnp.float32)
TIMES = jnp.asarray([0.0, 0.3, 1.1, 1.5], jnp.float32)
PI = np.array([0.6, 0.4])


def hmm_model(y):
    stay = numpyro.sample("stay", dist.Beta(5.0, 1.0).expand([2]).to_event(1))
    A = jnp.stack([jnp.stack([stay[0], 1 - stay[0]]), jnp.stack([1 - stay[1], stay[1]])])
    mu = numpyro.sample("mu", dist.Normal(jnp.array([0.0, 3.0]), 1.0).to_event(1))
    numpyro.sample("y", DiscreteHMM(jnp.asarray(PI), A, dist.Normal(mu, 1.0)), obs=y)


def ctmc_model(times, y):
    k = numpyro.sample("k", dist.LogNormal(0.0, 0.5).expand([2]).to_event(1))
    Q = jnp.array([[-k[0], k[0]], [k[1], -k[1]]])
    em = dist.Normal(jnp.array([0.0, 3.0]), 1.0)
    numpyro.sample("y", ObservedCTMC(Q, jnp.asarray(PI), times, em), obs=y)


def brute_force(transition_matrices, means):
    """p(z_t | y) and the most probable path by enumerating all 2**T paths (float64)."""
    T = len(Y)
    y = np.asarray(Y, np.float64)
    ll = scipy.stats.norm(np.asarray(means, np.float64)[None, :], 1.0).logpdf(y[:, None])
    logp = {}
    for z in itertools.product(range(2), repeat=T):
        lp = np.log(PI[z[0]]) + ll[0, z[0]]
        for t in range(1, T):
            lp += np.log(transition_matrices[t - 1][z[t - 1], z[t]]) + ll[t, z[t]]
        logp[z] = lp
    paths = np.array(list(logp))
    w = np.exp(np.array(list(logp.values())) - max(logp.values()))
    w /= w.sum()
    marginals = np.stack([[w[paths[:, t] == k].sum() for k in range(2)] for t in range(T)])
    return marginals, paths[np.argmax(list(logp.values()))]


def posterior(**draws):
    return to_inference_data(
        draws, observed_data={"y": np.asarray(Y)}, dims={"y": ["time"]},
        coords={"time": np.asarray(TIMES)},
    )  # fmt: skip


def test_discrete_hmm_marginals_and_viterbi_match_enumeration():
    rng = np.random.default_rng(0)
    stay = rng.uniform(0.6, 0.95, size=(2, 3, 2)).astype(np.float32)
    mu = (np.array([0.0, 3.0]) + rng.normal(0, 0.3, size=(2, 3, 2))).astype(np.float32)
    idata = add_hidden_states(posterior(stay=stay, mu=mu), hmm_model, Y)
    probs = idata.hidden_states["y_probs"]
    assert probs.dims == ("chain", "draw", "time", "state")
    assert probs.shape == (2, 3, 4, 2)
    np.testing.assert_allclose(probs["time"].values, np.asarray(TIMES))
    assert idata.hidden_states["y_viterbi"].dims == ("chain", "draw", "time")
    for c, d in [(0, 0), (1, 2)]:
        s = stay[c, d]
        A = np.array([[s[0], 1 - s[0]], [1 - s[1], s[1]]], np.float64)
        ref, path = brute_force([A] * 3, mu[c, d])
        np.testing.assert_allclose(probs.values[c, d], ref, atol=2e-6)
        np.testing.assert_array_equal(idata.hidden_states["y_viterbi"].values[c, d], path)


def test_observed_ctmc_marginals_match_enumeration():
    k = np.array([[[0.7, 1.9], [2.5, 0.4]]], np.float32)  # (1 chain, 2 draws, 2)
    idata = add_hidden_states(posterior(k=k), ctmc_model, TIMES, Y, viterbi=False)
    assert set(idata.hidden_states.data_vars) == {"y_probs"}
    for d in range(2):
        Q = np.array([[-k[0, d, 0], k[0, d, 0]], [k[0, d, 1], -k[0, d, 1]]], np.float64)
        Ps = [scipy.linalg.expm(Q * dt) for dt in np.diff(np.asarray(TIMES, np.float64))]
        ref, _ = brute_force(Ps, [0.0, 3.0])
        np.testing.assert_allclose(idata.hidden_states["y_probs"].values[0, d], ref, atol=1e-5)


def test_sites_and_errors():
    assert hidden_state_sites(hmm_model, (Y,)) == ["y"]
    idata = posterior(stay=np.full((1, 1, 2), 0.9, np.float32), mu=np.zeros((1, 1, 2), np.float32))
    with pytest.raises(ValueError, match=r"sites=\['mu'\]"):
        add_hidden_states(idata, hmm_model, Y, sites=["mu"])
    with pytest.raises(ValueError, match="batch_size=0"):
        add_hidden_states(idata, hmm_model, Y, batch_size=0)


@pytest.mark.slow  # compiles an SVI run of the HMM (the group itself is tested above)
def test_fit_hidden_states_group():
    idata = fit(hmm_model, Y, method="svi", num_steps=20, num_chains=2, num_samples=3,
                hidden_states=True, dims={"y": ["time"]}, progress_bar=False)  # fmt: skip
    probs = idata.hidden_states["y_probs"].values
    assert probs.shape == (2, 3, 4, 2)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    # the group is computed at the stored draws: recompute one with the brute force
    s, m = idata.posterior["stay"].values[1, 2], idata.posterior["mu"].values[1, 2]
    A = np.array([[s[0], 1 - s[0]], [1 - s[1], s[1]]], np.float64)
    np.testing.assert_allclose(probs[1, 2], brute_force([A] * 3, m)[0], atol=2e-6)
