r"""How faithfully does a sequence generator (e.g. an RNN emulator) reproduce an HMM?

Sample statistics of Torre et al. (2025): the Sinkhorn divergence between batches of
one-hot sequences against the HMM-vs-HMM baseline of the same size, the empirical
output-transition matrix, marginal symbol frequencies and volatility (symbol changes per
sequence). Beyond the paper, the HMM's exact likelihood (:class:`probdyn.DiscreteHMM`):

- the per-symbol cross-entropy :math:`-\frac1T \mathbb E_q \log p(y_{1:T})` of generated
  sequences under the HMM against the HMM's own per-symbol block entropy
  :math:`H_T / T = -\frac1T \mathbb E_p \log p(y_{1:T})` at the same length T, in bits.
  The entropy rate of an HMM's output process has no closed form; :func:`block_entropy`
  computes :math:`H_T / T` exactly by enumerating all :math:`S^T` sequences (tiny T), and
  :func:`log_loss` gives the Monte Carlo estimate with its standard error at any T, which
  is what :func:`fidelity_summary` reports. The gap is zero for a perfect emulator; it is
  not a divergence (a generator concentrated on likely sequences has a negative gap), so
  read it next to the n-gram KLs;
- n-gram (1..4) KL divergences :math:`\mathrm{KL}(p_n \| \hat q_n)` from the HMM's exact
  n-gram distribution (averaged over window positions) to the generator's empirical one;
- dwell times of Viterbi-decoded states against the geometric law
  :math:`P(d) = a_{kk}^{d-1}(1 - a_{kk})` and against HMM samples decoded the same way.

The round trip (fit an HMM with NUTS to generated sequences) is :func:`round_trip_fit`.

References
----------
E. Torre, M. Viscione, L. Pompe, B. F. Grewe, V. Mante. "Mechanistic Interpretability of
RNNs emulating Hidden Markov Models." NeurIPS 2025, arXiv:2510.25674.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from probdyn.kernels.sinkhorn import sinkhorn_divergence

__all__ = [
    "LogLoss",
    "block_entropy",
    "dwell_times",
    "empirical_ngram_probs",
    "fidelity_summary",
    "hmm_ngram_probs",
    "log_loss",
    "ngram_kl",
    "output_transition_matrix",
    "sequence_sinkhorn",
    "symbol_frequencies",
    "volatility",
]

_LN2 = math.log(2.0)


def _symbols(symbols, num_symbols=None, name="symbols"):
    s = np.asarray(symbols)
    if s.ndim != 2 or not np.issubdtype(s.dtype, np.integer):
        raise ValueError(f"{name} must be an int array of shape (N, T); got {s.dtype} {s.shape}")
    if num_symbols is not None and s.size and (s.min() < 0 or s.max() >= num_symbols):
        raise ValueError(
            f"{name} must lie in [0, num_symbols={num_symbols}); got range [{s.min()}, {s.max()}]"
        )
    return s


def _categorical_hmm(hmm):
    """(initial_probs, transition_matrix, emission_probs) of a Categorical DiscreteHMM."""
    from probdyn.processes import DiscreteHMM  # local: report/ is imported by infer/

    if not isinstance(hmm, DiscreteHMM) or not hasattr(hmm.emission, "probs"):
        raise TypeError("hmm must be a probdyn.DiscreteHMM with Categorical emissions")
    if hmm.batch_shape != ():
        raise ValueError(f"hmm must have an empty batch_shape; got {hmm.batch_shape}")
    return (
        np.asarray(hmm.initial_probs, np.float64),
        np.asarray(hmm.transition_matrix, np.float64),
        np.asarray(hmm.emission.probs, np.float64),
    )


# ----------------------------------------------------------------------------------------
# the paper's sample statistics
# ----------------------------------------------------------------------------------------


def sequence_sinkhorn(
    symbols_a: ArrayLike, symbols_b: ArrayLike, num_symbols: int, *, blur: float = 0.2
) -> float:
    """Sinkhorn divergence between two batches of sequences flattened to T x S one-hot.

    Parameters
    ----------
    symbols_a : ArrayLike of int, shape (N, T)
    symbols_b : ArrayLike of int, shape (M, T)
    num_symbols : int
    blur : float
        geomloss blur (the training loss uses 0.2).

    Returns
    -------
    float
    """
    a = _symbols(symbols_a, num_symbols, "symbols_a")
    b = _symbols(symbols_b, num_symbols, "symbols_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"sequence lengths differ: {a.shape} and {b.shape}")
    T = a.shape[1]
    x = jax.nn.one_hot(a, num_symbols).reshape(len(a), -1)
    y = jax.nn.one_hot(b, num_symbols).reshape(len(b), -1)
    return float(_sinkhorn_jit(x, y, blur=float(blur), diameter=math.sqrt(T * num_symbols)))


# one compiled program per shape instead of op-by-op dispatch around ott's loops
_sinkhorn_jit = jax.jit(sinkhorn_divergence, static_argnames=("blur", "diameter"))


def output_transition_matrix(symbols: ArrayLike, num_symbols: int) -> np.ndarray:
    """Empirical symbol-to-symbol transition matrix (S, S), rows normalised (NaN rows for
    symbols never followed by another)."""
    s = _symbols(symbols, num_symbols)
    counts = np.zeros((num_symbols, num_symbols))
    np.add.at(counts, (s[:, :-1].ravel(), s[:, 1:].ravel()), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts / counts.sum(1, keepdims=True)


def symbol_frequencies(symbols: ArrayLike, num_symbols: int) -> np.ndarray:
    """Marginal frequency of each symbol over all positions, shape (S,)."""
    s = _symbols(symbols, num_symbols)
    return np.bincount(s.ravel(), minlength=num_symbols) / s.size


def volatility(symbols: ArrayLike) -> float:
    """Mean number of symbol changes per sequence."""
    s = _symbols(symbols)
    return float((s[:, 1:] != s[:, :-1]).sum(1).mean())


# ----------------------------------------------------------------------------------------
# exact-likelihood metrics
# ----------------------------------------------------------------------------------------


class LogLoss(NamedTuple):
    """Monte Carlo per-symbol log loss in bits: ``mean`` and its standard error ``se``."""

    mean: float
    se: float


def log_loss(hmm, symbols: ArrayLike) -> LogLoss:
    r"""Per-symbol negative log-likelihood :math:`-\frac1T \log_2 p(y_{1:T})` of sequences
    under the HMM, averaged over sequences.

    Of the HMM's own samples it estimates the block entropy :math:`H_T/T`; of another
    source's samples, the cross-entropy.

    Parameters
    ----------
    hmm : DiscreteHMM
        With Categorical emissions.
    symbols : ArrayLike of int, shape (N, T)

    Returns
    -------
    LogLoss
        Mean and standard error (bits per symbol).
    """
    s = _symbols(symbols)
    lp = np.asarray(jax.jit(type(hmm).log_prob)(hmm, jnp.asarray(s)), np.float64)
    per = -lp / (s.shape[1] * _LN2)
    se = per.std(ddof=1) / math.sqrt(len(per)) if len(per) > 1 else float("nan")
    return LogLoss(float(per.mean()), float(se))


def block_entropy(hmm, num_timesteps: int) -> float:
    r"""Exact per-symbol block entropy :math:`H(Y_{1:T}) / T` in bits, by enumerating all
    :math:`S^T` sequences (feasible for :math:`S^T \lesssim 10^6`).

    Parameters
    ----------
    hmm : DiscreteHMM
        With Categorical emissions (its ``num_timesteps`` is ignored).
    num_timesteps : int
        T.

    Returns
    -------
    float
    """
    from probdyn.processes import DiscreteHMM

    pi, A, B = _categorical_hmm(hmm)
    S = B.shape[1]
    if S**num_timesteps > 2_000_000:
        raise ValueError(
            f"num_timesteps={num_timesteps} needs {S}^{num_timesteps} sequences; use log_loss "
            "on samples for long sequences"
        )
    seqs = np.array(list(itertools.product(range(S), repeat=num_timesteps)), np.int32)
    h = DiscreteHMM(pi, A, type(hmm.emission)(probs=B), num_timesteps=num_timesteps)
    lp = np.asarray(jax.jit(h.log_prob)(jnp.asarray(seqs)), np.float64)
    p = np.exp(lp)
    return float(-(p * np.where(p > 0, lp, 0.0)).sum() / (num_timesteps * _LN2))


def hmm_ngram_probs(hmm, n: int, num_timesteps: int | None = None) -> np.ndarray:
    """Exact n-gram distribution of the HMM, averaged over the window start positions
    t = 0 .. T-n (the distribution of a uniformly chosen window).

    Parameters
    ----------
    hmm : DiscreteHMM
        With Categorical emissions.
    n : int
        Window length.
    num_timesteps : int, optional
        T; default ``hmm.num_timesteps``.

    Returns
    -------
    np.ndarray, shape (S,) * n
    """
    pi, A, B = _categorical_hmm(hmm)
    T = num_timesteps or hmm.num_timesteps
    if T is None or not 1 <= n <= T:
        raise ValueError(f"n must lie in [1, T]; got n={n!r}, T={T!r}")
    K, S = B.shape
    grams = np.array(list(itertools.product(range(S), repeat=n)))  # (S^n, n)
    # average state marginal over window starts
    marg = np.zeros(K)
    p_t = pi.copy()
    for _ in range(T - n + 1):
        marg += p_t
        p_t = p_t @ A
    marg /= T - n + 1
    alpha = marg[None, :] * B[:, grams[:, 0]].T  # (S^n, K)
    for j in range(1, n):
        alpha = (alpha @ A) * B[:, grams[:, j]].T
    return alpha.sum(1).reshape((S,) * n)


def empirical_ngram_probs(
    symbols: ArrayLike, n: int, num_symbols: int, *, pseudocount: float = 0.0
) -> np.ndarray:
    """Frequencies of all n-grams over every window of every sequence, shape (S,) * n,
    with ``pseudocount`` added to every count before normalising."""
    s = _symbols(symbols, num_symbols)
    if not 1 <= n <= s.shape[1]:
        raise ValueError(f"n must lie in [1, T={s.shape[1]}]; got {n!r}")
    idx = np.zeros(s[:, : s.shape[1] - n + 1].shape, np.int64)
    for j in range(n):
        idx = idx * num_symbols + s[:, j : s.shape[1] - n + 1 + j]
    counts = np.bincount(idx.ravel(), minlength=num_symbols**n).astype(np.float64)
    counts += pseudocount
    return (counts / counts.sum()).reshape((num_symbols,) * n)


def ngram_kl(p: ArrayLike, q: ArrayLike) -> float:
    """KL(p || q) in bits between two n-gram tables of the same shape (inf where q = 0 <
    p)."""
    p, q = np.asarray(p, np.float64).ravel(), np.asarray(q, np.float64).ravel()
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape; got {p.shape} and {q.shape}")
    m = p > 0
    with np.errstate(divide="ignore"):
        return float(np.sum(p[m] * (np.log2(p[m]) - np.log2(q[m]))))


def dwell_times(paths: ArrayLike, num_states: int) -> list[np.ndarray]:
    """Lengths of the runs of each state that touch neither end of the sequence.

    Parameters
    ----------
    paths : ArrayLike of int, shape (N, T)
        State paths (e.g. Viterbi-decoded).
    num_states : int

    Returns
    -------
    list of np.ndarray
        For each state, the complete (uncensored) run lengths.
    """
    z = _symbols(paths, num_states, "paths")
    out = [[] for _ in range(num_states)]
    T = z.shape[1]
    for row in z:
        change = np.flatnonzero(row[1:] != row[:-1]) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [T]])
        for a, b in zip(starts[1:-1], ends[1:-1], strict=True):  # interior runs only
            out[row[a]].append(b - a)
    return [np.asarray(o, np.int64) for o in out]


def _dwell_tv(a, b, max_len):
    ha = np.bincount(np.minimum(a, max_len), minlength=max_len + 1) / max(len(a), 1)
    hb = np.bincount(np.minimum(b, max_len), minlength=max_len + 1) / max(len(b), 1)
    return 0.5 * float(np.abs(ha - hb).sum())


def fidelity_summary(
    rng_key: jax.Array,
    hmm,
    symbols: ArrayLike,
    *,
    max_ngram: int = 4,
    pseudocount: float = 0.5,
    blur: float = 0.2,
    sinkhorn_size: int = 1000,
) -> dict:
    """All fidelity metrics of generated sequences against the HMM, each with the
    baseline of an independent HMM sample of the same size.

    Parameters
    ----------
    rng_key : Array
        Key for the HMM baseline samples.
    hmm : DiscreteHMM
        With Categorical emissions and ``num_timesteps`` equal to the sequences' T.
    symbols : ArrayLike of int, shape (N, T)
        Generated sequences.
    max_ngram : int
        Largest n for the n-gram KLs.
    pseudocount : float
        Added to every empirical n-gram count (so the KL stays finite).
    blur : float
        Sinkhorn blur.
    sinkhorn_size : int
        Sequences per side in the Sinkhorn comparisons (the cost is quadratic).

    Returns
    -------
    dict
        Keys ``sinkhorn``, ``transition_sq_error``, ``frequencies``, ``volatility``,
        ``log_loss_bits``, ``ngram_kl_bits``, ``dwell``, each with ``emulator`` and
        ``baseline`` entries (``hmm`` for the HMM's own quantities), plus
        ``block_entropy_bits`` and ``cross_entropy_gap_bits``.
    """
    pi, A, B = _categorical_hmm(hmm)
    K, S = B.shape
    q = _symbols(symbols, S)
    N, T = q.shape
    if T != hmm.num_timesteps:
        raise ValueError(f"symbols have T={T} but hmm.num_timesteps={hmm.num_timesteps}")
    k1, k2 = jax.random.split(rng_key)
    base = np.asarray(hmm.sample(k1, (N,)))
    ref = np.asarray(hmm.sample(k2, (N,)))  # the reference both are compared with
    m = min(sinkhorn_size, N)
    out: dict = {"num_sequences": N, "num_timesteps": T}
    out["sinkhorn"] = {
        "emulator": sequence_sinkhorn(q[:m], ref[:m], S, blur=blur),
        "baseline": sequence_sinkhorn(base[:m], ref[:m], S, blur=blur),
        "sample_size": m,
    }
    # exact output-transition matrix of the HMM: the 2-gram table normalised by rows
    p2 = hmm_ngram_probs(hmm, 2)
    exact_tm = p2 / p2.sum(1, keepdims=True)
    out["transition_sq_error"] = {
        "emulator": float(np.nansum((output_transition_matrix(q, S) - exact_tm) ** 2)),
        "baseline": float(np.nansum((output_transition_matrix(base, S) - exact_tm) ** 2)),
        "hmm_output_transition_matrix": exact_tm.tolist(),
        "emulator_output_transition_matrix": output_transition_matrix(q, S).tolist(),
    }
    out["frequencies"] = {
        "emulator": symbol_frequencies(q, S).tolist(),
        "baseline": symbol_frequencies(base, S).tolist(),
        "hmm": hmm_ngram_probs(hmm, 1).tolist(),
    }
    out["volatility"] = {"emulator": volatility(q), "baseline": volatility(base)}
    ent = log_loss(hmm, base)
    cross = log_loss(hmm, q)
    out["log_loss_bits"] = {"emulator": cross._asdict(), "baseline": ent._asdict()}
    out["block_entropy_bits"] = ent.mean
    out["cross_entropy_gap_bits"] = {
        "mean": cross.mean - ent.mean,
        "se": math.hypot(cross.se, ent.se),
    }
    kls = {"emulator": {}, "baseline": {}}
    for n in range(1, max_ngram + 1):
        p = hmm_ngram_probs(hmm, n)
        kls["emulator"][n] = ngram_kl(p, empirical_ngram_probs(q, n, S, pseudocount=pseudocount))
        kls["baseline"][n] = ngram_kl(p, empirical_ngram_probs(base, n, S, pseudocount=pseudocount))
    out["ngram_kl_bits"] = kls
    viterbi = jax.jit(type(hmm).viterbi)
    z_q = np.asarray(viterbi(hmm, jnp.asarray(q)))
    z_b = np.asarray(viterbi(hmm, jnp.asarray(base)))
    dq, db = dwell_times(z_q, K), dwell_times(z_b, K)
    max_len = 4 * int(np.ceil(1.0 / max(1e-9, 1 - A.diagonal().max())))
    out["dwell"] = {
        "geometric_mean": (1.0 / (1.0 - A.diagonal())).tolist(),
        "emulator_mean": [float(d.mean()) if len(d) else float("nan") for d in dq],
        "baseline_mean": [float(d.mean()) if len(d) else float("nan") for d in db],
        "emulator_count": [len(d) for d in dq],
        "tv_emulator_vs_baseline": [_dwell_tv(a, b, max_len) for a, b in zip(dq, db, strict=True)],
    }
    return out
