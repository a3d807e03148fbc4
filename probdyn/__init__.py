"""probdyn: generative dynamical models for NumPyro."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("probdyn")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

from probdyn.infer import fit  # noqa: E402
from probdyn.processes import DiscreteHMM, ReactionNetwork  # noqa: E402

__all__ = ["DiscreteHMM", "ReactionNetwork", "__version__", "fit"]
