"""A hidden continuous-time Markov chain observed at irregular times, as a NumPyro
distribution (:class:`ObservedCTMC`): the states are summed out exactly by the forward
algorithm over :math:`P(dt_n) = e^{Q\\, dt_n}`; whole hidden paths are drawn by FFBS and
endpoint-conditioned bridges (:func:`probdyn.kernels.ctmc_paths.sample_bridged_path`). Paths are
encoded as for :class:`probdyn.processes.MarkovJumpProcess`.

References
----------
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
from jax.typing import ArrayLike
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.util import lazy_property

from probdyn.kernels import ctmc as C_
from probdyn.kernels.ctmc_paths import sample_bridged_path
from probdyn.processes._checks import check_missing as _check_missing
from probdyn.processes._checks import validate_sample as _validate_sample
from probdyn.processes._ctmc import (
    Generator,
    check_generator,
    check_probs,
    check_times,
    flat_map,
    float_array,
    jit_call,
    stationary,
)
from probdyn.processes.hmm import DiscreteHMM
from probdyn.processes.mjp import mean_dwell_times

__all__ = ["ObservedCTMC", "ObservedCTMCPath"]


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
        "generator": Generator(),
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
        Q, p, tt = float_array(generator), float_array(initial_probs), float_array(times)
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
            t0 = float_array(t0)
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
            check_generator(self.generator, strict)
            check_probs(self.initial_probs, self.num_states, strict)
            check_times(self.times, self.t0, strict)

    @constraints.dependent_property(is_discrete=False, event_dim=None)
    def support(self):
        return constraints.independent(self.emission.support, 1)

    @property
    def stationary_distribution(self) -> jax.Array:
        """Stationary distribution of ``generator``, shape (..., K)."""
        return stationary(self.generator)

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
        P = flat_map(partial(C_.transition_matrices, method=self.method), [Qb, gaps], [2, 1], bq)
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
        return jit_call(self, jnp.asarray(value), method="_hmm.log_prob")

    def pointwise_log_prob(self, value: ArrayLike) -> jax.Array:
        """One-step-ahead log predictive densities :math:`\\log p(y_n \\mid y_{0:n-1})`
        of the observations, shape (..., T); they sum over time to :meth:`log_prob`
        (0 at masked steps). The pointwise log-likelihood of :func:`probdyn.fit`."""
        value = jnp.asarray(value)
        if self.obs_mask is not None and jnp.issubdtype(value.dtype, jnp.floating):
            value = jnp.where(jnp.isnan(value), 0.0, value)
        return jit_call(self, value, method="_hmm.pointwise_log_prob")

    def sample_with_states(
        self, key: jax.Array, sample_shape: tuple[int, ...] = ()
    ) -> tuple[jax.Array, jax.Array]:
        """Hidden states at ``times`` (exact, via :math:`P(dt)`) and observations.

        Returns
        -------
        states : Array of int32, shape (*sample_shape, *batch_shape, T)
        observations : Array, shape (*sample_shape, *batch_shape, T, *emission.event_shape)
        """
        return jit_call(self, key, method="_hmm.sample_with_states", static=(tuple(sample_shape),))

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """Draw observations, shape (*sample_shape, *batch_shape, T, *event)."""
        return self.sample_with_states(key, sample_shape)[1]

    def filter(self, obs: ArrayLike):
        """Forward filter at ``times`` (see :meth:`DiscreteHMM.filter`), (..., T, K)."""
        return jit_call(self, jnp.asarray(obs), method="_hmm.filter")

    def smooth(self, obs: ArrayLike):
        """Smoothed marginals at ``times``; ``smoothed_probs`` has shape (..., T, K)."""
        return jit_call(self, jnp.asarray(obs), method="_hmm.smooth")

    def two_slice_marginals(self, obs: ArrayLike) -> jax.Array:
        """:math:`p(z_n, z_{n+1} \\mid y)`, shape (..., T-1, K, K)."""
        return jit_call(self, jnp.asarray(obs), method="_hmm.two_slice_marginals")

    def viterbi(self, obs: ArrayLike) -> jax.Array:
        """Most probable hidden states at ``times``, int32 (..., T)."""
        return jit_call(self, jnp.asarray(obs), method="_hmm.viterbi")

    def sample_posterior(self, key: jax.Array, obs: ArrayLike, num_samples: int = 1) -> jax.Array:
        """Posterior hidden states at ``times`` by FFBS, int32 (num_samples, ..., T)."""
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be a positive int; got {num_samples}")
        return jit_call(
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
        out = jit_call(self, key, jnp.asarray(obs), method="_sample_path", static=static)
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
        opts = dict(max_jumps=max_jumps, max_jumps_per_interval=J, max_virtual_jumps=Nv)

        def fn(k, Q, pi, times, t0, z):
            t0 = t0 if has_t0 else None
            return sample_bridged_path(k, Q, pi, times, z, t0=t0, **opts)

        value, overflow = flat_map(fn, args, [keys.ndim - 1, 2, 1, 1, 0, 1], full, direct="never")
        return ObservedCTMCPath(value, z, overflow)
