"""Double-well SDE: NUTS on a non-centred latent path, and the switching rate it implies.

Question
    A particle diffuses in the double-well potential U(x) = -theta x^2/2 + x^4/4,
    dX = (theta X - X^3) dt + sigma dW, and is observed once per time unit with noise.
    Can NUTS on (theta, sigma) and the latent path, with the path written in non-centred
    form, recover the parameters, the hidden path and the rate at which the particle
    switches wells?

Data
    Synthetic, with known truth theta = 1 (wells at +-1, barrier 1/4), sigma = 0.6: one
    path from x = -1 simulated with Euler-Maruyama at dt = 0.01 (standing in for the
    continuous SDE) on t in [0, 100] (101 observations, 6 switches at seed 0; [0, 80],
    81 observations and 3 switches with ``--quick``; [0, 20] with ``--smoke``), observed
    with N(0, 0.15^2) noise.

Model
    ``probdyn.models.double_well``: log theta ~ N(0, 1), log sigma ~ N(log 0.5, 0.75),
    known observation noise, the latent path on a grid of 10 Euler-Maruyama steps per
    observation interval. Parametrisation "bridge" (the innovation scheme of Golightly &
    Wilkinson 2008): the states at the observation times are sampled, the path between
    them is a Brownian bridge driven by standard normals and scaled by sigma, and the
    density is the exact Euler-Maruyama density. For comparison (full run only), the same
    model with the plain forward non-centred path ``probdyn.processes.sde.sde_path``
    (initial state and all increments sampled).

What the result should show
    With the bridge form: R-hat below 1.01, no divergences, short NUTS trajectories, and
    the true theta and sigma inside their 90% intervals; posterior path bands that
    contain the true path. The switching rate (well changes per unit time with hysteresis
    at +-0.5, the path looked at every 0.1), simulated over long horizons at posterior
    draws, should cover the true rate, computed from the mean first-passage time integral
    with the Broadie-Glasserman-Kou continuity correction for the 0.1 grid and checked
    against a long simulation at the truth. The rate with continuous monitoring and
    Kramers' small-noise formula are shown as further references (the barrier is low, so
    Kramers is off by some 10%). The forward form, with
    these informative data, diverges and needs trajectories tens of times longer: every
    crossing of the barrier amplifies a change of (theta, sigma) along the path.

Outputs (in ``--out``, default ``results/double_well``): ``idata.nc``, ``metrics.json``,
``report.md``, ``data_and_path.png``, ``params_posterior.png``, ``switching_rate.png``,
``trace.png``.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from probdyn.kernels import sde as K_
from probdyn.models import double_well as dw
from probdyn.report.output import prepare_output_dir
from probdyn.report.study import (
    chosen_size,
    doc_as_markdown,
    interval_rows,
    interval_table_markdown,
    max_over,
    nuts_metrics,
    size_note,
    study_parser,
    write_outputs,
)

NAME = "double_well"
SUBSTEPS = 10
THRESHOLD = 0.5
SIM_DT = 0.01  # Euler step of the data and of the switching-rate simulations
SAVE_DT = 0.1  # grid on which switches are counted
# Sizes: observation horizon, NUTS warmup/draws/chains, posterior draws and horizon of the
# switching-rate simulations, simulated paths at the truth.
SIZES = {
    "full": dict(
        horizon=100.0, num_warmup=1000, num_samples=1000, num_chains=4,
        rate_draws=400, rate_horizon=2000.0, truth_paths=400,
    ),
    "quick": dict(
        horizon=80.0, num_warmup=400, num_samples=400, num_chains=2,
        rate_draws=100, rate_horizon=1000.0, truth_paths=100,
    ),
    "smoke": dict(
        horizon=20.0, num_warmup=30, num_samples=30, num_chains=2,
        rate_draws=10, rate_horizon=100.0, truth_paths=10,
    ),
}  # fmt: skip


def _parse(argv):
    p = study_parser(NAME, __doc__, "shorter record, fewer draws (about a minute)", sizes=SIZES)
    p.add_argument(
        "--compare-forward",
        action="store_true",
        default=None,
        help="also fit the forward non-centred path (default: on for the full run)",
    )
    return p.parse_args(argv)


def _flat(post, name):
    x = np.asarray(post[name])
    return x.reshape((-1,) + x.shape[2:])


def _simulated_rates(seed, theta, sigma, horizon):
    """Switches per unit time in one path of length ``horizon`` per (theta, sigma)."""
    grid = jnp.arange(0.0, horizon + SAVE_DT / 2, SAVE_DT)
    sub = int(round(SAVE_DT / SIM_DT))
    keys = jax.random.split(jax.random.PRNGKey(seed), len(theta))
    y0 = jnp.array([-1.0])

    def one(key, th, sg):
        params = {"theta": th, "sigma": sg}
        return K_.simulate(key, dw.SDE, y0, grid, params, substeps=sub)[:, 0]

    paths = jax.jit(jax.vmap(one))(keys, jnp.asarray(theta), jnp.asarray(sigma))
    return dw.count_switches(np.asarray(paths), THRESHOLD) / horizon


def _fit(parametrisation, times, y, args, num_chains, num_warmup, num_samples, seed, x_true):
    from probdyn import fit

    T = len(times)
    dims = {"x": ["time"], "y": ["time"]}
    if parametrisation == "bridge":
        dims |= {"state": ["time"], "bridge_noise": ["interval", "substep"]}
    else:
        dims |= {
            "x_path": ["time", "x_dim"],
            "x_path_init": ["x_dim"],
            "x_path_noise": ["step", "x_dim"],
        }
    t0 = time.perf_counter()
    idata = fit(
        dw.model,
        jnp.asarray(times),
        method="nuts",
        model_kwargs={
            "y": jnp.asarray(y),
            "substeps": SUBSTEPS,
            "parametrisation": parametrisation,
        },
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        seed=seed,
        predictive=parametrisation == "bridge",
        progress_bar=not args.no_progress,
        dims=dims,
        coords={"time": times, "interval": np.arange(T - 1), "substep": np.arange(SUBSTEPS - 1)},
        constant_data={"true_x": x_true},
    )
    return idata, time.perf_counter() - t0


def _stats(idata, var_names):
    return {
        **nuts_metrics(idata, var_names),
        "mean_leapfrog_steps": float(idata.sample_stats["n_steps"].mean()),
    }


def _figures(out: Path, times, fine_t, fine_x, y, x_draws, samples, rates, truth_rates):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from probdyn.report import plot_trace

    lo90, lo50, med, hi50, hi90 = np.quantile(x_draws, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
    fig, ax = plt.subplots(figsize=(10, 3.8))
    ax.fill_between(times, lo90, hi90, color="C0", alpha=0.2, label="posterior 90%")
    ax.fill_between(times, lo50, hi50, color="C0", alpha=0.35, label="posterior 50%")
    ax.plot(times, med, color="C0", lw=1, label="posterior median")
    ax.plot(fine_t, fine_x, color="C1", lw=0.6, label="true path")
    ax.plot(times, y, "k.", ms=4, label="observations")
    for s in (-1, 1):
        ax.axhline(s * np.sqrt(dw.TRUE_PARAMS["theta"]), color="gray", lw=0.5, ls=":")
    ax.set_xlabel("time")
    ax.set_ylabel("x")
    ax.legend(loc="upper left", ncol=5, fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "data_and_path.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(11, 3))
    for ax, name in zip(axes[:2], ("theta", "sigma"), strict=True):
        ax.hist(samples[name], bins=40, density=True, color="C0", alpha=0.8)
        ax.axvline(dw.TRUE_PARAMS[name], color="C1", lw=2, label="truth")
        ax.set_title(name)
    axes[0].legend()
    axes[2].plot(samples["theta"], samples["sigma"], ".", ms=2, alpha=0.4)
    axes[2].plot(dw.TRUE_PARAMS["theta"], dw.TRUE_PARAMS["sigma"], "*", color="C1", ms=12)
    axes[2].set_xlabel("theta")
    axes[2].set_ylabel("sigma")
    fig.tight_layout()
    fig.savefig(out / "params_posterior.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.5))
    bins = np.linspace(0, max(rates["simulated"].max(), rates["exact"].max()) * 1.05, 40)
    ax.hist(rates["simulated"], bins=bins, density=True, alpha=0.6, label="simulated at draws")
    ax.hist(rates["exact"], bins=bins, density=True, alpha=0.6, label="exact at draws")
    ax.axvline(truth_rates["exact"], color="C3", lw=2, label="truth (exact)")
    ax.axvline(truth_rates["simulated"], color="C3", lw=1, ls="--", label="truth (simulated)")
    ax.axvline(truth_rates["kramers"], color="k", lw=1, ls=":", label="truth (Kramers)")
    ax.set_xlabel("switches per unit time")
    ax.set_title("switching rate: posterior predictive vs truth")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "switching_rate.png", dpi=110)
    plt.close(fig)

    plot_trace(samples["idata"], out / "trace.png", var_names=["theta", "sigma"])


def _report(m, rows, diagnostics_md: str) -> list[str]:
    fwd = m.get("forward")
    lines = [
        "# double_well: NUTS on a latent double-well SDE path",
        "",
        doc_as_markdown(__doc__),
        "",
        "## Result",
        "",
        size_note(m["size"]),
        f"- R-hat max (theta, sigma): **{m['rhat_max']:.4f}**; over every latent site: "
        f"**{m['rhat_max_latent']:.4f}**; bulk ESS min: **{m['ess_bulk_min']:.0f}**; "
        f"divergences: **{m['divergences']}**; mean leapfrog steps per draw: "
        f"**{m['mean_leapfrog_steps']:.1f}**",
        f"- true theta, sigma inside their 90% intervals: **{m['coverage_90']:.0%}**",
        f"- true latent states inside the 90% posterior bands: **{m['path_coverage_90']:.0%}** "
        f"of {m['num_obs']} observation times",
        f"- switches in the true path: {m['true_path_switches']} over {m['horizon']:g} time units",
        f"- switching rate at the truth: exact **{m['true_rate_exact']:.4f}**, simulated "
        f"{m['true_rate_simulated']:.4f} +- {m['true_rate_simulated_se']:.4f} "
        f"({m['truth_paths']} paths x {m['rate_horizon']:g}); with continuous monitoring "
        f"(exact) {m['true_rate_continuous']:.4f}, Kramers {m['true_rate_kramers']:.4f}",
        f"- posterior predictive switching rate (one simulated path of {m['rate_horizon']:g} "
        f"per draw, {m['rate_draws']} draws): mean {m['rate_mean']:.4f}, 90% interval "
        f"[{m['rate_q05']:.4f}, {m['rate_q95']:.4f}] (covers the truth: "
        f"**{'yes' if m['rate_covered'] else 'no'}**); exact rate at the draws: mean "
        f"{m['rate_exact_mean']:.4f}, 90% [{m['rate_exact_q05']:.4f}, "
        f"{m['rate_exact_q95']:.4f}]",
        f"- time in `probdyn.fit` (compilation included): {m['fit_seconds']:.1f} s "
        f"({m['num_chains']} chains x {m['num_samples']} draws)",
    ]
    if fwd:
        lines.append(
            f"- forward non-centred path (`sde_path`, same data, {fwd['num_chains']} chains x "
            f"{fwd['num_samples']} draws): divergences **{fwd['divergences']}**, mean leapfrog "
            f"steps **{fwd['mean_leapfrog_steps']:.0f}**, R-hat max (theta, sigma) "
            f"{fwd['rhat_max']:.3f}, bulk ESS min {fwd['ess_bulk_min']:.0f}, "
            f"{fwd['fit_seconds']:.0f} s"
        )
    lines += [
        "",
        "## Parameters against the truth",
        "",
        interval_table_markdown(rows),
        "",
        "## Diagnostics",
        "",
        diagnostics_md,
        "",
        "## Figures",
        "",
        "![data and path](data_and_path.png)",
        "",
        "![parameters](params_posterior.png)",
        "",
        "![switching rate](switching_rate.png)",
        "",
        "![trace](trace.png)",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the study; returns 0 on success."""
    import arviz as az

    from probdyn.report import summary

    args = _parse(argv)
    out = prepare_output_dir(args.out, overwrite=args.overwrite)
    size, cfg = chosen_size(args, SIZES)
    horizon, num_warmup, num_samples = cfg["horizon"], cfg["num_warmup"], cfg["num_samples"]
    num_chains = args.num_chains or cfg["num_chains"]
    rate_draws, rate_horizon = cfg["rate_draws"], cfg["rate_horizon"]
    truth_paths = cfg["truth_paths"]
    compare = (size == "full") if args.compare_forward is None else args.compare_forward

    times = np.arange(0.0, horizon + 0.5, 1.0)
    sub = int(round(1.0 / SIM_DT))
    fine_t, fine_x, y = dw.simulate_data(jax.random.PRNGKey(args.seed), times, substeps=sub)
    fine_t, fine_x, y = np.asarray(fine_t), np.asarray(fine_x), np.asarray(y)
    x_true = fine_x[::sub]

    idata, fit_seconds = _fit(
        "bridge", times, y, args, num_chains, num_warmup, num_samples, args.seed + 1, x_true
    )
    post = idata.posterior
    samples = {k: _flat(post, k) for k in ("theta", "sigma", "x")}
    params = ["log_theta", "log_sigma"]
    diagnostics = summary(idata, var_names=params)
    rows = interval_rows(samples, {k: dw.TRUE_PARAMS[k] for k in ("theta", "sigma")})
    lo, hi = np.quantile(samples["x"], [0.05, 0.95], axis=0)

    # switching rate: posterior predictive long simulations vs the truth
    n = len(samples["theta"])
    idx = np.linspace(0, n - 1, min(rate_draws, n)).astype(int)
    th, sg = samples["theta"][idx], samples["sigma"][idx]
    sim_rates = _simulated_rates(args.seed + 2, th, sg, rate_horizon)
    exact_rates = dw.switching_rate(th, sg, THRESHOLD, monitor_dt=SAVE_DT)
    th0, sg0 = dw.TRUE_PARAMS["theta"], dw.TRUE_PARAMS["sigma"]
    truth_sim = _simulated_rates(
        args.seed + 3, np.full(truth_paths, th0), np.full(truth_paths, sg0), rate_horizon
    )
    truth = {
        "exact": float(dw.switching_rate(th0, sg0, THRESHOLD, monitor_dt=SAVE_DT)),
        "continuous": float(dw.switching_rate(th0, sg0, THRESHOLD)),
        "simulated": float(truth_sim.mean()),
        "kramers": float(dw.kramers_rate(th0, sg0)),
    }
    q05, q95 = np.quantile(sim_rates, [0.05, 0.95])
    latent = ["log_theta", "log_sigma", "state", "bridge_noise"]
    metrics = {
        "size": size,
        "num_obs": len(times),
        "horizon": horizon,
        "num_chains": num_chains,
        "num_samples": num_samples,
        "seed": args.seed,
        **_stats(idata, params),
        "rhat_max_latent": max_over(az.rhat(idata, var_names=latent)),
        "coverage_90": float(np.mean([r["covered"] for r in rows])),
        "path_coverage_90": float(np.mean((lo <= x_true) & (x_true <= hi))),
        "true_path_switches": int(dw.count_switches(fine_x, THRESHOLD)),
        "true_rate_exact": truth["exact"],
        "true_rate_simulated": truth["simulated"],
        "true_rate_simulated_se": float(truth_sim.std(ddof=1) / np.sqrt(truth_paths)),
        "true_rate_kramers": truth["kramers"],
        "true_rate_continuous": truth["continuous"],
        "truth_paths": truth_paths,
        "rate_horizon": rate_horizon,
        "rate_draws": len(idx),
        "rate_mean": float(sim_rates.mean()),
        "rate_q05": float(q05),
        "rate_q95": float(q95),
        "rate_covered": bool(q05 <= truth["exact"] <= q95),
        "rate_exact_mean": float(exact_rates.mean()),
        "rate_exact_q05": float(np.quantile(exact_rates, 0.05)),
        "rate_exact_q95": float(np.quantile(exact_rates, 0.95)),
        "diagnostics_ok": bool(diagnostics.ok),
        "diagnostics_problems": list(diagnostics.problems),
        "fit_seconds": fit_seconds,
        "parameters": rows,
    }
    if compare:
        f_chains, f_samples = 2, num_samples // 2
        fwd, f_seconds = _fit(
            "forward", times, y, args, f_chains, f_samples, f_samples, args.seed + 4, x_true
        )
        metrics["forward"] = {
            **_stats(fwd, params),
            "num_chains": f_chains,
            "num_samples": f_samples,
            "fit_seconds": f_seconds,
        }
    samples["idata"] = idata
    _figures(
        out,
        times,
        fine_t,
        fine_x,
        y,
        samples["x"],
        samples,
        {"simulated": sim_rates, "exact": exact_rates},
        truth,
    )
    write_outputs(out, idata, metrics, _report(metrics, rows, diagnostics.to_markdown()))
    print(
        f"{NAME}: R-hat max {metrics['rhat_max']:.3f}, divergences {metrics['divergences']}, "
        f"90% coverage {metrics['coverage_90']:.0%}; switching rate {metrics['rate_mean']:.3f} "
        f"[{q05:.3f}, {q95:.3f}] vs true {truth['exact']:.3f}\n"
        f"wrote {out}/ (report.md, idata.nc, metrics.json, PNGs)"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
