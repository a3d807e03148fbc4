r"""Make any equinox one-step model Bayesian: BARNN and ARD variational dropout.

:class:`BARNN` (Coscia et al. 2025) turns the Linear/Conv layers of a network into
variational-dropout layers (:class:`probdyn.nn.VariationalLayer`, weights
:math:`\mathcal{N}(\alpha_t W, \alpha_t^2 W^2)`) whose rates depend on the time step and
the state: a :class:`DropoutRateEncoder` maps the current state :math:`u_t` and a
sinusoidal embedding of :math:`t` to one :math:`\log\alpha` per Bayesian layer (per grid
point for channel-first fields), :math:`\alpha = p / (1 - p)` with :math:`p` a sigmoid.
Its KL is :func:`probdyn.nn.tvamp_kl` (temporal VAMP prior), or the log-uniform
approximation as the ablation.

:class:`VariationalDropout` is the classic ablation: one learned rate per layer,
weights :math:`\mathcal{N}(W, \alpha W^2)`, with the log-uniform (Molchanov et al. 2017)
or ARD KL.

Example
-------
>>> import jax, equinox as eqx
>>> from probdyn.nn import BARNN, FNO1d
>>> fno = FNO1d(1, 1, width=8, modes=4, num_layers=2, key=jax.random.PRNGKey(0))
>>> barnn = BARNN(fno, in_channels=1, key=jax.random.PRNGKey(1))
>>> u = jax.numpy.zeros((1, 32))
>>> du, log_alpha = barnn(3, u, key=jax.random.PRNGKey(2))
>>> du.shape, log_alpha.shape   # 3 Bayesian layers, one rate per grid point
((1, 32), (3, 32))

References
----------
D. Coscia, M. Welling, N. Demo and G. Rozza, "BARNN: a Bayesian autoregressive and
recurrent neural network", ICML 2025, arXiv:2501.18665.

D. Molchanov, A. Ashukha and D. Vetrov, "Variational dropout sparsifies deep neural
networks", ICML 2017.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from probdyn.nn.embedding import sinusoidal_embedding
from probdyn.nn.variational import (
    VariationalLayer,
    ard_kl,
    is_variational_candidate,
    log_uniform_kl,
    num_weights,
    tvamp_kl,
)

__all__ = ["BARNN", "DropoutRateEncoder", "VariationalDropout", "variational_layers"]

_BARNN_PRIORS = ("tvamp", "log_uniform")
_VD_PRIORS = ("log_uniform", "ard")


def variational_layers(net: eqx.Module) -> list[eqx.Module]:
    """The layers of ``net`` that the Bayesian wrappers make variational, by default.

    ``net.variational_layers()`` if the network defines it (e.g. :class:`FNO1d`), else
    every ``eqx.nn.Linear`` and ``eqx.nn.Conv`` in it, in pytree order.
    """
    if hasattr(net, "variational_layers"):
        return list(net.variational_layers())
    leaves = jax.tree_util.tree_leaves(net, is_leaf=is_variational_candidate)
    return [x for x in leaves if is_variational_candidate(x)]


def _selected(net, where):
    layers = list(where(net))
    if not layers:
        raise ValueError(
            f"net={type(net).__name__} has no eqx.nn.Linear/eqx.nn.Conv layer to make "
            "Bayesian; expected at least one (or pass where=...)"
        )
    for layer in layers:
        if not is_variational_candidate(layer):
            raise TypeError(
                f"where selected a {type(layer).__name__}; expected eqx.nn.Linear, "
                "eqx.nn.Conv or probdyn.nn GRUCell/LSTMCell/ElmanCell layers"
            )
    return layers


def _bind(net, where, log_alphas, key, parametrisation):
    """``net`` with its selected layers replaced by VariationalLayers for one pass."""
    layers = where(net)
    keys = [None] * len(layers) if key is None else list(jax.random.split(key, len(layers)))
    new = [
        VariationalLayer(layer, la, k, parametrisation)
        for layer, la, k in zip(layers, log_alphas, keys, strict=True)
    ]
    return eqx.tree_at(lambda m: list(where(m)), net, new)


class DropoutRateEncoder(eqx.Module):
    r"""State- and time-dependent log dropout rates, pointwise over a field.

    At every grid point (or once, for a vector state) the input channels go through a
    linear layer to ``width`` features, which are scaled and shifted by the two halves
    of a sinusoidal embedding of the time index (as in the BARNN reference code), then
    through an MLP with SiLU activations to one :math:`\log\alpha` per Bayesian layer.

    Parameters
    ----------
    in_channels : int
        Channels of the state (``state_dim`` for a vector state).
    num_rates : int
        Number of Bayesian layers.
    width : int
        Hidden features.
    depth : int
        Hidden layers of the MLP.
    max_period : float
        Longest period of the time embedding.
    key : jax.Array

    Notes
    -----
    Call as ``encoder(t, u)`` with ``t`` a scalar time index and ``u`` of shape
    ``(in_channels, *spatial)``; returns ``log_alpha`` of shape ``(num_rates,
    *spatial)``.
    """

    pre: eqx.nn.Linear
    mlp: eqx.nn.MLP
    width: int = eqx.field(static=True)
    max_period: float = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        num_rates: int,
        *,
        width: int = 16,
        depth: int = 3,
        max_period: float = 1000.0,
        key: jax.Array,
    ):
        for name, value in (("in_channels", in_channels), ("num_rates", num_rates)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} is not valid; expected an integer >= 1")
        k1, k2 = jax.random.split(key)
        self.pre = eqx.nn.Linear(in_channels, width, key=k1)
        self.mlp = eqx.nn.MLP(width, num_rates, width, depth, activation=jax.nn.silu, key=k2)
        self.width = width
        self.max_period = float(max_period)

    def __call__(self, t: ArrayLike, u: jax.Array) -> jax.Array:
        if u.ndim < 1 or u.shape[0] != self.pre.in_features:
            raise ValueError(
                f"u has shape {u.shape}; expected ({self.pre.in_features}, *spatial) "
                "(channels first)"
            )
        spatial = u.shape[1:]
        points = jnp.reshape(u, (u.shape[0], -1)).T  # (num_points, in_channels)
        emb = sinusoidal_embedding(t, 2 * self.width, self.max_period).astype(u.dtype)
        scale, shift = emb[: self.width], emb[self.width :]
        h = jax.vmap(self.pre)(points) * scale + shift
        log_alpha = jax.vmap(self.mlp)(h)  # (num_points, num_rates)
        return jnp.reshape(log_alpha.T, (-1, *spatial))


class BARNN(eqx.Module):
    r"""Bayesian version of a one-step equinox network with time-dependent dropout rates.

    Parameters
    ----------
    net : eqx.Module
        The deterministic network, ``net(u, *args)``. Its layers chosen by ``where`` must
        be ``eqx.nn.Linear`` (one rate per sample: vector states) or ``eqx.nn.Conv``
        (one rate per grid point: channel-first fields, output of the input's spatial
        size, e.g. kernel-1 convolutions).
    in_channels : int
        Channels of the encoder's input (the state, or ``context`` at call time).
    width, depth : int
        Size of the :class:`DropoutRateEncoder`.
    prior : {"tvamp", "log_uniform"}
        KL used by :meth:`kl`: the temporal VAMP prior, or the log-uniform approximation
        applied to the rates (the paper's ablation).
    where : callable, optional
        ``where(net) -> list of layers`` to make Bayesian; default
        :func:`variational_layers`.
    max_period : float
        Longest period of the time embedding.
    key : jax.Array

    Notes
    -----
    A layer called twice in one pass (e.g. a recurrent cell over an unrolled sequence)
    reuses its :math:`\epsilon`; call the wrapper once per step instead.
    """

    net: eqx.Module
    encoder: DropoutRateEncoder
    prior: str = eqx.field(static=True)
    num_weights: tuple[int, ...] = eqx.field(static=True)
    where: Callable = eqx.field(static=True)

    def __init__(
        self,
        net: eqx.Module,
        *,
        in_channels: int,
        width: int = 16,
        depth: int = 3,
        prior: str = "tvamp",
        where: Callable | None = None,
        max_period: float = 1000.0,
        key: jax.Array,
    ):
        if prior not in _BARNN_PRIORS:
            raise ValueError(f"prior={prior!r} is not known; expected one of {_BARNN_PRIORS}")
        where = variational_layers if where is None else where
        layers = _selected(net, where)
        self.net = net
        self.where = where
        self.num_weights = tuple(num_weights(layer) for layer in layers)
        self.prior = prior
        self.encoder = DropoutRateEncoder(
            in_channels, len(layers), width=width, depth=depth, max_period=max_period, key=key
        )

    @property
    def num_layers(self) -> int:
        """Number of Bayesian layers (rates per sample and grid point)."""
        return len(self.num_weights)

    def rates(self, t: ArrayLike, u: jax.Array) -> jax.Array:
        """Log rates ``(num_layers, *spatial)`` at time index ``t`` and state ``u``."""
        return self.encoder(t, u)

    def apply(self, u: jax.Array, log_alpha: jax.Array, *args, key: jax.Array | None) -> jax.Array:
        """``net(u, *args)`` with the given log rates; ``key=None`` is the mean path."""
        if log_alpha.shape[0] != self.num_layers:
            raise ValueError(
                f"log_alpha has shape {log_alpha.shape}; expected ({self.num_layers}, ...)"
            )
        bound = _bind(self.net, self.where, list(log_alpha), key, "barnn")
        return bound(u, *args)

    def __call__(
        self,
        t: ArrayLike,
        u: jax.Array,
        *args,
        key: jax.Array | None,
        context: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """One stochastic forward pass.

        Parameters
        ----------
        t : scalar
            Time index (step number) of ``u``.
        u : jax.Array
            Network input, e.g. ``(channels, num_points)`` or ``(state_dim,)``.
        *args
            Further arguments of ``net`` (e.g. a hidden state).
        key : jax.Array or None
            Key of the noise; ``None`` gives the mean path.
        context : jax.Array, optional
            Input of the rate encoder instead of ``u`` (e.g. a hidden state).

        Returns
        -------
        out : jax.Array
            ``net``'s output.
        log_alpha : jax.Array, shape (num_layers, *spatial)
            The log rates used (feed a batch of them to :meth:`kl`).
        """
        log_alpha = self.rates(t, u if context is None else context)
        return self.apply(u, log_alpha, *args, key=key), log_alpha

    def kl(self, log_alpha: jax.Array) -> jax.Array:
        """KL of each sample of a batch, weighted by the number of weights per layer.

        Parameters
        ----------
        log_alpha : jax.Array, shape (batch, num_layers, *spatial)
            Rates of a batch at (conceptually) one time step.

        Returns
        -------
        jax.Array, shape (batch,)
            :math:`\\sum_l n_l \\operatorname{mean}_x \\mathrm{KL}_l`, with :math:`n_l`
            the weights of layer :math:`l` and the mean over grid points (as the BARNN
            reference code).
        """
        if log_alpha.ndim < 2 or log_alpha.shape[1] != self.num_layers:
            raise ValueError(
                f"log_alpha has shape {log_alpha.shape}; expected (batch, {self.num_layers}, "
                "*spatial)"
            )
        per = tvamp_kl(log_alpha, axis=0) if self.prior == "tvamp" else log_uniform_kl(log_alpha)
        per = jnp.reshape(per, per.shape[:2] + (-1,)).mean(-1)  # (batch, num_layers)
        return per @ jnp.asarray(self.num_weights, per.dtype)


class VariationalDropout(eqx.Module):
    r"""Variational dropout with one learned rate per layer (the ARD ablation).

    Weights :math:`\mathcal{N}(W, \alpha_l W^2)` in every selected layer :math:`l`,
    sampled by the local reparameterisation.

    Parameters
    ----------
    net : eqx.Module
        The deterministic network, ``net(u, *args)``.
    prior : {"log_uniform", "ard"}
        :func:`probdyn.nn.log_uniform_kl` or :func:`probdyn.nn.ard_kl`.
    init_log_alpha : float
        Initial :math:`\log\alpha_l`.
    where : callable, optional
        Layers to make Bayesian; default :func:`variational_layers`.
    """

    net: eqx.Module
    log_alpha: jax.Array
    prior: str = eqx.field(static=True)
    num_weights: tuple[int, ...] = eqx.field(static=True)
    where: Callable = eqx.field(static=True)

    def __init__(
        self,
        net: eqx.Module,
        *,
        prior: str = "log_uniform",
        init_log_alpha: float = -4.0,
        where: Callable | None = None,
    ):
        if prior not in _VD_PRIORS:
            raise ValueError(f"prior={prior!r} is not known; expected one of {_VD_PRIORS}")
        where = variational_layers if where is None else where
        layers = _selected(net, where)
        self.net = net
        self.where = where
        self.prior = prior
        self.num_weights = tuple(num_weights(layer) for layer in layers)
        self.log_alpha = jnp.full((len(layers),), init_log_alpha, jnp.result_type(float))

    def __call__(self, u: jax.Array, *args, key: jax.Array | None) -> jax.Array:
        """``net(u, *args)`` with sampled pre-activations (``key=None``: mean path)."""
        bound = _bind(self.net, self.where, list(self.log_alpha), key, "gaussian")
        return bound(u, *args)

    def kl(self) -> jax.Array:
        """Total KL, :math:`\\sum_l n_l\\,\\mathrm{KL}(\\alpha_l)`, a scalar."""
        fn = log_uniform_kl if self.prior == "log_uniform" else ard_kl
        return fn(self.log_alpha) @ jnp.asarray(self.num_weights, self.log_alpha.dtype)
