"""Benchmark: SDE path log-density (+ gradient) and path simulation, against peers.

Question
    (1) Is the Euler-Maruyama path log-density of ``probdyn`` (kernel
    ``probdyn.kernels.sde.path_log_prob`` and distribution ``probdyn.processes.sde.SDEPath``)
    at least as fast as NumPyro's ``EulerMaruyama`` distribution, for the value and for
    ``value_and_grad`` with respect to the drift and diffusion parameters, at T = 1,000 and
    10,000 (target >= 1x)? (2) Is simulating 1,000 paths x 1,000 Euler-Maruyama steps with
    ``probdyn.kernels.sde.simulate`` within 1.2x of a hand-written ``lax.scan``, and how does
    it compare with diffrax (``Euler``, constant step)?

Problem (float32, CPU)
    A double-well SDE with diagonal additive noise in D = 2 dimensions,

    .. math::

        dY = (a \\odot Y - b \\odot Y^3)\\,dt + \\operatorname{diag}(e^{s})\\,dW,

    parameters ``{"a": (D,), "b": (D,), "log_sigma": (D,)}``, Y(0) ~ N(0, I), a regular grid
    with dt = 0.01. (1): one path of T points simulated from the SDE; every contender builds
    its distribution from ``params`` inside the timed function, so gradients are with
    respect to the same parameters, and the value includes the N(0, I) density of Y(0).
    (2): paths start at y0 = (0.5, -0.5); N = 1,000 steps; every contender returns all
    states, shape (P, N + 1, D).

Contenders
    (1) ours kernel: ``path_log_prob(sde, path, times, params) + log N(path[0]; 0, I)``;
    ours SDEPath: ``SDEPath(sde, Normal(0, 1).expand([D]).to_event(1), times,
    params).log_prob(path)``; peer: ``numpyro.distributions.EulerMaruyama(times, sde_fn,
    Normal(0, 1).expand([D]).to_event(1)).log_prob(path)``.
    (2) ours: ``vmap(lambda k: simulate(k, sde, y0, times, params))(keys)``; ours SDEPath:
    ``SDEPath(sde, y0, times, params).sample(key, (P,))``; hand-written: ``vmap`` of
    (``random.normal(k, (N, D))`` then a ``lax.scan`` of the Euler-Maruyama step) with the
    same per-path keys as ours, so the paths agree to rounding; the same pair with the
    standard normals given (``simulate_from_noise`` vs the scan alone), isolating the
    integrator from the random-number generation; diffrax: ``diffeqsolve(MultiTerm(ODETerm,
    ControlTerm(diag, brownian)), Euler(), t0, t1, dt0=dt, saveat=SaveAt(t0=True,
    steps=True), max_steps=N)`` with ``brownian`` an ``UnsafeBrownianPath`` (fixed steps, no
    reverse-mode through the noise: diffrax's fastest fixed-step choice) and a
    ``VirtualBrownianTree`` (tol = dt / 2), ``vmap``-ed over the same keys.

Timing
    Every JAX program is compiled ahead of time (``jit(f).lower(...).compile()``; that time is
    reported separately), called once, then timed ``--repeats`` times with
    ``block_until_ready``. Repeats are rounds: each round calls every contender of a table once,
    so a ratio is the median over rounds of (one contender's time / another's) measured back
    to back on the same load; tables also show each contender's median time. A contender
    whose warm-up call times ``--repeats`` exceeds ``--budget-s`` (diffrax's
    VirtualBrownianTree) runs only ``max(3, budget / warm-up)`` rounds. Values
    (log-densities and gradients; paths from the same keys or noise; final-state means within
    5 Monte Carlo standard errors) are checked against ours in the same run.

Run ``python bench/sde.py`` (full, ~1.5 min); ``--quick`` is a smoke test (< 1 min).
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

import jax
import jax.numpy as jnp
import numpy as np

D = 2
DT = 0.01
Y0 = (0.5, -0.5)
FULL_T = (1_000, 10_000)
QUICK_T = (1_000,)
PARAMS = {
    "a": np.array([1.0, 0.8], np.float32),
    "b": np.array([1.0, 1.2], np.float32),
    "log_sigma": np.log(np.array([0.7, 0.5], np.float32)),
}

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


def _round_robin(calls, repeats, first_s=None, budget_s=math.inf):
    """Time each zero-argument call ``repeats`` times, interleaved; return lists of seconds.

    A call whose first (warm-up) time ``first_s[k]`` times ``repeats`` exceeds ``budget_s``
    is timed only ``max(3, budget_s / first_s[k])`` times (it drops out of later rounds).
    """
    first_s = first_s or {}
    count = {k: repeats for k in calls}
    for k, s in first_s.items():
        if s * repeats > budget_s:
            count[k] = max(3, int(budget_s / s))
    out = {k: [] for k in calls}
    for r in range(repeats):
        for k, f in calls.items():
            if r >= count[k]:
                continue
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


def _params():
    return {k: jnp.asarray(v) for k, v in PARAMS.items()}


def drift(t, y, p):
    return p["a"] * y - p["b"] * y**3


def diffusion(t, y, p):
    return jnp.exp(p["log_sigma"])


def _sde():
    from probdyn.kernels.sde import SDE

    return SDE(drift, diffusion, noise="diagonal")


def _grid(num_points):
    return jnp.arange(num_points, dtype=jnp.float32) * DT


# --------------------------------------------------------------------------------------
# (1) path log-density
# --------------------------------------------------------------------------------------


def make_path(T, seed=0):
    """One path (T, D) of the double-well SDE from Y(0) ~ N(0, I), Euler-Maruyama."""
    from probdyn.kernels.sde import simulate

    k0, k1 = jax.random.split(jax.random.PRNGKey(seed))
    y0 = jax.random.normal(k0, (D,))
    return simulate(k1, _sde(), y0, _grid(T), _params())


def density_fns(times):
    """name -> f(params, path) returning the path log-density (initial state included)."""
    import numpyro.distributions as dist

    from probdyn.kernels.sde import path_log_prob
    from probdyn.processes.sde import SDEPath

    sde = _sde()

    def init_dist():
        return dist.Normal(jnp.zeros(D), 1.0).to_event(1)

    def ours_kernel(params, path):
        lp0 = jnp.sum(jax.scipy.stats.norm.logpdf(path[0]))
        return path_log_prob(sde, path, times, params) + lp0

    def ours_dist(params, path):
        return SDEPath(sde, init_dist(), times, params).log_prob(path)

    def numpyro_em(params, path):
        def sde_fn(y, t):
            return drift(t, y, params), diffusion(t, y, params)

        return dist.EulerMaruyama(times, sde_fn, init_dist()).log_prob(path)

    return {"ours": ours_kernel, "ours_dist": ours_dist, "numpyro": numpyro_em}


DENSITY_LABELS = {
    "ours": "ours path_log_prob",
    "ours_dist": "ours SDEPath",
    "numpyro": "numpyro EulerMaruyama",
}


def bench_density(T, repeats):
    """Value and value_and_grad of each contender at one T; returns a result dict."""
    times, path, params = _grid(T), make_path(T), _params()
    fns = density_fns(times)
    res = {}
    for kind in ("value", "grad"):
        calls, row = {}, {}
        for name, f in fns.items():
            g = f if kind == "value" else jax.value_and_grad(f)
            compiled, compile_s = _compile(g, params, path)
            out = _block(compiled(params, path))
            calls[name] = (lambda c: lambda: c(params, path))(compiled)
            row[name] = {"compile_s": compile_s, "out": out}
        timings = _round_robin(calls, repeats)
        for name, ts in timings.items():
            row[name].update(median_s=statistics.median(ts), min_s=min(ts), times=ts)
        _check_density(T, kind, row)
        for r in row.values():
            out = r.pop("out")
            r["loglik"] = float(out[0] if kind == "grad" else out)
        res[kind] = row
        print(
            f"  T={T:>6} {kind:<5} "
            + "  ".join(f"{n}={_fmt_time(r['median_s'])}" for n, r in row.items()),
            flush=True,
        )
    return res


def _check_density(T, kind, row):
    ref = row["ours"]["out"]
    for name, r in row.items():
        ok = jax.tree.all(
            jax.tree.map(lambda a, b: bool(np.allclose(a, b, rtol=1e-3, atol=1e-2)), r["out"], ref)
        )
        if not ok:
            print(f"  WARNING T={T} {kind}: {name} disagrees with ours: {r['out']} vs {ref}")
        r["agrees"] = ok


# --------------------------------------------------------------------------------------
# (2) simulation
# --------------------------------------------------------------------------------------


def simulation_fns(num_paths, num_steps):
    """name -> f(keys (P, 2), params) or f(z (P, N, D), params) returning paths (P, N+1, D)."""
    from probdyn.kernels.sde import simulate, simulate_from_noise
    from probdyn.processes.sde import SDEPath

    sde, times = _sde(), _grid(num_steps + 1)
    y0 = jnp.asarray(Y0, jnp.float32)
    dts = jnp.diff(times)

    def ours(keys, params):
        return jax.vmap(lambda k: simulate(k, sde, y0, times, params))(keys)

    def ours_dist(key, params):
        return SDEPath(sde, y0, times, params).sample(key, (num_paths,))

    def scan_em(z, params):
        def body(y, x):
            t, dt, zz = x
            y = y + drift(t, y, params) * dt + diffusion(t, y, params) * jnp.sqrt(dt) * zz
            return y, y

        _, ys = jax.lax.scan(body, y0, (times[:-1], dts, z))
        return jnp.concatenate([y0[None], ys])

    def hand(keys, params):
        return jax.vmap(lambda k: scan_em(jax.random.normal(k, (num_steps, D)), params))(keys)

    def ours_noise(z, params):
        return jax.vmap(lambda zz: simulate_from_noise(sde, y0, times, params, zz))(z)

    def hand_noise(z, params):
        return jax.vmap(lambda zz: scan_em(zz, params))(z)

    return {
        "ours": ours,
        "hand": hand,
        "ours_noise": ours_noise,
        "hand_noise": hand_noise,
        "ours_dist": ours_dist,
    }


def diffrax_fn(num_steps, brownian):
    """f(keys (P, 2), params) -> paths (P, N+1, D) with diffrax Euler, constant step."""
    import diffrax
    import lineax

    y0 = jnp.asarray(Y0, jnp.float32)
    t1 = num_steps * DT

    def one(key, params):
        if brownian == "unsafe":
            bm = diffrax.UnsafeBrownianPath(shape=(D,), key=key)
        else:
            bm = diffrax.VirtualBrownianTree(0.0, t1, tol=DT / 2, shape=(D,), key=key)
        terms = diffrax.MultiTerm(
            diffrax.ODETerm(lambda t, y, p: drift(t, y, p)),
            diffrax.ControlTerm(
                lambda t, y, p: lineax.DiagonalLinearOperator(diffusion(t, y, p)), bm
            ),
        )
        sol = diffrax.diffeqsolve(
            terms,
            diffrax.Euler(),
            0.0,
            t1,
            dt0=DT,
            y0=y0,
            args=params,
            saveat=diffrax.SaveAt(t0=True, steps=True),
            max_steps=num_steps,
            adjoint=diffrax.ForwardMode(),
        )
        return sol.ys

    return lambda keys, params: jax.vmap(one, in_axes=(0, None))(keys, params)


SIM_LABELS = {
    "ours": "ours simulate",
    "hand": "hand-written lax.scan",
    "ours_noise": "ours simulate_from_noise",
    "hand_noise": "hand-written lax.scan (noise given)",
    "ours_dist": "ours SDEPath.sample",
    "diffrax_unsafe": "diffrax UnsafeBrownianPath",
    "diffrax_vbt": "diffrax VirtualBrownianTree",
}


def bench_simulation(num_paths, num_steps, repeats, with_diffrax=True, budget_s=20.0):
    """Time each simulation contender (round robin); returns a result dict."""
    params = _params()
    key = jax.random.PRNGKey(1)
    keys = jax.random.split(key, num_paths)
    z = jax.random.normal(jax.random.PRNGKey(2), (num_paths, num_steps, D))
    fns = simulation_fns(num_paths, num_steps)
    args = {
        "ours": keys,
        "hand": keys,
        "ours_noise": z,
        "hand_noise": z,
        "ours_dist": key,
    }
    if with_diffrax:
        for b in ("unsafe", "vbt"):
            try:
                fns[f"diffrax_{b}"] = diffrax_fn(num_steps, b)
                args[f"diffrax_{b}"] = keys
            except ImportError:
                print("  diffrax not installed: its rows skipped (pip install diffrax)")
                break
    row, calls, first = {}, {}, {}
    for name, f in fns.items():
        compiled, compile_s = _compile(f, args[name], params)
        t0 = time.perf_counter()
        out = _block(compiled(args[name], params))
        first[name] = time.perf_counter() - t0
        calls[name] = (lambda c, a: lambda: c(a, params))(compiled, args[name])
        row[name] = {"compile_s": compile_s, "out": out}
    timings = _round_robin(calls, repeats, first, budget_s)
    for name, ts in timings.items():
        row[name].update(median_s=statistics.median(ts), min_s=min(ts), times=ts)
    _check_simulation(row)
    for r in row.values():
        r.pop("out")
    print(
        "  " + "  ".join(f"{n}={_fmt_time(r['median_s'])}" for n, r in row.items()),
        flush=True,
    )
    return row


def _check_simulation(row):
    """Same keys/noise -> same paths; every contender -> matching final-state moments."""
    pairs = (("ours", "hand"), ("ours_noise", "hand_noise"))
    for a, b in pairs:
        err = float(jnp.max(jnp.abs(row[a]["out"] - row[b]["out"])))
        row[b]["max_abs_diff_vs_ours"] = err
        if err > 1e-4:
            print(f"  WARNING: {a} and {b} paths differ by {err:.2e}")
    ref = np.asarray(row["ours"]["out"][:, -1])
    P = ref.shape[0]
    m_ref, s_ref = ref.mean(0), ref.std(0)
    for name, r in row.items():
        y = np.asarray(r["out"])
        if y.shape != row["ours"]["out"].shape:
            print(f"  WARNING: {name} returned shape {y.shape}")
            continue
        m, s = y[:, -1].mean(0), y[:, -1].std(0)
        # difference of two independent MC means: sd ~ sqrt(2) s / sqrt(P); allow 5 sd
        tol = 5 * np.sqrt(2) * np.maximum(s, s_ref) / np.sqrt(P)
        r["final_mean"], r["final_sd"] = m.tolist(), s.tolist()
        if not np.all(np.abs(m - m_ref) < tol) or not np.all(np.isfinite(y)):
            print(f"  WARNING: {name} final-state mean {m} vs ours {m_ref} (tol {tol})")


# --------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------


def _paired(row, num, den):
    """Median over rounds of time(num) / time(den), both measured in the same round."""
    a, b = row[num]["times"], row[den]["times"]
    return statistics.median(x / y for x, y in zip(a, b, strict=False))


def density_tables(results):
    names = list(DENSITY_LABELS)
    head = " | ".join(DENSITY_LABELS[n] for n in names)
    out = []
    for kind, title in (("value", "log-density value"), ("grad", "value_and_grad (params)")):
        out += [
            f"\n**path {title}** — median time; ratios: median over rounds of numpyro / ours "
            "(> 1: ours faster)\n",
            f"| T | {head} | numpyro / ours path_log_prob | numpyro / ours SDEPath |",
            "|---:|" + "---:|" * (len(names) + 2),
        ]
        for T, res in results.items():
            row = res[kind]
            cells = [_fmt_time(row[n]["median_s"]) for n in names]
            cells += [f"{_paired(row, 'numpyro', o):.2f}×" for o in ("ours", "ours_dist")]
            out.append(f"| {T:,} | " + " | ".join(cells) + " |")
    out += [
        "\n**compile time** (trace + lower + compile), value / value_and_grad, seconds\n",
        f"| T | {head} |",
        "|---:|" + "---:|" * len(names),
    ]
    for T, res in results.items():
        cells = [
            f"{res['value'][n]['compile_s']:.2f} / {res['grad'][n]['compile_s']:.2f}" for n in names
        ]
        out.append(f"| {T:,} | " + " | ".join(cells) + " |")
    return "\n".join(out)


SIM_REF = {"hand": "ours", "hand_noise": "ours_noise", "ours_dist": "ours"}


def simulation_table(row, num_paths, num_steps):
    out = [
        f"\n**simulation**, {num_paths:,} paths × {num_steps:,} Euler–Maruyama steps, D={D}, all "
        "states returned; ratio: median over rounds of (that row / the reference row), "
        "> 1: the reference (ours) faster\n",
        "| contender | median | min | runs | ratio | reference | compile s |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for name, r in row.items():
        ref = SIM_REF.get(name, None if name.startswith("ours") else "ours")
        ratio = f"{_paired(row, name, ref):.2f}×" if ref else "-"
        out.append(
            f"| {SIM_LABELS[name]} | {_fmt_time(r['median_s'])} | {_fmt_time(r['min_s'])} | "
            f"{len(r['times'])} | {ratio} | {SIM_LABELS[ref] if ref else '-'} | "
            f"{r['compile_s']:.2f} |"
        )
    return "\n".join(out)


def targets(dens, sim):
    lines = ["\n**targets** (paired ratios, as in the tables)\n"]
    for kind in ("value", "grad"):
        if not dens:
            break
        for ours in ("ours", "ours_dist"):
            worst = min((_paired(res[kind], "numpyro", ours), T) for T, res in dens.items())
            lines.append(
                f"- density {kind}: numpyro EulerMaruyama / {DENSITY_LABELS[ours]} >= 1× — "
                f"{'met' if worst[0] >= 1 else 'MISSED'} (worst {worst[0]:.2f}× at "
                f"T={worst[1]:,})"
            )
    if sim is not None:
        for ours, hand in (("ours", "hand"), ("ours_noise", "hand_noise")):
            r = _paired(sim, ours, hand)
            lines.append(
                f"- simulation: {SIM_LABELS[ours]} / {SIM_LABELS[hand]} <= 1.2× — "
                f"{'met' if r <= 1.2 else 'MISSED'} ({r:.2f}×)"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def _versions():
    v = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("jax", "numpyro", "diffrax", "numpy"):
        try:
            v[name] = importlib.import_module(name).__version__
        except ImportError:
            v[name] = "not installed"
    return v | {"backend": jax.default_backend()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test (< 1 min)")
    p.add_argument("--sizes", help="comma-separated path lengths T for the density (1000,10000)")
    p.add_argument("--paths", type=int, help="simulated paths (default 1000; quick 100)")
    p.add_argument("--steps", type=int, help="simulation steps (default 1000; quick 200)")
    p.add_argument("--repeats", type=int, help="timed rounds (default 31; quick 9)")
    p.add_argument(
        "--budget-s", type=float, default=20.0, help="time budget of a slow simulation contender"
    )
    p.add_argument("--skip-density", action="store_true")
    p.add_argument("--skip-simulation", action="store_true")
    p.add_argument("--skip-diffrax", action="store_true")
    p.add_argument("--out", help="write all results as JSON here")
    args = p.parse_args(argv)

    if args.sizes:
        try:
            sizes = [int(s) for s in args.sizes.split(",")]
        except ValueError:
            p.error(f"--sizes expects e.g. 1000,10000; got {args.sizes!r}")
    else:
        sizes = list(QUICK_T if args.quick else FULL_T)
    repeats = args.repeats or (9 if args.quick else 31)
    num_paths = args.paths or (100 if args.quick else 1_000)
    num_steps = args.steps or (200 if args.quick else 1_000)
    jax.config.update("jax_platforms", "cpu")
    versions = _versions()
    print(f"# SDE benchmark {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), flush=True)

    dens, sim = {}, None
    report = ""
    if not args.skip_density:
        for T in sizes:
            dens[T] = bench_density(T, repeats)
        report += density_tables(dens)
    if not args.skip_simulation:
        sim = bench_simulation(num_paths, num_steps, repeats, not args.skip_diffrax, args.budget_s)
        report += "\n" + simulation_table(sim, num_paths, num_steps)
    report += "\n" + targets(dens, sim)
    print(report)
    if args.out:
        payload = {
            "versions": versions,
            "argv": sys.argv[1:],
            "density": {f"T={T}": r for T, r in dens.items()},
            "simulation": sim,
        }
        with open(args.out, "w") as fh:
            json.dump(payload, fh, indent=1, default=float)
    return dens, sim


if __name__ == "__main__":
    main()
