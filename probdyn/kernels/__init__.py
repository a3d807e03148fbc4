"""Pure-JAX kernels: the hot loops. Functions of arrays to arrays; no NumPyro here."""

from probdyn.kernels.hmm import (
    HMMFilterResult,
    HMMPosterior,
    hmm_backward,
    hmm_expected_transitions,
    hmm_filter,
    hmm_log_likelihood,
    hmm_posterior_mode,
    hmm_posterior_sample,
    hmm_sample_states,
    hmm_smoother,
    hmm_two_slice_marginals,
)

__all__ = [
    "HMMFilterResult",
    "HMMPosterior",
    "hmm_backward",
    "hmm_expected_transitions",
    "hmm_filter",
    "hmm_log_likelihood",
    "hmm_posterior_mode",
    "hmm_posterior_sample",
    "hmm_sample_states",
    "hmm_smoother",
    "hmm_two_slice_marginals",
]
