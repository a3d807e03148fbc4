"""Inference front door (:func:`fit`) and stochastic-gradient MCMC kernels."""

from probdyn.infer.fit import METHODS, fit
from probdyn.infer.sgmcmc import CSGLD, KERNELS, SGHMC, SGLD, SGNHT, full_data_model

__all__ = ["CSGLD", "KERNELS", "METHODS", "SGHMC", "SGLD", "SGNHT", "fit", "full_data_model"]
