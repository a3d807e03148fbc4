"""Continuous-time Markov chains as NumPyro distributions (compatibility module).

The distributions live in :mod:`probdyn.processes.mjp` (:class:`MarkovJumpProcess`,
:class:`CTMCPath`, :func:`mean_dwell_times`) and :mod:`probdyn.processes.observed_ctmc`
(:class:`ObservedCTMC`, :class:`ObservedCTMCPath`); this module re-exports them so that
``from probdyn.processes.ctmc import ...`` keeps working.
"""

from probdyn.processes.mjp import CTMCPath, MarkovJumpProcess, mean_dwell_times
from probdyn.processes.observed_ctmc import ObservedCTMC, ObservedCTMCPath

__all__ = [
    "CTMCPath",
    "MarkovJumpProcess",
    "ObservedCTMC",
    "ObservedCTMCPath",
    "mean_dwell_times",
]
