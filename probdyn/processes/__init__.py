"""NumPyro distributions over whole trajectories, built on :mod:`probdyn.kernels`."""

from probdyn.processes.hmm import DiscreteHMM

__all__ = ["DiscreteHMM"]
