"""Dynamical-systems analysis of trained recurrent networks.

Fixed and slow points, Jacobians and stability, noise-sustained orbits, dwell regions and
unit ablations, for any map ``h -> F(h, x)`` given as a plain callable
``step_fn(h, x) -> h_next`` (and ``readout_fn(h) -> logits`` where symbols matter).
"""

from probdyn.analysis.dwell import (
    DWELL_LABELS,
    DwellRegions,
    classify_dwell,
    dwell_regions,
    dwell_times,
    region_means,
)
from probdyn.analysis.fixed_points import (
    FixedPoints,
    RelaxedFixedPoint,
    find_fixed_points,
    fixed_point_by_relaxation,
    speed,
    unique_points,
)
from probdyn.analysis.kicks import (
    KickScores,
    RateSweep,
    ablation_sweep,
    kick_neuron_scores,
    noise_sensitivity,
    scale_units,
    switch_times,
    switching_rate,
    trajectory_spread,
)
from probdyn.analysis.orbits import (
    PCA,
    LinearFit,
    OrbitSweep,
    emission_along_phase,
    fit_pca,
    linear_fit,
    orbit_radius,
    orbit_radius_vs_noise,
    project,
    rotation_phase,
)
from probdyn.analysis.plots import (
    plot_ablation,
    plot_dwell_regions,
    plot_fixed_points,
    plot_orbit,
    plot_radius_vs_noise,
    plot_spread,
)
from probdyn.analysis.rollout import emission_probabilities, rollout, symbols
from probdyn.analysis.stability import (
    STABILITY_LABELS,
    Stability,
    classify_stability,
    jacobian,
    jacobians,
    local_growth_rate,
    mobius_transform,
    relu_jacobian,
)
from probdyn.analysis.summary import DynamicsAnalysis, analyse_dynamics, analysis_metrics

__all__ = [
    "DynamicsAnalysis",
    "analyse_dynamics",
    "analysis_metrics",
    "DWELL_LABELS",
    "DwellRegions",
    "KickScores",
    "RateSweep",
    "ablation_sweep",
    "classify_dwell",
    "dwell_regions",
    "dwell_times",
    "kick_neuron_scores",
    "noise_sensitivity",
    "region_means",
    "scale_units",
    "switch_times",
    "switching_rate",
    "trajectory_spread",
    "PCA",
    "LinearFit",
    "OrbitSweep",
    "emission_along_phase",
    "emission_probabilities",
    "fit_pca",
    "linear_fit",
    "orbit_radius",
    "orbit_radius_vs_noise",
    "plot_ablation",
    "plot_dwell_regions",
    "plot_fixed_points",
    "plot_orbit",
    "plot_radius_vs_noise",
    "plot_spread",
    "project",
    "rollout",
    "rotation_phase",
    "symbols",
    "STABILITY_LABELS",
    "FixedPoints",
    "RelaxedFixedPoint",
    "Stability",
    "classify_stability",
    "find_fixed_points",
    "fixed_point_by_relaxation",
    "jacobian",
    "jacobians",
    "local_growth_rate",
    "mobius_transform",
    "relu_jacobian",
    "speed",
    "unique_points",
]
