"""The whole mechanistic analysis of a noise-driven network in one call.

:func:`analyse_dynamics` runs, for any ``step_fn(h, x)`` / ``readout_fn(h)`` pair, the
analyses of Torre et al. (2025): fixed points without input (both methods) and their
stability, the noise-sustained orbit (PCA, phase, emission along the phase, radius against
noise variance), dwell-time regions, kick neurons with ablation/enhancement against a
random control group, and noise sensitivity; it optionally writes one PNG per analysis.
:func:`analysis_metrics` flattens the result into JSON-ready numbers.

References
----------
Torre, E., Viscione, M., Pompe, L., Grewe, B. F. & Mante, V. (2025). Mechanistic
interpretability of RNNs emulating hidden Markov models. arXiv:2510.25674.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from probdyn.analysis._checks import check_callable, check_int
from probdyn.analysis.dwell import DWELL_LABELS, DwellRegions, dwell_regions, region_means
from probdyn.analysis.fixed_points import (
    FixedPoints,
    RelaxedFixedPoint,
    find_fixed_points,
    fixed_point_by_relaxation,
)
from probdyn.analysis.kicks import (
    KickScores,
    RateSweep,
    ablation_sweep,
    kick_neuron_scores,
    noise_sensitivity,
    trajectory_spread,
)
from probdyn.analysis.orbits import (
    PCA,
    OrbitSweep,
    emission_along_phase,
    fit_pca,
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
from probdyn.analysis.rollout import emission_probabilities, rollout
from probdyn.analysis.stability import (
    STABILITY_LABELS,
    Stability,
    classify_stability,
    jacobians,
    local_growth_rate,
)

__all__ = ["DynamicsAnalysis", "analyse_dynamics", "analysis_metrics"]


class DynamicsAnalysis(NamedTuple):
    """Everything :func:`analyse_dynamics` computed.

    Attributes
    ----------
    states : numpy.ndarray, shape (num_timesteps, hidden_size)
        The noise-driven trajectory (after the burn-in) all analyses start from.
    pca : PCA
        Fitted on ``states`` (3 components).
    relaxed : RelaxedFixedPoint
        The paper's fixed point (input-free relaxation from sampled states).
    relaxed_stability : Stability or None
        Of the relaxed point (None when the input-free runs diverged).
    relaxed_growth : float
        :func:`~probdyn.analysis.local_growth_rate` at the relaxed point: the stability
        verdict that holds where the Jacobian does not exist (e.g. ``h = 0`` of a bias-free
        ReLU network, where autodiff returns the zero matrix).
    fixed_points : FixedPoints
        Sussillo-Barak fixed and slow points from the same starts.
    stability : Stability
        Of ``fixed_points.points``.
    phase : numpy.ndarray, shape (num_timesteps,)
        Unwrapped rotation phase of ``states`` in the PC1-PC2 plane.
    emission : numpy.ndarray, shape (num_timesteps, num_symbols)
        Emission probabilities along ``states``.
    radius : OrbitSweep
        Orbit radius against noise variance.
    dwell : DwellRegions
        Of the first ``num_dwell_states`` states.
    dwell_num_unstable : numpy.ndarray, shape (4,)
        Mean number of unstable input-free Jacobian eigenvalues per dwell region (over
        ``num_eig_states`` of the dwell states; NaN for regions none of them fell in).
    kick_scores : KickScores or None
        None when the trajectory has no switch (or no time away from one): then the unit
        groups below are empty and the ablation rates NaN.
    kick_units, control_units : numpy.ndarray of int
        The top-scoring units and a random group of the same size among the others.
    ablation_kick, ablation_control : RateSweep
        Switching rate against ``mu`` for each group.
    noise : RateSweep
        Switching rate against ``gamma``.
    spread : dict of str to numpy.ndarray, shape (num_gammas, 7)
        :func:`trajectory_spread` (private noise fraction ``gammas``) from the longest-dwell
        cluster state and the shortest-dwell kick-zone state, where such states exist.
    figures : list of pathlib.Path
        PNGs written (empty without ``out_dir``).
    """

    states: np.ndarray
    pca: PCA
    relaxed: RelaxedFixedPoint
    relaxed_stability: Stability | None
    relaxed_growth: float
    fixed_points: FixedPoints
    stability: Stability
    phase: np.ndarray
    emission: np.ndarray
    radius: OrbitSweep
    dwell: DwellRegions
    dwell_num_unstable: np.ndarray
    kick_scores: KickScores | None
    kick_units: np.ndarray
    control_units: np.ndarray
    ablation_kick: RateSweep
    ablation_control: RateSweep
    noise: RateSweep
    spread: dict[str, np.ndarray]
    figures: list[Path]


def analyse_dynamics(
    rng_key: jax.Array,
    step_fn: Callable[[jax.Array, jax.Array], jax.Array],
    readout_fn: Callable[[jax.Array], jax.Array],
    hidden_size: int,
    noise_dim: int,
    *,
    num_timesteps: int = 2000,
    burn_in: int = 100,
    num_starts: int = 100,
    relaxation_steps: int = 500,
    optimiser_steps: int = 2000,
    noise_variances: Sequence[float] = (0.25, 0.5, 1.0, 1.5, 2.0),
    num_trajectories: int = 16,
    sweep_timesteps: int = 500,
    num_dwell_states: int = 500,
    dwell_samples: int = 20,
    dwell_max_steps: int = 50,
    num_eig_states: int = 100,
    kick_window: int = 5,
    num_kick_units: int = 3,
    mus: Sequence[float] = (0.0, 1.0, 2.0),
    gammas: Sequence[float] = (0.0, 0.5, 1.0),
    out_dir: str | Path | None = None,
    symbol_names: Sequence[str] | None = None,
) -> DynamicsAnalysis:
    """Run the full mechanistic analysis of a noise-driven network.

    Parameters
    ----------
    rng_key : jax.Array
    step_fn : callable
        ``step_fn(h, x) -> h_next`` (e.g. ``emulator.step``).
    readout_fn : callable
        ``readout_fn(h) -> logits`` (e.g. ``emulator.readout``).
    hidden_size, noise_dim : int
        Sizes of ``h`` and ``x``. The trajectory starts at ``h = 0``.
    num_timesteps, burn_in : int
        Length of the reference trajectory and the steps dropped before it.
    num_starts : int
        States sampled (evenly) from the trajectory as fixed-point starts (100 in the paper).
    relaxation_steps : int
        Input-free steps of the paper's method (500 in the paper).
    optimiser_steps : int
        Steps of the speed minimisation.
    noise_variances : sequence of float
        Levels of the radius sweep.
    num_trajectories, sweep_timesteps : int
        Trajectories (started on the reference trajectory) and their length for the radius,
        ablation and noise sweeps.
    num_dwell_states, dwell_samples, dwell_max_steps : int
        Dwell-region map: states, rollouts per state, cap.
    num_eig_states : int
        Dwell states (evenly spaced) whose input-free Jacobian spectra are counted per region
        (eigen-decompositions dominate the cost for large networks).
    kick_window : int
        Pre-switch window of the kick scores.
    num_kick_units : int
        Size of the kick group (and of the random control group).
    mus, gammas : sequence of float
        Ablation/enhancement factors and noise scales.
    out_dir : str or Path, optional
        Where to write ``fixed_points.png``, ``orbit.png``, ``radius_vs_noise.png``,
        ``dwell_regions.png``, ``noise_sensitivity.png``, ``ablation.png`` (when the
        trajectory switches symbols) and ``spread.png`` (when a cluster or kick-zone state
        exists).
    symbol_names : sequence of str, optional
        Legend names of the symbols.

    Returns
    -------
    DynamicsAnalysis
    """
    check_callable("step_fn", step_fn)
    check_callable("readout_fn", readout_fn)
    hidden_size = check_int("hidden_size", hidden_size)
    noise_dim = check_int("noise_dim", noise_dim)
    num_timesteps = check_int("num_timesteps", num_timesteps, minimum=10)
    num_starts = min(check_int("num_starts", num_starts), num_timesteps)
    num_dwell_states = min(check_int("num_dwell_states", num_dwell_states), num_timesteps)
    num_kick_units = check_int("num_kick_units", num_kick_units)
    num_eig_states = check_int("num_eig_states", num_eig_states)
    if 2 * num_kick_units > hidden_size:
        raise ValueError(
            f"num_kick_units must be <= hidden_size / 2 = {hidden_size // 2} (a control group "
            f"of the same size is drawn from the rest), got {num_kick_units}"
        )
    keys = jax.random.split(rng_key, 8)
    dtype = jnp.result_type(float)
    traj = rollout(keys[0], step_fn, jnp.zeros(hidden_size, dtype), num_timesteps + burn_in,
                   noise_dim)[burn_in:]  # fmt: skip
    states = np.asarray(traj)
    pca = fit_pca(states, num_components=min(3, hidden_size))
    proj = np.asarray(project(states, pca))

    starts = states[np.linspace(0, num_timesteps - 1, num_starts).astype(int)]
    relaxed = fixed_point_by_relaxation(step_fn, starts, noise_dim, relaxation_steps)
    if bool(jnp.all(jnp.isfinite(relaxed.point))):
        relaxed_stability = classify_stability(jacobians(step_fn, relaxed.point[None], noise_dim))
        relaxed_growth = float(local_growth_rate(keys[6], step_fn, relaxed.point, noise_dim))
    else:
        relaxed_stability, relaxed_growth = None, float("nan")
    fps = find_fixed_points(step_fn, starts, noise_dim, num_steps=optimiser_steps)
    if len(fps.points):
        stability = classify_stability(jacobians(step_fn, fps.points, noise_dim))
    else:
        stability = classify_stability(np.zeros((0, hidden_size, hidden_size)))

    phase = np.asarray(rotation_phase(proj))
    emission = np.asarray(emission_probabilities(readout_fn, states))
    sweep_starts = states[np.linspace(0, num_timesteps - 1, num_trajectories).astype(int)]
    radius = orbit_radius_vs_noise(
        keys[1], step_fn, sweep_starts, noise_dim, noise_variances, sweep_timesteps,
        burn_in=min(burn_in, 50), pca=pca,
    )  # fmt: skip

    dwell_states = states[:num_dwell_states]
    dwell = dwell_regions(keys[2], step_fn, readout_fn, dwell_states, noise_dim, dwell_samples,
                          dwell_max_steps)  # fmt: skip
    sub = np.unique(np.linspace(0, num_dwell_states - 1, num_eig_states).astype(int))
    n_unstable = classify_stability(jacobians(step_fn, dwell_states[sub], noise_dim)).num_unstable
    dwell_num_unstable = region_means(n_unstable, dwell.labels[sub], len(DWELL_LABELS))

    sym = emission.argmax(axis=-1)
    try:
        scores = kick_neuron_scores(states, sym, window=kick_window)
    except ValueError:  # no switch along the trajectory, or switching all the time
        scores, kick_units, control_units = None, np.zeros(0, int), np.zeros(0, int)
        nan = np.full(len(mus), np.nan)
        ablation_kick = ablation_control = RateSweep(
            np.asarray(mus, float), nan, nan, np.zeros((len(mus), 0)), nan
        )
    if scores is not None:
        kick_units = np.sort(scores.ranking[:num_kick_units])
        others = np.setdiff1d(np.arange(hidden_size), kick_units)
        perm = np.asarray(jax.random.permutation(keys[3], len(others)))
        control_units = np.sort(others[perm[:num_kick_units]])
        ablation_kick = ablation_sweep(keys[4], step_fn, readout_fn, sweep_starts, noise_dim,
                                       kick_units, mus, sweep_timesteps, burn_in=0)  # fmt: skip
        ablation_control = ablation_sweep(keys[4], step_fn, readout_fn, sweep_starts,
                                          noise_dim, control_units, mus, sweep_timesteps,
                                          burn_in=0)  # fmt: skip
    noise = noise_sensitivity(keys[5], step_fn, readout_fn, sweep_starts, noise_dim, gammas,
                              sweep_timesteps, burn_in=0)  # fmt: skip

    spread: dict[str, np.ndarray] = {}
    for code, pick in ((2, np.argmax), (1, np.argmin)):
        idx = np.flatnonzero(dwell.labels == code)
        if len(idx):
            i = idx[pick(dwell.dwell_times[idx])]
            name = (
                f"{DWELL_LABELS[code].replace('_', '-')} state (dwell {dwell.dwell_times[i]:.1f})"
            )
            spread[name] = np.asarray(
                trajectory_spread(keys[7], step_fn, dwell_states[i], noise_dim, gammas)
            )

    figures: list[Path] = []
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        pts = fps.points
        if relaxed_stability is not None:
            pts = np.concatenate([pts, np.asarray(relaxed.point)[None]])
        st = classify_stability(jacobians(step_fn, pts, noise_dim)) if len(pts) else None
        plots = (
            {}
            if not len(pts)
            else {
                "fixed_points.png": lambda p: plot_fixed_points(
                    proj, np.asarray(project(pts, pca)), st, p
                )
            }
        )
        plots |= {
            "orbit.png": lambda p: plot_orbit(proj, emission, phase, p,
                                              symbol_names=symbol_names),
            "radius_vs_noise.png": lambda p: plot_radius_vs_noise(radius, p),
            "dwell_regions.png": lambda p: plot_dwell_regions(proj[:num_dwell_states], dwell, p),
            "noise_sensitivity.png": lambda p: plot_ablation({"all units": noise}, p,
                                                             xlabel="γ (noise scale)"),
        }  # fmt: skip
        if scores is not None:
            plots["ablation.png"] = lambda p: plot_ablation(
                {f"kick units {kick_units.tolist()}": ablation_kick,
                 f"random units {control_units.tolist()}": ablation_control}, p)  # fmt: skip
        if spread:
            plots["spread.png"] = lambda p: plot_spread(spread, gammas, p)
        for name, make in plots.items():
            make(out / name)
            figures.append(out / name)

    return DynamicsAnalysis(
        states=states,
        pca=pca,
        relaxed=relaxed,
        relaxed_stability=relaxed_stability,
        relaxed_growth=relaxed_growth,
        fixed_points=fps,
        stability=stability,
        phase=phase,
        emission=emission,
        radius=radius,
        dwell=dwell,
        dwell_num_unstable=dwell_num_unstable,
        kick_scores=scores,
        kick_units=kick_units,
        control_units=control_units,
        ablation_kick=ablation_kick,
        ablation_control=ablation_control,
        noise=noise,
        spread=spread,
        figures=figures,
    )


def _floats(x) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in np.ravel(np.asarray(x, float))]


def analysis_metrics(result: DynamicsAnalysis) -> dict:
    """JSON-ready summary of :func:`analyse_dynamics` (non-finite values become None).

    Parameters
    ----------
    result : DynamicsAnalysis

    Returns
    -------
    dict
        Keys: ``relaxation`` (spread, speed, spectral radius, stability or "diverged",
        local growth rate, norm of the point), ``fixed_points``
        (count, speeds, spectral radii, stability names, slow-point count, distance to the
        relaxed point), ``orbit`` (explained variance ratio, turns, radius fits),
        ``dwell`` (region counts and mean dwell, unstable eigenvalues per region),
        ``kick`` (units, AUCs, rates per mu for kick and control groups; ``skipped`` true,
        empty units and None rates when the trajectory never switches), ``noise`` (rates
        per gamma).
    """
    r = result
    rs = r.relaxed_stability
    fp = r.fixed_points
    dist = (np.linalg.norm(fp.points - np.asarray(r.relaxed.point), axis=-1)
            if len(fp.points) else np.zeros(0))  # fmt: skip
    counts = np.bincount(r.dwell.labels, minlength=len(DWELL_LABELS))
    return {
        "relaxation": {
            "spread": _floats([r.relaxed.spread])[0],
            "q": _floats([r.relaxed.q])[0],
            "spectral_radius": None if rs is None else float(rs.spectral_radius[0]),
            "stability": "diverged" if rs is None else STABILITY_LABELS[int(rs.label[0])],
            "num_unstable": None if rs is None else int(rs.num_unstable[0]),
            "local_growth": _floats([r.relaxed_growth])[0],
            "norm": _floats([np.linalg.norm(np.asarray(r.relaxed.point))])[0],
        },
        "fixed_points": {
            "count": len(fp.points),
            "q": _floats(fp.q),
            "spectral_radius": _floats(r.stability.spectral_radius),
            "stability": [STABILITY_LABELS[int(i)] for i in r.stability.label],
            "num_slow_points": len(fp.slow_points),
            "num_outlier_starts": int(fp.is_outlier.sum()),
            "distance_to_relaxed": _floats(dist),
        },
        "orbit": {
            "explained_variance_ratio": _floats(r.pca.explained_variance_ratio),
            "turns": float(abs(r.phase[-1] - r.phase[0]) / (2 * np.pi)),
            "noise_variances": _floats(r.radius.noise_variances),
            "radius": _floats(r.radius.radius),
            "radius_fit": r.radius.radius_fit._asdict(),
            "mean_square_radius": _floats(r.radius.mean_square_radius),
            "mean_square_fit": r.radius.mean_square_fit._asdict(),
            "phase_profile": _floats(emission_along_phase(r.phase, r.emission, 12)[1]),
        },
        "dwell": {
            "labels": list(DWELL_LABELS),
            "counts": [int(c) for c in counts],
            "mean_dwell": _floats(region_means(r.dwell.dwell_times, r.dwell.labels)),
            "mean_num_unstable": _floats(r.dwell_num_unstable),
        },
        "kick": {
            "skipped": r.kick_scores is None,
            "units": [int(u) for u in r.kick_units],
            "auc": [] if r.kick_scores is None else _floats(r.kick_scores.auc[r.kick_units]),
            "control_units": [int(u) for u in r.control_units],
            "mus": _floats(r.ablation_kick.values),
            "rate_kick": _floats(r.ablation_kick.rate),
            "rate_kick_se": _floats(r.ablation_kick.rate_se),
            "rate_control": _floats(r.ablation_control.rate),
            "rate_control_se": _floats(r.ablation_control.rate_se),
            "mean_norm_kick": _floats(r.ablation_kick.mean_norm),
            "mean_norm_control": _floats(r.ablation_control.mean_norm),
        },
        "noise": {
            "gammas": _floats(r.noise.values),
            "rate": _floats(r.noise.rate),
            "rate_se": _floats(r.noise.rate_se),
            "mean_norm": _floats(r.noise.mean_norm),
            "final_spread": {k: _floats(v[:, -1]) for k, v in r.spread.items()},
        },
    }
