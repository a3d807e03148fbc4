"""Inference front door (:func:`fit`), SG-MCMC kernels, particle filters and PMMH."""

from probdyn.infer.fit import METHODS, fit
from probdyn.infer.particle import (
    ParticleFilterResult,
    Propagation,
    particle_filter,
    pf_likelihood,
    reaction_transition,
    resample,
)
from probdyn.infer.pmmh import PMMH, PMMHState
from probdyn.infer.sgmcmc import CSGLD, KERNELS, SGHMC, SGLD, SGNHT, full_data_model

__all__ = [
    "CSGLD",
    "KERNELS",
    "METHODS",
    "PMMH",
    "PMMHState",
    "ParticleFilterResult",
    "Propagation",
    "SGHMC",
    "SGLD",
    "SGNHT",
    "fit",
    "full_data_model",
    "particle_filter",
    "pf_likelihood",
    "reaction_transition",
    "resample",
]
