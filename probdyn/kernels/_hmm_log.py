"""Log-domain HMM recursions: the underflow fallback of :mod:`probdyn.kernels.hmm`.

Every message is kept as a logarithm, normalised per step (filtered messages to
``logsumexp = 0``, backward messages to ``max = 0``), and every sum over states is a
``logsumexp``, so no probability, however small, is rounded to zero before it is used.
The cost is K^2 exponentials per step instead of one K x K mat-vec, which is why these run
only when the scaled recursions of :mod:`probdyn.kernels.hmm` report a loss of precision.

NaN inputs stay NaN (a NaN or negative probability has NaN logarithm), so an invalid
transition matrix under ``jit`` gives a NaN log-likelihood, never a finite one.

Shapes follow :mod:`probdyn.kernels.hmm`: ``pi`` (K,), ``A`` (K, K) or (T-1, K, K),
``ll`` (T, K), ``keep`` None or (T-1,) bool.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array


def safe_log(x: Array) -> Array:
    """``log x`` with ``log 0 = -inf`` and NaN for NaN or negative ``x`` (no NaN gradient
    leaks from the masked branch)."""
    pos = x > 0
    return jnp.where(
        pos, jnp.log(jnp.where(pos, x, 1.0)), jnp.where(x == 0, -jnp.inf, jnp.nan)
    ).astype(x.dtype)


def lse(x: Array, axis) -> Array:
    """``logsumexp`` that gives -inf for all -inf entries and propagates NaN."""
    m = jnp.max(x, axis=axis, keepdims=True)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    out = jnp.log(jnp.sum(jnp.exp(x - m), axis=axis, keepdims=True)) + m
    return jnp.squeeze(out, axis)


def _norm(x: Array, by: Array) -> Array:
    """``x - by`` with a non-finite ``by`` treated as 0 (an impossible step stays -inf)."""
    return x - jnp.where(jnp.isfinite(by), by, 0.0)[..., None]


class LogForward(NamedTuple):
    log_alphas: Array  # (T, K), logsumexp 0 per step
    log_preds: Array  # (T, K), log p(z_t | y_{0:t-1})
    lcs: Array  # (T,), log p(y_t | y_{0:t-1})


def _shifted(ll_t, live):
    """``ll_t - m`` and ``m``, with ``m`` the maximum of ``ll_t`` over the states ``live``
    (that can carry probability; 0 if none or not finite). Sums with messages then stay
    small numbers: float32 resolves only ~1e-3 at 1e4, and ``ll_t - m`` is exact for
    entries within a factor 2 of ``m``."""
    m = jnp.max(jnp.where(live, ll_t, -jnp.inf))
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    return ll_t - m, m


def forward(pi: Array, A: Array, ll: Array, keep) -> LogForward:
    """Log-domain forward pass."""
    logA = safe_log(A)

    def condition(lp, ll_t):
        d, m = _shifted(ll_t, lp > -jnp.inf)
        j = lp + d
        lc = lse(j, -1)
        return _norm(j, lc), lc + m

    lp0 = safe_log(pi)
    la0, lc0 = condition(lp0, ll[0])

    def step(la, xs):
        L_t, ll_t, keep_t = xs
        L = logA if L_t is None else L_t
        lp = lse(la[:, None] + L, 0)
        if keep_t is not None:
            lp = jnp.where(keep_t, lp, la)
        la_new, lc = condition(lp, ll_t)
        return la_new, (la_new, lp, lc)

    _, (las, lps, lcs) = lax.scan(step, la0, (logA if A.ndim == 3 else None, ll[1:], keep))
    return LogForward(
        jnp.concatenate([la0[None], las]),
        jnp.concatenate([lp0[None], lps]),
        jnp.concatenate([lc0[None], lcs]),
    )


def backward(A: Array, ll: Array, keep) -> tuple[Array, Array]:
    """Log-domain backward messages.

    Returns ``log_betas`` (T, K), each with maximum 0 (``log_betas[T-1] = 0``), and
    ``log_vs`` (T-1, K): ``ll[t+1] + log_betas[t+1]`` up to a per-step constant, so that
    ``xi_t(i, j) ∝ alpha_t(i) A_t(i, j) exp(log_vs[t, j])``.
    """
    T, K = ll.shape
    zeros = jnp.zeros((K,), ll.dtype)
    if T == 1:
        return zeros[None], jnp.zeros((0, K), ll.dtype)
    logA = safe_log(A)
    reach = jnp.any(A > 0, axis=-2)  # (K,) or (T-1, K): columns some state can move to

    def step(lb, xs):
        L_t, reach_t, ll_t, keep_t = xs
        L = logA if L_t is None else L_t
        r = reach if reach_t is None else reach_t
        d, _ = _shifted(ll_t, (lb > -jnp.inf) & r)
        lv = d + lb
        lu = lse(L + lv[None, :], 1)
        if keep_t is not None:
            lu = jnp.where(keep_t, lu, lv)
        lb_new = _norm(lu, jnp.max(lu))
        return lb_new, (lb_new, lv)

    xs = (logA if A.ndim == 3 else None, reach if A.ndim == 3 else None, ll[1:], keep)
    _, (lbs, lvs) = lax.scan(step, zeros, xs, reverse=True)
    return jnp.concatenate([lbs, zeros[None]]), lvs


def _smoothed(la, lb):
    lg = la + lb
    return jnp.exp(_norm(lg, lse(lg, -1)))


def smoother(pi, A, ll, keep):
    """(alphas, preds, lcs, smoothed) in probability space, computed in the log domain."""
    f = forward(pi, A, ll, keep)
    lb, _ = backward(A, ll, keep)
    return jnp.exp(f.log_alphas), jnp.exp(f.log_preds), f.lcs, _smoothed(f.log_alphas, lb)


def two_slice(pi, A, ll, keep):
    """Two-slice marginals (T-1, K, K), zero past ``keep``."""
    f = forward(pi, A, ll, keep)
    _, lv = backward(A, ll, keep)
    K = ll.shape[1]
    s = f.log_alphas[:-1, :, None] + safe_log(A) + lv[:, None, :]
    lz = lse(s.reshape(s.shape[0], K * K), -1)
    xi = jnp.exp(s - jnp.where(jnp.isfinite(lz), lz, 0.0)[:, None, None])
    if keep is not None:
        xi = jnp.where(keep[:, None, None], xi, 0.0)
    return xi


def _pair_sums(la, logA, lv, keep, with_A):
    """sum_t exp(la_t(i) + [logA_t(i, j)] + lv_t(j) - lz_t): (K, K) or, for a time-varying
    A and ``with_A=False``, per step (T-1, K, K)."""
    Tm1, K = lv.shape

    def pair(la_t, L, lv_t, keep_t):
        s = la_t[:, None] + lv_t[None, :]
        lz = lse((s + L).reshape(-1), 0)
        g = jnp.exp((s + L if with_A else s) - jnp.where(jnp.isfinite(lz), lz, 0.0))
        return g if keep_t is None else jnp.where(keep_t, g, 0.0)

    if logA.ndim == 3:
        keeps = jnp.ones((Tm1,), bool) if keep is None else keep
        g = jax.vmap(pair)(la, logA, lv, keeps)
        return g.sum(0) if with_A else g

    def step(acc, xs):
        la_t, lv_t, keep_t = xs
        return acc + pair(la_t, logA, lv_t, keep_t), None

    out, _ = lax.scan(step, jnp.zeros((K, K), lv.dtype), (la, lv, keep))
    return out


def expected_transitions(pi, A, ll, keep):
    """sum_t xi_t (K, K), accumulated in a scan from log-domain terms."""
    f = forward(pi, A, ll, keep)
    _, lv = backward(A, ll, keep)
    return _pair_sums(f.log_alphas[:-1], safe_log(A), lv, keep, True)


def gradient_terms(pi, A, ll, keep):
    """Log-likelihood and its derivatives for the custom JVP of ``hmm_log_likelihood``.

    Returns ``(loglik, g_ll (T, K), g_A (like A), g_pi (K,))`` where
    ``g_A[i, j] = sum_t alpha_t(i) v_t(j) / z_t`` is accumulated in a scan (no (T-1, K, K)
    array for a homogeneous A) from log-domain terms.
    """
    T, K = ll.shape
    f = forward(pi, A, ll, keep)
    lb, lv = backward(A, ll, keep)
    la = f.log_alphas
    smoothed = _smoothed(la, lb)
    d0, _ = _shifted(ll[0], (pi > 0) & (lb[0] > -jnp.inf))
    lg0 = d0 + lb[0]
    g_pi = jnp.exp(_norm(lg0, lse(safe_log(pi) + lg0, -1)))
    if T == 1:
        return jnp.sum(f.lcs), smoothed, jnp.zeros_like(A), g_pi
    g_A = _pair_sums(la[:-1], safe_log(A), lv, keep, False)
    return jnp.sum(f.lcs), smoothed, g_A, g_pi
