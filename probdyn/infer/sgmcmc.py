r"""Stochastic-gradient MCMC as NumPyro :class:`~numpyro.infer.mcmc.MCMCKernel` s.

Four kernels, each usable wherever NumPyro accepts a kernel (``MCMC`` with any
``chain_method``, ``thinning``, progress bar, ``print_summary``, ``arviz.from_numpyro``,
``Predictive`` on the draws):

* :class:`SGLD`  -- stochastic gradient Langevin dynamics (Welling & Teh, 2011);
* :class:`SGHMC` -- stochastic gradient Hamiltonian Monte Carlo (Chen, Fox & Guestrin, 2014);
* :class:`SGNHT` -- stochastic gradient Nosé-Hoover thermostat (Ding et al., 2014);
* :class:`CSGLD` -- cyclical SGLD (Zhang et al., 2020).

Minibatches come from the model itself. If the model contains
``numpyro.plate("data", N, subsample_size=B)``, every step draws a fresh subsample of ``B``
indices, by default i.i.d. uniform (with replacement, ``subsample="iid"``: O(B) per step);
``subsample="without_replacement"`` keeps NumPyro's partial Fisher-Yates shuffle, which on
CPU is a ``B``-step ``lax.scan`` over ``arange(N)`` and costs ~0.5 ms per step at N=10,000,
B=100. The potential is evaluated under
:class:`numpyro.handlers.seed` with a per-step key, and the plate scales the
log-likelihood by :math:`N/B`, so that for fixed parameters

.. math::

    \mathbb{E}\left[\nabla \tilde U(\theta)\right] = \nabla U(\theta), \qquad
    \tilde U(\theta) = -\log p(\theta) - \frac{N}{B} \sum_{i \in S} \log p(y_i \mid \theta).

Without a subsampled plate the gradients are full-batch. The chains move in the
unconstrained space of :func:`numpyro.infer.util.initialize_model` (as HMC does) and the
draws are mapped back to the constrained space by :meth:`postprocess_fn`. There is no
Metropolis correction: with a fixed step the draws carry a discretisation bias of order
``step_size``, plus the extra variance that gradient noise injects (for SGLD on a Gaussian
with precision :math:`P` and gradient-noise variance :math:`V` the stationary variance is
:math:`(2 + hV) / (P(2 - hP))` instead of :math:`1/P`). Warmup draws are discarded
burn-in; nothing is adapted.

The step size follows a schedule (:mod:`probdyn.infer.schedules`): ``"constant"``,
``"polynomial"``, ``"cyclical"`` or a callable ``i -> step_size`` of the number of steps
``i`` taken since :meth:`init` (warmup included).

Extra fields (``mcmc.get_extra_fields()``; ``sample_stats`` in ArviZ), collected by default,
one scalar per draw: ``step_size`` for all kernels; ``kinetic_energy``
(:math:`\tfrac12\|r\|^2`) for SGHMC and SGNHT; ``thermostat`` (:math:`\xi`) for SGNHT;
``cycle`` (the cycle a draw belongs to) for CSGLD. ``i`` (steps taken) and ``momentum`` can
be requested through ``extra_fields``. For a subsampled model, :func:`full_data_model`
gives the full-data model for log-likelihoods and posterior predictive draws.

References
----------
M. Welling and Y. W. Teh, "Bayesian learning via stochastic gradient Langevin dynamics",
ICML 2011.

T. Chen, E. B. Fox and C. Guestrin, "Stochastic gradient Hamiltonian Monte Carlo",
ICML 2014.

N. Ding, Y. Fang, R. Babbush, C. Chen, R. D. Skeel and H. Neven, "Bayesian sampling using
stochastic gradient thermostats", NeurIPS 2014.

R. Zhang, C. Li, J. Zhang, C. Chen and A. G. Wilson, "Cyclical stochastic gradient MCMC for
Bayesian deep learning", ICLR 2020.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
from blackjax.sgmcmc import diffusions
from blackjax.util import generate_gaussian_noise
from jax import lax, random
from numpyro.handlers import seed
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.mcmc import MCMCKernel
from numpyro.infer.util import ParamInfo, initialize_model
from numpyro.util import identity, is_prng_key

from probdyn.infer.data_parallel import sharded_grad_estimator, sharded_plates
from probdyn.infer.minibatch import full_data_model, full_plates, iid_indices, iid_plates
from probdyn.infer.schedules import Schedule, cycle_length_from, cyclical_schedule, make_schedule

Array = jax.Array
PyTree = Any
# the minibatch handlers live in probdyn.infer.minibatch; the old private names stay
_iid_indices, _iid_plates, _full_plates = iid_indices, iid_plates, full_plates

__all__ = [
    "SGLD",
    "SGHMC",
    "SGNHT",
    "CSGLD",
    "SGLDState",
    "SGHMCState",
    "SGNHTState",
    "CSGLDState",
    "KERNELS",
    "full_data_model",
]


class SGLDState(NamedTuple):
    """State of :class:`SGLD`: steps taken since :meth:`~SGLD.init` ``i`` (``()`` int),
    unconstrained position ``z`` (dict of site arrays), ``step_size`` of the step that
    produced ``z`` (``()``), ``rng_key``. Leaves gain a leading ``num_chains`` axis when
    chains are vectorised."""

    i: Array
    z: PyTree
    step_size: Array
    rng_key: Array


class SGHMCState(NamedTuple):
    r"""State of :class:`SGHMC`: as :class:`SGLDState` plus the momentum ``r`` (same tree as
    ``z``) and its ``kinetic_energy`` :math:`\tfrac12\|r\|^2`, ``()``."""

    i: Array
    z: PyTree
    momentum: PyTree
    kinetic_energy: Array
    step_size: Array
    rng_key: Array


class SGNHTState(NamedTuple):
    r"""State of :class:`SGNHT`: as :class:`SGHMCState` plus the scalar ``thermostat``
    :math:`\xi`, ``()``."""

    i: Array
    z: PyTree
    momentum: PyTree
    thermostat: Array
    kinetic_energy: Array
    step_size: Array
    rng_key: Array


class CSGLDState(NamedTuple):
    """State of :class:`CSGLD`: as :class:`SGLDState` (``i`` counts gradient steps,
    exploration steps included) plus ``cycle``, the index of the current cycle, ``()`` int."""

    i: Array
    z: PyTree
    step_size: Array
    cycle: Array
    rng_key: Array


def _kinetic_energy(momentum: PyTree) -> Array:
    return 0.5 * sum(jnp.sum(r**2) for r in jax.tree.leaves(momentum))


def _check_number(name: str, value, *, lower: float = 0.0, strict: bool = True) -> None:
    bad = isinstance(value, bool) or not isinstance(value, int | float)
    if bad or not math.isfinite(value) or value < lower or (strict and value == lower):
        relation = ">" if strict else ">="
        raise ValueError(f"`{name}` must be a finite number {relation} {lower}, got {value!r}.")


class _SGMCMC(MCMCKernel):
    """Shared machinery: model -> minibatch potential, chains, postprocessing."""

    _fields: tuple[str, ...] = ("step_size",)

    def __init__(
        self,
        model: Callable | None = None,
        *,
        potential_fn: Callable | None = None,
        step_size: float = 1e-3,
        schedule: str | Schedule = "constant",
        schedule_kwargs: dict | None = None,
        init_strategy: Callable = init_to_uniform,
        subsample: str = "iid",
        data_parallel: tuple[int | str, ...] | None = None,
    ):
        if data_parallel is not None:
            data_parallel = tuple(data_parallel)
            if not data_parallel or not all(
                isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool))
                for d in data_parallel
            ):
                raise TypeError(
                    f"`data_parallel`={data_parallel!r}; expected positions (int) or names "
                    "(str) of the model arguments holding the subsampled data"
                )
            if subsample != "iid" or model is None:
                raise ValueError("`data_parallel` needs a `model` and `subsample`='iid'.")
        self._data_parallel = data_parallel
        if subsample not in ("iid", "without_replacement"):
            raise ValueError(
                f"`subsample` must be 'iid' or 'without_replacement', got {subsample!r}."
            )
        if (model is None) == (potential_fn is None):
            raise ValueError("Give exactly one of `model` or `potential_fn`.")
        if not callable(init_strategy):
            raise ValueError(f"`init_strategy` must be callable, got {init_strategy!r}.")
        self._model = model
        self._potential_fn = potential_fn
        self._step_size = step_size
        self._schedule = make_schedule(schedule, step_size, schedule_kwargs)
        self._init_strategy = init_strategy
        self._subsample = subsample
        self._reset()

    def _reset(self) -> None:
        self._potential_fn_gen = None
        self._postprocess_fn = None
        self._sample_fn = None

    @property
    def model(self) -> Callable | None:
        return self._model

    @property
    def sample_field(self) -> str:
        return "z"

    @property
    def default_fields(self) -> tuple[str, ...]:
        return ("z",) + self._fields

    def get_diagnostics_str(self, state) -> str:
        return f"step size {float(state.step_size):.2e}"

    def get_potential_fn(self, model_args: tuple = (), model_kwargs: dict | None = None):
        r"""Minibatch potential :math:`\tilde U(z; \text{key})` in the unconstrained space.

        Parameters
        ----------
        model_args, model_kwargs
            Arguments of the model (ignored with ``potential_fn``).

        Returns
        -------
        potential
            ``potential(z, rng_key) -> ()``; ``rng_key`` seeds the subsample of every
            subsampled plate, so equal keys give equal minibatches. Requires :meth:`init`
            when the kernel was built from a model.
        """
        if self._model is None:
            base = self._potential_fn
        elif self._potential_fn_gen is None:
            raise RuntimeError("Call `init` (or run MCMC) before `get_potential_fn`.")
        else:
            base = self._potential_fn_gen(*model_args, **(model_kwargs or {}))

        def potential(z: PyTree, rng_key: Array) -> Array:
            with seed(rng_seed=rng_key):
                return base(z)

        return potential

    def _grad_estimator(self, model_args, model_kwargs) -> Callable:
        """``(z, rng_key) -> grad log density``: BlackJAX's gradient-estimator contract, the
        key playing the role of the minibatch."""
        if self._data_parallel is not None:
            return sharded_grad_estimator(
                self._potential_fn_gen, model_args, model_kwargs, self._data_parallel
            )
        grad_potential = jax.grad(self.get_potential_fn(model_args, model_kwargs))
        return lambda z, rng_key: jax.tree.map(jnp.negative, grad_potential(z, rng_key))

    def init(self, rng_key, num_warmup, init_params=None, model_args=(), model_kwargs=None):
        model_kwargs = {} if model_kwargs is None else model_kwargs
        vectorized = not is_prng_key(rng_key)
        if vectorized:
            rng_key, key_init = jnp.swapaxes(jax.vmap(random.split)(rng_key), 0, 1)
        else:
            rng_key, key_init = random.split(rng_key)
        if self._model is not None:
            model = iid_plates(self._model) if self._subsample == "iid" else self._model
            if self._data_parallel is not None:
                model = sharded_plates(self._model, num_shards=jax.device_count())
            info, self._potential_fn_gen, self._postprocess_fn, _ = initialize_model(
                key_init,
                model,
                dynamic_args=True,
                init_strategy=self._init_strategy,
                model_args=model_args,
                model_kwargs=model_kwargs,
            )
            if init_params is None:
                init_params = info.z
        if init_params is None:
            raise ValueError("`init_params` must be given when the kernel uses `potential_fn`.")
        if isinstance(init_params, ParamInfo):
            init_params = init_params.z
        if vectorized:
            self._sample_fn = jax.vmap(self._sample_one, in_axes=(0, None, None))
            return jax.vmap(self._init_state)(init_params, rng_key)
        self._sample_fn = self._sample_one
        return self._init_state(init_params, rng_key)

    def sample(self, state, model_args, model_kwargs):
        """One step (one draw) from ``state``; see the class docstring for the update."""
        if self._sample_fn is None:
            raise RuntimeError("Call `init` before `sample`.")
        return self._sample_fn(state, model_args, {} if model_kwargs is None else model_kwargs)

    def _sample_one(self, state, model_args, model_kwargs):
        rng_key, key_step = random.split(state.rng_key)
        new_state = self._step(key_step, state, self._grad_estimator(model_args, model_kwargs))
        return new_state._replace(rng_key=rng_key)

    def postprocess_fn(self, model_args, model_kwargs):
        if self._postprocess_fn is None:
            return identity
        constrain = self._postprocess_fn(*model_args, **(model_kwargs or {}))

        def postprocess(z):
            # replaying the model for deterministic sites needs subsample indices: a fixed
            # key makes deterministic sites inside a subsampled plate use one fixed subsample
            with seed(rng_seed=0):
                return constrain(z)

        return postprocess

    def refresh(self, state, model_args, model_kwargs):
        """Return ``state``: nothing in it depends on the model arguments."""
        return state

    def wrap_model(self, wrapper: Callable) -> _SGMCMC:
        """A copy of this kernel bound to ``wrapper(self.model)``."""
        if self._model is None:
            raise ValueError("`wrap_model` needs a kernel built from `model`.")
        kernel = copy.copy(self)
        kernel._model = wrapper(self._model)
        kernel._reset()
        return kernel

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_sample_fn"] = None
        return state

    # subclasses define _init_state(z, rng_key) -> State and
    # _step(rng_key, state, grad_fn) -> State (the key for the chain is threaded here)


class SGLD(_SGMCMC):
    r"""Stochastic gradient Langevin dynamics (Welling & Teh, 2011), one BlackJAX
    ``blackjax.sgld`` step per draw.

    .. math::

        \theta_{t+1} = \theta_t + \epsilon_t \nabla \log \tilde p(\theta_t)
            + \sqrt{2 \epsilon_t}\, \eta_t, \qquad \eta_t \sim \mathcal N(0, I),

    with :math:`\nabla \log \tilde p` the minibatch estimate (see the module docstring) and
    :math:`\epsilon_t` = ``schedule(t)``. (Welling & Teh write the step as
    :math:`\tfrac{\epsilon}{2}\nabla\log p + \mathcal N(0, \epsilon)`: their
    :math:`\epsilon` is twice ours.) On a Gaussian target of precision :math:`P` a constant
    step is stable for :math:`\epsilon P < 2`.

    Parameters
    ----------
    model
        NumPyro model; its subsampled plates define the minibatches.
    potential_fn
        Alternative to ``model``: ``potential_fn(z) -> ()``, the negative log density of
        a pytree ``z``; needs ``init_params`` in ``MCMC.run``.
    step_size
        Base step size :math:`\epsilon_0 > 0` (the largest one for the named schedules).
    schedule
        ``"constant"``, ``"polynomial"`` (:math:`\epsilon_0 (1 + t/b)^{-\gamma}`),
        ``"cyclical"`` (cosine cycles), or a callable ``i -> step_size``; see
        :mod:`probdyn.infer.schedules`.
    schedule_kwargs
        Parameters of the named schedule: ``{"b": 1000.0, "gamma": 0.55}`` for
        ``"polynomial"``; ``{"num_steps": num_warmup + num_samples, "num_cycles": M}`` or
        ``{"cycle_length": L}`` for ``"cyclical"``.
    init_strategy
        Per-site initialisation (see :ref:`init_strategy`), default
        :func:`~numpyro.infer.initialization.init_to_uniform`.
    subsample
        ``"iid"`` (default): minibatch indices i.i.d. uniform over ``range(N)``;
        ``"without_replacement"``: NumPyro's own subsample (slow on CPU for large ``N``).
    data_parallel
        Positions (int) or names (str) of the model arguments that hold the subsampled
        plate's data: they are split over every device along their leading axis, each
        device takes ``B / D`` of the minibatch from its shard and the gradients are
        summed with a ``psum`` (:mod:`probdyn.infer.data_parallel`; the plate's size must
        be read from the data's shape, ``subsample_size`` a multiple of the device count;
        chains then run ``"vectorized"``).

    Notes
    -----
    Extra field: ``step_size``. Draws have shape ``(num_chains * num_samples // thinning,)
    + site_shape`` from ``mcmc.get_samples()``.
    """

    def _init_state(self, z, rng_key):
        return SGLDState(jnp.array(0), z, self._schedule(0), rng_key)

    def _step(self, rng_key, state, grad_fn):
        key_batch, key_noise = random.split(rng_key)
        step_size = self._schedule(state.i)
        z = blackjax.sgld(grad_fn).step(key_noise, state.z, key_batch, step_size)
        return SGLDState(state.i + 1, z, step_size, state.rng_key)


def _underdamped_step(integrator, rng_key, z, momentum, grad_fn, step_size):
    """Semi-implicit (symplectic) Euler step, position first, through a BlackJAX integrator.

    BlackJAX's ``diffusions.sghmc``/``sgnht`` move ``z`` with the old momentum and the
    momentum with the gradient it is given; giving it the gradient at the *moved* position
    turns its explicit Euler step (stable only for ``step_size * P < friction``) into the
    symplectic Euler step of Chen et al. (2014, Alg. 2), stable for
    ``step_size**2 * P < 4 - 2 * friction * step_size``.
    """
    key_batch, key_noise = random.split(rng_key)
    z_moved = jax.tree.map(lambda x, r: x + step_size * r, z, momentum)
    return integrator(key_noise, z, momentum, grad_fn(z_moved, key_batch), step_size)


class SGHMC(_SGMCMC):
    r"""Stochastic gradient Hamiltonian Monte Carlo with friction (Chen, Fox & Guestrin, 2014).

    Unit mass, persistent momentum :math:`r` (drawn :math:`\mathcal N(0, I)` at
    :meth:`init`), one step per draw (Chen et al., Algorithm 2, without momentum refresh):

    .. math::

        \theta_{t+1} &= \theta_t + \epsilon_t r_t, \\
        r_{t+1} &= (1 - \alpha \epsilon_t) r_t
            + \epsilon_t \nabla \log \tilde p(\theta_{t+1})
            + \sqrt{\epsilon_t (2\alpha - \epsilon_t \beta)}\, \eta_t,

    where :math:`\alpha` is the friction (per unit time; the momentum loses a fraction
    :math:`\alpha\epsilon` per step) and :math:`\beta \ge 0` an estimate of the
    gradient-noise variance :math:`V` (per coordinate), removed from the injected noise as in
    Chen et al.'s :math:`\hat B = \tfrac12 \epsilon V`. The momentum update is BlackJAX's
    ``diffusions.sghmc``, fed with the gradient at the new position (symplectic Euler;
    stable for :math:`\epsilon^2 P < 4 - 2\alpha\epsilon` on a Gaussian of precision
    :math:`P`).

    Parameters
    ----------
    model, potential_fn, step_size, schedule, schedule_kwargs, init_strategy
        As for :class:`SGLD`; ``step_size`` is the time step :math:`\epsilon`.
    alpha
        Friction :math:`\alpha > 0`, with :math:`\alpha\epsilon_0 < 1`.
    beta
        Gradient-noise estimate :math:`\beta \ge 0`, with :math:`\epsilon_0\beta \le 2\alpha`.

    Notes
    -----
    Extra fields: ``step_size``, ``kinetic_energy`` (:math:`\tfrac12\|r\|^2`, whose
    stationary mean is ``d/2`` for ``d`` unconstrained coordinates when the
    temperature is right: a larger value signals gradient noise not absorbed by friction).
    """

    _fields = ("step_size", "kinetic_energy")

    def __init__(self, model=None, *, alpha: float = 10.0, beta: float = 0.0, **kwargs):
        super().__init__(model, **kwargs)
        _check_number("alpha", alpha)
        _check_number("beta", beta, strict=False)
        if alpha * self._step_size >= 1:
            raise ValueError(f"`alpha` * `step_size` must be < 1, got {alpha} * {self._step_size}.")
        if beta * self._step_size > 2 * alpha:
            raise ValueError(f"`beta` must be <= 2 * alpha / step_size, got {beta}.")
        self._alpha, self._beta = alpha, beta

    def _init_state(self, z, rng_key):
        rng_key, key_momentum = random.split(rng_key)
        r = generate_gaussian_noise(key_momentum, z)
        return SGHMCState(jnp.array(0), z, r, _kinetic_energy(r), self._schedule(0), rng_key)

    def _step(self, rng_key, state, grad_fn):
        step_size = self._schedule(state.i)
        integrator = diffusions.sghmc(self._alpha, self._beta)
        z, r = _underdamped_step(integrator, rng_key, state.z, state.momentum, grad_fn, step_size)
        return SGHMCState(state.i + 1, z, r, _kinetic_energy(r), step_size, state.rng_key)


class SGNHT(SGHMC):
    r"""Stochastic gradient Nosé-Hoover thermostat (Ding et al., 2014).

    SGHMC whose friction is a dynamic scalar thermostat :math:`\xi` that drives the mean
    kinetic energy per coordinate to the temperature, absorbing (scalar) gradient noise of
    unknown size. With :math:`d` unconstrained coordinates:

    .. math::

        \theta_{t+1} &= \theta_t + \epsilon_t r_t, \\
        r_{t+1} &= (1 - \xi_t \epsilon_t) r_t
            + \epsilon_t \nabla \log \tilde p(\theta_{t+1})
            + \sqrt{\epsilon_t (2A - \epsilon_t \beta)}\, \eta_t, \\
        \xi_{t+1} &= \xi_t + \epsilon_t \left(\tfrac1d \|r_{t+1}\|^2 - 1\right),

    :math:`\xi_0 = A` = ``alpha``. This is BlackJAX's ``diffusions.sgnht`` fed with the
    gradient at the new position, i.e. Ding et al.'s Algorithm 1 with the position update
    moved first (the same symplectic Euler splitting).

    Parameters
    ----------
    model, potential_fn, step_size, schedule, schedule_kwargs, init_strategy
        As for :class:`SGLD`; ``step_size`` is the time step :math:`\epsilon`.
    alpha
        Diffusion :math:`A > 0` of the injected noise, also the initial thermostat value.
    beta
        Gradient-noise estimate :math:`\beta \ge 0`, with :math:`\epsilon_0\beta \le 2A`.

    Notes
    -----
    Extra fields: ``step_size``, ``kinetic_energy``, ``thermostat``. At stationarity
    :math:`\mathbb E\,\|r\|^2/d = 1` exactly (the thermostat's mean increment vanishes),
    and the thermostat settles near :math:`A + \epsilon V / 2` for scalar gradient-noise
    variance :math:`V`.
    """

    _fields = ("step_size", "kinetic_energy", "thermostat")

    def get_diagnostics_str(self, state) -> str:
        return f"step size {float(state.step_size):.2e}, thermostat {float(state.thermostat):.3g}"

    def _init_state(self, z, rng_key):
        rng_key, key_momentum = random.split(rng_key)
        r = generate_gaussian_noise(key_momentum, z)
        xi = jnp.full((), self._alpha, dtype=jnp.result_type(float))
        return SGNHTState(jnp.array(0), z, r, xi, _kinetic_energy(r), self._schedule(0), rng_key)

    def _step(self, rng_key, state, grad_fn):
        step_size = self._schedule(state.i)

        def integrator(key, z, r, grad, h):
            return diffusions.sgnht(self._alpha, self._beta)(key, z, r, state.thermostat, grad, h)

        z, r, xi = _underdamped_step(
            integrator, rng_key, state.z, state.momentum, grad_fn, step_size
        )
        return SGNHTState(state.i + 1, z, r, xi, _kinetic_energy(r), step_size, state.rng_key)


class CSGLD(_SGMCMC):
    r"""Cyclical SGLD (Zhang et al., 2020): SGLD on a cosine cyclical step size, each cycle
    opening with a noise-free exploration stage.

    With cycle length :math:`L` (in gradient steps) and exploration ratio :math:`\beta`,
    step :math:`t` has phase :math:`r_t = (t \bmod L)/L` and step size

    .. math::

        \epsilon_t = \frac{\epsilon_0}{2}\left[\cos(\pi r_t) + 1\right];

    while :math:`r_t < \beta` the step is a gradient-ascent step
    :math:`\theta \leftarrow \theta + \epsilon_t \nabla\log\tilde p(\theta)`
    (exploration: large steps reach a new mode), afterwards an :class:`SGLD` step
    (sampling). Both are ``blackjax.sgld`` steps, at temperature 0 and 1. Only sampling
    steps are draws: the exploration stage of a cycle runs (``lax.while_loop``) inside the
    first draw of that cycle, so every draw in ``mcmc.get_samples()`` is a sampling-stage
    draw and each cycle contributes :math:`L - \lceil \beta L \rceil` draws.

    Parameters
    ----------
    model, potential_fn, step_size, init_strategy
        As for :class:`SGLD`; ``step_size`` is the largest step :math:`\epsilon_0`.
    num_steps
        Number of draws of the run (``num_warmup + num_samples``); with ``num_cycles``
        it sets :math:`L = \lceil \lceil K/M \rceil / (1 - \beta) \rceil`, so that about
        ``num_cycles`` cycles fit in the run.
    num_cycles
        Number of cycles :math:`M \ge 1`.
    cycle_length
        Alternatively, :math:`L` directly, in gradient steps (``num_steps`` must be None).
    exploration_ratio
        :math:`\beta \in [0, 1)`, the fraction of each cycle spent exploring;
        ``0`` gives SGLD with a cyclical step size.
    schedule
        Only ``"cyclical"``.
    schedule_kwargs
        Optional ``num_steps``/``num_cycles``/``cycle_length``, overriding the arguments.

    Notes
    -----
    Extra fields: ``step_size``, ``cycle``.
    """

    _fields = ("step_size", "cycle")

    def __init__(
        self,
        model=None,
        *,
        num_steps: int | None = None,
        num_cycles: int = 4,
        cycle_length: int | None = None,
        exploration_ratio: float = 0.25,
        schedule="cyclical",
        schedule_kwargs: dict | None = None,
        **kwargs,
    ):
        if schedule != "cyclical":
            raise ValueError(f"`schedule` of CSGLD must be 'cyclical', got {schedule!r}.")
        _check_number("exploration_ratio", exploration_ratio, strict=False)
        if exploration_ratio >= 1:
            raise ValueError(f"`exploration_ratio` must be in [0, 1), got {exploration_ratio}.")
        opts = {"num_steps": num_steps, "num_cycles": num_cycles, "cycle_length": cycle_length}
        unknown = set(schedule_kwargs or {}) - set(opts)
        if unknown:
            raise ValueError(f"`schedule_kwargs` of CSGLD accepts {sorted(opts)}, got {unknown}.")
        opts.update(schedule_kwargs or {})
        super().__init__(model, schedule="constant", **kwargs)
        if opts["cycle_length"] is None and opts["num_steps"] is not None:
            draws = cycle_length_from(opts["num_steps"], opts["num_cycles"], None)
            opts["cycle_length"] = math.ceil(draws / (1 - exploration_ratio))
            opts["num_steps"] = None
        self._cycle_length = cycle_length_from(
            opts["num_steps"], opts["num_cycles"], opts["cycle_length"]
        )
        self._num_explore = math.ceil(exploration_ratio * self._cycle_length)
        if self._num_explore >= self._cycle_length:
            raise ValueError(
                f"`exploration_ratio`={exploration_ratio} leaves no sampling step in a cycle "
                f"of {self._cycle_length} steps."
            )
        self._schedule = cyclical_schedule(self._step_size, cycle_length=self._cycle_length)

    def get_diagnostics_str(self, state) -> str:
        return f"step size {float(state.step_size):.2e}, cycle {int(state.cycle)}"

    def _init_state(self, z, rng_key):
        return CSGLDState(jnp.array(0), z, self._schedule(0), jnp.array(0), rng_key)

    def _step(self, rng_key, state, grad_fn):
        sgld = blackjax.sgld(grad_fn)

        def exploring(carry):
            return jnp.mod(carry[0], self._cycle_length) < self._num_explore

        def explore(carry):
            i, z, key = carry
            key, key_batch, key_noise = random.split(key, 3)
            z = sgld.step(key_noise, z, key_batch, self._schedule(i), temperature=0.0)
            return i + 1, z, key

        i, z, rng_key = lax.while_loop(exploring, explore, (state.i, state.z, rng_key))
        key_batch, key_noise = random.split(rng_key)
        step_size = self._schedule(i)
        z = sgld.step(key_noise, z, key_batch, step_size)
        return CSGLDState(i + 1, z, step_size, i // self._cycle_length, state.rng_key)


KERNELS: dict[str, type[_SGMCMC]] = {"sgld": SGLD, "sghmc": SGHMC, "sgnht": SGNHT, "csgld": CSGLD}
"""Kernel classes by method name, for ``probdyn.fit(model, method=...)``."""
