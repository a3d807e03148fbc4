"""Benchmark: the training cost of BARNN over the same deterministic network.

Question
    Per SVI step, how much slower is training a BARNN surrogate
    (:class:`probdyn.nn.BARNN` around an :class:`probdyn.nn.FNO1d`: encoder of the dropout
    rates, local reparameterisation in the pointwise layers, tVAMP KL) than training the
    same FNO deterministically, both through the model of
    :class:`probdyn.infer.AutoregressiveSurrogate`? Target (issue 10, section 8): <= 2x.
    (The SGHMC-vs-BlackJAX and PyTorch rollout-throughput comparisons of that section are
    not written yet.)

Problem (float32)
    Windows ``(u_t, u_{t+1})`` of random periodic fields on a grid of ``--points`` points,
    one channel; FNO1d(width, modes, layers); minibatches of ``--batch`` windows from the
    plate ``"windows"``; Adam. Full: 64 points, width 32, 12 modes, 4 layers, batch 32,
    2,048 windows. ``--quick``: 32 points, width 16, 6 modes, 2 layers, batch 16.

Timing
    The loop ``fit(method="svi")`` compiles (``svi.update`` in a jitted ``lax.scan`` of
    ``--steps`` steps) is compiled by a first call, then each repeat times both contenders
    once, round robin; the ratio is the median over repeats of back-to-back pairs.

Run ``python bench/barnn.py``; ``--quick`` is a smoke test.
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from numpyro.infer import SVI, Trace_ELBO

from probdyn.infer import AutoregressiveSurrogate
from probdyn.nn import BARNN, FNO1d


def _stepper(surrogate, data, batch_size, num_steps, seed):
    svi = SVI(surrogate.model, surrogate.guide, optax.adam(1e-3), Trace_ELBO())
    kwargs = {"batch_size": batch_size}
    state = svi.init(jax.random.PRNGKey(seed), *data, **kwargs)

    @functools.partial(jax.jit, static_argnums=1)
    def steps(state, n):
        return jax.lax.scan(lambda s, _: svi.update(s, *data, **kwargs), state, None, length=n)

    def run():
        out, losses = steps(state, num_steps)
        losses.block_until_ready()
        return losses

    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        points, width, modes, layers, batch, windows = 32, 16, 6, 2, 16, 256
        repeats, num_steps = args.repeats or 3, args.steps or 20
    else:
        points, width, modes, layers, batch, windows = 64, 32, 12, 4, 32, 2048
        repeats, num_steps = args.repeats or 7, args.steps or 100
    key = jax.random.PRNGKey(0)
    k_data, k_net, k_enc = jax.random.split(key, 3)
    inputs = jax.random.normal(k_data, (windows, 1, points))
    targets = inputs + 0.1 * jnp.roll(inputs, 1, axis=-1)
    steps_idx = jnp.arange(windows, dtype=jnp.int32) % 50
    data = (inputs, targets, steps_idx)
    fno = FNO1d(1, 1, width=width, modes=modes, num_layers=layers, key=k_net)
    contenders = {
        "deterministic": AutoregressiveSurrogate(fno, method="deterministic"),
        "barnn": AutoregressiveSurrogate(BARNN(fno, in_channels=1, key=k_enc), method="barnn"),
    }
    runs = {name: _stepper(s, data, batch, num_steps, 1) for name, s in contenders.items()}
    for run in runs.values():  # compile
        run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) / num_steps)
    ratios = [b / d for b, d in zip(times["barnn"], times["deterministic"], strict=True)]
    det = statistics.median(times["deterministic"])
    bar = statistics.median(times["barnn"])
    print(f"# {platform.processor() or platform.machine()}, jax {jax.__version__}, "
          f"{jax.devices()[0].platform}")  # fmt: skip
    print(
        f"# grid {points}, width {width}, modes {modes}, layers {layers}, batch {batch}, "
        f"{num_steps} steps x {repeats} repeats"
    )
    print("| per SVI step | deterministic FNO | BARNN FNO | ratio (target <= 2) |")
    print("|---|---|---|---|")
    print(f"| time | {det * 1e3:.2f} ms | {bar * 1e3:.2f} ms | {statistics.median(ratios):.2f}x |")
    return {"deterministic_s": det, "barnn_s": bar, "ratio": statistics.median(ratios)}


if __name__ == "__main__":
    main()
