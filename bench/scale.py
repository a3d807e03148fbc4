"""Benchmark: the same work on 1 and on 2 (or more) devices.

Question
    How much faster do probdyn's device-parallel paths run when a second device is added?
    Ideal is 2x on 2 devices; the table reports the measured ratio and the CPU time, so
    what is lost (a busy machine, compile time, the slowest block) can be seen.

Workloads (``--quick`` sizes in brackets)
    ``nuts``: 8 chains of NUTS on a 2-state Gaussian :class:`probdyn.DiscreteHMM` with
    T = 10,000 [1,000] observations, 100 [20] warmup + 100 [20] draws, ``fit`` with the
    default ``chain_method`` ("sharded" on 2 devices, "vectorized" on one).
    ``sbc``: :func:`probdyn.report.sbc` with 100 [20] replicates of a conjugate normal model,
    ``vectorized=True`` (:func:`probdyn.infer.fit_replicates`, replicates over devices),
    200 [50] warmup, 99 [19] draws.
    ``sgld``: SGLD on a logistic regression with N = 1,000,000 [100,000] observations, 5
    features, minibatches of 1,000, 2 chains (one per device on 2 devices), 1,000 [100]
    draws after 100 [20] burn-in.

Method
    Each (workload, device count) runs in a fresh subprocess whose ``XLA_FLAGS`` set
    ``--xla_force_host_platform_device_count`` before JAX starts; device counts are
    interleaved (1, 2, 1, 2, ...) for ``--repeats`` rounds. In a subprocess the workload
    runs twice with JAX's persistent compilation cache on, and the second run is timed
    (wall and process CPU time, ``time.process_time``), so compilation is left out.
    On a GPU machine or a cluster the same script runs unchanged (``--devices`` lists the
    device counts to compare; the subprocess sees the first ``n`` devices).

Run ``python bench/scale.py`` (``--quick`` for a smoke test, ``--workloads nuts,sgld``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

WORKLOADS = ("nuts", "sbc", "sgld")


def _nuts(quick: bool):
    import jax.numpy as jnp
    import numpy as np
    import numpyro
    import numpyro.distributions as dist

    from probdyn import DiscreteHMM, fit

    T = 1_000 if quick else 10_000
    rng = np.random.default_rng(0)
    stay = np.array([0.95, 0.9])
    z = np.zeros(T, dtype=int)
    u = rng.uniform(size=T)
    for t in range(1, T):  # simulate once, outside the timed part
        z[t] = z[t - 1] if u[t] < stay[z[t - 1]] else 1 - z[t - 1]
    y = jnp.asarray(np.array([-1.0, 1.0])[z] + rng.normal(size=T), dtype=jnp.float32)

    def model(y):
        mu = numpyro.sample("mu", dist.Normal(jnp.array([-1.0, 1.0]), 1.0).to_event(1))
        trans = numpyro.sample("trans", dist.Dirichlet(jnp.ones((2, 2))).to_event(1))
        numpyro.sample("y", DiscreteHMM(jnp.ones(2) / 2, trans, dist.Normal(mu, 1.0)), obs=y)

    n = 20 if quick else 100
    return lambda: fit(model, y, num_chains=8, num_warmup=n, num_samples=n, progress_bar=False)


def _sbc(quick: bool):
    import numpyro
    import numpyro.distributions as dist

    from probdyn.report import sbc

    def model(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        with numpyro.plate("time", 10):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    reps, warm, draws = (20, 50, 19) if quick else (100, 200, 99)
    return lambda: sbc(model, num_replicates=reps, num_posterior_draws=draws, thin=1,
                       vectorized=True, num_warmup=warm, progress_bar=False)  # fmt: skip


def _sgld(quick: bool):
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    from probdyn import fit

    N = 100_000 if quick else 1_000_000
    kx, kw, ky = jax.random.split(jax.random.PRNGKey(0), 3)
    X = jax.random.normal(kx, (N, 5))
    w = jax.random.normal(kw, (5,))
    y = jax.random.bernoulli(ky, jax.nn.sigmoid(X @ w)).astype(jnp.float32)

    def model(X, y):
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([5]).to_event(1))
        with numpyro.plate("obs", X.shape[0], subsample_size=1_000) as idx:
            numpyro.sample("y", dist.Bernoulli(logits=X[idx] @ beta), obs=y[idx])

    warm, draws = (20, 100) if quick else (100, 1_000)
    return lambda: fit(model, X, y, method="sgld", step_size=1e-7, num_chains=2,
                       num_warmup=warm, num_samples=draws, progress_bar=False)  # fmt: skip


def worker(workload: str, quick: bool) -> dict:
    """Run ``workload`` twice in this process; time the second (compiled programs cached)."""
    import jax

    jax.config.update("jax_compilation_cache_dir", os.environ["PROBDYN_BENCH_CACHE"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    run = {"nuts": _nuts, "sbc": _sbc, "sgld": _sgld}[workload](quick)
    t0, c0 = time.perf_counter(), time.process_time()
    run()
    cold = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    run()
    return {
        "workload": workload,
        "devices": jax.device_count(),
        "wall_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,
        "cold_wall_s": cold,
    }


def _spawn(workload: str, devices: int, quick: bool, cache: str, timeout: float) -> dict:
    env = dict(os.environ)
    flag = f"--xla_force_host_platform_device_count={devices}"
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flag}".strip()
    env["PROBDYN_BENCH_CACHE"] = cache
    env.setdefault("CUDA_VISIBLE_DEVICES", ",".join(map(str, range(devices))))
    cmd = [sys.executable, __file__, "--worker", workload] + (["--quick"] if quick else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{workload} on {devices} devices failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--devices", default="1,2", help="device counts to compare")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per subprocess, s")
    parser.add_argument("--out", help="write every timing as JSON here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.quick)))
        return {}
    counts = [int(d) for d in args.devices.split(",")]
    workloads = [w for w in args.workloads.split(",") if w]
    bad = sorted(set(workloads) - set(WORKLOADS))
    if bad:
        parser.error(f"--workloads {bad} not known; expected some of {WORKLOADS}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for workload in workloads:
            for _ in range(args.repeats):
                for n in counts:  # interleaved
                    cache = os.path.join(tmp, f"{workload}-{n}")
                    rows.append(_spawn(workload, n, args.quick, cache, args.timeout))
                    print(json.dumps(rows[-1]), file=sys.stderr)
    base = counts[0]
    print(f"\n| workload | devices | wall s | CPU s | speed-up vs {base} (ideal) |")
    print("|---|---|---|---|---|")
    for workload in workloads:
        med = {
            n: {
                k: statistics.median(
                    r[k] for r in rows if r["workload"] == workload and r["devices"] == n
                )  # fmt: skip
                for k in ("wall_s", "cpu_s")
            }
            for n in counts
        }
        for n in counts:
            ratio = med[base]["wall_s"] / med[n]["wall_s"]
            print(f"| {workload} | {n} | {med[n]['wall_s']:.2f} | {med[n]['cpu_s']:.2f} | "
                  f"{ratio:.2f}x ({n / base:.0f}x) |")  # fmt: skip
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)
    return {"rows": rows}


if __name__ == "__main__":
    main()
