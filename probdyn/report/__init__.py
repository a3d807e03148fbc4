"""Reporting: InferenceData conversion, diagnostics, calibration, scores and plots."""

from probdyn.report.coverage import ReplicateCoverage, replicate_coverage
from probdyn.report.ensemble import (
    METRIC_NAMES,
    calibration_curve,
    metrics_table,
    rollout_metrics,
    scalar_metrics,
)
from probdyn.report.ensemble_plots import plot_calibration_curves, plot_metrics_vs_horizon
from probdyn.report.fidelity import (
    LogLoss,
    block_entropy,
    dwell_times,
    empirical_ngram_probs,
    fidelity_summary,
    hmm_ngram_probs,
    log_loss,
    ngram_kl,
    output_transition_matrix,
    sequence_sinkhorn,
    symbol_frequencies,
    volatility,
)
from probdyn.report.hidden import add_hidden_states, hidden_state_sites
from probdyn.report.idata import model_dims, to_inference_data
from probdyn.report.lfo import LFOResult, lfo, psis_lfo
from probdyn.report.output import (
    MANIFEST_NAME,
    finish_outputs,
    prepare_output_dir,
    record_outputs,
)
from probdyn.report.plots import (
    plot_predictive_bands,
    plot_rank,
    plot_sbc_ranks,
    plot_state_posterior,
    plot_trace,
    select_plot_vars,
)
from probdyn.report.pointwise import pointwise_log_likelihood, site_pointwise_log_prob
from probdyn.report.render import GENERATED_MARKER, render_report
from probdyn.report.round_trip import (
    RoundTripResult,
    categorical_hmm_model,
    match_states,
    round_trip_fit,
)
from probdyn.report.sbc import (
    SBCResult,
    default_num_bins,
    rank_statistics,
    rank_uniformity_pvalues,
    sbc,
)
from probdyn.report.scores import (
    CoverageResult,
    CRPSResult,
    crps,
    interval_coverage,
    lpd,
    pointwise_log_predictive_density,
)
from probdyn.report.summary import Summary, ebfmi, elbo_relative_change, summary

__all__ = [
    "GENERATED_MARKER",
    "add_hidden_states",
    "hidden_state_sites",
    "MANIFEST_NAME",
    "METRIC_NAMES",
    "CRPSResult",
    "CoverageResult",
    "LFOResult",
    "LogLoss",
    "ReplicateCoverage",
    "RoundTripResult",
    "SBCResult",
    "Summary",
    "calibration_curve",
    "block_entropy",
    "categorical_hmm_model",
    "crps",
    "default_num_bins",
    "dwell_times",
    "ebfmi",
    "elbo_relative_change",
    "finish_outputs",
    "empirical_ngram_probs",
    "fidelity_summary",
    "hmm_ngram_probs",
    "interval_coverage",
    "lfo",
    "log_loss",
    "lpd",
    "metrics_table",
    "model_dims",
    "plot_calibration_curves",
    "plot_metrics_vs_horizon",
    "match_states",
    "ngram_kl",
    "output_transition_matrix",
    "plot_predictive_bands",
    "plot_rank",
    "plot_sbc_ranks",
    "plot_state_posterior",
    "plot_trace",
    "pointwise_log_likelihood",
    "pointwise_log_predictive_density",
    "prepare_output_dir",
    "psis_lfo",
    "rank_statistics",
    "rank_uniformity_pvalues",
    "record_outputs",
    "render_report",
    "replicate_coverage",
    "rollout_metrics",
    "round_trip_fit",
    "sbc",
    "scalar_metrics",
    "select_plot_vars",
    "sequence_sinkhorn",
    "site_pointwise_log_prob",
    "summary",
    "symbol_frequencies",
    "to_inference_data",
    "volatility",
]
