"""Neural building blocks for probdyn, as equinox modules.

Recurrent cells, MLPs, encoders, spectral blocks, Bayesian layers (variational dropout
with time-dependent rates and the temporal VAMP prior) and the HMM-emulator RNN. Every
network in probdyn lives here; models, inference and case studies import them from here.

Modules: :mod:`~probdyn.nn.cells` (GRU, LSTM and Elman cells in PyTorch's parameter layout,
their pure gate updates, and :func:`run`, a ``lax.scan`` over a sequence),
:mod:`~probdyn.nn.mlp` (:class:`MLP`), :mod:`~probdyn.nn.encoders` (the latent-SDE
:class:`GRUEncoder`), :mod:`~probdyn.nn.sde_nets` (drift and diffusion networks of latent
SDEs), :mod:`~probdyn.nn.latent_dynamics` (the Langevin-flow dynamics and sequential VAE),
:mod:`~probdyn.nn.embedding` (sinusoidal time embeddings), :mod:`~probdyn.nn.spectral`
(:class:`FNO1d`), :mod:`~probdyn.nn.variational` (variational-dropout layers with the local
reparameterisation and their KL terms), :mod:`~probdyn.nn.barnn` (:class:`BARNN`:
state- and time-dependent dropout rates with the tVAMP prior; :class:`VariationalDropout`)
:mod:`~probdyn.nn.rollout` (autoregressive rollouts as a :class:`RolloutEnsemble`)
and :mod:`~probdyn.nn.emulator` (:class:`HMMEmulator`, the noise-driven RNN that emulates
an HMM).
All are equinox modules: register them in a NumPyro model with
``numpyro.contrib.module.eqx_module``.
"""

from probdyn.nn.barnn import BARNN, DropoutRateEncoder, VariationalDropout, variational_layers
from probdyn.nn.cells import ElmanCell, GRUCell, LSTMCell, gru_update, lstm_update, run
from probdyn.nn.embedding import sinusoidal_embedding
from probdyn.nn.emulator import HMMEmulator, gumbel_softmax_straight_through
from probdyn.nn.encoders import GRUEncoder
from probdyn.nn.latent_dynamics import (
    LangevinDynamics,
    LatentDynamicsModel,
    LinearDynamics,
    NeuralSDEDynamics,
)
from probdyn.nn.mlp import ACTIVATIONS, MLP, get_activation
from probdyn.nn.rollout import NOISE_MODES, RolloutEnsemble, rollout
from probdyn.nn.sde_nets import (
    DiagonalDiffusionNet,
    OrnsteinUhlenbeckDrift,
    PosteriorDriftMLP,
    PriorDriftMLP,
)
from probdyn.nn.spectral import FNO1d, SpectralConv1d
from probdyn.nn.variational import (
    PARAMETRISATIONS,
    VariationalLayer,
    ard_kl,
    is_variational_candidate,
    layer_moments,
    log_uniform_kl,
    num_weights,
    tvamp_kl,
)

__all__ = [
    "ACTIVATIONS",
    "BARNN",
    "DiagonalDiffusionNet",
    "DropoutRateEncoder",
    "ElmanCell",
    "FNO1d",
    "GRUCell",
    "GRUEncoder",
    "HMMEmulator",
    "LSTMCell",
    "LangevinDynamics",
    "LatentDynamicsModel",
    "LinearDynamics",
    "MLP",
    "NOISE_MODES",
    "NeuralSDEDynamics",
    "OrnsteinUhlenbeckDrift",
    "PARAMETRISATIONS",
    "PosteriorDriftMLP",
    "PriorDriftMLP",
    "RolloutEnsemble",
    "SpectralConv1d",
    "VariationalDropout",
    "VariationalLayer",
    "ard_kl",
    "get_activation",
    "gumbel_softmax_straight_through",
    "gru_update",
    "is_variational_candidate",
    "layer_moments",
    "log_uniform_kl",
    "lstm_update",
    "num_weights",
    "rollout",
    "run",
    "sinusoidal_embedding",
    "tvamp_kl",
    "variational_layers",
]
