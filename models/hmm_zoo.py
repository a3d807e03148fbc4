"""The reference hidden Markov models of Torre et al. (2025), as ``DiscreteHMM``\\ s.

Every model has 3 emission symbols, a uniform initial distribution and ``Categorical``
emissions, and carries the sequence length used in the paper (``num_timesteps``):

- :func:`linear_chain` with ``num_states`` in {2, 3, 4, 5}: neighbour transition
  probability :math:`q = 0.05^{1/(M-1)}`; end states stay with :math:`1-q`, interior
  states with :math:`1-2q`; state :math:`i` emits
  :math:`[0.99(1-a), 0.01, 0.99a]` with :math:`a = i/(M-1)`. Lengths 100 (M = 2),
  30 (M = 3, 4), 40 (M = 5).
- :func:`fully_connected`: 3 states, stay 0.95 and 0.025 to each other state; emissions
  0.98 on the diagonal and 0.01 elsewhere; length 30.
- :func:`cyclic`: 4 states on a ring, stay 0.95 and 0.025 to each ring neighbour;
  emissions ``[[.9, .1, 0], [.1, .9, 0], [0, .1, .9], [0, .9, .1]]``; length 40.

References
----------
E. Torre, M. Viscione, L. Pompe, B. F. Grewe, V. Mante. "Mechanistic Interpretability of
RNNs emulating Hidden Markov Models." NeurIPS 2025, arXiv:2510.25674.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from probdyn import DiscreteHMM

__all__ = [
    "REFERENCE_HMMS",
    "cyclic",
    "fully_connected",
    "hmm_matrices",
    "linear_chain",
    "reference_hmm",
]

_CHAIN_LENGTHS = {2: 100, 3: 30, 4: 30, 5: 40}


def _build(transition_matrix: np.ndarray, emission_probs: np.ndarray, num_timesteps: int):
    K = transition_matrix.shape[0]
    return DiscreteHMM(
        jnp.full(K, 1.0 / K),
        jnp.asarray(transition_matrix),
        dist.Categorical(probs=jnp.asarray(emission_probs)),
        num_timesteps=int(num_timesteps),
    )


def _check_length(num_timesteps, default):
    if num_timesteps is None:
        return default
    if int(num_timesteps) != num_timesteps or num_timesteps < 1:
        raise ValueError(f"num_timesteps must be a positive int; got {num_timesteps!r}")
    return int(num_timesteps)


def linear_chain(num_states: int = 2, num_timesteps: int | None = None) -> DiscreteHMM:
    """Linear-chain HMM with ``num_states`` in {2, 3, 4, 5} states and 3 symbols.

    Parameters
    ----------
    num_states : int
        M, the number of hidden states (2 to 5 as in the paper).
    num_timesteps : int, optional
        Sequence length; default the paper's (100, 30, 30, 40 for M = 2, 3, 4, 5).

    Returns
    -------
    DiscreteHMM
        Transition matrix (M, M), ``Categorical`` emissions with probs (M, 3).
    """
    if num_states not in _CHAIN_LENGTHS:
        raise ValueError(f"num_states must be one of 2, 3, 4, 5; got {num_states!r}")
    M = int(num_states)
    q = 0.05 ** (1.0 / (M - 1))
    A = np.zeros((M, M))
    for i in range(M):
        if i > 0:
            A[i, i - 1] = q
        if i < M - 1:
            A[i, i + 1] = q
        A[i, i] = 1.0 - A[i].sum()
    a = np.arange(M) / (M - 1)
    B = np.stack([0.99 * (1 - a), np.full(M, 0.01), 0.99 * a], axis=1)
    return _build(A, B, _check_length(num_timesteps, _CHAIN_LENGTHS[M]))


def fully_connected(num_timesteps: int | None = None) -> DiscreteHMM:
    """Fully connected 3-state HMM (stay 0.95, 0.025 to each other state), length 30."""
    A = np.full((3, 3), 0.025) + np.eye(3) * (0.95 - 0.025)
    B = np.full((3, 3), 0.01) + np.eye(3) * (0.98 - 0.01)
    return _build(A, B, _check_length(num_timesteps, 30))


def cyclic(num_timesteps: int | None = None) -> DiscreteHMM:
    """Cyclic 4-state HMM (stay 0.95, 0.025 to each ring neighbour), length 40."""
    A = np.zeros((4, 4))
    for i in range(4):
        A[i, i] = 0.95
        A[i, (i + 1) % 4] = 0.025
        A[i, (i - 1) % 4] = 0.025
    B = np.array([[0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.0, 0.1, 0.9], [0.0, 0.9, 0.1]])
    return _build(A, B, _check_length(num_timesteps, 40))


REFERENCE_HMMS = {
    "linear2": lambda **kw: linear_chain(2, **kw),
    "linear3": lambda **kw: linear_chain(3, **kw),
    "linear4": lambda **kw: linear_chain(4, **kw),
    "linear5": lambda **kw: linear_chain(5, **kw),
    "fully_connected": fully_connected,
    "cyclic": cyclic,
}


def reference_hmm(name: str, num_timesteps: int | None = None) -> DiscreteHMM:
    """One of the paper's HMMs by name: ``linear2`` .. ``linear5``, ``fully_connected``,
    ``cyclic``."""
    if name not in REFERENCE_HMMS:
        raise ValueError(f"name must be one of {sorted(REFERENCE_HMMS)}; got {name!r}")
    return REFERENCE_HMMS[name](num_timesteps=num_timesteps)


def hmm_matrices(hmm: DiscreteHMM) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(initial_probs (K,), transition_matrix (K, K), emission_probs (K, C))`` of a
    ``DiscreteHMM`` with ``Categorical`` emissions, as NumPy arrays."""
    if not isinstance(hmm.emission, dist.CategoricalProbs | dist.CategoricalLogits):
        raise TypeError(f"hmm must have Categorical emissions; got {type(hmm.emission).__name__}")
    return (
        np.asarray(hmm.initial_probs),
        np.asarray(hmm.transition_matrix),
        np.asarray(hmm.emission.probs),
    )
