"""Fixtures shared across the test suite, and the suite's compile-time settings.

Most of the suite's time is XLA compilation, not running programs, so before JAX starts:

- XLA's backend optimisation is turned down (``--xla_backend_optimization_level=0``,
  ``--xla_llvm_disable_expensive_passes=true``): about a quarter less CPU time on
  compile-heavy modules (tests/processes/test_hmm.py: 175 s -> 128 s), same results
  to the tolerances tested. Set ``PROBDYN_TEST_XLA_OPT=1`` to test with full optimisation.
- JAX's persistent compilation cache is shared by the pytest-xdist workers and the
  subprocesses the suite starts (README sections, case-study smoke runs, the CLI), so a
  program compiled once in the run is read back instead of compiled again (a NUTS run on a
  small DiscreteHMM in a fresh process: 10.1 s CPU cold, 2.2 s with the program cached).
  The cache lives in a temporary folder made for this run and removed at its end; set
  ``JAX_COMPILATION_CACHE_DIR`` yourself to keep one between runs (it is then never removed).
"""

import os
import shutil
import tempfile

_FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if not os.environ.get("PROBDYN_TEST_XLA_OPT") and _FAST_COMPILE_FLAGS not in os.environ.get(
    "XLA_FLAGS", ""
):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE_FLAGS}".strip()

# The first process to load this file (pytest-xdist's controller, or the only process) makes
# the cache folder; the workers and subprocesses inherit it through the environment.
_OWN_CACHE_DIR = None
if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    _OWN_CACHE_DIR = tempfile.mkdtemp(prefix="probdyn-test-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE_DIR
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402
import pytest  # noqa: E402


def pytest_unconfigure(config):
    """Remove the compilation cache this run made (never one the user pointed us to)."""
    if _OWN_CACHE_DIR is not None and not hasattr(config, "workerinput"):
        shutil.rmtree(_OWN_CACHE_DIR, ignore_errors=True)


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


def _cpu_seconds():
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """With ``PROBDYN_TEST_CPU=<file>``, append each test's CPU seconds (setup + call +
    teardown, this process and its subprocesses) to ``<file>``: a profile of the suite that a
    loaded machine does not distort the way wall times are."""
    import os

    path = os.environ.get("PROBDYN_TEST_CPU")
    if not path:
        yield
        return
    start = _cpu_seconds()
    yield
    with open(path, "a") as fh:
        fh.write(f"{_cpu_seconds() - start:.2f}\t{item.nodeid}\n")
