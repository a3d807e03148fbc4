"""Every case study runs end to end with --quick and writes the promised outputs."""

import importlib
import json
import pkgutil

import arviz as az
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


# What each study's --quick run must show, beyond writing its files.
CHECKS = {"hmm_regimes": _check_hmm_regimes}


def test_every_case_study_has_checks():
    assert "hmm_regimes" in STUDIES
    assert set(STUDIES) <= set(CHECKS), "add the new case study's checks to CHECKS"


@pytest.mark.parametrize("name", STUDIES)
def test_case_study_quick(name, tmp_path):
    module = importlib.import_module(f"probdyn.case_studies.{name}")
    out = tmp_path / name
    assert module.main(["--quick", "--out", str(out), "--no-progress"]) == 0
    for required in ("idata.nc", "metrics.json", "report.md"):
        assert (out / required).stat().st_size > 0, required
    assert list(out.glob("*.png")), "no figures written"
    idata = az.from_netcdf(out / "idata.nc")
    assert "posterior" in idata.groups() and "log_likelihood" in idata.groups()
    CHECKS[name](json.loads((out / "metrics.json").read_text()))
    # a second run without --overwrite must refuse to touch the folder
    with pytest.raises(FileExistsError, match="overwrite"):
        module.main(["--quick", "--out", str(out), "--no-progress"])
