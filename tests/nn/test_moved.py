"""Networks moved into probdyn.nn stay importable from their old homes, with a warning."""

import importlib

import pytest

import probdyn.nn as nn

MOVED = [
    ("probdyn.infer", "GRUEncoder", nn.GRUEncoder),
    ("probdyn.infer", "PosteriorDriftMLP", nn.PosteriorDriftMLP),
    ("probdyn.infer.latent_sde", "GRUEncoder", nn.GRUEncoder),
    ("probdyn.infer.latent_sde", "PosteriorDriftMLP", nn.PosteriorDriftMLP),
    ("probdyn.models.lorenz", "PriorDriftMLP", nn.PriorDriftMLP),
    ("probdyn.models.lorenz", "DiagonalDiffusionNet", nn.DiagonalDiffusionNet),
    ("probdyn.models.langevin_flow", "LangevinDynamics", nn.LangevinDynamics),
    ("probdyn.models.langevin_flow", "LinearDynamics", nn.LinearDynamics),
    ("probdyn.models.langevin_flow", "NeuralSDEDynamics", nn.NeuralSDEDynamics),
    ("probdyn.models.langevin_flow", "LatentDynamicsModel", nn.LatentDynamicsModel),
]


@pytest.mark.parametrize("module, name, new", MOVED)
def test_old_import_paths_warn_and_resolve(module, name, new):
    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=f"{name} moved to probdyn.nn"):
        old = getattr(mod, name)
    assert old is new
    assert name not in getattr(mod, "__all__", ())


def test_langevin_fit_is_renamed_train():
    lf = importlib.import_module("probdyn.models.langevin_flow")
    with pytest.warns(DeprecationWarning, match="fit moved to probdyn.models.langevin_flow.train"):
        assert lf.fit is lf.train
    assert "fit" not in lf.__all__ and "train" in lf.__all__
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        lf.nonexistent  # noqa: B018


def test_nn_exports():
    for name in nn.__all__:
        assert getattr(nn, name) is not None
