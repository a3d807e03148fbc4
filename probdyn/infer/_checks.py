"""Validators for the options of :func:`probdyn.fit`, run before anything is compiled.

Every error names the option, the value received and what was expected.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "check_bool",
    "check_hmc_options",
    "check_int",
    "check_path",
    "check_real",
]

# A NUTS tree of depth d takes up to 2**d - 1 leapfrog steps, counted in int32.
_MAX_TREE_DEPTH = 30


def check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]``; bools, floats and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}={value!r} is a {type(value).__name__}; expected an integer")
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and <= {maximum}" if maximum is not None else ""
        raise ValueError(
            f"{name}={value!r} is out of range; expected an integer >= {minimum}{upper}"
        )
    return int(value)


def check_real(
    name: str,
    value: Any,
    *,
    lower: float | None = None,
    upper: float | None = None,
    lower_open: bool = True,
    upper_open: bool = True,
) -> float:
    """``value`` as a finite float within the bounds (open by default)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r} is a {type(value).__name__}; expected a real number")
    v = float(value)
    bad = not math.isfinite(v)
    if lower is not None:
        bad = bad or v < lower or (lower_open and v == lower)
    if upper is not None:
        bad = bad or v > upper or (upper_open and v == upper)
    if bad:
        lo = "" if lower is None else ("(" if lower_open else "[") + f"{lower:g}"
        hi = "" if upper is None else f"{upper:g}" + (")" if upper_open else "]")
        if lower is not None and upper is not None:
            want = f"a finite number in {lo}, {hi}"
        elif lower is not None:
            want = f"a finite number {'>' if lower_open else '>='} {lower:g}"
        elif upper is not None:
            want = f"a finite number {'<' if upper_open else '<='} {upper:g}"
        else:
            want = "a finite number"
        raise ValueError(f"{name}={value!r} is out of range; expected {want}")
    return v


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a bool (NumPy bools included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}={value!r} is a {type(value).__name__}; expected True or False")
    return bool(value)


def check_path(name: str, value: Any) -> None:
    """A file path: a non-empty str or os.PathLike."""
    if not isinstance(value, (str, os.PathLike)) or str(value) == "":
        raise TypeError(f"{name}={value!r} is not a file path; expected a non-empty str or Path")


def _check_tree_depth(value: Any) -> None:
    depths = value if isinstance(value, tuple) else (value,)
    if isinstance(value, tuple) and len(value) != 2:
        raise ValueError(
            f"max_tree_depth={value!r} has {len(value)} entries; expected an integer or a "
            "pair (warmup depth, sampling depth)"
        )
    for d in depths:
        check_int("max_tree_depth", d, 1, _MAX_TREE_DEPTH)


def check_hmc_options(options: Mapping[str, Any]) -> None:
    """Check the NUTS/HMC options NumPyro itself accepts without checking.

    ``step_size`` > 0, ``target_accept_prob`` in (0, 1), ``max_tree_depth`` an integer in
    [1, 30] (or a pair of them), ``num_steps`` an integer >= 1, ``trajectory_length`` > 0,
    flags bools, ``inverse_mass_matrix`` finite and positive, ``init_strategy`` and
    ``kinetic_fn`` callables, ``dense_mass`` a bool or a list of tuples of site names.

    Raises
    ------
    TypeError, ValueError
        Naming the option and the value.
    """
    if "step_size" in options:
        check_real("step_size", options["step_size"], lower=0.0)
    if "target_accept_prob" in options:
        check_real("target_accept_prob", options["target_accept_prob"], lower=0.0, upper=1.0)
    if "max_tree_depth" in options:
        _check_tree_depth(options["max_tree_depth"])
    if options.get("num_steps") is not None:
        check_int("num_steps", options["num_steps"], 1)
    if options.get("trajectory_length") is not None:
        check_real("trajectory_length", options["trajectory_length"], lower=0.0)
    for flag in (
        "adapt_step_size",
        "adapt_mass_matrix",
        "find_heuristic_step_size",
        "forward_mode_differentiation",
        "regularize_mass_matrix",
    ):
        if flag in options:
            check_bool(flag, options[flag])
    for fn in ("init_strategy", "kinetic_fn"):
        if options.get(fn) is not None and not callable(options[fn]):
            raise TypeError(f"{fn}={options[fn]!r} is not callable; expected a function")
    dense = options.get("dense_mass", False)
    if not isinstance(dense, (bool, np.bool_)):
        ok = isinstance(dense, list) and all(
            isinstance(t, tuple) and all(isinstance(s, str) for s in t) for t in dense
        )
        if not ok:
            raise TypeError(
                f"dense_mass={dense!r} is not valid; expected a bool or a list of tuples of "
                "site names"
            )
    imm = options.get("inverse_mass_matrix")
    if imm is not None:
        values = imm.values() if isinstance(imm, Mapping) else [imm]
        for v in values:
            arr = np.asarray(v)
            if arr.dtype.kind not in "iuf" or not np.all(np.isfinite(arr)) or arr.size == 0:
                raise ValueError(
                    f"inverse_mass_matrix has a non-finite or non-numeric entry ({arr.dtype}); "
                    "expected finite positive numbers"
                )
            if arr.ndim <= 1 and np.any(arr <= 0):
                raise ValueError(
                    "inverse_mass_matrix has a diagonal entry <= 0; expected positive numbers"
                )
