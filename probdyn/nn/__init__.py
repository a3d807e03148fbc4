"""Neural building blocks for probdyn, as equinox modules.

Recurrent cells, MLPs, encoders, spectral blocks, Bayesian layers (variational dropout
with time-dependent rates and the temporal VAMP prior) and the HMM-emulator RNN. Every
network in probdyn lives here; models, inference and case studies import them from here.

Modules: :mod:`~probdyn.nn.cells` (GRU, LSTM and Elman cells in PyTorch's parameter layout,
their pure gate updates, and :func:`run`, a ``lax.scan`` over a sequence),
:mod:`~probdyn.nn.mlp` (:class:`MLP`), :mod:`~probdyn.nn.encoders` (the latent-SDE
:class:`GRUEncoder`), :mod:`~probdyn.nn.sde_nets` (drift and diffusion networks of latent
SDEs) and :mod:`~probdyn.nn.latent_dynamics` (the Langevin-flow dynamics and sequential VAE).
All are equinox modules: register them in a NumPyro model with
``numpyro.contrib.module.eqx_module``.
"""

from probdyn.nn.cells import ElmanCell, GRUCell, LSTMCell, gru_update, lstm_update, run
from probdyn.nn.encoders import GRUEncoder
from probdyn.nn.latent_dynamics import (
    LangevinDynamics,
    LatentDynamicsModel,
    LinearDynamics,
    NeuralSDEDynamics,
)
from probdyn.nn.mlp import ACTIVATIONS, MLP, get_activation
from probdyn.nn.sde_nets import DiagonalDiffusionNet, PosteriorDriftMLP, PriorDriftMLP

__all__ = [
    "ACTIVATIONS",
    "DiagonalDiffusionNet",
    "ElmanCell",
    "GRUCell",
    "GRUEncoder",
    "LSTMCell",
    "LangevinDynamics",
    "LatentDynamicsModel",
    "LinearDynamics",
    "MLP",
    "NeuralSDEDynamics",
    "PosteriorDriftMLP",
    "PriorDriftMLP",
    "get_activation",
    "gru_update",
    "lstm_update",
    "run",
]
