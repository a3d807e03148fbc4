"""Input-check helpers shared by the process distributions."""

from __future__ import annotations

import numpy as np
from numpyro.util import not_jax_tracer

from probdyn.kernels._checks import concrete  # noqa: F401  (the one copy, re-exported)


def validate_sample(dist, value, name: str = "value"):
    """Support check for ``validate_args=True`` that raises instead of warning.

    NumPyro's default only warns ("Out-of-support values provided to log prob method")
    and returns -inf; on concrete input this raises a ``ValueError`` naming ``name``, the
    distribution, its support and the offending entries. On traced input (under ``jit``)
    it cannot raise and returns the support mask, as NumPyro does.
    """
    mask = dist.support(value)
    if not not_jax_tracer(mask):
        return mask
    m = np.asarray(mask)
    if np.all(m):
        return mask
    v = np.asarray(value)
    base = getattr(dist.support, "base_constraint", dist.support)
    try:
        bad = v[~np.broadcast_to(np.asarray(base(value)), v.shape)]
    except (TypeError, ValueError):
        bad = v.ravel()
    what = "NaN" if np.isnan(bad.astype(float, copy=False)).any() else "out-of-support values"
    raise ValueError(
        f"{name} has {what} for {type(dist).__name__} (support {dist.support}): "
        f"{int((~m).sum())} of {m.size} sequences affected, offending entries "
        f"{bad.ravel()[:5].tolist()}"
    )


def check_missing(dist, value, name: str = "value"):
    """Refuse NaN observations without a mask, on concrete input (a no-op under ``jit``).

    A NaN observation makes the log-density NaN, which NUTS reports as "Cannot find valid
    initial parameters"; the fix is the distribution's ``mask``.
    """
    if getattr(dist, "obs_mask", None) is not None or not not_jax_tracer(value):
        return
    v = np.asarray(value)
    if v.dtype.kind == "f" and np.isnan(v).any():
        raise ValueError(
            f"{name} has {int(np.isnan(v).sum())} NaN observation(s) of {v.size} for "
            f"{type(dist).__name__}, which has no mask; mark missing observations with "
            f"{type(dist).__name__}(..., mask=...) (False where missing; NaN placeholders "
            "are then ignored)"
        )
