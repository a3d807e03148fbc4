"""Tests for probdyn.kernels.network (the one Network type) and probdyn.kernels._checks.

References: the array-argument form of every reaction kernel (a Network must give the
same numbers, bit for bit, with the same key), falling factorials from ``math.perm`` for
mass action, and hand-written expectations for the checks.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probdyn.kernels import _checks, cle, cme, ssa
from probdyn.kernels.network import Network, as_network, mass_action_propensities
from probdyn.processes import ReactionNetwork

# birth + annihilation: 0 -> X, 2X -> 0
V = [[1], [-2]]
R = [[0], [2]]
RATES = jnp.array([3.0, 0.1])


@pytest.fixture(scope="module")
def net():
    return Network(V, reactants=R, species=["X"])


def test_network_is_frozen_hashable_and_normalised(net):
    other = Network(np.array(V), reactants=np.array(R, dtype=float), species=("X",))
    assert net == other and hash(net) == hash(other)
    assert net.stoichiometry == ((1,), (-2,)) and net.reactants == ((0,), (2,))
    assert (net.num_reactions, net.num_species, net.species) == (2, 1, ("X",))
    assert Network(V, reactants=R).species == ("X0",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        net.stoichiometry = ((0,),)


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"stoichiometry": [1, 2], "reactants": R}, ValueError, "stoichiometry must have shape"),
        ({"stoichiometry": V}, ValueError, "exactly one of reactants"),
        ({"stoichiometry": V, "reactants": [[0], [-1]]}, ValueError, "non-negative orders"),
        ({"stoichiometry": V, "reactants": [[0]]}, ValueError, "reactants must have 2 rows"),
        ({"stoichiometry": V, "propensity_fn": 3}, TypeError, "propensity_fn must be callable"),
        ({"stoichiometry": V, "reactants": R, "species": ["A", "B"]}, ValueError, "species"),
        ({"stoichiometry": [[0.5], [1]], "reactants": R}, ValueError, "must hold integers"),
    ],
)
def test_network_rejects_bad_structure(kwargs, err, match):
    with pytest.raises(err, match=match):
        Network(**kwargs)


def test_as_network_and_check_rates(net):
    assert as_network(net) is net
    assert as_network(V, R) == Network(V, reactants=R)
    rn = ReactionNetwork.from_equations(["0 -> X", "2 X -> 0"])
    assert as_network(rn) is rn.network and rn.network == net
    with pytest.raises(TypeError, match="belong to the Network"):
        as_network(net, R)
    with pytest.raises(ValueError, match=r"rates must have shape \(2,\)"):
        net.check_rates(jnp.ones(3))
    with pytest.raises(ValueError, match="non-negative and finite"):
        net.check_rates(jnp.array([1.0, -1.0]))
    with pytest.raises(TypeError, match="rates must be real"):
        net.check_rates(np.array(["a", "b"]))
    assert net.check_rates(jnp.array([1, 2])).dtype == jnp.float32


def test_mass_action_is_falling_factorial():
    reactants = np.array([[0, 0], [2, 1], [3, 0]])
    rates = np.array([0.5, 2.0, 0.25])
    for x in [(0, 0), (1, 4), (5, 2)]:
        want = [c * math.prod(math.perm(xs, r) for xs, r in zip(x, row, strict=True))
                for c, row in zip(rates, reactants, strict=True)]  # fmt: skip
        got = mass_action_propensities(jnp.array(x), rates, reactants)
        np.testing.assert_allclose(got, want, rtol=1e-6)
        net = Network(np.zeros_like(reactants), reactants=reactants)
        np.testing.assert_allclose(
            net.propensity(jnp.array(x, jnp.float32), rates), want, rtol=1e-6
        )


def test_kernels_give_the_same_numbers_with_a_network(net):
    key = jax.random.key(3)
    x0 = jnp.array([4])
    times = jnp.array([0.5, 1.0, 2.0])
    a = ssa.gillespie(key, x0, 2.0, V, RATES, reactants=R, max_jumps=64)
    b = ssa.gillespie(key, x0, 2.0, net, RATES, max_jumps=64)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(
        ssa.tau_leap(key, x0, times, V, RATES, reactants=R, tau=0.1),
        ssa.tau_leap(key, x0, times, net, RATES, tau=0.1),
    )
    np.testing.assert_array_equal(
        ssa.path_log_likelihood(a, V, RATES, reactants=R, t_end=2.0),
        ssa.path_log_likelihood(a, net, RATES, t_end=2.0),
    )
    p0 = jnp.zeros(16).at[4].set(1.0)
    np.testing.assert_array_equal(
        cme.cme_apply(p0, RATES, V, reactants=R, max_counts=(15,)),
        cme.cme_apply(p0, RATES, net, max_counts=(15,)),
    )


def test_cle_kernel_matches_the_reaction_network_method(net):
    """The kernel and ReactionNetwork.chemical_langevin draw the same path; its mean over
    many paths follows the linear-mean ODE of the birth-death CLE (closed form)."""
    key = jax.random.key(0)
    times = jnp.array([0.5, 1.0])
    rn = ReactionNetwork.from_equations(["0 -> X", "2 X -> 0"])
    np.testing.assert_array_equal(
        cle.chemical_langevin(key, jnp.array([5.0]), times, net, RATES, dt=0.05),
        rn.chemical_langevin(key, jnp.array([5.0]), times, RATES, dt=0.05),
    )
    # birth-death 0 -> X (k1), X -> 0 (k2 x): E X(t) = k1/k2 + (x0 - k1/k2) exp(-k2 t);
    # Euler with steps of 0.01 has weak error O(dt) ~ 1e-2 relative at this scale
    bd = Network([[1], [-1]], reactants=[[0], [1]])
    k1, k2, x0 = 20.0, 1.0, 5.0
    keys = jax.random.split(jax.random.key(1), 2000)
    run = jax.vmap(lambda k: cle.chemical_langevin(k, jnp.array([x0]), times, bd,
                                                   jnp.array([k1, k2]), dt=0.01))  # fmt: skip
    xs = np.asarray(run(keys))[..., 0]
    mean = k1 / k2 + (x0 - k1 / k2) * np.exp(-k2 * np.asarray(times))
    # variance of the CLE at t <= the stationary k1/k2 = 20: 5 standard errors
    se = np.sqrt(k1 / k2 / keys.shape[0])
    np.testing.assert_allclose(xs.mean(0), mean, atol=5 * se + 0.02 * mean.max())


def test_checks():
    assert _checks.concrete(None) is None
    seen = []
    jax.jit(lambda x: seen.append(_checks.concrete(x)) or x)(jnp.ones(2))
    assert seen == [None]
    np.testing.assert_array_equal(_checks.concrete([1, 2]), [1, 2])

    x = jnp.array([0.0, 2.0])
    np.testing.assert_allclose(_checks.safe_log(x), [-np.inf, np.log(2.0)], rtol=1e-6)
    g = jax.grad(lambda x: jnp.sum(jnp.where(x > 0, _checks.safe_log(x), 0.0)))(x)
    np.testing.assert_allclose(g, [0.0, 0.5])

    t = _checks.check_times("times", [0.0, 1.0], jnp.float32, ndim=1)
    assert t.dtype == jnp.float32
    for bad, match in [([1.0, 0.5], "strictly increasing"), ([0.0, np.nan], "finite"),
                       ([[0.0]], r"shape \(T,\)")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            _checks.check_times("times", bad, jnp.float32, ndim=1)
    with pytest.raises(ValueError, match="must not precede t0=1.0"):
        _checks.check_times("times", [0.5, 2.0], jnp.float32, ndim=1, t0=1.0)
    with pytest.raises(ValueError, match="once cast to float32"):
        _checks.check_times("times", np.array([1e8, 1e8 + 1]), jnp.float32, ndim=1)

    Q = np.array([[-1.0, 1.0], [2.0, -2.0]])
    _checks.check_generator(jnp.asarray(np.stack([Q, Q])))
    with pytest.raises(
        ValueError, match=r"off-diagonal rates must be >= 0; got generator\[1, 0, 1\]"
    ):
        _checks.check_generator(jnp.asarray(np.stack([Q, -Q])))
    with pytest.raises(ValueError, match="rows must sum to zero; row 0"):
        _checks.check_generator(jnp.asarray(Q + np.eye(2)))
    with pytest.raises(RuntimeError, match="jitted"):
        jax.jit(lambda q: _checks.check_generator(q, strict=True))(jnp.asarray(Q))
    _checks.check_probs(jnp.array([0.25, 0.75]), 2)
    with pytest.raises(ValueError, match="initial_probs must be a probability vector"):
        _checks.check_probs(jnp.array([0.5, 0.75]), 2)
    with pytest.raises(ValueError, match="K=3"):
        _checks.check_probs(jnp.array([0.5, 0.5]), 3)
