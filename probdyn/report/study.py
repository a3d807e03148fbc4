"""Small helpers shared by the case studies (``probdyn run NAME``).

A case study's module docstring is its description: the first line is the one-line
summary shown by ``probdyn list``; the following paragraphs (Question, Data, Model, What
the result should show) become the opening of ``report.md``; the paragraph starting with
"Outputs" is left out of the report.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SIZE_NAMES",
    "chosen_size",
    "size_note",
    "doc_as_markdown",
    "interval_rows",
    "interval_table_markdown",
    "max_over",
    "nuts_metrics",
    "study_parser",
    "write_outputs",
]


#: The sizes a case study can run at, smallest first: ``--smoke`` (seconds: tiny data, few
#: draws, the smallest networks; exercises the whole pipeline and writes every output, its
#: numbers mean nothing), ``--quick`` (under 2 minutes of one core; shows the study's result
#: at a smaller scale) and the full run (no flag).
SIZE_NAMES = ("smoke", "quick", "full")

_SMOKE_HELP = "tiny sizes for the test suite (seconds; every output written, numbers meaningless)"


def study_parser(
    name: str,
    doc: str,
    quick_help: str = "smaller data, fewer draws",
    sizes: Mapping[str, Mapping[str, Any]] | None = None,
    smoke_help: str = _SMOKE_HELP,
) -> argparse.ArgumentParser:
    """The argument parser every case study shares.

    Options: ``--quick``, ``--seed``, ``--out`` (default ``results/NAME``), ``--overwrite``,
    ``--num-chains``, ``--no-progress``; with ``sizes``, also ``--smoke``, mutually
    exclusive with ``--quick`` (read the chosen size with :func:`chosen_size`). Add
    study-specific options to the returned parser.

    Parameters
    ----------
    name : str
        The study's name (``probdyn run NAME``).
    doc : str
        The study's module docstring; its first line is the parser's description.
    quick_help, smoke_help : str
        Help texts of ``--quick`` and ``--smoke``.
    sizes : mapping, optional
        The study's settings per size, with exactly the keys of :data:`SIZE_NAMES`; when
        given, ``--smoke`` is added.

    Returns
    -------
    argparse.ArgumentParser
    """
    if sizes is not None:
        _check_sizes(sizes)
    p = argparse.ArgumentParser(prog=f"probdyn run {name}", description=doc.splitlines()[0])
    group = p.add_mutually_exclusive_group()
    if sizes is not None:
        group.add_argument("--smoke", action="store_true", help=smoke_help)
    group.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--seed", type=int, default=0, help="seed for data and inference")
    p.add_argument("--out", default=f"results/{name}", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--num-chains", type=int, default=None)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def _check_sizes(sizes) -> None:
    if not isinstance(sizes, Mapping) or set(sizes) != set(SIZE_NAMES):
        got = sorted(sizes) if isinstance(sizes, Mapping) else type(sizes).__name__
        raise ValueError(f"sizes must be a mapping with keys {SIZE_NAMES}; got {got}")


def chosen_size(
    args: argparse.Namespace, sizes: Mapping[str, Mapping[str, Any]]
) -> tuple[str, dict[str, Any]]:
    """The size a study was asked to run at, and its settings.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by a :func:`study_parser` built with ``sizes``.
    sizes : mapping
        The study's settings per size (keys :data:`SIZE_NAMES`).

    Returns
    -------
    size : str
        ``"smoke"``, ``"quick"`` or ``"full"``.
    settings : dict
        A copy of ``sizes[size]``.
    """
    _check_sizes(sizes)
    if getattr(args, "smoke", False):
        size = "smoke"
    elif getattr(args, "quick", False):
        size = "quick"
    else:
        size = "full"
    return size, dict(sizes[size])


def size_note(size: str) -> str:
    """A line for a report's result section saying which size ran (empty for the full run).

    Parameters
    ----------
    size : str
        One of :data:`SIZE_NAMES`.

    Returns
    -------
    str
        Markdown bullet, or ``""`` for ``"full"``.
    """
    if size not in SIZE_NAMES:
        raise ValueError(f"size must be one of {SIZE_NAMES}; got {size!r}")
    if size == "smoke":
        return (
            "- **smoke run** (`--smoke`): tiny sizes that test the pipeline; "
            "the numbers below mean nothing"
        )
    if size == "quick":
        return "- quick run (`--quick`): smaller data and fewer draws than the full study"
    return ""


def doc_as_markdown(doc: str) -> str:
    """The docstring's sections after the summary line, as paragraphs with bold headings."""
    body = doc.split("\n\n", 1)[1].split("\nOutputs")[0]
    paras = []
    for block in body.strip().split("\n\n"):
        head, *rest = block.split("\n")
        paras.append(f"**{head.strip()}.** " + " ".join(line.strip() for line in rest))
    return "\n\n".join(paras)


def max_over(dataset) -> float:
    """Largest value over all variables of an xarray Dataset (e.g. ``az.rhat(idata)``)."""
    return max(float(dataset[v].max()) for v in dataset.data_vars)


def nuts_metrics(idata, var_names: Sequence[str]) -> dict[str, float | int]:
    """Convergence metrics of an MCMC result over ``var_names``, as the studies report them.

    Parameters
    ----------
    idata : arviz.InferenceData or xarray.DataTree
        With a ``posterior`` group of at least two chains (R-hat needs them).
    var_names : sequence of str
        The parameters checked (latent paths are usually left out).

    Returns
    -------
    dict
        ``rhat_max`` (largest rank-normalised split R-hat), ``ess_bulk_min`` (smallest bulk
        ESS) and, when ``sample_stats`` has ``diverging`` (NUTS/HMC), ``divergences`` (the
        number of divergent transitions over all chains).
    """
    import arviz as az

    var_names = list(var_names)
    out: dict[str, float | int] = {
        "rhat_max": max_over(az.rhat(idata, var_names=var_names)),
        "ess_bulk_min": -max_over(-az.ess(idata, var_names=var_names, method="bulk")),
    }
    stats = idata["sample_stats"] if "sample_stats" in _groups(idata) else None
    if stats is not None and "diverging" in stats:
        out["divergences"] = int(stats["diverging"].sum())
    return out


def _groups(idata) -> list[str]:
    """Group names of an InferenceData (ArviZ 0.x) or a DataTree (ArviZ 1.x)."""
    groups = getattr(idata, "groups", None)
    if callable(groups):
        return list(groups())
    return list(getattr(idata, "children", {}))


def write_outputs(
    out: str | os.PathLike,
    idata,
    metrics: Mapping[str, Any],
    report_lines: Sequence[str] | None,
    *,
    json_default: Callable[[Any], Any] | None = None,
) -> list[str]:
    """Write a study's standard outputs and list every file of the folder in its manifest.

    Writes ``idata.nc`` (``idata.to_netcdf``; skipped when ``idata`` is None),
    ``metrics.json`` (``json.dumps(metrics, indent=2)``) and ``report.md`` (the lines
    joined by newlines; skipped when ``report_lines`` is None, for a study that wrote it
    already), then :func:`probdyn.report.output.record_outputs`, so figures written before
    are listed too.

    Parameters
    ----------
    out : str or PathLike
        The folder made by :func:`probdyn.report.output.prepare_output_dir`.
    idata : arviz.InferenceData or xarray.DataTree or None
    metrics : mapping
        JSON-serialisable (with ``json_default`` for other values, e.g. ``float``).
    report_lines : sequence of str or None
    json_default : callable, optional
        ``default`` of :func:`json.dumps`.

    Returns
    -------
    list of str
        The files the manifest lists.
    """
    from probdyn.report.output import record_outputs

    out = Path(out)
    if idata is not None:
        idata.to_netcdf(out / "idata.nc")
    (out / "metrics.json").write_text(json.dumps(dict(metrics), indent=2, default=json_default))
    if report_lines is not None:
        (out / "report.md").write_text("\n".join(report_lines))
    return record_outputs(out)


def interval_rows(
    samples: Mapping[str, np.ndarray],
    truth: Mapping[str, object],
    labels: Mapping[str, Sequence[str]] | None = None,
    level: float = 0.9,
) -> list[dict]:
    """Posterior summaries against the truth, one row per scalar.

    Parameters
    ----------
    samples : mapping of str to array, shape (S, ...)
        Flattened posterior draws per quantity.
    truth : mapping of str to array
        True value per quantity (same trailing shape as its draws).
    labels : mapping of str to list of str, optional
        Row labels per quantity; default ``name[j]``.
    level : float
        Central interval level.

    Returns
    -------
    list of dict
        Keys ``parameter, truth, mean, sd, lower, upper, covered``.
    """
    lo_q, hi_q = (1 - level) / 2, (1 + level) / 2
    rows = []
    for name, tv in truth.items():
        tv = np.atleast_1d(np.asarray(tv, dtype=float)).reshape(-1)
        draws = np.asarray(samples[name]).reshape(len(samples[name]), -1)
        if draws.shape[1] != tv.size:
            raise ValueError(f"truth[{name!r}] has {tv.size} values; draws have {draws.shape[1]}")
        lo, hi = np.quantile(draws, [lo_q, hi_q], axis=0)
        names = list(labels[name]) if labels and name in labels else None
        for j, t in enumerate(tv):
            label = names[j] if names else (name if tv.size == 1 else f"{name}[{j}]")
            rows.append(
                {
                    "parameter": label,
                    "truth": float(t),
                    "mean": float(draws[:, j].mean()),
                    "sd": float(draws[:, j].std()),
                    "lower": float(lo[j]),
                    "upper": float(hi[j]),
                    "covered": bool(lo[j] <= t <= hi[j]),
                }
            )
    return rows


def interval_table_markdown(rows: Sequence[Mapping], level: float = 0.9) -> str:
    """Markdown table of :func:`interval_rows`."""
    lo, hi = f"{(1 - level) / 2:.0%}", f"{(1 + level) / 2:.0%}"
    lines = [
        f"| quantity | truth | mean | sd | {lo} | {hi} | covered |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['parameter']} | {r['truth']:.4g} | {r['mean']:.4g} | {r['sd']:.3g} | "
            f"{r['lower']:.4g} | {r['upper']:.4g} | {'yes' if r['covered'] else 'no'} |"
        )
    return "\n".join(lines)
