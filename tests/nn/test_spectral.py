"""Sinusoidal embedding and the Fourier neural operator against explicit sums."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probdyn.nn import FNO1d, SpectralConv1d, sinusoidal_embedding


def test_sinusoidal_embedding_against_formula():
    t = np.array([0.0, 3.0, 250.0])
    for dim in (6, 7):
        got = np.asarray(sinusoidal_embedding(t, dim, max_period=100.0))
        half = dim // 2
        freqs = 100.0 ** (-np.arange(half) / half)
        want = np.concatenate([np.cos(t[:, None] * freqs), np.sin(t[:, None] * freqs)], -1)
        if dim % 2:
            want = np.concatenate([want, np.zeros((3, 1))], -1)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="dim=0"):
        sinusoidal_embedding(t, 0)


def test_spectral_conv_against_explicit_dft():
    n, modes = 12, 4
    layer = SpectralConv1d(2, 3, modes, key=jax.random.PRNGKey(0))
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (2, n)), np.float64)
    w = np.asarray(layer.weight_real, np.float64) + 1j * np.asarray(layer.weight_imag, np.float64)
    grid = np.arange(n)
    k = np.arange(modes)
    xk = x @ np.exp(-2j * np.pi * np.outer(grid, k) / n)  # (2, modes)
    yk = np.einsum("ik,iok->ok", xk, w)
    # real inverse transform of a spectrum supported on k < modes < n / 2
    phase = np.exp(2j * np.pi * np.outer(k, grid) / n)
    want = (yk[:, :1].real + 2 * np.real(yk[:, 1:] @ phase[1:])) / n
    np.testing.assert_allclose(np.asarray(layer(jnp.asarray(x, jnp.float32))), want, atol=1e-5)


def test_fno_is_shift_equivariant_and_checks_shapes():
    fno = FNO1d(2, 1, width=5, modes=3, num_layers=2, key=jax.random.PRNGKey(2))
    x = jax.random.normal(jax.random.PRNGKey(3), (2, 16))
    run = eqx.filter_jit(fno)
    out, shifted = run(x), run(jnp.roll(x, 5, axis=-1))
    assert out.shape == (1, 16)
    np.testing.assert_allclose(jnp.roll(out, 5, axis=-1), shifted, atol=1e-5)
    with pytest.raises(ValueError, match="expected \\(in_channels, num_points\\)"):
        fno(x[0])
    with pytest.raises(ValueError, match="modes=3 exceeds"):
        fno(x[:, :3])
