"""Benchmark: Markov jump processes against peers (Gillespie SSA, observed-CTMC likelihood).

Question
    (1) How many Gillespie events per second do ``probdyn.kernels.ssa.gillespie`` (full path
    stored) and ``gillespie_at`` (state at given times only) fire on the stochastic
    Lotka-Volterra network, for one path and for a ``vmap`` over many paths, next to
    jsmfsb's ``step_gillespie`` (JAX) and gillespy2's ``NumPySSASolver`` (pure Python)?
    (2) How fast are value and gradient (w.r.t. log-rates) of an observed-CTMC
    log-likelihood, ``transition_matrices(Q, dts)`` + ``hmm_log_likelihood``, next to the
    same likelihood built from a ``vmap`` of ``jax.scipy.linalg.expm`` over the gaps and
    dynamax's ``hmm_filter``; and does either return NaN on stiff generators?

Problem 1: stochastic Lotka-Volterra (Wilkinson 2018; jsmfsb ``models.lv()``)
    Prey birth X -> 2X (c1 = 1), predation X + Y -> 2Y (c2 = 0.005), predator death Y -> 0
    (c3 = 0.6), x0 = (50, 100), horizon t = 30: about 10,500 events per path on average.
    The event count is heavy-tailed: when the predators die out early, the prey grow like
    e^t (3 paths in 5,000 passed 200,000 events; jsmfsb would go on to its default hazard
    cap of 1e7). Every JAX contender therefore stops a path once its total hazard exceeds
    ``--hazard-cap`` (default 2e4, above the 1,200 median / 3,600 99th-percentile peak of
    paths that do not explode): jsmfsb through its own ``max_haz`` argument, ours through a
    ``propensity_fn`` that returns zero hazard above the cap (an absorbing state, which is
    what jsmfsb's bail-out amounts to). gillespy2 has no such switch (a capped custom
    propensity string costs it 75% more per event), so it runs plain mass action, one
    trajectory per call with its own seed, and a trajectory that runs past
    ``--gillespy2-timeout`` (a runaway one) is cut and left out of its events/s (the count
    is reported); its cost per event does not depend on the path.

Counting events
    Throughput is events fired per second of wall time. Ours: ``Path.num_jumps``;
    ``gillespie_at`` draws the same path as ``gillespie`` for the same key (documented), so
    its events are ``gillespie``'s count for the same keys (the final states are checked
    equal). jsmfsb and gillespy2 return states only: each model gets an extra "events"
    species produced by every reaction and absent from every hazard, which leaves the
    random draws, hence the path, unchanged. jsmfsb is timed without it and counted with
    it on the same keys (final states checked equal); gillespy2 is timed with it (one more
    entry in its state vector).

Problem 2: observed CTMC
    K states, generator with off-diagonal rates ``exp(log_rates)``: "moderate" rates
    log-uniform in [0.1, 10], "stiff" rates log-uniform in [1e-3, 1e3]. T = 10,000
    observation times with exponential gaps (mean 1), Gaussian emissions (state means
    0..K-1, unit scale); uniform initial distribution. Timed: ``value_and_grad`` with
    respect to the (K, K) log-rates of the log-likelihood (the generator, the transition
    matrices and the emission log-likelihoods are all built inside the timed function).
    Ours: ``transition_matrices(generator, dts)`` (default ``method="auto"``) then
    ``hmm_log_likelihood(pi, P, log_likelihoods)`` with time-varying P. Peer:
    ``jax.vmap(jax.scipy.linalg.expm)(generator * dts[:, None, None])`` then dynamax
    ``hmm_filter(pi, P, log_likelihoods).marginal_loglik``.

Timing
    Every JAX program is compiled ahead of time (``jit(f).lower(...).compile()``; that time
    is reported separately), called once, then timed ``--repeats`` times with
    ``block_until_ready``; tables show medians. Repeats are round robin over the
    contenders of a row, so the ratios come from interleaved measurements on the same
    load. Ratios are peer time / our time (> 1: ours faster).

Run ``python bench/mjp.py`` (full, ~5 min idle); ``--quick`` is a smoke test.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import platform
import statistics
import sys
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

# --------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------


def _block(x):
    return jax.block_until_ready(x)


def _compile(f, *args):
    """AOT-compile ``jax.jit(f)`` for ``args``; return (compiled, seconds)."""
    t0 = time.perf_counter()
    c = jax.jit(f).lower(*args).compile()
    return c, time.perf_counter() - t0


def _round_robin(calls, repeats):
    """Time each zero-argument call ``repeats`` times, interleaved; return lists of seconds."""
    out = {k: [] for k in calls}
    for _ in range(repeats):
        for k, f in calls.items():
            t0 = time.perf_counter()
            _block(f())
            out[k].append(time.perf_counter() - t0)
    return out


def _fmt_time(s):
    if s is None or not math.isfinite(s):
        return "-"
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def _fmt_rate(r):
    if r >= 1e6:
        return f"{r / 1e6:.2f} M/s"
    return f"{r / 1e3:.1f} k/s"


# --------------------------------------------------------------------------------------
# problem 1: Lotka-Volterra SSA
# --------------------------------------------------------------------------------------

LV_RATES = (1.0, 0.005, 0.6)
LV_X0 = (50, 100)
LV_STOICH = np.array([[1, 0], [-1, 1], [0, -1]])
LV_T_END = 30.0


def _lv_capped_propensity(cap):
    """Mass-action LV hazards, all zero (absorbing) once the total exceeds ``cap``."""

    def fn(x, rates):
        h = rates * jnp.stack([x[0], x[0] * x[1], x[1]])
        return jnp.where(jnp.sum(h) > cap, 0.0, h)

    return fn


def ours_lv(cap, max_jumps):
    """(path_fn, at_fn): one key -> Path / (final state, overflow), for ``vmap``."""
    from probdyn.kernels.ssa import gillespie, gillespie_at

    prop = _lv_capped_propensity(cap)
    rates = jnp.asarray(LV_RATES, jnp.float32)
    x0 = jnp.asarray(LV_X0, jnp.int32)
    times = jnp.asarray([LV_T_END], jnp.float32)

    def path_fn(key):
        return gillespie(
            key, x0, LV_T_END, LV_STOICH, rates, propensity_fn=prop, max_jumps=max_jumps
        )

    def at_fn(key):
        states, overflow = gillespie_at(
            key, x0, times, LV_STOICH, rates, propensity_fn=prop, max_jumps=10**8
        )
        return states[-1], overflow

    return path_fn, at_fn


def jsmfsb_lv(cap, count_events=False):
    """jsmfsb step function for the LV model: one key -> state at LV_T_END (float32)."""
    import jsmfsb

    c1, c2, c3 = LV_RATES
    pre, post = [[1, 0], [1, 1], [0, 1]], [[2, 0], [0, 2], [0, 0]]
    if count_events:  # a third species produced by every reaction, in no hazard
        pre, post = [r + [0] for r in pre], [r + [1] for r in post]
    spn = jsmfsb.Spn(
        ["Prey", "Predator", "Events"][: len(pre[0])],
        ["Prey rep", "Inter", "Pred death"],
        pre,
        post,
        lambda x, t: jnp.array([c1 * x[0], c2 * x[0] * x[1], c3 * x[1]]),
        list(LV_X0) + [0] * (len(pre[0]) - 2),
    )
    step = spn.step_gillespie(max_haz=cap)
    m = spn.m
    return lambda key: step(key, m, 0.0, LV_T_END)


def gillespy2_lv_model():
    """gillespy2 LV model (mass action) with an event-counting species."""
    import gillespy2

    m = gillespy2.Model(name="lv")
    names = ("c1", "c2", "c3")
    m.add_parameter(
        [gillespy2.Parameter(name=n, expression=v) for n, v in zip(names, LV_RATES, strict=True)]
    )
    species = (("prey", LV_X0[0]), ("pred", LV_X0[1]), ("events", 0))
    m.add_species([gillespy2.Species(name=n, initial_value=v, mode="discrete") for n, v in species])
    m.add_reaction(
        [
            gillespy2.Reaction(
                name="birth", reactants={"prey": 1}, products={"prey": 2, "events": 1}, rate="c1"
            ),
            gillespy2.Reaction(
                name="predation",
                reactants={"prey": 1, "pred": 1},
                products={"pred": 2, "events": 1},
                rate="c2",
            ),
            gillespy2.Reaction(
                name="death", reactants={"pred": 1}, products={"events": 1}, rate="c3"
            ),
        ]
    )
    m.timespan(np.array([0.0, LV_T_END]))
    return m


def run_gillespy2(num_paths, seed, timeout_s):
    """gillespy2's NumPy SSA, one trajectory per call (seeds ``seed + i``).

    Its N-trajectory run is itself a Python loop over trajectories, so calling it per
    trajectory costs the same per event; it lets a runaway trajectory (predators extinct
    early, prey exploding: gillespy2 has no hazard cap) be cut by gillespy2's own
    ``timeout`` and left out. Returns seconds and events of the completed trajectories.
    """
    import logging
    import warnings

    import gillespy2

    logging.getLogger("GillesPy2").setLevel(logging.ERROR)
    model = gillespy2_lv_model()
    secs, events, cut = 0.0, 0, 0
    for i in range(num_paths):
        solver = gillespy2.NumPySSASolver(model=model)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = solver.run(number_of_trajectories=1, seed=seed + i, timeout=timeout_s)
        dt = time.perf_counter() - t0
        if getattr(solver, "rc", 0) == 33:
            cut += 1
            continue
        secs += dt
        events += int(res[0]["events"][-1])
    if events == 0:
        return {"skipped": f"all {num_paths} trajectories timed out ({timeout_s} s)"}
    return {"s": secs, "events": events, "rate": events / secs, "cut": cut}


def bench_ssa(args):
    """Events/s for 1 path and a vmapped batch; returns a dict of results."""
    cap, M = args.hazard_cap, args.max_jumps
    path_fn, at_fn = ours_lv(cap, M)
    j_fn = jsmfsb_lv(cap)
    j_count = jax.jit(jax.vmap(jsmfsb_lv(cap, count_events=True)))
    res = {}
    for setting, B in (("1 path", 1), (f"{args.paths:,} paths (vmap)", args.paths)):
        print(f"  SSA {setting} ...", flush=True)
        row = {}
        # fixed keys: one set per repeat (1 path: a different path each repeat)
        reps = args.repeats if B == 1 else max(1, args.repeats // 2)
        keysets = [jax.random.split(jax.random.key(1000 * B + r), B) for r in range(reps + 1)]
        fns = {
            "ours_path": jax.vmap(path_fn) if B > 1 else lambda k: path_fn(k[0]),
            "ours_at": jax.vmap(at_fn) if B > 1 else lambda k: at_fn(k[0]),
            "jsmfsb": jax.vmap(j_fn) if B > 1 else lambda k: j_fn(k[0]),
        }
        compiled = {}
        for name, f in fns.items():
            compiled[name], row[f"{name}_compile_s"] = _compile(f, keysets[0])
            _block(compiled[name](keysets[0]))  # warm-up
        # event counts and consistency checks (not timed)
        ev = {"ours": [], "jsmfsb": []}
        for ks in keysets[1:]:
            p = compiled["ours_path"](ks)
            n = np.atleast_1d(np.asarray(p.num_jumps))
            if np.any(np.asarray(p.overflow)):
                print(f"  WARNING: {int(np.sum(p.overflow))} ours paths overflowed max_jumps={M}")
            final = np.asarray(p.states).reshape(-1, M + 1, 2)[np.arange(len(n)), n]
            at_final = np.asarray(compiled["ours_at"](ks)[0]).reshape(-1, 2)
            if not np.array_equal(final, at_final):
                print("  WARNING: gillespie and gillespie_at disagree on the same keys")
            ev["ours"].append(int(n.sum()))
            jc = np.asarray(j_count(ks)).reshape(-1, 3)
            jp = np.asarray(compiled["jsmfsb"](ks)).reshape(-1, 2)
            if not np.array_equal(jc[:, :2], jp):
                print("  WARNING: jsmfsb counting model drew different paths")
            ev["jsmfsb"].append(int(jc[:, 2].sum()))
        times = {k: [] for k in fns}
        cpu = {k: [] for k in fns}
        for ks in keysets[1:]:
            for k in fns:  # round robin: every contender once per key set
                t0, c0 = time.perf_counter(), time.process_time()
                _block(compiled[k](ks))
                times[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
        for k in fns:
            e = ev["jsmfsb" if k == "jsmfsb" else "ours"]
            rates = [n / s for n, s in zip(e, times[k], strict=True)]
            row[k] = {
                "median_s": statistics.median(times[k]),
                "events_per_path": statistics.mean(e) / B,
                "rate": statistics.median(rates),
                "rate_cpu": statistics.median(n / s for n, s in zip(e, cpu[k], strict=True)),
                "rates": rates,
            }
        # gillespy2: pure Python, one trajectory after the other
        n_g = 1 if B == 1 else args.gillespy2_paths
        if args.skip_gillespy2:
            row["gillespy2"] = {"skipped": "--skip-gillespy2"}
        else:
            print(f"  gillespy2 NumPySSASolver, {n_g} trajectories ...", flush=True)
            row["gillespy2"] = run_gillespy2(n_g, args.gillespy2_seed, args.gillespy2_timeout)
            if "events" in row["gillespy2"]:
                g = row["gillespy2"]
                g["paths"] = n_g - g["cut"]
                g["events_per_path"] = g["events"] / g["paths"]
        res[setting] = row
        print("   " + ", ".join(f"{k} {_fmt_rate(row[k]['rate'])}" for k in fns), flush=True)
    return res


SSA_COLS = (
    ("ours_path", "ours `gillespie` (path)"),
    ("ours_at", "ours `gillespie_at`"),
    ("jsmfsb", "jsmfsb `step_gillespie`"),
    ("gillespy2", "gillespy2 `NumPySSASolver`"),
)


def ssa_table(res, args):
    out = [
        f"\n**Gillespie events per second**, stochastic Lotka-Volterra to t = {LV_T_END:g}, "
        f"hazard cap {args.hazard_cap:g}; median over repeats (mean events per path)\n",
        "| setting | " + " | ".join(label for _, label in SSA_COLS) + " |",
        "|---|" + "---:|" * len(SSA_COLS),
    ]
    for setting, row in res.items():
        cells = []
        for k, _ in SSA_COLS:
            r = row[k]
            if "rate" not in r:
                cells.append(r.get("skipped", "-"))
                continue
            c = f"{_fmt_rate(r['rate'])} ({r['events_per_path']:,.0f})"
            if k == "gillespy2":
                c = c[:-1] + f", {r['paths']} traj." + (f", {r['cut']} cut)" if r["cut"] else ")")
            cells.append(c)
        out.append(f"| {setting} | " + " | ".join(cells) + " |")
    out += [
        "\n**ratios** (ours events/s / peer events/s; > 1: ours faster)\n",
        "| setting | path / jsmfsb | at / jsmfsb | path / gillespy2 | at / gillespy2 "
        "| path / jsmfsb (CPU time) | at / jsmfsb (CPU time) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for setting, row in res.items():
        cells = []
        for peer in ("jsmfsb", "gillespy2"):
            for ours in ("ours_path", "ours_at"):
                p = row[peer].get("rate")
                cells.append(f"{row[ours]['rate'] / p:.2f}×" if p else "-")
        for ours in ("ours_path", "ours_at"):
            cells.append(f"{row[ours]['rate_cpu'] / row['jsmfsb']['rate_cpu']:.2f}×")
        out.append(f"| {setting} | " + " | ".join(cells) + " |")
    out += [
        "\n**compile time** (trace + lower + compile), seconds\n",
        "| setting | ours path | ours at | jsmfsb |",
        "|---|---:|---:|---:|",
    ]
    for setting, row in res.items():
        c = [f"{row[f'{k}_compile_s']:.2f}" for k in ("ours_path", "ours_at", "jsmfsb")]
        out.append(f"| {setting} | " + " | ".join(c) + " |")
    return "\n".join(out)


def ssa_targets(res):
    lines = ["\n**SSA targets** (faster than jsmfsb in both settings; >= 20× gillespy2)\n"]
    for setting, row in res.items():
        for ours in ("ours_path", "ours_at"):
            r = row[ours]["rate"]
            j = row["jsmfsb"]["rate"]
            g = row["gillespy2"].get("rate")
            ok_j = "met" if r > j else "MISSED"
            msg = f"- {setting}, {ours}: {r / j:.2f}× jsmfsb ({ok_j})"
            if g:
                msg += f"; {r / g:.1f}× gillespy2 ({'met' if r >= 20 * g else 'MISSED'})"
            lines.append(msg)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# problem 2: observed CTMC log-likelihood and gradient
# --------------------------------------------------------------------------------------

RATE_RANGES = {"moderate": (0.1, 10.0), "stiff": (1e-3, 1e3)}


def make_ctmc_problem(K, T, kind, seed=0):
    """(log_rates (K, K), dts (T-1,), y (T,)) simulated from the CTMC with Gaussian noise."""
    import scipy.linalg

    rng = np.random.default_rng(seed + 7 * K + (0 if kind == "moderate" else 1))
    lo, hi = RATE_RANGES[kind]
    log_rates = rng.uniform(np.log(lo), np.log(hi), size=(K, K))
    R = np.exp(log_rates)
    np.fill_diagonal(R, 0.0)
    Q = R - np.diag(R.sum(1))
    dts = rng.exponential(1.0, size=T - 1)
    # simulate the chain exactly: P(dt) = V exp(L dt) V^{-1} from one eigendecomposition
    # (float64, clipped and renormalised; only used to make data)
    lam, V = scipy.linalg.eig(Q)
    Vi = np.linalg.inv(V)
    z = np.empty(T, dtype=np.int64)
    z[0] = rng.integers(K)
    for t, dt in enumerate(dts):
        row = np.real((V[z[t]] * np.exp(lam * dt)) @ Vi)
        row = np.maximum(row, 0.0)
        z[t + 1] = rng.choice(K, p=row / row.sum())
    y = z + rng.normal(size=T)
    return (
        jnp.asarray(log_rates, jnp.float32),
        jnp.asarray(dts, jnp.float32),
        jnp.asarray(y, jnp.float32),
    )


def _emission_ll(y, K):
    means = jnp.arange(K, dtype=y.dtype)
    return -0.5 * (y[:, None] - means) ** 2 - 0.5 * math.log(2 * math.pi)


def _generator(log_rates):
    R = jnp.exp(log_rates) * (1.0 - jnp.eye(log_rates.shape[0], dtype=log_rates.dtype))
    return R - jnp.diag(jnp.sum(R, axis=1))


def ours_ctmc_loglik(log_rates, dts, y):
    from probdyn.kernels.ctmc import transition_matrices
    from probdyn.kernels.hmm import hmm_log_likelihood

    K = log_rates.shape[0]
    P = transition_matrices(_generator(log_rates), dts)
    pi = jnp.full((K,), 1.0 / K, log_rates.dtype)
    return hmm_log_likelihood(pi, P, _emission_ll(y, K))


def peer_ctmc_loglik(log_rates, dts, y):
    from dynamax.hidden_markov_model import hmm_filter

    K = log_rates.shape[0]
    Q = _generator(log_rates)
    P = jax.vmap(jax.scipy.linalg.expm)(Q[None] * dts[:, None, None])
    pi = jnp.full((K,), 1.0 / K, log_rates.dtype)
    return hmm_filter(pi, P, _emission_ll(y, K)).marginal_loglik


CTMC_FNS = {"ours": ours_ctmc_loglik, "peer": peer_ctmc_loglik}


def bench_ctmc(args):
    res = {}
    for K in args.sizes:
        for kind in args.kinds:
            print(f"  CTMC K={K} {kind} T={args.T:,} ...", end=" ", flush=True)
            lr, dts, y = make_ctmc_problem(K, args.T, kind)
            row = {}
            calls = {}
            for name, fn in CTMC_FNS.items():
                vg = jax.value_and_grad(fn)
                c, row[f"{name}_compile_s"] = _compile(vg, lr, dts, y)
                v, g = _block(c(lr, dts, y))
                row[f"{name}_value"] = float(v)
                row[f"{name}_finite"] = bool(np.isfinite(v) and np.all(np.isfinite(g)))
                row[f"{name}_grad"] = np.asarray(g)
                calls[name] = partial(c, lr, dts, y)
            t0 = time.perf_counter()
            _block(calls["peer"]())  # second warm-up; its time caps the repeats of slow cells
            reps = max(1, min(args.repeats, math.ceil(args.cell_s / (time.perf_counter() - t0))))
            t = _round_robin(calls, reps)
            row["repeats"] = reps
            for name in calls:
                row[f"{name}_s"] = statistics.median(t[name])
                row[f"{name}_times"] = t[name]
            if args.f64_ref and K <= args.f64_ref_max_k:  # float64: the peer's, else ours
                jax.config.update("jax_enable_x64", True)
                try:
                    a64 = [jnp.asarray(np.asarray(a), jnp.float64) for a in (lr, dts, y)]
                    for name in ("peer", "ours"):
                        v, g = jax.jit(jax.value_and_grad(CTMC_FNS[name]))(*a64)
                        if np.isfinite(v) and np.all(np.isfinite(g)):
                            row["ref"], ref_v, ref_g = name, float(v), np.asarray(g)
                            break
                finally:
                    jax.config.update("jax_enable_x64", False)
                if "ref" in row:
                    scale = np.max(np.abs(ref_g))
                    for name in CTMC_FNS:
                        g = row.pop(f"{name}_grad")
                        row[f"{name}_value_err"] = abs(row[f"{name}_value"] - ref_v)
                        row[f"{name}_grad_err"] = float(np.max(np.abs(g - ref_g)) / scale)
            for name in CTMC_FNS:
                row.pop(f"{name}_grad", None)
            res[(K, kind)] = row
            print(
                f"ours {_fmt_time(row['ours_s'])}, peer {_fmt_time(row['peer_s'])}, "
                f"{row['peer_s'] / row['ours_s']:.2f}×",
                flush=True,
            )
    return res


def ctmc_table(res, args):
    out = [
        f"\n**observed CTMC value_and_grad** w.r.t. log-rates, T = {args.T:,} observations, "
        f"float32; median time (ratio = peer / ours; > 1: ours faster); grad error = max abs "
        f"error / max abs entry of the float64 gradient (the peer's in float64; ours where "
        f"the peer is not finite)\n",
        "| K | rates | ours | vmap(expm) + dynamax hmm_filter | ratio | log-lik ours / peer "
        "| NaN-free ours / peer | grad error ours / peer | compile ours / peer (s) |",
        "|---:|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for (K, kind), r in res.items():
        lo, hi = RATE_RANGES[kind]
        nan = f"{'yes' if r['ours_finite'] else 'NO'} / {'yes' if r['peer_finite'] else 'NO'}"
        gd = "-"
        if "ours_grad_err" in r:
            gd = f"{r['ours_grad_err']:.1e} / {r['peer_grad_err']:.1e}"
        out.append(
            f"| {K} | {kind} [{lo:g}, {hi:g}] | {_fmt_time(r['ours_s'])} | "
            f"{_fmt_time(r['peer_s'])} | {r['peer_s'] / r['ours_s']:.2f}× | "
            f"{r['ours_value']:.6g} / {r['peer_value']:.6g} | {nan} | {gd} | "
            f"{r['ours_compile_s']:.2f} / {r['peer_compile_s']:.2f} |"
        )
    return "\n".join(out)


def ctmc_targets(res):
    lines = ["\n**CTMC targets** (>= 5× vmap(expm) + hmm_filter; no NaN)\n"]
    worst = min(res.items(), key=lambda kv: kv[1]["peer_s"] / kv[1]["ours_s"])
    (K, kind), r = worst
    ratio = r["peer_s"] / r["ours_s"]
    lines.append(
        f"- speed: smallest ratio {ratio:.2f}× (K={K}, {kind}) — "
        + ("met" if ratio >= 5 else "MISSED")
    )
    nan_ours = [f"K={K} {k}" for (K, k), r in res.items() if not r["ours_finite"]]
    nan_peer = [f"K={K} {k}" for (K, k), r in res.items() if not r["peer_finite"]]
    lines.append(
        "- ours NaN-free: " + ("met" if not nan_ours else "MISSED at " + ", ".join(nan_ours))
    )
    lines.append("- peer non-finite at: " + (", ".join(nan_peer) if nan_peer else "none"))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def _versions():
    v = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("jax", "numpy", "jsmfsb", "gillespy2", "dynamax"):
        try:
            v[name] = importlib.import_module(name).__version__
        except (ImportError, AttributeError):
            try:
                from importlib.metadata import version

                v[name] = version(name)
            except Exception:  # noqa: BLE001
                v[name] = "not installed"
    return v | {"backend": jax.default_backend()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    p.add_argument("--repeats", type=int, help="timed calls per cell (default 5; quick 3)")
    p.add_argument("--paths", type=int, help="vmapped SSA paths (default 1000; quick 100)")
    p.add_argument("--max-jumps", type=int, default=50_000, help="gillespie path buffer")
    p.add_argument("--hazard-cap", type=float, default=2e4, help="stop a path above this h0")
    p.add_argument("--gillespy2-paths", type=int, help="trajectories (default 100; quick 3)")
    p.add_argument("--gillespy2-seed", type=int, default=1)
    p.add_argument("--gillespy2-timeout", type=int, default=10, help="per trajectory, s")
    p.add_argument("--skip-gillespy2", action="store_true")
    p.add_argument("--sizes", help="CTMC state counts, e.g. 3,10,50 (quick: 3,10)")
    p.add_argument("--kinds", default="moderate,stiff", help="CTMC rate ranges")
    p.add_argument("--T", type=int, help="CTMC observations (default 10000; quick 2000)")
    p.add_argument("--no-f64-ref", dest="f64_ref", action="store_false", help="skip the f64 check")
    p.add_argument("--f64-ref-max-k", type=int, default=10, help="f64 check only up to this K")
    p.add_argument("--cell-s", type=float, default=30.0, help="fewer CTMC repeats past this")
    p.add_argument("--skip-ssa", action="store_true")
    p.add_argument("--skip-ctmc", action="store_true")
    p.add_argument("--out", help="write all results as JSON here")
    args = p.parse_args(argv)
    q = args.quick
    args.repeats = args.repeats or (3 if q else 5)
    args.paths = args.paths or (100 if q else 1000)
    args.gillespy2_paths = args.gillespy2_paths or (3 if q else 100)
    args.sizes = [int(s) for s in (args.sizes or ("3,10" if q else "3,10,50")).split(",")]
    args.kinds = [k.strip() for k in args.kinds.split(",")]
    if set(args.kinds) - set(RATE_RANGES):
        p.error(f"--kinds must be among {list(RATE_RANGES)}; got {args.kinds}")
    args.T = args.T or (2000 if q else 10_000)

    jax.config.update("jax_platforms", "cpu")
    versions = _versions()
    print(f"# MJP benchmark {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), flush=True)
    report, payload = [], {"versions": versions, "argv": sys.argv[1:]}
    if not args.skip_ssa:
        ssa = bench_ssa(args)
        report += [ssa_table(ssa, args), ssa_targets(ssa)]
        payload["ssa"] = ssa
    if not args.skip_ctmc:
        ctmc = bench_ctmc(args)
        report += [ctmc_table(ctmc, args), ctmc_targets(ctmc)]
        payload["ctmc"] = {f"K={K},{kind}": r for (K, kind), r in ctmc.items()}
    print("\n".join(report))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(payload, fh, indent=1, default=float)
    return payload


if __name__ == "__main__":
    main()
