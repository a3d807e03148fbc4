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


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module.

    A pytest-xdist worker runs hundreds of modules in one process; without this, every
    program compiled by every earlier module stays cached, and the worker's memory grows
    for the whole run.
    """
    yield
    jax.clear_caches()
