"""Benchmark: BARNN surrogates - training step, SG-MCMC over weights, rollout throughput.

Questions
    (1) Training cost per step of BARNN against the same deterministic network, both as
    NumPyro SVI steps of ``probdyn.infer.surrogate.AutoregressiveSurrogate`` (target <= 2x).
    (2) SGHMC over all weights through ``probdyn.fit(method="sghmc")`` against a
    hand-written BlackJAX loop (``blackjax.sgmcmc.diffusions.sghmc`` in ``lax.scan``, i.i.d.
    minibatch indices, same potential, same step), per step (target <= 1.2x).
    (3) Rollout throughput of BARNN (trajectories per second for 100 samples x the whole
    test horizon) against the same network written in PyTorch and rolled out as a user of
    the reference code (``dario-coscia/barnn``) would: a Python loop over time steps on a
    batch of ``samples x trajectories``, under ``torch.no_grad()`` (target >= 2x).

Problem (float32, CPU)
    Kuramoto-Sivashinsky surrogate on 64 points: ``FNO1d(1, 1, width=16, modes=12,
    num_layers=3)`` predicting the increment, BARNN rate encoder of width 16; windows from
    16 training trajectories of 101 snapshots (1,600 windows), minibatches of 64; the
    rollout starts from 4 test initial conditions, 100 samples each, 101 snapshots.

Timing
    CPU time of the process (all threads; ``--wall`` for wall time).
    (1) and (3)-ours: compiled ahead of time, called once, then timed in rounds that call
    every contender once (so ratios compare runs under the same load); medians.
    (2) The ratio times the SGHMC kernel that ``fit(method="sghmc")`` builds from the model
    (``probdyn.infer.sgmcmc.SGHMC``, its ``sample`` in a compiled ``lax.scan`` keeping the
    same thinned draws), against the hand loop, both compiled once, in the same rounds.
    Also printed: the per-step cost through ``fit`` itself, the difference of two calls
    ``(T(2S) - T(S)) / S``, each less its compile time (``jax.monitoring``), with the same
    kept draws; under load this difference is noisy.
    (3)-torch: the weights are copied from the JAX model and the mean paths (no noise) of
    one step are checked to agree. Also reported: ``surrogate.rollout`` called as is, without
    the caller's ``eqx.filter_jit`` (its compiled program is cached across calls).

Run ``python bench/barnn.py`` (~5 min on an idle 2-core machine); ``--quick`` is smaller.
"""

from __future__ import annotations

import argparse
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from blackjax.sgmcmc import diffusions
from jax import lax
from numpyro.infer import SVI, Trace_ELBO, init_to_value

import probdyn
from probdyn.infer.sgmcmc import SGHMC
from probdyn.infer.surrogate import AutoregressiveSurrogate, make_windows
from probdyn.models import pde
from probdyn.nn import BARNN, FNO1d

WIDTH, MODES, LAYERS, POINTS = 16, 12, 3, 64


_COMPILE_EVENTS = tuple(
    f"/jax/core/compile/{e}_duration" for e in ("jaxpr_to_mlir_module", "backend_compile")
)
_COMPILE_S = [0.0]  # lowering + XLA compile seconds so far in this process


def _on_event(event, duration_secs, **kwargs):
    if event in _COMPILE_EVENTS:
        _COMPILE_S[0] += duration_secs


jax.monitoring.register_event_duration_secs_listener(_on_event)


#: the clock of every timing: CPU time of the process (all threads) by default, since a
#: shared machine inflates wall time; ``--wall`` switches to wall time
_CLOCK = [time.process_time]


def _timed(fn, *args):
    t0 = _CLOCK[0]()
    jax.block_until_ready(fn(*args))
    return _CLOCK[0]() - t0


def _setup(num_train, num_test, num_timesteps):
    data = pde.make_dataset(
        jax.random.PRNGKey(0),
        "ks",
        num_train + num_test,
        num_points=POINTS,
        num_timesteps=num_timesteps,
    )
    u = jnp.asarray(data.u)[:, :, None, :]
    fno = FNO1d(1, 1, width=WIDTH, modes=MODES, num_layers=LAYERS, key=jax.random.PRNGKey(1))
    barnn = BARNN(fno, in_channels=1, width=WIDTH, key=jax.random.PRNGKey(2))
    return fno, barnn, make_windows(u[:num_train]), u[num_train:, 0]


# ----------------------------------------------------------------------------- (1) training


def bench_training(fno, barnn, windows, steps, batch, repeats):
    runs = {}
    for name, net, method in (("deterministic", fno, "deterministic"), ("BARNN", barnn, "barnn")):
        s = AutoregressiveSurrogate(net, method=method)
        svi = SVI(s.model, s.guide, optax.adam(1e-3), Trace_ELBO())
        state = svi.init(jax.random.PRNGKey(0), *windows, batch_size=batch)

        def run(state, svi=svi):
            def body(st, _):
                st, loss = svi.update(st, *windows, batch_size=batch)
                return st, loss

            return lax.scan(body, state, None, length=steps)[1]

        compiled = jax.jit(run).lower(state).compile()
        compiled(state)
        runs[name] = (compiled, state)
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (compiled, state) in runs.items():
            times[name].append(_timed(compiled, state) / steps)
    med = {name: statistics.median(t) for name, t in times.items()}
    ratio = statistics.median(
        b / d for b, d in zip(times["BARNN"], times["deterministic"], strict=True)
    )
    return med, ratio


# ----------------------------------------------------------------------------- (2) SGHMC


def bench_sghmc(fno, windows, steps, batch, repeats):
    sigma, step_size, alpha = 0.05, 1e-4, 50.0
    surrogate = AutoregressiveSurrogate(fno, method="bayes", obs_scale=sigma)
    params, static = eqx.partition(fno, eqx.is_inexact_array)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    start = {f"weights_{i}": leaf for i, leaf in enumerate(leaves)}
    inputs, targets, _ = windows
    n = inputs.shape[0]
    kept = 10

    def fit_call(num_samples, seed):
        """Wall time of one fit less its compile time."""
        t0, c0 = _CLOCK[0](), _COMPILE_S[0]
        probdyn.fit(
            surrogate.model,
            *windows,
            method="sghmc",
            model_kwargs={"batch_size": batch},
            num_chains=1,
            num_warmup=0,
            num_samples=num_samples,
            thinning=num_samples // kept,
            step_size=step_size,
            alpha=alpha,
            init_strategy=init_to_value(values=start),
            seed=seed,
            progress_bar=False,
        )
        return _CLOCK[0]() - t0 - (_COMPILE_S[0] - c0)

    def logdensity(position, idx):
        net = eqx.combine(jax.tree_util.tree_unflatten(treedef, position), static)
        u, du = inputs[idx], targets[idx] - inputs[idx]
        pred = jax.vmap(net)(u)
        loglik = dist.Normal(pred, sigma).log_prob(du).sum()
        prior = sum(dist.Normal(0.0, 1.0).log_prob(p).sum() for p in position)
        return prior + n / batch * loglik

    integrator = diffusions.sghmc(alpha, 0.0)
    grad = jax.grad(logdensity)

    @jax.jit
    def hand(key):
        k0, k1 = jax.random.split(key)
        momentum = [
            jax.random.normal(k, p.shape)
            for k, p in zip(jax.random.split(k0, len(leaves)), leaves, strict=True)
        ]

        def body(carry, key):
            position, momentum = carry
            k_batch, k_noise = jax.random.split(key)
            idx = jax.random.randint(k_batch, (batch,), 0, n)
            moved = [x + step_size * r for x, r in zip(position, momentum, strict=True)]
            position, momentum = integrator(
                k_noise, position, momentum, grad(moved, idx), step_size
            )
            return (position, momentum), position

        _, path = lax.scan(body, (list(leaves), momentum), jax.random.split(k1, steps))
        return [p[:: steps // kept] for p in path]

    # the kernel that fit(method="sghmc") runs, from the same model, in a compiled scan that
    # keeps the same thinned draws: the per-step cost of the sampler fit uses
    kernel = SGHMC(
        surrogate.model,
        step_size=step_size,
        alpha=alpha,
        init_strategy=init_to_value(values=start),
    )
    kwargs = {"batch_size": batch}
    state0 = kernel.init(jax.random.PRNGKey(0), 0, None, windows, kwargs)

    @jax.jit
    def through_kernel(state):
        def body(st, _):
            st = kernel.sample(st, windows, kwargs)
            return st, st.z

        return lax.scan(body, state, None, length=steps)[1]

    def thinned_kernel(state):
        return jax.tree.map(lambda p: p[:: steps // kept], through_kernel(state))

    hand(jax.random.PRNGKey(0))
    thinned_kernel(state0)
    fit_call(steps, 0)  # warm-up: the first fit in a process is slower
    fit_t, hand_t, kernel_t = [], [], []
    for r in range(repeats):
        t_short = fit_call(steps, r)
        t_long = fit_call(2 * steps, r)
        fit_t.append(max(t_long - t_short, 1e-9) / steps)
        hand_t.append(_timed(hand, jax.random.PRNGKey(r)) / steps)
        kernel_t.append(_timed(thinned_kernel, state0) / steps)
    ratio = statistics.median(k / h for k, h in zip(kernel_t, hand_t, strict=True))
    return {
        "hand": statistics.median(hand_t),
        "kernel": statistics.median(kernel_t),
        "fit_difference": statistics.median(fit_t),
        "ratio": ratio,
    }


# ----------------------------------------------------------------------------- (3) rollout


def _torch_model(barnn):
    """The BARNN-FNO in PyTorch, weights copied from the equinox model."""
    import torch
    from torch import nn

    def conv(layer):
        c = nn.Conv1d(layer.in_channels, layer.out_channels, 1)
        c.weight.data = torch.tensor(np.asarray(layer.weight))
        c.bias.data = torch.tensor(np.asarray(layer.bias)).reshape(-1)
        return c

    def lin(layer):
        lay = nn.Linear(layer.in_features, layer.out_features)
        lay.weight.data = torch.tensor(np.asarray(layer.weight))
        lay.bias.data = torch.tensor(np.asarray(layer.bias))
        return lay

    fno, enc = barnn.net, barnn.encoder

    class TorchBARNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.lift = conv(fno.lift)
            self.spectral = nn.ParameterList(
                [
                    nn.Parameter(
                        torch.complex(
                            torch.tensor(np.asarray(s.weight_real)),
                            torch.tensor(np.asarray(s.weight_imag)),
                        )
                    )
                    for s in fno.spectral
                ]
            )
            self.pointwise = nn.ModuleList([conv(p) for p in fno.pointwise])
            self.project = conv(fno.project)
            self.pre = lin(enc.pre)
            self.mlp = nn.ModuleList([lin(layer) for layer in enc.mlp.layers])
            self.width, self.max_period, self.modes = enc.width, enc.max_period, MODES

        def embedding(self, t, dtype):
            half = self.width
            freqs = torch.exp(-np.log(self.max_period) * torch.arange(half, dtype=dtype) / half)
            args = t * freqs
            return torch.cos(args), torch.sin(args)

        def rates(self, t, u):  # u (B, 1, X) -> log alpha (B, L, X)
            scale, shift = self.embedding(float(t), u.dtype)
            h = self.pre(u.transpose(1, 2)) * scale + shift
            for i, layer in enumerate(self.mlp):
                h = layer(h)
                if i < len(self.mlp) - 1:
                    h = torch.nn.functional.silu(h)
            return h.transpose(1, 2)

        @staticmethod
        def variational(layer, x, log_alpha, noise):
            mean = layer(x)
            var = nn.functional.conv1d(x**2, layer.weight**2, layer.bias**2)
            alpha = torch.exp(log_alpha)[:, None, :]
            eps = torch.randn_like(mean) if noise else torch.zeros_like(mean)
            return alpha * mean + alpha * torch.sqrt(var + 1e-12) * eps

        def spectral_conv(self, w, x):
            x_ft = torch.fft.rfft(x, dim=-1)[:, :, : self.modes]
            out = torch.einsum("bik,iok->bok", x_ft, w)
            full = torch.zeros(x.shape[0], w.shape[1], x.shape[-1] // 2 + 1, dtype=out.dtype)
            full[:, :, : self.modes] = out
            return torch.fft.irfft(full, n=x.shape[-1], dim=-1)

        def forward(self, t, u, noise=True):
            la = self.rates(t, u)
            x = self.lift(u)
            for i, (w, p) in enumerate(zip(self.spectral, self.pointwise, strict=True)):
                x = nn.functional.silu(
                    self.spectral_conv(w, x) + self.variational(p, x, la[:, i], noise)
                )
            return self.variational(self.project, x, la[:, -1], noise)

    return TorchBARNN()


def bench_rollout(barnn, u0, num_timesteps, num_samples, repeats):
    import torch

    surrogate = AutoregressiveSurrogate(barnn, method="barnn")

    def ours(net, u0, key):
        return surrogate.rollout(
            u0, num_timesteps, rng_key=key, network=net, num_samples=num_samples
        ).samples

    compiled = eqx.filter_jit(ours)
    jax.block_until_ready(compiled(barnn, u0, jax.random.PRNGKey(0)))
    model = _torch_model(barnn).eval()
    u_torch = torch.tensor(np.asarray(u0))
    with torch.no_grad():
        mean_torch = model(0, u_torch, noise=False).numpy()
    mean_jax = np.asarray(jax.vmap(lambda u: barnn(0, u, key=None)[0])(u0))
    max_diff = float(np.max(np.abs(mean_torch - mean_jax)))

    def torch_rollout():
        with torch.no_grad():
            u = u_torch.repeat(num_samples, 1, 1)
            path = [u]
            for t in range(num_timesteps - 1):
                u = u + model(t, u)
                path.append(u)
            return torch.stack(path, 1)

    torch_rollout()
    count = num_samples * u0.shape[0]
    t_ours, t_torch = [], []
    for r in range(repeats):
        t_ours.append(_timed(compiled, barnn, u0, jax.random.PRNGKey(r)))
        t0 = _CLOCK[0]()
        torch_rollout()
        t_torch.append(_CLOCK[0]() - t0)
    ours(barnn, u0, jax.random.PRNGKey(98))  # compiles (or hits) the rollout's own cache
    t_as_is = _timed(ours, barnn, u0, jax.random.PRNGKey(99))
    ratio = statistics.median(tt / to for tt, to in zip(t_torch, t_ours, strict=True))
    return {
        "ours_traj_per_s": count / statistics.median(t_ours),
        "torch_traj_per_s": count / statistics.median(t_torch),
        "ours_as_is_traj_per_s": count / t_as_is,
        "ratio": ratio,
        "max_abs_diff_mean_path": max_diff,
        "torch_threads": torch.get_num_threads(),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--parts", default="1,2,3", help="comma-separated subset of 1,2,3")
    p.add_argument("--wall", action="store_true", help="time wall clock instead of CPU time")
    args = p.parse_args(argv)
    _CLOCK[0] = time.perf_counter if args.wall else time.process_time
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    repeats = args.repeats or (3 if args.quick else 5)
    num_t = 51 if args.quick else 101
    fno, barnn, windows, u0 = _setup(8 if args.quick else 16, 4, num_t)
    print(
        f"jax {jax.__version__}, numpyro {numpyro.__version__}, {jax.devices()[0].platform}, "
        f"{windows[0].shape[0]} windows, {repeats} rounds, "
        f"{'wall' if args.wall else 'CPU'} time"
    )
    rows, parts = [], set(args.parts.split(","))
    if "1" in parts:
        med, ratio = bench_training(fno, barnn, windows, 20 if args.quick else 50, 64, repeats)
        rows.append(
            (
                "(1) SVI step, ms",
                "deterministic",
                med["deterministic"] * 1e3,
                med["BARNN"] * 1e3,
                ratio,
                "BARNN / det. <= 2",
            )
        )
    if "2" in parts:
        steps = 100 if args.quick else 300
        sg = bench_sghmc(fno, windows, steps, 64, repeats)
        rows.append(
            (
                "(2) SGHMC step, ms",
                "BlackJAX loop",
                sg["hand"] * 1e3,
                sg["kernel"] * 1e3,
                sg["ratio"],
                "fit's kernel / hand <= 1.2",
            )
        )
        print(
            f"SGHMC: per step through fit, (T(2S) - T(S)) / S less compile time: "
            f"{sg['fit_difference'] * 1e3:.3g} ms"
        )
    roll = None
    if "3" in parts:
        roll = bench_rollout(barnn, u0, num_t, 100, repeats)
        rows.append(
            (
                "(3) rollouts / s",
                "PyTorch",
                roll["torch_traj_per_s"],
                roll["ours_traj_per_s"],
                roll["ratio"],
                "ours / torch >= 2",
            )
        )
    print("\n| quantity | peer | peer value | ours | ratio | target |")
    print("|---|---|---|---|---|---|")
    for q, peer, pv, ov, r, target in rows:
        print(f"| {q} | {peer} | {pv:.4g} | {ov:.4g} | {r:.2f} | {target} |")
    if roll is not None:
        print(
            f"\nrollout: {u0.shape[0]} initial conditions x 100 samples x {num_t} snapshots; "
            f"surrogate.rollout called as is (cached program, a second call): "
            f"{roll['ours_as_is_traj_per_s']:.4g} traj/s; torch threads {roll['torch_threads']}; "
            f"max |torch - jax| of one mean step {roll['max_abs_diff_mean_path']:.2e}"
        )
        assert roll["max_abs_diff_mean_path"] < 1e-4, (
            "the PyTorch port disagrees with the JAX model"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
