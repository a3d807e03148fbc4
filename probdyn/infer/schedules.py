"""Step-size schedules for stochastic-gradient MCMC.

A schedule is a function ``schedule(i) -> step_size`` of the number of steps ``i`` already
taken (an integer scalar, possibly traced); it returns a positive scalar. The SG-MCMC
kernels in :mod:`probdyn.infer.sgmcmc` accept a schedule by name (``"constant"``,
``"polynomial"``, ``"cyclical"``) together with ``schedule_kwargs``, or any such callable.

References
----------
M. Welling and Y. W. Teh, "Bayesian learning via stochastic gradient Langevin dynamics",
ICML 2011.

R. Zhang, C. Li, J. Zhang, C. Chen and A. G. Wilson, "Cyclical stochastic gradient MCMC for
Bayesian deep learning", ICLR 2020.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

Schedule = Callable[[ArrayLike], jax.Array]

__all__ = [
    "Schedule",
    "constant_schedule",
    "polynomial_schedule",
    "cyclical_schedule",
    "cycle_length_from",
    "make_schedule",
]


def _check_positive(name: str, value, *, integer: bool = False) -> None:
    kind = "integer" if integer else "number"
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or not math.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a positive finite {kind}, got {value!r}.")


# schedules are small frozen dataclasses rather than closures so that kernels pickle
@dataclass(frozen=True)
class _Constant:
    step_size: float

    def __call__(self, i: ArrayLike) -> jax.Array:
        return jnp.full((), self.step_size, dtype=jnp.result_type(float))


@dataclass(frozen=True)
class _Polynomial:
    step_size: float
    b: float
    gamma: float

    def __call__(self, i: ArrayLike) -> jax.Array:
        t = jnp.asarray(i, dtype=jnp.result_type(float))
        return self.step_size * (1.0 + t / self.b) ** (-self.gamma)


@dataclass(frozen=True)
class _Cyclical:
    step_size: float
    cycle_length: int

    def __call__(self, i: ArrayLike) -> jax.Array:
        r = jnp.mod(jnp.asarray(i), self.cycle_length) / self.cycle_length
        return 0.5 * self.step_size * (jnp.cos(jnp.pi * r) + 1.0)


def constant_schedule(step_size: float) -> Schedule:
    r"""Constant step size, :math:`\epsilon_t = \epsilon_0`.

    Parameters
    ----------
    step_size
        :math:`\epsilon_0 > 0`.

    Returns
    -------
    schedule
        ``schedule(i) -> ()`` array.
    """
    _check_positive("step_size", step_size)
    return _Constant(step_size)


def polynomial_schedule(step_size: float, *, b: float = 1000.0, gamma: float = 0.55) -> Schedule:
    r"""Polynomially decaying step size of Welling & Teh (2011).

    .. math::

        \epsilon_t = a\,(b + t)^{-\gamma}, \qquad a = \epsilon_0\, b^{\gamma},

    i.e. :math:`\epsilon_t = \epsilon_0 (1 + t/b)^{-\gamma}`: the schedule starts at
    ``step_size`` and halves after about :math:`b (2^{1/\gamma} - 1)` steps. For
    :math:`\gamma \in (0.5, 1]` it satisfies the Robbins-Monro conditions
    :math:`\sum_t \epsilon_t = \infty`, :math:`\sum_t \epsilon_t^2 < \infty` under which
    SGLD converges to the posterior without a Metropolis correction.

    Parameters
    ----------
    step_size
        Initial step size :math:`\epsilon_0 > 0`.
    b
        Offset :math:`b > 0` (in steps): how long the step stays near ``step_size``.
    gamma
        Decay exponent, :math:`0 < \gamma \le 1` (Welling & Teh use :math:`(0.5, 1]`).

    Returns
    -------
    schedule
        ``schedule(i) -> ()`` array.
    """
    _check_positive("step_size", step_size)
    _check_positive("b", b)
    if isinstance(gamma, bool) or not isinstance(gamma, int | float) or not 0 < gamma <= 1:
        raise ValueError(f"`gamma` must be a number in (0, 1], got {gamma!r}.")
    return _Polynomial(step_size, b, gamma)


def cycle_length_from(
    num_steps: int | None, num_cycles: int | None, cycle_length: int | None
) -> int:
    r"""Resolve the length of one cycle from either ``cycle_length`` or ``num_steps/num_cycles``.

    Parameters
    ----------
    num_steps
        Total number of steps of the run (``num_warmup + num_samples`` of :class:`MCMC`).
    num_cycles
        Number of cycles :math:`M` over ``num_steps``.
    cycle_length
        Steps per cycle; if given, ``num_steps`` and ``num_cycles`` must be ``None``.

    Returns
    -------
    int
        :math:`\lceil K / M \rceil` or ``cycle_length``.
    """
    if cycle_length is not None:
        _check_positive("cycle_length", cycle_length, integer=True)
        if num_steps is not None:
            raise ValueError("Give either `cycle_length` or `num_steps` (with `num_cycles`).")
        return cycle_length
    if num_steps is None:
        raise ValueError(
            "A cyclical schedule needs `num_steps` (num_warmup + num_samples) together with "
            "`num_cycles`, or `cycle_length`; got neither `num_steps` nor `cycle_length`."
        )
    _check_positive("num_steps", num_steps, integer=True)
    _check_positive("num_cycles", num_cycles, integer=True)
    if num_cycles > num_steps:
        raise ValueError(f"`num_cycles` must be at most `num_steps`={num_steps}, got {num_cycles}.")
    return -(-num_steps // num_cycles)


def cyclical_schedule(step_size: float, *, cycle_length: int) -> Schedule:
    r"""Cosine cyclical step size of Zhang et al. (2020).

    With cycle length :math:`L = \lceil K/M \rceil` (``K`` steps, ``M`` cycles),

    .. math::

        \epsilon_t = \frac{\epsilon_0}{2}
            \left[\cos\left(\pi\, \frac{t \bmod L}{L}\right) + 1\right].

    Each cycle starts at ``step_size`` (large steps explore a new region) and decays to
    nearly zero (small steps sample it accurately).

    Parameters
    ----------
    step_size
        Largest step size :math:`\epsilon_0 > 0`.
    cycle_length
        Steps per cycle :math:`L \ge 1`.

    Returns
    -------
    schedule
        ``schedule(i) -> ()`` array.
    """
    _check_positive("step_size", step_size)
    _check_positive("cycle_length", cycle_length, integer=True)
    return _Cyclical(step_size, cycle_length)


_NAMES = ("constant", "polynomial", "cyclical")


def make_schedule(
    schedule: str | Schedule, step_size: float, schedule_kwargs: dict | None = None
) -> Schedule:
    """Build a schedule from a name, or pass a callable through.

    Parameters
    ----------
    schedule
        ``"constant"``, ``"polynomial"`` (keywords ``b``, ``gamma``, see
        :func:`polynomial_schedule`), ``"cyclical"`` (keywords ``num_steps`` and
        ``num_cycles``, or ``cycle_length``, see :func:`cyclical_schedule`), or a callable
        ``i -> step_size`` (then ``step_size`` is only validated).
    step_size
        Base step size, positive.
    schedule_kwargs
        Keyword arguments of the named schedule.

    Returns
    -------
    schedule
        ``schedule(i) -> ()`` array.
    """
    _check_positive("step_size", step_size)
    kwargs = dict(schedule_kwargs or {})
    if callable(schedule):
        if kwargs:
            raise ValueError("`schedule_kwargs` must be empty when `schedule` is a callable.")
        return schedule
    if schedule not in _NAMES:
        raise ValueError(
            f"`schedule` must be one of {_NAMES} or a callable `i -> step_size`, got {schedule!r}."
        )
    try:
        if schedule == "constant":
            return constant_schedule(step_size, **kwargs)
        if schedule == "polynomial":
            return polynomial_schedule(step_size, **kwargs)
        length = cycle_length_from(
            kwargs.pop("num_steps", None),
            kwargs.pop("num_cycles", None),
            kwargs.pop("cycle_length", None),
        )
        return cyclical_schedule(step_size, cycle_length=length, **kwargs)
    except TypeError as err:
        raise ValueError(f"`schedule_kwargs` do not fit schedule {schedule!r}: {err}") from err
