"""Counts of a reaction network observed at discrete times, through the chemical master
equation (CME): a NumPyro distribution with the exact (up to truncation) likelihood.

``numpyro.sample("y", CMEObservations(net, rates, times, max_counts=..., initial_state=x0),
obs=y)`` replaces hand-built grids, initial distributions, ``num_terms`` and a
``numpyro.factor``: it is a real observed site, so ``fit`` records ``y`` in
``observed_data`` and its pointwise log-likelihood, and ``Predictive`` draws replicates.

Two truncations are made and both are reported rather than hidden:

- the state space is cut to the box :math:`0 \\le x_s \\le m_s` (finite state projection,
  Munsky & Khammash 2006, with reactions leaving the box switched off); the predicted
  probability of the states a reaction would leave the box from (``exit_mass``) measures
  what the cut changes;
- the uniformisation series of each transition (Jensen 1953) is cut where the Poisson
  tail it leaves out is below ``tol``; the number of terms follows the rates at run time
  (:func:`probdyn.kernels.cme.cme_filter`), up to ``max_terms``.

``log_prob`` is NaN where either bound fails (exit mass above ``box_tol``, or a series
tail above ``tol`` because ``max_terms`` was reached): NUTS treats it as a rejected
proposal, ``probdyn.summary`` names the site, and on concrete input a ``RuntimeWarning``
says which bound failed and what to raise. :meth:`CMEObservations.truncation` gives the
numbers.

References
----------
A. Jensen, "Markoff chains as an aid in the study of Markoff processes", Skand.
Aktuarietidskr. 36, 87-91, 1953.

B. Munsky and M. Khammash, "The finite state projection algorithm for the solution of the
chemical master equation", J. Chem. Phys. 124, 044104, 2006.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from numpyro.distributions import Distribution, constraints

from probdyn.kernels import cme as K_
from probdyn.processes._checks import concrete as _concrete
from probdyn.processes.reaction_network import ReactionNetwork

__all__ = ["CMEObservations"]

Array = jax.Array


def _species_index(network: ReactionNetwork, observed) -> tuple[tuple[int, ...], bool]:
    """(indices, scalar) of the observed species; ``scalar`` for one name/int given bare."""
    if observed is None:
        return tuple(range(network.num_species)), False
    scalar = isinstance(observed, str | int | np.integer)
    items = [observed] if scalar else list(observed)
    out = []
    for s in items:
        if isinstance(s, str):
            if s not in network.species:
                raise ValueError(
                    f"observed={observed!r}: {s!r} is not a species of the network; "
                    f"expected names from {list(network.species)} or indices"
                )
            out.append(network.species.index(s))
        elif isinstance(s, int | np.integer) and 0 <= int(s) < network.num_species:
            out.append(int(s))
        else:
            raise ValueError(
                f"observed={observed!r}: {s!r} is not a species; expected names from "
                f"{list(network.species)} or indices 0..{network.num_species - 1}"
            )
    if not out or len(set(out)) != len(out):
        raise ValueError(f"observed={observed!r} must name distinct species, at least one")
    return tuple(out), scalar


class CMEObservations(Distribution):
    """Counts of a :class:`ReactionNetwork` at times ``times``, exactly or through noise.

    The hidden state is the network's continuous-time Markov chain on the box
    ``0 <= x <= max_counts``; the value is, at each time, the counts of the ``observed``
    species (exact observation) or a draw of ``emission(x)`` (noisy observation). The
    log-density is the forward algorithm over the chemical master equation
    (:func:`probdyn.kernels.cme.cme_filter`), exact up to the two truncations described
    in the module docstring.

    Parameters
    ----------
    network : ReactionNetwork
        The reactions (static).
    rates : ArrayLike, shape (num_reactions,)
        Rate constants (traceable, differentiable).
    times : ArrayLike, shape (T,)
        Strictly increasing observation times.
    max_counts : int or sequence of int (num_species,)
        The box (static). Observed counts must lie strictly inside it, so that the box's
        faces can carry the truncation check.
    initial_state : ArrayLike of int, shape (num_species,), optional
        Known counts at ``t0``.
    initial_probs : ArrayLike, shape max_counts + 1, optional
        Distribution at ``t0`` over the box (give exactly one of the two).
    t0 : float, optional
        Time of the initial condition, ``<= times[0]``; default ``times[0]``.
    observed : str, int or sequence of them, optional
        Species observed exactly (default all). A single name or index gives values of
        shape (T,); a sequence, of shape (T, len(observed)). Not with ``emission``.
    emission : callable, optional
        ``emission(x)`` for float counts ``x`` of shape (K, num_species) returns a NumPyro
        distribution with batch shape (K,); its event shape is the value's per-time shape.
        Its parameters may be traced (it is called inside the model).
    tol : float
        Largest Poisson tail mass of the uniformisation series left out per gap.
    box_tol : float
        Largest predicted probability, at any observation time, of the states from which
        a reaction would leave the box.
    max_terms : int
        Cap on the series terms per gap (static).
    validate_args : bool, optional

    Examples
    --------
    >>> net = ReactionNetwork.from_equations(["0 -> mRNA", "mRNA -> 0"])
    >>> def model(times, y=None):
    ...     k = numpyro.sample("k", dist.LogNormal(0.0, 1.0).expand([2]).to_event(1))
    ...     numpyro.sample(
    ...         "y",
    ...         CMEObservations(net, k, times, max_counts=40, initial_state=[0], t0=0.0,
    ...                         observed="mRNA"),
    ...         obs=y,
    ...     )  # doctest: +SKIP
    """

    arg_constraints = {
        "rates": constraints.independent(constraints.nonnegative, 1),
        "times": constraints.ordered_vector,
    }
    pytree_data_fields = ("rates", "times", "initial_probs", "t0")
    pytree_aux_fields = (
        "network",
        "max_counts",
        "observed",
        "emission",
        "tol",
        "box_tol",
        "max_terms",
        "_scalar",
        "_support",
    )

    def __init__(
        self,
        network: ReactionNetwork,
        rates: ArrayLike,
        times: ArrayLike,
        *,
        max_counts: int | Sequence[int],
        initial_state: ArrayLike | None = None,
        initial_probs: ArrayLike | None = None,
        t0: ArrayLike | None = None,
        observed: str | int | Sequence[str | int] | None = None,
        emission: Callable[[Array], Distribution] | None = None,
        tol: float = 1e-6,
        box_tol: float = 1e-4,
        max_terms: int = 1024,
        validate_args: bool | None = None,
    ):
        if not isinstance(network, ReactionNetwork):
            raise TypeError(f"network must be a ReactionNetwork; got {type(network).__name__}")
        self.network = network
        S = network.num_species
        m = np.asarray(max_counts)
        m = np.broadcast_to(m, (S,)) if m.ndim == 0 else m
        if m.shape != (S,) or not np.issubdtype(m.dtype, np.integer) or np.any(m < 1):
            raise ValueError(
                f"max_counts must be a positive int or {S} positive ints (one per species); "
                f"got {max_counts!r}"
            )
        self.max_counts = tuple(int(v) for v in m)
        grid = tuple(v + 1 for v in self.max_counts)
        self.rates = network.network.check_rates(rates)
        times = jnp.asarray(times)
        if times.ndim != 1 or times.shape[0] < 1:
            raise ValueError(f"times must have shape (T,) with T >= 1; got {times.shape}")
        self.times = times.astype(self.rates.dtype)
        ct = _concrete(self.times)
        if ct is not None and (not np.all(np.isfinite(ct)) or np.any(np.diff(ct) <= 0)):
            raise ValueError(f"times must be finite and strictly increasing; got {ct.tolist()}")
        for name, v, lo, hi in (("tol", tol, 0, 1), ("box_tol", box_tol, 0, 1)):
            if not (isinstance(v, float | int) and lo < v < hi):
                raise ValueError(f"{name} must be a number in (0, 1); got {v!r}")
        self.tol, self.box_tol = float(tol), float(box_tol)
        if isinstance(max_terms, bool) or not isinstance(max_terms, int) or max_terms < 1:
            raise ValueError(f"max_terms must be a positive Python int; got {max_terms!r}")
        self.max_terms = int(max_terms)
        if (initial_state is None) == (initial_probs is None):
            raise ValueError("give exactly one of initial_state and initial_probs")
        if initial_state is not None:
            x0 = _concrete(initial_state)
            if x0 is None or x0.shape != (S,) or np.any(x0 < 0) or np.any(x0 != np.round(x0)):
                raise ValueError(
                    f"initial_state must be {S} concrete non-negative integer counts; "
                    f"got {initial_state!r}"
                )
            if np.any(x0 > m):
                raise ValueError(
                    f"initial_state={x0.tolist()} lies outside the box max_counts="
                    f"{list(self.max_counts)}; expected counts <= max_counts"
                )
            p0 = np.zeros(grid)
            p0[tuple(int(v) for v in x0)] = 1.0
            self.initial_probs = jnp.asarray(p0, self.rates.dtype)
        else:
            p0 = jnp.asarray(initial_probs)
            if p0.shape != grid:
                raise ValueError(
                    f"initial_probs must have the grid shape max_counts + 1 = {grid}; "
                    f"got {p0.shape}"
                )
            self.initial_probs = p0.astype(self.rates.dtype)
        self.t0 = None if t0 is None else jnp.asarray(t0, self.rates.dtype)
        if emission is not None and observed is not None:
            raise ValueError("give observed (exact counts) or emission (noisy counts), not both")
        if emission is not None and not callable(emission):
            raise TypeError(f"emission must be callable; got {type(emission).__name__}")
        self.emission = emission
        K = math.prod(grid)
        if emission is None:
            self.observed, self._scalar = _species_index(network, observed)
            per_time = () if self._scalar else (len(self.observed),)
            support = constraints.independent(constraints.nonnegative_integer, 1 + len(per_time))
        else:
            self.observed, self._scalar = None, False
            d = emission(jnp.asarray(network.states(self.max_counts), self.rates.dtype))
            if not isinstance(d, Distribution) or d.batch_shape != (K,):
                raise ValueError(
                    f"emission(x) for x of shape ({K}, {S}) must return a NumPyro "
                    f"distribution with batch shape ({K},); got {d!r}"
                )
            per_time = tuple(d.event_shape)
            support = constraints.independent(d.support, 1)
        self._support = support
        super().__init__(
            batch_shape=(),
            event_shape=(self.times.shape[0], *per_time),
            validate_args=validate_args,
        )

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self):
        return self._support

    # ----------------------------------------------------------------------------------

    def _kernel_kw(self):
        return dict(
            stoichiometry=self.network.network,
            max_counts=self.max_counts,
            t0=self.t0,
            tol=self.tol,
            max_terms=self.max_terms,
        )

    def _obs_log_probs(self, y):
        """log p(y_t | x) on the box: (T, *grid), for one sequence ``y`` (event shape)."""
        states = jnp.asarray(self.network.states(self.max_counts))
        grid = tuple(v + 1 for v in self.max_counts)
        T = self.times.shape[0]
        if self.emission is None:
            yy = jnp.reshape(y, (T, len(self.observed)))
            x = states[:, list(self.observed)]  # (K, n_obs)
            hit = jnp.all(x[None] == jnp.round(yy)[:, None].astype(x.dtype), axis=-1)
            lp = jnp.where(hit, 0.0, -jnp.inf).astype(self.rates.dtype)
        else:
            d = self.emission(states.astype(self.rates.dtype))
            lp = jax.vmap(d.log_prob)(y)  # (T, K): each y_t against every box state
        return lp.reshape((T, *grid))

    def _check_counts(self, value):
        c = _concrete(value)
        if self.emission is not None or c is None:
            return
        top = np.asarray(self.max_counts)[list(self.observed)]
        flat = c.reshape(-1, len(self.observed))
        if np.any(flat >= top):
            raise ValueError(
                f"value has counts {flat.max(0).tolist()} of species "
                f"{[self.network.species[i] for i in self.observed]} at or above max_counts "
                f"{top.tolist()}; expected counts strictly inside the box: raise max_counts"
            )

    def _filter_one(self, y):
        return K_.cme_filter(
            self.initial_probs, self.times, self._obs_log_probs(y), self.rates, **self._kernel_kw()
        )

    def truncation(self, value: ArrayLike) -> K_.CMEFilterResult:
        """Per-time log normalisers and truncation diagnostics for ``value``.

        Returns
        -------
        probdyn.kernels.CMEFilterResult
            Fields of shape (*sample_batch, T): ``log_normalizers``, ``series_tail``,
            ``num_terms``, ``exit_mass`` (see :func:`probdyn.kernels.cme.cme_filter`).
        """
        value = jnp.asarray(value)
        self._check_counts(value)
        lead = value.shape[: value.ndim - len(self.event_shape)]
        if not lead:
            return self._filter_one(value)
        # lax.map, not vmap: under vmap the skipped series blocks would all run
        out = jax.lax.map(self._filter_one, value.reshape((-1, *self.event_shape)))
        return K_.CMEFilterResult(*(a.reshape((*lead, -1)) for a in out))

    def pointwise_log_prob(self, value: ArrayLike) -> Array:
        """:math:`\\log p(y_t \\mid y_{<t})` per time, shape (*sample_batch, T); NaN where a
        truncation bound fails (see the class docstring). Sums to :meth:`log_prob`."""
        r = self.truncation(value)
        bad = (r.series_tail > self.tol) | (r.exit_mass > self.box_tol)
        c = _concrete(bad)
        if c is not None and np.any(c):
            self._warn(r)
        return jnp.where(jnp.any(bad, axis=-1, keepdims=True), jnp.nan, r.log_normalizers)

    def log_prob(self, value: ArrayLike) -> Array:
        return jnp.sum(self.pointwise_log_prob(value), axis=-1)

    def _warn(self, r):
        tail, face = np.asarray(r.series_tail), np.asarray(r.exit_mass)
        msgs = []
        if np.any(tail > self.tol):
            msgs.append(
                f"the uniformisation series reached max_terms={self.max_terms} with a tail "
                f"mass of {tail.max():.3g} > tol={self.tol:g}: raise max_terms"
            )
        if np.any(face > self.box_tol):
            msgs.append(
                f"the box max_counts={list(self.max_counts)} holds predicted mass "
                f"{face.max():.3g} > box_tol={self.box_tol:g} on states a reaction would "
                "leave it from: raise max_counts"
            )
        warnings.warn(
            "CMEObservations log_prob is NaN: " + "; ".join(msgs), RuntimeWarning, stacklevel=3
        )

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        """Draws of the value: the truncated chain sampled exactly at ``times``
        (:func:`probdyn.kernels.cme.cme_sample`), then observed."""
        shape = tuple(sample_shape)
        n = math.prod(shape)
        k_state, k_obs = jax.random.split(key)
        kw = self._kernel_kw()
        x = jax.lax.map(  # not vmap: it would run every skipped series block
            lambda k: K_.cme_sample(k, self.initial_probs, self.times, self.rates, **kw),
            jax.random.split(k_state, n),
        )  # (n, T, S)
        if self.emission is None:
            y = x[..., list(self.observed)]
            y = y[..., 0] if self._scalar else y
        else:
            d = self.emission(x.reshape(-1, self.network.num_species).astype(self.rates.dtype))
            y = d.sample(k_obs).reshape((n, *self.event_shape))
        return y.reshape(shape + self.event_shape)
