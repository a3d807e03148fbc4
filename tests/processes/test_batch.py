"""Tests for probdyn.processes._batch (the one flatten-and-vmap helper).

Reference: an explicit Python loop over the broadcast batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probdyn.processes._batch import flat_map, flatten_batch, map_flat


def kernel(a, b):
    """One 'sequence': a (T, D), b (D,) -> ({"s": (T,), "m": ()})."""
    return {"s": a @ b, "m": jnp.max(a)}


@pytest.mark.parametrize("direct", ["single", "scalar", "never"])
@pytest.mark.parametrize("batch", [(), (1,), (2, 3)])
def test_flat_map_matches_a_loop(batch, direct):
    rng = np.random.default_rng(0)
    a = rng.normal(size=batch + (4, 2)).astype(np.float32)
    b = rng.normal(size=(2,)).astype(np.float32)  # broadcast over the batch
    seen = []

    def fn(a, b):
        seen.append(isinstance(a, jax.core.Tracer))  # traced only under vmap
        return kernel(a, b)

    out = flat_map(fn, (a, b), (2, 1), batch, direct=direct)
    assert out["s"].shape == batch + (4,) and out["m"].shape == batch
    for idx in np.ndindex(*batch):
        want = kernel(a[idx], b)
        np.testing.assert_allclose(out["s"][idx], want["s"], rtol=1e-6)
        np.testing.assert_allclose(out["m"][idx], want["m"], rtol=1e-6)
    direct_call = (direct == "single" and int(np.prod(batch)) == 1) or (
        direct == "scalar" and batch == ()
    )
    assert seen == [not direct_call]


def test_flatten_and_map_flat():
    x = jnp.arange(6.0).reshape(1, 1, 6)  # extra leading size-1 axis dropped
    (flat,) = flatten_batch([x], [1], (1,))
    assert flat.shape == (1, 6)
    (flat,) = flatten_batch([jnp.arange(3.0)], [1], (2, 2))
    assert flat.shape == (4, 3)
    out = map_flat(lambda r: r.sum(), flat, (2, 2))
    np.testing.assert_allclose(out, np.full((2, 2), 3.0))
    out = jax.jit(lambda f: map_flat(lambda r: r * 2, f, (4,)))(flat)
    assert out.shape == (4, 3)
    with pytest.raises(ValueError, match="direct must be one of"):
        flat_map(kernel, (x, x), (1, 1), (1,), direct="always")
