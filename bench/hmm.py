"""Benchmark: HMM log-likelihood and gradient, and NUTS on a Poisson HMM, against peers.

Question
    Is ``probdyn.kernels.hmm.hmm_log_likelihood`` (sequential and ``parallel=True``) at least
    as fast as its peers on CPU, for the value and for ``value_and_grad``, and how much faster
    is NUTS on an HMM written with :class:`probdyn.DiscreteHMM` than the same model written
    with NumPyro's ``scan`` + enumeration?

Problem (one per (K, T), float32)
    Scalar observations y (T,) simulated from a sticky K-state HMM with Gaussian emissions of
    unit scale. Parameters are unconstrained transition logits (K, K) and emission means (K,);
    every method builds ``softmax(logits)`` and the Gaussian log-likelihoods inside the timed
    function, so gradients are with respect to the same parameters for everyone. The initial
    distribution is uniform.

Peers
    dynamax ``hmm_filter`` and ``parallel_hmm_filter`` (``marginal_loglik``); a NumPyro model
    with ``contrib.control_flow.scan`` and an enumerated discrete state (as in NumPyro's
    ``examples/hmm_enum.py``), evaluated by ``numpyro.contrib.funsor.log_density``; hmmlearn
    ``GaussianHMM.score`` (C++ forward pass, float64, no gradient).

Timing
    ``jax.jit`` programs are compiled ahead of time (``.lower().compile()``, reported as the
    compile time) and called once to warm up; then the ``--repeats`` timed calls go round
    robin over every (method, value/grad) cell of a size (``bench/_common.py``), so all see
    the same machine load. Tables show the minimum process CPU time (``time.process_time``;
    wall times are kept in ``--out``). Ratios are peer time / ours (sequential), measured in
    the same run. Cells whose predicted run time exceeds ``--guard-s`` or whose compiled
    program needs more than ``--max-mem-gb`` of scratch memory are skipped with the reason.

NUTS
    A 3-state Poisson HMM (ordered rates, Dirichlet transition rows, uniform initial
    distribution), T = 500 synthetic observations, one chain, same seeds for both models.
    The NUTS transition is compiled once and run in chunks; sampling time excludes compilation.
    Every model is first run once untimed (a short chain: JAX's one-time start-up costs
    would otherwise land on whichever model runs first), then ``--nuts-rounds`` full runs of
    each, interleaved. Reported: min bulk-ESS over all parameter entries (arviz) per second
    of sampling, median over rounds.

Run ``python bench/hmm.py`` (``make bench``); ``--quick`` is a smoke test (< 2 min).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import sys
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from _common import interleaved, load_average, versions

_LOG_2PI = math.log(2.0 * math.pi)
FULL_SIZES = [(k, t) for k in (4, 16, 64) for t in (1_000, 10_000, 100_000)]
QUICK_SIZES = [(4, 1_000)]
METHODS = ["ours", "ours_par", "dynamax", "dynamax_par", "numpyro_enum", "hmmlearn"]
LABELS = {
    "ours": "ours seq",
    "ours_par": "ours par",
    "dynamax": "dynamax hmm_filter",
    "dynamax_par": "dynamax parallel_hmm_filter",
    "numpyro_enum": "numpyro scan+enum",
    "hmmlearn": "hmmlearn (f64)",
}


# --- common problem


def make_problem(num_states: int, num_timesteps: int, seed: int = 0):
    """Simulate y (T,) from a sticky Gaussian HMM (K >= 2); return (params, y)."""
    rng = np.random.default_rng(seed + 1000 * num_states)
    K, T = num_states, num_timesteps
    A = np.full((K, K), 0.1 / (K - 1)) + np.eye(K) * (0.9 - 0.1 / (K - 1))
    means = np.linspace(-K / 2.0, K / 2.0, K)
    z = np.empty(T, dtype=np.int64)
    z[0] = rng.integers(K)
    u = rng.random(T)
    cum = np.cumsum(A, axis=1)
    for t in range(1, T):
        z[t] = min(np.searchsorted(cum[z[t - 1]], u[t]), K - 1)
    y = means[z] + rng.normal(size=T)
    # evaluate away from the truth so the gradient is not ~0
    params = {
        "trans_logits": jnp.asarray(np.log(A) + 0.3 * rng.normal(size=(K, K)), jnp.float32),
        "means": jnp.asarray(means + 0.2 * rng.normal(size=K), jnp.float32),
    }
    return params, jnp.asarray(y, jnp.float32)


def _inputs(params, y):
    """Uniform initial probs, softmax transitions and unit-scale Gaussian log-likelihoods."""
    K = params["means"].shape[0]
    pi = jnp.full((K,), 1.0 / K, y.dtype)
    A = jax.nn.softmax(params["trans_logits"], axis=-1)
    ll = -0.5 * (y[:, None] - params["means"]) ** 2 - 0.5 * _LOG_2PI
    return pi, A, ll


# --- one log-likelihood function per method: f(params, y) -> scalar


def loglik_ours(params, y, parallel=False):
    from probdyn.kernels.hmm import hmm_log_likelihood

    return hmm_log_likelihood(*_inputs(params, y), parallel=parallel)


def loglik_dynamax(params, y):
    from dynamax.hidden_markov_model import hmm_filter

    return hmm_filter(*_inputs(params, y)).marginal_loglik


def loglik_dynamax_par(params, y):
    from dynamax.hidden_markov_model import parallel_hmm_filter

    return parallel_hmm_filter(*_inputs(params, y)).marginal_loglik


def _enum_gaussian_model(pi, A, means, y):
    import numpyro
    import numpyro.distributions as dist
    from numpyro.contrib.control_flow import scan

    x0 = numpyro.sample("x_0", dist.Categorical(pi), infer={"enumerate": "parallel"})
    numpyro.sample("y_0", dist.Normal(means[x0], 1.0), obs=y[0])

    def step(x_prev, y_t):
        x = numpyro.sample("x", dist.Categorical(A[x_prev]), infer={"enumerate": "parallel"})
        numpyro.sample("y", dist.Normal(means[x], 1.0), obs=y_t)
        return x, None

    scan(step, x0, y[1:])


def loglik_numpyro_enum(params, y):
    from numpyro.contrib.funsor import enum, log_density

    pi, A, _ = _inputs(params, y[:1])
    model = enum(_enum_gaussian_model, first_available_dim=-1)
    return log_density(model, (pi, A, params["means"], y), {}, {})[0]


def hmmlearn_scorer(params, y):
    """A zero-argument callable running hmmlearn's forward pass (value only, float64)."""
    from hmmlearn.hmm import GaussianHMM

    K = params["means"].shape[0]
    m = GaussianHMM(n_components=K, covariance_type="diag", implementation="scaling")
    m.startprob_ = np.full(K, 1.0 / K)
    A = np.exp(np.asarray(params["trans_logits"], np.float64))
    m.transmat_ = A / A.sum(axis=1, keepdims=True)
    m.means_ = np.asarray(params["means"], np.float64)[:, None]
    m.covars_ = np.ones((K, 1))
    X = np.asarray(y, np.float64)[:, None]
    return lambda: m.score(X)


JAX_FNS = {
    "ours": loglik_ours,
    "ours_par": partial(loglik_ours, parallel=True),
    "dynamax": loglik_dynamax,
    "dynamax_par": loglik_dynamax_par,
    "numpyro_enum": loglik_numpyro_enum,
}


# --- timing


def _block(x):
    return jax.block_until_ready(x)


def compile_jax(fn, args, guard_s, max_mem_bytes, predicted_s=None):
    """Compile ``jax.jit(fn)`` ahead of time. Returns ``(res, call)``: ``res`` holds the
    compile time (or why the cell is skipped), ``call`` runs it (None when skipped)."""
    if predicted_s is not None and predicted_s > guard_s:
        return {"skipped": f"predicted {predicted_s:.0f} s > {guard_s:.0f} s"}, None
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    res = {"compile_s": time.perf_counter() - t0}
    try:
        mem = compiled.memory_analysis()
        scratch = int(mem.temp_size_in_bytes) + int(mem.output_size_in_bytes)
        res["scratch_gb"] = scratch / 1e9
        if scratch > max_mem_bytes:
            res["skipped"] = f"memory {scratch / 1e9:.1f} GB > {max_mem_bytes / 1e9:.0f} GB"
            return res, None
    except Exception:  # noqa: BLE001 - memory analysis is best-effort
        pass
    return res, lambda: compiled(*args)


def _predict(prev, T):
    """Linear-in-T extrapolation from the last measured (T_prev, seconds) of a method."""
    if prev is None:
        return None
    T_prev, s = prev
    return s * T / T_prev


def bench_size(K, T, methods, repeats, guard_s, max_mem_bytes, history):
    """Time every method's value and value_and_grad at one size: all compiled and warmed
    up first, then the timed calls round robin over the cells (``_common.interleaved``),
    so every method sees the same load. ``history`` feeds the guard."""
    params, y = make_problem(K, T)
    rows, calls = {name: {} for name in methods}, {}
    for name in methods:
        if name == "hmmlearn":
            pred = _predict(history.get((name, "value", K)), T)
            if pred is not None and pred > guard_s:
                rows[name]["value"] = {"skipped": f"predicted {pred:.0f} s > {guard_s:.0f} s"}
            else:
                rows[name]["value"], calls[(name, "value")] = {}, hmmlearn_scorer(params, y)
            rows[name]["grad"] = {"skipped": "n/a (no gradient)"}
            continue
        fn = JAX_FNS[name]
        for kind, f in (("value", fn), ("grad", jax.value_and_grad(fn))):
            pred = _predict(history.get((name, kind, K)), T)
            rows[name][kind], call = compile_jax(f, (params, y), guard_s, max_mem_bytes, pred)
            if call is not None:
                calls[(name, kind)] = call
    # fewer repeats where one call is long (the guard bounds a cell's total time)
    first = {c: timed_once(call) for c, call in calls.items()}
    n = max(1, min(repeats, int(guard_s / max(max(first.values(), default=0.0), 1e-9))))
    timings = interleaved(calls, n, warm_up=False)
    for (name, kind), t in timings.items():
        r = rows[name][kind]
        r.update(min_s=min(t["cpu"]), median_s=statistics.median(t["cpu"]), times=t["cpu"])
        r.update(wall_min_s=min(t["wall"]), wall_median_s=statistics.median(t["wall"]))
        out = t["out"]
        r["loglik"] = float(out[0] if kind == "grad" else out)
        history[(name, kind, K)] = (T, r["min_s"])
    for name in methods:
        print(f"  K={K:>3} T={T:>7} {LABELS[name]:<28}", end=" ")
        print(" | ".join(_fmt_cell(rows[name][k]) for k in ("value", "grad")), flush=True)
    _check_agreement(K, T, rows)
    return rows


def timed_once(call):
    """Wall seconds of one (warm-up) call."""
    t0 = time.perf_counter()
    _block(call())
    return time.perf_counter() - t0


def _check_agreement(K, T, rows):
    ref = rows.get("ours", {}).get("value", {}).get("loglik", math.nan)
    for name, row in rows.items():
        for kind, r in row.items():
            v = r.get("loglik")
            if v is not None and abs(v - ref) > 1e-4 * abs(ref) + 1e-2:
                print(f"  WARNING K={K} T={T}: {name} {kind} loglik {v:.6g} != ours {ref:.6g}")


# --- tables


def _fmt_time(s):
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def _fmt_cell(r):
    return _fmt_time(r["min_s"]) if "min_s" in r else r.get("skipped", "-")


def tables(results, methods):
    """Markdown tables: value, value_and_grad (time and peer/ours ratio), compile times."""
    out = []
    head = "| K | T | " + " | ".join(LABELS[m] for m in methods) + " |"
    sep = "|---:|---:|" + "---:|" * len(methods)
    for kind, title in (("value", "log-likelihood value"), ("grad", "value_and_grad")):
        out += [
            f"\n**{title}** — min time; (ratio = peer / ours seq; > 1: ours faster)\n",
            head + (" dynamax par / ours par |" if "ours_par" in methods else ""),
            sep + ("---:|" if "ours_par" in methods else ""),
        ]
        for (K, T), rows in results.items():
            base = rows.get("ours", {}).get(kind, {}).get("min_s")
            cells = []
            for m in methods:
                r = rows.get(m, {}).get(kind, {})
                c = _fmt_cell(r)
                if m != "ours" and base and "min_s" in r:
                    c += f" ({r['min_s'] / base:.2f}×)"
                cells.append(c)
            if "ours_par" in methods:
                a = rows.get("dynamax_par", {}).get(kind, {}).get("min_s")
                b = rows.get("ours_par", {}).get(kind, {}).get("min_s")
                cells.append(f"{a / b:.2f}×" if a and b else "-")
            out.append(f"| {K} | {T:,} | " + " | ".join(cells) + " |")
    jm = [m for m in methods if m != "hmmlearn"]
    out += [
        "\n**compile time** (trace + lower + compile), value / value_and_grad, seconds\n",
        "| K | T | " + " | ".join(LABELS[m] for m in jm) + " |",
        "|---:|---:|" + "---:|" * len(jm),
    ]
    for (K, T), rows in results.items():
        cells = []
        for m in jm:
            v, g = (rows.get(m, {}).get(k, {}).get("compile_s") for k in ("value", "grad"))
            cells.append(f"{v:.2f} / {g:.2f}" if v is not None and g is not None else "-")
        out.append(f"| {K} | {T:,} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def targets(results):
    """Check: ours seq >= every peer everywhere; >= 1.5x dynamax hmm_filter where K <= 16."""
    lines = ["\n**targets** (value_and_grad and value; ratio = peer / ours seq)\n"]
    for kind in ("value", "grad"):
        worst, worst_at, dyn_miss = math.inf, None, []
        for (K, T), rows in results.items():
            base = rows.get("ours", {}).get(kind, {}).get("min_s")
            if not base:
                continue
            for m, row in rows.items():
                s = row.get(kind, {}).get("min_s")
                if m.startswith("ours") or s is None:
                    continue
                if s / base < worst:
                    worst, worst_at = s / base, (m, K, T)
                if m == "dynamax" and K <= 16 and s / base < 1.5:
                    dyn_miss.append(f"K={K},T={T}: {s / base:.2f}×")
        if worst_at:
            ok = "met" if worst >= 1.0 else "MISSED"
            lines.append(
                f"- {kind}: fastest peer relative to ours = {worst:.2f}× "
                f"({LABELS[worst_at[0]]}, K={worst_at[1]}, T={worst_at[2]:,}) — {ok}"
            )
            lines.append(
                f"- {kind}: >= 1.5× dynamax hmm_filter for K <= 16 — "
                + ("met" if not dyn_miss else "MISSED at " + "; ".join(dyn_miss))
            )
    return "\n".join(lines)


# --- NUTS: 3-state Poisson HMM, DiscreteHMM vs scan + enumeration


def _poisson_priors(K):
    import numpyro
    import numpyro.distributions as dist
    from numpyro.distributions.transforms import ExpTransform, OrderedTransform

    base = dist.Normal(jnp.linspace(0.0, 2.0, K), 1.0)
    rates = numpyro.sample(
        "rates", dist.TransformedDistribution(base, [OrderedTransform(), ExpTransform()])
    )
    A = numpyro.sample("A", dist.Dirichlet(jnp.ones((K, K)) + 4.0 * jnp.eye(K)).to_event(1))
    return jnp.full((K,), 1.0 / K), A, rates


def poisson_model_ours(y, K=3):
    import numpyro
    import numpyro.distributions as dist

    from probdyn.processes.hmm import DiscreteHMM

    pi, A, rates = _poisson_priors(K)
    numpyro.sample("y", DiscreteHMM(pi, A, dist.Poisson(rates), num_timesteps=y.shape[0]), obs=y)


def poisson_model_kernel(y, K=3):
    """Diagnostic: the same model with the kernel called directly (no DiscreteHMM)."""
    import numpyro
    import numpyro.distributions as dist

    from probdyn.kernels.hmm import hmm_log_likelihood

    pi, A, rates = _poisson_priors(K)
    numpyro.factor("y", hmm_log_likelihood(pi, A, dist.Poisson(rates).log_prob(y[:, None])))


def poisson_model_enum(y, K=3):
    import numpyro
    import numpyro.distributions as dist
    from numpyro.contrib.control_flow import scan

    pi, A, rates = _poisson_priors(K)
    x0 = numpyro.sample("x_0", dist.Categorical(pi), infer={"enumerate": "parallel"})
    numpyro.sample("y_0", dist.Poisson(rates[x0]), obs=y[0])

    def step(x_prev, y_t):
        x = numpyro.sample("x", dist.Categorical(A[x_prev]), infer={"enumerate": "parallel"})
        numpyro.sample("y", dist.Poisson(rates[x]), obs=y_t)
        return x, None

    scan(step, x0, y[1:])


def poisson_data(T, seed=0):
    rng = np.random.default_rng(seed)
    A = np.array([[0.9, 0.07, 0.03], [0.05, 0.9, 0.05], [0.03, 0.07, 0.9]])
    rates = np.array([1.0, 4.0, 10.0])
    z = np.empty(T, dtype=np.int64)
    z[0] = rng.integers(3)
    for t in range(1, T):
        z[t] = rng.choice(3, p=A[z[t - 1]])
    return jnp.asarray(rng.poisson(rates[z]), jnp.float32)


def run_nuts(model, y, num_warmup, num_samples, seed=0):
    """One NUTS chain; the transition is compiled once and run in chunks of a lax.scan."""
    import arviz as az
    from numpyro.infer import NUTS

    kernel = NUTS(model)
    t0 = time.perf_counter()
    state = kernel.init(jax.random.PRNGKey(seed), num_warmup, model_args=(y,))
    _block(state.z)
    init_s = time.perf_counter() - t0
    chunk = math.gcd(num_warmup, num_samples)

    def run_chunk(s):
        def body(s, _):
            s = kernel.sample(s, (y,), {})
            return s, (s.z, s.num_steps, s.diverging)

        return jax.lax.scan(body, s, None, length=chunk)

    t0 = time.perf_counter()
    compiled = jax.jit(run_chunk).lower(state).compile()
    compile_s = time.perf_counter() - t0

    def run_phase(state, n):
        outs = []
        t0 = time.perf_counter()
        for _ in range(n // chunk):
            state, out = compiled(state)
            outs.append(out)
        _block(state.z)
        return state, time.perf_counter() - t0, jax.tree.map(lambda *a: jnp.concatenate(a), *outs)

    state, warmup_s, _ = run_phase(state, num_warmup)
    state, sample_s, (zs, steps, div) = run_phase(state, num_samples)
    post = jax.vmap(kernel.postprocess_fn((y,), {}))(zs)
    post = {k: np.asarray(v)[None] for k, v in post.items() if k in ("rates", "A")}
    ess = az.ess(az.convert_to_dataset(post), method="bulk")
    min_ess = float(min(np.min(ess[k].values) for k in post))
    return {
        "init_s": init_s,
        "compile_s": compile_s,
        "warmup_s": warmup_s,
        "sample_s": sample_s,
        "min_bulk_ess": min_ess,
        "ess_per_s": min_ess / sample_s,
        "ess_per_s_incl_warmup": min_ess / (sample_s + warmup_s),
        "grad_evals": int(np.sum(steps)),
        "divergences": int(np.sum(div)),
        "s_per_grad_eval_us": 1e6 * sample_s / max(int(np.sum(steps)), 1),
        "rates_mean": [round(float(v), 2) for v in np.mean(post["rates"][0], axis=0)],
    }


NUTS_MODELS = {
    "ours": ("ours (DiscreteHMM)", poisson_model_ours),
    "numpyro_enum": ("numpyro scan+enum", poisson_model_enum),
    "kernel_factor": ("diagnostic: kernel via factor", poisson_model_kernel),
}


def bench_nuts(T, num_warmup, num_samples, names, seed=0, rounds=2):
    """Every model once untimed (short run: compilation and JAX's one-time start-up costs),
    then ``rounds`` full runs of each, interleaved (order alternating per round), the same
    seed for every model in a round. Reported: the median over rounds of each quantity."""
    y = poisson_data(T, seed)
    for name in names:  # warm-up: the first model run in a process pays JAX's start-up
        run_nuts(NUTS_MODELS[name][1], y, 10, 10, seed)
    runs = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            print(f"  NUTS round {r} {NUTS_MODELS[name][0]} ...", end=" ", flush=True)
            runs[name].append(run_nuts(NUTS_MODELS[name][1], y, num_warmup, num_samples, seed + r))
            print(f"{runs[name][-1]['ess_per_s']:.1f} ESS/s", flush=True)
    res = {}
    for name, rs in runs.items():
        res[name] = {
            k: (type(v)(statistics.median(x[k] for x in rs)) if isinstance(v, int | float) else v)
            for k, v in rs[0].items()
        }
        res[name]["rounds"] = rs
    return res


def nuts_table(res, T, num_warmup, num_samples):
    names = list(res)
    ref = res["numpyro_enum"]
    rows = [
        f"\n**NUTS**, 3-state Poisson HMM, T={T}, 1 chain, {num_warmup} warmup + "
        f"{num_samples} samples; times exclude compilation; every model warmed up, then "
        f"{len(res[names[0]]['rounds'])} interleaved rounds, medians shown; ratio = x / "
        "numpyro scan+enum\n",
        "| | " + " | ".join(NUTS_MODELS[n][0] for n in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for key, label, fmt, ratio in (
        ("ess_per_s", "min bulk-ESS / s (sampling)", "{:.1f}", True),
        ("ess_per_s_incl_warmup", "min bulk-ESS / s (warmup + sampling)", "{:.1f}", True),
        ("min_bulk_ess", "min bulk-ESS", "{:.0f}", False),
        ("sample_s", "sampling time, s", "{:.2f}", False),
        ("warmup_s", "warmup time, s", "{:.2f}", False),
        ("grad_evals", "gradient evaluations (sampling)", "{:d}", False),
        ("s_per_grad_eval_us", "µs per leapfrog step", "{:.1f}", False),
        ("compile_s", "compile time (NUTS step), s", "{:.2f}", False),
        ("init_s", "kernel.init time, s", "{:.2f}", False),
        ("divergences", "divergences", "{:d}", False),
        ("rates_mean", "posterior mean rates", "{}", False),
    ):
        cells = []
        for n in names:
            c = fmt.format(res[n][key])
            if ratio and n != "numpyro_enum":
                c += f" ({res[n][key] / ref[key]:.2f}×)"
            cells.append(c)
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    for n in names:
        per_round = ", ".join(
            f"{x['ess_per_s']:.0f} ESS/s ({x['min_bulk_ess']:.0f} ESS in {x['sample_s']:.2f} s)"
            for x in res[n]["rounds"]
        )
        rows.append(f"\n{NUTS_MODELS[n][0]}, per round: {per_round}")
    r = res["ours"]["ess_per_s"] / ref["ess_per_s"]
    if min(v["min_bulk_ess"] for v in res.values()) < 100:
        rows.append("\nmin bulk-ESS < 100: too few draws for a meaningful ratio (e.g. --quick).")
    rows.append(
        f"\nTarget ESS/s ratio (ours / enum) >= 5×: {'met' if r >= 5 else 'MISSED'} ({r:.2f}×)"
    )
    return "\n".join(rows)


# --- main


def _versions():
    return versions(("jax", "numpyro", "funsor", "dynamax", "hmmlearn", "numpy"))


def _parse_sizes(text):
    try:
        return [tuple(int(v) for v in s.lower().split("x")) for s in text.split(",")]
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"--sizes expects e.g. 4x1000,16x10000; got {text!r}"
        ) from err


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test (< 2 min)")
    p.add_argument("--sizes", type=_parse_sizes, help="KxT list, e.g. 4x1000,16x10000")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    p.add_argument("--repeats", type=int, help="timed calls per cell (default 5; quick 3)")
    p.add_argument("--guard-s", type=float, default=60.0, help="skip cells predicted slower")
    p.add_argument("--max-mem-gb", type=float, default=4.0, help="skip larger compiled programs")
    p.add_argument("--skip-nuts", action="store_true")
    p.add_argument("--nuts-T", type=int, help="NUTS sequence length (default 500; quick 100)")
    p.add_argument("--nuts-rounds", type=int, default=2, help="interleaved NUTS rounds")
    p.add_argument("--nuts-models", help="comma-separated subset of " + ",".join(NUTS_MODELS))
    p.add_argument("--out", help="write all results as JSON here")
    args = p.parse_args(argv)

    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    repeats = args.repeats or (3 if args.quick else 5)
    methods = [m.strip() for m in args.methods.split(",")]
    if set(methods) - set(METHODS) or "ours" not in methods:
        p.error(f"--methods must include 'ours' and be among {METHODS}; got {methods}")
    jax.config.update("jax_platforms", "cpu")
    versions = _versions()
    if versions["funsor"] == "not installed":  # numpyro's enumeration needs funsor
        print("funsor not installed: numpyro scan+enum and NUTS skipped (pip install funsor)")
        methods, args.skip_nuts = [m for m in methods if m != "numpyro_enum"], True
    print(f"# HMM benchmark {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), flush=True)
    print(f"load average (1, 5, 15 min) at the start: {load_average()}", flush=True)

    results, history = {}, {}
    mem = args.max_mem_gb * 1e9
    for K, T in sorted(sizes):
        results[(K, T)] = bench_size(K, T, methods, repeats, args.guard_s, mem, history)
    report = tables(results, methods) + "\n" + targets(results)
    nuts = None
    if not args.skip_nuts:
        T, nw, ns = (args.nuts_T or 100, 50, 50) if args.quick else (args.nuts_T or 500, 500, 1000)
        names = ["ours", "numpyro_enum"] + ([] if args.quick else ["kernel_factor"])
        if args.nuts_models:
            names = [n.strip() for n in args.nuts_models.split(",")]
        nuts = bench_nuts(T, nw, ns, names, rounds=1 if args.quick else args.nuts_rounds)
        report += "\n" + nuts_table(nuts, T, nw, ns)
    report += f"\n\nload average (1, 5, 15 min) at the end: {load_average()}"
    print(report)
    if args.out:
        payload = {
            "versions": versions,
            "argv": sys.argv[1:],
            "nuts": nuts,
            "likelihood": {f"K={K},T={T}": r for (K, T), r in results.items()},
        }
        with open(args.out, "w") as fh:
            json.dump(payload, fh, indent=1, default=float)
    return results, nuts


if __name__ == "__main__":
    main()
