"""Output folders for case studies and reports: never delete or overwrite a user's files.

A folder that probdyn writes into is marked by a manifest, ``.probdyn-output.json``,
created by :func:`prepare_output_dir` and listing, once :func:`record_outputs` has run,
every file the run wrote there. ``overwrite=True`` (``--overwrite``) removes only the
files a manifest lists; anything else in the folder (a user's file, a folder without a
manifest, the current working directory, a symbolic link, a file) is refused with a
:class:`FileExistsError` that says what was found and what to do, before anything is
deleted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

__all__ = ["MANIFEST_NAME", "finish_outputs", "prepare_output_dir", "record_outputs"]

#: Name of the manifest file that marks a folder written by probdyn.
MANIFEST_NAME = ".probdyn-output.json"
_FORMAT = "probdyn-output"


def _read_manifest(out: Path) -> dict | None:
    """The manifest of ``out`` (None when absent); a broken one raises FileExistsError."""
    path = out / MANIFEST_NAME
    if not path.exists() and not path.is_symlink():
        return None
    try:
        if path.is_symlink() or not path.is_file():
            raise ValueError("not a regular file")
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"'format' is not {_FORMAT!r}")
        files = data.get("files")
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise ValueError("'files' is not a list of names")
    except (OSError, ValueError) as err:
        raise FileExistsError(
            f"out={str(out)!r} has an unreadable manifest {MANIFEST_NAME!r} ({err}); "
            "refusing to delete anything. Remove the folder yourself or choose another --out"
        ) from None
    return data


def _write_manifest(out: Path, files: list[str], complete: bool) -> None:
    data = {"format": _FORMAT, "version": 1, "complete": bool(complete), "files": sorted(files)}
    tmp = out / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out / MANIFEST_NAME)


def _safe_member(out: Path, name: str) -> Path | None:
    """``out / name`` if ``name`` is a plain relative path inside ``out``, else None."""
    pure = PurePosixPath(name)
    if pure.is_absolute() or not pure.parts or any(p in ("", ".", "..") for p in pure.parts):
        return None
    if name == MANIFEST_NAME:
        return None
    path = out.joinpath(*pure.parts)
    try:
        parent = path.parent.resolve(strict=True)
    except OSError:
        return None
    root = out.resolve()
    if parent != root and root not in parent.parents:
        return None
    return path


def _files_in(out: Path) -> list[str]:
    """Relative POSIX names of every file (and symlink) below ``out``, manifest excluded."""
    names = []
    for dirpath, dirnames, filenames in os.walk(out):
        rel = Path(dirpath).relative_to(out)
        for d in list(dirnames):  # a symlinked folder counts as a file: never descend
            if (Path(dirpath) / d).is_symlink():
                filenames.append(d)
                dirnames.remove(d)
        for f in filenames:
            name = (rel / f).as_posix()
            if name not in (MANIFEST_NAME, MANIFEST_NAME + ".tmp"):
                names.append(name)
    return sorted(names)


def _is_cwd_or_above(out: Path) -> bool:
    here = Path.cwd().resolve()
    there = out.resolve()
    return there == here or there in here.parents or there == Path.home().resolve()


def prepare_output_dir(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Create ``path`` for a run's outputs and mark it as probdyn's with a manifest.

    Parameters
    ----------
    path : str or PathLike
        The output folder (created with its parents if missing).
    overwrite : bool
        If True, an existing folder written by an earlier probdyn run is emptied of the
        files its manifest lists; a folder holding anything else is refused.

    Returns
    -------
    Path
        The folder, existing and empty but for a fresh manifest. Call
        :func:`record_outputs` once the run has written its files.

    Raises
    ------
    FileExistsError
        ``path`` is a file or a symbolic link; or it is a non-empty folder and
        ``overwrite`` is False; or ``overwrite`` is True and the folder holds files no
        probdyn manifest lists (they are named), has no manifest, or is the current
        working directory (or above it) or the home folder. Nothing is deleted then.
    PermissionError
        The folder cannot be created or written.
    """
    if not isinstance(path, (str, os.PathLike)) or str(path) == "":
        raise TypeError(f"out={path!r} is not a folder path; expected a non-empty str or Path")
    out = Path(path)
    if out.is_symlink():
        raise FileExistsError(
            f"out={str(out)!r} is a symbolic link (to {os.readlink(out)!r}); probdyn does not "
            "write through links. Give the real folder as --out"
        )
    if out.exists() and not out.is_dir():
        raise FileExistsError(
            f"out={str(out)!r} exists and is a file, not a folder; choose another --out"
        )
    if out.is_dir():
        present = _files_in(out)
        if present:
            if not overwrite:
                raise FileExistsError(
                    f"out={str(out)!r} already exists and is not empty; pass --overwrite "
                    "(overwrite=True) to replace an earlier probdyn run there, or choose "
                    "another --out"
                )
            if _is_cwd_or_above(out):
                raise FileExistsError(
                    f"out={str(out)!r} is the current working directory, a folder above it "
                    "or the home folder; --overwrite is refused there. Choose a dedicated "
                    "output folder"
                )
            manifest = _read_manifest(out)
            if manifest is None:
                raise FileExistsError(
                    f"out={str(out)!r} is not empty and was not written by probdyn (no "
                    f"{MANIFEST_NAME}); --overwrite only removes files an earlier probdyn run "
                    "wrote. Choose another --out or empty it yourself"
                )
            listed = set(manifest["files"])
            foreign = [f for f in present if f not in listed or _safe_member(out, f) is None]
            if foreign:
                shown = ", ".join(repr(f) for f in foreign[:5])
                more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
                raise FileExistsError(
                    f"out={str(out)!r} holds files that no probdyn run wrote there: {shown}"
                    f"{more}; --overwrite removes only the files listed in {MANIFEST_NAME}. "
                    "Move them away or choose another --out"
                )
            emptied = set()
            for name in present:  # every one is listed and inside the folder
                member = _safe_member(out, name)
                member.unlink()
                emptied.update(p for p in member.parents if out in p.parents)
            for folder in sorted(emptied, key=lambda p: -len(p.parts)):
                if not any(folder.iterdir()):
                    folder.rmdir()
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise PermissionError(f"out={str(out)!r} is not writable; choose another --out")
    _write_manifest(out, [], complete=False)
    return out


def record_outputs(path: str | os.PathLike, names: list[str] | None = None) -> list[str]:
    """Add files written into a probdyn output folder to its manifest.

    Parameters
    ----------
    path : str or PathLike
        A folder made by :func:`prepare_output_dir`.
    names : list of str, optional
        Relative names of the files just written. Default: every file now in the folder,
        which is right at the end of a run because :func:`prepare_output_dir` left the
        folder empty.

    Returns
    -------
    list of str
        The files the manifest now lists.

    Raises
    ------
    FileExistsError
        ``path`` has no probdyn manifest (it was not made by :func:`prepare_output_dir`).
    """
    out = Path(path)
    manifest = _read_manifest(out) if out.is_dir() else None
    if manifest is None:
        raise FileExistsError(
            f"out={str(out)!r} has no {MANIFEST_NAME}; it was not made by prepare_output_dir"
        )
    new = _files_in(out) if names is None else [Path(n).as_posix() for n in names]
    files = sorted(set(manifest["files"]) | {n for n in new if _safe_member(out, n)})
    _write_manifest(out, files, complete=True)
    return files


def finish_outputs(path: str | os.PathLike) -> list[str] | None:
    """Record the files of a run that has not called :func:`record_outputs` itself.

    Used by ``probdyn run`` after a case study's ``main`` returns. Does nothing (returns
    None) when ``path`` has no manifest or its manifest is already complete.
    """
    out = Path(path)
    if out.is_symlink() or not out.is_dir():
        return None
    try:
        manifest = _read_manifest(out)
    except FileExistsError:
        return None
    if manifest is None or manifest.get("complete"):
        return None
    return record_outputs(out)
