"""Stochastic variational inference for :func:`probdyn.fit` (``method="svi"``).

Builds a NumPyro :class:`~numpyro.infer.SVI` from names (guide, optimiser), runs it in
segments so that the optimiser state can be checkpointed, and draws from the fitted guide.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.infer import SVI, Predictive, Trace_ELBO, autoguide
from tqdm.auto import tqdm

from probdyn.infer.checkpoint import Checkpoint, from_numpy, to_numpy

__all__ = [
    "GUIDES",
    "OPTIMIZERS",
    "OrderedTraceELBO",
    "SVI_OPTIONS",
    "TailAverageState",
    "draw_from_guide",
    "make_guide",
    "run_svi",
    "tail_average",
    "validate_svi_options",
]

GUIDES: dict[str, type] = {
    "normal": autoguide.AutoNormal,
    "mvn": autoguide.AutoMultivariateNormal,
    "lowrank": autoguide.AutoLowRankMultivariateNormal,
    "delta": autoguide.AutoDelta,
    "iaf": autoguide.AutoIAFNormal,
    "laplace": autoguide.AutoLaplaceApproximation,
}

OPTIMIZERS: dict[str, Callable] = {
    "adam": optax.adam,
    "adamw": optax.adamw,
    "adabelief": optax.adabelief,
    "adagrad": optax.adagrad,
    "rmsprop": optax.rmsprop,
    "sgd": optax.sgd,
}

#: Options accepted by ``fit(..., method="svi", **options)`` and their defaults.
SVI_OPTIONS: dict[str, Any] = {
    "guide": "normal",
    "guide_kwargs": None,
    "optimizer": "adam",
    "learning_rate": None,  # 1e-2 for a named optimiser
    "average_last": None,  # 0.5 with the default learning rate, else 0.0
    "num_steps": 5000,
    "num_particles": 1,
    "loss": None,
    "stable_update": False,
}


class OrderedTraceELBO(Trace_ELBO):
    """NumPyro's :class:`~numpyro.infer.Trace_ELBO`, its per-site terms summed in name order.

    NumPyro's ``Trace_ELBO`` sums the per-site terms ``log p - log q`` in the iteration
    order of a Python ``set`` of site names, which depends on the process's string-hash
    seed (``PYTHONHASHSEED``, random per process by default). Floating-point addition is
    not associative, so the same seed gave loss traces that differed in the last bits
    between two processes (about a quarter of 3,000 float32 steps, by ~1e-5), and the
    optimiser then amplified the differences. Summing in sorted order makes the loss,
    its gradient and hence the whole run bit-identical across processes.

    Parameters
    ----------
    num_particles : int
        Monte Carlo samples of the ELBO per step.
    vectorize_particles : bool
        Draw the particles with ``vmap`` (else ``lax.map``).
    multi_sample_guide : bool
        As in :class:`~numpyro.infer.Trace_ELBO`.
    """

    def __init__(
        self,
        num_particles: int = 1,
        vectorize_particles: bool = True,
        multi_sample_guide: bool = False,
    ):
        super().__init__(
            num_particles=num_particles,
            vectorize_particles=vectorize_particles,
            multi_sample_guide=multi_sample_guide,
            sum_sites=False,
        )

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        out = super().loss_with_mutable_state(rng_key, param_map, model, guide, *args, **kwargs)
        terms = out["loss"]
        total = jnp.array(0.0)
        for name in sorted(terms):
            total = total + terms[name]
        return {"loss": total, "mutable_state": out["mutable_state"]}


class TailAverageState(NamedTuple):
    """State of :func:`tail_average`: steps taken and the running mean of the iterates."""

    count: jax.Array
    mean: Any


def tail_average(num_steps: int, fraction: float) -> optax.GradientTransformation:
    r"""Average the iterates of the last ``fraction`` of ``num_steps`` steps (Polyak-Ruppert).

    An optax transformation to chain *last* (it passes the updates through unchanged and
    keeps, in its state, the running mean of the parameters after each of the last
    ``round(fraction * num_steps)`` updates). Because the mean lives in the optimiser
    state it is checkpointed and resumed with it.

    At a constant learning rate Adam's final iterate jitters around the optimum by about
    the learning rate (its steps have that size whatever the gradient's scale); the mean
    of the iterates does not:

    .. math::

        \bar\theta = \frac{1}{m} \sum_{k = n - m + 1}^{n} \theta_k ,
        \qquad m = \mathrm{round}(f\, n).

    Parameters
    ----------
    num_steps : int
        Total number of optimisation steps n.
    fraction : float
        Fraction f in (0, 1] of the final steps to average.

    Returns
    -------
    optax.GradientTransformation

    References
    ----------
    Polyak, B. T. and Juditsky, A. B. (1992). Acceleration of stochastic approximation by
    averaging. SIAM Journal on Control and Optimization 30(4), 838-855.
    """
    start = num_steps - max(1, int(round(fraction * num_steps)))

    def init(params):
        return TailAverageState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("tail_average needs the parameters (params=...) in update")
        count = state.count + 1
        k = jnp.maximum(count - start, 1).astype(jnp.float32)
        on = count > start

        def step(mean, p, u):
            new = p + u
            return jnp.where(on, mean + (new - mean) / k.astype(mean.dtype), mean)

        mean = jax.tree.map(step, state.mean, params, updates)
        return updates, TailAverageState(count, mean)

    return optax.GradientTransformation(init, update)


def _averaged(optim_state) -> Any | None:
    """The running mean of :func:`tail_average` inside an SVI optimiser state, or None."""
    found = [
        leaf
        for leaf in jax.tree.leaves(optim_state, is_leaf=lambda x: isinstance(x, TailAverageState))
        if isinstance(leaf, TailAverageState)
    ]
    return found[0].mean if found else None


def _average_fraction(options: Mapping[str, Any]) -> float:
    """``average_last``, resolved: 0.5 when the learning rate is the default, else 0."""
    value = options.get("average_last")
    if value is None:
        default_rate = isinstance(options.get("optimizer"), str) and (
            options.get("learning_rate") is None
        )
        return 0.5 if default_rate else 0.0
    return float(value)


def make_guide(model: Callable, guide: Any, guide_kwargs: Mapping | None) -> Callable:
    """An AutoGuide from a name in :data:`GUIDES`, an AutoGuide class, or a guide as given."""
    kwargs = dict(guide_kwargs or {})
    if isinstance(guide, str):
        if guide not in GUIDES:
            raise ValueError(f"guide={guide!r} is not known; expected one of {sorted(GUIDES)}")
        return GUIDES[guide](model, **kwargs)
    if isinstance(guide, type) and issubclass(guide, autoguide.AutoGuide):
        return guide(model, **kwargs)
    if callable(guide):
        if kwargs:
            raise TypeError(
                f"guide_kwargs={kwargs!r} apply only to a guide given by name or AutoGuide "
                "class; got a guide callable"
            )
        return guide
    raise TypeError(
        f"guide={guide!r} is not a guide; expected one of {sorted(GUIDES)}, an AutoGuide "
        "class or a guide callable"
    )


def _make_optimizer(optimizer: Any, learning_rate: Any, average: tuple[int, float] | None = None):
    """The optax (or NumPyro) optimiser; ``average=(num_steps, fraction)`` chains
    :func:`tail_average` after a named optimiser."""
    if isinstance(optimizer, str) and average is not None and average[1] > 0:
        base = _make_optimizer(optimizer, learning_rate)
        return optax.chain(base, tail_average(*average))
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer={optimizer!r} is not known; expected one of {sorted(OPTIMIZERS)} "
                "or an optax GradientTransformation"
            )
        lr = 1e-2 if learning_rate is None else learning_rate
        number = isinstance(lr, (int, float, np.integer, np.floating)) and not isinstance(lr, bool)
        if not callable(lr) and not (number and math.isfinite(lr) and lr > 0):
            raise ValueError(
                f"learning_rate={lr!r} is not valid; expected a positive float or an optax "
                "schedule (a callable of the step count)"
            )
        return OPTIMIZERS[optimizer](lr)
    if learning_rate is not None:
        raise TypeError(
            f"learning_rate={learning_rate!r} applies only to an optimizer given by name; "
            "build it into the optax optimiser instead"
        )
    if isinstance(optimizer, optax.GradientTransformation) or hasattr(optimizer, "init_fn"):
        return optimizer
    raise TypeError(
        f"optimizer={optimizer!r} is not an optimiser; expected one of {sorted(OPTIMIZERS)}, "
        "an optax GradientTransformation or a numpyro.optim optimiser"
    )


def validate_svi_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``fit(method="svi", **options)`` before any compilation; fill in defaults.

    Raises
    ------
    TypeError
        Unknown option names, or options of the wrong kind.
    ValueError
        Unknown guide or optimiser names, bad sizes or learning rates.
    """
    unknown = sorted(set(options) - set(SVI_OPTIONS))
    if unknown:
        raise TypeError(
            f"fit(method='svi') got unexpected options {unknown}; expected some of "
            f"{sorted(SVI_OPTIONS)} (model arguments go in *args or model_kwargs)"
        )
    opts = {**SVI_OPTIONS, **options}
    for name in ("num_steps", "num_particles"):
        value = opts[name]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}={value!r} is not valid; expected an integer >= 1")
    if not isinstance(opts["stable_update"], (bool, np.bool_)):
        raise TypeError(f"stable_update={opts['stable_update']!r} is not a bool")
    if opts["guide_kwargs"] is not None and not isinstance(opts["guide_kwargs"], Mapping):
        raise TypeError(f"guide_kwargs={opts['guide_kwargs']!r} is not a dict")
    if options.get("loss") is not None and "num_particles" in options:
        raise TypeError("num_particles and loss were both given; set num_particles in loss")
    guide = opts["guide"]
    if isinstance(guide, str) and guide not in GUIDES:
        raise ValueError(
            f"guide={guide!r} is not known; expected one of {sorted(GUIDES)}, an AutoGuide "
            "class or a guide callable"
        )
    if not isinstance(guide, str) and not callable(guide):
        raise TypeError(
            f"guide={guide!r} is not a guide; expected one of {sorted(GUIDES)}, an AutoGuide "
            "class or a guide callable"
        )
    average = opts["average_last"]
    if average is not None:
        number = isinstance(average, (int, float, np.integer, np.floating))
        if isinstance(average, bool) or not number:
            raise TypeError(f"average_last={average!r} is not a number; expected a float in [0, 1]")
        if not 0.0 <= float(average) <= 1.0:
            raise ValueError(
                f"average_last={average!r} is out of range; expected a float in [0, 1]"
            )
        if float(average) > 0 and not isinstance(opts["optimizer"], str):
            raise TypeError(
                f"average_last={average!r} applies only to an optimizer given by name; chain "
                "probdyn.infer.svi.tail_average(num_steps, fraction) into your optax optimiser"
            )
    _make_optimizer(opts["optimizer"], opts["learning_rate"])
    return opts


def _stepper(svi: SVI, args: tuple, kwargs: Mapping, stable: bool) -> Callable:
    """``steps(state, n) -> (state, losses (n,))``: n SVI steps in one compiled scan.

    Compiled once per distinct ``n`` and reused across segments (``SVI.run`` recompiles
    on every call).
    """
    update = svi.stable_update if stable else svi.update

    def body(state, _):
        return update(state, *args, **kwargs)

    @functools.partial(jax.jit, static_argnums=1)
    def steps(state, n):
        return jax.lax.scan(body, state, None, length=n)

    return steps


def run_svi(
    model: Callable,
    args: tuple,
    kwargs: Mapping,
    *,
    rng_key: jax.Array,
    options: Mapping[str, Any],
    checkpoint: Checkpoint | None,
    checkpoint_every: int | None,
    progress_bar: bool,
    partial_idata: Callable[[np.ndarray], Any] | None = None,
) -> tuple[Callable, dict, np.ndarray]:
    """Optimise the ELBO, in segments of ``checkpoint_every`` steps when checkpointing.

    Parameters
    ----------
    model : callable
        The NumPyro model.
    args, kwargs : tuple, dict
        Model arguments.
    rng_key : jax.Array
        Key for :meth:`SVI.init`; the steps then thread the key held in the SVI state.
    options : dict
        Keys of :data:`SVI_OPTIONS` (already validated, defaults filled in).
    checkpoint : Checkpoint or None
        Where to save ``(svi_state, losses)`` after every segment.
    checkpoint_every : int or None
        Steps per segment (None: one segment).
    progress_bar : bool
        Show NumPyro's progress bar.
    partial_idata : callable, optional
        Makes the partial InferenceData to write from the losses so far.

    Returns
    -------
    guide : callable
        The guide, set up.
    params : dict of str to array
        Final (constrained) parameters: the mean of the last ``average_last`` fraction of
        the iterates when averaging (:func:`tail_average`), else the last iterate.
    losses : np.ndarray, shape (num_steps,)
        Negative ELBO at every step.
    """
    guide = make_guide(model, options["guide"], options["guide_kwargs"])
    fraction = _average_fraction(options)
    optim = _make_optimizer(
        options["optimizer"], options["learning_rate"], (options["num_steps"], fraction)
    )
    loss = options["loss"]
    if loss is None:
        loss = OrderedTraceELBO(num_particles=options["num_particles"])
    svi = SVI(model, guide, optim, loss)
    state = svi.init(rng_key, *args, **kwargs)  # also sets up the guide on resume
    num_steps = options["num_steps"]
    losses: list[np.ndarray] = []
    done = 0
    progress = None
    if checkpoint is not None:
        progress = checkpoint.load_progress({"state": (state, ())})
    if progress is not None:
        done, saved_losses = progress.get("steps_done"), progress.get("losses")
        if progress.get("kind") != "svi" or saved_losses is None or "state" not in progress:
            raise checkpoint.corrupt(f"it holds a {progress.get('kind')!r} run, not SVI")
        if (
            isinstance(done, bool)
            or not isinstance(done, int)
            or not 0 <= done <= num_steps
            or saved_losses.shape != (done,)
        ):
            raise checkpoint.corrupt(
                f"steps_done={done!r} but {list(saved_losses.shape)} losses are saved; "
                f"expected an integer in [0, {num_steps}] equal to their number"
            )
        losses = [saved_losses]
        state = progress["state"]
    else:
        # Round-trip through NumPy so that resumed and uninterrupted runs feed identically
        # typed arrays to the compiled step.
        state = from_numpy(to_numpy(state))
    segment = checkpoint_every or num_steps
    steps = _stepper(svi, args, kwargs, options["stable_update"])
    chunk = max(1, min(segment, num_steps) // 20) if progress_bar else segment
    bar = tqdm(total=num_steps, initial=done, disable=not progress_bar, desc="svi")
    with bar:
        while done < num_steps:
            end = min(done + segment, num_steps)
            while done < end:
                n = min(chunk, end - done)
                state, chunk_losses = steps(state, n)
                losses.append(np.asarray(chunk_losses))
                done += n
                bar.update(n)
                bar.set_postfix(loss=f"{float(losses[-1][-1]):.4g}")
            saved = to_numpy(state)
            state = from_numpy(saved)
            if checkpoint is not None and checkpoint_every is not None:
                all_losses = np.concatenate(losses)
                payload = {"kind": "svi", "steps_done": done, "state": saved, "losses": all_losses}
                partial = partial_idata(all_losses) if partial_idata is not None else None
                checkpoint.save_progress(payload, partial, done)
    params = svi.get_params(state)
    mean = _averaged(state.optim_state[1]) if fraction > 0 else None
    if mean is not None:
        params = svi.constrain_fn(mean)
    all_losses = np.concatenate(losses) if losses else np.zeros((0,), np.float32)
    return guide, params, all_losses


def draw_from_guide(
    model: Callable,
    guide: Callable,
    params: Mapping,
    args: tuple,
    kwargs: Mapping,
    *,
    rng_key: jax.Array,
    shape: tuple[int, int],
    latent: list[str],
    deterministic: list[str],
) -> dict[str, jax.Array]:
    """Posterior draws from a fitted guide, constrained, with the model's deterministic sites.

    AutoGuides draw with ``sample_posterior`` (so ``"laplace"`` uses its Hessian); a
    guide callable draws with ``Predictive(guide, params=params)``, its subsampled plates
    running over all data points. Deterministic sites
    come from replaying the model on the draws.

    Returns
    -------
    dict of str to array, each of shape (num_chains, num_draws, ...)
    """
    total = shape[0] * shape[1]
    key_guide, key_det = jax.random.split(rng_key)
    if isinstance(guide, autoguide.AutoGuide):
        draws = guide.sample_posterior(key_guide, params, *args, sample_shape=(total,), **kwargs)
    else:
        # A guide callable may subsample plates (minibatch SVI); draw for every data point.
        from probdyn.infer.minibatch import full_data_model

        full_guide = full_data_model(guide)
        draws = Predictive(full_guide, params=params, num_samples=total)(key_guide, *args, **kwargs)
    draws = {k: v for k, v in draws.items() if k in latent}
    missing = sorted(set(latent) - set(draws))
    if missing:
        raise ValueError(f"guide does not sample the model's latent sites {missing}")
    if deterministic:
        det = Predictive(model, posterior_samples=draws, return_sites=deterministic)(
            key_det, *args, **kwargs
        )
        draws.update({k: det[k] for k in deterministic if k in det})
    return {k: jnp.reshape(v, shape + jnp.shape(v)[1:]) for k, v in draws.items()}
