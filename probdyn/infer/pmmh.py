r"""Particle marginal Metropolis-Hastings (Andrieu, Doucet & Holenstein 2010) as a NumPyro kernel.

A model whose likelihood is only available as an unbiased, noisy estimate
:math:`\hat p(y \mid \theta)` (a particle filter, :func:`probdyn.infer.pf_likelihood`) is
sampled exactly by Metropolis-Hastings on :math:`\theta` that treats the estimate as if it
were the likelihood, provided the estimate of the *current* state is kept and reused
(never recomputed): the chain then targets an extended distribution whose
:math:`\theta`-marginal is the posterior. Each step

1. proposes :math:`\theta' = \theta + L\,\varepsilon`, :math:`\varepsilon \sim
   \mathcal N(0, I)`, in the unconstrained space of the model's latent sites;
2. runs the model once at :math:`\theta'` under a fresh :func:`numpyro.handlers.seed`
   key, giving :math:`\log p(\theta') + \log \hat p(y \mid \theta')` (+ the log-Jacobian
   of the transform to the unconstrained space);
3. accepts with probability :math:`\min\{1, \exp(-U(\theta') + U(\theta))\}`, with
   :math:`-U` that sum, and stores :math:`U` of the accepted state.

Proposal adaptation (warmup only, then frozen, so the sampling phase is an exact
Metropolis-Hastings chain): the adaptive Metropolis algorithm with global scaling
(Haario, Saksman & Tamminen 2001; Andrieu & Thoms 2008, Algorithm 4). The proposal
covariance is :math:`\lambda^2 \Sigma` with :math:`\Sigma` a running covariance of the
chain and :math:`\lambda` a scale, both updated after warmup step :math:`i` with gain
:math:`\gamma_i = (i + 10)^{-0.6}`:

.. math::

    \mu &\leftarrow \mu + \gamma_i (\theta_{i+1} - \mu), \qquad
    \Sigma \leftarrow \Sigma + \gamma_i \big((\theta_{i+1} - \mu)(\theta_{i+1} - \mu)^\top
        - \Sigma\big), \\
    \log\lambda &\leftarrow \log\lambda + \gamma_i (\alpha_i - \alpha^\star),

starting from :math:`\lambda = 2.38/\sqrt d` (Roberts & Rosenthal 2001) and
:math:`\Sigma = (\text{step\_size}^2\, d / 2.38^2)\, I`, so that the first proposals have
standard deviation ``step_size`` per coordinate. The target acceptance :math:`\alpha^\star`
defaults to 0.15: with a noisy likelihood the optimal acceptance rate is lower than the
0.234 of exact random-walk Metropolis (about 7% when the log-likelihood estimate has
variance near 3.3 and the number of particles is tuned jointly; Sherlock, Thiery,
Roberts & Rosenthal 2015). Choose ``num_particles`` so that the standard deviation of
the log-likelihood estimate near the posterior mode is about 1-1.5 (Doucet, Pitt,
Deligiannidis & Kohn 2015).

Extra fields (``sample_stats`` in ArviZ): ``accept_prob`` (the step's Metropolis-Hastings
acceptance probability), ``accepted``, ``log_likelihood`` (the stored estimate
:math:`\log \hat p(y \mid \theta)` of the current state: the sum of the model's
:func:`~probdyn.infer.pf_likelihood` sites), ``potential_energy`` (:math:`U`) and
``scale`` (:math:`\lambda`).

References
----------
C. Andrieu, A. Doucet and R. Holenstein, "Particle Markov chain Monte Carlo methods",
J. R. Statist. Soc. B 72(3), 269-342, 2010.

H. Haario, E. Saksman and J. Tamminen, "An adaptive Metropolis algorithm", Bernoulli 7(2),
223-242, 2001.

C. Andrieu and J. Thoms, "A tutorial on adaptive MCMC", Statistics and Computing 18,
343-373, 2008.

C. Sherlock, A. H. Thiery, G. O. Roberts and J. S. Rosenthal, "On the efficiency of
pseudo-marginal random walk Metropolis algorithms", Ann. Statist. 43(1), 238-275, 2015.

A. Doucet, M. K. Pitt, G. Deligiannidis and R. Kohn, "Efficient implementation of Markov
chain Monte Carlo when using an unbiased likelihood estimator", Biometrika 102(2),
295-313, 2015.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import random
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions.transforms import biject_to
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.mcmc import MCMCKernel
from numpyro.infer.util import ParamInfo, get_potential_fn, transform_fn
from numpyro.util import identity, is_prng_key

from probdyn.infer.particle import ParticleLikelihood

Array = jax.Array
PyTree = Any

__all__ = ["PMMH", "PMMHState"]

_GAIN_OFFSET = 10.0
_GAIN_EXPONENT = 0.6


class PMMHState(NamedTuple):
    """State of :class:`PMMH` (leaves gain a leading ``num_chains`` axis when chains are
    vectorised).

    Attributes
    ----------
    i : Array of int, shape ()
        Steps taken since :meth:`PMMH.init`, warmup included.
    z : dict of str to Array
        Unconstrained position.
    potential_energy : Array, shape ()
        :math:`U(z)` = -(log prior + log-likelihood estimate + log-Jacobian), stored and
        reused (never re-estimated) as PMMH requires.
    log_likelihood : Array, shape ()
        The stored log-likelihood estimate of ``z`` (sum over particle-filter sites).
    accept_prob : Array, shape ()
        Acceptance probability of the step that produced this state.
    accepted : Array of bool, shape ()
        Whether that step's proposal was accepted.
    scale : Array, shape ()
        Global proposal scale :math:`\\lambda`.
    mean : Array, shape (d,)
        Running mean of the flattened chain (warmup).
    cov : Array, shape (d, d)
        Running covariance :math:`\\Sigma`; the proposal covariance is
        :math:`\\lambda^2 \\Sigma`.
    rng_key : Array
        PRNG key.
    """

    i: Array
    z: PyTree
    potential_energy: Array
    log_likelihood: Array
    accept_prob: Array
    accepted: Array
    scale: Array
    mean: Array
    cov: Array
    rng_key: Array


def _check_positive(name, value, upper=None):
    bad = isinstance(value, bool) or not isinstance(value, int | float)
    if bad or not math.isfinite(value) or value <= 0 or (upper is not None and value >= upper):
        expected = f"in (0, {upper})" if upper is not None else "> 0"
        raise ValueError(f"{name}={value!r} is out of range; expected a finite number {expected}")
    return float(value)


class PMMH(MCMCKernel):
    r"""Particle marginal Metropolis-Hastings with an adaptive Gaussian random walk.

    See the module docstring for the algorithm. The model gets its likelihood from
    :func:`probdyn.infer.pf_likelihood` (any other noisy, unbiased estimate added as an
    observed site works too); all its latent sites must be continuous. Each step runs the
    model once (one particle filter per ``pf_likelihood`` site) under a fresh key.

    Parameters
    ----------
    model : callable
        NumPyro model.
    step_size : float
        Initial proposal standard deviation per unconstrained coordinate (default 0.1).
    target_accept_prob : float in (0, 1)
        Acceptance rate that the scale adaptation aims at during warmup (default 0.15).
    adapt : bool
        Adapt the proposal during warmup (default True); False keeps
        :math:`\lambda^2\Sigma = \text{step\_size}^2 I` throughout.
    init_strategy : callable
        Per-site initialisation (see :ref:`init_strategy`), default
        :func:`~numpyro.infer.initialization.init_to_uniform` (independent uniform draws
        in ``(-radius, radius)`` of the unconstrained space per chain); other strategies
        are applied once per :meth:`init` call, so vectorised chains share their start.

    Notes
    -----
    The first step (``i = 0``, a warmup step when ``num_warmup > 0``) does not move: it
    estimates the likelihood of the initial point, which is then accepted, so the
    estimate is computed in the compiled sampling loop rather than in a separate
    program. A start with a non-finite potential (e.g. every particle lost) accepts the
    next proposal with a finite one. Extra fields: ``accept_prob``, ``accepted``,
    ``log_likelihood``, ``potential_energy``, ``scale``. Draws from
    ``mcmc.get_samples()`` are constrained; deterministic sites are recomputed by
    replaying the model under a fixed key (so deterministic sites that depend on a
    particle filter come from a run with key 0, not from the run that was accepted).

    Examples
    --------
    >>> from numpyro.infer import MCMC  # doctest: +SKIP
    >>> mcmc = MCMC(PMMH(model), num_warmup=1000, num_samples=2000)  # doctest: +SKIP
    >>> mcmc.run(jax.random.PRNGKey(0), times, counts)  # doctest: +SKIP
    """

    _fields = ("accept_prob", "accepted", "log_likelihood", "potential_energy", "scale")

    def __init__(
        self,
        model: Callable,
        *,
        step_size: float = 0.1,
        target_accept_prob: float = 0.15,
        adapt: bool = True,
        init_strategy: Callable = init_to_uniform,
    ):
        if not callable(model):
            raise TypeError(f"model={model!r} is not callable; expected a NumPyro model")
        if not callable(init_strategy):
            raise TypeError(f"init_strategy={init_strategy!r} is not callable")
        self._model = model
        self._step_size = _check_positive("step_size", step_size)
        self._target = _check_positive("target_accept_prob", target_accept_prob, upper=1.0)
        self._adapt = bool(adapt)
        self._init_strategy = init_strategy
        self._reset()

    def _reset(self):
        self._potential_fn_gen = None
        self._postprocess_fn = None
        self._sample_fn = None
        self._num_warmup = 0
        self._unravel = None

    @property
    def model(self) -> Callable:
        return self._model

    @property
    def sample_field(self) -> str:
        return "z"

    @property
    def default_fields(self) -> tuple[str, ...]:
        return ("z",) + self._fields

    def get_diagnostics_str(self, state) -> str:
        return f"acc. prob {float(state.accept_prob):.2f}, scale {float(state.scale):.2e}"

    # ----------------------------------------------------------------------------------
    # model -> potential
    # ----------------------------------------------------------------------------------

    def _setup(self, rng_key, model_args, model_kwargs):
        """Trace the model once: latent sites, transforms, potential and postprocess.

        With ``init_to_uniform`` only shapes are needed: the trace is abstract
        (``jax.eval_shape``: no particle filter is compiled or run) unless a support
        depends on traced values; otherwise the init strategy's values come from a concrete
        trace. Returns the unconstrained prototype position.
        """
        seeded = handlers.substitute(
            handlers.seed(self._model, rng_key), substitute_fn=self._init_strategy
        )
        found = {}

        def run():
            tr = handlers.trace(seeded).get_trace(*model_args, **model_kwargs)
            inv_transforms, values, replay = {}, {}, False
            for name, site in tr.items():
                if site["type"] == "deterministic":
                    replay = True
                if site["type"] != "sample" or site["is_observed"]:
                    continue
                if site["fn"].support.is_discrete:
                    raise ValueError(
                        f"PMMH moves continuous latent sites only; site {name!r} is discrete "
                        "(marginalise it, e.g. inside the particle filter)"
                    )
                inv_transforms[name] = biject_to(site["fn"].support)
                values[name] = site["value"]
            if not inv_transforms:
                raise ValueError("the model has no latent sample site for PMMH to move")
            found.update(inv_transforms=inv_transforms, replay=replay)
            return transform_fn(inv_transforms, values, invert=True)

        prototype = None
        if self._uniform_radius() is not None:
            shapes = jax.eval_shape(run)
            leaves = jax.tree.leaves(found["inv_transforms"])
            if not any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
                prototype = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        if prototype is None:
            prototype = run()
        self._potential_fn_gen, self._postprocess_fn = get_potential_fn(
            self._model, found["inv_transforms"], replay_model=found["replay"],
            dynamic_args=True, model_args=model_args, model_kwargs=model_kwargs,
        )  # fmt: skip
        self._unravel = ravel_pytree(prototype)[1]
        return prototype

    def _uniform_radius(self):
        strategy = self._init_strategy
        strategy = strategy if isinstance(strategy, partial) else strategy()
        if strategy.func is not init_to_uniform:
            return None
        return strategy.keywords.get("radius", 2.0)

    def _evaluate(self, z, rng_key, model_args, model_kwargs):
        """(U(z), log-likelihood estimate) from one run of the model under ``rng_key``."""
        potential = self._potential_fn_gen(*model_args, **model_kwargs)
        with handlers.trace() as tr, handlers.seed(rng_seed=rng_key):
            pe = potential(z)
        ll = jnp.zeros((), jnp.result_type(float))
        for site in tr.values():
            if site["type"] == "sample" and isinstance(site["fn"], ParticleLikelihood):
                ll = ll + site["fn"].log_likelihood
        return pe, ll

    def _initial_params(self, rng_key, prototype):
        """Uniform draws in the unconstrained space (init_to_uniform), else the values the
        init strategy gave in the setup trace (shared by vectorised chains)."""
        radius = self._uniform_radius()
        if radius is None:
            if is_prng_key(rng_key):
                return prototype
            return jax.tree.map(lambda x: jnp.broadcast_to(x, (len(rng_key), *x.shape)), prototype)

        def draw(key):
            flat, unravel = ravel_pytree(prototype)
            return unravel(random.uniform(key, flat.shape, flat.dtype, -radius, radius))

        return draw(rng_key) if is_prng_key(rng_key) else jax.vmap(draw)(rng_key)

    # ----------------------------------------------------------------------------------
    # MCMCKernel
    # ----------------------------------------------------------------------------------

    def init(self, rng_key, num_warmup, init_params=None, model_args=(), model_kwargs=None):
        model_kwargs = {} if model_kwargs is None else dict(model_kwargs)
        vectorized = not is_prng_key(rng_key)
        if vectorized:
            rng_key, key_init = jnp.swapaxes(jax.vmap(random.split)(rng_key), 0, 1)
        else:
            rng_key, key_init = random.split(rng_key)
        self._num_warmup = int(num_warmup)
        prototype = self._setup(key_init if not vectorized else key_init[0], model_args,
                                model_kwargs)  # fmt: skip
        if isinstance(init_params, ParamInfo):
            init_params = init_params.z
        if init_params is None:
            init_params = self._initial_params(key_init, prototype)
        if vectorized:
            self._sample_fn = jax.vmap(self._sample_one, in_axes=(0, None, None))
            return jax.vmap(self._init_state)(init_params, rng_key)
        self._sample_fn = self._sample_one
        return self._init_state(init_params, rng_key)

    def _init_state(self, z, rng_key):
        # U = inf: the first step evaluates z itself (a zero move), see _sample_one
        flat = ravel_pytree(z)[0]
        d = flat.shape[0]
        dtype = jnp.result_type(flat.dtype, float)
        scale = jnp.asarray(2.38 / math.sqrt(d), dtype)
        cov = jnp.eye(d, dtype=dtype) * (self._step_size / scale) ** 2
        inf = jnp.full((), jnp.inf, dtype)
        return PMMHState(
            jnp.array(0), z, inf, -inf, jnp.ones((), dtype), jnp.array(True), scale,
            flat.astype(dtype), cov, rng_key,
        )  # fmt: skip

    def sample(self, state, model_args, model_kwargs):
        """One PMMH step from ``state`` (adapting the proposal while ``i < num_warmup``)."""
        if self._sample_fn is None:
            raise RuntimeError("Call `init` before `sample`.")
        return self._sample_fn(state, model_args, {} if model_kwargs is None else model_kwargs)

    def _sample_one(self, state, model_args, model_kwargs):
        rng_key, key_prop, key_eval, key_acc = random.split(state.rng_key, 4)
        flat, unravel = ravel_pytree(state.z)
        d = flat.shape[0]
        dtype = state.cov.dtype
        jitter = 1e-10 + 1e-8 * jnp.trace(state.cov) / d
        chol = jnp.linalg.cholesky(state.cov + jitter * jnp.eye(d, dtype=dtype))
        chol = jnp.where(jnp.all(jnp.isfinite(chol)), chol, jnp.diag(jnp.sqrt(jnp.diag(state.cov))))
        # step 0 proposes the initial point itself: its estimate is computed in the
        # sampling program (no separate compilation) and accepted, since U(init) = inf
        eps = jnp.where(state.i > 0, random.normal(key_prop, (d,), dtype), 0.0)
        proposal = unravel((flat + state.scale * (chol @ eps)).astype(flat.dtype))
        pe_new, ll_new = self._evaluate(proposal, key_eval, model_args, model_kwargs)
        log_ratio = state.potential_energy - pe_new
        ok = jnp.isfinite(pe_new)
        accept_prob = jnp.where(ok, jnp.exp(jnp.minimum(log_ratio, 0.0)), 0.0).astype(dtype)
        accept_prob = jnp.where(ok & ~jnp.isfinite(state.potential_energy), 1.0, accept_prob)
        accepted = random.uniform(key_acc, (), dtype) < accept_prob
        z = jax.tree.map(lambda a, b: jnp.where(accepted, a, b), proposal, state.z)
        pe = jnp.where(accepted, pe_new, state.potential_energy)
        ll = jnp.where(accepted, ll_new, state.log_likelihood)
        scale, mean, cov = state.scale, state.mean, state.cov
        if self._adapt:
            scale, mean, cov = self._adapt_step(state, ravel_pytree(z)[0], accept_prob)
        return PMMHState(state.i + 1, z, pe, ll, accept_prob, accepted, scale, mean, cov, rng_key)

    def _adapt_step(self, state, flat, accept_prob):
        """Andrieu & Thoms (2008, Alg. 4) update, during warmup only."""
        dtype = state.cov.dtype
        gain = (state.i.astype(dtype) + _GAIN_OFFSET) ** (-_GAIN_EXPONENT)
        diff = flat.astype(dtype) - state.mean
        mean = state.mean + gain * diff
        cov = state.cov + gain * (jnp.outer(diff, diff) - state.cov)
        scale = state.scale * jnp.exp(gain * (accept_prob - self._target))
        warm = (state.i > 0) & (state.i < self._num_warmup)
        return (
            jnp.where(warm, scale, state.scale),
            jnp.where(warm, mean, state.mean),
            jnp.where(warm, cov, state.cov),
        )

    def postprocess_fn(self, model_args, model_kwargs):
        if self._postprocess_fn is None:
            return identity
        constrain = self._postprocess_fn(*model_args, **(model_kwargs or {}))

        def postprocess(z):
            with handlers.seed(rng_seed=0):  # replays of the model need a key
                return constrain(z)

        return postprocess

    def refresh(self, state, model_args, model_kwargs):
        """Return ``state`` unchanged (the stored estimate belongs to the current data)."""
        return state

    def wrap_model(self, wrapper: Callable) -> PMMH:
        """A copy of this kernel bound to ``wrapper(self.model)``."""
        kernel = copy.copy(self)
        kernel._model = wrapper(self._model)
        kernel._reset()
        return kernel

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_sample_fn"] = None
        return state
