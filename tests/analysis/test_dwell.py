"""Dwell times and regions: a deterministic count-down toy with exact dwell times and
labels, and a random flip with a geometric dwell law (closed-form capped mean)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from probdyn.analysis import (
    DWELL_LABELS,
    classify_dwell,
    dwell_regions,
    dwell_times,
    region_means,
)


def _countdown(h, x):
    """h = (counter, confidence): the counter falls by one per step whatever the noise."""
    return jnp.stack([h[0] - 1.0, h[1]]) + 0.0 * x[0]


def _countdown_readout(h):
    return h[1] * jnp.stack([h[0], -h[0]])  # symbol 0 while counter > 0


def test_countdown_dwell_and_labels():
    # counter k - 0.5 changes sign at step k; confidence sets max_prob = sigmoid(2 c h0)
    states = np.array(
        [[0.5, 5.0], [1.5, 5.0], [4.5, 5.0], [8.5, 5.0], [9.5, 5.0], [20.5, 5.0], [20.5, 0.01]]
    )
    reg = dwell_regions(
        jax.random.PRNGKey(0),
        _countdown,
        _countdown_readout,
        states,
        noise_dim=1,
        num_samples=3,
        max_steps=15,
    )
    np.testing.assert_array_equal(reg.dwell_times, [1, 2, 5, 9, 10, 15, 15])
    np.testing.assert_array_equal(reg.censored, [0, 0, 0, 0, 0, 1, 1])
    assert [DWELL_LABELS[i] for i in reg.labels] == [
        "transition",
        "kick_zone",
        "kick_zone",
        "cluster",
        "cluster",
        "cluster",
        "unclassified",
    ]
    np.testing.assert_array_equal(reg.symbol, 0)
    np.testing.assert_allclose(reg.max_prob[-1], 1 / (1 + np.exp(-2 * 0.01 * 20.5)), rtol=1e-5)
    np.testing.assert_allclose(region_means(reg.dwell_times, reg.labels), [1, 3.5, 34 / 3, 15])


def test_geometric_dwell_matches_closed_form():
    """Flip the sign when x > c: dwell ~ Geometric(p), p = 1 - Phi(c / s), capped at M."""
    c, s, M = 1.0, 1.0, 6

    def flip(h, x):
        return jnp.where(x[0] > c, -h, h)

    def readout(h):
        return jnp.stack([h[0], -h[0]])

    p = norm.sf(c / s)
    expected = (1 - (1 - p) ** M) / p  # E[min(G, M)]
    states = np.tile([[1.0]], (64, 1))
    dwell, cens = dwell_times(
        jax.random.PRNGKey(1), flip, readout, states, 1, num_samples=32, max_steps=M
    )
    dwell, cens = np.asarray(dwell), np.asarray(cens)
    se = dwell.std(ddof=1) / np.sqrt(len(dwell))
    assert abs(dwell.mean() - expected) < 4 * se, (dwell.mean(), expected, se)
    se_c = cens.std(ddof=1) / np.sqrt(len(cens))
    assert abs(cens.mean() - (1 - p) ** M) < 4 * se_c


def test_classify_dwell_thresholds_are_inclusive_as_the_paper():
    lab = classify_dwell([1.99, 2.0, 8.0, 8.01, 8.01], [0.9, 0.9, 0.9, 0.81, 0.8])
    np.testing.assert_array_equal(lab, [0, 1, 1, 2, 3])


def test_invalid_inputs():
    with pytest.raises(ValueError, match="dwell and max_prob"):
        classify_dwell([1.0, 2.0], [0.5])
    with pytest.raises(ValueError, match="cluster_prob"):
        classify_dwell([1.0], [0.5], cluster_prob=1.5)
    with pytest.raises(ValueError, match="max_steps"):
        dwell_times(
            jax.random.PRNGKey(0), _countdown, _countdown_readout, np.ones((1, 2)), 1, max_steps=0
        )
    with pytest.raises(TypeError, match="readout_fn"):
        dwell_times(jax.random.PRNGKey(0), _countdown, None, np.ones((1, 2)), 1)
    with pytest.raises(ValueError, match="labels must be in"):
        region_means([1.0], [5])
