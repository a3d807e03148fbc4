"""NumPyro distributions over whole trajectories, built on :mod:`probdyn.kernels`."""

from probdyn.processes.hmm import DiscreteHMM
from probdyn.processes.reaction import ReactionNetwork, ReactionPath

__all__ = ["DiscreteHMM", "ReactionNetwork", "ReactionPath"]
