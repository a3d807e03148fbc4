"""Tests for probdyn.report.render."""

import json

import numpy as np
import pytest

from probdyn.report.idata import to_inference_data
from probdyn.report.render import GENERATED_MARKER, render_report


def _write_idata(folder):
    rng = np.random.default_rng(0)
    idata = to_inference_data(
        {"mu": rng.normal(size=(2, 200)), "sigma": 1 + rng.random((2, 200))},
        sample_stats={
            "diverging": np.zeros((2, 200), bool),
            "energy": rng.normal(size=(2, 200)),
        },
    )
    idata.attrs["method"] = "nuts"
    folder.mkdir(parents=True, exist_ok=True)
    idata.to_netcdf(folder / "idata.nc")
    return folder / "idata.nc"


def test_render_folder_writes_report_and_figures(tmp_path):
    out = tmp_path / "run"
    _write_idata(out)
    (out / "metrics.json").write_text(json.dumps({"crps": 0.123456, "coverage": {"0.9": 0.88}}))
    target = render_report(out)
    assert target == out / "report.md"
    text = target.read_text()
    assert text.startswith(GENERATED_MARKER)
    assert "## Diagnostics" in text and "| mu |" in text and "method `nuts`" in text
    assert "| crps | 0.1235 |" in text and "| coverage.0.9 | 0.88 |" in text
    assert (out / "trace.png").stat().st_size > 0 and (out / "rank.png").stat().st_size > 0
    assert "![trace](trace.png)" in text and "![rank](rank.png)" in text
    # regenerating a generated report is allowed; passing the .nc file works too
    assert render_report(out / "idata.nc") == out / "report.md"


def test_render_never_overwrites_a_case_study_report(tmp_path):
    out = tmp_path / "study"
    _write_idata(out)
    (out / "report.md").write_text("# My case study\n")
    target = render_report(out, make_figures=False)
    assert target.name == "report_diagnostics.md"
    assert (out / "report.md").read_text() == "# My case study\n"
    assert not (out / "trace.png").exists()
    (out / "report_diagnostics.md").write_text("hand written\n")
    with pytest.raises(FileExistsError, match="report_diagnostics.md"):
        render_report(out)


def test_render_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="idata.nc"):
        render_report(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        render_report(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="path"):
        render_report(tmp_path / "x.txt")
