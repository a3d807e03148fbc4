"""probdyn: generative dynamical models for NumPyro."""

from importlib.metadata import PackageNotFoundError, version

from probdyn.processes import DiscreteHMM

try:
    __version__ = version("probdyn")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["DiscreteHMM", "__version__"]
