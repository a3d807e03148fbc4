"""Input-check helpers shared by the kernel modules."""

import jax
import numpy as np


def concrete(value):
    """``np.asarray(value)``, or None when the value is traced (value checks then skip)."""
    try:
        return np.asarray(value)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None
