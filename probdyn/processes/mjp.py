"""Fully observed continuous-time Markov chain paths as a NumPyro distribution.

:class:`MarkovJumpProcess` is a distribution over fully observed paths of a chain with
``generator`` Q (K, K) on a window :math:`[t_0, t_\\mathrm{end}]` (the hidden-chain
counterpart is :class:`probdyn.processes.ObservedCTMC`).

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

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from numpyro.distributions import Distribution, constraints

from probdyn.kernels import ctmc as C_
from probdyn.kernels.ctmc_paths import simulate_path
from probdyn.processes._ctmc import (
    Generator,
    check_generator,
    check_probs,
    concrete,
    flat_map,
    float_array,
    jit_call,
    stationary,
)

__all__ = ["CTMCPath", "MarkovJumpProcess", "mean_dwell_times"]


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


def mean_dwell_times(generator: ArrayLike) -> jax.Array:
    """Mean holding time of each state, :math:`1 / q_i = -1 / q_{ii}`
    (:func:`probdyn.kernels.ctmc.mean_dwell_times`, with the generator checked).

    Parameters
    ----------
    generator : ArrayLike, shape (..., K, K)

    Returns
    -------
    Array, shape (..., K)
        ``inf`` for absorbing states.
    """
    Q = float_array(generator)
    check_generator(Q)
    return C_.mean_dwell_times(Q)


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
    out_s, out_t = flat_map(compact, [pos, states, t], [1, 1, 1], batch)
    return CTMCPath(out_s, out_t, num_jumps, overflow)


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

    arg_constraints = {"generator": Generator(), "initial_probs": constraints.simplex}
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
        Q, p = float_array(generator), float_array(initial_probs)
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
            check_generator(self.generator, strict)
            check_probs(self.initial_probs, self.num_states, strict)
            c0, c1 = concrete(self.t0), concrete(self.t_end)
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
        return stationary(self.generator)

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
        return jnp.stack([jnp.asarray(t), jnp.asarray(x)], -1).astype(float_array(0.0).dtype)

    @staticmethod
    def decode(value: ArrayLike) -> CTMCPath:
        """Decode encoded paths of shape (..., max_jumps + 1, 2) into a :class:`CTMCPath`.

        Rows that do not change the state are dropped (virtual events); the result is
        re-padded with the last state and the last row's time.
        """
        value = float_array(value)
        if value.ndim < 2 or value.shape[-1] != 2:
            raise ValueError(f"value must have shape (..., max_jumps + 1, 2); got {value.shape}")
        return _decode(value)

    # ----------------------------------------------------------------------------------
    # distribution interface
    # ----------------------------------------------------------------------------------

    def _check_value(self, value):
        value = float_array(value)
        if value.ndim < 2 or value.shape[-2:] != self.event_shape:
            raise ValueError(
                f"value must have shape (..., {self.max_jumps + 1}, 2) (max_jumps + 1 rows of "
                f"(time, state)); got {value.shape}"
            )
        if not self._validate_args:
            return value
        v = concrete(value)
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
        t0, t_end = concrete(self.t0), concrete(self.t_end)
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
        return jit_call(self, value, method="_log_prob")

    def _log_prob(self, value):
        d = _decode(value)
        batch = jnp.broadcast_shapes(value.shape[:-2], self.batch_shape)
        dtype = jnp.result_type(value.dtype, self.generator.dtype)
        t0, t_end = self.t0.astype(dtype), self.t_end.astype(dtype)

        def one(Q, pi, states, times, n):
            return C_.path_log_likelihood(Q, pi, states, times - t0, t_end - t0, n)

        args = [self.generator, self.initial_probs, d.states, d.times.astype(dtype), d.num_jumps]
        # always vmap: the kernel's concrete checks would reject NaN-marked paths
        lp = flat_map(one, args, [2, 1, 1, 1, 0], batch, direct="never")
        return jnp.where(jnp.broadcast_to(d.overflow, batch), jnp.nan, lp)

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """Draw paths, shape (*sample_shape, *batch_shape, max_jumps + 1, 2).

        Truncated draws (more than ``max_jumps`` jumps) have NaN as their last time; check
        with ``decode(x).overflow``.
        """
        return jit_call(self, key, method="_sample", static=(tuple(sample_shape),))

    def _sample(self, key, sample_shape):
        full = tuple(sample_shape) + self.batch_shape
        n = int(np.prod(full))
        K = self.num_states
        Q = jnp.broadcast_to(self.generator, full + (K, K)).reshape((n, K, K))
        pi = jnp.broadcast_to(self.initial_probs, full + (K,)).reshape((n, K))
        keys = jax.random.split(key, n)
        sim = jax.vmap(simulate_path, (0, 0, 0, None, None, None))
        out = sim(keys, Q, pi, self.t0, self.t_end, self.max_jumps)
        return out.reshape(full + self.event_shape)
