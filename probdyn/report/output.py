"""Output folders for case studies and reports: never overwrite a user's results silently."""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["prepare_output_dir"]


def prepare_output_dir(path: str | Path, overwrite: bool = False) -> Path:
    """Create ``path`` for a run's outputs, refusing to clobber an existing non-empty folder.

    Parameters
    ----------
    path : str or Path
        The output folder.
    overwrite : bool
        If True, an existing folder is emptied first; otherwise a non-empty folder raises.

    Returns
    -------
    Path
        The (now existing, empty) folder.

    Raises
    ------
    FileExistsError
        If ``path`` exists, is not empty and ``overwrite`` is False.
    NotADirectoryError
        If ``path`` exists and is a file.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"out={str(out)!r} exists and is a file, not a folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"out={str(out)!r} already exists and is not empty; pass --overwrite "
                "(overwrite=True) to replace it, or choose another --out"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out
