"""MCMC for :func:`probdyn.fit`: one program without a checkpoint, compiled segments with one.

Without a checkpoint, NumPyro's :class:`~numpyro.infer.MCMC` warms up and samples in one
compiled program. With one, warmup runs once (NumPyro's ``MCMC.warmup``, the adaptation
schedule needs it whole), and sampling runs in segments of ``checkpoint_every`` kept draws
through one jitted function built here, ``(states, n) -> (states, draws)``: a
``lax.scan`` of the kernel's ``sample`` over ``n * thinning`` iterations, vmapped
(``"vectorized"``), split over devices (``"sharded"``), pmapped (``"parallel"``) or
called chain by chain (``"sequential"``).
It is compiled once per distinct segment length (at most two: ``checkpoint_every`` and
the remainder), so a run of hundreds of segments neither recompiles nor grows in memory,
unlike calling ``MCMC.run`` per segment.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import MCMC
from tqdm.auto import tqdm

from probdyn.distributed import chain_map, map_over_devices
from probdyn.infer.checkpoint import Checkpoint, to_numpy

__all__ = ["run_mcmc", "segment_sampler"]


def _field(state: Any, name: str) -> Any:
    return functools.reduce(getattr, name.split("."), state)


def segment_sampler(
    kernel,
    args: tuple,
    kwargs: Mapping,
    *,
    fields: tuple[str, ...],
    thinning: int,
    chain_method: str,
) -> Callable:
    """``run(states, n) -> (states, samples, stats)``: ``n`` kept draws of every chain.

    Parameters
    ----------
    kernel : numpyro.infer.mcmc.MCMCKernel
        A kernel initialised for one chain (``init`` with a single key).
    args, kwargs : tuple, dict
        Model arguments (closed over: constants of the compiled program).
    fields : tuple of str
        State fields to collect besides ``z`` (dotted names allowed).
    thinning : int
        Iterations per kept draw.
    chain_method : {"sharded", "vectorized", "parallel", "sequential"}
        How the chains (the leading axis of ``states``) advance ("sharded": over every
        device, :func:`probdyn.distributed.map_over_devices`).

    Returns
    -------
    callable
        ``states`` has a leading chain axis; ``samples`` (constrained sites, deterministic
        ones included) and ``stats`` (``fields``) are dicts of arrays of shape
        ``(num_chains, n, ...)``. Compiled once per distinct ``n``.
    """
    postprocess = kernel.postprocess_fn(args, kwargs)

    def one_chain(state, n):
        def iterate(s, _):
            return kernel.sample(s, args, kwargs), None

        def draw(s, _):
            s, _ = jax.lax.scan(iterate, s, None, length=thinning)
            z = _field(s, kernel.sample_field)
            return s, (postprocess(z), {f: _field(s, f) for f in fields})

        return jax.lax.scan(draw, state, None, length=n)

    if chain_method == "sharded":
        mapped = functools.cache(lambda n: map_over_devices(lambda s: one_chain(s, n)))

        def batched(states, n):
            return mapped(n)(states)
    elif chain_method == "parallel":
        batched = jax.pmap(one_chain, in_axes=(0, None), static_broadcasted_argnums=1)
    elif chain_method == "sequential":
        single = jax.jit(one_chain, static_argnums=1)

        def batched(states, n):
            num_chains = jax.tree.leaves(states)[0].shape[0]
            outs = [single(jax.tree.map(lambda x, c=c: x[c], states), n) for c in range(num_chains)]
            return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)
    else:
        batched = jax.jit(jax.vmap(one_chain, in_axes=(0, None)), static_argnums=1)

    def run(states, n):
        states, (samples, stats) = batched(states, n)
        return states, samples, stats

    # for tests: ``run.compiled._cache_size()`` counts the compilations
    run.compiled = single if chain_method == "sequential" else batched
    return run


def _concat(old: dict, new: dict) -> dict:
    new = {k: np.asarray(v) for k, v in new.items()}
    if not old:
        return new
    return {k: np.concatenate([old[k], new[k]], axis=1) for k in new}


def _with_chain_axis(tree: Any, num_chains: int) -> Any:
    """NumPyro drops the chain axis of the state when there is one chain; put it back."""
    if num_chains > 1:
        return tree
    return jax.tree.map(lambda x: x[None], tree)


def run_mcmc(
    kernel,
    args,
    kwargs,
    *,
    rng_key,
    method,
    num_chains,
    num_warmup,
    num_draws,
    thinning,
    chain_method,
    progress_bar,
    checkpoint: Checkpoint | None,
    checkpoint_every,
    partial_idata,
    fields: tuple[str, ...],
    make_kernel: Callable[[], Any],
):
    """Warm up once, then draw in segments of ``checkpoint_every`` (or all at once).

    ``kernel`` warms up (through NumPyro's ``MCMC``); ``make_kernel()`` builds a fresh
    kernel of the same kind and options for the checkpointed segments.

    Returns
    -------
    samples, stats : dict of str to np.ndarray
        Arrays of shape ``(num_chains, num_draws, ...)``; ``stats`` keyed by the kernel's
        field names (``kernel.default_fields`` other than ``z``, then ``fields``).
    """
    del method

    def make_mcmc(num_iterations):
        sharded = chain_method == "sharded" and num_chains > 1
        return MCMC(
            kernel,
            num_warmup=num_warmup,
            num_samples=num_iterations,
            num_chains=num_chains,
            thinning=thinning,
            # NumPyro maps a callable chain_method over the chains, as it does pmap
            chain_method=chain_map() if sharded else chain_method.replace("sharded", "sequential"),
            progress_bar=progress_bar and not sharded,
        )

    if checkpoint is None:
        # No checkpoint: warmup and sampling in one compiled program (half the compile time).
        mcmc = make_mcmc(num_draws * thinning)
        mcmc.run(rng_key, *args, extra_fields=fields, **kwargs)
        samples = jax.device_get(mcmc.get_samples(group_by_chain=True))
        stats = jax.device_get(mcmc.get_extra_fields(group_by_chain=True))
        return _concat({}, samples), _concat({}, stats)

    collect = tuple(f for f in kernel.default_fields if f != kernel.sample_field) + tuple(
        f for f in fields if f not in kernel.default_fields
    )
    # Segments run on a second kernel set up for one chain (NumPyro's ``init`` with a
    # batch of keys leaves the kernel's sample function vmapped), the same way on a fresh
    # and on a resumed run; its initial state is the template a saved state must match.
    sampler = make_kernel()
    template = sampler.init(jax.random.PRNGKey(0), num_warmup, None, args, kwargs)
    if checkpoint.has_progress():
        progress = checkpoint.load_progress({"state": (template, (num_chains,))})
        if progress.get("kind") != "mcmc" or "draws_done" not in progress:
            raise checkpoint.corrupt(f"it holds a {progress.get('kind')!r} run, not MCMC")
        done = progress["draws_done"]
        samples, stats = progress.get("samples", {}), progress.get("stats", {})
        _check_counts(checkpoint, done, num_draws, num_chains, samples, stats, collect)
        states = progress["state"]
    else:
        mcmc = make_mcmc(thinning)
        mcmc.warmup(rng_key, *args, **kwargs)
        states = _with_chain_axis(mcmc.post_warmup_state, num_chains)
        samples, stats, done = {}, {}, 0
        checkpoint.save_progress(
            {"kind": "mcmc", "draws_done": 0, "state": to_numpy(states)}, None, 0
        )
        # resumed and fresh runs feed the same (round-tripped) arrays to the sampler
        states = checkpoint.load_progress({"state": (template, (num_chains,))})["state"]
    run = segment_sampler(
        sampler, args, kwargs, fields=collect, thinning=thinning, chain_method=chain_method
    )
    segment = checkpoint_every or num_draws
    with tqdm(total=num_draws, initial=done, disable=not progress_bar, desc="sample") as bar:
        while done < num_draws:
            n = min(segment, num_draws - done)
            states, new, extra = run(states, n)
            samples = _concat(samples, jax.device_get(new))
            stats = _concat(stats, jax.device_get(extra))
            done += n
            bar.update(n)
            if checkpoint_every is not None:
                payload = {
                    "kind": "mcmc",
                    "draws_done": done,
                    "state": to_numpy(states),
                    "samples": samples,
                    "stats": stats,
                }
                checkpoint.save_progress(payload, partial_idata(samples, stats), done)
    return samples, stats


def _check_counts(checkpoint, done, num_draws, num_chains, samples, stats, fields) -> None:
    """``draws_done`` must agree with the saved arrays and the run's size."""
    if isinstance(done, bool) or not isinstance(done, int) or not 0 <= done <= num_draws:
        raise checkpoint.corrupt(f"draws_done={done!r}; expected an integer in [0, {num_draws}]")
    if done and not samples:
        raise checkpoint.corrupt(f"draws_done={done} but no draws are saved")
    for group, arrays in (("samples", samples), ("stats", stats)):
        for name, arr in arrays.items():
            if arr.ndim < 2 or arr.shape[:2] != (num_chains, done):
                raise checkpoint.corrupt(
                    f"draws_done={done} but the saved {group} {name!r} have shape "
                    f"{list(arr.shape)}; expected ({num_chains}, {done}, ...)"
                )
    if done and sorted(stats) != sorted(fields):
        raise checkpoint.corrupt(f"saved statistics {sorted(stats)}; expected {sorted(fields)}")
