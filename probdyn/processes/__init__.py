"""NumPyro distributions over whole trajectories, built on :mod:`probdyn.kernels`."""

from probdyn.processes.hmm import DiscreteHMM
from probdyn.processes.reaction import ReactionNetwork, ReactionPath
from probdyn.processes.sde import (
    KalmanFilterResult,
    KalmanSmootherResult,
    LinearSDE,
    SDEPath,
    sde_path,
)

__all__ = [
    "DiscreteHMM",
    "KalmanFilterResult",
    "KalmanSmootherResult",
    "LinearSDE",
    "ReactionNetwork",
    "ReactionPath",
    "SDEPath",
    "sde_path",
]
