r"""Autoregressive neural surrogates with calibrated uncertainty, trained through ``fit``.

An :class:`AutoregressiveSurrogate` predicts the increment of a state over one step,
:math:`u_{t+1} = u_t + f_\theta(t, u_t)`, from windows ``(u_t, u_{t+1})`` cut out of
training trajectories (:func:`make_windows`), with a Gaussian likelihood

.. math::

    u_{t+1} - u_t \sim \mathcal{N}\bigl(f_\theta(t, u_t), \sigma^2 I\bigr),

and one of the uncertainty methods compared by Coscia et al. (2025):

* ``"deterministic"``: nothing is random (fit with ``"svi"``). A *deep ensemble*
  (Lakshminarayanan et al. 2017) is several of these from different initialisations,
  each fitted, passed together as ``rollout(..., network=[net_1, ..., net_5])``.
* ``"perturb"``: input noise of ``perturbation * max|u|`` at training and at the start of
  every rollout (``"svi"``).
* ``"mc_dropout"``: the dropout masks of the network's ``eqx.nn.Dropout`` layers, kept
  active in rollouts (``"svi"``).
* ``"variational_dropout"``: :class:`probdyn.nn.VariationalDropout`, one learned rate per
  layer, log-uniform or ARD KL (``"svi"``).
* ``"barnn"``: :class:`probdyn.nn.BARNN`, rates from the state and the time step, tVAMP
  KL (``"svi"``).
* ``"bayes"``: the weights themselves, prior :math:`\mathcal{N}(0, s^2)` (SG-MCMC:
  ``"sghmc"``, ``"csgld"``, ``"sgld"``; or ``"nuts"`` for small networks); rollouts use
  the (thinned) weight draws, one per sample.

The model (:meth:`AutoregressiveSurrogate.model`) holds a subsampled plate
``"windows"``, so ``fit(..., model_kwargs={"batch_size": B})`` trains on minibatches, with
SVI (the methods with a neural posterior or none: :meth:`~AutoregressiveSurrogate.guide`
is empty, the KL enters the model as a ``numpyro.factor``) or with SG-MCMC/NUTS over the
weights (``"bayes"``). Every method's :meth:`~AutoregressiveSurrogate.rollout` gives a
:class:`probdyn.nn.RolloutEnsemble`; :func:`add_rollouts` stores it in the InferenceData
as the ``posterior_predictive`` group with dims ``("trajectory", "time", ...)``.

References
----------
D. Coscia, M. Welling, N. Demo and G. Rozza, "BARNN: a Bayesian autoregressive and
recurrent neural network", ICML 2025, arXiv:2501.18665.

B. Lakshminarayanan, A. Pritzel and C. Blundell, "Simple and scalable predictive
uncertainty estimation using deep ensembles", NeurIPS 2017.

Y. Gal and Z. Ghahramani, "Dropout as a Bayesian approximation", ICML 2016.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import arviz as az
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import xarray as xr
from numpyro.contrib.module import eqx_module
from numpyro.distributions import constraints

from probdyn.nn.barnn import BARNN, VariationalDropout
from probdyn.nn.rollout import RolloutEnsemble, rollout
from probdyn.report import _arviz as _az

__all__ = [
    "SURROGATE_METHODS",
    "AutoregressiveSurrogate",
    "add_rollouts",
    "make_windows",
]

#: Uncertainty methods of :class:`AutoregressiveSurrogate`.
SURROGATE_METHODS = (
    "deterministic",
    "perturb",
    "mc_dropout",
    "variational_dropout",
    "barnn",
    "bayes",
)


def make_windows(trajectories: jax.Array, t0: int = 0) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Cut trajectories into one-step windows.

    Parameters
    ----------
    trajectories : array, shape (num_trajectories, num_timesteps, *space)
    t0 : int
        Step index of the first time of every trajectory.

    Returns
    -------
    inputs, targets : jax.Array, shape (num_trajectories * (num_timesteps - 1), *space)
        ``u_t`` and ``u_{t+1}``.
    steps : jax.Array, shape (num_trajectories * (num_timesteps - 1),), int32
        Step index ``t`` of every input.
    """
    u = jnp.asarray(trajectories)
    if u.ndim < 2 or u.shape[1] < 2:
        raise ValueError(
            f"trajectories has shape {u.shape}; expected (num_trajectories, num_timesteps >= 2, "
            "*space)"
        )
    n, t = u.shape[:2]
    inputs = jnp.reshape(u[:, :-1], (n * (t - 1), *u.shape[2:]))
    targets = jnp.reshape(u[:, 1:], (n * (t - 1), *u.shape[2:]))
    steps = jnp.tile(jnp.arange(t0, t0 + t - 1, dtype=jnp.int32), n)
    return inputs, targets, steps


def _increment(method, net, t, u, key):
    """Predicted increment of one state (and log rates for BARNN, else None)."""
    if method == "barnn":
        return net(t, u, key=key)
    if method in ("variational_dropout", "mc_dropout"):
        return net(u, key=key), None
    return net(u), None


@eqx.filter_jit
def _batched_increment(method, net, t, u, keys):
    """Increments of a minibatch (B, *space) and BARNN's KL per window (B,) (else None)."""
    if keys is None:
        pred, log_alpha = jax.vmap(lambda t_, u_: _increment(method, net, t_, u_, None))(t, u)
    else:
        pred, log_alpha = jax.vmap(lambda t_, u_, k_: _increment(method, net, t_, u_, k_))(
            t, u, keys
        )
    kl = net.kl(log_alpha) if method == "barnn" else None
    return pred, kl


class _SurrogateStep(eqx.Module):
    """One rollout step ``u + f(t, u)`` (+ process noise), as a module so that the
    compiled rollout is cached across calls (its arrays are traced, the rest hashed)."""

    method: str = eqx.field(static=True)
    params: Any
    static: Any
    noise_sd: float = eqx.field(static=True)

    def __call__(self, member, t, u, key):
        p = self.params if member is None else member
        net = eqx.combine(p, self.static)
        k_net, k_noise = jax.random.split(key)
        du, _ = _increment(self.method, net, t, u, k_net)
        if self.noise_sd > 0:
            du = du + self.noise_sd * jax.random.normal(k_noise, du.shape, du.dtype)
        return u + du


def _flat_name(path) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", jax.tree_util.keystr(path)).strip("_")


class AutoregressiveSurrogate:
    """A one-step neural surrogate with an uncertainty method, for ``probdyn.fit``.

    Parameters
    ----------
    network : eqx.Module
        ``"barnn"``: a :class:`probdyn.nn.BARNN`; ``"variational_dropout"``: a
        :class:`probdyn.nn.VariationalDropout`; ``"mc_dropout"``: a network called as
        ``network(u, key=key)`` with active dropout layers (e.g. ``FNO1d(...,
        dropout=0.2)``); otherwise a deterministic network ``network(u)``. Inputs and
        outputs have the shape of one state (e.g. ``(channels, num_points)``).
    method : str
        One of :data:`SURROGATE_METHODS`.
    obs_scale : float, optional
        Standard deviation :math:`\\sigma` of the increments' likelihood; default a
        learned parameter ``"obs_scale"`` (SVI) or a latent with a half-normal(1) prior
        (``"bayes"``).
    kl_weight : float
        Weight of the KL term (1: the ELBO; BARNN's reference code adds the KL to a mean
        squared error, a different weighting).
    perturbation : float
        Relative input noise of ``"perturb"`` (the reference's 0.01).
    weight_prior_scale : float
        Scale of the Gaussian prior on every weight (``"bayes"``).

    Examples
    --------
    >>> import jax, probdyn
    >>> from probdyn.nn import BARNN, FNO1d
    >>> from probdyn.infer import AutoregressiveSurrogate, add_rollouts, make_windows
    >>> # trajectories: (num_trajectories, num_timesteps, 1, num_points)
    >>> fno = FNO1d(1, 1, width=32, modes=12, key=jax.random.PRNGKey(0))
    >>> surrogate = AutoregressiveSurrogate(
    ...     BARNN(fno, in_channels=1, key=jax.random.PRNGKey(1)), method="barnn")
    >>> idata = probdyn.fit(surrogate.model, *make_windows(trajectories), method="svi",
    ...                     guide=surrogate.guide, num_steps=5000, learning_rate=1e-3,
    ...                     num_chains=1, num_samples=1,
    ...                     model_kwargs={"batch_size": 32})  # doctest: +SKIP
    >>> ens = surrogate.rollout(test[:, 0], test.shape[1], rng_key=jax.random.PRNGKey(2),
    ...                         network=surrogate.network_from_idata(idata),
    ...                         num_samples=50)  # doctest: +SKIP
    >>> idata = add_rollouts(idata, ens, truth=test)  # doctest: +SKIP

    Weight posteriors: ``AutoregressiveSurrogate(net, method="bayes", obs_scale=0.1)``,
    ``idata = probdyn.fit(surrogate.model, *windows, method="sghmc", thinning=10,
    model_kwargs={"batch_size": 32}, ...)``, then ``surrogate.rollout(...,
    weights=surrogate.weight_draws(idata, max_draws=100))``.
    """

    def __init__(
        self,
        network: eqx.Module,
        *,
        method: str = "barnn",
        obs_scale: float | None = None,
        kl_weight: float = 1.0,
        perturbation: float = 0.01,
        weight_prior_scale: float = 1.0,
    ):
        if method not in SURROGATE_METHODS:
            raise ValueError(f"method={method!r} is not known; expected one of {SURROGATE_METHODS}")
        if method == "barnn" and not isinstance(network, BARNN):
            raise TypeError(
                f"method='barnn' needs a probdyn.nn.BARNN network; got {type(network).__name__}"
            )
        if method == "variational_dropout" and not isinstance(network, VariationalDropout):
            raise TypeError(
                "method='variational_dropout' needs a probdyn.nn.VariationalDropout network; "
                f"got {type(network).__name__}"
            )
        for name, value in (
            ("kl_weight", kl_weight),
            ("perturbation", perturbation),
            ("weight_prior_scale", weight_prior_scale),
        ):
            if not (isinstance(value, (int, float)) and value >= 0):
                raise ValueError(f"{name}={value!r} is not valid; expected a float >= 0")
        if obs_scale is not None and not (isinstance(obs_scale, (int, float)) and obs_scale > 0):
            raise ValueError(f"obs_scale={obs_scale!r} is not valid; expected a float > 0")
        self.network = network
        self.method = method
        self.obs_scale = obs_scale
        self.kl_weight = float(kl_weight)
        self.perturbation = float(perturbation)
        self.weight_prior_scale = float(weight_prior_scale)
        self._params, self._static = eqx.partition(network, eqx.is_inexact_array)

    # -- one step ------------------------------------------------------------------------
    def _increment(self, net, t, u, key):
        return _increment(self.method, net, t, u, key)

    def _scale(self, dtype):
        if self.obs_scale is not None:
            return jnp.asarray(self.obs_scale, dtype)
        if self.method == "bayes":
            return numpyro.sample("obs_scale", dist.HalfNormal(1.0))
        return numpyro.param("obs_scale", jnp.asarray(0.1, dtype), constraint=constraints.positive)

    def _random_network(self):
        leaves, treedef = jax.tree_util.tree_flatten(self._params)
        prior = dist.Normal(0.0, self.weight_prior_scale)
        drawn = [
            numpyro.sample(f"weights_{i}", prior.expand(jnp.shape(leaf)).to_event())
            for i, leaf in enumerate(leaves)
        ]
        return eqx.combine(jax.tree_util.tree_unflatten(treedef, drawn), self._static)

    # -- NumPyro model and guide -----------------------------------------------------------
    def model(
        self,
        inputs: jax.Array,
        targets: jax.Array,
        steps: jax.Array,
        *,
        batch_size: int | None = None,
    ) -> None:
        """NumPyro model of the increments ``"du"`` (windows, *space).

        Parameters
        ----------
        inputs, targets : jax.Array, shape (num_windows, *space)
            ``u_t`` and ``u_{t+1}`` (from :func:`make_windows`).
        steps : jax.Array, shape (num_windows,)
            Step index of every input (seen by BARNN's time embedding).
        batch_size : int, optional
            Windows per minibatch (the subsample size of the plate ``"windows"``).
        """
        inputs, targets = jnp.asarray(inputs), jnp.asarray(targets)
        if inputs.shape != targets.shape or inputs.shape[:1] != jnp.shape(steps):
            raise ValueError(
                f"inputs {inputs.shape}, targets {targets.shape} and steps {jnp.shape(steps)}"
                " disagree; expected (num_windows, *space) twice and (num_windows,)"
            )
        n = inputs.shape[0]
        if self.method == "bayes":
            net = self._random_network()
        else:
            net = eqx_module("net", self.network)
        scale = self._scale(inputs.dtype)
        if self.method == "variational_dropout":
            numpyro.factor("kl", -self.kl_weight * net.kl())
        key = numpyro.prng_key()
        with numpyro.plate("windows", n, subsample_size=batch_size) as idx:
            u, du = inputs[idx], targets[idx] - inputs[idx]
            t = jnp.asarray(steps)[idx]
            b = jnp.shape(idx)[0]
            if key is None:  # traced without a seed: the mean path
                keys, k_pert = None, None
            else:
                key, k_pert = jax.random.split(key)
                keys = jax.random.split(key, b)
            if self.method == "perturb" and k_pert is not None:
                axes = tuple(range(1, u.ndim))
                amp = self.perturbation * jnp.max(jnp.abs(u), axis=axes, keepdims=True)
                u = u + amp * jax.random.normal(k_pert, u.shape, u.dtype)
            # one compiled call for the whole minibatch (the model also runs eagerly, when
            # fit() inspects it, where op-by-op dispatch of a network is slow)
            pred, kl = _batched_increment(self.method, net, t, u, keys)
            if self.method == "barnn":
                numpyro.factor("kl", -self.kl_weight * kl)
            event = dist.Normal(pred, scale).to_event(u.ndim - 1)
            numpyro.sample("du", event, obs=du)

    def guide(self, inputs, targets, steps, *, batch_size=None) -> None:
        """Empty guide: the SVI methods have no latent site (the posterior is in the network)."""
        if self.method == "bayes":
            raise ValueError(
                "method='bayes' samples the weights; fit it with an MCMC method ('sghmc', "
                "'csgld', 'sgld', 'nuts'), not with this guide"
            )

    # -- fitted networks -----------------------------------------------------------------
    def network_from_idata(self, idata: az.InferenceData) -> eqx.Module:
        """The network with the fitted parameters in ``idata.svi_params`` (SVI)."""
        flat = {k: np.asarray(v) for k, v in idata["svi_params"].data_vars.items()}
        leaves, treedef = jax.tree_util.tree_flatten_with_path(self._params)
        values = []
        for path, leaf in leaves:
            name = f"net$params_{_flat_name(path)}"
            if name not in flat:
                raise ValueError(f"idata.svi_params has no {name!r}; was it fitted by this model?")
            values.append(jnp.asarray(flat[name], leaf.dtype))
        return eqx.combine(jax.tree_util.tree_unflatten(treedef, values), self._static)

    def obs_scale_from_idata(self, idata: az.InferenceData) -> float:
        """The fitted (or fixed) :math:`\\sigma`; the posterior mean for ``"bayes"``."""
        if self.obs_scale is not None:
            return float(self.obs_scale)
        if self.method == "bayes":
            return float(idata.posterior["obs_scale"].mean())
        return float(idata["svi_params"]["obs_scale"])

    def weight_draws(self, idata: az.InferenceData, max_draws: int | None = None) -> Any:
        """Weight draws of ``"bayes"`` as a params pytree, leaves ``(draws, ...)``.

        All chains are pooled; ``max_draws`` keeps evenly spaced ones (thinning).
        """
        if self.method != "bayes":
            raise ValueError(
                f"weight_draws needs method='bayes'; this surrogate is {self.method!r}"
            )
        leaves, treedef = jax.tree_util.tree_flatten(self._params)
        drawn = []
        for i, leaf in enumerate(leaves):
            x = np.asarray(idata.posterior[f"weights_{i}"])
            drawn.append(jnp.asarray(x.reshape((-1, *jnp.shape(leaf))), leaf.dtype))
        total = drawn[0].shape[0]
        if max_draws is not None and max_draws < total:
            keep = np.linspace(0, total - 1, max_draws).round().astype(int)
            drawn = [d[keep] for d in drawn]
        return jax.tree_util.tree_unflatten(treedef, drawn)

    # -- rollouts ------------------------------------------------------------------------
    def rollout(
        self,
        u0: jax.Array,
        num_timesteps: int,
        *,
        rng_key: jax.Array,
        network: eqx.Module | Sequence[eqx.Module] | None = None,
        weights: Any = None,
        num_samples: int = 1,
        process_noise: float = 0.0,
        t0: int = 0,
        dt: float = 1.0,
    ) -> RolloutEnsemble:
        """Sampled rollouts from initial conditions.

        Parameters
        ----------
        u0 : jax.Array, shape (num_trajectories, *space)
        num_timesteps : int
            Rollout length, the initial condition included.
        rng_key : jax.Array
        network : eqx.Module or list of eqx.Module, optional
            The fitted network (:meth:`network_from_idata`); a list is a deep ensemble,
            one member per sample. Default the network given at construction.
        weights : pytree, optional
            ``"bayes"``: weight draws (:meth:`weight_draws`), one per sample.
        num_samples : int
            Rollouts per initial condition (ignored with an ensemble or weight draws).
        process_noise : float
            Standard deviation of Gaussian noise added to every step (e.g. the fitted
            :math:`\\sigma`, for the posterior predictive of the model itself); 0: none,
            as in the BARNN reference.
        t0 : int
            Step index of ``u0``.
        dt : float
            Time between steps.

        Returns
        -------
        RolloutEnsemble
            ``samples`` (num_samples, num_trajectories, num_timesteps, *space).
        """
        members, params = None, None
        if self.method == "bayes":
            if weights is None:
                raise ValueError("method='bayes' needs weights=surrogate.weight_draws(idata)")
            members, static = weights, self._static
        elif isinstance(network, (list, tuple)):
            parts = [eqx.partition(m, eqx.is_inexact_array) for m in network]
            members = jax.tree.map(lambda *x: jnp.stack(x), *[p for p, _ in parts])
            static = parts[0][1]
        else:
            net = self.network if network is None else network
            params, static = eqx.partition(net, eqx.is_inexact_array)
        method = self.method if not isinstance(network, (list, tuple)) else "ensemble"
        step = _SurrogateStep(self.method, params, static, float(process_noise))
        return rollout(
            step,
            u0,
            num_timesteps,
            rng_key=rng_key,
            num_samples=None if members is not None else num_samples,
            members=members,
            noise="per_step",
            initial_noise=self.perturbation if self.method == "perturb" else 0.0,
            t0=t0,
            dt=dt,
            method=method,
        )


def add_rollouts(
    idata: az.InferenceData,
    ensemble: RolloutEnsemble,
    *,
    name: str = "u",
    space_dims: Sequence[str] | None = None,
    truth: jax.Array | None = None,
) -> az.InferenceData:
    """Store rollouts as ``posterior_predictive[name]`` (and ``truth`` as observed data).

    Parameters
    ----------
    idata : arviz.InferenceData
        Result of :func:`probdyn.fit`; a ``posterior_predictive`` group is replaced.
    ensemble : RolloutEnsemble
        Its samples become dims ``("chain", "draw", "trajectory", "time", *space_dims)``
        with one chain, and ``times`` the ``"time"`` coordinate.
    name : str
        Variable name.
    space_dims : list of str, optional
        Names of the state axes; default ``("space",)`` for one axis, ``("channel",
        "space")`` for two, else ``"<name>_dim_<i>"``.
    truth : array, shape (num_trajectories, num_timesteps, *space), optional
        Stored as ``observed_data[name]``.

    Returns
    -------
    arviz.InferenceData
        The same object, with the groups added.
    """
    samples = np.asarray(ensemble.samples)
    rest = samples.ndim - 3
    if space_dims is None:
        defaults = {0: (), 1: ("space",), 2: ("channel", "space")}
        space_dims = defaults.get(rest, tuple(f"{name}_dim_{i}" for i in range(rest)))
    space_dims = tuple(space_dims)
    if len(space_dims) != rest:
        raise ValueError(
            f"space_dims={space_dims!r} names {len(space_dims)} axes; the state has {rest}"
        )
    dims = ("trajectory", "time", *space_dims)
    coords = {"time": np.asarray(ensemble.times)}
    pp = xr.Dataset(
        {name: xr.DataArray(samples[None], dims=("chain", "draw", *dims))},
        coords={"chain": [0], "draw": np.arange(samples.shape[0]), **coords},
    )
    pp.attrs["method"] = ensemble.method
    groups = {"posterior_predictive": pp}
    if truth is not None:
        truth = np.asarray(truth)
        if truth.shape != samples.shape[1:]:
            raise ValueError(f"truth has shape {truth.shape}; expected {samples.shape[1:]}")
        groups["observed_data"] = xr.Dataset({name: xr.DataArray(truth, dims=dims)}, coords=coords)
    if "observed_data" in groups and _az.has_group(idata, "observed_data"):
        merged = _az.get_group(idata, "observed_data").copy()
        merged[name] = groups["observed_data"][name]
        groups["observed_data"] = merged
    return _az.add_groups(idata, groups)
