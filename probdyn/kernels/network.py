"""The structure of a reaction network: one frozen, hashable :class:`Network`.

A network of R reactions over S species is given by its ``stoichiometry`` (R, S) (the net
change of each species when reaction j fires) and either mass-action reactant orders
``reactants`` (R, S) or a user ``propensity_fn(x, rates) -> (R,)``. The structure is
static (concrete integers, a hashable callable), so a :class:`Network` can be a static
argument of :func:`jax.jit`; the rate constants ``rates`` (R,) are the (traced,
differentiable) parameters and are passed separately. Every reaction-network kernel
(:mod:`probdyn.kernels.ssa`, :mod:`probdyn.kernels.cme`, :mod:`probdyn.kernels.cle`) and
the particle filter's ``reaction_transition`` take a :class:`Network`; they still accept
the arrays (``stoichiometry`` with ``reactants=`` or ``propensity_fn=``) and build one
with :func:`as_network`.

References
----------
D. T. Gillespie, "Exact stochastic simulation of coupled chemical reactions",
J. Phys. Chem. 81(25), 2340-2361, 1977.

D. J. Wilkinson, *Stochastic Modelling for Systems Biology*, 3rd ed., CRC Press, 2018
(mass-action convention, ch. 6).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from probdyn.kernels._checks import check_times, concrete

Array = jax.Array
PropensityFn = Callable[[Array, Array], Array]

__all__ = [
    "Network",
    "PropensityFn",
    "as_network",
    "check_counts",
    "check_obs_times",
    "check_simulation_inputs",
    "mass_action_propensities",
]

_MAX_COEFF = 2**20


def _int_matrix(name, value, num_reactions=None):
    arr = concrete(value)
    if arr is None:
        raise TypeError(f"{name} is network structure and must be concrete; got a traced value")
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (num_reactions, S); got shape {arr.shape}")
    if num_reactions is not None and arr.shape[0] != num_reactions:
        raise ValueError(
            f"{name} must have {num_reactions} rows (one per reaction); got shape {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise TypeError(f"{name} must hold integers; got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
        raise ValueError(f"{name} must hold integers; got {arr.tolist()}")
    if np.any(np.abs(arr) > _MAX_COEFF):
        raise ValueError(
            f"{name} entries must be at most {_MAX_COEFF} in absolute value (counts are int32); "
            f"got {arr.tolist()}"
        )
    return arr.astype(np.int64)


def _reactant_orders(reactants, num_reactions=None):
    r = _int_matrix("reactants", reactants, num_reactions)
    if np.any(r < 0):
        raise ValueError(f"reactants must be non-negative orders; got {r.tolist()}")
    return r


@dataclasses.dataclass(frozen=True, eq=True)
class Network:
    """Static structure of a reaction network: R reactions over S species.

    Built from arrays (validated and stored as nested tuples, so the object is
    immutable and hashable: a static :func:`jax.jit` argument).

    Parameters
    ----------
    stoichiometry : ArrayLike of int, shape (R, S)
        Concrete net change :math:`\\nu_j` of each species when reaction j fires.
    reactants : ArrayLike of int, shape (R, S), optional
        Concrete mass-action reactant orders (see :func:`mass_action_propensities`).
    propensity_fn : callable, optional
        ``propensity_fn(x, rates) -> (R,)`` (``x`` float counts (S,), output non-negative
        and finite); give exactly one of ``reactants`` and ``propensity_fn``.
    species : sequence of str, optional
        S distinct species names (default ``X0, X1, ...``).

    Examples
    --------
    >>> net = Network([[1, 0], [-1, 1], [0, -1]], reactants=[[1, 0], [1, 1], [0, 1]])
    >>> net.num_reactions, net.num_species
    (3, 2)
    """

    stoichiometry: tuple[tuple[int, ...], ...]
    reactants: tuple[tuple[int, ...], ...] | None = None
    propensity_fn: PropensityFn | None = None
    species: tuple[str, ...] | None = None

    def __post_init__(self):
        V = _int_matrix("stoichiometry", self.stoichiometry)
        R, S = V.shape
        if R < 1 or S < 1:
            raise ValueError(
                f"stoichiometry must have at least one reaction and species; {V.shape}"
            )
        if (self.reactants is None) == (self.propensity_fn is None):
            raise ValueError("give exactly one of reactants (mass action) and propensity_fn")
        rt = None
        if self.reactants is not None:
            r = _reactant_orders(self.reactants, R)
            if r.shape != (R, S):
                raise ValueError(f"reactants must have shape ({R}, {S}); got {r.shape}")
            rt = tuple(map(tuple, r.tolist()))
        elif not callable(self.propensity_fn):
            raise TypeError(
                f"propensity_fn must be callable; got {type(self.propensity_fn).__name__}"
            )
        if self.species is None:
            names = tuple(f"X{i}" for i in range(S))
        elif isinstance(self.species, str):
            raise TypeError(f"species must be a sequence of {S} strings, not a single string")
        else:
            names = tuple(str(s) for s in self.species)
            if len(names) != S or len(set(names)) != S:
                raise ValueError(f"species must hold {S} distinct names; got {list(names)}")
        object.__setattr__(self, "stoichiometry", tuple(map(tuple, V.tolist())))
        object.__setattr__(self, "reactants", rt)
        object.__setattr__(self, "species", names)

    @property
    def num_reactions(self) -> int:
        """R."""
        return len(self.stoichiometry)

    @property
    def num_species(self) -> int:
        """S."""
        return len(self.stoichiometry[0])

    @property
    def propensity(self) -> PropensityFn:
        """``h(x, rates) -> (R,)`` with ``x`` float counts (S,); no checks (use in loops)."""
        if self.propensity_fn is not None:
            return self.propensity_fn
        return _mass_action_fn(self.reactants)

    def check_rates(self, rates: ArrayLike) -> Array:
        """``rates`` as a float array (R,), at least float32; values checked when concrete.

        Raises ``TypeError`` for non-real dtypes and ``ValueError`` for a wrong shape or,
        on concrete input, negative or non-finite entries.
        """
        c = concrete(rates)
        if c is not None and (not np.issubdtype(c.dtype, np.number) or np.iscomplexobj(c)):
            raise TypeError(f"rates must be real numbers; got dtype {c.dtype}")
        rates = jnp.asarray(rates)
        rates = rates.astype(jnp.result_type(rates.dtype, jnp.float32))
        R = self.num_reactions
        if rates.shape != (R,):
            raise ValueError(
                f"rates must have shape ({R},) (one per reaction, to match stoichiometry); "
                f"got {rates.shape}"
            )
        if c is not None and not (np.all(np.isfinite(c)) and np.all(c >= 0)):
            raise ValueError(f"rates must be non-negative and finite; got {c.tolist()}")
        return rates


def as_network(
    stoichiometry,
    reactants: ArrayLike | None = None,
    propensity_fn: PropensityFn | None = None,
) -> Network:
    """The :class:`Network` of ``stoichiometry``: itself, or built from the arrays.

    Parameters
    ----------
    stoichiometry : Network, object with a ``network`` attribute, or ArrayLike (R, S)
        A :class:`Network` (or an object holding one, such as
        :class:`probdyn.processes.ReactionNetwork`) is returned as is, and then
        ``reactants`` and ``propensity_fn`` must be None; an array is combined with them.
    reactants, propensity_fn
        As for :class:`Network`.

    Returns
    -------
    Network
    """
    net = getattr(stoichiometry, "network", stoichiometry)
    if isinstance(net, Network):
        if reactants is not None or propensity_fn is not None:
            raise TypeError(
                "reactants and propensity_fn belong to the Network; got a Network and "
                f"reactants={'given' if reactants is not None else None}, "
                f"propensity_fn={propensity_fn!r}"
            )
        return net
    return Network(stoichiometry, reactants=reactants, propensity_fn=propensity_fn)


def check_counts(name: str, value: ArrayLike, num_species: int) -> Array:
    """Non-negative integer counts (S,) as int32; values checked when concrete."""
    x = jnp.asarray(value)
    if x.shape != (num_species,):
        raise ValueError(
            f"{name} must have shape ({num_species},) to match stoichiometry; got {x.shape}"
        )
    c = concrete(x)
    if c is not None and (np.any(c < 0) or np.any(c != np.round(c))):
        raise ValueError(f"{name} must hold non-negative integer counts; got {c.tolist()}")
    return x.astype(jnp.int32)


def check_obs_times(times: ArrayLike, dtype, t0: ArrayLike) -> Array:
    """Observation times (T,): strictly increasing, finite, ``>= t0``, cast to ``dtype``."""
    return check_times("times", times, dtype, ndim=1, t0=t0, shape_label="(num_timesteps,)")


def check_simulation_inputs(
    stoichiometry, rates, reactants, propensity_fn, x0, t0
) -> tuple[Network, Array, Array, Array]:
    """The checked inputs of a simulator: ``(network, rates, x0 int32, t0)``.

    ``network`` from :func:`as_network`, ``rates`` from :meth:`Network.check_rates`,
    ``x0`` from :func:`check_counts` and ``t0`` a finite scalar of the rates' dtype.
    """
    net = as_network(stoichiometry, reactants, propensity_fn)
    rates = net.check_rates(rates)
    x0 = check_counts("x0", x0, net.num_species)
    return net, rates, x0, check_times("t0", t0, rates.dtype, ndim=0)


@lru_cache(maxsize=256)
def _mass_action_fn(reactants: tuple) -> PropensityFn:
    """Closure ``(x float (S,), rates (R,)) -> (R,)`` for static reactant orders."""
    r = np.asarray(reactants, dtype=np.int64)
    order = int(r.max(initial=0))
    if order == 0:
        return lambda x, rates: rates
    if order == 1:
        mask = r > 0
        return lambda x, rates: rates * jnp.prod(jnp.where(mask, x, 1), axis=-1)
    k = np.arange(order)[:, None, None]
    mask = k < r[None]  # (order, R, S): factor (x_s - k) present iff k < r_js
    kf = k.astype(np.float32)

    def fn(x, rates):
        terms = jnp.where(mask, x - kf.astype(x.dtype), 1)
        return rates * jnp.prod(terms, axis=(0, 2))

    return fn


def mass_action_propensities(x: ArrayLike, rates: ArrayLike, reactants: ArrayLike) -> Array:
    """Stochastic mass-action propensities.

    .. math::

        h_j(x) = c_j \\prod_s x_s (x_s - 1) \\cdots (x_s - r_{js} + 1)
               = c_j \\prod_s \\frac{x_s!}{(x_s - r_{js})!},

    the number of ordered ways to pick the reactant molecules times the rate constant
    :math:`c_j` (Gillespie 1977; e.g. :math:`2X \\to \\ldots` has :math:`h = c\\,x(x-1)`,
    with no 1/2). Orders larger than the count give zero.

    Parameters
    ----------
    x : ArrayLike, shape (S,)
        Non-negative counts.
    rates : ArrayLike, shape (R,)
        Stochastic rate constants :math:`c_j`.
    reactants : ArrayLike of int, shape (R, S)
        Concrete reactant orders :math:`r_{js} \\ge 0`.

    Returns
    -------
    Array, shape (R,)
    """
    r = _reactant_orders(reactants)
    rates = jnp.asarray(rates)
    rates = rates.astype(jnp.result_type(rates.dtype, jnp.float32))
    x = jnp.asarray(x)
    if rates.shape != (r.shape[0],) or x.shape != (r.shape[1],):
        raise ValueError(
            f"rates must have shape ({r.shape[0]},) and x shape ({r.shape[1]},) to match "
            f"reactants {r.shape}; got {rates.shape} and {x.shape}"
        )
    return _mass_action_fn(tuple(map(tuple, r.tolist())))(x.astype(rates.dtype), rates)
