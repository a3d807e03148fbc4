"""Figures: each writes a PNG and has the documented axes (built from hand-made results)."""

import numpy as np
import pytest

from probdyn.analysis import (
    DwellRegions,
    LinearFit,
    OrbitSweep,
    RateSweep,
    classify_stability,
    plot_ablation,
    plot_dwell_regions,
    plot_fixed_points,
    plot_orbit,
    plot_radius_vs_noise,
    plot_spread,
)


@pytest.fixture(scope="module")
def cloud():
    rng = np.random.default_rng(0)
    return rng.normal(size=(200, 2))


def test_plot_fixed_points(tmp_path, cloud):
    st = classify_stability(np.stack([np.diag([0.5, 0.2]), np.diag([1.5, 0.2])]))
    fig = plot_fixed_points(cloud, np.array([[0.0, 0.0], [1.0, 1.0]]), st, tmp_path / "fp.png")
    assert (tmp_path / "fp.png").stat().st_size > 0 and len(fig.axes) == 3
    with pytest.raises(ValueError, match="projected_points"):
        plot_fixed_points(cloud, np.zeros((3, 2)), st)


def test_plot_orbit(tmp_path, cloud):
    probs = np.random.default_rng(1).dirichlet(np.ones(3), size=200)
    phase = np.arctan2(cloud[:, 1], cloud[:, 0])
    fig = plot_orbit(cloud, probs, phase, tmp_path / "orbit.png", symbol_names=["a", "b", "c"])
    assert (tmp_path / "orbit.png").stat().st_size > 0 and len(fig.axes) == 2
    assert len(plot_orbit(cloud, probs).axes) == 1


def test_plot_dwell_and_ablation_and_radius(tmp_path, cloud):
    labels = np.arange(200) % 4
    reg = DwellRegions(np.arange(200) % 12 + 1.0, np.zeros(200), labels * 0, np.ones(200), labels)
    assert len(plot_dwell_regions(cloud, reg, tmp_path / "dwell.png").axes) == 2
    sw = RateSweep(np.array([0.0, 1.0, 2.0]), np.array([0.0, 0.1, 0.2]), np.full(3, 0.01), None)
    plot_ablation({"kick": sw, "control": sw}, tmp_path / "abl.png")
    v = np.array([0.5, 1.0, 2.0])
    fit = LinearFit(1.0, 0.0, 1.0)
    orb = OrbitSweep(v, v, 0.1 * v, v, 0.1 * v, fit, fit, None)
    plot_radius_vs_noise(orb, tmp_path / "radius.png")
    plot_spread({"cluster": np.ones((3, 7)), "kick": np.zeros((3, 7))}, [0, 0.5, 1],
                tmp_path / "spread.png")  # fmt: skip
    for name in ("dwell.png", "abl.png", "radius.png", "spread.png"):
        assert (tmp_path / name).stat().st_size > 0
    with pytest.raises(ValueError, match="sweeps"):
        plot_ablation({})
