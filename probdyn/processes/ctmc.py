"""Continuous-time Markov chains as NumPyro distributions.

:class:`MarkovJumpProcess` is a distribution over fully observed paths of a chain with
``generator`` Q (K, K) on a window :math:`[t_0, t_\\mathrm{end}]`; :class:`ObservedCTMC`
is a hidden chain observed through an emission distribution at irregular ``times``, with
the states summed out exactly (forward algorithm over :math:`P(dt_n) = e^{Q\\, dt_n}`).

Path encoding
-------------
A NumPyro sample site holds one array, so a path is padded to ``max_jumps + 1`` rows and
stored as a float array of shape ``(max_jumps + 1, 2)``:

* column 0, ``value[i, 0]``: the time the path enters row i's state; ``value[0, 0] = t0``;
* column 1, ``value[i, 1]``: the state index (an integer held as a float);
* padding: rows past the last jump repeat the last state with time ``t_end``.

A row whose state equals the previous row's state is not a jump: it is padding (or a
virtual event, which changes nothing), so ``num_jumps`` is the number of state changes
and is recovered by :meth:`MarkovJumpProcess.decode`. A **truncated** path, one with more
than ``max_jumps`` jumps in the window, has NaN as its last time, ``value[-1, 0]``; its
``log_prob`` is NaN, and with ``validate_args=True`` and a concrete value ``log_prob``
raises. Use :meth:`MarkovJumpProcess.encode` and :meth:`MarkovJumpProcess.decode` to
convert to and from (states, jump times).

References
----------
D. T. Gillespie, "Exact stochastic simulation of coupled chemical reactions", J. Phys.
Chem. 81(25), 1977.
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
from jax.typing import ArrayLike
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.util import lazy_property

from probdyn.kernels import ctmc as C_
from probdyn.kernels._checks import check_generator as _check_generator
from probdyn.kernels._checks import check_probs as _check_probs
from probdyn.kernels._checks import concrete as _concrete
from probdyn.processes._batch import flat_map as _flat_map
from probdyn.processes._checks import check_missing as _check_missing
from probdyn.processes._checks import validate_sample as _validate_sample
from probdyn.processes.hmm import DiscreteHMM

__all__ = [
    "CTMCPath",
    "MarkovJumpProcess",
    "ObservedCTMC",
    "ObservedCTMCPath",
    "mean_dwell_times",
]


class CTMCPath(NamedTuple):
    """A decoded path (see :meth:`MarkovJumpProcess.decode`).

    Attributes
    ----------
    states : Array of int32, shape (..., max_jumps + 1)
        ``states[0]`` is the initial state, ``states[i]`` the state entered by jump i;
        padding repeats the last state.
    times : Array, shape (..., max_jumps + 1)
        ``times[0] = t0``; ``times[i]`` is the (absolute) time of jump i; padding is
        ``t_end`` (NaN in the last entry of a truncated path).
    num_jumps : Array of int32, shape (...)
    overflow : Array of bool, shape (...)
        True for a truncated path (more than ``max_jumps`` jumps).
    """

    states: jax.Array
    times: jax.Array
    num_jumps: jax.Array
    overflow: jax.Array


class ObservedCTMCPath(NamedTuple):
    """Output of :meth:`ObservedCTMC.sample_path`.

    Attributes
    ----------
    value : Array, shape (..., max_jumps + 1, 2)
        The hidden path in the :class:`MarkovJumpProcess` encoding, on the window from
        ``t0`` (or ``times[0]``) to ``times[-1]``.
    states : Array of int32, shape (..., T)
        The hidden states at ``times`` (forward-filter backward-sample draws); the path
        passes through them.
    overflow : Array of bool, shape (...)
        True when the path is not a valid draw (a bridge overflowed, or more than
        ``max_jumps`` jumps in all); ``value[..., -1, 0]`` is then NaN.
    """

    value: jax.Array
    states: jax.Array
    overflow: jax.Array


# --------------------------------------------------------------------------------------
# argument checks and helpers
# --------------------------------------------------------------------------------------


def _float(x):
    x = jnp.asarray(x)
    return x.astype(jnp.result_type(x.dtype, jnp.float32))


@partial(jax.jit, static_argnames=("method", "static"))
def _jit_call(d, *args, method, static=()):
    """``d.<method>(*args, *static)`` compiled as one program (``method`` may be dotted).

    Eager calls would otherwise compile and dispatch every small op separately (the
    distributions are pytrees, so ``d`` is traced through its parameters).
    """
    fn = d
    for part in method.split("."):
        fn = getattr(fn, part)
    return fn(*args, *static)


def _check_times(times, t0, strict=False):
    ct, c0 = _concrete(times), _concrete(t0)
    if ct is None or (t0 is not None and c0 is None):
        if strict:
            raise RuntimeError("Cannot validate arguments inside jitted code.")
        return
    if not np.all(np.isfinite(ct)):
        raise ValueError("times must be finite; got NaN or inf")
    d = np.diff(ct, axis=-1)
    if np.any(d <= 0):
        idx = np.argwhere(d <= 0)[0]
        nxt = tuple(idx[:-1]) + (idx[-1] + 1,)
        raise ValueError(
            f"times must be strictly increasing; got times[..., {idx[-1]}] = "
            f"{ct[tuple(idx)]} followed by {ct[nxt]}"
        )
    if c0 is not None and not (np.all(np.isfinite(c0)) and np.all(c0 < ct[..., 0])):
        raise ValueError(f"t0 must be finite and < times[..., 0]; got t0={c0}")


def mean_dwell_times(generator: ArrayLike) -> jax.Array:
    """Mean holding time of each state, :math:`1 / q_i = -1 / q_{ii}`.

    Parameters
    ----------
    generator : ArrayLike, shape (..., K, K)

    Returns
    -------
    Array, shape (..., K)
        ``inf`` for absorbing states.
    """
    Q = _float(generator)
    _check_generator(Q)
    return -1.0 / jnp.diagonal(Q, axis1=-2, axis2=-1)


def _stationary(Q):
    batch = Q.shape[:-2]
    return _flat_map(C_.stationary_distribution, [Q], [2], batch)


class _Generator(constraints.ParameterFreeConstraint):
    """Matrices with off-diagonals >= 0 and rows summing to zero (float tolerance)."""

    event_dim = 2

    def __call__(self, x):
        K = x.shape[-1]
        off = ~jnp.eye(K, dtype=bool)
        scale = jnp.max(jnp.abs(x), axis=(-2, -1), keepdims=True)[..., 0]
        tol = 100 * K * jnp.finfo(jnp.result_type(x)).eps * scale
        rows_ok = jnp.all(jnp.abs(jnp.sum(x, -1)) <= tol, -1)
        return jnp.all(jnp.where(off, x >= 0, True), axis=(-2, -1)) & rows_ok

    def feasible_like(self, prototype):
        return jnp.zeros_like(prototype)


class _JumpPath(constraints.Constraint):
    """Encoded paths (module docstring) of a K-state chain on [t0, t_end]."""

    is_discrete = True
    event_dim = 2

    def __init__(self, num_states, t0, t_end):
        self.num_states, self.t0, self.t_end = num_states, t0, t_end

    def __call__(self, x):
        t, s = x[..., 0], x[..., 1]
        ok_s = jnp.all((s == jnp.round(s)) & (s >= 0) & (s < self.num_states), -1)
        ok_t = jnp.all(jnp.diff(t, axis=-1) >= 0, -1) & (t[..., 0] == self.t0)
        return ok_s & ok_t & (t[..., -1] <= self.t_end)

    def feasible_like(self, prototype):
        t = jnp.full(prototype.shape[:-1], self.t_end, prototype.dtype).at[..., 0].set(self.t0)
        return jnp.stack([t, jnp.zeros_like(t)], -1)

    def tree_flatten(self):
        return (self.t0, self.t_end), (("t0", "t_end"), {"num_states": self.num_states})


# --------------------------------------------------------------------------------------
# MarkovJumpProcess
# --------------------------------------------------------------------------------------


@jax.jit
def _decode(value):
    """Compact the state changes of one or more encoded paths (virtual rows dropped)."""
    t, s = value[..., 0], value[..., 1]
    M = value.shape[-2]
    states = jnp.round(jnp.nan_to_num(s)).astype(jnp.int32)
    change = jnp.concatenate(
        [jnp.ones(states.shape[:-1] + (1,), bool), states[..., 1:] != states[..., :-1]], -1
    )
    num_jumps = jnp.sum(change, -1).astype(jnp.int32) - 1
    pos = jnp.where(change, jnp.cumsum(change, -1) - 1, M)
    overflow = jnp.any(jnp.isnan(value), axis=(-2, -1))

    def compact(pos_, st, tt):
        last = st[jnp.argmax(jnp.where(pos_ < M, pos_, -1))]
        out_s = jnp.full(M, last, st.dtype).at[pos_].set(st, mode="drop")
        out_t = jnp.full(M, tt[-1], tt.dtype).at[pos_].set(tt, mode="drop")
        return out_s, out_t

    batch = value.shape[:-2]
    out_s, out_t = _flat_map(compact, [pos, states, t], [1, 1, 1], batch)
    return CTMCPath(out_s, out_t, num_jumps, overflow)


@partial(jax.jit, static_argnums=5)
def _simulate(rng_key, Q, pi, t0, t_end, max_jumps):
    """Gillespie's direct method, unrolled to a fixed ``max_jumps + 1`` events."""
    K = Q.shape[0]
    exit_rates = -jnp.diagonal(Q)
    off = ~jnp.eye(K, dtype=bool)
    jump_logits = jnp.where(off & (Q > 0), jnp.log(jnp.where(Q > 0, Q, 1.0)), -jnp.inf)
    k0, k1 = jax.random.split(rng_key)
    x0 = jax.random.categorical(k0, jnp.log(pi)).astype(jnp.int32)

    def step(carry, key):
        x, t = carry
        ke, kx = jax.random.split(key)
        q = exit_rates[x]
        hold = jnp.where(q > 0, jax.random.exponential(ke, dtype=Q.dtype) / q, jnp.inf)
        x_new = jax.random.categorical(kx, jump_logits[x]).astype(jnp.int32)
        x_new = jnp.where(q > 0, x_new, x)
        t_new = t + hold
        return (x_new, t_new), (x_new, t_new)

    _, (xs, ts) = lax.scan(step, (x0, t0), jax.random.split(k1, max_jumps + 1))
    # xs[i], ts[i]: the state entered by jump i+1 and its time
    overflow = ts[-1] < t_end
    inside = ts[:-1] < t_end
    n = jnp.sum(inside)
    states = jnp.concatenate([x0[None], xs[:-1]])
    times = jnp.concatenate([t0[None], ts[:-1]])
    i = jnp.arange(max_jumps + 1)
    states = jnp.where(i <= n, states, states[n])
    times = jnp.where(i <= n, times, t_end)
    times = times.at[-1].set(jnp.where(overflow, jnp.nan, times[-1]))
    return jnp.stack([times, states.astype(Q.dtype)], -1)


class MarkovJumpProcess(Distribution):
    r"""A fully observed continuous-time Markov chain path on :math:`[t_0, t_\mathrm{end}]`.

    The value is a padded path, a float array of shape ``(max_jumps + 1, 2)`` (times,
    states), encoded as in the module docstring. Its log-density is exact
    (:func:`probdyn.kernels.ctmc.path_log_likelihood`):

    .. math::

        \log p = \log \pi_{x_0} + \sum_{i=1}^{n} \log q_{x_{i-1} x_i}
            - \sum_{i=0}^{n} q_{x_i} (t_{i+1} - t_i),
        \qquad t_{n+1} = t_\mathrm{end},

    differentiable in ``generator`` and ``initial_probs``. ``sample`` runs Gillespie's
    direct method (Gillespie, 1977) as a ``lax.scan`` of exactly ``max_jumps + 1`` events
    (jit/vmap friendly, cost independent of the path); a path with more than
    ``max_jumps`` jumps in the window is returned with NaN as its last time, never
    silently truncated, and its ``log_prob`` is NaN.

    Parameters
    ----------
    generator : ArrayLike, shape (..., K, K)
        Rate matrix: off-diagonals >= 0, rows summing to zero.
    initial_probs : ArrayLike, shape (..., K)
        Distribution of the state at ``t0``.
    t_end : float
        End of the window, > t0.
    max_jumps : int
        Static capacity of the encoded path.
    t0 : float
        Start of the window.
    validate_args : bool, optional
        NumPyro's switch (on by default in NumPyro 0.22): check concrete values of
        ``generator``, ``initial_probs``, ``t0 < t_end`` here and of paths passed to
        ``log_prob`` (raising on truncated or malformed paths). Shapes are always checked.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from probdyn.processes.ctmc import MarkovJumpProcess
    >>> Q = jnp.array([[-1.0, 1.0], [2.0, -2.0]])
    >>> d = MarkovJumpProcess(Q, jnp.array([1.0, 0.0]), t_end=5.0, max_jumps=64)
    >>> path = d.sample(jax.random.PRNGKey(0))          # (65, 2)
    >>> states, times, num_jumps, overflow = d.decode(path)
    """

    arg_constraints = {"generator": _Generator(), "initial_probs": constraints.simplex}
    pytree_data_fields = ("generator", "initial_probs", "t0", "t_end")
    pytree_aux_fields = ("max_jumps", "num_states")
    has_enumerate_support = False

    def __init__(
        self,
        generator: ArrayLike,
        initial_probs: ArrayLike,
        t_end: ArrayLike,
        max_jumps: int,
        *,
        t0: ArrayLike = 0.0,
        validate_args: bool | None = None,
    ):
        Q, p = _float(generator), _float(initial_probs)
        if Q.ndim < 2 or Q.shape[-1] != Q.shape[-2]:
            raise ValueError(f"generator must have shape (..., K, K); got {Q.shape}")
        K = Q.shape[-1]
        if p.ndim < 1 or p.shape[-1] != K:
            raise ValueError(
                f"initial_probs must have shape (..., K) with K={K} (from generator); got {p.shape}"
            )
        if int(max_jumps) != max_jumps or int(max_jumps) < 1:
            raise ValueError(f"max_jumps must be a positive int; got {max_jumps!r}")
        dtype = jnp.result_type(Q.dtype, p.dtype)
        t0, t_end = jnp.asarray(t0, dtype), jnp.asarray(t_end, dtype)
        if t0.ndim or t_end.ndim:
            raise ValueError(f"t0 and t_end must be scalars; got shapes {t0.shape}, {t_end.shape}")
        try:
            batch_shape = jnp.broadcast_shapes(Q.shape[:-2], p.shape[:-1])
        except ValueError as err:
            raise ValueError(
                f"batch shapes of generator {Q.shape[:-2]} and initial_probs {p.shape[:-1]} "
                "do not broadcast"
            ) from err
        self.generator, self.initial_probs = Q.astype(dtype), p.astype(dtype)
        self.t0, self.t_end = t0, t_end
        self.max_jumps, self.num_states = int(max_jumps), K
        super().__init__(
            batch_shape=batch_shape,
            event_shape=(self.max_jumps + 1, 2),
            validate_args=validate_args,
        )

    def validate_args(self, strict: bool = True) -> None:
        """Check ``generator``, ``initial_probs``, ``t0`` < ``t_end``; errors name them."""
        with jax.ensure_compile_time_eval():
            _check_generator(self.generator, strict)
            _check_probs(self.initial_probs, self.num_states, strict)
            c0, c1 = _concrete(self.t0), _concrete(self.t_end)
            if c0 is None or c1 is None:
                if strict:
                    raise RuntimeError("Cannot validate arguments inside jitted code.")
            elif not (np.isfinite([c0, c1]).all() and c1 > c0):
                raise ValueError(f"t_end must be finite and > t0; got t0={c0}, t_end={c1}")

    @constraints.dependent_property(is_discrete=True, event_dim=2)
    def support(self):
        return _JumpPath(self.num_states, self.t0, self.t_end)

    @property
    def stationary_distribution(self) -> jax.Array:
        """Stationary distribution of ``generator``, shape (..., K)."""
        return _stationary(self.generator)

    @property
    def mean_dwell_times(self) -> jax.Array:
        """Mean holding times :math:`-1/q_{ii}`, shape (..., K)."""
        return mean_dwell_times(self.generator)

    # ----------------------------------------------------------------------------------
    # encoding
    # ----------------------------------------------------------------------------------

    @staticmethod
    def encode(
        states: ArrayLike,
        jump_times: ArrayLike,
        *,
        t_end: float,
        max_jumps: int,
        t0: float = 0.0,
    ) -> jax.Array:
        """Encode one path given as its visited states and jump times (concrete input).

        Parameters
        ----------
        states : ArrayLike of int, shape (n + 1,)
            Initial state then the state entered by each jump.
        jump_times : ArrayLike, shape (n,)
            Absolute jump times, strictly increasing in (t0, t_end].
        t_end, t0 : float
            The window.
        max_jumps : int
            Capacity; ``n <= max_jumps``.

        Returns
        -------
        Array, shape (max_jumps + 1, 2)
        """
        s = np.asarray(states)
        tj = np.asarray(jump_times, dtype=float).reshape(-1)
        if s.ndim != 1 or s.size < 1 or not np.all(s == np.round(s)):
            raise ValueError(f"states must be a non-empty integer vector (n+1,); got {s}")
        if tj.shape != (s.size - 1,):
            raise ValueError(
                f"jump_times must have shape (n,) = ({s.size - 1},) for {s.size} states; "
                f"got {tj.shape}"
            )
        if s.size - 1 > max_jumps:
            raise ValueError(f"the path has {s.size - 1} jumps, more than max_jumps={max_jumps}")
        grid = np.concatenate([[t0], tj])
        if not (np.all(np.isfinite(grid)) and np.all(np.diff(grid) > 0) and grid[-1] <= t_end):
            raise ValueError(
                f"jump_times must be strictly increasing in (t0, t_end] = ({t0}, {t_end}]; "
                f"got {tj.tolist()}"
            )
        if np.any(s[1:] == s[:-1]):
            raise ValueError("states must change at every jump; got a jump to the same state")
        n = s.size - 1
        t = np.full(max_jumps + 1, float(t_end))
        t[: n + 1] = grid
        x = np.full(max_jumps + 1, float(s[-1]))
        x[: n + 1] = s
        return jnp.stack([jnp.asarray(t), jnp.asarray(x)], -1).astype(_float(0.0).dtype)

    @staticmethod
    def decode(value: ArrayLike) -> CTMCPath:
        """Decode encoded paths of shape (..., max_jumps + 1, 2) into a :class:`CTMCPath`.

        Rows that do not change the state are dropped (virtual events); the result is
        re-padded with the last state and the last row's time.
        """
        value = _float(value)
        if value.ndim < 2 or value.shape[-1] != 2:
            raise ValueError(f"value must have shape (..., max_jumps + 1, 2); got {value.shape}")
        return _decode(value)

    # ----------------------------------------------------------------------------------
    # distribution interface
    # ----------------------------------------------------------------------------------

    def _check_value(self, value):
        value = _float(value)
        if value.ndim < 2 or value.shape[-2:] != self.event_shape:
            raise ValueError(
                f"value must have shape (..., {self.max_jumps + 1}, 2) (max_jumps + 1 rows of "
                f"(time, state)); got {value.shape}"
            )
        if not self._validate_args:
            return value
        v = _concrete(value)
        if v is None:
            return value
        if np.isnan(v).any():
            raise ValueError(
                "value is a truncated path (NaN marks more than max_jumps="
                f"{self.max_jumps} jumps); its log_prob is undefined: raise max_jumps"
            )
        t, s = v[..., 0], v[..., 1]
        if np.any(s != np.round(s)) or s.min() < 0 or s.max() >= self.num_states:
            raise ValueError(f"value states (column 1) must be integers in [0, {self.num_states})")
        t0, t_end = _concrete(self.t0), _concrete(self.t_end)
        if t0 is not None and np.any(t[..., 0] != t0):
            raise ValueError(f"value[..., 0, 0] must equal t0={t0}; got {np.unique(t[..., 0])}")
        if np.any(np.diff(t, axis=-1) < 0) or (t_end is not None and t.max() > t_end):
            raise ValueError(
                f"value times (column 0) must be non-decreasing in [t0, t_end={t_end}]"
            )
        d = _decode(value)
        tt, n = np.asarray(d.times), np.asarray(d.num_jumps)
        i = np.arange(tt.shape[-1])
        real = (i >= 1) & (i <= n[..., None])
        if np.any(real & (np.diff(tt, axis=-1, prepend=-np.inf) <= 0)):
            raise ValueError("value jump times must be strictly increasing")
        return value

    def log_prob(self, value: ArrayLike) -> jax.Array:
        """Exact path log-density.

        Parameters
        ----------
        value : ArrayLike, shape (..., max_jumps + 1, 2)

        Returns
        -------
        Array, shape (...)
            NaN for truncated paths.
        """
        value = self._check_value(value)
        return _jit_call(self, value, method="_log_prob")

    def _log_prob(self, value):
        d = _decode(value)
        batch = jnp.broadcast_shapes(value.shape[:-2], self.batch_shape)
        dtype = jnp.result_type(value.dtype, self.generator.dtype)
        t0, t_end = self.t0.astype(dtype), self.t_end.astype(dtype)

        def one(Q, pi, states, times, n):
            return C_.path_log_likelihood(Q, pi, states, times - t0, t_end - t0, n)

        args = [self.generator, self.initial_probs, d.states, d.times.astype(dtype), d.num_jumps]
        # always vmap: the kernel's concrete checks would reject NaN-marked paths
        lp = _flat_map(one, args, [2, 1, 1, 1, 0], batch, direct="never")
        return jnp.where(jnp.broadcast_to(d.overflow, batch), jnp.nan, lp)

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """Draw paths, shape (*sample_shape, *batch_shape, max_jumps + 1, 2).

        Truncated draws (more than ``max_jumps`` jumps) have NaN as their last time; check
        with ``decode(x).overflow``.
        """
        return _jit_call(self, key, method="_sample", static=(tuple(sample_shape),))

    def _sample(self, key, sample_shape):
        full = tuple(sample_shape) + self.batch_shape
        n = int(np.prod(full))
        K = self.num_states
        Q = jnp.broadcast_to(self.generator, full + (K, K)).reshape((n, K, K))
        pi = jnp.broadcast_to(self.initial_probs, full + (K,)).reshape((n, K))
        keys = jax.random.split(key, n)
        sim = jax.vmap(_simulate, (0, 0, 0, None, None, None))
        out = sim(keys, Q, pi, self.t0, self.t_end, self.max_jumps)
        return out.reshape(full + self.event_shape)


# --------------------------------------------------------------------------------------
# ObservedCTMC
# --------------------------------------------------------------------------------------


def _bridged_path(key, Q, pi, times, t0, z, *, has_t0, max_jumps, J, Nv):
    """One hidden path through the states ``z`` (T,) at ``times`` (T,), by bridges."""
    T = times.shape[0]
    kz, kb = jax.random.split(key)
    if has_t0:
        P0 = C_.transition_matrices(Q, (times[0] - t0)[None])[0]
        logits = jnp.log(pi) + jnp.log(P0[:, z[0]])
        z_start = jax.random.categorical(kz, logits).astype(jnp.int32)
        starts = jnp.concatenate([z_start[None], z[:-1]])
        ends, t_lo = z, jnp.concatenate([t0[None], times[:-1]])
        t_start = t0
    else:
        z_start, starts, ends, t_lo, t_start = z[0], z[:-1], z[1:], times[:-1], times[0]
    t_hi = times if has_t0 else times[1:]
    M = max_jumps + 1
    states = jnp.full(M, z[-1], jnp.int32).at[0].set(z_start)
    out_t = jnp.full(M, times[-1], times.dtype).at[0].set(t_start)
    overflow = jnp.zeros((), bool)
    if T > 1 or has_t0:
        bridge = partial(C_.sample_bridge, max_jumps=J, max_virtual_jumps=Nv)
        keys = jax.random.split(kb, starts.shape[0])
        b = jax.vmap(lambda k, a, e, dt: bridge(k, Q, a, e, dt))(keys, starts, ends, t_hi - t_lo)
        n_i = b.num_jumps
        offs = 1 + jnp.cumsum(n_i) - n_i
        r = jnp.arange(1, J + 1)
        pos = jnp.where(r[None] <= n_i[:, None], offs[:, None] + r[None] - 1, M)
        states = states.at[pos.ravel()].set(b.states[:, 1:].ravel(), mode="drop")
        out_t = out_t.at[pos.ravel()].set((t_lo[:, None] + b.times[:, 1:]).ravel(), mode="drop")
        overflow = jnp.any(b.overflow) | (jnp.sum(n_i) > max_jumps)
    out_t = out_t.at[-1].set(jnp.where(overflow, jnp.nan, out_t[-1]))
    return jnp.stack([out_t, states.astype(times.dtype)], -1), overflow


class ObservedCTMC(Distribution):
    r"""A hidden continuous-time Markov chain observed at irregular times.

    The value is the observation sequence :math:`y_{0:T-1}` at ``times``
    :math:`\tau_0 < \dots < \tau_{T-1}`, event shape ``(T, *emission.event_shape)``. The
    hidden states are summed out exactly by the forward algorithm with time-varying
    transition matrices :math:`P(\tau_{n+1} - \tau_n) = e^{Q (\tau_{n+1} - \tau_n)}`
    (:func:`probdyn.kernels.ctmc.transition_matrices`), i.e. a :class:`DiscreteHMM` with
    ``time_varying=True``:

    .. math::

        p(y) = \sum_{z} p(z_0) \prod_{n=1}^{T-1} P(\tau_n - \tau_{n-1})_{z_{n-1} z_n}
            \prod_{n=0}^{T-1} p(y_n \mid z_n).

    Differentiable in ``generator``, ``initial_probs`` and the emission parameters.

    Parameters
    ----------
    generator : ArrayLike, shape (..., K, K)
    initial_probs : ArrayLike, shape (..., K)
        State distribution at ``times[0]``, or at ``t0`` when given (then propagated by
        :math:`P(\tau_0 - t_0)`).
    times : ArrayLike, shape (..., T)
        Strictly increasing observation times; leading axes are batch axes (several
        sequences with their own times, same T).
    emission : numpyro.distributions.Distribution
        Rightmost batch axis of size K, one component per state, e.g. ``Normal(means_K,
        sd)`` (as for :class:`DiscreteHMM`).
    mask : ArrayLike of bool, shape (..., T), optional
        False where an observation is missing.
    t0 : float or ArrayLike, shape (...), optional
        Time at which ``initial_probs`` holds, < ``times[..., 0]``.
    method : {"auto", "pade", "eigh", "uniformization"}
        Matrix exponential method (static; see :func:`transition_matrices`).
    validate_args : bool, optional
        NumPyro's switch (on by default in NumPyro 0.22): check concrete values of
        ``generator``, ``initial_probs``, ``times`` and ``t0`` here and observations against
        the emission support in ``log_prob``. Shapes are always checked.

    Examples
    --------
    A two-state ion channel (closed 0, open 1) with opening/closing rates ``k``, current
    observed with noise at irregular times:

    >>> import numpyro, numpyro.distributions as dist, jax.numpy as jnp
    >>> from probdyn.processes.ctmc import ObservedCTMC
    >>> def model(times, y=None):
    ...     k = numpyro.sample("k", dist.LogNormal(0.0, 1.0).expand([2]).to_event(1))
    ...     Q = jnp.array([[-k[0], k[0]], [k[1], -k[1]]])
    ...     em = dist.Normal(jnp.array([0.0, 1.0]), 0.3)
    ...     numpyro.sample("y", ObservedCTMC(Q, jnp.array([0.5, 0.5]), times, em), obs=y)
    """

    arg_constraints = {
        "generator": _Generator(),
        "initial_probs": constraints.simplex,
        "times": constraints.ordered_vector,
    }
    pytree_data_fields = ("generator", "initial_probs", "times", "emission", "obs_mask", "t0")
    pytree_aux_fields = ("method", "num_states", "num_timesteps")
    has_enumerate_support = False

    def __init__(
        self,
        generator: ArrayLike,
        initial_probs: ArrayLike,
        times: ArrayLike,
        emission: Distribution,
        *,
        mask: ArrayLike | None = None,
        t0: ArrayLike | None = None,
        method: str = "auto",
        validate_args: bool | None = None,
    ):
        Q, p, tt = _float(generator), _float(initial_probs), _float(times)
        if Q.ndim < 2 or Q.shape[-1] != Q.shape[-2]:
            raise ValueError(f"generator must have shape (..., K, K); got {Q.shape}")
        K = Q.shape[-1]
        if p.ndim < 1 or p.shape[-1] != K:
            raise ValueError(
                f"initial_probs must have shape (..., K) with K={K} (from generator); got {p.shape}"
            )
        if not isinstance(emission, Distribution):
            raise TypeError(
                "emission must be a numpyro Distribution with a trailing batch axis of size "
                f"num_states; got {type(emission).__name__}"
            )
        if not emission.batch_shape or emission.batch_shape[-1] != K:
            raise ValueError(
                f"emission must have a trailing batch axis of size num_states={K} (from "
                f"generator); got emission.batch_shape={emission.batch_shape}"
            )
        if method not in ("auto", "pade", "eigh", "uniformization"):
            raise ValueError(
                f"method must be 'auto', 'pade', 'eigh' or 'uniformization'; got {method!r}"
            )
        if tt.ndim < 1 or tt.shape[-1] < 1:
            raise ValueError(f"times must have shape (..., T) with T >= 1; got {tt.shape}")
        T = tt.shape[-1]
        shapes = [Q.shape[:-2], p.shape[:-1], tt.shape[:-1], emission.batch_shape[:-1]]
        if t0 is not None:
            t0 = _float(t0)
            shapes.append(t0.shape)
        if mask is not None:
            mask = jnp.asarray(mask)
            if mask.dtype != jnp.bool_:
                raise TypeError(f"mask must be a boolean array; got dtype {mask.dtype}")
            if mask.ndim < 1 or mask.shape[-1] != T:
                raise ValueError(f"mask must have shape (..., T={T}); got {mask.shape}")
            shapes.append(mask.shape[:-1])
        try:
            batch_shape = jnp.broadcast_shapes(*shapes)
        except ValueError as err:
            raise ValueError(
                "batch shapes of generator, initial_probs, times, emission (without the state "
                f"axis), t0 and mask do not broadcast: {shapes}"
            ) from err
        self.generator, self.initial_probs, self.times = Q, p, tt
        self.emission, self.obs_mask, self.t0 = emission, mask, t0
        self.method, self.num_states, self.num_timesteps = method, K, T
        super().__init__(
            batch_shape=batch_shape,
            event_shape=(T,) + tuple(emission.event_shape),
            validate_args=validate_args,
        )

    def validate_args(self, strict: bool = True) -> None:
        """Check ``generator``, ``initial_probs``, ``times``, ``t0``; errors name them."""
        with jax.ensure_compile_time_eval():
            _check_generator(self.generator, strict)
            _check_probs(self.initial_probs, self.num_states, strict)
            _check_times(self.times, self.t0, strict)

    @constraints.dependent_property(is_discrete=False, event_dim=None)
    def support(self):
        return constraints.independent(self.emission.support, 1)

    @property
    def stationary_distribution(self) -> jax.Array:
        """Stationary distribution of ``generator``, shape (..., K)."""
        return _stationary(self.generator)

    @property
    def mean_dwell_times(self) -> jax.Array:
        """Mean holding times :math:`-1/q_{ii}`, shape (..., K)."""
        return mean_dwell_times(self.generator)

    # ----------------------------------------------------------------------------------
    # the equivalent discrete-time HMM
    # ----------------------------------------------------------------------------------

    @lazy_property
    def _hmm(self):
        K, T = self.num_states, self.num_timesteps
        Q, tt = self.generator, self.times
        has_t0 = self.t0 is not None
        bq = jnp.broadcast_shapes(Q.shape[:-2], tt.shape[:-1])
        if has_t0:
            bq = jnp.broadcast_shapes(bq, self.t0.shape)
        tt = jnp.broadcast_to(tt, bq + (T,))
        gaps = jnp.diff(tt, axis=-1)
        if has_t0:
            gaps = jnp.concatenate([(tt[..., 0] - self.t0)[..., None], gaps], -1)
        dtype = jnp.result_type(Q.dtype, gaps.dtype)
        Qb, gaps = jnp.broadcast_to(Q, bq + (K, K)).astype(dtype), gaps.astype(dtype)
        P = _flat_map(partial(C_.transition_matrices, method=self.method), [Qb, gaps], [2, 1], bq)
        pi = self.initial_probs.astype(dtype)
        if has_t0:
            pi = jnp.einsum("...i,...ij->...j", pi, P[..., 0, :, :])
            P = P[..., 1:, :, :]
        return DiscreteHMM(
            pi, P, self.emission, time_varying=True, mask=self.obs_mask, validate_args=False
        )

    @property
    def transition_matrices(self) -> jax.Array:
        """:math:`P(\\tau_{n+1} - \\tau_n)`, shape (..., T-1, K, K)."""
        return self._hmm.transition_matrix

    def log_prob(self, value: ArrayLike) -> jax.Array:
        """Exact marginal log-likelihood of observations, shape (...)."""
        value = jnp.asarray(value)
        _check_missing(self, value)
        if self._validate_args:
            filled = value
            if self.obs_mask is not None and jnp.issubdtype(value.dtype, jnp.floating):
                filled = jnp.where(jnp.isnan(value), 0.0, value)
            _validate_sample(self, filled)
        return _jit_call(self, jnp.asarray(value), method="_hmm.log_prob")

    def pointwise_log_prob(self, value: ArrayLike) -> jax.Array:
        """One-step-ahead log predictive densities :math:`\\log p(y_n \\mid y_{0:n-1})`
        of the observations, shape (..., T); they sum over time to :meth:`log_prob`
        (0 at masked steps). The pointwise log-likelihood of :func:`probdyn.fit`."""
        value = jnp.asarray(value)
        if self.obs_mask is not None and jnp.issubdtype(value.dtype, jnp.floating):
            value = jnp.where(jnp.isnan(value), 0.0, value)
        return _jit_call(self, value, method="_hmm.pointwise_log_prob")

    def sample_with_states(
        self, key: jax.Array, sample_shape: tuple[int, ...] = ()
    ) -> tuple[jax.Array, jax.Array]:
        """Hidden states at ``times`` (exact, via :math:`P(dt)`) and observations.

        Returns
        -------
        states : Array of int32, shape (*sample_shape, *batch_shape, T)
        observations : Array, shape (*sample_shape, *batch_shape, T, *emission.event_shape)
        """
        return _jit_call(self, key, method="_hmm.sample_with_states", static=(tuple(sample_shape),))

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """Draw observations, shape (*sample_shape, *batch_shape, T, *event)."""
        return self.sample_with_states(key, sample_shape)[1]

    def filter(self, obs: ArrayLike):
        """Forward filter at ``times`` (see :meth:`DiscreteHMM.filter`), (..., T, K)."""
        return _jit_call(self, jnp.asarray(obs), method="_hmm.filter")

    def smooth(self, obs: ArrayLike):
        """Smoothed marginals at ``times``; ``smoothed_probs`` has shape (..., T, K)."""
        return _jit_call(self, jnp.asarray(obs), method="_hmm.smooth")

    def two_slice_marginals(self, obs: ArrayLike) -> jax.Array:
        """:math:`p(z_n, z_{n+1} \\mid y)`, shape (..., T-1, K, K)."""
        return _jit_call(self, jnp.asarray(obs), method="_hmm.two_slice_marginals")

    def viterbi(self, obs: ArrayLike) -> jax.Array:
        """Most probable hidden states at ``times``, int32 (..., T)."""
        return _jit_call(self, jnp.asarray(obs), method="_hmm.viterbi")

    def sample_posterior(self, key: jax.Array, obs: ArrayLike, num_samples: int = 1) -> jax.Array:
        """Posterior hidden states at ``times`` by FFBS, int32 (num_samples, ..., T)."""
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be a positive int; got {num_samples}")
        return _jit_call(
            self,
            key,
            jnp.asarray(obs),
            method="_hmm.sample_posterior",
            static=(int(num_samples),),
        )

    def sample_path(
        self,
        key: jax.Array,
        obs: ArrayLike,
        max_jumps: int,
        *,
        num_samples: int | None = None,
        max_jumps_per_interval: int | None = None,
        max_virtual_jumps: int | None = None,
    ) -> ObservedCTMCPath:
        """Posterior draws of the whole hidden continuous-time path given observations.

        States at ``times`` are drawn by FFBS; between consecutive times (and from ``t0``
        when given: the state there is drawn given the first one), endpoint-conditioned
        paths are drawn by uniformization (:func:`probdyn.kernels.ctmc.sample_bridge`,
        Hobolth & Stone 2009) and concatenated.

        Parameters
        ----------
        key : Array
        obs : ArrayLike, shape (..., T, *event)
        max_jumps : int
            Capacity of the whole path (static).
        num_samples : int, optional
            Number of draws; a leading axis when given.
        max_jumps_per_interval : int, optional
            Capacity of each bridge; default ``max_jumps``.
        max_virtual_jumps : int, optional
            Uniformization bound of each bridge (see :func:`sample_bridge`); must exceed
            about :math:`\\lambda\\, dt + 6 \\sqrt{\\lambda\\, dt}` for the largest exit rate
            :math:`\\lambda` and gap dt.

        Returns
        -------
        ObservedCTMCPath
            ``value`` (S?, ..., max_jumps + 1, 2), ``states`` (S?, ..., T), ``overflow``
            (S?, ...).
        """
        if int(max_jumps) < 1:
            raise ValueError(f"max_jumps must be a positive int; got {max_jumps}")
        J = int(max_jumps if max_jumps_per_interval is None else max_jumps_per_interval)
        Nv = 2 * J + 32 if max_virtual_jumps is None else int(max_virtual_jumps)
        if J < 1 or Nv < 1:
            raise ValueError(
                "max_jumps_per_interval and max_virtual_jumps must be positive ints; got "
                f"{max_jumps_per_interval}, {max_virtual_jumps}"
            )
        S = 1 if num_samples is None else int(num_samples)
        if S < 1:
            raise ValueError(f"num_samples must be a positive int; got {num_samples}")
        static = (int(max_jumps), S, J, Nv)
        out = _jit_call(self, key, jnp.asarray(obs), method="_sample_path", static=static)
        if num_samples is None:
            out = ObservedCTMCPath(*(x[0] for x in out))
        return out

    def _sample_path(self, key, obs, max_jumps, S, J, Nv):
        k_z, k_p = jax.random.split(key)
        z = self._hmm.sample_posterior(k_z, obs, S)  # (S, *b, T)
        full = z.shape[:-1]
        has_t0 = self.t0 is not None
        t0 = self.t0 if has_t0 else jnp.zeros((), self.times.dtype)
        dtype = self._hmm.transition_matrix.dtype
        keys = jax.random.split(k_p, int(np.prod(full)))
        args = [
            keys.reshape(full + keys.shape[1:]),
            self.generator.astype(dtype),
            self.initial_probs.astype(dtype),
            self.times.astype(dtype),
            t0.astype(dtype),
            z,
        ]
        fn = partial(_bridged_path, has_t0=has_t0, max_jumps=max_jumps, J=J, Nv=Nv)
        value, overflow = _flat_map(fn, args, [keys.ndim - 1, 2, 1, 1, 0, 1], full, direct="never")
        return ObservedCTMCPath(value, z, overflow)
