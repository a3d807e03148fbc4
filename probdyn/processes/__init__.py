"""NumPyro distributions over whole trajectories, built on :mod:`probdyn.kernels`."""

from probdyn.processes.cme import CMEObservations
from probdyn.processes.hmm import DiscreteHMM
from probdyn.processes.mjp import CTMCPath, MarkovJumpProcess, mean_dwell_times
from probdyn.processes.observed_ctmc import ObservedCTMC, ObservedCTMCPath
from probdyn.processes.panel import PanelCTMC, generator_from_log_rates
from probdyn.processes.reaction_network import ReactionNetwork
from probdyn.processes.reaction_path import ReactionPath
from probdyn.processes.sde import (
    KalmanFilterResult,
    KalmanSmootherResult,
    LinearSDE,
    SDEPath,
    sde_path,
)

__all__ = [
    "CMEObservations",
    "CTMCPath",
    "DiscreteHMM",
    "KalmanFilterResult",
    "KalmanSmootherResult",
    "LinearSDE",
    "MarkovJumpProcess",
    "ObservedCTMC",
    "ObservedCTMCPath",
    "PanelCTMC",
    "ReactionNetwork",
    "ReactionPath",
    "SDEPath",
    "generator_from_log_rates",
    "mean_dwell_times",
    "sde_path",
]
