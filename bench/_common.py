"""Helpers shared by the benchmarks: warmed, interleaved timing (wall and CPU), versions,
machine load and Markdown tables.

Every benchmark compares candidates measured in the same process: each is called once
untimed (compilation and JAX's one-time start-up costs), then the timed repeats go round
robin (A, B, A, B, ...), so that all candidates see the same machine load. Both the wall
time and the process CPU time (``time.process_time``, all threads of this process) are
kept: on a shared machine the wall time of one call stretches with other users' load,
while the CPU time counts only this process's work.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax

__all__ = [
    "interleaved",
    "load_average",
    "markdown_table",
    "summarise",
    "timed",
    "versions",
]


def timed(fn: Callable, *args: Any) -> tuple[float, float, Any]:
    """``(wall_s, cpu_s, out)`` of one call, waiting for JAX's asynchronous results."""
    w, c = time.perf_counter(), time.process_time()
    out = jax.block_until_ready(fn(*args))
    return time.perf_counter() - w, time.process_time() - c, out


def interleaved(
    calls: Mapping[str, Callable[[], Any]], repeats: int, warm_up: bool = True
) -> dict[str, dict[str, list]]:
    """Time every call ``repeats`` times, round robin, after one untimed warm-up call each.

    Returns name -> ``{"wall": [...], "cpu": [...], "out": last output}``. The order within a
    round alternates (forward on even rounds, reversed on odd ones), so neither candidate
    always runs right after the other.
    """
    names = list(calls)
    res: dict[str, dict[str, list]] = {n: {"wall": [], "cpu": [], "out": None} for n in names}
    if warm_up:
        for n in names:
            res[n]["out"] = jax.block_until_ready(calls[n]())
    for r in range(repeats):
        for n in names if r % 2 == 0 else names[::-1]:
            wall, cpu, out = timed(calls[n])
            res[n]["wall"].append(wall)
            res[n]["cpu"].append(cpu)
            res[n]["out"] = out
    return res


def summarise(times: Sequence[float]) -> dict[str, float]:
    """min, median and max of a list of seconds."""
    return {"min": min(times), "median": statistics.median(times), "max": max(times)}


def load_average() -> tuple[float, float, float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return tuple(round(v, 2) for v in os.getloadavg())
    except OSError:  # pragma: no cover - not on Linux/macOS
        return None


def versions(modules: Iterable[str]) -> dict[str, str]:
    """Python, platform, JAX backend and the installed version of each module."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for mod in modules:
        try:
            out[mod] = importlib.metadata.version(mod)
        except importlib.metadata.PackageNotFoundError:
            try:
                out[mod] = importlib.import_module(mod).__version__
            except (ImportError, AttributeError):
                out[mod] = "not installed"
    return out | {"backend": jax.default_backend(), "cpus": str(os.cpu_count())}


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> str:
    """A Markdown table; ``align`` gives one of ``l``/``r`` per column (default: first
    column left, the rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)
