"""Neural building blocks for probdyn, as equinox modules.

Recurrent cells, MLPs, encoders, spectral blocks, Bayesian layers (variational dropout
with time-dependent rates and the temporal VAMP prior) and the HMM-emulator RNN. Every
network in probdyn lives here; models, inference and case studies import them from here.
"""

from probdyn.nn.cells import ElmanCell, GRUCell, LSTMCell, gru_update, lstm_update, run
from probdyn.nn.mlp import ACTIVATIONS, MLP, get_activation

__all__ = [
    "ACTIVATIONS",
    "ElmanCell",
    "GRUCell",
    "LSTMCell",
    "MLP",
    "get_activation",
    "gru_update",
    "lstm_update",
    "run",
]
