"""Output folders: --overwrite removes only what a probdyn manifest lists (issue 9, item 1)."""

import json
import os

import pytest

from probdyn.report.output import (
    MANIFEST_NAME,
    finish_outputs,
    prepare_output_dir,
    record_outputs,
)


def _run(path, overwrite=False, files=("idata.nc", "report.md", "sub/fig.png")):
    """What a case study does: prepare, write, record."""
    out = prepare_output_dir(path, overwrite=overwrite)
    for name in files:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(name)
    record_outputs(out)
    return out


def test_manifest_lists_what_the_run_wrote(tmp_path):
    out = _run(tmp_path / "res")
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["files"] == ["idata.nc", "report.md", "sub/fig.png"]
    assert manifest["complete"] is True
    # a second run with overwrite replaces them (subfolder emptied and removed)
    (out / "report.md").write_text("old")
    out = _run(tmp_path / "res", overwrite=True, files=("idata.nc",))
    assert sorted(os.listdir(out)) == sorted([MANIFEST_NAME, "idata.nc"])


def test_user_file_survives_overwrite(tmp_path):
    out = _run(tmp_path / "res")
    (out / "my_notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="my_notes.txt"):
        prepare_output_dir(out, overwrite=True)
    assert (out / "my_notes.txt").read_text() == "precious"
    assert (out / "idata.nc").exists()  # nothing deleted before refusing


def test_folder_without_manifest_is_refused(tmp_path):
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "data.csv").write_text("1,2")
    with pytest.raises(FileExistsError, match="not written by probdyn"):
        prepare_output_dir(tmp_path / "res", overwrite=True)
    with pytest.raises(FileExistsError, match="already exists"):
        prepare_output_dir(tmp_path / "res")
    assert (tmp_path / "res" / "data.csv").read_text() == "1,2"


def test_cwd_with_user_files_is_never_emptied(tmp_path, monkeypatch):
    # the original loss: `probdyn run hmm_regimes --out . --overwrite` deleted the user's files
    monkeypatch.chdir(tmp_path)
    (tmp_path / "thesis.tex").write_text("years of work")
    (tmp_path / MANIFEST_NAME).write_text(
        json.dumps({"format": "probdyn-output", "files": ["thesis.tex"]})
    )
    with pytest.raises(FileExistsError, match="current working directory"):
        prepare_output_dir(".", overwrite=True)
    assert (tmp_path / "thesis.tex").read_text() == "years of work"


def test_symlink_and_file_are_refused(tmp_path):
    target = tmp_path / "real"
    _run(target)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(FileExistsError, match="symbolic link"):
        prepare_output_dir(link, overwrite=True)
    assert (target / "idata.nc").exists()
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        prepare_output_dir(afile, overwrite=True)
    assert afile.read_text() == "x"
    with pytest.raises(TypeError, match="out="):
        prepare_output_dir(3)


def test_manifest_cannot_reach_outside_the_folder(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    out = tmp_path / "res"
    out.mkdir()
    (out / "a.png").write_text("a")
    (out / MANIFEST_NAME).write_text(
        json.dumps({"format": "probdyn-output", "files": ["a.png", "../victim.txt"]})
    )
    (out / "inner").symlink_to(tmp_path)  # a link to the parent, not listed
    with pytest.raises(FileExistsError, match="inner"):
        prepare_output_dir(out, overwrite=True)
    assert victim.read_text() == "keep" and (out / "a.png").exists()
    (out / "inner").unlink()
    prepare_output_dir(out, overwrite=True)  # a.png listed: removed; victim untouched
    assert victim.read_text() == "keep" and not (out / "a.png").exists()


def test_broken_manifest_is_refused(tmp_path):
    out = tmp_path / "res"
    out.mkdir()
    (out / "x.nc").write_text("x")
    (out / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(FileExistsError, match="unreadable manifest"):
        prepare_output_dir(out, overwrite=True)
    assert (out / "x.nc").exists()


def test_finish_outputs_only_completes_open_manifests(tmp_path):
    out = prepare_output_dir(tmp_path / "res")
    (out / "a.png").write_text("a")
    assert finish_outputs(out) == ["a.png"]
    (out / "user.txt").write_text("u")
    assert finish_outputs(out) is None  # already complete: the user's file is not claimed
    assert finish_outputs(tmp_path / "missing") is None
    with pytest.raises(FileExistsError, match="no .probdyn-output.json"):
        record_outputs(tmp_path)
