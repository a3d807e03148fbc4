"""models.flashing_ratchet against numpy/scipy references computed from the rates alone."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from numpyro import handlers

from probdyn.models import flashing_ratchet as fr


def _reference_generator(V, r):
    """The generator written out from the model's definition, state k = 3 * eta + x."""
    Q = np.zeros((6, 6))
    for eta, x in itertools.product(range(2), range(3)):
        for y in ((x + 1) % 3, (x - 1) % 3):
            dU = (V * y / 2 - V * x / 2) if eta == 1 else 0.0
            Q[3 * eta + x, 3 * eta + y] = np.exp(-dU / 2)
        Q[3 * eta + x, 3 * (1 - eta) + x] = r
    np.fill_diagonal(Q, -Q.sum(1))
    return Q


def _stationary(Q):
    w, v = scipy.linalg.eig(Q.T)
    pi = np.real(v[:, np.argmin(np.abs(w))])
    return pi / pi.sum()


@pytest.mark.parametrize("V, r", [(2.0, 1.0), (0.5, 3.0), (4.0, 0.2)])
def test_generator_current_and_entropy_match_numpy(V, r):
    Q_ref = _reference_generator(V, r)
    Q = np.asarray(fr.generator(V, r), np.float64)
    np.testing.assert_allclose(Q, Q_ref, rtol=1e-6, atol=1e-6)
    pi = _stationary(Q_ref)
    # net forward flux over every bond of both rings, per period
    J = (
        sum(
            pi[3 * e + x] * Q_ref[3 * e + x, 3 * e + (x + 1) % 3]
            - pi[3 * e + (x + 1) % 3] * Q_ref[3 * e + (x + 1) % 3, 3 * e + x]
            for e in range(2)
            for x in range(3)
        )
        / 3
    )
    F = pi[:, None] * Q_ref
    S = sum(
        (F[i, j] - F[j, i]) * np.log(F[i, j] / F[j, i])
        for i in range(6)
        for j in range(i + 1, 6)
        if F[i, j] > 0
    )
    np.testing.assert_allclose(float(fr.ring_current(fr.generator(V, r))), J, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        float(fr.entropy_production(fr.generator(V, r))), S, rtol=1e-4, atol=1e-6
    )
    assert S > 0 and abs(J) > 1e-6  # switching breaks detailed balance: the motor runs


def test_no_potential_is_detailed_balance():
    Q = fr.generator(0.0, 1.0)
    assert abs(float(fr.ring_current(Q))) < 1e-6
    assert abs(float(fr.entropy_production(Q))) < 1e-6


def test_model_likelihood_matches_forward_algorithm_with_scipy_expm():
    times = np.array([0.0, 0.4, 1.5, 1.7, 3.0])
    sites = np.array([0, 1, 1, 2, 0])
    V, r = 2.0, 1.0
    with handlers.seed(rng_seed=0), handlers.substitute(data={"V": V, "r": r}):
        tr = handlers.trace(fr.model).get_trace(jnp.asarray(times), jnp.asarray(sites))
    got = float(tr["sites"]["fn"].log_prob(tr["sites"]["value"]))
    # forward algorithm started from the stationary distribution, every gap by scipy expm
    Q = _reference_generator(V, r)
    B = fr.observation_matrix()
    alpha = _stationary(Q) * B[:, sites[0]]
    for dt, s in zip(np.diff(times), sites[1:], strict=True):
        alpha = (alpha @ scipy.linalg.expm(Q * dt)) * B[:, s]
    np.testing.assert_allclose(got, np.log(alpha.sum()), rtol=1e-5)
    # simulation gives sites in {0, 1, 2} with the model's shape
    with handlers.seed(rng_seed=1), handlers.substitute(data={"V": V, "r": r}):
        sim = fr.model(jnp.asarray(times))
    assert sim.shape == (5,) and set(np.asarray(sim).tolist()) <= {0, 1, 2}
    assert jax.numpy.isfinite(got)
