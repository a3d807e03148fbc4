"""Bad-input campaign over the public kernels and process distributions (issue 9).

Every case feeds one bad value to one public entry point, eagerly or under ``jit``, and
is classified as

- ``clear``: ``ValueError``/``TypeError`` whose message names the argument;
- ``flagged``: a result that cannot be mistaken for a valid one (NaN/inf, the
  ``overflow`` flag, -1 counts);
- ``obscure``: any other exception, or one that does not name the argument;
- ``silent``: a finite, plausible result.

The test asserts that every case is clear or flagged. Run this file as a script
(``python tests/test_fuzz_processes.py``) to print the counts per entry point; the table
in the report was made by running it against the code before and after the fixes.
"""

from __future__ import annotations

import collections
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from probdyn.kernels import ctmc as C
from probdyn.kernels import hmm as H
from probdyn.kernels import sde as S
from probdyn.kernels import ssa
from probdyn.processes import DiscreteHMM, LinearSDE, MarkovJumpProcess, PanelCTMC
from probdyn.processes.reaction import ReactionNetwork

KEY = jax.random.PRNGKey(0)
PI = np.array([0.5, 0.5], np.float32)
A2 = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
LL = np.zeros((4, 2), np.float32)
Q2 = np.array([[-1.0, 1.0], [2.0, -2.0]], np.float32)
BIRTH = ReactionNetwork.from_equations(["A -> 2 A"])
DEATH = ReactionNetwork.from_equations(["A -> 0"])
V_BIRTH = np.array([[1]])
R_BIRTH = np.array([[1]])
OU = S.SDE(drift=lambda t, y, p: -y, diffusion=lambda t, y, p: jnp.ones_like(y))
BLOW = S.SDE(drift=lambda t, y, p: y**3, diffusion=lambda t, y, p: jnp.ones_like(y))
INT_MAX = int(np.iinfo(np.int32).max)


def _leaves(out):
    return [np.asarray(x) for x in jax.tree.leaves(out)]


def nan(out):
    """Some float output is NaN or infinite."""
    return any(
        np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)) for x in _leaves(out)
    )


def flag(out):
    """The overflow flag (last field of a Path, or second of a tuple) is True."""
    return bool(np.asarray(out[-1]))


def neg1(out):
    """Counts of -1 mark an overflowed tau-leap path."""
    return bool(np.any(np.asarray(out[0] if isinstance(out, tuple) else out) == -1))


def hmm_jit(**bad):
    args = dict(initial_probs=PI, transition_matrix=A2, log_likelihoods=LL) | bad
    length = args.pop("length", None)
    if length is None:
        return jax.jit(H.hmm_log_likelihood)(**args)
    return jax.jit(lambda n, **a: H.hmm_log_likelihood(**a, length=n))(length, **args)


def mjp_log_prob(states):
    d = MarkovJumpProcess(Q2, PI, t_end=2.0, max_jumps=3)
    value = np.stack([np.array([0.0, 0.5, 1.0, np.inf]), np.asarray(states, float)], -1)
    return jax.jit(lambda v: d.log_prob(v))(value)


def panel(lengths, jit=True):
    times = np.tile(np.arange(4.0), (2, 1))
    obs = np.zeros((2, 4), np.int32)

    def f(ln):
        return PanelCTMC(Q2, times, lengths=ln, initial_probs=PI).log_prob(obs)

    return jax.jit(f)(jnp.asarray(lengths)) if jit else f(np.asarray(lengths))


def hmm_dist(validate=False, **kw):
    args = dict(initial_probs=PI, transition_matrix=A2, emission=dist.Poisson(np.array([1.0, 5.0])))
    return DiscreteHMM(**(args | kw), validate_args=validate)


def gillespie(x0=(10,), rates=(1.0,), jit=False, max_jumps=5):
    if jit:  # one compiled program for every jitted case
        return _gillespie_jit(jnp.asarray(rates, jnp.float32))
    return ssa.gillespie(KEY, x0, 1.0, V_BIRTH, rates, reactants=R_BIRTH, max_jumps=max_jumps)


_gillespie_jit = jax.jit(
    lambda r: ssa.gillespie(KEY, (10,), 1.0, V_BIRTH, r, reactants=R_BIRTH, max_jumps=5)
)
_tau_leap_jit = jax.jit(
    lambda t, r: ssa.tau_leap(KEY, (10,), (1.0, 2.0), V_BIRTH, r, reactants=R_BIRTH, tau=t)
)


def tau_leap(tau=0.1, rates=(1.0,), x0=(10,), times=(1.0, 2.0), jit=False):
    if jit:
        return _tau_leap_jit(jnp.float32(tau), jnp.asarray(rates, jnp.float32))
    return ssa.tau_leap(KEY, x0, times, V_BIRTH, rates, reactants=R_BIRTH, tau=tau)


T64 = np.array([1000.0, 1000.000001, 1001.0])

# (entry point, argument named in the error, thunk, check for a returned result)
CASES = [
    # --- kernels.hmm, eager
    ("hmm_log_likelihood", "initial_probs", lambda: H.hmm_log_likelihood(PI[:1], A2, LL), nan),
    ("hmm_log_likelihood", "transition_matrix", lambda: H.hmm_log_likelihood(PI, A2[:1], LL), nan),
    ("hmm_log_likelihood", "log_likelihoods", lambda: H.hmm_log_likelihood(PI, A2, LL[0]), nan),
    ("hmm_log_likelihood", "length", lambda: H.hmm_log_likelihood(PI, A2, LL, length=-3), nan),
    ("hmm_log_likelihood", "length", lambda: H.hmm_log_likelihood(PI, A2, LL, length=9), nan),
    ("hmm_log_likelihood", "robust", lambda: H.hmm_log_likelihood(PI, A2, LL, robust="y"), nan),
    # --- kernels.hmm under jit
    ("hmm_log_likelihood", "-", lambda: hmm_jit(transition_matrix=A2 * np.nan), nan),
    ("hmm_log_likelihood", "-", lambda: hmm_jit(transition_matrix=A2 - 0.15), nan),
    ("hmm_log_likelihood", "-", lambda: hmm_jit(initial_probs=PI * np.nan), nan),
    ("hmm_log_likelihood", "-", lambda: hmm_jit(length=-3), nan),
    ("hmm_log_likelihood", "-", lambda: hmm_jit(length=40), nan),
    (
        "hmm_smoother",
        "-",
        lambda: jax.jit(H.hmm_smoother)(PI, A2 * np.nan, LL).smoothed_probs,
        nan,
    ),
    ("hmm_sample_states", "num_timesteps", lambda: H.hmm_sample_states(KEY, PI, A2, 2.7), nan),
    ("hmm_sample_states", "num_timesteps", lambda: H.hmm_sample_states(KEY, PI, A2, "6"), nan),
    # --- kernels.ctmc
    (
        "ctmc.path_log_likelihood",
        "states",
        lambda: C.path_log_likelihood(Q2, PI, [0, 5, 0], [0.0, 0.5, 1.0], 2.0, 2),
        nan,
    ),
    (
        "ctmc.path_log_likelihood",
        "-",
        lambda: jax.jit(C.path_log_likelihood)(
            Q2, PI, jnp.array([0, 5, 0]), jnp.array([0.0, 0.5, 1.0]), 2.0, 2
        ),
        nan,
    ),
    (
        "ctmc.path_log_likelihood",
        "-",
        lambda: jax.jit(C.path_log_likelihood)(
            Q2, PI, jnp.array([0, 1, 0]), jnp.array([0.0, 0.5, 1.0]), 2.0, -1
        ),
        nan,
    ),
    # --- kernels.ssa, eager
    ("gillespie", "rates", lambda: gillespie(rates=(np.inf,)), flag),
    ("gillespie", "rates", lambda: gillespie(rates=(np.nan,)), flag),
    ("gillespie", "rates", lambda: gillespie(rates=(-1.0,)), flag),
    ("gillespie", "x0", lambda: gillespie(x0=(-3,)), flag),
    ("gillespie", "x0", lambda: gillespie(x0=(2.5,)), flag),
    ("gillespie", "max_jumps", lambda: gillespie(max_jumps=2.7), flag),
    (
        "gillespie",
        "stoichiometry",
        lambda: ssa.gillespie(KEY, [1], 1.0, [[2**40]], [1.0], reactants=R_BIRTH, max_jumps=5),
        flag,
    ),  # fmt: skip
    ("gillespie", "-", lambda: gillespie(x0=(INT_MAX - 4,)), flag),
    # --- kernels.ssa under jit
    ("gillespie", "-", lambda: gillespie(rates=(np.nan,), jit=True), flag),
    ("gillespie", "-", lambda: gillespie(rates=(-1.0,), jit=True), flag),
    ("tau_leap", "tau", lambda: tau_leap(tau=-0.1), neg1),
    ("tau_leap", "tau", lambda: tau_leap(tau=0.0), neg1),
    ("tau_leap", "times", lambda: tau_leap(times=("1", "2")), neg1),
    ("tau_leap", "times", lambda: tau_leap(times=T64), neg1),
    ("tau_leap", "-", lambda: tau_leap(tau=-0.1, jit=True), neg1),
    ("tau_leap", "-", lambda: tau_leap(rates=(np.nan,), jit=True), neg1),
    ("tau_leap", "-", lambda: tau_leap(rates=(-1.0,), jit=True), neg1),
    (
        "tau_leap",
        "-",
        lambda: tau_leap(tau=0.01, rates=(10.0,), x0=(1,), times=(1.0, 2.0, 3.0)),
        neg1,
    ),
    (
        "gillespie_at",
        "times",
        lambda: ssa.gillespie_at(KEY, [5], T64, V_BIRTH, [1.0], reactants=R_BIRTH, max_jumps=9),
        flag,
    ),
    (
        "gillespie_at",
        "-",
        lambda: jax.jit(
            lambda r: ssa.gillespie_at(
                KEY, [5], [0.5, 1.0], V_BIRTH, r, reactants=R_BIRTH, max_jumps=9
            )
        )(jnp.array([jnp.nan])),
        flag,
    ),
    # --- kernels.sde
    (
        "sde.simulate",
        "times",
        lambda: S.simulate(KEY, OU, jnp.zeros(1), [0.0, 0.0, 1.0], None),
        nan,
    ),
    (
        "sde.simulate",
        "substeps",
        lambda: S.simulate(KEY, OU, jnp.zeros(1), [0.0, 1.0], None, substeps=0),
        nan,
    ),  # fmt: skip
    (
        "sde.simulate",
        "-",
        lambda: S.simulate(KEY, BLOW, jnp.full(1, 2.0), jnp.linspace(0, 2, 21), None),
        nan,
    ),  # fmt: skip
    # --- processes.DiscreteHMM
    ("DiscreteHMM", "num_timesteps", lambda: hmm_dist(num_timesteps=2.7), nan),
    ("DiscreteHMM", "num_timesteps", lambda: hmm_dist(num_timesteps="6"), nan),
    ("DiscreteHMM", "num_timesteps", lambda: hmm_dist(num_timesteps=0), nan),
    ("DiscreteHMM", "initial_probs", lambda: hmm_dist(initial_probs=PI.astype(complex)), nan),
    ("DiscreteHMM", "emission", lambda: hmm_dist(emission=dist.Poisson(1.0)), nan),
    ("DiscreteHMM", "length", lambda: hmm_dist(lengths=-3).log_prob(np.zeros(4)), nan),
    (
        "DiscreteHMM",
        "-",
        lambda: jax.jit(lambda n: hmm_dist(lengths=n).log_prob(np.zeros(4)))(-3),
        nan,
    ),
    (
        "DiscreteHMM",
        "value",
        lambda: hmm_dist(True).log_prob(np.array([0.0, np.nan, 1.0, 2.0])),
        nan,
    ),
    ("DiscreteHMM", "value", lambda: hmm_dist(True).log_prob(np.array([0.0, -1, 1, 2])), nan),
    ("DiscreteHMM", "value", lambda: hmm_dist(True).log_prob(np.array([0.0, 0.5, 1, 2])), nan),
    # --- processes.MarkovJumpProcess / PanelCTMC
    ("MarkovJumpProcess", "-", lambda: mjp_log_prob([0, 5, 0, 0]), nan),
    ("PanelCTMC", "lengths", lambda: panel([4, 0], jit=False), nan),
    ("PanelCTMC", "-", lambda: panel([4, 0]), nan),
    ("PanelCTMC", "-", lambda: panel([4, 7]), nan),
    # --- processes.ReactionNetwork
    (
        "ReactionNetwork.from_equations",
        "species",
        lambda: ReactionNetwork.from_equations(["A -> B"], species=["A", "A", "B"]),
        nan,
    ),
    (
        "ReactionNetwork.from_equations",
        "equations",
        lambda: ReactionNetwork.from_equations(["99999999999999999999999 A -> B"]),
        nan,
    ),
    ("ReactionNetwork.tau_leap", "times", lambda: DEATH.tau_leap(KEY, [5], T64, [1.0], 0.1), neg1),
    (
        "ReactionNetwork.tau_leap",
        "rates",
        lambda: DEATH.tau_leap(KEY, [5], [1.0], ["a"], 0.1),
        neg1,
    ),
    (
        "ReactionNetwork.chemical_langevin",
        "-",
        lambda: BIRTH.chemical_langevin(KEY, [1.0], [1.0, 5.0, 10.0], [20.0], dt=0.01),
        nan,
    ),
    # --- processes.LinearSDE
    ("LinearSDE.ou", "theta", lambda: LinearSDE.ou(-0.5, 0.0, 1.0, np.arange(4.0), 0.1), nan),
    ("LinearSDE.ou", "obs_scale", lambda: LinearSDE.ou(0.5, 0.0, 1.0, np.arange(4.0), -1.0), nan),
]


def classify(name, thunk, check):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = thunk()
    except (ValueError, TypeError) as err:
        return "clear" if name == "-" or name in str(err) else "obscure", repr(err)[:160]
    except Exception as err:  # noqa: BLE001 - the campaign counts every failure mode
        return "obscure", repr(err)[:160]
    try:
        ok = check(out)
    except Exception as err:  # noqa: BLE001
        return "obscure", f"unexpected output: {err!r}"[:160]
    return ("flagged" if ok else "silent"), str(jax.tree.map(np.asarray, out))[:160]


def counts():
    table = collections.defaultdict(collections.Counter)
    for entry, name, thunk, check in CASES:
        kind, detail = classify(name, thunk, check)
        table[entry][kind] += 1
        if "-v" in sys.argv and kind in ("obscure", "silent"):
            print(f"  {kind:8s} {entry} ({name}): {detail}")
    return table


@pytest.mark.parametrize(
    "entry,name,thunk,check", CASES, ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)]
)
def test_bad_input_is_refused_or_flagged(entry, name, thunk, check):
    kind, detail = classify(name, thunk, check)
    assert kind in ("clear", "flagged"), f"{entry} ({name}): {kind}: {detail}"


if __name__ == "__main__":  # the campaign table
    table = counts()
    kinds = ["clear", "flagged", "obscure", "silent"]
    print(f"{'entry point':36s} " + " ".join(f"{k:>8s}" for k in kinds))
    total = collections.Counter()
    for entry, c in table.items():
        total.update(c)
        print(f"{entry:36s} " + " ".join(f"{c[k]:8d}" for k in kinds))
    print(
        f"{'total (' + str(len(CASES)) + ' inputs)':36s} "
        + " ".join(f"{total[k]:8d}" for k in kinds)
    )
    sys.exit(0)
