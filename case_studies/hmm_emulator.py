"""HMM emulators: noise-driven RNNs trained to reproduce hidden Markov models.

Question
    Can a noise-driven ReLU RNN, trained only to match sample sequences through a Sinkhorn
    divergence, reproduce a hidden Markov model's output process, and how does it do it?
    Torre et al. (2025) report that the trained networks collapse to a single stable fixed
    point without input noise, that noise sustains orbits around it whose radius grows
    with the noise, and that a few "kick" units drive the switches: ablating them traps
    the dynamics.

Data
    Sequences of the paper's 2-state linear chain (T = 100), 3-state fully connected
    (T = 30) and 4-state cyclic (T = 40) HMMs (``probdyn.models.hmm_zoo``), 3 symbols; a
    fresh batch every training step.

Model
    ``probdyn.nn.HMMEmulator`` (h_t = ReLU(W_hh h_{t-1} + W_ih x_t), x_t ~ N(0, I), linear
    readout, straight-through Gumbel-softmax symbols) trained by
    ``probdyn.infer.train_emulator`` (Sinkhorn divergence, blur 0.2, Adam 3e-3 with betas
    (0.9, 0.9), gradient clipping 0.9, batch 512). Fidelity with ``probdyn.report``: the
    paper's sample statistics with HMM-vs-HMM baselines of the same size, the HMM's exact
    per-symbol log-likelihood of emulator sequences against its block entropy, n-gram KLs,
    Viterbi dwell times; the round trip fits a categorical HMM with NUTS to emulator
    sequences. Mechanistic analysis of the 2-state emulator with ``probdyn.analysis``.

What the result should show
    Emulator metrics close to the HMM-vs-HMM baselines (cross-entropy gap near 0 bits,
    n-gram KLs of the baseline's order), a round-trip transition matrix near the truth,
    and, if the paper's findings reproduce, one stable fixed point without noise, an orbit
    radius growing with the noise and kick-unit ablation lowering the switching rate more
    than ablating random units. On this CPU the networks are trained far less than in the
    paper (hundreds of steps at batch 512 instead of thousands at batch 4,096). The
    training starts every unit as a leaky integrator (W_hh = 0.9 I + 0.15 U, readout x4,
    lr 3e-3; see ``probdyn.infer.train_emulator``): from PyTorch's start, as the reference
    code, short CPU training stays at the i.i.d. solution (right symbol frequencies, no
    stickiness). With this start the 2-state emulator's training loss reaches the
    HMM-vs-HMM value of its batch size while the emulator is still too volatile (about
    1.5x the HMM's symbol changes): at batch 512 the divergence hardly tells these
    apart. The report states the measured numbers.

Outputs (in ``--out``, default ``results/hmm_emulator``): ``idata.nc`` (round-trip NUTS
fit of the 2-state chain), ``metrics.json``, ``report.md``, ``training.png``,
``fidelity.png``, ``transition_matrices.png`` and the analysis figures.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np

from probdyn.models import hmm_zoo
from probdyn.report.output import prepare_output_dir
from probdyn.report.study import (
    chosen_size,
    doc_as_markdown,
    interval_table_markdown,
    size_note,
    study_parser,
    write_outputs,
)

NAME = "hmm_emulator"
HMMS = ("linear2", "fully_connected", "cyclic")

# (hidden_size, noise_dim, batch_size, steps per HMM, evaluation sequences, round-trip
#  sequences, NUTS warmup/samples, HMMs analysed)
SIZES = {
    "full": dict(hidden=150, noise=100, batch=512, steps=600, num_eval=2000, num_rt=200,
                 nuts=(400, 400), hmms=HMMS, analyse=HMMS),
    "quick": dict(hidden=64, noise=32, batch=256, steps=200, num_eval=500, num_rt=40,
                  nuts=(100, 100), hmms=HMMS, analyse=("linear2",)),
    "smoke": dict(hidden=8, noise=4, batch=16, steps=3, num_eval=40, num_rt=10,
                  nuts=(10, 10), hmms=("linear2",), analyse=()),
}  # fmt: skip


def _parse(argv):
    p = study_parser(
        NAME,
        __doc__,
        "smaller networks, fewer steps, analysis of the 2-state emulator (< 2 min of CPU)",
        sizes=SIZES,
        smoke_help="smoke-test sizes for the test suite (about 30 s of CPU; meaningless; "
        "no analysis)",
    )
    p.add_argument("--tiny", action="store_true", dest="smoke", help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=None, help="training steps per HMM")
    p.add_argument(
        "--recurrent-identity",
        type=float,
        default=0.9,
        help="identity added to the initial W_hh (0 is PyTorch's start)",
    )
    p.add_argument(
        "--recurrent-scale",
        type=float,
        default=0.15,
        help="scale of the random part of the initial W_hh (1 is PyTorch's start)",
    )
    p.add_argument("--readout-scale", type=float, default=4.0, help="scale of the initial W_out")
    return p.parse_args(argv)


def _analysis_kwargs(size):
    if size == "full":
        return {}
    if size == "quick":
        return dict(num_timesteps=600, num_starts=40, relaxation_steps=300, optimiser_steps=400,
                    num_trajectories=8, sweep_timesteps=200, num_dwell_states=100,
                    dwell_samples=10, dwell_max_steps=30)  # fmt: skip
    return dict(num_timesteps=60, num_starts=8, relaxation_steps=50, optimiser_steps=30,
                noise_variances=(0.5, 1.0), num_trajectories=2, sweep_timesteps=30,
                num_dwell_states=10, dwell_samples=4, dwell_max_steps=10,
                num_kick_units=2)  # fmt: skip


def _figures(out: Path, results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
    for ax, n in zip(axes[0], names, strict=True):
        ls = results[n]["losses"]
        ax.plot(ls, lw=0.8, label="emulator vs HMM")
        ax.axhline(results[n]["fidelity"]["sinkhorn"]["baseline_train_size"], color="C1",
                   ls="--", label="HMM vs HMM")  # fmt: skip
        ax.set_title(n)
        ax.set_xlabel("step")
        ax.set_ylabel("Sinkhorn divergence")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(out / "training.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
    for ax, n in zip(axes[0], names, strict=True):
        kl = results[n]["fidelity"]["ngram_kl_bits"]
        ns = sorted(kl["emulator"], key=int)
        x = np.arange(len(ns))
        ax.bar(x - 0.2, [kl["emulator"][k] for k in ns], 0.4, label="emulator")
        ax.bar(x + 0.2, [kl["baseline"][k] for k in ns], 0.4, label="HMM sample")
        ax.set_xticks(x, [f"{k}-gram" for k in ns])
        ax.set_yscale("log")
        ax.set_ylabel("KL from the exact HMM (bits)")
        ax.set_title(n)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(out / "fidelity.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 6), squeeze=False)
    for j, n in enumerate(names):
        tm = results[n]["fidelity"]["transition_sq_error"]
        for i, (key, title) in enumerate(
            (("hmm_output_transition_matrix", "HMM"), ("emulator_output_transition_matrix",
                                                        "emulator"))
        ):  # fmt: skip
            m = np.asarray(tm[key])
            axes[i][j].imshow(m, vmin=0, vmax=1, cmap="viridis")
            for (a, b), v in np.ndenumerate(m):
                axes[i][j].text(b, a, f"{v:.2f}", ha="center", va="center", color="w")
            axes[i][j].set_title(f"{n}: {title}")
    fig.tight_layout()
    fig.savefig(out / "transition_matrices.png", dpi=110)
    plt.close(fig)


def _fmt(v, se=None):
    return f"{v:.3g}" if se is None else f"{v:.3f} ± {se:.3f}"


def _fidelity_table(results):
    lines = [
        "| metric | " + " | ".join(f"{n} emulator | {n} HMM baseline" for n in results) + " |",
        "|---|" + "---|---|" * len(results),
    ]

    def row(label, fn):
        cells = []
        for n in results:
            e, b = fn(results[n]["fidelity"])
            cells += [e, b]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    def pair(section, fmt=_fmt):
        return lambda f: (fmt(f[section]["emulator"]), fmt(f[section]["baseline"]))

    def vec(x):
        return ", ".join(f"{v:.3f}" for v in x)

    def loss(x):
        return _fmt(x["mean"], x["se"])

    row("Sinkhorn divergence", pair("sinkhorn"))
    row("output transition sq. error", pair("transition_sq_error"))
    row("volatility (changes / seq)", pair("volatility"))
    row("symbol frequencies", pair("frequencies", vec))
    row("-log2 p_HMM(y) / T (bits)", pair("log_loss_bits", loss))
    for k in (1, 2, 3, 4):
        row(
            f"{k}-gram KL (bits)",
            lambda f, k=k: tuple(_fmt(f["ngram_kl_bits"][w][k]) for w in ("emulator", "baseline")),
        )
    row(
        "Viterbi mean dwell per state",
        lambda f: tuple(
            ", ".join(f"{x:.1f}" for x in f["dwell"][w]) for w in ("emulator_mean", "baseline_mean")
        ),
    )
    return "\n".join(lines)


def _findings(analysis):
    """The paper's three qualitative findings, read off ``probdyn.analysis`` metrics
    (None where the analysis could not decide, e.g. no switches to ablate)."""
    fp, relax = analysis["fixed_points"], analysis["relaxation"]
    fit = analysis["orbit"].get("radius_fit") or {}
    kick = analysis["kick"]
    mus = list(kick.get("mus") or [])

    def at(key, mu):
        vals = kick.get(key)
        if not vals or mu not in mus:
            return None
        return vals[mus.index(mu)]

    rate_k, rate_c = at("rate_kick", 0.0), at("rate_control", 0.0)
    spread = relax.get("spread")
    slope, r2 = fit.get("slope"), fit.get("r_squared")
    return {
        "num_fixed_points": fp["count"],
        "relaxed_point_stability": relax["stability"],
        "relaxed_point_spread": spread,
        "single_stable_fixed_point": bool(
            fp["count"] <= 1
            and relax["stability"] == "stable"
            and spread is not None
            and spread < 1e-2
        ),
        "orbit_radius_slope": slope,
        "orbit_radius_r_squared": r2,
        "orbit_grows_with_noise": None
        if slope is None or r2 is None
        else bool(slope > 0 and r2 > 0.8),
        "kick_analysis_skipped": bool(kick.get("skipped", False)),
        "switch_rate_intact": at("rate_kick", 1.0),
        "switch_rate_kick_ablated": rate_k,
        "switch_rate_control_ablated": rate_c,
        "kick_ablation_traps": None
        if rate_k is None or rate_c is None
        else bool(rate_k < 0.5 * rate_c),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the study; returns 0 on success."""
    from probdyn.infer import train_emulator
    from probdyn.report import fidelity_summary, round_trip_fit, sequence_sinkhorn

    args = _parse(argv)
    out = prepare_output_dir(args.out, overwrite=args.overwrite)
    size, cfg = chosen_size(args, SIZES)
    steps = args.steps or cfg["steps"]
    key = jax.random.PRNGKey(args.seed)
    results, idata, analyses, analysis_errors = {}, None, {}, {}
    t_start = time.perf_counter()
    for i, name in enumerate(cfg["hmms"]):
        hmm = hmm_zoo.reference_hmm(name)
        k_train, k_eval, k_fid, k_base, k_an = jax.random.split(jax.random.fold_in(key, i), 5)
        t0 = time.perf_counter()
        res = train_emulator(
            k_train,
            hmm,
            num_steps=steps,
            batch_size=cfg["batch"],
            hidden_size=cfg["hidden"],
            noise_dim=cfg["noise"],
            recurrent_identity=args.recurrent_identity,
            recurrent_scale=args.recurrent_scale,
            readout_scale=args.readout_scale,
            progress_bar=not args.no_progress,
        )
        train_s = time.perf_counter() - t0
        emu = res.emulator
        T = hmm.num_timesteps
        y = np.asarray(emu.sample(k_eval, cfg["num_eval"], T))
        fid = fidelity_summary(k_fid, hmm, y, sinkhorn_size=min(cfg["num_eval"], 1000))
        # the training loss's own scale: HMM vs HMM at the training batch size
        kb1, kb2 = jax.random.split(k_base)
        fid["sinkhorn"]["baseline_train_size"] = sequence_sinkhorn(
            np.asarray(hmm.sample(kb1, (cfg["batch"],))),
            np.asarray(hmm.sample(kb2, (cfg["batch"],))),
            3,
        )
        _, A, B = hmm_zoo.hmm_matrices(hmm)
        t0 = time.perf_counter()
        rt = round_trip_fit(
            y[: cfg["num_rt"]],
            A,
            B,
            num_warmup=cfg["nuts"][0],
            num_samples=cfg["nuts"][1],
            seed=args.seed + 1,
            progress_bar=not args.no_progress,
        )
        if idata is None:
            idata = rt.idata
        results[name] = {
            "losses": res.losses,
            "train_seconds": train_s,
            "round_trip_seconds": time.perf_counter() - t0,
            "fidelity": fid,
            "round_trip": {
                "transition_max_abs_error": rt.transition_max_abs_error,
                "emission_max_abs_error": rt.emission_max_abs_error,
                "coverage_90": float(np.mean([r["covered"] for r in rt.rows])),
                "rows": rt.rows,
            },
        }
        if name in cfg["analyse"]:
            from probdyn.analysis import analyse_dynamics, analysis_metrics

            fig_dir = out / f"analysis_{name}"
            fig_dir.mkdir()
            try:
                an = analyse_dynamics(
                    k_an,
                    emu.step,
                    emu.readout,
                    emu.hidden_size,
                    emu.noise_dim,
                    out_dir=fig_dir,
                    symbol_names=["a", "b", "c"],
                    **_analysis_kwargs(size),
                )
            except ValueError as err:  # e.g. an emulator that never switches symbols
                analysis_errors[name] = str(err)
                continue
            analyses[name] = analysis_metrics(an)
            results[name]["analysis_figures"] = [str(p.relative_to(out)) for p in an.figures]
    _figures(out, results)
    metrics = {
        "size": size,
        "seed": args.seed,
        "steps": steps,
        "batch_size": cfg["batch"],
        "hidden_size": cfg["hidden"],
        "noise_dim": cfg["noise"],
        "recurrent_identity": args.recurrent_identity,
        "recurrent_scale": args.recurrent_scale,
        "readout_scale": args.readout_scale,
        "seconds": time.perf_counter() - t_start,
        "hmms": {
            n: {k: v for k, v in r.items() if k != "losses"}
            | {
                "loss_start": float(r["losses"][:10].mean()),
                "loss_end": float(r["losses"][-10:].mean()),
                "all_finite": bool(np.all(np.isfinite(r["losses"]))),
            }  # fmt: skip
            for n, r in results.items()
        },
        "analysis": analyses,
        "analysis_errors": analysis_errors,
        "findings": {n: _findings(a) for n, a in analyses.items()},
    }
    report = _report(metrics, results)
    write_outputs(out, idata, metrics, report, json_default=_json_default)
    print(f"{NAME}: wrote {out}/ (report.md, idata.nc, metrics.json, PNGs)")
    return 0


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def _report(metrics, results) -> list[str]:
    m = metrics
    lines = [
        "# hmm_emulator: RNNs emulating hidden Markov models",
        "",
        doc_as_markdown(__doc__),
        "",
        "## Setup of this run",
        "",
        f"- sizes `{m['size']}`: hidden {m['hidden_size']}, noise dimension {m['noise_dim']}, "
        f"batch {m['batch_size']}, {m['steps']} steps per HMM, initial W_hh = "
        f"{m['recurrent_identity']} I + {m['recurrent_scale']} U and W_out x "
        f"{m['readout_scale']}; total time "
        f"{m['seconds']:.0f} s",
        size_note(m["size"]),
        "",
        "## Results: fidelity (emulator against an independent HMM sample of the same size)",
        "",
        "Every metric compares each side with the exact HMM or with a third HMM sample; the "
        "HMM-baseline column is what a perfect emulator would score. The per-symbol "
        "log-loss of HMM samples estimates the HMM's block entropy H_T / T at the paper's "
        "T (Monte Carlo, ± one standard error); the emulator's is its cross-entropy.",
        "",
        _fidelity_table(results),
        "",
        "| HMM | training loss start -> end | HMM-vs-HMM loss at the batch size | "
        "cross-entropy gap (bits/symbol) | round-trip max abs error A | B | "
        "90% intervals covering the truth |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, r in m["hmms"].items():
        g = r["fidelity"]["cross_entropy_gap_bits"]
        rt = r["round_trip"]
        lines.append(
            f"| {n} | {r['loss_start']:.2f} -> {r['loss_end']:.2f} | "
            f"{r['fidelity']['sinkhorn']['baseline_train_size']:.2f} | "
            f"{g['mean']:.3f} ± {g['se']:.3f} | {rt['transition_max_abs_error']:.3f} | "
            f"{rt['emission_max_abs_error']:.3f} | {rt['coverage_90']:.0%} |"
        )
    first = next(iter(m["hmms"]))
    lines += [
        "",
        f"### Round trip for {first}: NUTS fit of a categorical HMM to emulator sequences",
        "",
        interval_table_markdown(m["hmms"][first]["round_trip"]["rows"]),
        "",
        "## The paper's qualitative findings",
        "",
    ]
    if not m["findings"]:
        lines.append("No analysis completed.")
    for n, err in m["analysis_errors"].items():
        lines += [f"**{n}**: the analysis stopped: {err}", ""]
    for n, f in m["findings"].items():
        lines.append(f"**{n}**: " + ", ".join(f"{k} = {v}" for k, v in f.items()))
        lines.append("")
    lines += ["", "## Figures", "", "![training](training.png)", "",
              "![fidelity](fidelity.png)", "", "![transition matrices](transition_matrices.png)",
              ""]  # fmt: skip
    for r in m["hmms"].values():
        for p in r.get("analysis_figures", []):
            lines += [f"![{p}]({p})", ""]
    return lines


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
