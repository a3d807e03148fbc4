"""Chemical reaction networks: structure, simulation, exact likelihoods, the CME generator.

A :class:`ReactionNetwork` holds the *structure* of a network of R reactions over S
species (reactant and product stoichiometric matrices, names, the propensity law; the
kernels' :class:`probdyn.kernels.network.Network` is its :attr:`~ReactionNetwork.network`);
rate constants ``rates`` (R,) are passed to each method as ordinary (traced,
differentiable) arrays. The methods wrap :mod:`probdyn.kernels.ssa` (exact and tau-leaped
simulation, path likelihood), :mod:`probdyn.kernels.cle` (chemical Langevin) and build the
truncated chemical master equation generator. The distribution over fully observed paths
is :class:`probdyn.processes.reaction_path.ReactionPath`.

References
----------
D. T. Gillespie, "The chemical Langevin equation", J. Chem. Phys. 113(1), 297-306, 2000.

B. Munsky and M. Khammash, "The finite state projection algorithm for the solution of the
chemical master equation", J. Chem. Phys. 124, 044104, 2006.

D. J. Wilkinson, *Stochastic Modelling for Systems Biology*, 3rd ed., CRC Press, 2018.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from probdyn.kernels import cle, ssa
from probdyn.kernels._checks import check_times
from probdyn.kernels._checks import concrete as _concrete
from probdyn.kernels.cme import box_states
from probdyn.kernels.network import Network

if TYPE_CHECKING:
    from probdyn.processes.reaction_path import ReactionPath

Array = jax.Array

__all__ = ["ReactionNetwork"]

_MAX_GENERATOR_STATES = 20_000
_TERM = re.compile(r"^(?:(\d+)\s*\*?\s*)?([A-Za-z_][A-Za-z0-9_]*)$")


# --------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------


_MAX_COEFF = 2**20


def _count_matrix(name, value):
    arr = _concrete(value)
    if arr is None:
        raise TypeError(f"{name} is network structure and must be concrete; got a traced value")
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (num_reactions, num_species); got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise TypeError(f"{name} must hold non-negative integers; got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must hold non-negative integers; got {arr.tolist()}")
    if np.any(arr > _MAX_COEFF):
        raise ValueError(
            f"{name} entries must be at most {_MAX_COEFF} (counts are int32); got {arr.tolist()}"
        )
    return arr.astype(np.int64)


def _names(name, value, n, default):
    if value is None:
        return tuple(f"{default}{i}" for i in range(n))
    if isinstance(value, str):
        raise TypeError(f"{name} must be a sequence of {n} strings, not a single string")
    value = tuple(str(v) for v in value)
    if len(value) != n or len(set(value)) != n:
        raise ValueError(f"{name} must hold {n} distinct names; got {list(value)}")
    return value


def _max_counts(value, S):
    m = np.broadcast_to(np.asarray(value), (S,)) if np.ndim(value) == 0 else np.asarray(value)
    if m.shape != (S,) or not np.issubdtype(m.dtype, np.integer) or np.any(m < 0):
        raise ValueError(
            f"max_counts must be a non-negative int or a sequence of {S} such ints; got {value!r}"
        )
    return tuple(int(v) for v in m)


def _strides(m):
    """C-order strides of the box ``0..m_s``: index = x @ strides."""
    return np.cumprod((1,) + tuple(v + 1 for v in m[:0:-1]))[::-1].astype(np.int64)


def _parse_side(side, equation):
    side = side.strip()
    if side in ("", "0", "\u2205"):
        return {}
    out = {}
    for term in side.split("+"):
        m = _TERM.match(term.strip())
        if m is None:
            raise ValueError(f"equations: cannot parse term {term.strip()!r} in {equation!r}")
        out[m.group(2)] = out.get(m.group(2), 0) + int(m.group(1) or 1)
        if out[m.group(2)] > _MAX_COEFF:
            raise ValueError(
                f"equations: coefficient of {m.group(2)!r} in {equation!r} exceeds {_MAX_COEFF} "
                "(counts are int32)"
            )
    return out


def _side_str(row, species):
    terms = [(f"{n} " if n > 1 else "") + s for n, s in zip(row, species, strict=True) if n > 0]
    return " + ".join(terms) or "0"


# --------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------


class ReactionNetwork:
    """A chemical reaction network: R reactions over S species.

    Reaction j turns ``reactants[j]`` into ``products[j]``; its net effect on the counts
    is ``stoichiometry[j] = products[j] - reactants[j]``. With ``propensity="mass_action"``
    the propensity of reaction j is :math:`h_j(x) = c_j \\prod_s x_s! / (x_s - r_{js})!`
    (see :func:`probdyn.kernels.ssa.mass_action_propensities`); a callable
    ``propensity(x, rates) -> (R,)`` replaces it (``x`` float counts (S,), output
    non-negative). The object is immutable, hashable and holds only static structure;
    rate constants ``rates`` (R,) are arguments of every method.

    Parameters
    ----------
    reactants : ArrayLike of int, shape (R, S)
        Reactant counts (non-negative, concrete).
    products : ArrayLike of int, shape (R, S)
        Product counts (non-negative, concrete).
    species : sequence of str, optional
        S distinct species names (default ``X0, X1, ...``); used in labels and ArviZ coords.
    reactions : sequence of str, optional
        R distinct reaction names (default: the equations, e.g. ``"A + B -> C"``).
    propensity : "mass_action" or callable
        The propensity law.

    Examples
    --------
    >>> net = ReactionNetwork.from_equations(
    ...     ["prey -> 2 prey", "prey + predator -> 2 predator", "predator -> 0"])
    >>> net.stoichiometry.tolist()
    [[1, 0], [-1, 1], [0, -1]]
    """

    def __init__(
        self,
        reactants: ArrayLike,
        products: ArrayLike,
        *,
        species: Sequence[str] | None = None,
        reactions: Sequence[str] | None = None,
        propensity: str | Callable[[Array, Array], Array] = "mass_action",
    ):
        r = _count_matrix("reactants", reactants)
        p = _count_matrix("products", products)
        if r.shape != p.shape:
            raise ValueError(
                f"reactants and products must have the same shape (R, S); got {r.shape} and "
                f"{p.shape}"
            )
        if r.shape[0] < 1 or r.shape[1] < 1:
            raise ValueError(f"reactants must have at least one reaction and species; {r.shape}")
        mass_action = isinstance(propensity, str) and propensity == "mass_action"
        if not (mass_action or (callable(propensity) and not isinstance(propensity, str))):
            raise ValueError(f"propensity must be 'mass_action' or a callable; got {propensity!r}")
        self._reactants, self._products = r, p
        self._reactants.flags.writeable = self._products.flags.writeable = False
        self._propensity, self._mass_action = propensity, mass_action
        self._species = _names("species", species, r.shape[1], "X")
        self._reactions = _names("reactions", reactions, r.shape[0], "R")
        if reactions is None:
            eqs = tuple(self._equation(j) for j in range(r.shape[0]))
            self._reactions = eqs if len(set(eqs)) == len(eqs) else self._reactions
        self._stoich_t = tuple(map(tuple, (p - r).tolist()))
        self._reactants_t = tuple(map(tuple, r.tolist()))
        self._network = Network(
            p - r,
            reactants=r if mass_action else None,
            propensity_fn=None if mass_action else propensity,
            species=self._species,
        )

    @classmethod
    def from_equations(
        cls,
        equations: Sequence[str],
        *,
        species: Sequence[str] | None = None,
        reactions: Sequence[str] | None = None,
        propensity: str | Callable = "mass_action",
    ) -> ReactionNetwork:
        """Build a network from strings such as ``"prey + predator -> 2 predator"``.

        Each equation is ``LHS -> RHS``; a side is ``0`` (or empty, or ``∅``) or terms
        joined by ``+``, each an optional integer coefficient (``2 A``, ``2A``, ``2*A``)
        and a species name (a Python identifier). Species are ordered by first
        appearance unless ``species`` fixes the order (it may list species that appear in
        no equation).

        Parameters
        ----------
        equations : sequence of str, length R
        species, reactions, propensity
            As for :class:`ReactionNetwork`.

        Returns
        -------
        ReactionNetwork
        """
        if isinstance(equations, str) or len(equations) == 0:
            raise TypeError("equations must be a non-empty sequence of strings like 'A -> B'")
        sides = []
        for eq in equations:
            if not isinstance(eq, str) or eq.count("->") != 1:
                raise ValueError(f"equations: each must be 'LHS -> RHS'; got {eq!r}")
            lhs, rhs = eq.split("->")
            sides.append((_parse_side(lhs, eq), _parse_side(rhs, eq)))
        seen = list(dict.fromkeys(s for side in sides for part in side for s in part))
        if species is None:
            species = seen
        elif isinstance(species, str) or len(set(species)) != len(list(species)):
            raise ValueError(f"species must be a sequence of distinct names; got {species!r}")
        elif missing := [s for s in seen if s not in list(species)]:
            raise ValueError(f"species must list every species in equations; missing {missing}")
        idx = {s: i for i, s in enumerate(species)}
        shape = (len(sides), len(idx))
        r, p = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
        for j, (lhs, rhs) in enumerate(sides):
            for s, n in lhs.items():
                r[j, idx[s]] = n
            for s, n in rhs.items():
                p[j, idx[s]] = n
        return cls(r, p, species=species, reactions=reactions, propensity=propensity)

    # ----------------------------------------------------------------------------------
    # structure
    # ----------------------------------------------------------------------------------

    @property
    def reactants(self) -> np.ndarray:
        """Reactant counts, int (R, S)."""
        return self._reactants

    @property
    def products(self) -> np.ndarray:
        """Product counts, int (R, S)."""
        return self._products

    @property
    def stoichiometry(self) -> np.ndarray:
        """Net change per reaction, ``products - reactants``, int (R, S)."""
        return self._products - self._reactants

    @property
    def network(self) -> Network:
        """The kernels' :class:`probdyn.kernels.network.Network` of this network."""
        return self._network

    @property
    def num_species(self) -> int:
        return self._reactants.shape[1]

    @property
    def num_reactions(self) -> int:
        return self._reactants.shape[0]

    @property
    def species(self) -> tuple[str, ...]:
        return self._species

    @property
    def reactions(self) -> tuple[str, ...]:
        return self._reactions

    @property
    def coords(self) -> dict[str, list[str]]:
        """ArviZ coords: ``{"species": [...], "reaction": [...]}``."""
        return {"species": list(self._species), "reaction": list(self._reactions)}

    def _equation(self, j):
        r, p = self._reactants[j], self._products[j]
        return f"{_side_str(r, self._species)} -> {_side_str(p, self._species)}"

    def __repr__(self) -> str:
        law = "" if self._mass_action else ", custom propensity"
        lines = [self._equation(j) for j in range(self.num_reactions)]
        head = f"ReactionNetwork({self.num_reactions} reactions, {self.num_species} species{law}"
        return head + ":\n  " + "\n  ".join(lines) + ")"

    def _key(self):
        return (self._reactants_t, self._stoich_t, self._species, self._reactions,
                self._propensity)  # fmt: skip

    def __eq__(self, other) -> bool:
        return isinstance(other, ReactionNetwork) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    # ----------------------------------------------------------------------------------
    # propensities and checks
    # ----------------------------------------------------------------------------------

    def _prop(self, x, rates):
        """Propensities of one state ``x`` (S,) float, no checks."""
        return self._network.propensity(x, rates)

    def _rates(self, rates):
        return self._network.check_rates(rates)

    def propensities(self, x: ArrayLike, rates: ArrayLike) -> Array:
        """Propensities :math:`h(x)`.

        Parameters
        ----------
        x : ArrayLike, shape (..., S)
            Counts.
        rates : ArrayLike, shape (R,)

        Returns
        -------
        Array, shape (..., R)
        """
        rates = self._rates(rates)
        x = jnp.asarray(x)
        if x.ndim < 1 or x.shape[-1] != self.num_species:
            raise ValueError(f"x must have shape (..., {self.num_species}); got {x.shape}")
        flat = x.reshape((-1, self.num_species)).astype(rates.dtype)
        h = jax.vmap(lambda xi: self._prop(xi, rates))(flat)
        return h.reshape(x.shape[:-1] + (self.num_reactions,))

    # ----------------------------------------------------------------------------------
    # simulation (thin wrappers over probdyn.kernels.ssa)
    # ----------------------------------------------------------------------------------

    def gillespie(
        self,
        rng_key: Array,
        x0: ArrayLike,
        t_end: ArrayLike,
        rates: ArrayLike,
        max_jumps: int,
        t0: ArrayLike = 0.0,
    ) -> ssa.Path:
        """Exact path on ``[t0, t_end]``; see :func:`probdyn.kernels.ssa.gillespie`.

        Returns a :class:`probdyn.kernels.ssa.Path` with buffers of ``max_jumps`` events,
        ``num_jumps`` and the ``overflow`` flag.
        """
        return ssa.gillespie(
            rng_key, x0, t_end, self._network, self._rates(rates),
            max_jumps=max_jumps, t0=t0,
        )  # fmt: skip

    def gillespie_at(
        self,
        rng_key: Array,
        x0: ArrayLike,
        times: ArrayLike,
        rates: ArrayLike,
        max_jumps: int,
        t0: ArrayLike = 0.0,
    ) -> tuple[Array, Array]:
        """Exact states at ``times`` (T,): ``(states (T, S) int32, overflow ())``; see
        :func:`probdyn.kernels.ssa.gillespie_at` (same key, same path as :meth:`gillespie`)."""
        return ssa.gillespie_at(
            rng_key, x0, times, self._network, self._rates(rates),
            max_jumps=max_jumps, t0=t0,
        )  # fmt: skip

    def tau_leap(
        self,
        rng_key: Array,
        x0: ArrayLike,
        times: ArrayLike,
        rates: ArrayLike,
        tau: ArrayLike,
        t0: ArrayLike = 0.0,
        return_overflow: bool = False,
    ) -> Array | tuple[Array, Array]:
        """Poisson tau-leaping read at ``times`` (T,): int32 (T, S), and the ``overflow``
        flag with ``return_overflow=True`` (counts never wrap: rows after an overflow are
        -1); see :func:`probdyn.kernels.ssa.tau_leap`."""
        return ssa.tau_leap(
            rng_key, x0, times, self._network, self._rates(rates),
            tau=tau, t0=t0, return_overflow=return_overflow,
        )  # fmt: skip

    def chemical_langevin(
        self,
        rng_key: Array,
        x0: ArrayLike,
        times: ArrayLike,
        rates: ArrayLike,
        dt: ArrayLike,
        t0: ArrayLike = 0.0,
        return_overflow: bool = False,
    ) -> Array | tuple[Array, Array]:
        """Chemical Langevin equation by Euler-Maruyama, read at ``times``.

        .. math::

            \\mathrm{d}X = \\nu^\\top h(X)\\,\\mathrm{d}t
                + \\nu^\\top \\mathrm{diag}\\big(\\sqrt{h(X)}\\big)\\,\\mathrm{d}W,

        with :math:`\\nu` the stoichiometry (R, S) and W an R-dimensional Brownian motion
        (Gillespie 2000). A step of length :math:`\\delta` is
        :math:`X \\leftarrow X + \\nu^\\top (h\\,\\delta + \\sqrt{h\\,\\delta}\\,Z)`,
        :math:`Z \\sim N(0, I_R)`. Each interval between observation times is cut into
        :math:`\\lceil \\Delta / dt \\rceil` steps (the last one shorter), so every
        observation time is hit exactly.

        The CLE does not keep X non-negative. Propensities are evaluated at
        :math:`\\max(X, 0)`: a species that overshoots below zero stops driving the
        reactions that consume it (its propensities vanish, e.g. a pure-death species
        is absorbed at its negative value instead of oscillating around zero), while X
        itself is returned unclipped, so the moments stay unbiased wherever the
        overshoot does not occur. Choose ``dt`` so that :math:`h\\,dt` is small next to
        the counts; the weak error is :math:`O(dt)`. For networks with linear
        propensities the mean and covariance of the exact CLE equal those of the
        chemical master equation (while X stays positive).

        With concrete ``times``, ``t0`` and ``dt`` the loop is a :func:`jax.lax.scan` of
        static length (``max`` steps per interval, shorter intervals padded with empty
        steps), differentiable in ``rates`` and ``x0`` in both modes (reparameterised
        paths); with traced ones it is a loop of dynamic length (forward-mode only).
        Both draw the same noise: step i uses ``fold_in(rng_key, i)``.

        Parameters
        ----------
        rng_key : Array
        x0 : ArrayLike, shape (S,)
            Initial state (finite, non-negative; need not be integer).
        times : ArrayLike, shape (T,)
            Strictly increasing observation times ``>= t0``.
        rates : ArrayLike, shape (R,)
        dt : ArrayLike, shape ()
            Largest step (positive).
        t0 : ArrayLike, shape (), default 0
        return_overflow : bool, default False
            Also return the ``overflow`` flag.

        Returns
        -------
        states : Array, shape (T, S)
            :math:`X(t_k)`, in the floating dtype of ``rates``. Explosive growth can leave
            the float range: from the first non-finite row on, every row is NaN.
        overflow : Array of bool, shape ()
            With ``return_overflow=True``: True when the path left the float range.
        """
        return cle.chemical_langevin(
            rng_key, x0, times, self._network, self._rates(rates),
            dt=dt, t0=t0, return_overflow=return_overflow,
        )  # fmt: skip

    # ----------------------------------------------------------------------------------
    # likelihood
    # ----------------------------------------------------------------------------------

    def path_log_prob(self, path: ssa.Path, rates: ArrayLike, t_end: ArrayLike) -> Array:
        """Exact log-density of a fully observed path on ``[path.times[0], t_end]``.

        See :func:`probdyn.kernels.ssa.path_log_likelihood`; NaN for an overflowed path.
        For mass action the score is
        :math:`\\partial_{c_j} \\log p = n_j / c_j - \\int h_j(x(t)) / c_j \\,\\mathrm{d}t`
        with :math:`n_j` the number of firings of reaction j.

        Parameters
        ----------
        path : probdyn.kernels.ssa.Path
            One path (times (M+1,), states (M+1, S), reaction (M,)).
        rates : ArrayLike, shape (R,)
        t_end : ArrayLike, shape ()

        Returns
        -------
        Array, shape ()
        """
        rates = self._rates(rates)
        return _path_ll(self, path, rates, check_times("t_end", t_end, rates.dtype, ndim=0))

    def path_distribution(
        self,
        x0: ArrayLike,
        rates: ArrayLike,
        t_end: ArrayLike,
        max_jumps: int,
        *,
        t0: ArrayLike = 0.0,
        validate_args: bool | None = None,
    ) -> ReactionPath:
        """The :class:`ReactionPath` distribution of this network's paths."""
        from probdyn.processes.reaction_path import ReactionPath

        return ReactionPath(self, x0, rates, t_end, max_jumps, t0=t0, validate_args=validate_args)

    # ----------------------------------------------------------------------------------
    # truncated chemical master equation
    # ----------------------------------------------------------------------------------

    def states(self, max_counts: int | Sequence[int]) -> np.ndarray:
        """All states of the box :math:`0 \\le x_s \\le m_s`, in C order (last species
        fastest): row k is the state of index k (see :meth:`state_index`).

        Parameters
        ----------
        max_counts : int or sequence of S ints
            Largest count kept per species (static).

        Returns
        -------
        numpy.ndarray of int64, shape (K, S), ``K = prod(max_counts + 1)``
        """
        return box_states(_max_counts(max_counts, self.num_species))

    def state_index(self, x: ArrayLike, max_counts: int | Sequence[int]) -> Array:
        """Index in :meth:`states` of counts ``x`` (..., S) inside the box; int32 (...)."""
        strides = _strides(_max_counts(max_counts, self.num_species))
        return jnp.asarray(x, jnp.int32) @ jnp.asarray(strides, jnp.int32)

    def generator(
        self, rates: ArrayLike, max_counts: int | Sequence[int], *, sink: bool = False
    ) -> Array:
        """Generator of the chemical master equation on a truncated state space.

        The states are the box of :meth:`states` (K of them). A reaction whose target
        leaves the box (a count above ``max_counts``, or below 0 with a non-mass-action
        propensity) is dealt with in one of two ways:

        - ``sink=False`` (reflecting truncation): the transition is dropped, and the
          diagonal holds minus the sum of the kept rates, so rows sum to zero. The
          truncated chain is a proper CTMC, but its law is biased where the box boundary
          carries mass.
        - ``sink=True`` (finite state projection, Munsky & Khammash 2006): the leaving
          rate goes to an extra absorbing state K (last row of zeros). If ``p(t)`` is the
          transient law of this (K+1)-state chain started inside the box, then
          ``p(t)[K]`` is the probability of having left the box by t; the exact CME
          probabilities :math:`P` satisfy :math:`P_k(t) \\ge p_k(t)` on the box, and the
          L1 distance between :math:`P(t)` and :math:`p(t)` (taken as zero outside the
          box) equals ``p(t)[K]``: the sink mass is the truncation error, for free.

        State enumeration is static numpy; ``rates`` may be traced (``jit``, ``grad``).
        Reactions with no net change are skipped.

        Parameters
        ----------
        rates : ArrayLike, shape (R,)
        max_counts : int or sequence of S ints
            Static truncation. K must stay below 20,000 (the matrix is dense).
        sink : bool
            Add the absorbing sink state.

        Returns
        -------
        Array, shape (K, K), or (K + 1, K + 1) with ``sink=True``
        """
        rates = self._rates(rates)
        X = self.states(max_counts)
        K = X.shape[0]
        if K > _MAX_GENERATOR_STATES:
            raise ValueError(
                f"max_counts={max_counts!r} gives K={K} states; the dense generator allows at "
                f"most {_MAX_GENERATOR_STATES}"
            )
        m = np.asarray(_max_counts(max_counts, self.num_species))
        V = self.stoichiometry
        target = X[:, None, :] + V[None]  # (K, R, S)
        inside = np.all((target >= 0) & (target <= m), axis=-1)  # (K, R)
        moves = np.any(V != 0, axis=1)[None, :]
        tgt = np.where(inside[..., None], target, 0) @ _strides(tuple(m))
        dst = np.where(inside, tgt, K)  # K = outside
        keep = moves & (inside | sink)
        src = np.broadcast_to(np.arange(K)[:, None], dst.shape)
        h = self.propensities(X, rates)  # (K, R)
        n = K + 1 if sink else K
        vals = jnp.where(jnp.asarray(keep), h, 0.0)
        Q = (
            jnp.zeros((n, n), rates.dtype)
            .at[src.ravel(), np.where(keep, dst, 0).ravel()]
            .add(vals.ravel())
        )
        exit_rate = jnp.sum(vals, axis=1)
        return Q.at[np.arange(K), np.arange(K)].add(-exit_rate)


@partial(jax.jit, static_argnums=0)
def _path_ll(network, path, rates, t_end):
    return ssa.path_log_likelihood(path, network.network, rates, t_end=t_end)
