"""Continuous-time Markov chain kernels: pure JAX, no NumPyro.

A chain on ``num_states`` K is given by its ``generator`` Q (K, K): off-diagonal rates
:math:`q_{ij} \\ge 0`, rows summing to zero, :math:`q_i = -q_{ii}` the exit rate of i. All
functions act on one chain; batch them with :func:`jax.vmap`.

Transition matrices
-------------------
:func:`transition_matrices` returns :math:`P(dt_n) = e^{Q\\, dt_n}` for a batch of gaps with
work shared across gaps (see :mod:`probdyn.kernels.expm` for the algorithms and their
derivatives). Maximum absolute error against ``scipy.linalg.expm`` (float64 reference) on
random generators with rates log-uniform in [1e-3, 1e3], 12 gaps log-spaced in
[1e-3, 1e2], K in {2, 3, 10}, non-reversible, reversible and with an absorbing state
(``tests/kernels/test_ctmc.py``; row sums are off by at most the same amounts):

==================  ========  ========  =========================================
method              float64   float32   applies to
==================  ========  ========  =========================================
``pade``            1.0e-12   1.6e-6    any generator
``uniformization``  1.0e-12   1.2e-6    any generator
``eigh``            6.8e-12   2.4e-3    reversible Q with pi > 0 (float64 only)
==================  ========  ========  =========================================

The float64 errors of ``pade`` and ``uniformization`` agree to all digits, i.e. they are
the reference's own error. ``eigh`` in float32 loses the slow modes of stiff generators
(eigenvalue errors of :math:`\\epsilon \\|Q\\|` multiplied by dt) and varies with how XLA
fuses the code (1.3e-6 to 2.4e-3 on the same input). Speed: value and gradient of
:math:`\\sum_n \\log P(dt_n)_{x_n x_{n+1}}` in float64, same generators and gaps drawn
log-uniform in [1e-3, 1e2], on 2 heavily shared CPU cores, as the ratio of the time of a
``vmap`` of ``jax.scipy.linalg.expm`` to ours, measured in the same process (noisy,
+-50%):

===========================  ========  ========  =========  ==================
case                         ``eigh``  ``auto``  ``pade``   ``uniformization``
===========================  ========  ========  =========  ==================
K=3,  N=10,000, reversible   3-20x     5-15x     1.3-1.9x   2.0-2.4x
K=3,  N=10,000, general      --        3.3x      2.9-3.2x   1.3-3.9x
K=10, N=10,000, reversible   36x       50x       6.1x       4.9x
K=10, N=10,000, general      --        3.0x      2.4-2.6x   3.0-3.7x
K=50, N=2,000,  reversible   37x       38x       1.5x       2.2x
K=50, N=2,000,  general      --        4.0-5.6x  3.2x       4.0x
===========================  ========  ========  =========  ==================

``method="auto"`` (the default): in float64, when Q is reversible with a
well-conditioned stationary distribution (:math:`|\\pi_i q_{ij} - \\pi_j q_{ji}| \\le
100 K \\epsilon \\max|\\pi_i q_{ij}|` and :math:`\\min\\pi / \\max\\pi \\ge \\sqrt\\epsilon`,
decided at run time by a ``lax.cond``, so under an outer ``vmap`` both branches run),
``eigh``: one shared eigendecomposition, no squaring, exact derivatives also for repeated
eigenvalues; otherwise, and always in float32, ``uniformization`` (as accurate as
``pade``, no linear solve, non-negative terms, and measured faster). ``jax.scipy.linalg.expm``
returns NaN when :math:`\\|Q\\, dt\\|_1 > 5.37 \\cdot 2^{16}` (it did in the K=50 general
case above; in the tests: K=10, all rates 1e3,
dt=1e2); every method here is finite there.

Paths
-----
A path on [0, t_end] is padded to a fixed length M: ``states`` (M,) and ``jump_times`` (M,),
with ``states[0]`` the initial state, ``jump_times[0]`` ignored (the path starts at 0), and
for ``1 <= i <= num_jumps`` a jump into ``states[i]`` at ``jump_times[i]``. Entries past
``num_jumps`` are padding and are never read (any values). :func:`sample_bridge` returns
paths in this layout (padding repeats the end state and the end time).

References
----------
C. Moler and C. Van Loan, "Nineteen dubious ways to compute the exponential of a matrix,
twenty-five years later", SIAM Review 45(1), 2003.
A. H. Al-Mohy and N. J. Higham, "A new scaling and squaring algorithm for the matrix
exponential", SIAM J. Matrix Anal. Appl. 31(3), 2009.
A. Jensen, "Markoff chains as an aid in the study of Markoff processes", Skandinavisk
Aktuarietidskrift 36, 1953.
A. Hobolth and E. A. Stone, "Simulation from endpoint-conditioned, continuous-time Markov
chains on a finite state space, with applications to molecular evolution", Annals of
Applied Statistics 3(3), 2009.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import gammaln, xlogy
from jax.typing import ArrayLike

from probdyn.kernels._checks import check_generator as _check_generator_values
from probdyn.kernels._checks import concrete as _concrete
from probdyn.kernels._checks import safe_log as _safe_log
from probdyn.kernels.expm import _solve, expm_eigh, expm_pade, expm_uniformization

Array = jax.Array

__all__ = [
    "BridgePath",
    "check_generator",
    "generator_from_rates",
    "transition_matrices",
    "stationary_distribution",
    "path_log_likelihood",
    "sample_bridge",
    "mean_dwell_times",
]

_METHODS = ("auto", "pade", "eigh", "uniformization")


class BridgePath(NamedTuple):
    """Output of :func:`sample_bridge`: a padded path (layout in the module docstring).

    Attributes
    ----------
    states : Array of int32, shape (max_jumps + 1,)
        ``states[0]`` is the start state; padding repeats the end state.
    times : Array, shape (max_jumps + 1,)
        ``times[0] = 0``; ``times[i]`` is the time of the i-th jump; padding is ``t``.
    num_jumps : Array of int32, shape ()
        Number of real jumps stored (at most ``max_jumps``).
    overflow : Array of bool, shape ()
        True when the draw is not a valid sample: more than ``max_jumps`` real jumps, more
        than ``max_virtual_jumps`` uniformization events, or an impossible endpoint.
    """

    states: Array
    times: Array
    num_jumps: Array
    overflow: Array


# --------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------


def _float(x):
    x = jnp.asarray(x)
    return x.astype(jnp.result_type(x.dtype, jnp.float32))


def check_generator(generator: ArrayLike) -> Array:
    """Validate a CTMC generator and return it as a float array.

    Shape is always checked; values (finite, off-diagonals non-negative, rows summing to
    zero within :math:`100 K \\epsilon \\max_{ij} |q_{ij}|`) are checked when the input is
    concrete (not under ``jit``/``vmap`` tracing).

    Parameters
    ----------
    generator : ArrayLike, shape (K, K)

    Returns
    -------
    Array, shape (K, K)

    Raises
    ------
    ValueError
        Naming ``generator``, the defect found and where.
    """
    Q = _float(generator)
    if Q.ndim != 2 or Q.shape[0] != Q.shape[1] or Q.shape[0] < 1:
        raise ValueError(f"generator must be a square (K, K) matrix; got shape {Q.shape}")
    _check_generator_values(Q)
    return Q


def generator_from_rates(rates: ArrayLike) -> Array:
    """Generator with the given off-diagonal rates; the diagonal of ``rates`` is ignored.

    Parameters
    ----------
    rates : ArrayLike, shape (K, K)
        Non-negative jump rates :math:`q_{ij}, i \\ne j`.

    Returns
    -------
    Array, shape (K, K)
        :math:`Q` with :math:`q_{ii} = -\\sum_{j \\ne i} q_{ij}`.
    """
    r = _float(rates)
    if r.ndim != 2 or r.shape[0] != r.shape[1]:
        raise ValueError(f"rates must be a square (K, K) matrix; got shape {r.shape}")
    off = ~jnp.eye(r.shape[0], dtype=bool)
    c = _concrete(r)
    if c is not None and (not np.all(np.isfinite(c)) or np.any(c[np.asarray(off)] < 0)):
        raise ValueError("rates must be finite and >= 0 off the diagonal")
    r = jnp.where(off, r, 0.0)
    return r - jnp.diag(jnp.sum(r, axis=1))


def _check_dts(dts, dtype):
    d = jnp.asarray(dts)
    if d.ndim != 1:
        raise ValueError(f"dts must have shape (N,); got {d.shape}")
    c = _concrete(d)
    if c is not None and c.size and (not np.all(np.isfinite(c)) or c.min() < 0):
        raise ValueError(f"dts must be finite and >= 0; got min {c.min()}")
    return d.astype(dtype)


# --------------------------------------------------------------------------------------
# stationary distribution and transition matrices
# --------------------------------------------------------------------------------------


def stationary_distribution(generator: ArrayLike) -> Array:
    """Stationary distribution :math:`\\pi Q = 0, \\sum_i \\pi_i = 1`.

    Solves :math:`\\pi (Q/\\lambda + \\mathbf{1}\\mathbf{1}^\\top) = \\mathbf{1}^\\top`
    (:math:`\\lambda` the largest exit rate), which is regular whenever the stationary
    distribution is unique (one closed class; transient and absorbing states are allowed).
    Differentiable.

    Parameters
    ----------
    generator : ArrayLike, shape (K, K)

    Returns
    -------
    Array, shape (K,)
    """
    return _stationary(check_generator(generator))


@jax.jit
def _stationary(Q):
    lam = jnp.max(-jnp.diagonal(Q))
    A = Q / jnp.where(lam > 0, lam, 1.0) + 1.0
    # pure-jnp solve, not LAPACK: see probdyn.kernels.expm._solve
    pi = _solve(A.T[None], jnp.ones((1, Q.shape[0], 1), Q.dtype))[0, :, 0]
    pi = jnp.maximum(pi, 0.0)
    return pi / jnp.sum(pi)


def _eigh_ok(Q, pi):
    """Reversible with a well-conditioned, positive stationary distribution."""
    K = Q.shape[0]
    eps = jnp.finfo(Q.dtype).eps
    F = pi[:, None] * Q
    F = F - jnp.diag(jnp.diagonal(F))
    asym = jnp.max(jnp.abs(F - F.T))
    ok = asym <= 100 * K * eps * jnp.max(jnp.abs(F))
    return ok & (jnp.min(pi) >= jnp.sqrt(eps) * jnp.max(pi))


def transition_matrices(generator: ArrayLike, dts: ArrayLike, *, method: str = "auto") -> Array:
    """Transition matrices :math:`P(dt_n) = e^{Q\\, dt_n}` for a batch of gaps.

    Parameters
    ----------
    generator : ArrayLike, shape (K, K)
        CTMC generator (checked by :func:`check_generator`).
    dts : ArrayLike, shape (N,)
        Non-negative gaps.
    method : {"auto", "pade", "eigh", "uniformization"}
        Static. ``"auto"`` uses ``eigh`` when Q is reversible with a well-conditioned
        stationary distribution and ``pade`` otherwise (decided at run time); ``"eigh"``
        assumes reversibility (checked only for concrete input; for a non-reversible Q
        under ``jit`` it is silently wrong). Accuracy and speed of each are in the module
        docstring.

    Returns
    -------
    Array, shape (N, K, K)
        Row-stochastic, entries in [0, 1]; finite for every finite generator and gap.
        Differentiable in reverse mode w.r.t. ``generator`` and ``dts`` (all methods) and
        in forward mode for ``"eigh"``.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}; got {method!r}")
    Q = check_generator(generator)
    d = _check_dts(dts, jnp.result_type(Q.dtype, jnp.asarray(dts).dtype))
    Q = Q.astype(d.dtype)
    if method == "eigh":
        ok = _concrete(_eigh_ok(Q, stationary_distribution(Q)))
        if ok is not None and not bool(ok):
            raise ValueError(
                "method='eigh' needs a reversible generator with stationary distribution > 0 "
                "(pi_i q_ij = pi_j q_ji); use method='pade' or 'auto'"
            )
    return _transition_matrices(Q, d, method)


@partial(jax.jit, static_argnums=2)
def _transition_matrices(Q, d, method):
    if method == "pade":
        return expm_pade(Q, d)
    if method == "uniformization" or (method == "auto" and Q.dtype != jnp.float64):
        return expm_uniformization(Q, d)
    pi = _stationary(Q)
    if method == "eigh":
        return expm_eigh(Q, d, pi)
    return lax.cond(
        _eigh_ok(Q, pi),
        lambda: expm_eigh(Q, d, pi),
        lambda: expm_uniformization(Q, d),
    )


# --------------------------------------------------------------------------------------
# path likelihood
# --------------------------------------------------------------------------------------


def _check_path(K, initial_probs, states, jump_times, t_end, num_jumps):
    pi = _float(initial_probs)
    x = jnp.asarray(states)
    tj = _float(jump_times)
    if pi.shape != (K,):
        raise ValueError(f"initial_probs must have shape ({K},); got {pi.shape}")
    if x.ndim != 1 or x.shape[0] < 1 or not jnp.issubdtype(x.dtype, jnp.integer):
        raise ValueError(f"states must be a non-empty integer array (M,); got {x.shape}, {x.dtype}")
    if tj.shape != x.shape:
        raise ValueError(f"jump_times must have the shape of states {x.shape}; got {tj.shape}")
    if jnp.ndim(t_end) != 0 or jnp.ndim(num_jumps) != 0:
        raise ValueError("t_end and num_jumps must be scalars")
    cx, ct, cT, cn = (_concrete(v) for v in (x, tj, t_end, num_jumps))
    if cn is not None and not 0 <= int(cn) < x.shape[0]:
        raise ValueError(f"num_jumps must be in [0, {x.shape[0] - 1}]; got {int(cn)}")
    if cT is not None and not (np.isfinite(cT) and cT > 0):
        raise ValueError(f"t_end must be finite and > 0; got {cT}")
    if cx is not None and cn is not None:
        xv = cx[: int(cn) + 1]
        if xv.min() < 0 or xv.max() >= K:
            raise ValueError(f"states must lie in [0, {K - 1}]; got {xv.tolist()}")
        if np.any(xv[1:] == xv[:-1]):
            raise ValueError("states must change at every jump; got a jump to the same state")
        if ct is not None and cT is not None and int(cn) > 0:
            tv = np.concatenate([[0.0], ct[1 : int(cn) + 1], [cT]])
            if not (np.all(np.isfinite(tv)) and np.all(np.diff(tv[:-1]) > 0) and tv[-2] <= cT):
                raise ValueError(
                    "jump_times[1:num_jumps+1] must be strictly increasing in (0, t_end]; "
                    f"got {tv[1:-1].tolist()} with t_end={float(cT)}"
                )
    return pi, x, tj


def path_log_likelihood(
    generator: ArrayLike,
    initial_probs: ArrayLike,
    states: ArrayLike,
    jump_times: ArrayLike,
    t_end: ArrayLike,
    num_jumps: ArrayLike,
) -> Array:
    """Exact log-density of a fully observed CTMC path on [0, t_end].

    .. math::

        \\log p = \\log \\pi_{x_0} + \\sum_{i=1}^{n} \\log q_{x_{i-1} x_i}
            - \\sum_{i=0}^{n} q_{x_i} (t_{i+1} - t_i),
        \\qquad t_0 = 0,\\; t_{n+1} = t_\\mathrm{end},

    the last holding time being censored at ``t_end`` (no jump in :math:`(t_n, t_{end}]`).

    Parameters
    ----------
    generator : ArrayLike, shape (K, K)
    initial_probs : ArrayLike, shape (K,)
        Distribution of ``states[0]``.
    states : ArrayLike of int, shape (M,)
        Padded path (layout in the module docstring).
    jump_times : ArrayLike, shape (M,)
        ``jump_times[i]`` is the time of the jump into ``states[i]``, ``1 <= i <= n``;
        entry 0 and padding are ignored.
    t_end : float or ArrayLike, shape ()
        End of the observation window, ``>= jump_times[num_jumps]``.
    num_jumps : int or ArrayLike of int, shape ()
        n, the number of jumps; ``0 <= n <= M - 1``.

    Returns
    -------
    Array, shape ()
        The log-density (``-inf`` for an impossible path); differentiable w.r.t.
        ``generator``, ``initial_probs``, ``jump_times`` and ``t_end``.
    """
    Q = check_generator(generator)
    K = Q.shape[0]
    pi, x, tj = _check_path(K, initial_probs, states, jump_times, t_end, num_jumps)
    dtype = jnp.result_type(Q.dtype, pi.dtype, tj.dtype)
    Q, pi, tj = Q.astype(dtype), pi.astype(dtype), tj.astype(dtype)
    t_end = jnp.asarray(t_end, dtype)
    n = jnp.asarray(num_jumps)
    M = x.shape[0]
    i = jnp.arange(M)
    # checks that cannot raise on traced input: a state outside [0, K) or num_jumps
    # outside [0, M) gives NaN, never the log-density of some other path
    bad = jnp.any((i <= n) & ((x < 0) | (x >= K))) | (n < 0) | (n >= M)
    x = jnp.clip(x, 0, K - 1)  # padding may hold anything
    start = jnp.where(i == 0, 0.0, tj)
    nxt = jnp.where(i < n, jnp.concatenate([tj[1:], tj[-1:]]), t_end)
    hold = jnp.where(i <= n, nxt - start, 0.0)
    exit_rates = -jnp.diagonal(Q)[x]
    jumps = jnp.where(i[1:] <= n, _safe_log(Q[x[:-1], x[1:]]), 0.0)
    out = _safe_log(pi[x[0]]) + jnp.sum(jumps) - jnp.sum(hold * exit_rates)
    return jnp.where(bad, jnp.nan, out)


# --------------------------------------------------------------------------------------
# endpoint-conditioned sampling
# --------------------------------------------------------------------------------------


def sample_bridge(
    rng_key: Array,
    generator: ArrayLike,
    start_state: ArrayLike,
    end_state: ArrayLike,
    t: ArrayLike,
    max_jumps: int,
    *,
    max_virtual_jumps: int | None = None,
) -> BridgePath:
    """Draw a path on [0, t] given :math:`X_0 = a` and :math:`X_t = b`, by uniformization.

    Hobolth & Stone (2009), section 2.5: with :math:`\\lambda = \\max_i q_i`,
    :math:`R = I + Q/\\lambda` and :math:`\\mu = \\lambda t`,

    1. the number of uniformization events has
       :math:`p(n \\mid a, b) = \\mathrm{Pois}(n; \\mu) (R^n)_{ab} / P(t)_{ab}`;
    2. given n, the event times are sorted uniforms on [0, t];
    3. the states follow the discrete chain R conditioned on its end,
       :math:`p(x_j = k \\mid x_{j-1}) = R_{x_{j-1} k} (R^{n-j})_{kb} / (R^{n-j+1})_{x_{j-1} b}`;
    4. virtual events (:math:`x_j = x_{j-1}`) are dropped.

    n is drawn exactly from its distribution restricted to ``n <= max_virtual_jumps``,
    plus one extra outcome carrying the tail mass :math:`1 - \\sum_{n \\le N} p(n)` (with
    :math:`P(t)_{ab}` from :func:`transition_matrices`); that outcome sets ``overflow``.
    Draws with ``overflow == False`` are therefore exact conditional on no overflow. The
    cost is O(N K^2) with N = ``max_virtual_jumps``, so uniformization suits moderate
    :math:`\\lambda t`; for stiff generators (fast rates, long t) N must be about
    :math:`\\mu + 6\\sqrt{\\mu}`.

    Parameters
    ----------
    rng_key : Array
    generator : ArrayLike, shape (K, K)
    start_state, end_state : int or ArrayLike of int, shape ()
    t : float or ArrayLike, shape ()
        Length of the interval, > 0.
    max_jumps : int
        Static size of the returned path (``max_jumps + 1`` entries).
    max_virtual_jumps : int, optional
        Static bound N on uniformization events; default ``2 * max_jumps + 32``.

    Returns
    -------
    BridgePath
        ``states`` (max_jumps+1,), ``times`` (max_jumps+1,), ``num_jumps`` (),
        ``overflow`` ().
    """
    Q = check_generator(generator)
    K = Q.shape[0]
    if int(max_jumps) < 1:
        raise ValueError(f"max_jumps must be a positive int; got {max_jumps}")
    Nv = 2 * int(max_jumps) + 32 if max_virtual_jumps is None else int(max_virtual_jumps)
    if Nv < 1:
        raise ValueError(f"max_virtual_jumps must be a positive int; got {max_virtual_jumps}")
    for name, v in (("start_state", start_state), ("end_state", end_state)):
        c = _concrete(v)
        if jnp.ndim(v) != 0 or (c is not None and not 0 <= int(c) < K):
            raise ValueError(f"{name} must be a scalar state in [0, {K - 1}]; got {v}")
    ct = _concrete(t)
    if jnp.ndim(t) != 0 or (ct is not None and not (np.isfinite(ct) and ct > 0)):
        raise ValueError(f"t must be a finite scalar > 0; got {t}")
    return _sample_bridge(
        rng_key,
        Q,
        jnp.asarray(start_state, jnp.int32),
        jnp.asarray(end_state, jnp.int32),
        jnp.asarray(t, Q.dtype),
        int(max_jumps),
        Nv,
    )


@partial(jax.jit, static_argnums=(5, 6))
def _sample_bridge(rng_key, Q, a, b, t, max_jumps, Nv):
    K = Q.shape[0]
    lam = jnp.max(-jnp.diagonal(Q))
    lam = jnp.where(lam > 0, lam, 1.0)
    R = jnp.eye(K, dtype=Q.dtype) + Q / lam
    mu = lam * t

    def power_col(v, _):
        v = R @ v
        return v, v

    eb = jax.nn.one_hot(b, K, dtype=Q.dtype)
    _, vs = lax.scan(power_col, eb, None, length=Nv)
    log_v = _safe_log(jnp.concatenate([eb[None], vs]))  # (Nv+1, K): log (R^m)_{k b}
    m = jnp.arange(Nv + 1, dtype=Q.dtype)
    log_w = -mu + xlogy(m, mu) - gammaln(m + 1.0) + log_v[:, a]
    p_ab = expm_pade(Q, t[None])[0, a, b]
    tail = p_ab - jnp.exp(jax.nn.logsumexp(log_w))
    logits = jnp.concatenate([log_w, _safe_log(jnp.maximum(tail, 0.0))[None]])
    k_n, k_t, k_x = jax.random.split(rng_key, 3)
    n = jax.random.categorical(k_n, logits).astype(jnp.int32)
    overflow = (n > Nv) | ~(p_ab > 0)
    n = jnp.minimum(n, Nv)
    # n sorted uniforms on [0, t]: draw Nv, keep the first n (unsorted), then sort
    u = jnp.where(jnp.arange(Nv) < n, jax.random.uniform(k_t, (Nv,), Q.dtype), jnp.inf)
    u = jnp.sort(u) * t
    log_R = _safe_log(R)
    j = jnp.arange(1, Nv + 1)

    def step(x_prev, inputs):
        key, j_ = inputs
        logits = log_R[x_prev] + log_v[jnp.maximum(n - j_, 0)]
        x_new = jax.random.categorical(key, logits).astype(jnp.int32)
        x_new = jnp.where(j_ <= n, x_new, x_prev)
        return x_new, x_new

    _, xs = lax.scan(step, a, (jax.random.split(k_x, Nv), j))
    prev = jnp.concatenate([a[None], xs[:-1]])
    real = (j <= n) & (xs != prev)
    count = jnp.sum(real)
    pos = jnp.where(real, jnp.cumsum(real), max_jumps + 1)
    states = jnp.full(max_jumps + 1, b, jnp.int32).at[0].set(a)
    states = states.at[pos].set(xs, mode="drop")
    times = jnp.full(max_jumps + 1, t, Q.dtype).at[0].set(0.0)
    times = times.at[pos].set(u, mode="drop")
    overflow = overflow | (count > max_jumps)
    return BridgePath(states, times, jnp.minimum(count, max_jumps).astype(jnp.int32), overflow)


def mean_dwell_times(generator: ArrayLike) -> Array:
    """Mean holding time of each state, :math:`1 / q_i = -1 / q_{ii}`.

    Parameters
    ----------
    generator : ArrayLike, shape (..., K, K)
        Not value-checked here (see :func:`check_generator`).

    Returns
    -------
    Array, shape (..., K)
        ``inf`` for absorbing states.
    """
    Q = _float(generator)
    if Q.ndim < 2 or Q.shape[-1] != Q.shape[-2]:
        raise ValueError(f"generator must have shape (..., K, K); got {Q.shape}")
    return -1.0 / jnp.diagonal(Q, axis1=-2, axis2=-1)
