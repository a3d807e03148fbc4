r"""Panel data of many subjects for multi-state continuous-time Markov models.

Multi-state models of disease progression (Kalbfleisch & Lawless 1985; Jackson 2011, the
R package ``msm``) observe N subjects, each at its own irregular times, and model each
subject's path as a continuous-time Markov chain with generator Q (K, K). Between two
observations of a subject the chain moves by :math:`P(dt) = e^{Q\, dt}`; the likelihood of
a subject is a forward recursion over its observation times,

.. math::

    \alpha_0 = w \odot e_0, \qquad \alpha_t = (\alpha_{t-1} M_t) \odot e_t, \qquad
    \log p = \log \textstyle\sum_k \alpha_{T_n - 1}(k) - \log \textstyle\sum_k \alpha_0(k)
    \ [\text{conditional}],

with :math:`e_t(k)` the probability of the t-th observation given true state k and
:math:`M_t` the transition kernel of the gap before it (which depends on the kind of
observation, below). Without misclassification or censoring :math:`e_t` is an indicator
and the recursion collapses to :math:`\sum_t \log P(dt_t)_{x_{t-1} x_t}`.

:class:`PanelCTMC` is this likelihood as a NumPyro distribution over the padded (N, T)
matrix of observed codes, with one batch entry per subject; :func:`generator_from_log_rates`
builds per-subject generators from log-linear covariate effects on the allowed rates.

References
----------
J. D. Kalbfleisch and J. F. Lawless, "The analysis of panel data under a Markov
assumption", JASA 80(392), 1985.
C. H. Jackson, "Multi-state models for panel data: the msm package for R", Journal of
Statistical Software 38(8), 2011.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike
from numpyro.distributions import Distribution, constraints

from probdyn.kernels._checks import check_generator as _check_generator
from probdyn.kernels._checks import concrete as _concrete
from probdyn.kernels._checks import safe_log as _safe_log
from probdyn.kernels.ctmc import check_generator, transition_matrices
from probdyn.kernels.hmm import hmm_sample_states
from probdyn.processes._ctmc import float_array as _float
from probdyn.processes.covariates import generator_from_log_rates

__all__ = ["PanelCTMC", "generator_from_log_rates", "SNAPSHOT", "EXACT_TRANSITION", "DEATH"]

#: ``obs_type`` codes, numbered as ``msm``'s ``obstype``.
SNAPSHOT, EXACT_TRANSITION, DEATH = 1, 2, 3
_OBS_TYPES = (SNAPSHOT, EXACT_TRANSITION, DEATH)
_METHODS = ("auto", "pade", "eigh", "uniformization")


def _nonzero(x):
    return jnp.where(x > 0, x, 1.0)


# --------------------------------------------------------------------------------------
# input checks (values checked only when concrete)
# --------------------------------------------------------------------------------------


def _check_generators(Q, N):
    if Q.ndim == 2:
        return check_generator(Q)
    if Q.ndim != 3 or Q.shape[0] != N or Q.shape[1] != Q.shape[2]:
        raise ValueError(
            f"generator must have shape (K, K) or (N, K, K) with N={N} subjects (from times); "
            f"got {Q.shape}"
        )
    _check_generator(Q)
    return Q


def _check_prob_rows(name, value, what):
    v = _concrete(value)
    if v is None:
        return
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} contains NaN or infinite values")
    sums = v.sum(-1)
    if np.any(v < 0) or not np.allclose(sums, 1.0, atol=1e-5):
        raise ValueError(
            f"{what}{name} must be a probability vector (non-negative, summing to 1); got min "
            f"entry {v.min():.3g} and sums in [{sums.min():.6g}, {sums.max():.6g}]"
        )


# --------------------------------------------------------------------------------------
# the distribution
# --------------------------------------------------------------------------------------


class PanelCTMC(Distribution):
    r"""Panel observations of N subjects following a continuous-time Markov chain.

    The value is the padded (N, T) integer matrix of observation codes; subject n is
    observed at ``times[n, :lengths[n]]`` and entries past ``lengths[n]`` are padding
    (any values, never read). ``batch_shape`` is (N,) (``log_prob`` returns one
    log-likelihood per subject, so a ``numpyro.plate`` over subjects works) and
    ``event_shape`` is (T,).

    *Codes.* Without ``emission_matrix``, codes ``0..K-1`` are exactly observed states.
    With ``emission_matrix`` E (K, K_obs), codes ``0..K_obs-1`` are observed outcomes,
    misclassified with :math:`E_{ko} = P(\text{observe } o \mid \text{true state } k)`,
    and the likelihood is an HMM forward pass. Codes ``K_obs + c`` (``K_obs = K`` without
    E) mean "the true state lies in the set ``censor_sets[c]``" (e.g. "alive, state
    unknown"); they are not misclassified.

    *Kinds of observation* (``obs_type``, numbered as ``msm``'s ``obstype``; the value
    of the first observation of each subject is ignored):

    - ``1`` snapshot (default): the state at the time; :math:`M_t = P(dt)`.
    - ``2`` exact transition time: the subject stayed in its previous state during the
      whole gap and jumped (or not) exactly at the time,
      :math:`M_t = \mathrm{diag}(e^{q_{ii} dt})\,(Q - \mathrm{diag}(q_{ii}) + I)`.
    - ``3`` exact entry time into the observed state (death): the state just before is
      unknown, :math:`(M_t)_{rd} = \sum_{k \ne d} P(dt)_{rk}\, q_{kd}`, i.e.
      :math:`M_t = P(dt)\,(Q - \mathrm{diag}(q_{ii}))`.

    Codes of types 2 and 3 are true state indices in ``0..K-1``, observed without
    misclassification. With an uncertain previous state (misclassification, censoring)
    the forward vector carries the uncertainty, so all kinds combine freely.

    *First observation.* Without ``initial_probs`` the likelihood conditions on each
    subject's first observation (``msm``'s default): :math:`\log p(y_{1:} \mid y_0)` with
    the first true state drawn from :math:`e_0` normalised (a flat prior; exact when the
    first state is observed exactly). With ``initial_probs`` :math:`w` it is the joint
    :math:`\log p(y_{0:})`. Subjects with one observation contribute 0 (conditional) or
    :math:`\log \sum_k w_k e_0(k)`.

    All gaps go through one batched :func:`~probdyn.kernels.ctmc.transition_matrices`
    call (a ``vmap`` of it for per-subject generators); padding gaps are set to 0. The
    forward pass is a ``lax.scan`` over T with the N subjects as a batch, normalised every
    step; gradients come from automatic differentiation. Shapes are static, so one
    compilation serves every data set of the same (N, T).

    Parameters
    ----------
    generator : ArrayLike, shape (K, K) or (N, K, K)
        CTMC generator, shared or per subject (see :func:`generator_from_log_rates`).
    times : ArrayLike, shape (N, T)
        Observation times, strictly increasing within each subject's valid part.
    lengths : ArrayLike of int, shape (N,), optional
        Number of observations of each subject, in [1, T]. Default: all T.
    mask : ArrayLike of bool, shape (N, T), optional
        Alternative to ``lengths``: True for valid observations, which must come first in
        each row (a prefix); converted to ``lengths``.
    initial_probs : ArrayLike, shape (K,) or (N, K), optional
        Distribution of the first true state. Given: the first observation's probability
        is included. Required by :meth:`sample`.
    emission_matrix : ArrayLike, shape (K, K_obs), optional
        Misclassification probabilities, rows summing to one.
    censor_sets : ArrayLike of 0/1, shape (C, K), optional
        Row c is the set of true states that code ``K_obs + c`` stands for.
    obs_type : ArrayLike of int, shape (N, T), optional
        Kind of each observation (1, 2 or 3, above). Default: all 1.
    method : {"pade", "auto", "uniformization", "eigh"}
        Matrix exponential of :func:`~probdyn.kernels.ctmc.transition_matrices`. The
        default, ``"pade"``, has second derivatives (``jax.hessian`` for standard errors,
        Laplace approximations); ``"uniformization"`` gave NaN Hessians (forward over
        reverse mode) and ``"auto"`` falls back to it in float32 and for non-reversible
        generators (multi-state models with an absorbing state are never reversible),
        and under ``vmap`` (per-subject generators) runs both of its branches.
    validate_args : bool, optional
        Accepted for NumPyro compatibility; concrete inputs are always checked.

    Raises
    ------
    ValueError, TypeError
        Naming the argument: shapes that do not fit, a generator that is not one, times
        not strictly increasing within a subject, lengths or codes out of range,
        probability rows that do not sum to one.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist, jax.numpy as jnp
    >>> structure = jnp.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]])
    >>> def model(times, lengths, x, y=None):
    ...     log_rates = numpyro.sample("log_rates", dist.Normal(-2.0, 2.0).expand([3]))
    ...     beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))
    ...     coefs = jnp.zeros((1, 3)).at[0, 0].set(beta)
    ...     Q = generator_from_log_rates(structure, log_rates, x, coefs)
    ...     with numpyro.plate("subject", times.shape[0]):
    ...         numpyro.sample("y", PanelCTMC(Q, times, lengths=lengths), obs=y)
    """

    arg_constraints = {
        "generator": constraints.real,
        "times": constraints.real,
        "initial_probs": constraints.simplex,
        "emission_matrix": constraints.simplex,
        "censor_sets": constraints.real,
    }
    pytree_data_fields = (
        "generator",
        "times",
        "lengths",
        "initial_probs",
        "emission_matrix",
        "censor_sets",
        "obs_type",
    )
    pytree_aux_fields = ("num_states", "num_obs_codes", "num_codes", "method")

    def __init__(
        self,
        generator: ArrayLike,
        times: ArrayLike,
        *,
        lengths: ArrayLike | None = None,
        mask: ArrayLike | None = None,
        initial_probs: ArrayLike | None = None,
        emission_matrix: ArrayLike | None = None,
        censor_sets: ArrayLike | None = None,
        obs_type: ArrayLike | None = None,
        method: str = "pade",
        validate_args: bool | None = None,
    ):
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}; got {method!r}")
        times = _float(times)
        if times.ndim != 2 or times.shape[1] < 1:
            raise ValueError(f"times must have shape (N, T) with T >= 1; got {times.shape}")
        N, T = times.shape
        Q = _float(generator)
        if Q.ndim not in (2, 3):
            raise ValueError(f"generator must have shape (K, K) or (N, K, K); got {Q.shape}")
        Q = _check_generators(Q, N)
        K = Q.shape[-1]
        lengths = self._lengths(lengths, mask, N, T)
        self._check_times(times, lengths)
        if initial_probs is not None:
            initial_probs = _float(initial_probs)
            if initial_probs.shape not in ((K,), (N, K)):
                raise ValueError(
                    f"initial_probs must have shape ({K},) or ({N}, {K}); got {initial_probs.shape}"
                )
            _check_prob_rows("initial_probs", initial_probs, "")
        num_obs = K
        if emission_matrix is not None:
            emission_matrix = _float(emission_matrix)
            if emission_matrix.ndim != 2 or emission_matrix.shape[0] != K:
                raise ValueError(
                    f"emission_matrix must have shape (K, K_obs) with K={K} (from generator); "
                    f"got {emission_matrix.shape}"
                )
            _check_prob_rows("emission_matrix", emission_matrix, "each row of ")
            num_obs = emission_matrix.shape[1]
        num_censor = 0
        if censor_sets is not None:
            censor_sets = _float(censor_sets)
            if censor_sets.ndim != 2 or censor_sets.shape[1] != K:
                raise ValueError(
                    f"censor_sets must have shape (C, K) with K={K}; got {censor_sets.shape}"
                )
            c = _concrete(censor_sets)
            if c is not None and (np.any((c != 0) & (c != 1)) or np.any(c.sum(1) == 0)):
                raise ValueError(
                    "censor_sets must be 0/1 with at least one state in every set; got "
                    f"{c.tolist()}"
                )
            num_censor = censor_sets.shape[0]
        if obs_type is not None:
            obs_type = jnp.asarray(obs_type)
            if obs_type.shape != (N, T) or not jnp.issubdtype(obs_type.dtype, jnp.integer):
                raise ValueError(
                    f"obs_type must be an integer array of shape ({N}, {T}) like times; got "
                    f"{obs_type.shape}, {obs_type.dtype}"
                )
            o = _concrete(obs_type)
            ln = np.full(N, T) if lengths is None else _concrete(lengths)
            if o is not None and ln is not None:
                valid = np.arange(T)[None, :] < ln[:, None]
                bad = valid & ~np.isin(o, _OBS_TYPES)
                if bad.any():
                    n, t = np.argwhere(bad)[0]
                    raise ValueError(
                        f"obs_type must be 1 (snapshot), 2 (exact transition time) or 3 "
                        f"(exact death time); got obs_type[{n}, {t}] = {o[n, t]}"
                    )
        self.generator = Q
        self.times = times
        self.lengths = lengths
        self.initial_probs = initial_probs
        self.emission_matrix = emission_matrix
        self.censor_sets = censor_sets
        self.obs_type = obs_type
        self.num_states = K
        self.num_obs_codes = num_obs
        self.num_codes = num_obs + num_censor
        self.method = method
        super().__init__(batch_shape=(N,), event_shape=(T,), validate_args=validate_args)

    # ----------------------------------------------------------------------------------
    # checks
    # ----------------------------------------------------------------------------------

    @staticmethod
    def _lengths(lengths, mask, N, T):
        if lengths is not None and mask is not None:
            raise ValueError("give lengths or mask, not both")
        if mask is not None:
            mask = jnp.asarray(mask)
            if mask.dtype != jnp.bool_ or mask.shape != (N, T):
                raise ValueError(
                    f"mask must be a boolean array of shape ({N}, {T}) like times; got "
                    f"{mask.shape}, {mask.dtype}"
                )
            m = _concrete(mask)
            if m is not None:
                prefix = np.arange(T)[None, :] < m.sum(1, keepdims=True)
                if np.any(m != prefix) or not np.all(m[:, 0]):
                    n = int(np.argwhere(np.any(m != prefix, 1) | ~m[:, 0])[0, 0])
                    raise ValueError(
                        f"mask rows must be a non-empty run of True followed by False "
                        f"(padding at the end); row {n} is {m[n].tolist()}"
                    )
            return jnp.sum(mask, axis=1, dtype=jnp.int32)
        if lengths is None:
            return None
        lengths = jnp.asarray(lengths)
        if not jnp.issubdtype(lengths.dtype, jnp.integer):
            raise TypeError(f"lengths must be integers; got dtype {lengths.dtype}")
        if lengths.shape != (N,):
            raise ValueError(f"lengths must have shape ({N},) like times; got {lengths.shape}")
        ln = _concrete(lengths)
        if ln is not None and (np.any(ln < 1) or np.any(ln > T)):
            raise ValueError(f"lengths must lie in [1, T={T}]; got min {ln.min()}, max {ln.max()}")
        return lengths

    @staticmethod
    def _check_times(times, lengths):
        t = _concrete(times)
        if t is None or (lengths is not None and _concrete(lengths) is None):
            return
        N, T = t.shape
        ln = np.full(N, T) if lengths is None else np.asarray(lengths)
        valid = np.arange(T)[None, :] < ln[:, None]
        bad = valid & ~np.isfinite(t)
        if bad.any():
            n, i = np.argwhere(bad)[0]
            raise ValueError(f"times must be finite; got times[{n}, {i}] = {t[n, i]}")
        if T > 1:
            bad = valid[:, 1:] & ~(t[:, 1:] > t[:, :-1])
            if bad.any():
                n, i = np.argwhere(bad)[0]
                raise ValueError(
                    f"times must be strictly increasing within each subject; got "
                    f"times[{n}, {i}] = {t[n, i]} >= times[{n}, {i + 1}] = {t[n, i + 1]}"
                )

    def validate_args(self, strict: bool = True) -> None:
        """No-op: concrete arguments are always checked in ``__init__``, naming the argument
        (traced ones cannot be)."""

    def _valid(self):
        N, T = self.times.shape
        if self.lengths is None:
            return jnp.ones((N, T), bool)
        return jnp.arange(T)[None, :] < self.lengths[:, None]

    def _check_value(self, value):
        value = jnp.asarray(value)
        N, T = self.times.shape
        if value.ndim < 2 or value.shape[-2:] != (N, T):
            raise ValueError(
                f"value must have shape (..., N, T) = (..., {N}, {T}); got {value.shape}"
            )
        if not jnp.issubdtype(value.dtype, jnp.integer):
            raise TypeError(f"value must hold integer codes; got dtype {value.dtype}")
        v = _concrete(value)
        valid = _concrete(self._valid())
        if v is None or valid is None:
            return value
        o = _concrete(self.obs_type)
        exact = np.zeros((N, T), bool) if o is None else (o != SNAPSHOT) & (np.arange(T) > 0)
        hi = np.where(exact, self.num_states, self.num_codes)
        bad = valid & ((v < 0) | (v >= hi))
        if bad.any():
            idx = tuple(np.argwhere(bad)[0])
            n, t = idx[-2:]
            kind = "states of obs_type 2/3 observations" if exact[n, t] else "codes"
            where = ", ".join(map(str, idx))
            raise ValueError(
                f"value {kind} must lie in [0, {hi[n, t] - 1}]; got value[{where}] = {v[idx]}"
            )
        return value

    # ----------------------------------------------------------------------------------
    # building blocks
    # ----------------------------------------------------------------------------------

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):
        return constraints.independent(constraints.integer_interval(0, self.num_codes - 1), 1)

    def _gaps(self):
        """Gaps (N, T-1), 0 at padding (so padded steps are the identity)."""
        dts = jnp.diff(self.times, axis=1)
        return jnp.where(self._valid()[:, 1:], dts, 0.0)

    def transition_stack(self) -> jax.Array:
        """Transition matrices :math:`P(dt)` of every gap, shape (N, T-1, K, K).

        Padding gaps have dt = 0 (identity).
        """
        Q = self.generator
        dts = self._gaps()
        N, T1 = dts.shape
        K = self.num_states
        dts = dts.astype(jnp.result_type(dts.dtype, Q.dtype))
        if Q.ndim == 2:
            return transition_matrices(Q, dts.reshape(-1), method=self.method).reshape(
                (N, T1, K, K)
            )
        return jax.vmap(lambda q, d: transition_matrices(q, d, method=self.method))(Q, dts)

    def _kernels(self):
        """Per-step kernels M_t, shape (N, T-1, K, K) (see the class docstring)."""
        P = self.transition_stack()
        if self.obs_type is None:
            return P
        Q = self.generator if self.generator.ndim == 3 else self.generator[None]
        K = self.num_states
        eye = jnp.eye(K, dtype=Q.dtype)
        qdiag = jnp.diagonal(Q, axis1=-2, axis2=-1)  # (N|1, K)
        Qoff = Q - eye * qdiag[..., None]
        ot = self.obs_type[:, 1:, None, None]
        dts = self._gaps()
        stay = jnp.exp(qdiag[:, None, :] * dts[..., None])  # (N, T-1, K)
        M2 = stay[..., None] * (Qoff + eye)[:, None]
        M3 = P @ Qoff[:, None]
        return jnp.where(ot == DEATH, M3, jnp.where(ot == EXACT_TRANSITION, M2, P))

    def _emission_table(self):
        """Rows e(code) = P(code | true state), shape (num_codes, K)."""
        K = self.num_states
        dtype = self.generator.dtype
        E = jnp.eye(K, dtype=dtype) if self.emission_matrix is None else self.emission_matrix.T
        if self.censor_sets is not None:
            E = jnp.concatenate([E.astype(dtype), self.censor_sets.astype(dtype)], axis=0)
        return E.astype(dtype)

    def _emissions(self, value):
        """e_t(k) for value (..., N, T): shape (..., N, T, K); 1 at padding."""
        K = self.num_states
        table = self._emission_table()
        code = jnp.clip(value, 0, self.num_codes - 1)
        e = table[code]
        if self.obs_type is not None:
            exact = (self.obs_type != SNAPSHOT) & (jnp.arange(value.shape[-1]) > 0)
            onehot = jax.nn.one_hot(jnp.clip(value, 0, K - 1), K, dtype=e.dtype)
            e = jnp.where(exact[..., None], onehot, e)
        return jnp.where(self._valid()[..., None], e, 1.0)

    # ----------------------------------------------------------------------------------
    # distribution interface
    # ----------------------------------------------------------------------------------

    def log_prob(self, value: ArrayLike) -> jax.Array:
        """Per-subject log-likelihood.

        Parameters
        ----------
        value : ArrayLike of int, shape (..., N, T)
            Observation codes; entries past ``lengths`` are ignored.

        Returns
        -------
        Array, shape (..., N)
        """
        value = self._check_value(value)
        N, T = self.times.shape
        K = self.num_states
        lead = value.shape[:-2]
        vals = value.reshape((-1, N, T))
        M = jnp.moveaxis(self._kernels(), 1, 0)  # (T-1, N, K, K)
        lengths = jnp.full((N,), T) if self.lengths is None else self.lengths
        include_first = self.initial_probs is not None
        w0 = (
            jnp.broadcast_to(self.initial_probs, (N, K))
            if include_first
            else jnp.ones((N, K), M.dtype)
        )
        e = jnp.moveaxis(self._emissions(vals), -2, 1)  # (S, T, N, K)
        out = _forward_batch(w0, M, e, lengths, include_first)
        # lengths outside [1, T] raise when concrete; traced ones give NaN
        out = jnp.where((lengths < 1) | (lengths > T), jnp.nan, out)
        return out.reshape(lead + (N,))

    def sample_with_states(
        self, key: jax.Array, sample_shape: tuple[int, ...] = ()
    ) -> tuple[jax.Array, jax.Array]:
        """Simulate true states and observed codes at the given times.

        Observations are snapshots: the true state at each time, passed through
        ``emission_matrix`` when given. ``obs_type`` and ``censor_sets`` are not applied
        (exact transition or death times are not simulated). Padding repeats each
        subject's last valid entry.

        Parameters
        ----------
        key : Array
            PRNG key.
        sample_shape : tuple of int

        Returns
        -------
        states : Array of int32, shape (*sample_shape, N, T)
        observations : Array of int32, shape (*sample_shape, N, T)
        """
        if self.initial_probs is None:
            raise ValueError(
                "initial_probs must be given to PanelCTMC to draw samples (the distribution "
                "of each subject's first state)"
            )
        N, T = self.times.shape
        K = self.num_states
        sample_shape = tuple(sample_shape)
        S = int(np.prod(sample_shape))
        P = self.transition_stack()  # (N, T-1, K, K)
        kz, ko = jax.random.split(key)
        pi = jnp.broadcast_to(self.initial_probs, (N, K))
        keys = jax.random.split(kz, (S, N))

        def draw(k, p, A):  # one subject: the HMM kernel's ancestral sampler
            return hmm_sample_states(k, p, A, T)

        states = jax.vmap(jax.vmap(draw), in_axes=(0, None, None))(keys, pi, P)  # (S, N, T)
        if self.emission_matrix is None:
            obs = states
        else:
            logE = jnp.log(jnp.maximum(self.emission_matrix, 0.0))
            obs = jax.random.categorical(ko, logE[states]).astype(jnp.int32)
        if self.lengths is not None:
            last = jnp.broadcast_to((self.lengths - 1)[None, :, None], (S, N, 1))
            valid = self._valid()
            states = jnp.where(valid, states, jnp.take_along_axis(states, last, axis=-1))
            obs = jnp.where(valid, obs, jnp.take_along_axis(obs, last, axis=-1))
        shape = sample_shape + (N, T)
        return states.reshape(shape), obs.reshape(shape)

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """Simulated observation codes, shape (*sample_shape, N, T) (see
        :meth:`sample_with_states`)."""
        return self.sample_with_states(key, sample_shape)[1]


@partial(jax.jit, static_argnums=4)
def _forward_batch(w0, M, e, lengths, include_first):
    """:func:`_forward` for value batches: e (S, T, N, K) -> (S, N)."""
    return jax.vmap(lambda ei: _forward(w0, M, ei, lengths, include_first))(e)


def _forward(w0, M, e, lengths, include_first):
    """Normalised forward recursion over a batch of subjects.

    w0 (N, K); M (T-1, N, K, K); e (T, N, K); lengths (N,). Returns (N,) log-likelihoods.
    """
    a = w0 * e[0]
    c = jnp.sum(a, axis=-1)
    alpha = a / _nonzero(c)[:, None]
    ll = _safe_log(c) if include_first else jnp.zeros_like(c)
    T = e.shape[0]

    def step(carry, xs):
        alpha, ll = carry
        Mt, et, t = xs
        a = jnp.einsum("ni,nij->nj", alpha, Mt) * et
        c = jnp.sum(a, axis=-1)
        keep = t < lengths
        alpha = jnp.where(keep[:, None], a / _nonzero(c)[:, None], alpha)
        ll = ll + jnp.where(keep, _safe_log(c), 0.0)
        return (alpha, ll), None

    (_, ll), _ = lax.scan(step, (alpha, ll), (M, e[1:], jnp.arange(1, T)))
    return ll
