"""Kick neurons: AUC against brute-force pair counting, a planted kick unit, ablation at
mu = 1 is the identity, switching rates of a random flip against the closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from probdyn.analysis import (
    ablation_sweep,
    kick_neuron_scores,
    noise_sensitivity,
    scale_units,
    switch_times,
    switching_rate,
    trajectory_spread,
)


def test_switch_times():
    np.testing.assert_array_equal(switch_times([0, 0, 1, 1, 1, 2, 0]), [2, 5, 6])
    assert switch_times([3, 3, 3]).size == 0


def test_planted_kick_unit_and_auc_brute_force():
    rng = np.random.default_rng(0)
    T, H, W = 400, 4, 3
    sym = np.zeros(T, int)
    switches = np.arange(20, T, 40)
    for k, t in enumerate(switches):
        sym[t:] = (k + 1) % 2
    states = rng.normal(size=(T, H))
    for t in switches:
        states[t - W : t, 0] += 3.0  # unit 0 fires before every switch
    states[:, 2] = np.round(states[:, 2])  # ties
    sc = kick_neuron_scores(states, sym, window=W)
    assert sc.num_pre == W * len(switches) and sc.num_baseline == T - W * len(switches)
    assert sc.ranking[0] == 0 and sc.auc[0] > 0.95 and sc.effect[0] > 2
    assert np.all(np.abs(sc.auc[1:] - 0.5) < 0.2)
    pre = np.zeros(T, bool)
    for t in switches:
        pre[t - W : t] = True
    for j in range(H):  # brute force: P(pre > base) + P(tie) / 2 over all pairs
        a, b = states[pre, j][:, None], states[~pre, j][None, :]
        np.testing.assert_allclose(sc.auc[j], np.mean((a > b) + 0.5 * (a == b)))
    # only switches into symbol 1: half the windows, the others drop out of the baseline
    sc1 = kick_neuron_scores(states[None], sym[None], window=W, to_symbol=1)
    assert sc1.num_pre == W * len(switches[::2]) and sc1.num_baseline == sc.num_baseline


def test_scale_units_identity_and_ablation(relu_rnn):
    rng = np.random.default_rng(0)
    h = jnp.asarray(rng.normal(size=8), jnp.float32)
    x = jnp.asarray(rng.normal(size=3), jnp.float32)
    ref = np.asarray(relu_rnn.step(h, x))
    a, b, c = (int(i) for i in np.flatnonzero(ref > 0)[:3])  # active units
    np.testing.assert_array_equal(scale_units(relu_rnn.step, [a, b], 1.0)(h, x), ref)
    off = np.asarray(scale_units(relu_rnn.step, [a, b], 0.0)(h, x))
    np.testing.assert_array_equal(off[[a, b]], 0.0)
    np.testing.assert_array_equal(np.delete(off, [a, b]), np.delete(ref, [a, b]))
    double = np.asarray(scale_units(relu_rnn.step, [c], 2.0)(h, x))
    np.testing.assert_allclose(double, np.where(np.arange(8) == c, 2 * ref, ref), rtol=1e-6)
    with pytest.raises(TypeError, match="units"):
        scale_units(relu_rnn.step, [0.5], 1.0)
    with pytest.raises(ValueError, match="mu"):
        scale_units(relu_rnn.step, [0], -1.0)


def test_ablation_at_one_equals_unmodified_rate(relu_rnn):
    h0 = jnp.zeros((8, 8))
    key = jax.random.PRNGKey(3)
    sweep = ablation_sweep(
        key,
        relu_rnn.step,
        relu_rnn.readout,
        h0,
        3,
        [0, 1],
        mus=(0.0, 1.0),
        num_timesteps=100,
        burn_in=5,
    )
    ref = switching_rate(key, relu_rnn.step, relu_rnn.readout, h0, 3, num_timesteps=100, burn_in=5)
    np.testing.assert_array_equal(sweep.per_trajectory[1], ref.per_trajectory[0])
    assert sweep.rate[1] > 0


def _flip(h, x):
    return jnp.where(x[0] > 1.0, -h, h)


def _readout(h):
    return jnp.stack([h[0], -h[0]])


def test_switching_rates_of_random_flip_match_closed_form():
    """P(switch per step) = P(gamma x > 1) = 1 - Phi(1 / gamma); 0 at gamma = 0."""
    h0 = np.ones((32, 1))
    gammas = np.array([0.0, 0.5, 1.0])
    sweep = noise_sensitivity(
        jax.random.PRNGKey(4), _flip, _readout, h0, 1, gammas, num_timesteps=400, burn_in=0
    )
    expected = np.array([0.0, norm.sf(2.0), norm.sf(1.0)])
    assert sweep.rate[0] == 0.0
    np.testing.assert_allclose(sweep.mean_norm, 1.0)  # |h| = 1 always
    z = (sweep.rate[1:] - expected[1:]) / sweep.rate_se[1:]
    assert np.all(np.abs(z) < 4), z
    # ablating the only unit at mu = 0 traps it at h = 0 (logits tie: argmax constant)
    abl = ablation_sweep(
        jax.random.PRNGKey(4),
        _flip,
        _readout,
        h0,
        1,
        [0],
        mus=(0.0, 1.0),
        num_timesteps=400,
        burn_in=0,
    )
    assert abl.rate[0] == 0.0 and abl.mean_norm[0] == 0.0
    assert abs(abl.rate[1] - expected[2]) < 4 * abl.rate_se[1]


def test_invalid_inputs():
    with pytest.raises(ValueError, match="symbol_seq"):
        kick_neuron_scores(np.zeros((5, 2)), np.zeros(4, int))
    with pytest.raises(ValueError, match="need samples"):
        kick_neuron_scores(np.zeros((5, 2)), np.zeros(5, int))
    with pytest.raises(ValueError, match="gammas"):
        noise_sensitivity(jax.random.PRNGKey(0), _flip, _readout, np.ones((2, 1)), 1, [-1.0])
    with pytest.raises(ValueError, match="mus"):
        ablation_sweep(jax.random.PRNGKey(0), _flip, _readout, np.ones((2, 1)), 1, [0], [-1.0])


def test_trajectory_spread_of_linear_map_matches_closed_form():
    """h' = A h + B x: the private part gamma eta gives covariance
    gamma^2 sum_{k<t} A^k B B' A'^k at step t (the shared part moves all alike)."""
    A = np.array([[0.9, -0.3], [0.3, 0.9]]) * 0.9
    B = np.array([[1.0, 0.0], [0.5, 0.5]])
    A32, B32 = jnp.asarray(A, jnp.float32), jnp.asarray(B, jnp.float32)
    gammas = np.array([0.0, 0.5, 1.0])
    spread = np.asarray(
        trajectory_spread(jax.random.PRNGKey(5), lambda h, x: A32 @ h + B32 @ x, np.ones(2), 2,
                          gammas, num_trajectories=2000, num_timesteps=4)
    )  # fmt: skip
    P, expected = np.zeros((2, 2)), [0.0]
    for _ in range(4):
        P = A @ P @ A.T + B @ B.T
        expected.append(np.trace(P))
    expected = gammas[:, None] ** 2 * np.array(expected)
    np.testing.assert_allclose(spread[0], 0.0, atol=1e-10)  # identical trajectories
    # sample trace of covariance: relative sd about sqrt(2 / n) per eigen-direction
    np.testing.assert_allclose(spread[1:, 1:], expected[1:, 1:], rtol=4 * np.sqrt(2 / 2000))
