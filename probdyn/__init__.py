"""probdyn: generative dynamical models for NumPyro."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("probdyn")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

# jax.distributed must start before anything builds an array (BlackJAX does on import)
from probdyn.distributed import initialize_from_environment  # noqa: E402

initialize_from_environment()

from probdyn.infer import fit, sample_prior  # noqa: E402
from probdyn.processes import (  # noqa: E402
    CMEObservations,
    DiscreteHMM,
    LinearSDE,
    MarkovJumpProcess,
    ObservedCTMC,
    PanelCTMC,
    ReactionNetwork,
    SDEPath,
    sde_path,
)

__all__ = [
    "CMEObservations",
    "DiscreteHMM",
    "LinearSDE",
    "MarkovJumpProcess",
    "ObservedCTMC",
    "PanelCTMC",
    "ReactionNetwork",
    "SDEPath",
    "__version__",
    "fit",
    "sample_prior",
    "sde_path",
]
