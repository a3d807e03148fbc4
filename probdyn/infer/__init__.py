"""Inference front door (:func:`fit`), SG-MCMC kernels, particle filters and PMMH, latent SDEs."""

from probdyn._deprecation import moved
from probdyn.infer.diagnose import nonfinite_sites
from probdyn.infer.emulator import (
    EmulatorTrainResult,
    emulator_loss,
    hmm_one_hot_batch,
    train_emulator,
)
from probdyn.infer.fit import METHODS, fit
from probdyn.infer.latent_sde import (
    LatentSDE,
    LatentSDEELBO,
    OrnsteinUhlenbeckDrift,
    linear_kl_schedule,
)
from probdyn.infer.particle import (
    ParticleFilterResult,
    Propagation,
    particle_filter,
    pf_likelihood,
    reaction_transition,
    resample,
)
from probdyn.infer.pmmh import PMMH, PMMHState
from probdyn.infer.prior import sample_prior
from probdyn.infer.replicates import ReplicateFits, fit_replicates
from probdyn.infer.sgmcmc import CSGLD, KERNELS, SGHMC, SGLD, SGNHT, full_data_model
from probdyn.infer.surrogate import (
    SURROGATE_METHODS,
    AutoregressiveSurrogate,
    add_rollouts,
    make_windows,
)

__all__ = [
    "AutoregressiveSurrogate",
    "SURROGATE_METHODS",
    "add_rollouts",
    "make_windows",
    "CSGLD",
    "EmulatorTrainResult",
    "KERNELS",
    "LatentSDE",
    "LatentSDEELBO",
    "METHODS",
    "OrnsteinUhlenbeckDrift",
    "PMMH",
    "PMMHState",
    "ParticleFilterResult",
    "ReplicateFits",
    "Propagation",
    "SGHMC",
    "SGLD",
    "SGNHT",
    "emulator_loss",
    "fit",
    "fit_replicates",
    "full_data_model",
    "hmm_one_hot_batch",
    "linear_kl_schedule",
    "nonfinite_sites",
    "particle_filter",
    "pf_likelihood",
    "reaction_transition",
    "resample",
    "sample_prior",
    "train_emulator",
]

__getattr__ = moved(
    __name__,
    {"GRUEncoder": "probdyn.nn.encoders", "PosteriorDriftMLP": "probdyn.nn.sde_nets"},
)
