"""Neural building blocks for probdyn, as equinox modules.

Recurrent cells, MLPs, encoders, spectral blocks, Bayesian layers (variational dropout
with time-dependent rates and the temporal VAMP prior) and the HMM-emulator RNN. Every
network in probdyn lives here; models, inference and case studies import them from here.
"""

__all__: list[str] = []
