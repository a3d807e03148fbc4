"""Hidden Markov model inference kernels: pure JAX, no NumPyro.

All functions act on one sequence of ``num_timesteps`` T over ``num_states`` K; batch them
with :func:`jax.vmap`. Probabilities enter as probabilities (``initial_probs`` (K,),
``transition_matrix`` (K, K) or time-varying (T-1, K, K), where ``transition_matrix[t]``
moves the chain from step t to t+1) and emissions as ``log_likelihoods`` (T, K).

Numerics
--------
The forward pass is the scaled recursion of Rabiner (1989): emission weights are
exponentiated once, outside the loop, after subtracting their per-step maximum, and the
filtered vector is renormalised every step, so the per-step work is one mat-vec. Such a
pass rounds probabilities below the float range to zero, which is a silent wrong answer
when a state so rounded later explains the data. Vectorised checks after the pass
(:mod:`probdyn.kernels._hmm_precision`: every structurally positive prediction, backward
message and step normaliser at least ``tiny / eps``, about ``e^-71`` in float32 and
``e^-672`` in float64; the parallel pass also consistent with one sequential step) decide
whether it is exact to rounding; if not, the whole computation (value, smoother,
two-slice marginals, gradient) is redone in the log domain
(:mod:`probdyn.kernels._hmm_log`), behind a scalar ``lax.cond`` that costs nothing when
not needed (under an outer ``vmap`` both branches run). The checks are conservative:
long left-to-right chains, whose early states decay below ``tiny / eps``, take the
log-domain path (about 5x slower for the value, 10x for the gradient, at K = 4). A NaN or
negative probability also fails the checks and gives NaN (never a finite number).

:func:`hmm_log_likelihood` has an analytic derivative (a ``custom_jvp``): the tangent is
the inner product of the input tangents with posterior marginals from one
forward-backward pass,

.. math::

    \\mathrm{d}\\log p(y) = \\sum_t \\langle \\gamma_t, \\mathrm{d}\\ell_t \\rangle
      + \\sum_t \\sum_{ij} \\frac{\\xi_t(i,j)}{A_{ij}} \\mathrm{d}A_{ij}
      + \\sum_k \\frac{\\gamma_0(k)}{\\pi_k} \\mathrm{d}\\pi_k,

evaluated without dividing by A or pi (so structural zeros are safe). Forward and reverse
mode, and higher derivatives, all work.

Parallel-in-time versions (``parallel=True``) use :func:`jax.lax.associative_scan` over
(K, K) matrix products (O(T K^3) work, O(log T) depth), after Särkkä & García-Fernández
(2021), "Temporal parallelization of Bayesian smoothers"; they live in
:mod:`probdyn.kernels.hmm_parallel` and fill the same result NamedTuples.

On CPU the sequential passes are bound by the fixed cost of a loop iteration at small K:
for K <= ``SMALL_K`` (8) the per-step products are a broadcast multiply-and-sum rather
than a dot, and the posterior and gradient run the forward and the backward pass in one
``lax.scan`` (the backward messages do not depend on the forward ones).

References
----------
L. R. Rabiner, "A tutorial on hidden Markov models and selected applications in speech
recognition", Proc. IEEE 77(2), 1989.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from probdyn.kernels import _hmm_log as _L
from probdyn.kernels import _hmm_precision as _P
from probdyn.kernels import hmm_parallel as _par
from probdyn.kernels._hmm_inputs import apply_keep as _apply_keep
from probdyn.kernels._hmm_inputs import compiled as _compiled
from probdyn.kernels._hmm_inputs import prepare as _prepare
from probdyn.kernels._hmm_inputs import scaled_emissions as _scaled_emissions
from probdyn.kernels._hmm_inputs import trans_xs as _trans_xs

Array = jax.Array

__all__ = [
    "HMMFilterResult",
    "HMMPosterior",
    "hmm_log_likelihood",
    "hmm_one_step_log_predictives",
    "hmm_filter",
    "hmm_backward",
    "hmm_smoother",
    "hmm_two_slice_marginals",
    "hmm_expected_transitions",
    "hmm_posterior_mode",
    "hmm_posterior_sample",
    "hmm_sample_states",
]


class HMMFilterResult(NamedTuple):
    """Output of :func:`hmm_filter`.

    Attributes
    ----------
    marginal_loglik : Array, shape ()
        :math:`\\log p(y_{0:T-1})`.
    filtered_probs : Array, shape (T, K)
        :math:`p(z_t \\mid y_{0:t})`.
    predicted_probs : Array, shape (T, K)
        :math:`p(z_t \\mid y_{0:t-1})` (the initial distribution at t = 0).
    """

    marginal_loglik: Array
    filtered_probs: Array
    predicted_probs: Array


class HMMPosterior(NamedTuple):
    """Output of :func:`hmm_smoother`: the filter's fields plus smoothed marginals.

    Attributes
    ----------
    marginal_loglik : Array, shape ()
    filtered_probs : Array, shape (T, K)
    predicted_probs : Array, shape (T, K)
    smoothed_probs : Array, shape (T, K)
        :math:`p(z_t \\mid y_{0:T-1})`.
    """

    marginal_loglik: Array
    filtered_probs: Array
    predicted_probs: Array
    smoothed_probs: Array


#: Largest number of states for which the per-step products of the sequential scans are
#: written as a broadcast multiply-and-sum instead of a dot (static: K is a shape).
SMALL_K = 8


def _vecmat(alpha, A):
    """``alpha @ A`` for one step, (K,) x (K, K) -> (K,).

    For K <= :data:`SMALL_K` a broadcast multiply-and-sum: XLA:CPU lowers a tiny dot
    inside a ``while`` loop to a library call whose fixed cost dominates at small K, while
    the elementwise form fuses with the rest of the step.
    """
    if A.shape[-1] <= SMALL_K:
        return jnp.sum(alpha[:, None] * A, axis=0)
    return alpha @ A


def _matvec(A, v):
    """``A @ v`` for one step, (K, K) x (K,) -> (K,); see :func:`_vecmat`."""
    if A.shape[-1] <= SMALL_K:
        return jnp.sum(A * v[None, :], axis=1)
    return A @ v


_safe_log = _L.safe_log


# --------------------------------------------------------------------------------------
# sequential forward / backward
# --------------------------------------------------------------------------------------


def _condition(pred, B_t, m_t):
    """Condition a prediction on one scaled emission: (filtered (K,), log normaliser ())."""
    a = pred * B_t
    c = jnp.sum(a)
    return a / c, jnp.log(c) + m_t


def _forward_step(A, alpha, xs):
    """One scaled forward step from ``alpha_{t-1}``; ``xs = (A_t or None, B_t, m_t, keep_t)``."""
    A_t, B_t, m_t, keep_t = xs
    At = A if A_t is None else A_t
    pred = _apply_keep(keep_t, _vecmat(alpha, At), alpha)
    return _condition(pred, B_t, m_t)


def _backward_step(A, beta, xs):
    """One backward step from ``beta_{t+1}`` (max 1); ``xs = (A_t or None, B_{t+1}, keep_t)``."""
    A_t, B_t, keep_t = xs
    At = A if A_t is None else A_t
    v = B_t * beta
    u = _apply_keep(keep_t, _matvec(At, v), v)
    return u / jnp.max(u)


def _forward_seq(pi, A, ll, keep):
    """Scaled forward pass. Returns filtered (T,K), predicted (T,K), log normalisers (T,).

    The loop stores only the filtered vector and its log normaliser; the predictions are
    one batched product after the loop.
    """
    B, mB = _scaled_emissions(ll)
    alpha0, lc0 = _condition(pi, B[0], mB[0])

    def step(alpha, xs):
        alpha_new, lc = _forward_step(A, alpha, xs)
        return alpha_new, (alpha_new, lc)

    _, (alphas, lcs) = lax.scan(step, alpha0, (_trans_xs(A), B[1:], mB[1:], keep))
    return _forward_finish(pi, A, keep, alpha0, lc0, alphas, lcs)


def _forward_finish(pi, A, keep, alpha0, lc0, alphas, lcs):
    alphas = jnp.concatenate([alpha0[None], alphas])
    lcs = jnp.concatenate([lc0[None], lcs])
    return alphas, _predictions(pi, A, alphas, keep), lcs


def _predictions(pi, A, alphas, keep):
    """p(z_t | y_{0:t-1}) from the filtered vectors: (T, K)."""
    if alphas.shape[0] == 1:
        return pi[None]
    prev = alphas[:-1]
    pred = prev @ A if A.ndim == 2 else jnp.einsum("ti,tij->tj", prev, A)
    if keep is not None:
        pred = jnp.where(keep[:, None], pred, prev)
    return jnp.concatenate([pi[None], pred])


def _backward_seq(A, ll, keep):
    """Backward messages normalised to max 1.

    Returns ``betas`` (T, K), ``vs`` (T-1, K) and ``ns`` (T-1,) such that
    ``u_t = A_t @ vs[t] = ns[t] * betas[t]`` and the two-slice marginal is
    ``xi_t(i, j) ∝ alpha_t(i) A_t(i, j) vs[t](j)``. The loop stores only the messages;
    ``vs`` and ``ns`` are recomputed after it as batched products.
    """
    T, K = ll.shape
    if T == 1:
        return _backward_finish(A, ll, keep, None)
    em, _ = _scaled_emissions(ll)

    def step(beta, xs):
        beta_new = _backward_step(A, beta, xs)
        return beta_new, beta_new

    ones = jnp.ones((K,), ll.dtype)
    _, betas = lax.scan(step, ones, (_trans_xs(A), em[1:], keep), reverse=True)
    return _backward_finish(A, ll, keep, betas)


def _backward_finish(A, ll, keep, betas):
    """(betas, vs, ns) of :func:`_backward_seq` from the scan's messages (T-1, K)."""
    T, K = ll.shape
    ones = jnp.ones((K,), ll.dtype)
    if T == 1:
        return ones[None], jnp.zeros((0, K), ll.dtype), jnp.zeros((0,), ll.dtype)
    em = _scaled_emissions(ll)[0][1:]
    betas = jnp.concatenate([betas, ones[None]])
    vs = em * betas[1:]
    u = vs @ A.T if A.ndim == 2 else jnp.einsum("tij,tj->ti", A, vs)
    if keep is not None:
        u = jnp.where(keep[:, None], u, vs)
    return betas, vs, jnp.max(u, axis=-1)


def _forward_backward_seq(pi, A, ll, keep):
    """:func:`_forward_seq` and :func:`_backward_seq` in one ``lax.scan``.

    The backward messages do not depend on the forward ones, so step ``i`` of one loop
    advances the forward pass to ``t = i + 1`` and the backward pass to ``t = T - 2 - i``:
    half the loop iterations, whose fixed cost dominates at small K on CPU.
    """
    T, K = ll.shape
    if T == 1:
        return _forward_seq(pi, A, ll, keep), _backward_seq(A, ll, keep)
    B, mB = _scaled_emissions(ll)
    alpha0, lc0 = _condition(pi, B[0], mB[0])
    A_xs = _trans_xs(A)
    fwd_xs = (A_xs, B[1:], mB[1:], keep)
    bwd_xs = jax.tree.map(lambda x: x[::-1], (A_xs, B[1:], keep))

    def step(carry, xs):
        alpha, beta = carry
        alpha_new, lc = _forward_step(A, alpha, xs[0])
        beta_new = _backward_step(A, beta, xs[1])
        return (alpha_new, beta_new), (alpha_new, lc, beta_new)

    ones = jnp.ones((K,), ll.dtype)
    _, (alphas, lcs, betas_rev) = lax.scan(step, (alpha0, ones), (fwd_xs, bwd_xs))
    fwd = _forward_finish(pi, A, keep, alpha0, lc0, alphas, lcs)
    return fwd, _backward_finish(A, ll, keep, betas_rev[::-1])


# --------------------------------------------------------------------------------------
# dispatch with underflow fallback
# --------------------------------------------------------------------------------------


def _with_fallback(robust, fast_fn, log_fn):
    """``log_fn()`` if robust; else ``fast_fn() -> (out, ok)`` and, unless robust is False,
    ``log_fn()`` instead when ``ok`` is False (a scalar ``lax.cond``)."""
    if robust:
        return log_fn()
    out, ok = fast_fn()
    if robust is False:
        return out
    return lax.cond(ok, lambda: out, log_fn)


def _fast_forward(pi, A, ll, keep, parallel):
    """Scaled forward pass, its precision flag and step normalisers."""
    out = _par.forward(pi, A, ll, keep) if parallel else _forward_seq(pi, A, ll, keep)
    ok, c = _P.forward_ok(pi, A, ll, keep, *out, parallel)
    return out, ok, c


def _forward(pi, A, ll, keep, parallel, robust=None):
    def fast():
        out, ok, _ = _fast_forward(pi, A, ll, keep, parallel)
        return out, ok

    def log():
        f = _L.forward(pi, A, ll, keep)
        return jnp.exp(f.log_alphas), jnp.exp(f.log_preds), f.lcs

    return _with_fallback(robust, fast, log)


def _log_filtered(pi, A, ll, keep, parallel, robust=None):
    """log p(z_t | y_{0:t}) (T, K), exact in the log domain where the fast pass is not."""

    def fast():
        out, ok, _ = _fast_forward(pi, A, ll, keep, parallel)
        return _safe_log(out[0]), ok

    return _with_fallback(robust, fast, lambda: _L.forward(pi, A, ll, keep).log_alphas)


def _fast_backward(A, ll, keep, parallel):
    if parallel:
        betas, vs, ns, head = _par.backward(A, ll, keep)
    else:
        (betas, vs, ns), head = _backward_seq(A, ll, keep), None
    return (betas, vs, ns), _P.backward_ok(A, ll, keep, betas, ns, head)


def _backward(A, ll, keep, parallel, robust=None):
    def fast():
        out, ok = _fast_backward(A, ll, keep, parallel)
        return out[0], ok

    return _with_fallback(robust, fast, lambda: jnp.exp(_L.backward(A, ll, keep)[0]))


def _fast_posterior(pi, A, ll, keep, parallel):
    """Forward-backward quantities shared by smoothing, two-slice marginals and gradients,
    and one flag for whether all of them are accurate."""
    if parallel:
        (alphas, preds, lcs), ok_f, c = _fast_forward(pi, A, ll, keep, parallel)
        (betas, vs, ns), ok_b = _fast_backward(A, ll, keep, parallel)
    else:
        (alphas, preds, lcs), (betas, vs, ns) = _forward_backward_seq(pi, A, ll, keep)
        ok_f, c = _P.forward_ok(pi, A, ll, keep, alphas, preds, lcs, False)
        ok_b = _P.backward_ok(A, ll, keep, betas, ns)
    g = alphas * betas
    gsum = jnp.sum(g, axis=-1)
    smoothed = g / gsum[:, None]
    # per-step normaliser of xi_t: z_t = sum_ij alpha_t(i) A_t(i,j) v_t(j) = ns[t] * gsum[t]
    w = alphas[:-1] / (ns[:, None] * gsum[:-1, None])  # (T-1, K)
    ok = ok_f & ok_b & _P.posterior_ok(c, gsum, ns)
    return (alphas, preds, lcs, smoothed, w, vs, betas), ok


def _fast_gradient_terms(pi, A, ll, keep, parallel):
    (_, _, lcs, smoothed, w, vs, betas), ok = _fast_posterior(pi, A, ll, keep, parallel)
    K = ll.shape[1]
    # d/dpi_k = B_0(k) beta_0(k) / sum_k pi_k B_0(k) beta_0(k): no division by pi_k.
    lg = ll[0] + _safe_log(betas[0])
    mg = jnp.max(lg)
    g0 = jnp.exp(lg - jnp.where(jnp.isfinite(mg), mg, 0.0))
    g_pi = g0 / jnp.sum(pi * g0)
    if A.ndim == 3:
        g_A = w[:, :, None] * vs[:, None, :]
        if keep is not None:
            g_A = jnp.where(keep[:, None, None], g_A, 0.0)
    else:
        ww = w if keep is None else jnp.where(keep[:, None], w, 0.0)
        g_A = ww.T @ vs if ll.shape[0] > 1 else jnp.zeros((K, K), ll.dtype)
    return (jnp.sum(lcs), smoothed, g_A, g_pi), ok


@partial(jax.custom_jvp, nondiff_argnums=(4, 5))
def _loglik(pi, A, ll, keep, parallel, robust):
    def fast():
        out, ok, _ = _fast_forward(pi, A, ll, keep, parallel)
        return jnp.sum(out[2]), ok

    return _with_fallback(robust, fast, lambda: jnp.sum(_L.forward(pi, A, ll, keep).lcs))


@_loglik.defjvp
def _loglik_jvp(parallel, robust, primals, tangents):
    pi, A, ll, keep = primals
    dpi, dA, dll, _ = tangents
    out, smoothed, g_A, g_pi = _with_fallback(
        robust,
        lambda: _fast_gradient_terms(pi, A, ll, keep, parallel),
        lambda: _L.gradient_terms(pi, A, ll, keep),
    )
    tangent = jnp.sum(smoothed * dll) + jnp.sum(g_A * dA) + jnp.sum(g_pi * dpi)
    return out, tangent


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------


def _robust(robust):
    if robust not in (None, True, False):
        raise ValueError(f"robust must be None, True or False; got {robust!r}")
    return robust


@_compiled("parallel", "robust")
def hmm_log_likelihood(
    initial_probs: ArrayLike,
    transition_matrix: ArrayLike,
    log_likelihoods: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    length: ArrayLike | None = None,
    parallel: bool = False,
    robust: bool | None = None,
) -> Array:
    """Marginal log-likelihood :math:`\\log p(y_{0:T-1})` of an HMM, with exact gradients.

    Parameters
    ----------
    initial_probs : ArrayLike, shape (K,)
        Distribution of the first state.
    transition_matrix : ArrayLike, shape (K, K) or (T-1, K, K)
        Row-stochastic; ``transition_matrix[..., i, j] = p(z_{t+1} = j | z_t = i)``.
    log_likelihoods : ArrayLike, shape (T, K)
        :math:`\\log p(y_t \\mid z_t = k)`.
    mask : ArrayLike of bool, shape (T,), optional
        False where the observation is missing: that step has no emission term.
    length : int or ArrayLike of int, shape (), optional
        Number of valid steps; later steps are padding and do not contribute.
    parallel : bool
        Use the associative-scan (O(log T) depth) algorithm instead of ``lax.scan``.
    robust : bool or None
        None (default): the fast scaled recursion, redone in the log domain when the
        precision checks (module docstring) fail (a scalar ``lax.cond``; under an outer
        ``vmap`` both branches run). False: the fast recursion only, unchecked (it may be
        wrong, or NaN, where probabilities fall below the float range). True: always the
        log-domain recursion (sequential; several times slower, never underflows).

    Returns
    -------
    Array, shape ()
        The log-likelihood. Its derivative (forward or reverse mode) is computed
        analytically from one forward-backward pass.
    """
    pi, A, ll, keep = _prepare(initial_probs, transition_matrix, log_likelihoods, mask, length)
    return _loglik(pi, A, ll, keep, bool(parallel), _robust(robust))


@_compiled("parallel", "robust")
def hmm_one_step_log_predictives(
    initial_probs: ArrayLike,
    transition_matrix: ArrayLike,
    log_likelihoods: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    length: ArrayLike | None = None,
    parallel: bool = False,
    robust: bool | None = None,
) -> Array:
    """One-step-ahead log predictive densities :math:`\\log p(y_t \\mid y_{0:t-1})`.

    These are the log normalisers of the forward pass (the scaling coefficients of
    Rabiner, 1989), so

    .. math::

        \\sum_{t=0}^{T-1} \\log p(y_t \\mid y_{0:t-1}) = \\log p(y_{0:T-1}),

    the value of :func:`hmm_log_likelihood`. They are the pointwise log-likelihood that
    leave-future-out cross-validation needs: each term depends on the past only.

    Parameters are as for :func:`hmm_log_likelihood` (same fast path, same log-domain
    fallback; no custom derivative: these are meant for evaluation, not for gradients).

    Returns
    -------
    Array, shape (T,)
        The per-step terms; 0 at masked steps (no observation) and past ``length``.
    """
    pi, A, ll, keep = _prepare(initial_probs, transition_matrix, log_likelihoods, mask, length)
    return _forward(pi, A, ll, keep, bool(parallel), _robust(robust))[2]


@_compiled("parallel", "robust")
def hmm_filter(
    initial_probs: ArrayLike,
    transition_matrix: ArrayLike,
    log_likelihoods: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    length: ArrayLike | None = None,
    parallel: bool = False,
    robust: bool | None = None,
) -> HMMFilterResult:
    """Forward filtering: :math:`p(z_t \\mid y_{0:t})` and the marginal log-likelihood.

    Parameters (``robust`` included) are as for :func:`hmm_log_likelihood`. Steps past
    ``length`` repeat the
    last valid filtered distribution.

    Returns
    -------
    HMMFilterResult
        ``marginal_loglik`` (), ``filtered_probs`` (T, K), ``predicted_probs`` (T, K).
    """
    pi, A, ll, keep = _prepare(initial_probs, transition_matrix, log_likelihoods, mask, length)
    alphas, preds, lcs = _forward(pi, A, ll, keep, bool(parallel), _robust(robust))
    return HMMFilterResult(jnp.sum(lcs), alphas, preds)


@_compiled("parallel", "robust")
def hmm_backward(
    transition_matrix: ArrayLike,
    log_likelihoods: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    length: ArrayLike | None = None,
    parallel: bool = False,
    robust: bool | None = None,
) -> Array:
    """Backward messages :math:`\\beta_t(k) \\propto p(y_{t+1:T-1} \\mid z_t = k)`.

    Parameters
    ----------
    transition_matrix : ArrayLike, shape (K, K) or (T-1, K, K)
    log_likelihoods : ArrayLike, shape (T, K)
    mask, length, parallel
        As for :func:`hmm_log_likelihood`.

    Returns
    -------
    Array, shape (T, K)
        Backward messages, each scaled to have maximum 1 (``beta[T-1] = 1``).
    """
    ll = jnp.asarray(log_likelihoods)
    K = ll.shape[-1] if ll.ndim == 2 else 0
    pi = jnp.full((K,), 1.0 / max(K, 1), jnp.result_type(ll.dtype, jnp.float32))
    _, A, ll, keep = _prepare(pi, transition_matrix, ll, mask, length)
    return _backward(A, ll, keep, bool(parallel), _robust(robust))


@_compiled("parallel", "robust")
def hmm_smoother(
    initial_probs: ArrayLike,
    transition_matrix: ArrayLike,
    log_likelihoods: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    length: ArrayLike | None = None,
    parallel: bool = False,
    robust: bool | None = None,
) -> HMMPosterior:
    """Forward-backward smoothing: :math:`p(z_t \\mid y_{0:T-1})`.

    Parameters are as for :func:`hmm_log_likelihood`.

    Returns
    -------
    HMMPosterior
        ``marginal_loglik`` (), ``filtered_probs``, ``predicted_probs`` and
        ``smoothed_probs``, each (T, K).
    """
    pi, A, ll, keep = _prepare(initial_probs, transition_matrix, log_likelihoods, mask, length)

    def fast():
        out, ok = _fast_posterior(pi, A, ll, keep, bool(parallel))
        return out[:4], ok

    alphas, preds, lcs, smoothed = _with_fallback(
        _robust(robust), fast, lambda: _L.smoother(pi, A, ll, keep)
    )
    return HMMPosterior(jnp.sum(lcs), alphas, preds, smoothed)


@_compiled("parallel", "robust")
def hmm_two_slice_marginals(
    initial_probs: ArrayLike,
    transition_matrix: ArrayLike,
    log_likelihoods: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    length: ArrayLike | None = None,
    parallel: bool = False,
    robust: bool | None = None,
) -> Array:
    """Two-slice marginals :math:`\\xi_t(i, j) = p(z_t = i, z_{t+1} = j \\mid y_{0:T-1})`.

    Parameters are as for :func:`hmm_log_likelihood`.

    Returns
    -------
    Array, shape (T-1, K, K)
        Each slice sums to one. Slices past ``length`` are zero.
    """
    pi, A, ll, keep = _prepare(initial_probs, transition_matrix, log_likelihoods, mask, length)

    def fast():
        (_, _, _, _, w, vs, _), ok = _fast_posterior(pi, A, ll, keep, bool(parallel))
        xi = w[:, :, None] * A * vs[:, None, :]
        if keep is not None:
            xi = jnp.where(keep[:, None, None], xi, 0.0)
        return xi, ok

    return _with_fallback(_robust(robust), fast, lambda: _L.two_slice(pi, A, ll, keep))


@_compiled("parallel", "robust")
def hmm_expected_transitions(
    initial_probs: ArrayLike,
    transition_matrix: ArrayLike,
    log_likelihoods: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    length: ArrayLike | None = None,
    parallel: bool = False,
    robust: bool | None = None,
) -> Array:
    """Expected transition counts :math:`\\sum_t \\xi_t(i, j)` (the E-step of Baum-Welch).

    Computed as one (K, T-1) x (T-1, K) product, without materialising (T-1, K, K).

    Returns
    -------
    Array, shape (K, K)
    """
    pi, A, ll, keep = _prepare(initial_probs, transition_matrix, log_likelihoods, mask, length)
    K = ll.shape[1]
    if ll.shape[0] == 1:
        return jnp.zeros((K, K), ll.dtype)

    def fast():
        (_, _, _, _, w, vs, _), ok = _fast_posterior(pi, A, ll, keep, bool(parallel))
        if keep is not None:
            w = jnp.where(keep[:, None], w, 0.0)
        if A.ndim == 3:
            return jnp.einsum("ti,tij,tj->ij", w, A, vs), ok
        return (w.T @ vs) * A, ok

    return _with_fallback(_robust(robust), fast, lambda: _L.expected_transitions(pi, A, ll, keep))


@_compiled()
def hmm_posterior_mode(
    initial_probs: ArrayLike,
    transition_matrix: ArrayLike,
    log_likelihoods: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    length: ArrayLike | None = None,
) -> Array:
    """Viterbi: the most probable state path :math:`\\arg\\max_z p(z \\mid y)`.

    Max-product recursion in log space (Viterbi, 1967) with back-pointers, then a reverse
    scan to backtrack.

    Parameters are as for :func:`hmm_log_likelihood`.

    Returns
    -------
    Array of int32, shape (T,)
        The MAP path. Past ``length`` the last valid state is repeated.
    """
    pi, A, ll, keep = _prepare(initial_probs, transition_matrix, log_likelihoods, mask, length)
    T, K = ll.shape
    logA = _safe_log(A)
    delta0 = _safe_log(pi) + ll[0]

    def step(delta, xs):
        logA_t, ll_t, keep_t = xs
        L = logA if logA_t is None else logA_t
        scores = delta[:, None] + L
        best = jnp.argmax(scores, axis=0).astype(jnp.int32)
        new = jnp.max(scores, axis=0) + ll_t
        if keep_t is not None:
            best = jnp.where(keep_t, best, jnp.arange(K, dtype=jnp.int32))
            new = jnp.where(keep_t, new, delta)
        new = new - jnp.max(new)
        return new, best

    deltaT, pointers = lax.scan(step, delta0, (logA if A.ndim == 3 else None, ll[1:], keep))
    zT = jnp.argmax(deltaT).astype(jnp.int32)

    def back(z, ptr):
        z_prev = ptr[z]
        return z_prev, z_prev

    _, path = lax.scan(back, zT, pointers, reverse=True)
    return jnp.concatenate([path, zT[None]])


@_compiled("num_samples", "parallel", "robust")
def hmm_posterior_sample(
    rng_key: Array,
    initial_probs: ArrayLike,
    transition_matrix: ArrayLike,
    log_likelihoods: ArrayLike,
    *,
    num_samples: int | None = None,
    mask: ArrayLike | None = None,
    length: ArrayLike | None = None,
    parallel: bool = False,
    robust: bool | None = None,
) -> Array:
    """Forward-filter backward-sample: draws from :math:`p(z_{0:T-1} \\mid y_{0:T-1})`.

    Parameters
    ----------
    rng_key : Array
        PRNG key.
    initial_probs, transition_matrix, log_likelihoods, mask, length, parallel
        As for :func:`hmm_log_likelihood`.
    num_samples : int, optional
        Number of paths; the filter runs once and is shared.

    Returns
    -------
    Array of int32, shape (T,) or (num_samples, T)
        Posterior state paths (Chib, 1996; Frühwirth-Schnatter, 1994).
    """
    pi, A, ll, keep = _prepare(initial_probs, transition_matrix, log_likelihoods, mask, length)
    log_alphas = _log_filtered(pi, A, ll, keep, bool(parallel), _robust(robust))
    logA = _safe_log(A)

    def one(key):
        keys = jax.random.split(key, ll.shape[0])
        zT = jax.random.categorical(keys[-1], log_alphas[-1]).astype(jnp.int32)

        def back(z_next, xs):
            k, la_t, logA_t, keep_t = xs
            L = logA if logA_t is None else logA_t
            z = jax.random.categorical(k, la_t + L[:, z_next]).astype(jnp.int32)
            if keep_t is not None:
                z = jnp.where(keep_t, z, z_next)
            return z, z

        _, zs = lax.scan(
            back,
            zT,
            (keys[:-1], log_alphas[:-1], logA if A.ndim == 3 else None, keep),
            reverse=True,
        )
        return jnp.concatenate([zs, zT[None]])

    if num_samples is None:
        return one(rng_key)
    return jax.vmap(one)(jax.random.split(rng_key, num_samples))


@_compiled("num_timesteps")
def hmm_sample_states(
    rng_key: Array,
    initial_probs: ArrayLike,
    transition_matrix: ArrayLike,
    num_timesteps: int,
) -> Array:
    """Draw a state path from the Markov chain prior.

    Parameters
    ----------
    rng_key : Array
    initial_probs : ArrayLike, shape (K,)
    transition_matrix : ArrayLike, shape (K, K) or (num_timesteps-1, K, K)
    num_timesteps : int

    Returns
    -------
    Array of int32, shape (num_timesteps,)
    """
    pi = jnp.asarray(initial_probs)
    A = jnp.asarray(transition_matrix)
    if pi.ndim != 1:
        raise ValueError(f"initial_probs must have shape (num_states,); got {pi.shape}")
    if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, int | np.integer):
        raise TypeError(f"num_timesteps must be a Python int; got {num_timesteps!r}")
    if num_timesteps < 1:
        raise ValueError(f"num_timesteps must be at least 1; got {num_timesteps}")
    K = pi.shape[0]
    if A.shape not in ((K, K), (num_timesteps - 1, K, K)):
        raise ValueError(
            f"transition_matrix must have shape ({K}, {K}) or ({num_timesteps - 1}, {K}, {K}); "
            f"got {A.shape}"
        )
    logA = _safe_log(A)
    k0, k1 = jax.random.split(rng_key)
    z0 = jax.random.categorical(k0, _safe_log(pi)).astype(jnp.int32)
    if num_timesteps == 1:
        return z0[None]

    def step(z, xs):
        k, logA_t = xs
        L = logA if logA_t is None else logA_t
        z_new = jax.random.categorical(k, L[z]).astype(jnp.int32)
        return z_new, z_new

    keys = jax.random.split(k1, num_timesteps - 1)
    _, zs = lax.scan(step, z0, (keys, logA if A.ndim == 3 else None))
    return jnp.concatenate([z0[None], zs])
