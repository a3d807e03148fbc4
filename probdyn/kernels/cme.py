"""The chemical master equation on a truncated box, solved without forming the generator.

A reaction network's CTMC on counts :math:`x \\in \\{0..m_1\\} \\times \\cdots \\times
\\{0..m_S\\}` (``max_counts = (m_1, ..., m_S)``) has :math:`K = \\prod_s (m_s + 1)` states
but only R transitions out of each, so its generator is very sparse. Dense methods
(:func:`probdyn.kernels.ctmc.transition_matrices`, ``ReactionNetwork.generator``) cost
:math:`O(K^3)`; here probabilities are kept as an S-dimensional grid ``p`` of shape
``max_counts + 1`` and :math:`pQ` is computed in :math:`O(RK)` by shifting
:math:`p \\cdot h_j` along the stoichiometric vector of each reaction:

.. math::

    (pQ)(x) = \\sum_j p(x - v_j)\\,h_j(x - v_j) - p(x)\\,h_j(x).

Truncation: a reaction that would take the state out of the box is switched off there
(reflecting boundary), so total probability is conserved and the truncated chain is a
proper CTMC; the box must be large enough for the error to be negligible (check the
probability of the box's outer faces, :func:`boundary_mass`).

Transient distributions use uniformization (Jensen 1953): with
:math:`\\lambda \\ge \\max_x h_0(x)`,

.. math::

    p\\,e^{Qt} = \\sum_{n \\ge 0} \\mathrm{Pois}(n; \\lambda t)\\, p\\,(I + Q/\\lambda)^n,

every term a probability vector, so the sum is accurate to the Poisson tail mass left out
(returned, and turned into a NaN log-likelihood above ``tail_tol``: an honest failure that
NUTS treats as a rejected proposal rather than a silently wrong value). ``num_terms`` is
static (one compilation); it needs to exceed :math:`\\lambda t + 6\\sqrt{\\lambda t} + 10`
for every gap :math:`t`. Everything is differentiable in the rate constants (reverse and
forward mode); :math:`\\lambda` is a stop-gradient bound, which is exact because the sum
does not depend on it.

:func:`cme_log_likelihood` is the forward algorithm of a hidden Markov model whose hidden
chain is the network's CTMC: the exact (up to truncation) likelihood of noisy
observations at irregular times, with no particle noise.

The network is a :class:`probdyn.kernels.network.Network` passed as ``stoichiometry``,
or the arrays ``stoichiometry`` with ``reactants`` (or ``propensity_fn``) that build one.

References
----------
A. Jensen, "Markoff chains as an aid in the study of Markoff processes", Skand.
Aktuarietidskr. 36, 87-91, 1953.

B. Munsky and M. Khammash, "The finite state projection algorithm for the solution of the
chemical master equation", J. Chem. Phys. 124, 044104, 2006.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from probdyn.kernels._checks import check_times, concrete
from probdyn.kernels.network import Network, as_network

Array = jax.Array

__all__ = [
    "CMEFilterResult",
    "boundary_mass",
    "box_states",
    "cme_apply",
    "cme_filter",
    "cme_log_likelihood",
    "cme_sample",
    "cme_transient",
    "uniformization_terms",
]


def _max_counts(max_counts, S):
    m = np.asarray(max_counts)
    if m.shape != (S,) or not np.issubdtype(m.dtype, np.integer) or np.any(m < 0):
        raise ValueError(
            f"max_counts must be {S} non-negative Python ints (one per species); got {max_counts}"
        )
    return tuple(int(v) for v in m)


def box_states(max_counts) -> np.ndarray:
    """All states of the box in grid (C) order.

    Parameters
    ----------
    max_counts : sequence of int, length S

    Returns
    -------
    np.ndarray of int, shape (K, S)
        ``K = prod(max_counts + 1)``; row k is the state of flat grid index k.
    """
    m = _max_counts(max_counts, len(max_counts))
    grids = np.meshgrid(*[np.arange(v + 1) for v in m], indexing="ij")
    return np.stack([g.reshape(-1) for g in grids], axis=-1)


def _allowed(V, m, domain):
    """(R, *grid) 0/1: reaction j starts in the domain and stays in it."""
    states = box_states(m)
    nxt = states[None, :, :] + np.asarray(V)[:, None, :]
    ok = np.all((nxt >= 0) & (nxt <= np.asarray(m)), axis=-1)
    if domain is not None:
        dom = np.asarray(domain, dtype=bool).reshape(-1)
        strides = np.cumprod([1, *(v + 1 for v in m[:0:-1])])[::-1]
        flat_next = np.where(ok, np.clip(nxt, 0, None) @ strides, 0)
        ok = ok & dom[None, :] & dom[flat_next]
    return ok.reshape((len(V), *(v + 1 for v in m)))


def _domain(domain, m):
    if domain is None:
        return None
    d = concrete(domain)
    grid = tuple(v + 1 for v in m)
    if d is None or d.shape != grid or d.dtype != bool:
        raise ValueError(f"domain must be a concrete boolean grid of shape {grid}")
    return tuple(map(bool, d.reshape(-1)))  # hashable (a static jit argument)


def _rates_grid(rates, net, m, domain=None):
    """Propensities on the box, reactions leaving the box (or domain) off: (R, *grid)."""
    states = jnp.asarray(box_states(m), dtype=rates.dtype)
    H = jax.vmap(lambda x: net.propensity(x, rates))(states)  # (K, R)
    H = H.T.reshape((net.num_reactions, *(v + 1 for v in m)))
    dom = None if domain is None else np.reshape(domain, tuple(v + 1 for v in m))
    return jnp.where(_allowed(net.stoichiometry, m, dom), H, 0.0)


def _apply(p, H, V):
    flow = p[None] * H  # (R, *grid)
    out = -jnp.sum(flow, axis=0)
    axes = tuple(range(p.ndim))
    for j, v in enumerate(V):
        # mass that would wrap around is zero: leaving reactions are switched off
        out = out + jnp.roll(flow[j], shift=tuple(v), axis=axes)
    return out


def _setup(p, rates, stoichiometry, reactants, propensity_fn, max_counts, name="p0"):
    net = as_network(stoichiometry, reactants, propensity_fn)
    rates = net.check_rates(rates)
    m = _max_counts(max_counts, net.num_species)
    grid = tuple(v + 1 for v in m)
    p = jnp.asarray(p)
    if p.shape != grid:
        raise ValueError(f"{name} must have the grid shape max_counts + 1 = {grid}; got {p.shape}")
    p = p.astype(jnp.result_type(p.dtype, rates.dtype))
    c = concrete(p)
    if c is not None and (np.any(c < 0) or not np.isclose(c.sum(), 1.0, atol=1e-5)):
        raise ValueError(f"{name} must be a probability grid (>= 0, summing to 1)")
    return net, rates.astype(p.dtype), m, p


def cme_apply(
    p: ArrayLike,
    rates: ArrayLike,
    stoichiometry: Network | ArrayLike,
    *,
    reactants: ArrayLike | None = None,
    propensity_fn=None,
    max_counts,
    domain: ArrayLike | None = None,
) -> Array:
    """Row vector times generator, :math:`pQ`, on the truncated box.

    Parameters
    ----------
    p : ArrayLike, shape max_counts + 1
        A probability grid (a distribution over the box).
    rates : ArrayLike, shape (R,)
    stoichiometry : Network or ArrayLike of int, shape (R, S)
    reactants : ArrayLike of int, shape (R, S), optional
        Mass-action orders (or give ``propensity_fn(x, rates) -> (R,)``).
    max_counts : sequence of int, length S
    domain : ArrayLike of bool, shape max_counts + 1, optional
        Concrete mask of the states that can be occupied (e.g. ``S + I <= N`` under a
        conservation law). Reactions into or out of other states are switched off, and
        those states do not count towards the uniformization rate, which can shrink the
        work a lot when the box is mostly unreachable.

    Returns
    -------
    Array, shape max_counts + 1
        Sums to zero.
    """
    net, rates, m, p = _setup(p, rates, stoichiometry, reactants, propensity_fn, max_counts)
    return _apply(p, _rates_grid(rates, net, m, _domain(domain, m)), net.stoichiometry)


def _poisson_weights(mu, num_terms):
    n = jnp.arange(num_terms, dtype=mu.dtype)
    mu = jnp.maximum(mu, jnp.finfo(mu.dtype).tiny)
    logw = n * jnp.log(mu) - mu - jax.scipy.special.gammaln(n + 1)
    # P(N >= num_terms) = regularized lower incomplete gamma P(num_terms, mu): accurate
    # far below the float32 rounding of 1 - sum(w)
    tail = jax.scipy.special.gammainc(jnp.asarray(num_terms, mu.dtype), mu)
    return jnp.exp(logw), tail


def _transient(p, dt, H, V, lam, num_terms):
    w, tail = _poisson_weights(lam * dt, num_terms)

    def body(carry, wn):
        v, acc = carry
        acc = acc + wn * v
        v = v + _apply(v, H, V) / lam
        return (v, acc), None

    (_, acc), _ = lax.scan(body, (p, jnp.zeros_like(p)), w)
    return jnp.maximum(acc, 0.0), tail


def _uniformization_rate(H):
    lam = lax.stop_gradient(jnp.max(jnp.sum(H, axis=0)))
    return jnp.where(lam > 0, lam * 1.0001, 1.0)


def uniformization_terms(mean: float, tol: float = 1e-8) -> int:
    """Smallest ``num_terms`` whose Poisson(``mean``) tail is below ``tol``.

    Parameters
    ----------
    mean : float
        Largest :math:`\\lambda\\,\\Delta t` expected (exit-rate bound times the longest gap).
    tol : float
        Tail mass accepted.

    Returns
    -------
    int
    """
    from scipy import stats

    if not (np.isfinite(mean) and mean >= 0) or not 0 < tol < 1:
        raise ValueError(f"mean must be finite and >= 0 and tol in (0, 1); got {mean}, {tol}")
    return int(stats.poisson.isf(tol, mean)) + 1


def _num_terms(num_terms):
    if isinstance(num_terms, bool) or not isinstance(num_terms, int | np.integer):
        raise TypeError(f"num_terms must be a Python int; got {type(num_terms).__name__}")
    if num_terms < 1:
        raise ValueError(f"num_terms must be at least 1; got {num_terms}")
    return int(num_terms)


def cme_transient(
    p0: ArrayLike,
    t: ArrayLike,
    rates: ArrayLike,
    stoichiometry: Network | ArrayLike,
    *,
    reactants: ArrayLike | None = None,
    propensity_fn=None,
    max_counts,
    domain: ArrayLike | None = None,
    num_terms: int = 100,
) -> tuple[Array, Array]:
    """Distribution at time ``t`` from ``p0`` at time 0, :math:`p_0 e^{Qt}`.

    Parameters
    ----------
    p0 : ArrayLike, shape max_counts + 1
    t : ArrayLike, shape ()
        Non-negative time.
    rates, stoichiometry, reactants, propensity_fn, max_counts, domain
        As in :func:`cme_apply`.
    num_terms : int
        Static number of uniformization terms.

    Returns
    -------
    p_t : Array, shape max_counts + 1
    tail : Array, shape ()
        Poisson tail mass left out (the error bound in total variation).
    """
    net, rates, m, p = _setup(p0, rates, stoichiometry, reactants, propensity_fn, max_counts)
    t = check_times("t", t, p.dtype, ndim=0)
    c = concrete(t)
    if c is not None and c < 0:
        raise ValueError(f"t must be >= 0; got {float(c)}")
    H = _rates_grid(rates, net, m, _domain(domain, m))
    return _transient(p, t, H, net.stoichiometry, _uniformization_rate(H), _num_terms(num_terms))


def boundary_mass(p: ArrayLike) -> Array:
    """Probability on the box's outer faces (``x_s = max_counts[s]`` for some s), shape ().

    A truncation is adequate when this is negligible at every time of interest.
    """
    p = jnp.asarray(p)
    face = np.zeros(p.shape, dtype=bool)
    for ax in range(p.ndim):
        idx = [slice(None)] * p.ndim
        idx[ax] = -1
        face[tuple(idx)] = True
    return jnp.sum(jnp.where(face, p, 0.0))


def cme_log_likelihood(
    p0: ArrayLike,
    times: ArrayLike,
    obs_log_probs: ArrayLike,
    rates: ArrayLike,
    stoichiometry: Network | ArrayLike,
    *,
    reactants: ArrayLike | None = None,
    propensity_fn=None,
    max_counts,
    domain: ArrayLike | None = None,
    num_terms: int = 100,
    t0: ArrayLike | None = None,
    tail_tol: float = 1e-6,
    return_filtered: bool = False,
):
    """Exact log-likelihood of noisy observations of a reaction network (forward algorithm).

    .. math::

        \\log p(y_{1:T}) = \\sum_i \\log \\sum_x \\alpha_i(x), \\quad
        \\alpha_i \\propto (\\hat\\alpha_{i-1} e^{Q (t_i - t_{i-1})}) \\odot p(y_i \\mid x).

    Parameters
    ----------
    p0 : ArrayLike, shape max_counts + 1
        State distribution at ``times[0]`` (or at ``t0`` when given).
    times : ArrayLike, shape (T,)
        Strictly increasing observation times.
    obs_log_probs : ArrayLike, shape (T, *(max_counts + 1))
        :math:`\\log p(y_i \\mid x)` for every observation and box state (``-inf`` where
        impossible); compute it from :func:`box_states`.
    rates, stoichiometry, reactants, propensity_fn, max_counts, domain, num_terms
        As in :func:`cme_transient`.
    t0 : ArrayLike, optional
        Time of ``p0`` (``<= times[0]``); default ``times[0]``.
    tail_tol : float
        Largest Poisson tail mass accepted; above it the log-likelihood is NaN.
    return_filtered : bool
        Also return the filtered distributions (T, *grid).

    Returns
    -------
    log_likelihood : Array, shape ()
        ``-inf`` when the data are impossible; NaN when ``num_terms`` was too small.
    filtered : Array, shape (T, *grid)
        Only with ``return_filtered=True``.
    """
    net, rates, m, p = _setup(p0, rates, stoichiometry, reactants, propensity_fn, max_counts)
    times = check_times("times", times, p.dtype, ndim=1)
    T = times.shape[0]
    ll = jnp.asarray(obs_log_probs).astype(p.dtype)
    if ll.shape != (T, *p.shape):
        raise ValueError(
            f"obs_log_probs must have shape (T, *grid) = {(T, *p.shape)}; got {ll.shape}"
        )
    c = concrete(ll)
    if c is not None and np.any(np.isnan(c)):
        raise ValueError("obs_log_probs must not contain NaN (use -inf for impossible states)")
    start = times[0] if t0 is None else check_times("t0", t0, p.dtype, ndim=0)
    c0, ct = concrete(start), concrete(times)
    if c0 is not None and ct is not None and c0 > ct[0]:
        raise ValueError(f"t0 must be <= times[0]; got t0={float(c0)}, times[0]={ct[0]}")
    dts = jnp.diff(jnp.concatenate([start[None], times]))
    N = _num_terms(num_terms)
    dom = _domain(domain, m)
    return _cme_ll(p, dts, ll, rates, net, m, dom, N, float(tail_tol), bool(return_filtered))


@partial(jax.jit, static_argnums=(4, 5, 6, 7, 8, 9))
def _cme_ll(p, dts, ll, rates, net, m, dom, num_terms, tail_tol, return_filtered):
    H = _rates_grid(rates, net, m, dom)
    V = net.stoichiometry
    lam = _uniformization_rate(H)

    def step(carry, xs):
        alpha, total, worst = carry
        dt, lli = xs
        pred, tail = _transient(alpha, dt, H, V, lam, num_terms)
        shift = jnp.max(lli)
        shift = jnp.where(jnp.isfinite(shift), shift, 0.0)
        a = pred * jnp.exp(lli - shift)
        c = jnp.sum(a)
        alpha = jnp.where(c > 0, a / jnp.where(c > 0, c, 1.0), pred)
        total = total + jnp.log(c) + shift
        return (alpha, total, jnp.maximum(worst, tail)), alpha if return_filtered else None

    init = (p, jnp.zeros((), p.dtype), jnp.zeros((), p.dtype))
    (_, total, worst), filtered = lax.scan(step, init, (dts, ll))
    total = jnp.where(worst > tail_tol, jnp.nan, total)
    return (total, filtered) if return_filtered else total


# --------------------------------------------------------------------------------------
# adaptive number of terms
# --------------------------------------------------------------------------------------


class CMEFilterResult(NamedTuple):
    """Output of :func:`cme_filter`, one entry per observation (T,).

    ``log_normalizers[i]`` is :math:`\\log p(y_i \\mid y_{<i})` (their sum is the
    log-likelihood); ``series_tail[i]`` the Poisson tail mass of the uniformisation series
    left out for the gap before observation i (a total-variation error bound);
    ``num_terms[i]`` the number of series terms used; ``exit_mass[i]`` the predicted
    probability, before observation i, of the box states from which a reaction with
    positive propensity would leave the box (switched off by the truncation): a box too
    small shows up here, while faces no reaction can cross (e.g. a conserved gene copy
    number) do not count.
    """

    log_normalizers: Array
    series_tail: Array
    num_terms: Array
    exit_mass: Array


def _tail_from(n, mu):
    """P(N >= n) for N ~ Poisson(mu), n >= 0 (1 at n = 0)."""
    n = jnp.asarray(n, mu.dtype)
    return jnp.where(n > 0, jax.scipy.special.gammainc(jnp.maximum(n, 1.0), mu), 1.0)


def _exit_states(rates, net, m):
    """Boolean grid: some reaction with positive propensity leaves the box from here."""
    states = jnp.asarray(box_states(m), dtype=rates.dtype)
    H = jax.vmap(lambda x: net.propensity(x, rates))(states).T  # (R, K)
    leaves = ~_allowed(net.stoichiometry, m, None).reshape(net.num_reactions, -1)
    return jnp.any((H > 0) & leaves, axis=0).reshape(tuple(v + 1 for v in m))


def _transient_adaptive(p, dt, H, V, lam, tol, block, num_blocks):
    """:func:`_transient` with as many blocks of ``block`` terms as the Poisson tail bound
    asks for (at most ``num_blocks``): blocks past the point where the tail left out is
    below ``tol`` are skipped with ``lax.cond`` (run anyway, and discarded, under
    ``vmap``). Returns ``(p_t, tail, num_terms)``."""
    mu = jnp.maximum(lam * dt, jnp.finfo(p.dtype).tiny)
    log_mu = jnp.log(mu)

    def run(carry, start):
        v, acc, used = carry
        n = start + jnp.arange(block, dtype=p.dtype)
        w = jnp.exp(n * log_mu - mu - jax.scipy.special.gammaln(n + 1))

        def term(c, wn):
            v, acc = c
            return (v + _apply(v, H, V) / lam, acc + wn * v), None

        (v, acc), _ = lax.scan(term, (v, acc), w)
        return v, acc, used + block

    def one_block(carry, b):
        start = jnp.asarray(b * block, p.dtype)
        needed = _tail_from(start, mu) > tol
        carry = lax.cond(needed, run, lambda c, _: c, carry, start)
        return carry, None

    init = (p, jnp.zeros_like(p), jnp.zeros((), jnp.int32))
    (_, acc, used), _ = lax.scan(one_block, init, jnp.arange(num_blocks))
    return jnp.maximum(acc, 0.0), _tail_from(used, mu), used


def cme_filter(
    p0: ArrayLike,
    times: ArrayLike,
    obs_log_probs: ArrayLike,
    rates: ArrayLike,
    stoichiometry: Network | ArrayLike,
    *,
    reactants: ArrayLike | None = None,
    propensity_fn=None,
    max_counts,
    domain: ArrayLike | None = None,
    t0: ArrayLike | None = None,
    tol: float = 1e-6,
    max_terms: int = 1024,
    block: int = 16,
) -> CMEFilterResult:
    """Forward algorithm of :func:`cme_log_likelihood`, with the number of uniformisation
    terms chosen per gap from the Poisson tail bound.

    For a gap :math:`\\Delta t` and uniformisation rate :math:`\\lambda` the series
    :math:`\\sum_n \\mathrm{Pois}(n; \\lambda \\Delta t)\\, p (I + Q/\\lambda)^n` is cut
    after the first multiple of ``block`` terms whose left-out Poisson mass
    :math:`P(N \\ge n)` is at most ``tol`` (Jensen 1953; the error in total variation is
    at most that mass). Unlike ``num_terms`` in :func:`cme_log_likelihood`, this needs no
    bound on the rates in advance: :math:`\\lambda` is read from the rates inside ``jit``
    and unused blocks are skipped at run time, so the cost follows
    :math:`\\lambda \\Delta t`. Differentiable in the rates (reverse and forward mode).

    Parameters
    ----------
    p0, times, obs_log_probs, rates, stoichiometry, reactants, propensity_fn, max_counts, domain, t0
        As in :func:`cme_log_likelihood`.
    tol : float
        Largest Poisson tail mass left out per gap, in (0, 1).
    max_terms : int
        Static cap on the terms per gap (rounded up to a multiple of ``block``); where it
        does not reach ``tol``, ``series_tail`` says so and the caller decides (the
        :class:`probdyn.processes.CMEObservations` log-density is then NaN).
    block : int
        Terms per skippable block (static).

    Returns
    -------
    CMEFilterResult
        Arrays of shape (T,).
    """
    net, rates, m, p = _setup(p0, rates, stoichiometry, reactants, propensity_fn, max_counts)
    times = check_times("times", times, p.dtype, ndim=1)
    T = times.shape[0]
    ll = jnp.asarray(obs_log_probs).astype(p.dtype)
    if ll.shape != (T, *p.shape):
        raise ValueError(
            f"obs_log_probs must have shape (T, *grid) = {(T, *p.shape)}; got {ll.shape}"
        )
    if not 0.0 < float(tol) < 1.0:
        raise ValueError(f"tol must be in (0, 1); got {tol!r}")
    block = _num_terms(block)
    num_blocks = -(-_num_terms(max_terms) // block)
    start = times[0] if t0 is None else check_times("t0", t0, p.dtype, ndim=0)
    c0, ct = concrete(start), concrete(times)
    if c0 is not None and ct is not None and c0 > ct[0]:
        raise ValueError(f"t0 must be <= times[0]; got t0={float(c0)}, times[0]={ct[0]}")
    dts = jnp.diff(jnp.concatenate([start[None], times]))
    dom = _domain(domain, m)
    return _cme_filter(p, dts, ll, rates, net, m, dom, float(tol), block, num_blocks)


@partial(jax.jit, static_argnums=(4, 5, 6, 7, 8, 9))
def _cme_filter(p, dts, ll, rates, net, m, dom, tol, block, num_blocks):
    H = _rates_grid(rates, net, m, dom)
    V = net.stoichiometry
    lam = _uniformization_rate(H)
    exits = _exit_states(rates, net, m)

    def step(alpha, xs):
        dt, lli = xs
        pred, tail, used = _transient_adaptive(alpha, dt, H, V, lam, tol, block, num_blocks)
        shift = jnp.max(lli)
        shift = jnp.where(jnp.isfinite(shift), shift, 0.0)
        a = pred * jnp.exp(lli - shift)
        c = jnp.sum(a)
        alpha = jnp.where(c > 0, a / jnp.where(c > 0, c, 1.0), pred)
        return alpha, (jnp.log(c) + shift, tail, used, jnp.sum(jnp.where(exits, pred, 0.0)))

    _, out = lax.scan(step, p, (dts, ll))
    return CMEFilterResult(*out)


def cme_sample(
    rng_key: Array,
    p0: ArrayLike,
    times: ArrayLike,
    rates: ArrayLike,
    stoichiometry: Network | ArrayLike,
    *,
    reactants: ArrayLike | None = None,
    propensity_fn=None,
    max_counts,
    domain: ArrayLike | None = None,
    t0: ArrayLike | None = None,
    tol: float = 1e-6,
    max_terms: int = 1024,
    block: int = 16,
) -> Array:
    """Exact draw of the truncated chain's states at ``times`` (the chain whose likelihood
    :func:`cme_filter` computes): the state at ``t0`` from ``p0``, then each next state from
    the row of :math:`e^{Q \\Delta t}` of the previous one (uniformisation, terms chosen as
    in :func:`cme_filter`).

    Parameters
    ----------
    rng_key : Array
    p0, times, rates, stoichiometry, reactants, propensity_fn, max_counts, domain, t0
        As in :func:`cme_filter`.
    tol, max_terms, block
        As in :func:`cme_filter`.

    Returns
    -------
    Array of int32, shape (T, S)
        Counts at each time.
    """
    net, rates, m, p = _setup(p0, rates, stoichiometry, reactants, propensity_fn, max_counts)
    times = check_times("times", times, p.dtype, ndim=1)
    if not 0.0 < float(tol) < 1.0:
        raise ValueError(f"tol must be in (0, 1); got {tol!r}")
    block = _num_terms(block)
    num_blocks = -(-_num_terms(max_terms) // block)
    start = times[0] if t0 is None else check_times("t0", t0, p.dtype, ndim=0)
    dts = jnp.diff(jnp.concatenate([start[None], times]))
    dom = _domain(domain, m)
    return _cme_sample(rng_key, p, dts, rates, net, m, dom, float(tol), block, num_blocks)


@partial(jax.jit, static_argnums=(4, 5, 6, 7, 8, 9))
def _cme_sample(key, p, dts, rates, net, m, dom, tol, block, num_blocks):
    H = _rates_grid(rates, net, m, dom)
    V = net.stoichiometry
    lam = _uniformization_rate(H)
    states = jnp.asarray(box_states(m), jnp.int32)
    K = states.shape[0]
    k0, key = jax.random.split(key)
    x0 = jax.random.categorical(k0, jnp.log(p.reshape(-1)))

    def step(x, xs):
        k, dt = xs
        one = jax.nn.one_hot(x, K, dtype=p.dtype).reshape(p.shape)
        pt, _, _ = _transient_adaptive(one, dt, H, V, lam, tol, block, num_blocks)
        x = jax.random.categorical(k, jnp.log(pt.reshape(-1)))
        return x, x

    _, idx = lax.scan(step, x0, (jax.random.split(key, dts.shape[0]), dts))
    return states[idx]
