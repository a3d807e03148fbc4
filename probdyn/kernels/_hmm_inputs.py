"""Input handling shared by the HMM kernels (:mod:`probdyn.kernels.hmm`,
:mod:`probdyn.kernels.hmm_parallel`): shape checks, masks and lengths, scaled emissions,
and running a public function as one compiled program.

Shapes follow :mod:`probdyn.kernels.hmm`: ``initial_probs`` (K,), ``transition_matrix``
(K, K) or (T-1, K, K), ``log_likelihoods`` (T, K).
"""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np

from probdyn.kernels._checks import concrete as _concrete


def apply_keep(keep_t, new, old):
    """``new`` where the step is kept (``keep_t`` True or None), else ``old``."""
    return new if keep_t is None else jnp.where(keep_t, new, old)


def prepare(initial_probs, transition_matrix, log_likelihoods, mask, length):
    """Check static shapes; zero masked/padded emissions; build the keep flags.

    Returns ``(pi, A, ll, keep)`` where ``keep`` is ``None`` or a (T-1,) bool array that is
    False for transitions past ``length`` (those steps act as the identity, so the chain
    is frozen after the end of the sequence).
    """
    pi = jnp.asarray(initial_probs)
    A = jnp.asarray(transition_matrix)
    ll = jnp.asarray(log_likelihoods)
    if ll.ndim != 2:
        raise ValueError(
            f"log_likelihoods must have shape (num_timesteps, num_states); got {ll.shape}"
        )
    T, K = ll.shape
    if T < 1:
        raise ValueError("log_likelihoods must have at least one time step")
    if pi.shape != (K,):
        raise ValueError(
            f"initial_probs must have shape ({K},) to match log_likelihoods; got {pi.shape}"
        )
    if A.shape not in ((K, K), (T - 1, K, K)):
        raise ValueError(
            f"transition_matrix must have shape ({K}, {K}) or ({T - 1}, {K}, {K}); got {A.shape}"
        )
    dtype = jnp.result_type(pi.dtype, A.dtype, ll.dtype, jnp.float32)
    pi, A, ll = pi.astype(dtype), A.astype(dtype), ll.astype(dtype)
    keep = None
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.shape != (T,):
            raise ValueError(f"mask must have shape ({T},); got {mask.shape}")
        ll = jnp.where(mask[:, None], ll, 0.0)
    if length is not None:
        length = jnp.asarray(length)
        if length.ndim != 0:
            raise ValueError(f"length must be a scalar per sequence; got shape {length.shape}")
        check_length(length, T)
        t = jnp.arange(T)
        # a traced length outside [1, T] gives NaN (it cannot raise)
        bad = ~((length >= 1) & (length <= T))
        ll = jnp.where((t < length)[:, None], ll, 0.0) + jnp.where(bad, jnp.nan, 0.0)
        keep = t[1:] < length
    return pi, A, ll, keep


def check_length(length, T):
    """Raise for a concrete ``length`` outside [1, T] (a traced one gives NaN later)."""
    c = _concrete(length)
    if c is not None and not (np.issubdtype(c.dtype, np.integer) and 1 <= c <= T):
        raise ValueError(f"length must be an integer in [1, {T}]; got {c!r}")


def compiled(*static_argnames):
    """Run a public function as one compiled program.

    Called eagerly, the body would otherwise run op by op, and JAX compiles every distinct
    operation on its own (a smoother on a 10-step sequence costs about a hundred small
    compilations, several seconds); compiled whole, it is one program, cached for the
    next call with the same shapes. Under an outer ``jit``/``vmap``/``grad`` the inner
    ``jit`` is inlined. Checks that need a concrete ``length`` run before compiling, so
    invalid input still raises eagerly.
    """

    def decorate(fn):
        jitted = jax.jit(fn, static_argnames=static_argnames)
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs).arguments
            length, ll = bound.get("length"), bound.get("log_likelihoods")
            if length is not None and np.ndim(length) == 0 and ll is not None and np.ndim(ll) == 2:
                check_length(jnp.asarray(length), np.shape(ll)[0])
            return jitted(*args, **kwargs)

        return wrapper

    return decorate


def scaled_emissions(ll):
    """B[t] = exp(ll[t] - m[t]) with m[t] = max_k ll[t, k] (0 where all are -inf)."""
    m = jnp.max(ll, axis=-1)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    return jnp.exp(ll - m[:, None]), m


def trans_xs(A):
    """Per-step transition inputs for scans: None for homogeneous A."""
    return A if A.ndim == 3 else None
