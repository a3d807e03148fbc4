"""The one-call analysis on a small contracting ReLU RNN: consistent pieces, figures,
JSON-ready metrics."""

import json

import jax
import numpy as np
import pytest

from probdyn.analysis import analyse_dynamics, analysis_metrics


@pytest.mark.slow
def test_analyse_dynamics_end_to_end(relu_rnn, tmp_path):
    res = analyse_dynamics(
        jax.random.PRNGKey(0),
        relu_rnn.step,
        relu_rnn.readout,
        hidden_size=8,
        noise_dim=3,
        num_timesteps=200,
        burn_in=20,
        num_starts=10,
        relaxation_steps=200,
        optimiser_steps=300,
        noise_variances=(0.5, 1.0),
        num_trajectories=4,
        sweep_timesteps=50,
        num_dwell_states=20,
        dwell_samples=4,
        dwell_max_steps=10,
        num_kick_units=2,
        out_dir=tmp_path,
    )
    m = analysis_metrics(res)
    json.dumps(m)
    # a contraction: one fixed point, the same both ways, stable
    assert m["fixed_points"]["count"] == 1
    assert m["fixed_points"]["distance_to_relaxed"][0] < 1e-4
    assert m["relaxation"]["spread"] < 1e-4 and m["relaxation"]["stability"] == "stable"
    # mu = 1 is the unmodified network for either group (same random numbers)
    assert m["kick"]["rate_kick"][1] == m["kick"]["rate_control"][1]
    assert not set(m["kick"]["units"]) & set(m["kick"]["control_units"])
    assert sum(m["dwell"]["counts"]) == 20
    assert res.states.shape == (200, 8) and res.emission.shape == (200, 3)
    assert len(res.figures) == 6 + bool(res.spread) and all(
        p.stat().st_size > 0 for p in res.figures
    )
    np.testing.assert_allclose(res.emission.sum(-1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_analyse_dynamics_without_switches(relu_rnn, tmp_path):
    """A readout that always prefers symbol 0: no kick analysis, the rest still runs."""
    import jax.numpy as jnp

    res = analyse_dynamics(
        jax.random.PRNGKey(1),
        relu_rnn.step,
        lambda h: jnp.array([5.0, 0.0, 0.0]) + 0.0 * h[:3],
        hidden_size=8,
        noise_dim=3,
        num_timesteps=60,
        num_starts=8,
        relaxation_steps=50,
        optimiser_steps=30,
        noise_variances=(0.5, 1.0),
        num_trajectories=2,
        sweep_timesteps=30,
        num_dwell_states=10,
        dwell_samples=4,
        dwell_max_steps=10,
        num_kick_units=2,
        out_dir=tmp_path,
    )
    m = analysis_metrics(res)
    json.dumps(m)
    assert res.kick_scores is None and m["kick"]["skipped"] and m["kick"]["units"] == []
    assert m["kick"]["rate_kick"] == [None, None, None] and m["kick"]["mus"] == [0.0, 1.0, 2.0]
    assert m["noise"]["rate"] == [0.0, 0.0, 0.0]
    assert m["dwell"]["counts"][2] == 10  # never leaves a confident symbol 0: clusters
    assert not any(p.name == "ablation.png" for p in res.figures)
