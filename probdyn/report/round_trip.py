"""Round trip: fit a categorical HMM with NUTS to generated sequences and compare the
recovered transition and emission matrices with the truth, states matched by the
Hungarian algorithm.

HMM states are identified only up to a permutation; each posterior draw is relabelled by
the permutation that minimises the squared distance of its emission rows to the true
ones (:func:`scipy.optimize.linear_sum_assignment`), then summarised.

References
----------
E. Torre, M. Viscione, L. Pompe, B. F. Grewe, V. Mante. "Mechanistic Interpretability of
RNNs emulating Hidden Markov Models." NeurIPS 2025, arXiv:2510.25674.
H. W. Kuhn. "The Hungarian method for the assignment problem." Naval Research Logistics
Quarterly 2, 1955.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.typing import ArrayLike
from scipy.optimize import linear_sum_assignment

__all__ = ["RoundTripResult", "categorical_hmm_model", "match_states", "round_trip_fit"]


class RoundTripResult(NamedTuple):
    """Output of :func:`round_trip_fit`.

    Attributes
    ----------
    idata : arviz.InferenceData
        The NUTS fit (draws in the sampler's own labelling).
    transition_draws : np.ndarray, shape (D, K, K)
        Matched posterior draws of the transition matrix.
    emission_draws : np.ndarray, shape (D, K, S)
        Matched posterior draws of the emission probabilities.
    rows : list of dict
        One per matrix entry: ``parameter, truth, mean, sd, lower, upper, covered``.
    transition_max_abs_error : float
        Largest absolute error of the matched posterior-mean transition matrix.
    emission_max_abs_error : float
    """

    idata: object
    transition_draws: np.ndarray
    emission_draws: np.ndarray
    rows: list
    transition_max_abs_error: float
    emission_max_abs_error: float


def categorical_hmm_model(y=None, num_states=2, num_symbols=3, concentration=1.0):
    """NumPyro model: K-state HMM with Dirichlet rows, Categorical emissions, uniform start.

    ``y`` (N, T) int, the sequences (independent, plate ``sequences``).
    """
    K, S = num_states, num_symbols
    A = numpyro.sample("transition_matrix", dist.Dirichlet(jnp.full((K, K), concentration)))
    B = numpyro.sample("emission_probs", dist.Dirichlet(jnp.full((K, S), concentration)))
    from probdyn.processes import DiscreteHMM

    hmm = DiscreteHMM(jnp.ones(K) / K, A, dist.Categorical(probs=B), num_timesteps=y.shape[-1])
    with numpyro.plate("sequences", y.shape[0]):
        numpyro.sample("y", hmm, obs=y)


def match_states(estimate: ArrayLike, truth: ArrayLike) -> np.ndarray:
    """Permutation ``perm`` with ``estimate[perm]`` closest to ``truth`` row by row.

    Parameters
    ----------
    estimate, truth : ArrayLike, shape (K, S)
        Per-state rows (e.g. emission probabilities).

    Returns
    -------
    np.ndarray of int, shape (K,)
    """
    e, t = np.asarray(estimate), np.asarray(truth)
    if e.shape != t.shape or e.ndim != 2:
        raise ValueError(
            f"estimate and truth must be (K, S) of one shape; got {e.shape}, {t.shape}"
        )
    cost = ((t[:, None, :] - e[None, :, :]) ** 2).sum(-1)  # (true k, estimated j)
    _, perm = linear_sum_assignment(cost)
    return perm


def round_trip_fit(
    symbols: ArrayLike,
    transition_matrix: ArrayLike,
    emission_probs: ArrayLike,
    *,
    num_warmup: int = 300,
    num_samples: int = 300,
    num_chains: int = 1,
    seed: int = 0,
    level: float = 0.9,
    progress_bar: bool = False,
) -> RoundTripResult:
    """Fit a K-state categorical HMM with NUTS (:func:`probdyn.fit`) to the sequences and
    compare with the true matrices after matching states.

    Parameters
    ----------
    symbols : ArrayLike of int, shape (N, T)
        Sequences (e.g. from an emulator).
    transition_matrix : ArrayLike, shape (K, K)
        The truth the sequences should reproduce.
    emission_probs : ArrayLike, shape (K, S)
    num_warmup, num_samples, num_chains, seed : int
        NUTS settings.
    level : float
        Central posterior interval level.
    progress_bar : bool

    Returns
    -------
    RoundTripResult
    """
    from probdyn.infer import fit

    A_true = np.asarray(transition_matrix, np.float64)
    B_true = np.asarray(emission_probs, np.float64)
    K, S = B_true.shape
    y = jnp.asarray(np.asarray(symbols, np.int32))
    idata = fit(
        categorical_hmm_model,
        method="nuts",
        model_kwargs={"y": y, "num_states": K, "num_symbols": S},
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        seed=seed,
        progress_bar=progress_bar,
    )
    post = idata.posterior
    A = np.array(post["transition_matrix"]).reshape(-1, K, K)
    B = np.array(post["emission_probs"]).reshape(-1, K, S)
    for d in range(len(A)):
        perm = match_states(B[d], B_true)
        A[d] = A[d][np.ix_(perm, perm)]
        B[d] = B[d][perm]
    lo_q, hi_q = (1 - level) / 2, (1 + level) / 2
    rows = []
    for name, draws, truth in (("A", A, A_true), ("B", B, B_true)):
        lo, hi = np.quantile(draws, [lo_q, hi_q], axis=0)
        for idx in np.ndindex(truth.shape):
            t = float(truth[idx])
            rows.append(
                {
                    "parameter": f"{name}[{idx[0]},{idx[1]}]",
                    "truth": t,
                    "mean": float(draws[(slice(None), *idx)].mean()),
                    "sd": float(draws[(slice(None), *idx)].std()),
                    "lower": float(lo[idx]),
                    "upper": float(hi[idx]),
                    "covered": bool(lo[idx] <= t <= hi[idx]),
                }
            )
    return RoundTripResult(
        idata,
        A,
        B,
        rows,
        float(np.abs(A.mean(0) - A_true).max()),
        float(np.abs(B.mean(0) - B_true).max()),
    )
