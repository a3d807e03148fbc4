"""Benchmark: one training step of the HMM emulator, probdyn (JAX) vs PyTorch + geomloss.

Question
    Per training step, how much faster is ``probdyn.infer.train_emulator``'s update than
    the same model trained as the reference code of Torre et al. (2025) does it (PyTorch
    ``nn.RNN(nonlinearity="relu", bias=False)``, ``nn.Linear(bias=False)``,
    ``F.gumbel_softmax(hard=True)``, geomloss ``SamplesLoss(blur=0.2)``, Adam 1e-3 with
    betas (0.9, 0.9), ``clip_grad_norm_(0.9)``), target >= 2x, at the same loss?

Configuration
    The 2-state linear chain of the paper (T = 100, 3 symbols), hidden 150, noise 100,
    batch ``--batch`` (256 by default). Each step: fresh input and Gumbel noise, one
    emulator batch against one HMM batch (the torch side gets its HMM batches
    pre-sampled, as the reference code's fixed training set; ours draws them inside the
    step), Sinkhorn divergence, backward, clipping, Adam.

Timing
    Interleaved: for each of ``--repeats`` rounds, ``--steps`` torch steps then
    ``--steps`` probdyn steps; per-step wall and process (CPU) times, medians reported.
    JAX compiled (and torch warmed up) before timing. One intra-op thread for both
    (``torch.set_num_threads(1)``, XLA ``--xla_cpu_multi_thread_eigen=false``) unless
    ``--default-threads``. "Same loss": both losses evaluated on the same fixed pair of
    one-hot batches (geomloss vs ``probdyn.kernels.sinkhorn_divergence``), relative
    difference printed.

Run ``python bench/emulator.py`` (needs the ``bench`` extra: torch, geomloss).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

if "--default-threads" not in sys.argv:
    _flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = (_flags + " --xla_cpu_multi_thread_eigen=false").strip()

import equinox as eqx
import jax
import numpy as np
import optax

from probdyn.infer.emulator import emulator_loss, hmm_one_hot_batch
from probdyn.kernels.sinkhorn import sinkhorn_divergence
from probdyn.models.hmm_zoo import linear_chain
from probdyn.nn import HMMEmulator


def _torch_setup(H, d, S, lr):
    import torch
    import torch.nn.functional as F
    from geomloss import SamplesLoss

    class RNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.RNN(d, H, 1, nonlinearity="relu", batch_first=True, bias=False)
            self.fc = torch.nn.Linear(H, S, bias=False)

        def forward(self, x):
            h0 = torch.zeros(1, x.shape[0], H)
            out, _ = self.rnn(x, h0)
            return F.gumbel_softmax(self.fc(out), tau=1.0, hard=True, eps=1e-10, dim=-1)

    model = RNN()
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.9))
    loss_fn = SamplesLoss(blur=0.2)

    def step(targets):
        N, T, _ = targets.shape
        x = torch.normal(0.0, 1.0, size=(N, T, d))
        opt.zero_grad()
        y = model(x)
        loss = loss_fn(y.reshape(N, -1), targets.reshape(N, -1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.9)
        opt.step()
        return loss.item()

    return step, loss_fn


def _jax_setup(hmm, H, d, S, B, lr):
    emu = HMMEmulator(H, d, S, rng_key=jax.random.PRNGKey(0))
    opt = optax.chain(optax.clip_by_global_norm(0.9), optax.adam(lr, b1=0.9, b2=0.9))
    state = opt.init(emu)
    grad = eqx.filter_value_and_grad(emulator_loss)

    @eqx.filter_jit
    def step(model, state, key):
        k1, k2 = jax.random.split(key)
        targets = hmm_one_hot_batch(k1, hmm, B)
        loss, g = grad(model, k2, targets)
        updates, state = opt.update(g, state, model)
        return eqx.apply_updates(model, updates), state, loss

    return emu, state, step


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--default-threads", action="store_true")
    args = p.parse_args(argv)
    import torch

    if not args.default_threads:
        torch.set_num_threads(1)
    torch.manual_seed(0)
    hmm = linear_chain(2)
    H, d, S, T, B = 150, 100, 3, hmm.num_timesteps, args.batch
    pool = np.asarray(
        hmm_one_hot_batch(jax.random.PRNGKey(1), hmm, B * (args.steps * args.repeats + 1))
    ).astype(np.float32)
    targets = torch.tensor(pool).reshape(-1, B, T, S)
    t_step, t_loss = _torch_setup(H, d, S, 1e-3)
    emu, state, j_step = _jax_setup(hmm, H, d, S, B, 1e-3)

    # same loss: both divergences on one fixed pair of batches
    a = pool[:B].reshape(B, -1)
    b = np.asarray(hmm_one_hot_batch(jax.random.PRNGKey(2), hmm, B)).reshape(B, -1)
    ref = float(t_loss(torch.tensor(a), torch.tensor(b)))
    ours = float(sinkhorn_divergence(a, b, diameter=math.sqrt(T * S)))
    print(f"Sinkhorn divergence on one pair of HMM batches: geomloss {ref:.4f}, probdyn "
          f"{ours:.4f} ({(ours - ref) / ref:+.1%})")  # fmt: skip

    t0 = time.perf_counter()
    emu, state, loss = j_step(emu, state, jax.random.PRNGKey(3))
    jax.block_until_ready(loss)
    print(f"probdyn compile + first step: {time.perf_counter() - t0:.1f} s")
    t_step(targets[0])  # torch warm-up
    key = jax.random.PRNGKey(4)
    rows = {"torch": ([], []), "probdyn": ([], [])}
    losses = {"torch": [], "probdyn": []}
    i = 1
    for _ in range(args.repeats):
        for _ in range(args.steps):
            w, c = time.perf_counter(), time.process_time()
            losses["torch"].append(t_step(targets[i]))
            rows["torch"][0].append(time.perf_counter() - w)
            rows["torch"][1].append(time.process_time() - c)
            i += 1
        for _ in range(args.steps):
            key, sub = jax.random.split(key)
            w, c = time.perf_counter(), time.process_time()
            emu, state, loss = j_step(emu, state, sub)
            losses["probdyn"].append(float(jax.block_until_ready(loss)))
            rows["probdyn"][0].append(time.perf_counter() - w)
            rows["probdyn"][1].append(time.process_time() - c)
    tw, tc = (float(np.median(v)) for v in rows["torch"])
    ow, oc = (float(np.median(v)) for v in rows["probdyn"])
    print(f"\nbatch {B}, T {T}, hidden {H}, noise {d}; median of {args.steps * args.repeats} "
          "steps each, interleaved")  # fmt: skip
    print("| per step | torch + geomloss | probdyn | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| wall | {tw * 1e3:.0f} ms | {ow * 1e3:.0f} ms | {tw / ow:.2f}x |")
    print(f"| process CPU | {tc * 1e3:.0f} ms | {oc * 1e3:.0f} ms | {tc / oc:.2f}x |")
    print(f"mean training loss over the timed steps: torch {np.mean(losses['torch']):.2f}, "
          f"probdyn {np.mean(losses['probdyn']):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
