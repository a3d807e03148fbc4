"""Every case study runs end to end with --quick and writes the promised outputs."""

import importlib
import json
import math
import pkgutil

import arviz as az
import numpy as np
import pytest

import probdyn.case_studies

STUDIES = sorted(m.name for m in pkgutil.iter_modules(probdyn.case_studies.__path__))


def _check_hmm_regimes(m):
    assert m["divergences"] == 0
    assert m["rhat_max"] < 1.05
    assert m["viterbi_accuracy"] > 0.9
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
    assert m["coverage_replicates"] >= 50
    # measured with --quick: 1.0, 0.94, 1.0, 0.48; k_IO (few visits to I in 37 ms per
    # replicate, tree depth capped at 6) is under-covered: an open finding, not hidden
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


# What each study's --quick run must show, beyond writing its files.
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


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in STUDIES]
)
def test_case_study_quick(name, tmp_path):
    module = importlib.import_module(f"probdyn.case_studies.{name}")
    out = tmp_path / name
    assert module.main(["--quick", "--out", str(out), "--no-progress"]) == 0
    for required in ("idata.nc", "metrics.json", "report.md"):
        assert (out / required).stat().st_size > 0, required
    assert list(out.glob("*.png")), "no figures written"
    idata = az.from_netcdf(out / "idata.nc")
    assert "posterior" in idata.groups()
    # PMMH has no pointwise log-likelihood (one noisy estimate per draw is not one)
    if idata.attrs.get("method") != "pmmh":
        assert "log_likelihood" in idata.groups(), name
    CHECKS[name](json.loads((out / "metrics.json").read_text()))
    # a second run without --overwrite must refuse to touch the folder
    with pytest.raises(FileExistsError, match="overwrite"):
        module.main(["--quick", "--out", str(out), "--no-progress"])


# Tiny sizes of the neural-surrogate studies, in the default suite (their --quick runs take
# minutes and run with the slow tests).
SMOKE = {"barnn_pde": ["--methods", "deterministic,barnn"], "barnn_sequences": []}
# barnn_sequences --smoke compiles three LSTM fits (~90 s of one core): with the slow tests
SLOW_SMOKE = {"barnn_sequences"}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_SMOKE else n for n in sorted(SMOKE)],
)
def test_case_study_smoke(name, tmp_path):
    module = importlib.import_module(f"probdyn.case_studies.{name}")
    out = tmp_path / name
    assert module.main(["--smoke", "--out", str(out), "--no-progress", *SMOKE[name]]) == 0
    for required in ("idata.nc", "metrics.json", "report.md"):
        assert (out / required).stat().st_size > 0, required
    assert list(out.glob("*.png")), "no figures written"
    idata = az.from_netcdf(out / "idata.nc")
    assert {"posterior", "log_likelihood"} <= set(idata.groups())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["all_finite"]


@pytest.mark.slow
def test_hmm_emulator_smoke(tmp_path):
    """Smoke run at meaningless sizes, no dynamics analysis. Still slow: 438 s of pytest
    time on the loaded 2-core machine (compilation of the fidelity metrics and NUTS)."""
    from probdyn.case_studies import hmm_emulator

    out = tmp_path / "smoke"
    assert hmm_emulator.main(["--smoke", "--out", str(out), "--no-progress"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["size"] == "smoke" and m["hmms"]["linear2"]["all_finite"]
    assert (out / "report.md").read_text().startswith("# hmm_emulator")
    assert list(out.glob("*.png"))
