"""When can the scaled HMM recursions be trusted? Cheap checks after the fast pass.

The scaled recursions of :mod:`probdyn.kernels.hmm` lose a probability whenever it falls
below the smallest normal float (``tiny``): an emission weight ``exp(ll - max)``, a
product ``alpha_i A_ij`` or a normalised entry rounds to zero. Such a loss is harmless as
long as every quantity the recursion goes on to use is large compared with what was
lost; it is a silent wrong answer when a state whose probability was rounded to zero later
explains the data (a non-mixing transition matrix lets it come back only from itself).

Every lost term is below ``tiny`` on the scale of the step where it was lost, so the pass
is accurate to ``K eps`` relative per step if, on the *structural support* (the entries
that are positive in exact arithmetic, from the zero patterns of ``pi``, ``A`` and
``ll = -inf``):

- forward: the unnormalised prediction ``pred_t(j) c_{t-1} >= theta`` and every step
  normaliser ``c_t >= theta``;
- backward: the unnormalised message ``u_t(i) = (A_t (B_{t+1} beta_{t+1}))_i >= theta``;
- posterior: ``sum_k alpha_t(k) beta_t(k)`` times the scales of the neighbouring steps is
  at least ``theta``,

with ``theta = tiny / eps`` (about ``e^-71`` in float32, ``e^-672`` in float64). The
parallel (associative-scan) pass is first checked against one step of the sequential
recursion computed from its own output (relative tolerance ``1e4 eps``); the same bounds
then apply. When any check fails the caller recomputes in the log domain
(:mod:`probdyn.kernels._hmm_log`); negative or NaN probabilities also fail, so they give
NaN there.

All checks are vectorised over time except the structural support of a transition matrix
with zeros, which is one boolean scan (skipped, behind a ``lax.cond``, when ``A > 0``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array


def theta(dtype) -> float:
    fi = jnp.finfo(dtype)
    return float(fi.tiny) / float(fi.eps)


def _tol(dtype) -> float:
    return 1e4 * float(jnp.finfo(dtype).eps)


def _scaled(ll):
    m = jnp.max(ll, axis=-1)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    return jnp.exp(ll - m[:, None]), m


def _keep_first(keep, T):
    """(T,) bool: step t is a real transition (t = 0 counts as one)."""
    if keep is None:
        return jnp.ones((T,), bool)
    return jnp.concatenate([jnp.ones((1,), bool), keep])


def pred_support(pi: Array, A: Array, ll: Array, keep) -> Array:
    """(T, K) bool: ``p(z_t = j | y_{0:t-1}) > 0`` in exact arithmetic."""
    T, K = ll.shape
    alive = ll > -jnp.inf
    s0 = pi > 0
    if T == 1:
        return s0[None]
    P = A > 0

    def dense():
        # every state is reachable in one step from any state
        return jnp.concatenate([s0[None], jnp.ones((T - 1, K), bool)])

    def scan():
        def step(s, xs):
            P_t, alive_t, keep_t = xs
            Pt = P if P_t is None else P_t
            sp = jnp.any(s[:, None] & Pt, axis=0)
            if keep_t is not None:
                sp = jnp.where(keep_t, sp, s)
            return sp & alive_t, sp

        _, sps = lax.scan(step, s0 & alive[0], (P if A.ndim == 3 else None, alive[1:], keep))
        return jnp.concatenate([s0[None], sps])

    return lax.cond(jnp.all(P), dense, scan)


def back_support(A: Array, ll: Array, keep) -> Array:
    """(T-1, K) bool: ``u_t(i) = p(y_{t+1:T-1} | z_t = i) > 0`` in exact arithmetic."""
    T, K = ll.shape
    alive = ll[1:] > -jnp.inf
    P = A > 0

    def dense():
        return jnp.ones((T - 1, K), bool)

    def scan():
        def step(s, xs):
            P_t, alive_t, keep_t = xs
            Pt = P if P_t is None else P_t
            sv = s & alive_t
            su = jnp.any(Pt & sv[None, :], axis=1)
            if keep_t is not None:
                su = jnp.where(keep_t, su, sv)
            return su, su

        _, sus = lax.scan(
            step, jnp.ones((K,), bool), (P if A.ndim == 3 else None, alive, keep), reverse=True
        )
        return sus

    return lax.cond(jnp.all(P), dense, scan)


def valid_probs(pi: Array, A: Array) -> Array:
    """False if any probability is negative or NaN (the log-domain pass then gives NaN)."""
    return jnp.all(pi >= 0) & jnp.all(A >= 0)


def forward_ok(pi, A, ll, keep, alphas, preds, lcs, parallel) -> tuple[Array, Array]:
    """Check a fast forward pass. Returns ``(ok, c)`` with ``c`` (T,) the step normalisers
    of the scaled recursion (recomputed from the output for the parallel pass)."""
    T = ll.shape[0]
    dtype = ll.dtype
    th = theta(dtype)
    B, mB = _scaled(ll)
    ok = valid_probs(pi, A) & jnp.all(jnp.isfinite(lcs)) & jnp.all(jnp.isfinite(alphas))
    if parallel:
        local = preds * B
        c = jnp.sum(local, axis=-1)
        tol = _tol(dtype)
        dev = jnp.sum(jnp.abs(alphas - local / c[:, None]), axis=-1)
        lc_loc = jnp.log(c) + mB
        scale = 1.0 + jnp.abs(jnp.cumsum(lcs))
        ok = ok & jnp.all(dev <= tol) & jnp.all(jnp.abs(lcs - lc_loc) <= tol * scale)
    else:
        c = jnp.exp(lcs - mB)
    c_prev = jnp.concatenate([jnp.ones((1,), dtype), c[:-1]])
    S = pred_support(pi, A, ll, keep) & _keep_first(keep, T)[:, None]
    u = jnp.where(S, preds * c_prev[:, None], jnp.inf)
    ok = ok & jnp.all(u >= th) & jnp.all((c >= th) & jnp.isfinite(c))
    return ok, c


def backward_ok(A, ll, keep, betas, ns, betas_head=None) -> Array:
    """Check a fast backward pass (``ns`` (T-1,), ``betas`` (T, K) with
    ``ns[t] * betas[t] = u_t``; ``betas_head`` (T-1, K): the parallel pass's own messages)."""
    T = ll.shape[0]
    if T == 1:
        return jnp.all(jnp.isfinite(betas))
    th = theta(ll.dtype)
    u = ns[:, None] * betas[:-1]
    S = back_support(A, ll, keep)
    if keep is not None:
        S = S & keep[:, None]
    ok = jnp.all(jnp.isfinite(betas)) & jnp.all(ns > 0) & jnp.all(jnp.where(S, u, jnp.inf) >= th)
    if betas_head is not None:
        ok = ok & jnp.all(jnp.abs(betas_head - betas[:-1]) <= _tol(ll.dtype))
    return ok


def posterior_ok(c: Array, gsum: Array, ns: Array) -> Array:
    """Check the products ``alpha_t beta_t`` (``gsum`` (T,)) against the step scales."""
    th = theta(gsum.dtype)
    ok = jnp.all(gsum * c >= th)
    if ns.shape[0]:
        ns_next = jnp.concatenate([ns[1:], jnp.ones((1,), ns.dtype)])
        low = jnp.minimum(jnp.minimum(c[:-1], ns), ns_next)
        ok = ok & jnp.all(gsum[:-1] * ns * low >= th)
    return ok
