"""Ion channel: infer the gating rates of a 3-state channel from a noisy current at irregular times.

Question
    A single channel switches between closed (C), open (O) and inactivated (I) states; only
    the open state conducts, and the current is sampled at irregular times with noise. Can
    NUTS on the exact CTMC likelihood recover the four gating rates, the stationary
    distribution, the mean dwell times and the hidden state over time, and are its 90%
    intervals honest, i.e. do they contain the true rates in about 90% of replicate
    experiments?

Data
    Synthetic, with known truth: rates (k_CO, k_OC, k_OI, k_IO) = (1, 3, 0.5, 0.2) per ms,
    open current 1 pA, noise sd 0.3 pA; T = 800 samples (300 with ``--quick``, 40 with
    ``--smoke``) at exponentially distributed gaps of mean 0.25 ms. The coverage study
    repeats the experiment on 50 replicate data sets (T = 300 each, 500 draws; 10 data sets
    of T = 60 and 100 draws with ``--quick``; NUTS tree depth capped at 8, 4 with
    ``--quick``, since the replicates run as one vmapped program).

Model
    ``probdyn.models.ion_channel``: ``probdyn.processes.ObservedCTMC`` with the C <-> O <-> I
    generator, Normal log-rate priors (sd 1.5), the channel at equilibrium at the first
    sample, and a Normal current given the state. The hidden path is marginalised exactly
    (forward algorithm over P(dt) = expm(Q dt) for every gap), so NUTS samples only the six
    continuous parameters.

What the result should show
    R-hat below 1.01 and no divergences; the true rates inside their 90% intervals; a
    hidden-state posterior that tracks the true state (closed and inactivated carry the
    same current and are told apart only by their dynamics); and replicate coverage of the
    true rates near 90% (a Binomial(50, 0.9) count lies in 40..49 with probability 0.99).

Outputs (in ``--out``, default ``results/ion_channel``): ``idata.nc``, ``metrics.json``,
``report.md``, ``current_and_states.png``, ``state_posterior.png``, ``rates_posterior.png``,
``coverage.png``, ``trace.png``.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from probdyn.kernels.ctmc import stationary_distribution
from probdyn.models import ion_channel as ic
from probdyn.processes.ctmc import ObservedCTMC
from probdyn.report.output import prepare_output_dir
from probdyn.report.study import (
    chosen_size,
    doc_as_markdown,
    interval_rows,
    interval_table_markdown,
    nuts_metrics,
    size_note,
    study_parser,
    write_outputs,
)

NAME = "ion_channel"
MEAN_GAP = 0.25
# Sizes: samples, NUTS warmup/draws/chains of the main fit, and the coverage study's
# replicate data sets, samples per replicate, warmup = draws per replicate and tree depth.
SIZES = {
    "full": dict(
        T=800, num_warmup=1000, num_samples=1000, num_chains=4,
        replicates=50, reps_T=300, reps_draws=500, depth=8,
    ),
    "quick": dict(
        T=300, num_warmup=200, num_samples=200, num_chains=2,
        replicates=10, reps_T=60, reps_draws=100, depth=4,
    ),
    "smoke": dict(
        T=40, num_warmup=30, num_samples=30, num_chains=2,
        replicates=2, reps_T=20, reps_draws=10, depth=3,
    ),
}  # fmt: skip


def simulate(seed: int, num_obs: int):
    """Irregular times, true states and current from the true model."""
    k_t, k_y = jax.random.split(jax.random.PRNGKey(seed))
    gaps = MEAN_GAP * jax.random.exponential(k_t, (num_obs,))
    times = jnp.cumsum(gaps)
    Q = ic.generator(jnp.asarray(ic.TRUE_PARAMS["rates"]))
    hmm = ObservedCTMC(
        Q,
        stationary_distribution(Q),
        times,
        ic.emission(ic.TRUE_PARAMS["i_open"], ic.TRUE_PARAMS["sigma"]),
    )
    states, y = hmm.sample_with_states(k_y)
    return np.asarray(times), np.asarray(states), np.asarray(y)


def _parse(argv):
    p = study_parser(NAME, __doc__, "smaller data, fewer draws (< 2 min)", sizes=SIZES)
    p.add_argument(
        "--replicates",
        type=int,
        default=None,
        help="data sets in the coverage study (default 50; 10 with --quick, 2 with --smoke)",
    )
    return p.parse_args(argv)


def _flat(post, name):
    x = np.asarray(post[name])
    return x.reshape((-1,) + x.shape[2:])


def _state_posterior(samples, times, y, num_draws=200):
    """Smoothed state probabilities averaged over posterior draws, shape (T, 3)."""
    n = samples["rates"].shape[0]
    idx = np.linspace(0, n - 1, min(num_draws, n)).astype(int)

    def one(rates, i_open, sigma):
        Q = ic.generator(rates)
        d = ObservedCTMC(Q, stationary_distribution(Q), times, ic.emission(i_open, sigma))
        return d.smooth(y).smoothed_probs

    probs = jax.jit(jax.vmap(one))(
        jnp.asarray(samples["rates"][idx]),
        jnp.asarray(samples["i_open"][idx]),
        jnp.asarray(samples["sigma"][idx]),
    )
    return np.asarray(probs.mean(0))


def _interval_rows(samples):
    Q = ic.generator(jnp.asarray(ic.TRUE_PARAMS["rates"]))
    truth = {
        "rates": ic.TRUE_PARAMS["rates"],
        "i_open": ic.TRUE_PARAMS["i_open"],
        "sigma": ic.TRUE_PARAMS["sigma"],
        "stationary": np.asarray(stationary_distribution(Q)),
        "mean_dwell": np.asarray(-1.0 / jnp.diagonal(Q)),
    }
    labels = {
        "rates": list(ic.RATE_NAMES),
        "stationary": [f"pi[{s}]" for s in ic.STATES],
        "mean_dwell": [f"dwell[{s}] (ms)" for s in ic.STATES],
    }
    return interval_rows(samples, truth, labels)


def _coverage_study(seed, num_reps, num_obs, num_warmup, num_samples, max_tree_depth):
    from probdyn.report import replicate_coverage

    sims = [simulate(seed + 1000 + r, num_obs) for r in range(num_reps)]
    times = np.stack([s[0] for s in sims])
    current = np.stack([s[2] for s in sims])
    return replicate_coverage(
        ic.model,
        {"times": times, "current": current},
        {"log_rates": np.log(ic.TRUE_PARAMS["rates"])},
        levels=(0.5, 0.9),
        num_warmup=num_warmup,
        num_samples=num_samples,
        seed=seed + 7,
        # all replicates advance together, each NUTS step as long as the deepest tree
        # among them: a cap keeps one awkward replicate from stalling the rest
        max_tree_depth=max_tree_depth,
    )


def _figures(out: Path, times, states, y, state_probs, samples, idata, cov):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from probdyn.report import plot_state_posterior, plot_trace

    n = min(len(times), 200)
    fig, axes = plt.subplots(2, 1, figsize=(10, 4.5), sharex=True)
    axes[0].plot(times[:n], y[:n], ".-", lw=0.6, ms=3, color="k", label="current")
    axes[0].set_ylabel("current (pA)")
    axes[0].legend(loc="upper right")
    axes[1].step(times[:n], states[:n], where="post", color="C1", label="true state")
    axes[1].step(
        times[:n],
        state_probs[:n].argmax(-1),
        where="post",
        color="C0",
        ls="--",
        label="most probable (posterior)",
    )
    axes[1].set_yticks(range(3), ic.STATES)
    axes[1].set_xlabel("time (ms)")
    axes[1].legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(out / "current_and_states.png", dpi=110)
    plt.close(fig)

    plot_state_posterior(
        times[:n], state_probs[:n], true_states=states[:n], path=out / "state_posterior.png"
    )

    rates = np.asarray(samples["rates"])
    fig, axes = plt.subplots(1, 4, figsize=(12, 2.8))
    for j, ax in enumerate(axes):
        ax.hist(rates[:, j], bins=40, density=True, color="C0", alpha=0.8)
        ax.axvline(ic.TRUE_PARAMS["rates"][j], color="C1", lw=2, label="truth")
        ax.set_title(f"{ic.RATE_NAMES[j]} (1/ms)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out / "rates_posterior.png", dpi=110)
    plt.close(fig)

    cov.plot(out / "coverage.png")
    plot_trace(idata, out / "trace.png", var_names=["log_rates", "i_open", "sigma"])


def _report(metrics, rows, cov, diagnostics_md: str) -> list[str]:
    lines = [
        "# ion_channel: gating rates of a C <-> O <-> I channel with NUTS",
        "",
        doc_as_markdown(__doc__),
        "",
        "## Result",
        "",
        size_note(metrics["size"]),
        f"- R-hat max: **{metrics['rhat_max']:.4f}**, bulk ESS min: "
        f"**{metrics['ess_bulk_min']:.0f}**, divergences: **{metrics['divergences']}**",
        f"- true values inside the 90% interval: **{metrics['coverage_90']:.0%}** of "
        f"{len(rows)} quantities",
        f"- hidden state: the posterior most probable state is right at "
        f"**{metrics['state_accuracy']:.1%}** of the samples",
        f"- replicate coverage of the four true rates by 90% intervals over "
        f"{metrics['coverage_replicates']} data sets: **"
        + ", ".join(f"{c:.0%}" for c in metrics["replicate_coverage_90"])
        + f"** (mean {metrics['replicate_coverage_90_mean']:.0%}); 50% intervals: "
        + ", ".join(f"{c:.0%}" for c in metrics["replicate_coverage_50"]),
        f"- time: fit {metrics['fit_seconds']:.1f} s, coverage study "
        f"{metrics['coverage_seconds']:.1f} s (compilation included)",
        "",
        "## Parameters against the truth",
        "",
        interval_table_markdown(rows),
    ]
    lines += [
        "",
        "## Coverage over replicate experiments (log-rates)",
        "",
        cov.to_markdown(),
        "",
        "## Diagnostics",
        "",
        diagnostics_md,
        "",
        "## Figures",
        "",
        "![current and states](current_and_states.png)",
        "",
        "![state posterior](state_posterior.png)",
        "",
        "![rates posterior](rates_posterior.png)",
        "",
        "![coverage](coverage.png)",
        "",
        "![trace](trace.png)",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the study; returns 0 on success."""
    from probdyn import fit
    from probdyn.report import summary

    args = _parse(argv)
    out = prepare_output_dir(args.out, overwrite=args.overwrite)
    size, cfg = chosen_size(args, SIZES)
    T, num_warmup, num_samples = cfg["T"], cfg["num_warmup"], cfg["num_samples"]
    num_chains = args.num_chains or cfg["num_chains"]

    times, states, y = simulate(args.seed, T)
    t0 = time.perf_counter()
    idata = fit(
        ic.model,
        jnp.asarray(times),
        method="nuts",
        model_kwargs={"current": jnp.asarray(y)},
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        seed=args.seed + 1,
        progress_bar=not args.no_progress,
        dims={
            "log_rates": ["rate"],
            "rates": ["rate"],
            "stationary": ["state"],
            "mean_dwell": ["state"],
            "current": ["time"],
        },
        coords={"rate": list(ic.RATE_NAMES), "state": list(ic.STATES), "time": times},
        constant_data={"true_states": states},
    )
    fit_seconds = time.perf_counter() - t0
    post = idata.posterior
    samples = {k: _flat(post, k) for k in ("rates", "i_open", "sigma", "stationary", "mean_dwell")}
    var_names = ["log_rates", "i_open", "sigma"]
    diagnostics = summary(idata, var_names=var_names)
    state_probs = _state_posterior(samples, jnp.asarray(times), jnp.asarray(y))
    rows = _interval_rows(samples)

    t1 = time.perf_counter()
    reps_T, reps_draws, depth = cfg["reps_T"], cfg["reps_draws"], cfg["depth"]
    num_reps = args.replicates or cfg["replicates"]
    cov = _coverage_study(args.seed, num_reps, reps_T, reps_draws, reps_draws, depth)
    coverage_seconds = time.perf_counter() - t1

    metrics = {
        "size": size,
        "num_obs": T,
        "num_chains": num_chains,
        "num_samples": num_samples,
        "seed": args.seed,
        **nuts_metrics(idata, var_names),
        "coverage_90": float(np.mean([r["covered"] for r in rows])),
        "state_accuracy": float(np.mean(state_probs.argmax(-1) == states)),
        "coverage_replicates": cov.num_replicates,
        "coverage_obs_per_replicate": reps_T,
        "replicate_coverage_90": [float(c) for c in cov.coverage[:, 1]],
        "replicate_coverage_50": [float(c) for c in cov.coverage[:, 0]],
        "replicate_coverage_90_mean": float(cov.coverage[:, 1].mean()),
        "replicate_coverage_pvalues_90": [float(p) for p in cov.pvalues[:, 1]],
        "replicate_divergences": int(cov.divergences.sum()),
        "diagnostics_ok": bool(diagnostics.ok),
        "diagnostics_problems": list(diagnostics.problems),
        "fit_seconds": fit_seconds,
        "coverage_seconds": coverage_seconds,
        "parameters": rows,
    }
    _figures(out, times, states, y, state_probs, samples, idata, cov)
    write_outputs(out, idata, metrics, _report(metrics, rows, cov, diagnostics.to_markdown()))
    print(
        f"{NAME}: R-hat max {metrics['rhat_max']:.3f}, divergences {metrics['divergences']}, "
        f"90% intervals cover {metrics['coverage_90']:.0%} of the truth; replicate coverage "
        f"{metrics['replicate_coverage_90_mean']:.0%} (nominal 90%)\n"
        f"wrote {out}/ (report.md, idata.nc, metrics.json, PNGs)"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
