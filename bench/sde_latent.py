"""Benchmark: latent-SDE SVI in probdyn vs torchsde's ``examples/latent_sde.py`` toy.

Question
    Per training iteration, how much faster is probdyn's latent SDE
    (:mod:`probdyn.infer.latent_sde`, NumPyro SVI + optax, one jitted update) than the same
    model trained with torchsde (target >= 2x), and is the loss after the same number of
    iterations equal or better?

Configuration (the torchsde toy, ``--data irregular_sine``)
    Data: 16 times ~ U(0.4, 1.6) sorted, y = 0.8 sin(2 pi t); the latent path runs on
    [0, 2] (torchsde's ``ts_ext``). Prior: OU drift theta (mu - z), theta=1, mu=0, fixed
    diffusion sigma=0.5, z0 ~ N(mu, sigma^2 / (2 theta)). Posterior drift: MLP 3-200-200-1
    tanh on (sin t, cos t, z), last layer zero-initialised; q(z0) = N(m, s^2) with free m,
    s initialised at the prior. Laplace likelihood, scale 0.05. 512 paths per step,
    Euler--Maruyama dt=0.01, path KL accumulated along the path (torchsde: ``sdeint(...,
    method="euler", logqp=True)``), analytic KL at t=0. Loss = -E log p(y|z) + beta KL with
    beta linear over 100 iterations (torchsde's LinearScheduler), Adam 1e-2 with exponential
    decay 0.999 per step (the example's ExponentialLR).

    The torch side is written here for that configuration (not copied from the example).
    torchsde steps on the dt grid and interpolates at the observation times; probdyn adds the
    observation times to the grid (216 vs 200 steps).

Timing
    Both train for ``--iters`` iterations from the same data, interleaved (one iteration of
    ours, one of torch's, in turn, so both see the same machine load). Ours:
    ``svi.update`` jitted and compiled by a first call (compile time reported separately),
    the state then reset.
    Per-iteration wall and process (CPU) times are recorded, the median reported. By
    default both libraries run one intra-op thread (``torch.set_num_threads(1)``, XLA's
    ``--xla_cpu_multi_thread_eigen=false``): on a shared 2-core machine torch's two OpenMP
    threads were ~20x slower than one; ``--default-threads`` keeps the defaults.
    "Loss after N iterations" is the mean training loss over the last 20 iterations and an
    evaluation of the full ELBO (beta=1) with 4096 fresh paths for each trained model, by
    each library's own estimator and, for both trained models, by probdyn's (the torch
    weights copied into the same MLP): torchsde reads the path at the observation times by
    linear interpolation between dt-grid points, which has less variance than the path
    itself there, so its own estimate is not the same quantity as ours.

Run ``python bench/sde_latent.py``; ``--quick`` is a smoke test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

if "--default-threads" not in sys.argv:
    # one intra-op thread for XLA too; must be set before the XLA CPU client starts
    _flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = (_flags + " --xla_cpu_multi_thread_eigen=false").strip()

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.infer import SVI

from probdyn.infer.latent_sde import (
    LatentSDE,
    LatentSDEELBO,
    OrnsteinUhlenbeckDrift,
    linear_kl_schedule,
)
from probdyn.nn import PosteriorDriftMLP

THETA, MU, SIGMA = 1.0, 0.0, 0.5
SCALE, DT, LR, GAMMA, KL_ITERS = 0.05, 0.01, 1e-2, 0.999, 100


def make_data(seed):
    rng = np.random.RandomState(seed)
    ts = np.sort(rng.uniform(0.4, 1.6, 16))
    return ts, 0.8 * np.sin(2 * np.pi * ts)[:, None]


# ----------------------------------------------------------------------------- ours


def _ours_sde(width, seed):
    return LatentSDE(
        OrnsteinUhlenbeckDrift(THETA, MU),
        PosteriorDriftMLP(1, width=width, depth=2, key=jax.random.PRNGKey(seed)),
        diffusion=SIGMA,
        state_dim=1,
        likelihood="laplace",
        obs_scale=SCALE,
        z0_loc=MU,
        z0_scale=SIGMA / math.sqrt(2 * THETA),
        dt=DT,
        t0=0.0,
        t1=2.0,
        learn_prior=False,
    )


class Ours:
    """probdyn's side: one jitted ``svi.update`` per :meth:`step`."""

    def __init__(self, ts, ys, batch, width, seed):
        self.sde = sde = _ours_sde(width, seed)
        optim = optax.adam(optax.exponential_decay(LR, 1, GAMMA))
        elbo = LatentSDEELBO(batch, linear_kl_schedule(KL_ITERS))
        self.svi = svi = SVI(sde.model, sde.guide, optim, elbo)
        self.ts, self.ys, self.seed = ts, jnp.asarray(ys, jnp.float32), seed
        self.state = svi.init(jax.random.PRNGKey(seed), ts, self.ys)
        self.update = jax.jit(lambda s: svi.update(s, ts, self.ys))
        t0 = time.perf_counter()
        jax.block_until_ready(self.update(self.state))  # compile; the state is not kept
        self.compile_s = time.perf_counter() - t0
        self.wall, self.cpu, self.losses = [], [], []

    def step(self):
        w, c = time.perf_counter(), time.process_time()
        self.state, loss = self.update(self.state)
        loss = float(loss)  # blocks
        self.wall.append(time.perf_counter() - w)
        self.cpu.append(time.process_time() - c)
        self.losses.append(loss)

    def eval_loss(self, params):
        """-ELBO (beta = 1) with 4096 fresh paths on probdyn's grid, for any parameters."""
        sde, ts, ys = self.sde, self.ts, self.ys
        loss = jax.jit(lambda k: LatentSDEELBO(4096).loss(k, params, sde.model, sde.guide, ts, ys))
        return float(loss(jax.random.PRNGKey(self.seed + 1)))

    def result(self):
        return {
            "compile_s": self.compile_s,
            "wall": self.wall,
            "cpu": self.cpu,
            "losses": self.losses,
            "eval_loss": self.eval_loss(self.svi.get_params(self.state)),
        }


# ----------------------------------------------------------------------------- torchsde


class Torch:
    """torchsde's side, written from the example's configuration; one step per :meth:`step`."""

    def __init__(self, ts, ys, batch, width, seed, threads):
        import torch
        import torchsde
        from torch import distributions, nn

        torch.manual_seed(seed)
        torch.set_num_threads(threads)
        self.torch, self.torchsde = torch, torchsde
        logvar0 = math.log(SIGMA**2 / (2 * THETA))

        class ToyLatentSDE(nn.Module):
            noise_type = "diagonal"
            sde_type = "ito"

            def __init__(self):
                super().__init__()
                self.drift_net = nn.Sequential(
                    nn.Linear(3, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                    nn.Linear(width, 1),
                )  # fmt: skip
                nn.init.zeros_(self.drift_net[-1].weight)
                nn.init.zeros_(self.drift_net[-1].bias)
                self.q_mean = nn.Parameter(torch.full((1, 1), MU))
                self.q_logvar = nn.Parameter(torch.full((1, 1), logvar0))

            def f(self, t, y):  # posterior drift
                tt = torch.full_like(y, float(t)) if torch.is_tensor(t) and t.dim() == 0 else t
                return self.drift_net(torch.cat((torch.sin(tt), torch.cos(tt), y), dim=-1))

            def g(self, t, y):  # shared diffusion
                return torch.full_like(y, SIGMA)

            def h(self, t, y):  # prior drift
                return THETA * (MU - y)

            def forward(self, ts_ext, n):
                q_std = torch.exp(0.5 * self.q_logvar)
                y0 = self.q_mean + q_std * torch.randn(n, 1)
                q0 = distributions.Normal(self.q_mean, q_std)
                p0 = distributions.Normal(
                    torch.full((1, 1), MU), torch.full((1, 1), math.exp(0.5 * logvar0))
                )
                kl0 = distributions.kl_divergence(q0, p0).sum(dim=1)
                zs, log_ratio = torchsde.sdeint(self, y0, ts_ext, method="euler", dt=DT, logqp=True)
                return zs, (kl0 + log_ratio.sum(dim=0)).mean(dim=0)

        self.ts_ext = torch.tensor([0.0, *ts, 2.0], dtype=torch.float32)
        self.y_obs = torch.tensor(ys, dtype=torch.float32)
        self.model = ToyLatentSDE()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.sched = torch.optim.lr_scheduler.ExponentialLR(self.opt, gamma=GAMMA)
        self.distributions = distributions
        self.it = 0
        self.wall, self.cpu, self.losses = [], [], []

    def loss_fn(self, n, beta):
        zs, kl = self.model(self.ts_ext, n)
        zs = zs[1:-1]  # (16, n, 1): drop t=0 and t=2
        lik = self.distributions.Laplace(zs, SCALE)
        logpy = lik.log_prob(self.y_obs[:, None, :]).sum(dim=(0, 2)).mean()
        return -logpy + beta * kl

    def step(self):
        beta = min(1.0, (self.it + 1) / KL_ITERS)
        self.it += 1
        w, c = time.perf_counter(), time.process_time()
        self.opt.zero_grad()
        loss = self.loss_fn(self.batch, beta)
        loss.backward()
        self.opt.step()
        self.sched.step()
        self.wall.append(time.perf_counter() - w)
        self.cpu.append(time.process_time() - c)
        self.losses.append(float(loss.detach()))

    def params_for_ours(self):
        """The trained torch parameters as probdyn's SVI parameters (same architecture)."""
        net = self.model.drift_net
        lin = [net[0], net[2], net[4]]
        tmpl = PosteriorDriftMLP(1, width=lin[0].out_features, depth=2, key=jax.random.PRNGKey(0))
        arr = lambda t: jnp.asarray(t.detach().numpy(), jnp.float32)  # noqa: E731
        layers = tuple(
            eqx.tree_at(lambda lay: (lay.weight, lay.bias), old, (arr(new.weight), arr(new.bias)))
            for old, new in zip(tmpl.mlp.layers, lin, strict=True)
        )
        drift = eqx.tree_at(lambda m: m.mlp.layers, tmpl, layers)
        return {
            "posterior_drift$params": eqx.filter(drift, eqx.is_inexact_array),
            "qz0_loc": arr(self.model.q_mean)[0],
            "qz0_scale": jnp.exp(0.5 * arr(self.model.q_logvar)[0]),
        }

    def result(self):
        with self.torch.no_grad():
            eval_loss = float(self.loss_fn(4096, 1.0))
        return {
            "wall": self.wall,
            "cpu": self.cpu,
            "losses": self.losses,
            "eval_loss": eval_loss,
            "threads": self.torch.get_num_threads(),
            "versions": {"torch": self.torch.__version__, "torchsde": self.torchsde.__version__},
        }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--width", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="20 iterations, batch 64, width 32")
    p.add_argument(
        "--default-threads",
        action="store_true",
        help="keep each library's default intra-op threads (default: one thread for both)",
    )
    p.add_argument("--out", help="write every timing to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.iters, args.batch, args.width = 20, 64, 32
    import torch

    threads = torch.get_num_threads() if args.default_threads else 1
    ts, ys = make_data(args.seed)
    o = Ours(ts, ys, args.batch, args.width, args.seed)
    t = Torch(ts, ys, args.batch, args.width, args.seed, threads)
    t.batch = args.batch
    for _ in range(args.iters):  # interleaved: one iteration of each in turn
        o.step()
        t.step()
    ours, peer = o.result(), t.result()
    # the torch-trained model scored by probdyn's estimator (its grid, 4096 paths): the
    # same yardstick for both trained models
    peer["eval_loss_ours_estimator"] = o.eval_loss(t.params_for_ours())
    tail = min(20, args.iters)

    def row(name, fn, fmt):
        a, b = fn(peer), fn(ours)
        return f"| {name} | {fmt(a)} | {fmt(b)} | {a / b:.2f}x |"

    med = lambda k: lambda r: float(np.median(r[k]))  # noqa: E731
    ms = lambda v: f"{1e3 * v:.1f} ms"  # noqa: E731
    num = lambda v: f"{v:.3f}"  # noqa: E731
    print(
        f"\nlatent SDE toy: {args.iters} iterations, batch {args.batch}, MLP 3-{args.width}-"
        f"{args.width}-1, dt {DT}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, torch threads "
        f"{peer['threads']}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}\n"
    )
    print("| | torchsde | probdyn | ratio (torchsde / probdyn) |")
    print("|---|---:|---:|---:|")
    print(row("s / iteration (median wall)", med("wall"), ms))
    print(row("s / iteration (median process CPU)", med("cpu"), ms))
    print(row("total training wall, s", lambda r: float(np.sum(r["wall"])), num))
    last = lambda r: float(np.mean(r["losses"][-tail:]))  # noqa: E731
    print(f"| training loss, mean of last {tail} | {last(peer):.3f} | {last(ours):.3f} | |")
    print(
        f"| eval -ELBO (4096 paths, beta=1) | {peer['eval_loss']:.3f} | {ours['eval_loss']:.3f} | |"
    )
    print(
        f"| eval -ELBO, probdyn's estimator for both | {peer['eval_loss_ours_estimator']:.3f} "
        f"| {ours['eval_loss']:.3f} | |"
    )
    print(f"| compile (first update), s | - | {ours['compile_s']:.2f} | |")
    speed = np.median(peer["wall"]) / np.median(ours["wall"])
    diff = ours["eval_loss"] - peer["eval_loss"]
    print(
        f"\ntarget >= 2x faster per iteration: {'met' if speed >= 2 else 'MISSED'} ({speed:.2f}x "
        f"wall, {np.median(peer['cpu']) / np.median(ours['cpu']):.2f}x CPU); loss equal or "
        f"better: {'met' if diff <= 0 else 'MISSED'} (ours - torchsde = {diff:+.3f})"
    )
    versions = {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpyro": __import__("numpyro").__version__,
        "optax": optax.__version__,
        "equinox": __import__("equinox").__version__,
        **peer["versions"],
    }
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(
                {"args": vars(args), "ours": ours, "torchsde": peer, "versions": versions}, fh
            )


if __name__ == "__main__":
    main()
