"""Fixtures shared across the test suite."""

import jax
import pytest


@pytest.fixture
def x64():
    """Enable float64 for one test and restore the previous setting afterwards."""
    prev = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", prev)
