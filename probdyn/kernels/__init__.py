"""Pure-JAX kernels: the hot loops. Functions of arrays to arrays; no NumPyro here.

- :mod:`probdyn.kernels.hmm`: forward/backward, smoothing, Viterbi, FFBS (sequential, and
  associative-scan with ``parallel=True``, from :mod:`probdyn.kernels.hmm_parallel`).
- :mod:`probdyn.kernels.ctmc`: CTMC transition matrices for batches of gaps, path
  likelihoods, endpoint-conditioned bridges (matrix exponentials in
  :mod:`probdyn.kernels.expm`); path simulation (forward and bridged through given
  states) in :mod:`probdyn.kernels.ctmc_paths`.
- :mod:`probdyn.kernels.ssa`: Gillespie and tau-leap simulation of reaction networks.
  :mod:`probdyn.kernels.expm`).
- :mod:`probdyn.kernels.network`: the frozen, hashable :class:`Network` (stoichiometry,
  reactant orders or a propensity function, species names) taken by ssa, cme and cle.
- :mod:`probdyn.kernels.cle`: the chemical Langevin equation (an SDE stepped by
  :func:`probdyn.kernels.sde.step`).
- :mod:`probdyn.kernels.ssa`: Gillespie simulation of reaction networks and the path
  likelihood; tau-leaping in :mod:`probdyn.kernels.tau_leaping` (re-exported by ssa).
- :mod:`probdyn.kernels.sde`: fixed-step SDE solvers as transition kernels (Euler-Maruyama,
  Milstein, stochastic Heun, exact linear, BAOAB Langevin), simulation, path densities.
- :mod:`probdyn.kernels.kalman`: Kalman filter, RTS smoother and state simulation for
  linear-Gaussian state-space models; exact LTI-SDE transitions between observation times.
- :mod:`probdyn.kernels.sinkhorn`: debiased Sinkhorn divergence between point clouds
  (ott-jax, geomloss conventions).
- :mod:`probdyn.kernels.cme`: the chemical master equation on a truncated box (sparse
  generator action, uniformization, exact likelihood of noisy observations).

The two ``path_log_likelihood`` functions are exported as ``ctmc_path_log_likelihood``
and ``ssa_path_log_likelihood``; ``ssa.Path`` as ``SSAPath``; ``sde.step``,
``sde.transition_log_prob`` and ``sde.path_log_prob`` as ``sde_step``,
``sde_transition_log_prob`` and ``sde_path_log_prob``.
"""

from probdyn.kernels.cle import chemical_langevin, cle_sde
from probdyn.kernels.cme import (
    CMEFilterResult,
    boundary_mass,
    box_states,
    cme_apply,
    cme_filter,
    cme_log_likelihood,
    cme_sample,
    cme_transient,
    uniformization_terms,
)
from probdyn.kernels.ctmc import (
    BridgePath,
    check_generator,
    generator_from_rates,
    mean_dwell_times,
    sample_bridge,
    stationary_distribution,
    transition_matrices,
)
from probdyn.kernels.ctmc import path_log_likelihood as ctmc_path_log_likelihood
from probdyn.kernels.ctmc_paths import sample_bridged_path, simulate_path
from probdyn.kernels.hmm import (
    HMMFilterResult,
    HMMPosterior,
    hmm_backward,
    hmm_expected_transitions,
    hmm_filter,
    hmm_log_likelihood,
    hmm_one_step_log_predictives,
    hmm_posterior_mode,
    hmm_posterior_sample,
    hmm_sample_states,
    hmm_smoother,
    hmm_two_slice_marginals,
)
from probdyn.kernels.kalman import (
    KalmanFilterResult,
    KalmanSmootherResult,
    kalman_filter,
    kalman_innovations,
    kalman_sample_states,
    kalman_smoother,
    lti_transitions,
    mvn_log_prob_chol,
    psd_cholesky,
)
from probdyn.kernels.network import Network, as_network
from probdyn.kernels.sde import (
    SDE,
    SOLVERS,
    langevin_sde,
    lti_sde,
    lti_transition,
    noise_shape,
    refine_times,
    simulate,
    simulate_from_noise,
    stationary_covariance,
)
from probdyn.kernels.sde import path_log_prob as sde_path_log_prob
from probdyn.kernels.sde import step as sde_step
from probdyn.kernels.sde import transition_log_prob as sde_transition_log_prob
from probdyn.kernels.sinkhorn import bounding_box_diameter, sinkhorn_divergence
from probdyn.kernels.ssa import Path as SSAPath
from probdyn.kernels.ssa import (
    gillespie,
    gillespie_at,
    mass_action_propensities,
    tau_leap,
)
from probdyn.kernels.ssa import path_log_likelihood as ssa_path_log_likelihood

__all__ = [
    "SDE",
    "SOLVERS",
    "BridgePath",
    "CMEFilterResult",
    "HMMFilterResult",
    "HMMPosterior",
    "KalmanFilterResult",
    "KalmanSmootherResult",
    "Network",
    "SSAPath",
    "as_network",
    "boundary_mass",
    "bounding_box_diameter",
    "box_states",
    "chemical_langevin",
    "cle_sde",
    "cme_apply",
    "cme_filter",
    "cme_log_likelihood",
    "cme_sample",
    "cme_transient",
    "check_generator",
    "ctmc_path_log_likelihood",
    "generator_from_rates",
    "gillespie",
    "gillespie_at",
    "hmm_backward",
    "hmm_expected_transitions",
    "hmm_filter",
    "hmm_log_likelihood",
    "hmm_one_step_log_predictives",
    "hmm_posterior_mode",
    "hmm_posterior_sample",
    "hmm_sample_states",
    "hmm_smoother",
    "hmm_two_slice_marginals",
    "kalman_filter",
    "kalman_innovations",
    "kalman_sample_states",
    "kalman_smoother",
    "langevin_sde",
    "lti_sde",
    "lti_transition",
    "lti_transitions",
    "mvn_log_prob_chol",
    "noise_shape",
    "psd_cholesky",
    "refine_times",
    "sde_path_log_prob",
    "sde_step",
    "sde_transition_log_prob",
    "simulate",
    "simulate_from_noise",
    "sinkhorn_divergence",
    "stationary_covariance",
    "mass_action_propensities",
    "mean_dwell_times",
    "sample_bridge",
    "sample_bridged_path",
    "simulate_path",
    "ssa_path_log_likelihood",
    "stationary_distribution",
    "tau_leap",
    "transition_matrices",
    "uniformization_terms",
]
