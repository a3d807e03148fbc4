"""Tests for the probdyn command line, with a fake case study in a temporary folder."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import probdyn
from probdyn import case_studies
from probdyn.cli import available_case_studies, main
from probdyn.report.output import MANIFEST_NAME

FAKE_STUDY = '''"""Fake study: writes the contract's files.

More text that `probdyn list` must not show.
"""

import argparse
import json

from probdyn.report.output import prepare_output_dir

CALLS = []


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/fake_study")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--extra", default=None)
    args = parser.parse_args(argv)
    CALLS.append(list(argv or []))
    out = prepare_output_dir(args.out, overwrite=args.overwrite)
    (out / "metrics.json").write_text(json.dumps({"seed": args.seed, "quick": args.quick}))
    (out / "report.md").write_text("# fake\\n")
    return 3 if args.extra == "fail" else 0
'''


@pytest.fixture
def fake_studies(tmp_path, monkeypatch):
    pkg_dir = tmp_path / "studies"
    pkg_dir.mkdir()
    (pkg_dir / "fake_study.py").write_text(FAKE_STUDY)
    (pkg_dir / "no_doc.py").write_text("def main(argv=None):\n    return 0\n")
    (pkg_dir / "_private.py").write_text('"""Hidden."""\n')
    monkeypatch.setattr(case_studies, "__path__", [str(pkg_dir)])
    for name in ("fake_study", "no_doc"):
        monkeypatch.delitem(sys.modules, f"probdyn.case_studies.{name}", raising=False)
    yield tmp_path
    for name in ("fake_study", "no_doc"):
        sys.modules.pop(f"probdyn.case_studies.{name}", None)


def test_list(fake_studies, capsys):
    assert available_case_studies() == {
        "fake_study": "Fake study: writes the contract's files.",
        "no_doc": "",
    }
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "fake_study  Fake study: writes the contract's files." in out
    assert "More text" not in out and "_private" not in out


def test_run_forwards_flags_and_refuses_existing_folder(fake_studies, capsys):
    out = fake_studies / "res"
    assert main(["run", "fake_study", "--quick", "--out", str(out), "--seed", "7"]) == 0
    mod = sys.modules["probdyn.case_studies.fake_study"]
    assert mod.CALLS[-1] == ["--quick", "--out", str(out), "--seed", "7"]
    assert (out / "metrics.json").read_text() == '{"seed": 7, "quick": true}'
    # existing non-empty folder: refused without --overwrite, files untouched
    assert main(["run", "fake_study", "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == '{"seed": 7, "quick": true}'
    assert main(["run", "fake_study", "--out", str(out), "--overwrite"]) == 0
    assert (out / "metrics.json").read_text() == '{"seed": 0, "quick": false}'
    assert main(["run", "fake_study", "--smoke", "--out", str(out), "--overwrite"]) == 0
    assert mod.CALLS[-1] == ["--smoke", "--out", str(out), "--overwrite"]
    with pytest.raises(SystemExit):  # one size at a time
        main(["run", "fake_study", "--smoke", "--quick"])
    # unknown flags are passed through; main's exit code is returned
    assert main(["run", "fake_study", "--out", str(out), "--overwrite", "--extra", "fail"]) == 3


def test_run_unknown_name_lists_available(fake_studies, capsys):
    assert main(["run", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown case study 'nope'" in err and "fake_study, no_doc" in err


def test_report_command(tmp_path, capsys):
    import numpy as np

    from probdyn.report import to_inference_data, to_netcdf

    rng = np.random.default_rng(0)
    to_netcdf(to_inference_data({"mu": rng.normal(size=(2, 50))}), tmp_path / "idata.nc")
    assert main(["report", str(tmp_path)]) == 0
    assert f"wrote {tmp_path / 'report.md'}" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_no_command_and_version(capsys):
    assert main([]) == 2
    assert "usage: probdyn" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"probdyn {probdyn.__version__}"


def test_console_script_version():
    exe = Path(sys.executable).parent / "probdyn"
    res = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    assert res.stdout.strip() == f"probdyn {probdyn.__version__}"


def test_run_overwrite_never_deletes_user_files(fake_studies, capsys, monkeypatch):
    # regression (issue 9): `--out . --overwrite` deleted the user's files, then crashed
    work = fake_studies / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    assert main(["run", "fake_study", "--out", ".", "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("probdyn run: ") and "Traceback" not in err
    assert (work / "notes.txt").read_text() == "mine"
    # a probdyn folder where the user later put a file: refused, the file survives
    assert main(["run", "fake_study", "--out", "res"]) == 0
    manifest = json.loads((work / "res" / MANIFEST_NAME).read_text())
    assert manifest["files"] == ["metrics.json", "report.md"]  # recorded by the CLI
    (work / "res" / "analysis.ipynb").write_text("{}")
    assert main(["run", "fake_study", "--out", "res", "--overwrite"]) == 1
    assert "analysis.ipynb" in capsys.readouterr().err
    assert (work / "res" / "analysis.ipynb").read_text() == "{}"
    (work / "res" / "analysis.ipynb").unlink()
    assert main(["run", "fake_study", "--out", "res", "--overwrite", "--seed", "2"]) == 0
    # --out a file or a symlink: one clear line, exit 1
    for bad in ("notes.txt", "link"):
        if bad == "link":
            (work / "link").symlink_to(work / "res")
        assert main(["run", "fake_study", "--out", bad, "--overwrite"]) == 1
        err = capsys.readouterr().err
        assert "out=" in err and "Traceback" not in err
    assert (work / "notes.txt").read_text() == "mine"


def test_report_corrupt_idata_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "idata.nc").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 50)
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "not a readable netCDF" in err and "idata.nc" in err
