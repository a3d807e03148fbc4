"""Hidden Markov models as NumPyro distributions over observation sequences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.util import lazy_property
from numpyro.util import not_jax_tracer

from probdyn.kernels import hmm as K_
from probdyn.processes._batch import map_flat as _vmap_flat
from probdyn.processes._checks import check_missing as _check_missing
from probdyn.processes._checks import validate_sample as _validate_sample

__all__ = ["DiscreteHMM"]

_PARALLEL_CHOICES = (False, True, "auto")


def _resolve_parallel(parallel, num_timesteps):
    if parallel == "auto":
        # Associative scans pay O(K^3) work per step; they win only where many cores run
        # the O(log T) levels in parallel (GPU/TPU). On CPU the sequential scan is faster.
        return jax.default_backend() != "cpu" and num_timesteps >= 256
    return bool(parallel)


class DiscreteHMM(Distribution):
    r"""A hidden Markov model with discrete states, as a distribution over observations.

    The value is an observation sequence :math:`y_{0:T-1}` with event shape
    ``(T, *emission.event_shape)``; the hidden states are summed out exactly:

    .. math::

        p(y_{0:T-1}) = \sum_{z_{0:T-1}} \pi_{z_0} \prod_{t=1}^{T-1} A_{z_{t-1} z_t}
            \prod_{t=0}^{T-1} p(y_t \mid z_t),

    computed by the scaled forward algorithm (or its associative-scan form) of
    :mod:`probdyn.kernels.hmm`, with an analytic gradient from one forward-backward pass.

    Parameters
    ----------
    initial_probs : ArrayLike, shape (..., K), optional
        Distribution of the first state. Give this or ``initial_logits``.
    transition_matrix : ArrayLike, shape (..., K, K), optional
        Row-stochastic transition matrix, ``A[i, j] = p(z_{t+1} = j | z_t = i)``; with
        ``time_varying=True`` shape (..., T-1, K, K). Give this or ``transition_logits``.
    emission : numpyro.distributions.Distribution
        Emission distribution whose rightmost batch axis has size K, one component per
        state: ``Poisson(rates)`` with rates (..., K), ``Normal(locs, scales)``,
        ``Categorical(probs)`` with probs (..., K, C), ``MultivariateNormal(locs (..., K,
        D), ...)``, ... Its parameters do not vary over time.
    initial_logits : ArrayLike, shape (..., K), optional
        Unnormalised log-probabilities of the first state.
    transition_logits : ArrayLike, shape (..., K, K) or (..., T-1, K, K), optional
        Unnormalised log transition probabilities (normalised over the last axis).
    num_timesteps : int, optional
        Sequence length T. Needed for ``sample``; inferred from ``mask`` or time-varying
        transitions when those are given. When it is unknown, ``log_prob`` accepts any T
        (and ``event_shape`` reports T = 1).
    mask : ArrayLike of bool, shape (..., T), optional
        False where an observation is missing; that step contributes no emission term.
        Put any in-support placeholder at missing positions (NaN is replaced by 0).
        Stored as ``obs_mask`` (``mask`` is NumPyro's :meth:`Distribution.mask`).
    lengths : ArrayLike of int, shape (...), optional
        Valid length of each sequence in a padded batch; steps at or past the length are
        padding and contribute nothing (the chain is frozen there).
    parallel : bool or "auto"
        Parallel-in-time (associative scan) inference; "auto" uses it on GPU/TPU for
        T >= 256 and the sequential scan on CPU, where it is faster.
    time_varying : bool
        Whether the transition matrix carries a time axis of length T-1.
    robust : bool or None
        Underflow handling of the forward-backward recursions (see
        :func:`probdyn.kernels.hmm_log_likelihood`): None redoes a pass in the log domain
        when precision checks on the fast scaled pass fail; False never does (fastest,
        but silently wrong or NaN where probabilities fall below the float range); True
        always works in the log domain. The checks fail when a state's probability falls
        below ~e^-71 (float32) while it could still come back. Under an outer
        ``vmap`` (e.g. NumPyro's vectorised chains) None costs both passes; choose False
        when the transition matrix has no (near-)zero entries.
    validate_args : bool, optional
        Check that probabilities lie on the simplex and observations in the support.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist, jax.numpy as jnp
    >>> from probdyn import DiscreteHMM
    >>> def model(y):
    ...     rates = numpyro.sample("rates", dist.Gamma(2.0 * jnp.ones(2), 0.2))
    ...     A = numpyro.sample("A", dist.Dirichlet(jnp.ones((2, 2))))
    ...     numpyro.sample("y", DiscreteHMM(jnp.ones(2) / 2, A, dist.Poisson(rates),
    ...                                     num_timesteps=len(y)), obs=y)
    """

    arg_constraints = {
        "initial_probs": constraints.simplex,
        "initial_logits": constraints.real_vector,
        "transition_matrix": constraints.simplex,
        "transition_logits": constraints.real_vector,
    }
    pytree_data_fields = (
        "initial_probs",
        "initial_logits",
        "transition_matrix",
        "transition_logits",
        "emission",
        "obs_mask",
        "lengths",
    )
    pytree_aux_fields = ("num_timesteps", "parallel", "time_varying", "num_states", "robust")
    has_enumerate_support = False

    def __init__(
        self,
        initial_probs: ArrayLike | None = None,
        transition_matrix: ArrayLike | None = None,
        emission: Distribution | None = None,
        *,
        initial_logits: ArrayLike | None = None,
        transition_logits: ArrayLike | None = None,
        num_timesteps: int | None = None,
        mask: ArrayLike | None = None,
        lengths: ArrayLike | None = None,
        parallel: bool | str = False,
        time_varying: bool = False,
        robust: bool | None = None,
        validate_args: bool | None = None,
    ):
        if (initial_probs is None) == (initial_logits is None):
            raise ValueError("give exactly one of initial_probs or initial_logits")
        if (transition_matrix is None) == (transition_logits is None):
            raise ValueError("give exactly one of transition_matrix or transition_logits")
        if not isinstance(emission, Distribution):
            raise TypeError(
                "emission must be a numpyro Distribution with a trailing batch axis of size "
                f"num_states; got {type(emission).__name__}"
            )
        if robust not in (None, True, False):
            raise ValueError(f"robust must be None, True or False; got {robust!r}")
        if parallel not in _PARALLEL_CHOICES:
            raise ValueError(f"parallel must be False, True or 'auto'; got {parallel!r}")
        init = initial_probs if initial_probs is not None else initial_logits
        init_name = "initial_probs" if initial_probs is not None else "initial_logits"
        trans = transition_matrix if transition_matrix is not None else transition_logits
        trans_name = "transition_matrix" if transition_matrix is not None else "transition_logits"
        init, trans = jnp.asarray(init), jnp.asarray(trans)
        if init.ndim < 1:
            raise ValueError(f"{init_name} must have shape (..., num_states); got {init.shape}")
        K = init.shape[-1]
        t_event = 3 if time_varying else 2
        if trans.ndim < t_event or trans.shape[-2:] != (K, K):
            want = "(..., T-1, K, K)" if time_varying else "(..., K, K)"
            raise ValueError(
                f"{trans_name} must have shape {want} with K={K} states (from {init_name}); "
                f"got {trans.shape}"
            )
        if not emission.batch_shape or emission.batch_shape[-1] != K:
            raise ValueError(
                f"emission must have a trailing batch axis of size num_states={K}; got "
                f"emission.batch_shape={emission.batch_shape}"
            )
        for name, arr in ((init_name, init), (trans_name, trans)):
            if not (
                jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)
            ):
                raise TypeError(f"{name} must be a real (float) array; got dtype {arr.dtype}")
        if num_timesteps is not None:
            if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, int | np.integer):
                raise TypeError(
                    f"num_timesteps must be a Python int; got {num_timesteps!r} "
                    f"({type(num_timesteps).__name__})"
                )
            num_timesteps = int(num_timesteps)
            if num_timesteps < 1:
                raise ValueError(f"num_timesteps must be a positive int; got {num_timesteps}")
        if time_varying:
            T_from_trans = trans.shape[-3] + 1
            if num_timesteps is not None and num_timesteps != T_from_trans:
                raise ValueError(
                    f"{trans_name} has {trans.shape[-3]} time steps, so num_timesteps must be "
                    f"{T_from_trans}; got {num_timesteps}"
                )
            num_timesteps = T_from_trans
        batch_shapes = [init.shape[:-1], trans.shape[:-t_event], emission.batch_shape[:-1]]
        if mask is not None:
            mask = jnp.asarray(mask)
            if mask.dtype != jnp.bool_:
                raise TypeError(f"mask must be a boolean array; got dtype {mask.dtype}")
            if mask.ndim < 1:
                raise ValueError(f"mask must have shape (..., T); got {mask.shape}")
            if num_timesteps is not None and mask.shape[-1] != num_timesteps:
                raise ValueError(
                    f"mask must have T={num_timesteps} as its last axis; got shape {mask.shape}"
                )
            num_timesteps = mask.shape[-1]
            batch_shapes.append(mask.shape[:-1])
        if lengths is not None:
            lengths = jnp.asarray(lengths)
            if not jnp.issubdtype(lengths.dtype, jnp.integer):
                raise TypeError(f"lengths must be integers; got dtype {lengths.dtype}")
            batch_shapes.append(lengths.shape)
            if num_timesteps is not None and not_jax_tracer(lengths):
                ln = np.asarray(lengths)
                if np.any(ln < 1) or np.any(ln > num_timesteps):
                    raise ValueError(
                        f"lengths must lie in [1, num_timesteps={num_timesteps}]; got "
                        f"min {ln.min()}, max {ln.max()}"
                    )
        try:
            batch_shape = jnp.broadcast_shapes(*batch_shapes)
        except ValueError as err:
            raise ValueError(
                "batch shapes of initial_probs/logits, transition_matrix/logits, emission "
                f"(without the state axis), mask and lengths do not broadcast: {batch_shapes}"
            ) from err
        if initial_probs is not None:
            self.initial_probs = init
        else:
            self.initial_logits = init
        if transition_matrix is not None:
            self.transition_matrix = trans
        else:
            self.transition_logits = trans
        self.emission = emission
        self.obs_mask = mask
        self.lengths = lengths
        self.num_timesteps = num_timesteps
        self.parallel = parallel
        self.time_varying = time_varying
        self.robust = robust
        self.num_states = K
        event_shape = (num_timesteps if num_timesteps is not None else 1,)
        super().__init__(
            batch_shape=batch_shape,
            event_shape=event_shape + tuple(emission.event_shape),
            validate_args=validate_args,
        )

    # ----------------------------------------------------------------------------------
    # parameters
    # ----------------------------------------------------------------------------------

    @lazy_property
    def initial_probs(self):
        return jax.nn.softmax(self.initial_logits, axis=-1)

    @lazy_property
    def initial_logits(self):
        return jnp.log(self.initial_probs)

    @lazy_property
    def transition_matrix(self):
        return jax.nn.softmax(self.transition_logits, axis=-1)

    @lazy_property
    def transition_logits(self):
        return jnp.log(self.transition_matrix)

    @constraints.dependent_property(is_discrete=False, event_dim=None)
    def support(self):
        return constraints.independent(self.emission.support, 1)

    def validate_args(self, strict: bool = True) -> None:
        """Check probability vectors and matrices with messages that name the argument."""
        with jax.ensure_compile_time_eval():
            for name in ("initial_probs", "transition_matrix"):
                if name not in self.__dict__:
                    continue
                value = self.__dict__[name]
                if not not_jax_tracer(value):
                    if strict:
                        raise RuntimeError("Cannot validate arguments inside jitted code.")
                    continue
                v = np.asarray(value)
                sums = v.sum(-1)
                what = "each row of " if name == "transition_matrix" else ""
                if not np.all(np.isfinite(v)):
                    raise ValueError(f"{name} contains NaN or infinite values")
                if np.any(v < 0) or not np.allclose(sums, 1.0, atol=1e-5):
                    raise ValueError(
                        f"{what}{name} must be a probability vector (non-negative, summing to "
                        f"1); got min entry {v.min():.3g} and sums in [{sums.min():.6g}, "
                        f"{sums.max():.6g}]"
                    )
            for name in ("initial_logits", "transition_logits"):
                value = self.__dict__.get(name)
                if value is None or not not_jax_tracer(value):
                    continue
                if np.any(np.isnan(np.asarray(value))):
                    raise ValueError(f"{name} contains NaN")

    # ----------------------------------------------------------------------------------
    # shapes and broadcasting
    # ----------------------------------------------------------------------------------

    def _obs_event_ndim(self):
        return len(self.emission.event_shape)

    def _check_value(self, value, name="value"):
        value = jnp.asarray(value)
        ne = self._obs_event_ndim()
        ev = tuple(self.emission.event_shape)
        if value.ndim < 1 + ne or tuple(value.shape[value.ndim - ne :]) != ev:
            raise ValueError(
                f"{name} must have shape (..., T{', ' + str(ev)[1:-1] if ev else ''}) "
                f"matching the emission's event shape {ev}; got {value.shape}"
            )
        T = value.shape[value.ndim - ne - 1]
        if self.num_timesteps is not None and T != self.num_timesteps:
            raise ValueError(
                f"{name} has {T} time steps on axis {value.ndim - ne - 1} but num_timesteps is "
                f"{self.num_timesteps}; got shape {value.shape}"
            )
        return value, T

    def _fill_missing(self, value):
        """Replace NaN placeholders by 0 when a mask marks missing observations."""
        if self.obs_mask is not None and jnp.issubdtype(value.dtype, jnp.floating):
            return jnp.where(jnp.isnan(value), 0.0, value)
        return value

    def _log_likelihoods(self, value):
        """Per-state emission log-likelihoods, shape (*batch, T, K)."""
        ne = self._obs_event_ndim()
        v = jnp.moveaxis(self._fill_missing(value), value.ndim - ne - 1, 0)  # (T, *vb, *ev)
        v = jnp.expand_dims(v, v.ndim - ne)  # (T, *vb, 1, *ev)
        ll = self.emission.log_prob(v)  # (T, *b, K)
        return jnp.moveaxis(ll, 0, -2)

    def _broadcast_inputs(self, ll):
        """Broadcast parameters to the batch shape of ``ll`` (*batch, T, K) and flatten."""
        T, K = ll.shape[-2:]
        batch = jnp.broadcast_shapes(ll.shape[:-2], self.batch_shape)
        ll = jnp.broadcast_to(ll, batch + (T, K))
        pi = jnp.broadcast_to(self.initial_probs, batch + (K,))
        a_event = (T - 1, K, K) if self.time_varying else (K, K)
        A = jnp.broadcast_to(self.transition_matrix, batch + a_event)
        n = int(np.prod(batch))
        args = {
            "pi": pi.reshape((n, K)),
            "A": A.reshape((n,) + a_event),
            "ll": ll.reshape((n, T, K)),
        }
        if self.obs_mask is not None:
            args["mask"] = jnp.broadcast_to(self.obs_mask, batch + (T,)).reshape((n, T))
        if self.lengths is not None:
            args["length"] = jnp.broadcast_to(self.lengths, batch).reshape((n,))
        return batch, args

    def _map(self, fn, value, *, parallel_ok=True):
        """Apply a single-sequence kernel ``fn(pi, A, ll, mask=, length=, parallel=)``."""
        value, T = self._check_value(value)
        ll = self._log_likelihoods(value)
        batch, args = self._broadcast_inputs(ll)
        par = _resolve_parallel(self.parallel, T) if parallel_ok else None

        def one(a):
            kw = {k: a[k] for k in ("mask", "length") if k in a}
            if par is not None:
                kw["parallel"] = par
                kw["robust"] = self.robust
            return fn(a["pi"], a["A"], a["ll"], **kw)

        return _vmap_flat(one, args, batch)

    # ----------------------------------------------------------------------------------
    # distribution interface
    # ----------------------------------------------------------------------------------

    def log_prob(self, value: ArrayLike) -> jax.Array:
        """Exact marginal log-likelihood of an observation sequence.

        Parameters
        ----------
        value : ArrayLike, shape (..., T, *emission.event_shape)

        Returns
        -------
        Array, shape (...)
            Broadcast of the value's leading shape with ``batch_shape``.
        """
        value, _ = self._check_value(value)
        _check_missing(self, value)
        if self._validate_args:
            _validate_sample(self, self._fill_missing(value))
        return self._map(K_.hmm_log_likelihood, value)

    def pointwise_log_prob(self, value: ArrayLike) -> jax.Array:
        """One-step-ahead log predictive densities :math:`\\log p(y_t \\mid y_{0:t-1})`.

        The pointwise log-likelihood used by :func:`probdyn.fit` for the
        ``log_likelihood`` group and by :func:`probdyn.report.lfo`; the terms sum over
        time to :meth:`log_prob` (:func:`probdyn.kernels.hmm_one_step_log_predictives`).

        Parameters
        ----------
        value : ArrayLike, shape (..., T, *emission.event_shape)

        Returns
        -------
        Array, shape (..., T)
            0 at masked steps and past a sequence's length.
        """
        value, _ = self._check_value(value)
        if self._validate_args:
            _validate_sample(self, self._fill_missing(value))
        return self._map(K_.hmm_one_step_log_predictives, value)

    def sample_with_states(
        self, key: jax.Array, sample_shape: tuple[int, ...] = ()
    ) -> tuple[jax.Array, jax.Array]:
        """Draw hidden state paths and observations from the model.

        Parameters
        ----------
        key : Array
            PRNG key.
        sample_shape : tuple of int

        Returns
        -------
        states : Array of int32, shape (*sample_shape, *batch_shape, T)
        observations : Array, shape (*sample_shape, *batch_shape, T, *emission.event_shape)
        """
        if self.num_timesteps is None:
            raise ValueError("num_timesteps must be given to DiscreteHMM to draw samples")
        T, K = self.num_timesteps, self.num_states
        sample_shape = tuple(sample_shape)
        full = sample_shape + self.batch_shape
        n = int(np.prod(full))
        a_event = (T - 1, K, K) if self.time_varying else (K, K)
        pi = jnp.broadcast_to(self.initial_probs, full + (K,)).reshape((n, K))
        A = jnp.broadcast_to(self.transition_matrix, full + a_event).reshape((n,) + a_event)
        k_states, k_obs = jax.random.split(key)
        keys = jax.random.split(k_states, n)
        states = jax.vmap(lambda k, p, a: K_.hmm_sample_states(k, p, a, T))(keys, pi, A)
        states = states.reshape(full + (T,))
        if self.lengths is not None:
            # freeze the chain past each sequence's end, as log_prob assumes
            t = jnp.arange(T)
            last = jnp.take_along_axis(
                states, jnp.broadcast_to(self.lengths - 1, full)[..., None], axis=-1
            )
            states = jnp.where(t < jnp.broadcast_to(self.lengths, full)[..., None], states, last)
        ne = self._obs_event_ndim()
        em = self.emission.expand(self.batch_shape + (K,))
        y_all = em.sample(k_obs, sample_shape + (T,))  # (*s, T, *b, K, *ev)
        y_all = jnp.moveaxis(y_all, len(sample_shape), len(full))  # (*s, *b, T, K, *ev)
        idx = states.reshape(states.shape + (1,) * (1 + ne))
        obs = jnp.take_along_axis(y_all, idx, axis=len(full) + 1)
        return states, jnp.squeeze(obs, axis=len(full) + 1)

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """Draw observation sequences, shape (*sample_shape, *batch_shape, T, *event)."""
        return self.sample_with_states(key, sample_shape)[1]

    # ----------------------------------------------------------------------------------
    # posterior inference over hidden states
    # ----------------------------------------------------------------------------------

    def filter(self, obs: ArrayLike) -> K_.HMMFilterResult:
        """Forward filter: ``filtered_probs`` and ``predicted_probs`` (..., T, K) and the
        marginal log-likelihood (...)."""
        return self._map(K_.hmm_filter, obs)

    def smooth(self, obs: ArrayLike) -> K_.HMMPosterior:
        """Forward-backward smoother; ``smoothed_probs`` has shape (..., T, K)."""
        return self._map(K_.hmm_smoother, obs)

    def two_slice_marginals(self, obs: ArrayLike) -> jax.Array:
        """Posterior pair marginals :math:`p(z_t, z_{t+1} | y)`, shape (..., T-1, K, K)."""
        return self._map(K_.hmm_two_slice_marginals, obs)

    def viterbi(self, obs: ArrayLike) -> jax.Array:
        """Most probable state path, int32 of shape (..., T)."""
        return self._map(K_.hmm_posterior_mode, obs, parallel_ok=False)

    def sample_posterior(self, key: jax.Array, obs: ArrayLike, num_samples: int = 1) -> jax.Array:
        """Posterior state paths by forward-filter backward-sample.

        Parameters
        ----------
        key : Array
        obs : ArrayLike, shape (..., T, *event)
        num_samples : int

        Returns
        -------
        Array of int32, shape (num_samples, ..., T)
        """
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be a positive int; got {num_samples}")
        value, T = self._check_value(obs, "obs")
        ll = self._log_likelihoods(value)
        batch, args = self._broadcast_inputs(ll)
        par = _resolve_parallel(self.parallel, T)
        n = args["pi"].shape[0]
        args["key"] = jax.random.split(key, n)

        def one(a):
            kw = {k: a[k] for k in ("mask", "length") if k in a}
            return K_.hmm_posterior_sample(
                a["key"],
                a["pi"],
                a["A"],
                a["ll"],
                num_samples=int(num_samples),
                parallel=par,
                robust=self.robust,
                **kw,
            )

        paths = _vmap_flat(one, args, batch)  # (*batch, S, T)
        return jnp.moveaxis(paths, len(batch), 0)
