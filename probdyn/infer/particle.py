r"""Bootstrap particle filter: an unbiased estimate of the marginal likelihood.

For a Markov state-space model with latent state :math:`x_t` observed at times
:math:`t_1 < \dots < t_T` through densities :math:`g_k(y_k \mid x_{t_k})`, the bootstrap
filter of Gordon, Salmond & Smith (1993) propagates :math:`N` particles through the
transition (a simulator is enough: no transition density is needed), weights them by
:math:`g_k` and resamples. With normalised weights :math:`W_{k-1}^i` carried into step
:math:`k`,

.. math::

    \hat p(y_{1:T}) = \prod_{k=1}^{T} \sum_{i=1}^{N} W_{k-1}^i\, g_k(y_k \mid x_{t_k}^i),

which is an unbiased estimate of :math:`p(y_{1:T})` for every :math:`N \ge 1`
(Del Moral 2004; with adaptive resampling too, because the decision to resample depends
on the past only). Its log is what :func:`particle_filter` returns; the log of an unbiased
estimate is biased downwards, the estimate itself is not. Particle marginal
Metropolis-Hastings (:mod:`probdyn.infer.pmmh`) needs exactly this unbiasedness.

:func:`pf_likelihood` puts the estimate into a NumPyro model as an observed site whose
log-density is the estimate; such a model is sampled with
``probdyn.fit(model, method="pmmh")``. The estimate is noisy and not differentiable, so
gradient-based inference (NUTS, HMC, SVI, SG-MCMC) on such a model is invalid: it raises.

References
----------
N. J. Gordon, D. J. Salmond and A. F. M. Smith, "Novel approach to nonlinear/non-Gaussian
Bayesian state estimation", IEE Proc. F 140(2), 107-113, 1993.

P. Del Moral, *Feynman-Kac Formulae*, Springer, 2004.

N. Chopin and O. Papaspiliopoulos, *An Introduction to Sequential Monte Carlo*, Springer,
2020 (ch. 9 and 10: resampling schemes and the bootstrap filter).

D. J. Wilkinson, *Stochastic Modelling for Systems Biology*, 3rd ed., CRC Press, 2018
(ch. 11: particle filters for Markov jump processes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from jax import lax
from jax.scipy.special import logsumexp
from jax.typing import ArrayLike
from numpyro.distributions import Distribution, constraints

from probdyn.kernels._checks import check_times
from probdyn.kernels._checks import concrete as _concrete
from probdyn.kernels.network import Network, as_network
from probdyn.kernels.ssa import gillespie_at, tau_leap

Array = jax.Array
PyTree = Any

__all__ = [
    "RESAMPLING",
    "ParticleFilterResult",
    "ParticleLikelihood",
    "Propagation",
    "particle_filter",
    "pf_likelihood",
    "reaction_transition",
    "resample",
]

#: Resampling schemes that :func:`resample` and :func:`particle_filter` accept.
RESAMPLING = ("systematic", "stratified", "multinomial")


class Propagation(NamedTuple):
    """What a ``transition`` may return instead of the bare new state.

    Attributes
    ----------
    state : PyTree
        The new state of one particle.
    overflow : Array of bool, shape ()
        True when the simulation could not be completed (e.g. a Gillespie run used up its
        ``max_jumps``); the particle then gets weight zero.
    """

    state: PyTree
    overflow: Array


class ParticleFilterResult(NamedTuple):
    """Output of :func:`particle_filter` (T observation times, N particles).

    Attributes
    ----------
    log_likelihood : Array, shape ()
        :math:`\\log \\hat p(y_{1:T})`, the log of the unbiased estimate; ``-inf`` when
        every particle got weight zero at some step (never NaN).
    log_likelihood_increments : Array, shape (T,)
        :math:`\\log \\sum_i W_{k-1}^i g_k^i`; 0 at missing observations (up to
        overflowed particles, which are dropped there too).
    ess : Array, shape (T,)
        Effective sample size :math:`1 / \\sum_i (W_k^i)^2` of the weights after the
        weighting at step k (0 when all weights are zero).
    resampled : Array of bool, shape (T,)
        Whether the particles were resampled after step k.
    num_overflow : Array of int32, shape (T,)
        Particles whose propagation to :math:`t_k` overflowed (weight set to zero).
    filtered_mean : PyTree
        Weighted particle mean at each step, leaves of shape (T, ...) in the floating dtype
        (the filtering mean :math:`E[x_{t_k} \\mid y_{1:k}]` estimate; the predictive
        mean at missing observations).
    particles : PyTree or None
        With ``return_particles=True``: particles after propagation at each step, leaves
        of shape (T, N, ...), before resampling.
    log_weights : Array or None
        With ``return_particles=True``: their normalised log-weights, shape (T, N).
    """

    log_likelihood: Array
    log_likelihood_increments: Array
    ess: Array
    resampled: Array
    num_overflow: Array
    filtered_mean: PyTree
    particles: PyTree = None
    log_weights: Array | None = None


# --------------------------------------------------------------------------------------
# resampling
# --------------------------------------------------------------------------------------


def _check_resampling(resampling):
    if resampling not in RESAMPLING:
        raise ValueError(f"resampling={resampling!r} is not known; expected one of {RESAMPLING}")
    return resampling


def _resample(rng_key, log_weights, num_samples, method):
    w = jnp.exp(log_weights - jnp.max(log_weights))
    cdf = jnp.cumsum(w)
    cdf = cdf / cdf[-1]  # cdf[-1] == 1 exactly: every u < 1 finds an index of positive weight
    if method == "multinomial":
        u = jax.random.uniform(rng_key, (num_samples,), cdf.dtype)
    elif method == "stratified":
        u = jnp.arange(num_samples) + jax.random.uniform(rng_key, (num_samples,), cdf.dtype)
        u = u / num_samples
    else:
        u = (jnp.arange(num_samples) + jax.random.uniform(rng_key, (), cdf.dtype)) / num_samples
    idx = jnp.searchsorted(cdf, u, side="right")
    return jnp.minimum(idx, log_weights.shape[0] - 1).astype(jnp.int32)


def resample(
    rng_key: Array,
    log_weights: ArrayLike,
    *,
    num_samples: int | None = None,
    method: str = "systematic",
) -> Array:
    """Ancestor indices drawn from (unnormalised) log-weights.

    Every scheme is unbiased: particle i is drawn :math:`M w_i` times in expectation
    (:math:`w` the normalised weights, :math:`M` = ``num_samples``). ``"multinomial"``
    draws M i.i.d. indices; ``"stratified"`` one uniform in each of the M strata
    :math:`[m/M, (m+1)/M)`; ``"systematic"`` the same shifted uniform in every stratum,
    so particle i is drawn :math:`\\lfloor M w_i \\rfloor` or :math:`\\lceil M w_i \\rceil`
    times (lowest variance of the three in practice; Douc, Cappé & Moulines 2005).
    Indices come out sorted for the stratified and systematic schemes. Cost O(N + M log N).

    Parameters
    ----------
    rng_key : Array
        PRNG key.
    log_weights : ArrayLike, shape (N,)
        Log-weights, at least one finite.
    num_samples : int, optional
        Number of indices M (default N).
    method : {"systematic", "stratified", "multinomial"}
        Resampling scheme.

    Returns
    -------
    Array of int32, shape (M,)
        Indices in ``[0, N)``; zero-weight particles are never drawn.
    """
    _check_resampling(method)
    log_weights = jnp.asarray(log_weights)
    if log_weights.ndim != 1 or log_weights.shape[0] < 1:
        raise ValueError(f"log_weights must have shape (N,) with N >= 1; got {log_weights.shape}")
    c = _concrete(log_weights)
    if c is not None and not np.any(np.isfinite(c)):
        raise ValueError("log_weights must have at least one finite entry; got none")
    n = log_weights.shape[0] if num_samples is None else num_samples
    n = _check_count("num_samples", n)
    log_weights = log_weights.astype(jnp.result_type(log_weights.dtype, jnp.float32))
    return _resample(rng_key, log_weights, n, method)


# --------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------


def _check_count(name, value):
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name}={value!r} is a {type(value).__name__}; expected a Python int")
    if value < 1:
        raise ValueError(f"{name}={value!r} is out of range; expected an integer >= 1")
    return int(value)


def _check_times(times, t0):
    dtype = jnp.result_type(jnp.asarray(times).dtype, jnp.float32)
    t0 = jnp.asarray(t0, dtype)
    if t0.ndim != 0:
        raise ValueError(f"t0 must be a scalar; got shape {t0.shape}")
    label = "(num_timesteps,) with at least one entry"
    return check_times("times", times, dtype, ndim=1, t0=t0, shape_label=label), t0


def _leading(name, tree, size, what):
    for leaf in jax.tree.leaves(tree):
        shape = jnp.shape(leaf)
        if len(shape) < 1 or shape[0] != size:
            raise ValueError(
                f"{name} must have a leading axis of length {size} ({what}); got a leaf of "
                f"shape {shape}"
            )


# --------------------------------------------------------------------------------------
# the filter
# --------------------------------------------------------------------------------------


def _unpack(out, num_particles):
    if isinstance(out, Propagation):
        return out.state, jnp.asarray(out.overflow, bool)
    return out, jnp.zeros((num_particles,), bool)


def particle_filter(
    rng_key: Array,
    initial: Callable[[Array], PyTree] | PyTree,
    transition: Callable,
    obs_log_prob: Callable,
    times: ArrayLike,
    obs: PyTree,
    *,
    num_particles: int,
    resampling: str = "systematic",
    ess_threshold: float = 1.0,
    t0: ArrayLike = 0.0,
    mask: ArrayLike | None = None,
    return_particles: bool = False,
) -> ParticleFilterResult:
    r"""Bootstrap particle filter (Gordon et al. 1993) over observation times.

    From particles :math:`x^i_{t_0}` drawn from the initial distribution, for
    :math:`k = 1, \dots, T`: propagate each particle from :math:`t_{k-1}` to :math:`t_k`
    with ``transition``; weight, :math:`\log w^i = \log W^i_{k-1} + \log g_k(y_k \mid
    x^i)`; add :math:`\log \sum_i w^i` (a ``logsumexp``) to the log-likelihood; normalise;
    resample when the effective sample size falls below ``ess_threshold * N``. One
    :func:`jax.lax.scan` over time, particles vmapped.

    Parameters
    ----------
    rng_key : Array
        PRNG key.
    initial : callable or PyTree
        ``initial(rng_key) -> x`` drawing one particle at ``t0`` (called on N keys), or
        the N initial particles themselves (every leaf with leading axis N). For a known
        initial state use ``lambda key: x0``.
    transition : callable
        ``transition(rng_key, x, t_prev, t_next)`` for one particle; returns the new state
        (same structure and shapes as ``x``) or a :class:`Propagation` ``(state,
        overflow)``. An overflowed particle gets weight zero (so the estimate targets the
        model conditioned on no overflow: size ``max_jumps`` so that ``num_overflow``
        stays 0). The particle dtype is the one ``transition`` returns.
    obs_log_prob : callable
        ``obs_log_prob(y, x, t) -> ()``, :math:`\log g(y \mid x)` for one particle and one
        observation ``y`` (``obs`` at one time). NaN is read as :math:`-\infty`.
    times : ArrayLike, shape (T,)
        Strictly increasing observation times, ``times[0] >= t0``.
    obs : PyTree
        Observations, every leaf with leading axis T.
    num_particles : int
        N >= 1 (static).
    resampling : {"systematic", "stratified", "multinomial"}
        Resampling scheme (see :func:`resample`).
    ess_threshold : float in [0, 1]
        Resample after step k when ESS < ``ess_threshold * N``; 1 (default) resamples at
        every observed step, 0 never.
    t0 : ArrayLike, shape ()
        Time of the initial particles.
    mask : ArrayLike of bool, shape (T,), optional
        False where ``obs`` is missing: that step propagates without weighting or
        resampling (``obs_log_prob`` is not used there). Numbers must be 0 or 1: other
        values raise ``ValueError`` on concrete input and give a NaN log-likelihood
        under ``jit``.
    return_particles : bool
        Also return all particles and log-weights (memory O(T N)).

    Returns
    -------
    ParticleFilterResult
        ``log_likelihood`` (), per-step ``log_likelihood_increments``, ``ess``,
        ``resampled``, ``num_overflow`` (T,), ``filtered_mean`` (leaves (T, ...)) and,
        optionally, ``particles`` (leaves (T, N, ...)) and ``log_weights`` (T, N).

    Raises
    ------
    ValueError
        ``num_particles`` < 1, ``times`` not strictly increasing or before ``t0``, ``obs``
        or ``mask`` not of length T, an unknown ``resampling``, ``ess_threshold`` outside
        [0, 1], initial particles without leading axis N.
    TypeError
        ``transition`` or ``obs_log_prob`` not callable, ``num_particles`` not an int.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> def transition(key, x, t_prev, t_next):
    ...     return 0.9 * x + jax.random.normal(key)
    >>> def obs_log_prob(y, x, t):
    ...     return jax.scipy.stats.norm.logpdf(y, x, 1.0)
    >>> res = particle_filter(jax.random.PRNGKey(0), lambda k: jax.random.normal(k),
    ...                       transition, obs_log_prob, jnp.arange(1.0, 6.0), jnp.zeros(5),
    ...                       num_particles=100)
    >>> res.log_likelihood.shape, res.ess.shape
    ((), (5,))
    """
    N = _check_count("num_particles", num_particles)
    resampling = _check_resampling(resampling)
    if isinstance(ess_threshold, bool) or not isinstance(ess_threshold, int | float):
        raise TypeError(f"ess_threshold={ess_threshold!r} must be a Python float in [0, 1]")
    if not 0.0 <= ess_threshold <= 1.0:
        raise ValueError(f"ess_threshold={ess_threshold!r} is out of range; expected [0, 1]")
    for name, fn in (("transition", transition), ("obs_log_prob", obs_log_prob)):
        if not callable(fn):
            raise TypeError(f"{name}={fn!r} is not callable; expected a function")
    times, t0 = _check_times(times, t0)
    T = times.shape[0]
    _leading("obs", obs, T, "one entry per observation time")
    mask_ok = True  # under jit a non-0/1 mask cannot raise: the log-likelihood is NaN
    if mask is None:
        mask = jnp.ones((T,), bool)
    else:
        mask = jnp.asarray(mask)
        if mask.shape != (T,):
            raise ValueError(f"mask must have shape ({T},) to match times; got {mask.shape}")
        if mask.dtype != jnp.bool_:
            if not jnp.issubdtype(mask.dtype, jnp.number) or jnp.iscomplexobj(mask):
                raise TypeError(f"mask has dtype {mask.dtype}; expected bool (or 0/1 numbers)")
            if not isinstance(mask, jax.core.Tracer):
                values = np.unique(np.asarray(mask))
                if not np.all(np.isin(values, (0, 1))):
                    raise ValueError(
                        f"mask has values {values[~np.isin(values, (0, 1))][:5].tolist()}; "
                        "expected True/False (or 0/1): a fractional mask is not a weight"
                    )
            mask_ok = jnp.all((mask == 0) | (mask == 1))
        mask = mask.astype(bool)
    key_init, key_scan = jax.random.split(rng_key)
    if callable(initial):
        particles = jax.vmap(initial)(jax.random.split(key_init, N))
    else:
        particles = jax.tree.map(jnp.asarray, initial)
        _leading("initial", particles, N, "one entry per particle: num_particles")
    particles = _align_dtypes(transition, particles, times, t0)
    dtype = times.dtype
    log_n = math.log(N)
    step = _make_step(transition, obs_log_prob, N, resampling, ess_threshold, dtype,
                      return_particles)  # fmt: skip
    keys = jax.random.split(key_scan, T)
    init = (particles, jnp.full((N,), -log_n, dtype), t0)
    _, out = lax.scan(step, init, (keys, times, obs, mask))
    inc, ess, resampled, n_over, mean, parts, logw = out
    inc = jnp.where(mask_ok, inc, jnp.nan)
    return ParticleFilterResult(
        jnp.sum(inc), inc, ess, resampled, n_over, mean,
        parts if return_particles else None, logw if return_particles else None,
    )  # fmt: skip


def _align_dtypes(transition, particles, times, t0):
    """Cast the initial particles to what ``transition`` returns (the scan carry type)."""
    one = jax.tree.map(lambda x: x[0], particles)
    out = jax.eval_shape(transition, jax.random.PRNGKey(0), one, t0, times[0])
    state = out.state if isinstance(out, Propagation) else out
    if jax.tree.structure(state) != jax.tree.structure(one):
        raise ValueError(
            "transition must return a state with the structure of a particle "
            f"({jax.tree.structure(one)}); got {jax.tree.structure(state)}"
        )
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(state), strict=True):
        if jnp.shape(a) != b.shape:
            raise ValueError(
                f"transition must keep the shape of a particle; got {b.shape} from {jnp.shape(a)}"
            )
    return jax.tree.map(lambda x, s: x.astype(s.dtype), particles, state)


def _make_step(transition, obs_log_prob, N, resampling, ess_threshold, dtype, keep):
    log_n = math.log(N)
    propagate = jax.vmap(transition, in_axes=(0, 0, None, None))
    weigh = jax.vmap(obs_log_prob, in_axes=(None, 0, None))

    def step(carry, inputs):
        particles, log_w, t_prev = carry
        key, t, y, observed = inputs
        key_prop, key_res = jax.random.split(key)
        new, overflow = _unpack(propagate(jax.random.split(key_prop, N), particles, t_prev, t), N)
        new = jax.tree.map(lambda a, b: a.astype(b.dtype), new, particles)
        log_g = jnp.asarray(weigh(y, new, t), dtype)
        log_g = jnp.where(jnp.isnan(log_g), -jnp.inf, log_g)
        log_g = jnp.where(observed, log_g, 0.0)
        log_g = jnp.where(overflow, -jnp.inf, log_g)
        log_w = log_w + log_g
        inc = logsumexp(log_w)
        # no observation and no particle lost: the weights are already normalised, and
        # the step adds exactly nothing (not a rounding error of logsumexp)
        inc = jnp.where(observed | jnp.any(overflow), inc, 0.0)
        dead = ~(inc > -jnp.inf)  # every weight zero: restart from uniform, inc = -inf
        inc = jnp.where(jnp.isnan(inc), -jnp.inf, inc)
        log_w = jnp.where(dead, -log_n, log_w - jnp.where(dead, 0.0, inc))
        w = jnp.exp(log_w)
        ess = jnp.where(dead, 0.0, 1.0 / jnp.sum(w**2))
        mean = jax.tree.map(lambda x: jnp.tensordot(w, x.astype(dtype), axes=1), new)
        if ess_threshold >= 1.0:
            do = observed
        else:
            do = observed & (ess < ess_threshold * N)
        idx = jnp.where(do, _resample(key_res, log_w, N, resampling), jnp.arange(N))
        moved = jax.tree.map(lambda x: x[idx], new)
        log_w_next = jnp.where(do, -log_n, log_w)
        extra = (new, log_w) if keep else (None, None)
        out = (inc, ess, do, jnp.sum(overflow, dtype=jnp.int32), mean, *extra)
        return (moved, log_w_next, t), out

    return step


# --------------------------------------------------------------------------------------
# reaction networks
# --------------------------------------------------------------------------------------


def reaction_transition(
    stoichiometry: Network | ArrayLike,
    reactants: ArrayLike | None = None,
    rates: ArrayLike | None = None,
    *,
    method: str = "gillespie",
    max_jumps: int | None = None,
    tau: float | None = None,
    propensity_fn: Callable | None = None,
) -> Callable:
    """A ``transition`` for :func:`particle_filter` that simulates a reaction network.

    Parameters
    ----------
    stoichiometry : Network or ArrayLike of int, shape (R, S)
        The network (a :class:`probdyn.kernels.network.Network` or a
        ``ReactionNetwork``; then ``reactants`` and ``propensity_fn`` stay None), or the
        concrete net change of each species per reaction.
    reactants : ArrayLike of int, shape (R, S), or None
        Concrete mass-action reactant orders (None with ``propensity_fn``).
    rates : ArrayLike, shape (R,)
        Rate constants; may be traced (model parameters).
    method : {"gillespie", "tau_leap"}
        ``"gillespie"``: exact, :func:`probdyn.kernels.ssa.gillespie_at`, with the
        overflow flag returned in a :class:`Propagation` (weight zero in the filter);
        ``"tau_leap"``: approximate, :func:`probdyn.kernels.ssa.tau_leap` (never overflows).
    max_jumps : int
        Cap on the events of one particle between two observation times (``"gillespie"``).
    tau : float
        Leap size (``"tau_leap"``).
    propensity_fn : callable, optional
        ``propensity_fn(x, rates) -> (R,)`` instead of mass action (with an array
        ``stoichiometry``).

    Returns
    -------
    callable
        ``transition(rng_key, x, t_prev, t_next)`` with ``x`` int32 counts (S,),
        returning a :class:`Propagation` ``(state (S,), overflow ())``.
    """
    if method not in ("gillespie", "tau_leap"):
        raise ValueError(f"method={method!r} is not known; expected 'gillespie' or 'tau_leap'")
    if rates is None:
        raise TypeError("reaction_transition() missing the rates (R,); got rates=None")
    net = as_network(stoichiometry, reactants, propensity_fn)
    if method == "gillespie":
        if max_jumps is None:
            raise ValueError("max_jumps is required for method='gillespie'; got None")
        _check_count("max_jumps", max_jumps)

        def transition(rng_key, x, t_prev, t_next):
            states, overflow = gillespie_at(
                rng_key, x, jnp.reshape(t_next, (1,)), net, rates, max_jumps=max_jumps, t0=t_prev
            )
            return Propagation(states[0], overflow)

    else:
        if tau is None:
            raise ValueError("tau is required for method='tau_leap'; got None")
        c = _concrete(tau)
        if c is not None and not (np.ndim(c) == 0 and c > 0):
            raise ValueError(f"tau={tau!r} must be a positive scalar")

        def transition(rng_key, x, t_prev, t_next):
            states = tau_leap(rng_key, x, jnp.reshape(t_next, (1,)), net, rates, tau=tau, t0=t_prev)
            return Propagation(states[0], jnp.zeros((), bool))

    return transition


# --------------------------------------------------------------------------------------
# NumPyro models
# --------------------------------------------------------------------------------------


@jax.custom_jvp
def _not_differentiable(x):
    return x


@_not_differentiable.defjvp
def _not_differentiable_jvp(primals, tangents):
    raise TypeError(
        "a particle-filter likelihood (probdyn.infer.pf_likelihood) is a noisy, "
        "non-differentiable estimate: gradient-based inference (NUTS, HMC, SVI, SG-MCMC) on "
        "this model is invalid; use probdyn.fit(model, ..., method='pmmh')"
    )


class _AnyValue(constraints.Constraint):
    def __call__(self, x):
        return jnp.ones(jnp.shape(x), bool)


class ParticleLikelihood(Distribution):
    """Observed-site distribution whose log-density is a given (estimated) log-likelihood.

    Made by :func:`pf_likelihood`; ``log_prob(value)`` returns ``log_likelihood`` whatever
    ``value`` is (the value is the data, kept for the ``observed_data`` group).

    Parameters
    ----------
    log_likelihood : Array, shape ()
        The estimate.
    event_shape : tuple of int
        Shape of the observed data.
    """

    arg_constraints: dict = {}  # -inf is a valid estimate
    support = _AnyValue()
    pytree_data_fields = ("log_likelihood",)

    def __init__(self, log_likelihood, event_shape=(), *, validate_args=None):
        self.log_likelihood = jnp.asarray(log_likelihood)
        super().__init__(batch_shape=(), event_shape=tuple(event_shape),
                         validate_args=validate_args)  # fmt: skip

    def sample(self, key, sample_shape=()):
        raise NotImplementedError(
            "a particle-filter likelihood site cannot be sampled: simulate the dynamics and "
            "the observation model directly for predictive draws"
        )

    def log_prob(self, value):
        return self.log_likelihood


def pf_likelihood(
    name: str,
    initial: Callable[[Array], PyTree] | PyTree,
    transition: Callable,
    obs_log_prob: Callable,
    times: ArrayLike,
    obs: ArrayLike,
    *,
    num_particles: int,
    resampling: str = "systematic",
    ess_threshold: float = 1.0,
    t0: ArrayLike = 0.0,
    mask: ArrayLike | None = None,
) -> ParticleFilterResult:
    """Add a particle-filter estimate of :math:`\\log p(y \\mid \\theta)` to a NumPyro model.

    Runs :func:`particle_filter` with a key from :func:`numpyro.prng_key` (so every run of
    the model under a fresh ``seed`` gives an independent estimate) and records an
    observed site ``name`` with value ``obs`` whose log-density is the estimate. Sample
    the model with ``probdyn.fit(model, ..., method="pmmh")`` (particle marginal
    Metropolis-Hastings, exact for the posterior despite the noise); differentiating the
    estimate (NUTS, HMC, SVI, SG-MCMC) raises ``TypeError``. Not for use inside a plate.

    Parameters
    ----------
    name : str
        Site name.
    initial, transition, obs_log_prob, times, num_particles, resampling, ess_threshold, t0, mask
        As for :func:`particle_filter`.
    obs : ArrayLike, shape (T, ...)
        Observations (one array; missing entries may be anything where ``mask`` is False).

    Returns
    -------
    ParticleFilterResult
        The filter's output (e.g. ``filtered_mean`` for a ``numpyro.deterministic``).
    """
    if not isinstance(name, str):
        raise TypeError(f"name={name!r} must be a str (the site name)")
    obs = jnp.asarray(obs)
    rng_key = numpyro.prng_key()
    if rng_key is None:
        raise RuntimeError(
            f"pf_likelihood({name!r}) needs randomness: run the model under "
            "numpyro.handlers.seed (fit, MCMC and Predictive do this)"
        )
    result = particle_filter(
        rng_key, initial, transition, obs_log_prob, times, obs,
        num_particles=num_particles, resampling=resampling, ess_threshold=ess_threshold,
        t0=t0, mask=mask,
    )  # fmt: skip
    ll = _not_differentiable(result.log_likelihood)
    event_dims = ["time", *(f"{name}_dim_{i}" for i in range(1, obs.ndim))]
    numpyro.sample(
        name,
        ParticleLikelihood(ll, obs.shape),
        obs=obs,
        infer={"particle_filter": True, "event_dims": event_dims},
    )
    return result._replace(log_likelihood=ll)
