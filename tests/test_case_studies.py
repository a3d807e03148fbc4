"""Every case study runs end to end: ``--smoke`` in the default suite, ``--quick`` (with the
checks of what it must show) with the slow tests, as numpyro's test/test_examples.py does.

To add a study: give it ``--smoke`` (``probdyn.report.study.study_parser(..., sizes=SIZES)``),
a line in SMOKE_ARGS if its smoke run needs extra arguments, and its checks in CHECKS.
"""

import importlib
import json
import math
import os
import pkgutil
import subprocess
import sys

import numpy as np
import pytest

import probdyn.case_studies
from probdyn.cli import main as cli_main
from probdyn.report import from_netcdf, group_names
from probdyn.report.output import MANIFEST_NAME

STUDIES = sorted(m.name for m in pkgutil.iter_modules(probdyn.case_studies.__path__))
# Extra arguments of a study's --smoke run (default: none).
SMOKE_ARGS = {"barnn_pde": ["--methods", "deterministic,barnn"]}
# Smoke runs too slow for the default suite (they run with the slow tests); the goal is none.
# (barnn_sequences --smoke: 35 s of CPU with SMOKE_XLA_FLAGS, now in the default suite)
SLOW_SMOKE: set[str] = set()
# A smoke run compiles much and computes little: it runs in a process of its own, through
# `probdyn run` (as numpyro's test_examples runs its examples), with XLA's backend
# optimisation off, which cuts its compile time by about a third (hmm_regimes --smoke:
# 61 -> 40 s of CPU) and leaves no compiled programs behind in the test process.
SMOKE_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
# Studies without a --smoke size yet, and why (skipped); the goal is none.
NO_SMOKE: dict[str, str] = {}


def _check_hmm_regimes(m):
    assert m["divergences"] == 0
    assert m["rhat_max"] < 1.05
    assert m["viterbi_accuracy"] > 0.9
    assert m["viterbi_accuracy_per_draw"] > 0.9  # from fit(..., hidden_states=True)
    # 12 parameters, 90% intervals: 8 or more covered has probability > 0.99 when calibrated
    assert m["coverage_90"] >= 8 / 12
    assert 0.75 <= m["coverage_90_predictive"] <= 1.0


def _check_lotka_volterra_ssa(m):
    assert m["coverage_90"] >= 2 / 3
    assert 0.03 <= m["accept_rate"] <= 0.5
    # the filter is sized so that the log-likelihood estimate is informative (sd ~ 1)
    assert m["loglik_sd_at_mean"] < 3.0


def _check_sir_epidemic(m):
    # PMMH with exact Gillespie propagation targets the exact posterior
    for q in ("beta", "gamma", "R0"):
        assert abs(m["vs_exact"]["PMMH Gillespie"][q]["shift_sd"]) < 0.6
    assert m["grid_nan"] == 0 and m["grid_edge_mass"] < 0.01
    assert sum(m["exact_covers_truth_90"].values()) >= 2


def _check_double_well(m):
    assert m["divergences"] == 0
    assert m["rhat_max"] < 1.01  # theta, sigma
    assert m["rhat_max_latent"] < 1.05  # every latent scalar, 2 chains
    assert m["mean_leapfrog_steps"] < 64  # the forward (non-bridge) form needs ~250
    assert m["coverage_90"] >= 0.5
    assert m["path_coverage_90"] >= 0.75
    assert m["rate_covered"]
    se = m["true_rate_simulated_se"]
    exact = m["true_rate_exact"]
    assert abs(m["true_rate_simulated"] - exact) < 4 * se + 0.03 * exact


def _check_langevin_neural(m):
    for name in ("langevin", "lds", "latent_sde"):
        assert 0.03 < m[f"{name}_co_bps"] <= m["oracle_co_bps"] + 0.02
        assert m[f"{name}_fp_bps"] > 0.0
        assert m[f"{name}_rate_r2"] > 0.4
    assert m["langevin_latent_r2"] > 0.5


def _check_latent_sde_lorenz(m):
    assert m["all_finite"]
    assert m["loss_end"] < 0.05 * m["loss_start"]
    assert m["recon_rmse"] < 0.12
    assert 0.75 <= m["recon_coverage_90"] <= 1.0
    assert m["forecast_rmse"] < 0.6 * m["persistence_rmse"]
    # measured 0.63-0.71: the learned diffusion is too small (reported in the study)
    assert 0.4 <= m["forecast_coverage_90"] <= 1.0
    assert m["test_elbo_per_obs"] > -3.0
    assert all(0.4 < s < 1.6 for s in m["prior_sample_sd"])


def _check_flashing_ratchet(m):
    assert m["divergences"] == 0
    assert m["rhat_max"] < 1.05
    # V, r, current, entropy production: 2 or more covered has probability > 0.99
    assert m["coverage_90"] >= 0.5
    assert not m["hidden_path_overflow"]


def _check_ion_channel(m):
    assert m["divergences"] == 0 and m["replicate_divergences"] == 0
    assert m["rhat_max"] < 1.05
    # 12 quantities, functions of 6 parameters: they miss together
    assert m["coverage_90"] >= 0.5
    assert m["state_accuracy"] > 0.6
    # --quick keeps 10 replicates (50 in the full run) to stay near 2 minutes of one core
    assert m["coverage_replicates"] >= 10
    # measured with --quick (10 replicates of 15 ms, tree depth 4): 1.0, 0.9, 1.0, 0.5
    # (with 50 of 37 ms, depth 6: 1.0, 0.94, 1.0, 0.48); k_IO (few visits to I per
    # replicate) is under-covered: an open finding, not hidden. For calibrated intervals
    # the mean over the 4 rates has sd <= sqrt(0.9 * 0.1 / 10) = 0.095 (rates missing
    # together), so 0.75 is 1.6 sd below 0.9 at worst and 3 sd with independent misses
    assert m["replicate_coverage_90_mean"] >= 0.75


def _check_barnn_pde(m):
    assert m["all_finite"]
    for eq, table in m["tables"].items():
        assert set(table) == set(m["methods"]), eq
        det = table["deterministic"]
        # no spread: infinite NLL; every PIT value is 0 or 1, so the calibration curve is
        # flat at the fraction f of truths below the forecast and ECE = mean|p - f| >= 1/4
        assert det["nll"] == float("inf") and det["ece"] >= 0.25 - 1e-9
        for method, row in table.items():
            if method != "deterministic":
                assert math.isfinite(row["nll"]), (eq, method)
                assert 0.0 <= row["ece"] <= 0.5 and row["spread_skill"] > 0, (eq, method)
        assert set(m["claims"][eq]) >= {"barnn_lowest_nll", "barnn_lowest_ece"}


def _check_barnn_sequences(m):
    table = m["table"]
    assert set(table) == {"lstm", "dropout", "barnn"}
    for method, row in table.items():
        for key in ("validity", "uniqueness", "novelty", "ece", "accuracy"):
            assert 0.0 <= row[key] <= 1.0, (method, key)
        # 9 tokens: a trained model beats the uniform next-token NLL log(9) = 2.2
        assert row["nll_per_token"] < 2.0, method
        assert row["validity"] > 0.2, method


def _check_hmm_emulator(m):
    for r in m["hmms"].values():
        assert r["all_finite"]
        # training lowers the Sinkhorn loss (measured with --quick: see the report)
        assert r["loss_end"] < r["loss_start"]
        f = r["fidelity"]
        # the HMM-vs-HMM baselines are what a perfect emulator scores
        assert abs(f["log_loss_bits"]["baseline"]["mean"] - f["block_entropy_bits"]) < 1e-12
        assert f["ngram_kl_bits"]["baseline"]["1"] < 0.01
        assert np.isfinite(r["round_trip"]["transition_max_abs_error"])
    # the analysis either ran or says why it stopped
    assert set(m["analysis"]) | set(m["analysis_errors"]) == {"linear2"}


# What each study's --quick run must show, beyond writing its files (slow tests).
CHECKS = {
    "barnn_pde": _check_barnn_pde,
    "barnn_sequences": _check_barnn_sequences,
    "hmm_emulator": _check_hmm_emulator,
    "flashing_ratchet": _check_flashing_ratchet,
    "ion_channel": _check_ion_channel,
    "latent_sde_lorenz": _check_latent_sde_lorenz,
    "langevin_neural": _check_langevin_neural,
    "double_well": _check_double_well,
    "hmm_regimes": _check_hmm_regimes,
    "lotka_volterra_ssa": _check_lotka_volterra_ssa,
    "sir_epidemic": _check_sir_epidemic,
}
# Studies whose --quick run takes minutes (particle MCMC, neural-network training) run
# with the slow tests (make test-all); their machinery has fast tests of its own.
SLOW = {
    "barnn_pde",
    "barnn_sequences",
    "hmm_emulator",
    "ion_channel",
    "langevin_neural",
    "latent_sde_lorenz",
    "lotka_volterra_ssa",
    "sir_epidemic",
}


def test_every_case_study_has_checks():
    assert "hmm_regimes" in STUDIES
    assert set(STUDIES) <= set(CHECKS), "add the new case study's checks to CHECKS"
    assert set(SMOKE_ARGS) | set(SLOW_SMOKE) | set(NO_SMOKE) <= set(STUDIES)


def _run(module, size, out, extra=()):
    return module.main([f"--{size}", "--out", str(out), "--no-progress", *extra])


def _nan_paths(obj, path="metrics"):
    """Where a NaN hides in a JSON document (infinities can be meaningful: an NLL of +inf)."""
    if isinstance(obj, float) and math.isnan(obj):
        return [path]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _nan_paths(v, f"{path}[{k!r}]")]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _nan_paths(v, f"{path}[{i}]")]
    return []


def _check_outputs(name, out):
    """What every run writes, whatever its size; returns the metrics."""
    for required in ("idata.nc", "metrics.json", "report.md"):
        assert (out / required).stat().st_size > 0, required
    assert list(out.glob("*.png")), "no figures written"
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    written = {
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and p.name != MANIFEST_NAME
    }
    assert set(manifest["files"]) == written, "the manifest lists exactly the files written"
    idata = from_netcdf(out / "idata.nc")
    assert "posterior" in group_names(idata)
    # PMMH has no pointwise log-likelihood (one noisy estimate per draw is not one)
    if idata.attrs.get("method") != "pmmh":
        assert "log_likelihood" in group_names(idata), name
    report = (out / "report.md").read_text()
    assert report.startswith(f"# {name}"), "the report opens with the study's name"
    assert "## Result" in report, "the report states its result"
    return json.loads((out / "metrics.json").read_text())


def _smoke_param(name):
    if name in NO_SMOKE:
        return pytest.param(name, marks=pytest.mark.skip(reason=NO_SMOKE[name]))
    if name in SLOW_SMOKE:
        return pytest.param(name, marks=pytest.mark.slow)
    return name


@pytest.mark.integration
@pytest.mark.parametrize("name", [_smoke_param(n) for n in STUDIES])
def test_case_study_smoke(name, tmp_path, capsys):
    """The whole pipeline at tiny sizes: files, finite metrics, a report, the manifest."""
    out = tmp_path / name
    argv = ["run", name, "--smoke", "--out", str(out), "--no-progress", *SMOKE_ARGS.get(name, ())]
    flags = f"{os.environ.get('XLA_FLAGS', '')} {SMOKE_XLA_FLAGS}".strip()
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from probdyn.cli import main; sys.exit(main())"] + argv,
        env={**os.environ, "XLA_FLAGS": flags},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    metrics = _check_outputs(name, out)
    assert metrics, "no metrics"
    assert not _nan_paths(metrics), _nan_paths(metrics)
    if "all_finite" in metrics:
        assert metrics["all_finite"]
    # a second run without --overwrite refuses to touch the folder, before any work
    before = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    assert cli_main(argv) == 1
    assert "overwrite" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == before


@pytest.mark.slow
@pytest.mark.parametrize("name", STUDIES)
def test_case_study_quick(name, tmp_path):
    """The --quick run shows what the study is about (CHECKS)."""
    module = importlib.import_module(f"probdyn.case_studies.{name}")
    out = tmp_path / name
    assert _run(module, "quick", out) == 0
    CHECKS[name](_check_outputs(name, out))
