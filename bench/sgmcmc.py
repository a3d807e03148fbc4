"""Benchmark: the cost of ``probdyn.fit`` over hand-written samplers (SGLD and NUTS).

Question
    Per step, how much slower is ``probdyn.fit(method="sgld")`` than a hand-written BlackJAX
    ``sgld`` loop in ``lax.scan`` (target <= 1.2x) and than sgmcmcjax's SGLD; end to end, how
    much slower is ``fit(method="nuts")`` than ``numpyro.infer.MCMC(NUTS)`` (target <= 1.05x)?
    Where does the overhead go?

Problems (float32)
    * Logistic regression: X (N, D) standard normal, y ~ Bernoulli(sigmoid(X w)), w ~ N(0, I),
      minibatches of B rows from ``numpyro.plate("data", N, subsample_size=B)``, constant-step
      SGLD. Full: N=10,000, D=20, B=100, 10,000 steps, every step kept.
    * GRU: N noisy sine waves of length L+1; a GRU (input 1, hidden 16, weights ~ N(0, 0.5^2))
      reads x[:-1] and predicts x[1:] by a linear read-out, Normal(., 0.3) likelihood, B
      sequences a minibatch. Full: N=1,000, L=50, B=32, 2,000 steps, every 20th kept.
    * NUTS: the logistic regression, N=1,000, D=20, no subsampling, 1 chain, 500 + 500.

Peers
    * raw: ``blackjax.sgld`` on the gradient of ``log prior + N/B * minibatch log-lik``,
      indices by ``random.randint`` (with replacement), jitted ``lax.scan``, all steps kept.
    * sgmcmcjax ``build_sgld_sampler`` (``random.choice`` with replacement). sgmcmcjax 0.2.13
      imports ``jax.experimental.host_callback``, which JAX removed; only its progress bar uses
      it, so an empty stand-in module is installed first and ``pbar=False``.
    * ``numpyro.infer.MCMC(NUTS(model))`` with the key ``fit`` uses for the seed (same chain).

Timing
    Jitted loops are compiled by a first call. ``fit`` compiles on every call: it is warmed up
    once, then timed end to end, its phases by wrapping the helpers it calls, and the
    lowering + XLA compile time inside its MCMC summed from ``jax.monitoring`` events; its
    sampling time is the MCMC phase less that compile time (init, tracing, postprocessing
    stay in). Each repeat times every contender once, round robin; ratios (ours / peer time)
    are medians over repeats of back-to-back pairs. ``[diag]`` rows isolate causes: probdyn's
    ``SGLD`` kernel alone in ``lax.scan``, the raw loop with NumPyro's subsample indices, and
    ``fit`` on the model under ``iid_plates`` (the proposed fix).

Run ``python bench/sgmcmc.py``; ``--quick`` is a smoke test (< 2 min).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import json
import statistics
import sys
import time
import types

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from _common import load_average, timed, versions
from jax import lax, random
from numpyro.infer import MCMC, NUTS
from numpyro.primitives import Messenger

import probdyn
from probdyn.infer.sgmcmc import SGLD

FULL = {
    "logreg": {"N": 10_000, "D": 20, "B": 100, "steps": 10_000, "thin": 1, "h": 1e-4},
    "gru": {"N": 1_000, "L": 50, "H": 16, "B": 32, "steps": 2_000, "thin": 20, "h": 1e-6},
    "nuts": {"N": 1_000, "D": 20, "warmup": 500, "samples": 500},
}
QUICK = {
    "logreg": {"N": 1_000, "D": 5, "B": 50, "steps": 500, "thin": 1, "h": 1e-4},
    "gru": {"N": 64, "L": 10, "H": 8, "B": 8, "steps": 100, "thin": 10, "h": 1e-6},
    "nuts": {"N": 200, "D": 5, "warmup": 100, "samples": 100},
}
FIT_PHASES = (
    "run_mcmc",
    "pointwise_log_likelihood",
    "to_inference_data",
    "model_dims",
    "observed_values",
)
COMPILE_STEPS = 10  # size of the untimed warm-up fit


def _timed(fn, *args):
    wall, _, out = timed(fn, *args)
    return wall, out


_COMPILE_EVENTS = tuple(
    f"/jax/core/compile/{e}_duration" for e in ("jaxpr_to_mlir_module", "backend_compile")
)
_COMPILE_S = [0.0]  # running total of lowering + XLA compile seconds in this process


def _on_event(event, duration_secs, **kwargs):
    if event in _COMPILE_EVENTS:
        _COMPILE_S[0] += duration_secs


jax.monitoring.register_event_duration_secs_listener(_on_event)


@contextlib.contextmanager
def _fit_phase_timer(totals: dict):
    """Wrap the helpers ``probdyn.fit`` calls so that their wall time, and the compile
    time spent inside ``_run_mcmc``, add up in ``totals``."""
    module = importlib.import_module("probdyn.infer.fit")
    saved = {name: getattr(module, name) for name in FIT_PHASES}

    def wrap(name, fn):
        def timed(*args, **kwargs):
            t0, c0 = time.perf_counter(), _COMPILE_S[0]
            try:  # the log-likelihood returns unfinished (async) arrays: wait for them
                out = fn(*args, **kwargs)
                return jax.block_until_ready(out) if name == "pointwise_log_likelihood" else out
            finally:
                totals[name] = totals.get(name, 0.0) + time.perf_counter() - t0
                if name == "run_mcmc":
                    totals["mcmc_compile"] = _COMPILE_S[0] - c0

        return timed

    for name, fn in saved.items():
        setattr(module, name, wrap(name, fn))
    try:
        yield totals
    finally:
        for name, fn in saved.items():
            setattr(module, name, fn)


def _fit_timed(model, args, **kw):
    """(total_s, phases) of one ``probdyn.fit`` call; ``phases["compile"]`` is all the
    lowering + XLA compile time of the call, ``phases["mcmc_compile"]`` that of the MCMC."""
    with _fit_phase_timer({}) as phases:
        t0, c0 = time.perf_counter(), _COMPILE_S[0]
        idata = probdyn.fit(model, *args, progress_bar=False, **kw)
        total = time.perf_counter() - t0
    phases["other"] = total - sum(phases.get(k, 0.0) for k in FIT_PHASES)
    phases["compile"] = _COMPILE_S[0] - c0
    return total, phases, idata


def fit_sgld(model, args, cfg, **extra):
    """``fit(method="sgld")`` as ``run(seed, num_samples) -> (sampling_s, total_s, phases)``;
    ``sampling_s`` is its MCMC phase less the compile time (from ``jax.monitoring``)."""
    kw = {"method": "sgld", "num_chains": 1, "num_warmup": 0, "step_size": cfg["h"], **extra}

    def run(seed, num_samples):
        thin = cfg["thin"] if num_samples == cfg["steps"] else 1
        total, ph, _ = _fit_timed(
            model, args, num_samples=num_samples, thinning=thin, seed=seed, **kw
        )
        return max(ph["run_mcmc"] - ph["mcmc_compile"], 1e-9), total, ph

    return run


def run_sgld_contenders(jitted, fits, cfg, repeats, warm_up=True):
    """Compile the ``jitted`` loops (``run(key)``) and warm up the ``fits``, then time every
    contender once per repeat, round robin, so that all see the same machine load.

    Returns name -> {"run_s": median, "times": per repeat, "steps", "compile_s", ...};
    a contender given as ``{"error": ...}`` is passed through.
    """
    key, out = random.PRNGKey(1), {}
    for name, run in jitted.items():
        if isinstance(run, dict):
            out[name] = run
        else:
            out[name] = {"compile_s": _timed(run, key)[0], "times": []}
    for name, run in fits.items():
        if warm_up:  # untimed: the first compile of a kind in a process is slower
            run(0, COMPILE_STEPS)
        out[name] = {"times": [], "total": [], "phases": []}
    for r in range(repeats):
        for name, run in jitted.items():
            if "times" in out[name]:
                out[name]["times"].append(_timed(run, key)[0])
        for name, run in fits.items():
            sampling, total, phases = run(r, cfg["steps"])
            out[name]["times"].append(sampling)
            out[name]["total"].append(total)
            out[name]["phases"].append(phases)
    for res in out.values():
        if "times" in res:
            res.update(steps=cfg["steps"], run_s=statistics.median(res["times"]))
        if "phases" in res:
            phases = _medians(res.pop("phases"))
            res.update(total_s=statistics.median(res["total"]), phases_s=phases)
            res["compile_s"] = phases["mcmc_compile"]
    return out


def _medians(dicts):
    return {k: statistics.median(d[k] for d in dicts) for k in dicts[0]}


def _iid_indices(size, subsample_size, rng_key=None):
    return random.randint(rng_key, (subsample_size,), 0, size)


class iid_plates(Messenger):
    """Subsampled plates draw their indices i.i.d. uniform (with replacement), O(B), instead
    of NumPyro's partial Fisher-Yates shuffle (on CPU a B-step ``lax.scan`` over an
    ``arange(N)``). The proposed fix, applied from outside: it only swaps the plate's ``fn``,
    so the ``seed`` handler still supplies the key and ``full_data_model`` still wins."""

    def process_message(self, msg):
        if msg["type"] == "plate" and msg["value"] is None:
            msg["fn"] = _iid_indices


def kernel_scan(model, args, cfg):
    """Diagnostic: probdyn's ``SGLD`` kernel (NumPyro potential + subsample) in ``lax.scan``."""
    kernel = SGLD(model, step_size=cfg["h"])
    state = kernel.init(random.PRNGKey(0), 0, model_args=args)

    @jax.jit
    def run(key):
        def body(s, _):
            s = kernel.sample(s, args, {})
            return s, s.z

        return lax.scan(body, state._replace(rng_key=key), None, length=cfg["steps"])[1]

    return run


def raw_sgld(logdensity, data, init, cfg, indices="randint"):
    """Hand-written BlackJAX SGLD: minibatch gradient, ``blackjax.sgld`` step, ``lax.scan``.

    ``logdensity(position, batch) -> ()`` is the minibatch estimate of the log posterior;
    ``indices="numpyro"`` draws the minibatch indices as NumPyro's subsampled plate does.
    """
    n, b = data[0].shape[0], cfg["B"]
    sgld = blackjax.sgld(jax.grad(logdensity))

    def draw_indices(key):
        if indices == "numpyro":
            return numpyro.primitives._subsample_fn(n, b, key)
        return random.randint(key, (b,), 0, n)

    @jax.jit
    def run(key):
        def body(position, key):
            key_batch, key_noise = random.split(key)
            idx = draw_indices(key_batch)
            batch = tuple(a[idx] for a in data)
            position = sgld.step(key_noise, position, batch, cfg["h"])
            return position, position

        return lax.scan(body, init, random.split(key, cfg["steps"]))[1]

    return run


_SGMCMCJAX_NOTE = ["as installed"]


def _import_sgmcmcjax():
    """sgmcmcjax's samplers, with a stand-in for the removed ``jax.experimental.host_callback``
    (used only by its progress bar, which the bench turns off). (module, note)."""
    try:
        return importlib.import_module("sgmcmcjax.samplers"), _SGMCMCJAX_NOTE[0]
    except ImportError as err:
        if "host_callback" not in str(err):
            return None, f"n/a: {type(err).__name__}: {err}"
        first = f"{type(err).__name__}: {err}"
    stub = types.ModuleType("jax.experimental.host_callback")
    stub.id_tap = None  # only sgmcmcjax's progress bar calls it, and pbar=False here
    sys.modules["jax.experimental.host_callback"] = stub
    for name in [m for m in sys.modules if m.startswith("sgmcmcjax")]:
        del sys.modules[name]
    _SGMCMCJAX_NOTE[0] = f"runs with a stand-in module after {first}"
    try:
        return importlib.import_module("sgmcmcjax.samplers"), _SGMCMCJAX_NOTE[0]
    except Exception as err:  # noqa: BLE001 - reported in the table
        return None, f"n/a: {first}; then {type(err).__name__}: {err}"


def sgmcmcjax_sgld(loglik_one, logprior, data, init, cfg):
    """sgmcmcjax's compiled SGLD sampler (per-point log-likelihood, vmapped by sgmcmcjax)."""
    samplers, note = _import_sgmcmcjax()
    if samplers is None:
        return {"error": note}
    sampler = samplers.build_sgld_sampler(
        cfg["h"], loglik_one, logprior, data, cfg["B"], pbar=False
    )

    def run(key):
        return sampler(key, cfg["steps"], init)

    try:
        jax.block_until_ready(run(random.PRNGKey(0)))
    except Exception as err:  # noqa: BLE001 - reported in the table
        return {"error": f"n/a: {type(err).__name__}: {err}"}
    return run


# --- logistic regression


def make_logreg(n, d, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    w = rng.standard_normal(d).astype(np.float32) / np.sqrt(d)
    y = (rng.random(n) < 1 / (1 + np.exp(-x @ w))).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(y)


def logreg_model(x, y, batch_size=None):
    n, d = x.shape
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([d]).to_event(1))
    with numpyro.plate("data", n, subsample_size=batch_size) as idx:
        numpyro.sample("y", dist.Bernoulli(logits=x[idx] @ w), obs=y[idx])


def _bernoulli_loglik(logits, y):
    return y * logits - jax.nn.softplus(logits)


def _normal_logprior(tree, scale):
    leaves = jax.tree.leaves(tree)
    return sum(jnp.sum(dist.Normal(0.0, scale).log_prob(v)) for v in leaves)


def bench_logreg(cfg, repeats, with_diagnostics=True, warm_up=True):
    x, y = make_logreg(cfg["N"], cfg["D"])
    n, b = cfg["N"], cfg["B"]
    init = {"w": jnp.zeros(cfg["D"])}

    def logdensity(p, batch):
        xb, yb = batch
        return _normal_logprior(p, 1.0) + n / b * jnp.sum(_bernoulli_loglik(xb @ p["w"], yb))

    def loglik_one(p, xi, yi):
        return _bernoulli_loglik(xi @ p["w"], yi)

    def model(x, y):
        return logreg_model(x, y, b)

    data, logprior = (x, y), lambda p: _normal_logprior(p, 1.0)
    jitted = {
        "raw": raw_sgld(logdensity, data, init, cfg),
        "sgmcmcjax": sgmcmcjax_sgld(loglik_one, logprior, data, init, cfg),
    }
    fits = {"fit": fit_sgld(model, data, cfg)}
    fits["fit_noll"] = fit_sgld(model, data, cfg, log_likelihood=False)
    if with_diagnostics:
        jitted["kernel_scan"] = kernel_scan(model, data, cfg)
        jitted["raw_numpyro_idx"] = raw_sgld(logdensity, data, init, cfg, "numpyro")
        fits["fit_iid"] = fit_sgld(iid_plates(model), data, cfg)
    return run_sgld_contenders(jitted, fits, cfg, repeats, warm_up)


# --- GRU on sequences


def make_sequences(n, length, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(length + 1)
    freq = rng.uniform(0.1, 0.3, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    x = np.sin(freq * t + phase) + 0.1 * rng.standard_normal((n, length + 1))
    return jnp.asarray(x.astype(np.float32))


def gru_shapes(h):
    return {"Wi": (3 * h,), "Wh": (h, 3 * h), "b": (3 * h,), "w_out": (h,), "b_out": ()}


def gru_predict(p, seqs):
    """One-step-ahead predictions (B, L) of a GRU reading ``seqs[:, :-1]`` (B, L)."""
    hidden = p["w_out"].shape[0]

    def cell(h, x_t):
        gx = x_t[:, None] * p["Wi"] + p["b"]
        gh = h @ p["Wh"]
        z = jax.nn.sigmoid(gx[:, :hidden] + gh[:, :hidden])
        r = jax.nn.sigmoid(gx[:, hidden : 2 * hidden] + gh[:, hidden : 2 * hidden])
        c = jnp.tanh(gx[:, 2 * hidden :] + r * gh[:, 2 * hidden :])
        h = (1 - z) * c + z * h
        return h, h @ p["w_out"] + p["b_out"]

    h0 = jnp.zeros((seqs.shape[0], hidden), seqs.dtype)
    return lax.scan(cell, h0, seqs[:, :-1].T)[1].T


GRU_PRIOR, GRU_NOISE = 0.5, 0.3


def gru_model(seqs, hidden, batch_size=None):
    p = {
        k: numpyro.sample(k, dist.Normal(0.0, GRU_PRIOR).expand(s).to_event(len(s)))
        for k, s in gru_shapes(hidden).items()
    }
    with numpyro.plate("data", seqs.shape[0], subsample_size=batch_size) as idx:
        batch = seqs[idx]
        numpyro.sample(
            "y", dist.Normal(gru_predict(p, batch), GRU_NOISE).to_event(1), obs=batch[:, 1:]
        )


def bench_gru(cfg, repeats, with_diagnostics=True, warm_up=True):
    seqs = make_sequences(cfg["N"], cfg["L"])
    n, b, hidden = cfg["N"], cfg["B"], cfg["H"]
    init = {k: 0.1 * jnp.ones(s) for k, s in gru_shapes(hidden).items()}

    def loglik(p, seqs_b):
        return jnp.sum(dist.Normal(gru_predict(p, seqs_b), GRU_NOISE).log_prob(seqs_b[:, 1:]))

    def logdensity(p, batch):
        return _normal_logprior(p, GRU_PRIOR) + n / b * loglik(p, batch[0])

    def model(seqs):
        return gru_model(seqs, hidden, b)

    logprior = lambda p: _normal_logprior(p, GRU_PRIOR)  # noqa: E731
    jitted = {
        "raw": raw_sgld(logdensity, (seqs,), init, cfg),
        "sgmcmcjax": sgmcmcjax_sgld(lambda p, s: loglik(p, s[None]), logprior, (seqs,), init, cfg),
    }
    fits = {"fit": fit_sgld(model, (seqs,), cfg)}
    if with_diagnostics:
        jitted["kernel_scan"] = kernel_scan(model, (seqs,), cfg)
        fits["fit_iid"] = fit_sgld(iid_plates(model), (seqs,), cfg)
    return run_sgld_contenders(jitted, fits, cfg, repeats, warm_up)


# --- NUTS


def nuts_fit(x, y, cfg, seed):
    kw = {"num_warmup": cfg["warmup"], "num_samples": cfg["samples"], "num_chains": 1}
    total, phases, idata = _fit_timed(logreg_model, (x, y), method="nuts", seed=seed, **kw)
    return total, phases, np.asarray(idata.posterior["w"])[0]


def nuts_numpyro(x, y, cfg, seed):
    key_run = random.split(random.PRNGKey(seed), 3)[0]  # the key fit uses for this seed
    kw = {"num_warmup": cfg["warmup"], "num_samples": cfg["samples"], "num_chains": 1}
    t0 = time.perf_counter()
    mcmc = MCMC(NUTS(logreg_model), progress_bar=False, **kw)
    mcmc.run(key_run, x, y)
    w = np.asarray(jax.device_get(mcmc.get_samples()["w"]))
    return time.perf_counter() - t0, w


def bench_nuts(cfg, repeats, warm_up=True):
    x, y = make_logreg(cfg["N"], cfg["D"], seed=1)
    if warm_up:  # one untimed pair: the first compile in a process is slower
        nuts_numpyro(x, y, cfg, 0)
        nuts_fit(x, y, cfg, 0)
    ours, peer, phases, same = [], [], [], True
    for r in range(repeats):  # interleaved, same seeds, alternating which goes first
        if r % 2:
            t_ours, ph, w_ours = nuts_fit(x, y, cfg, r)
        t_peer, w_peer = nuts_numpyro(x, y, cfg, r)
        if not r % 2:
            t_ours, ph, w_ours = nuts_fit(x, y, cfg, r)
        ours, peer, phases = ours + [t_ours], peer + [t_peer], phases + [ph]
        same = same and np.allclose(w_ours, w_peer)
    out = {"ours_s": statistics.median(ours), "peer_s": statistics.median(peer)}
    out.update(ours_all_s=ours, peer_all_s=peer, phases_s=_medians(phases), phases_all=phases)
    return {**out, "same_draws": bool(same)}


# --- report


def _rate(r):
    return r["steps"] / r["run_s"]


def _paired(ours, peer):
    """Median over repeats of our time / peer time, each pair measured back to back."""
    return statistics.median(a / b for a, b in zip(ours, peer, strict=True))


def _sgld_rows(label, res):
    """Rows of one SGLD workload: (workload, ours, peer, ratio, target)."""
    raw, fit = res["raw"], res["fit"]

    def vs(name, r, peer=raw, target=None):
        if "error" in peer:
            return (f"{label}: {name}", f"{_rate(r):,.0f}", peer["error"], None, None)
        ratio = _paired(r["times"], peer["times"])
        return (f"{label}: {name}", f"{_rate(r):,.0f}", f"{_rate(peer):,.0f}", ratio, target)

    raw_total = raw["compile_s"] + raw["run_s"]
    out = [
        vs("fit SGLD vs BlackJAX loop (steps/s, compile excluded)", fit, target=1.2),
        (f"{label}: fit SGLD vs BlackJAX loop (s, end to end)", f"{fit['total_s']:.2f}",
         f"{raw_total:.2f}", fit["total_s"] / raw_total, None),
        vs("fit SGLD vs sgmcmcjax (steps/s, compile excluded)", fit, res["sgmcmcjax"]),
    ]  # fmt: skip
    if "fit_noll" in res:
        nl = res["fit_noll"]["total_s"]
        out.append((f"{label}: fit SGLD, log_likelihood=False, vs BlackJAX loop (s, end to end)",
                    f"{nl:.2f}", f"{raw_total:.2f}", nl / raw_total, None))  # fmt: skip
    diagnostics = (
        ("kernel_scan", "[diag] probdyn SGLD kernel in lax.scan vs BlackJAX loop", None),
        ("fit_iid", "[diag] fit SGLD, i.i.d. indices (proposed fix) vs BlackJAX loop", 1.2),
        ("raw_numpyro_idx", "[diag] BlackJAX loop, NumPyro's subsample indices vs randint", None),
    )
    out += [vs(text, res[key], target=t) for key, text, t in diagnostics if key in res]
    return out


def rows(results):
    """(workload, ours, peer, ratio, target) rows; ratio = our time / peer time."""
    out = []
    for name, label in (("logreg", "logistic regression"), ("gru", "Bayesian GRU")):
        if name in results:
            out += _sgld_rows(label, results[name])
    if "nuts" in results:
        nu = results["nuts"]
        mcmc = [p["run_mcmc"] for p in nu["phases_all"]]
        out += [
            ("NUTS logistic regression: fit vs numpyro MCMC (s, end to end)",
             f"{nu['ours_s']:.2f}", f"{nu['peer_s']:.2f}",
             _paired(nu["ours_all_s"], nu["peer_all_s"]), 1.05),
            ("NUTS logistic regression: [diag] fit's MCMC phase only vs numpyro MCMC (s)",
             f"{statistics.median(mcmc):.2f}", f"{nu['peer_s']:.2f}",
             _paired(mcmc, nu["peer_all_s"]), None),
        ]  # fmt: skip
    return out


def table(results):
    lines = [
        "| workload | ours | peer | ratio (ours/peer time) | target | met? |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for w, ours, peer, ratio, target in rows(results):
        r = "" if ratio is None else f"{ratio:.2f}x"
        t = "" if target is None else f"<= {target}x"
        m = "" if target is None else ("yes" if ratio <= target else "NO")
        lines.append(f"| {w} | {ours} | {peer} | {r} | {t} | {m} |")
    return "\n".join(lines)


def _phases(res):
    return ", ".join(f"{k} {v:.2f}" for k, v in res["phases_s"].items())


def details(results):
    lines = [
        f"- {name}: fit end to end {res['fit']['total_s']:.2f} s, phases (s): {_phases(res['fit'])}"
        for name, res in results.items()
        if name != "nuts"
    ]
    if "nuts" in results:
        nu = results["nuts"]
        ours, peer = ([round(t, 2) for t in nu[k]] for k in ("ours_all_s", "peer_all_s"))
        lines.append(f"- nuts: fit {ours} s, numpyro {peer} s; fit phases (s): {_phases(nu)}")
        lines.append(f"- nuts: fit and numpyro drew identical chains: {nu['same_draws']}")
    return "\n".join(lines)


def _versions():
    return versions(("jax", "numpyro", "blackjax", "arviz", "probdyn", "sgmcmcjax"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test (< 2 min)")
    p.add_argument("--only", default="logreg,gru,nuts", help="comma-separated workloads")
    p.add_argument("--repeats", type=int, help="timed repeats (default 3; quick 1)")
    p.add_argument("--nuts-repeats", type=int, help="NUTS pairs (default 7; quick 1)")
    p.add_argument("--no-diagnostics", action="store_true", help="skip the [diag] rows")
    p.add_argument("--out", help="write all results as JSON here")
    args = p.parse_args(argv)
    jax.config.update("jax_platforms", "cpu")
    sizes = QUICK if args.quick else FULL
    repeats = args.repeats or (1 if args.quick else 3)
    only = [w.strip() for w in args.only.split(",")]
    diag = not args.no_diagnostics
    versions = _versions()
    print(f"# SG-MCMC / fit overhead {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), flush=True)
    print(f"load average (1, 5, 15 min) at the start: {load_average()}", flush=True)
    results = {}
    if "logreg" in only:
        results["logreg"] = bench_logreg(sizes["logreg"], repeats, diag, not args.quick)
    if "gru" in only:  # --quick: diagnostics on the logistic regression only (time)
        results["gru"] = bench_gru(sizes["gru"], repeats, diag and not args.quick, not args.quick)
    if "nuts" in only:
        nuts_repeats = args.nuts_repeats or (1 if args.quick else 7)
        results["nuts"] = bench_nuts(sizes["nuts"], nuts_repeats, warm_up=not args.quick)
    print(table(results))
    print(details(results) + f"\n- sgmcmcjax: {_SGMCMCJAX_NOTE[0]}")
    print(f"- load average (1, 5, 15 min) at the end: {load_average()}")
    if args.out:
        payload = {"versions": versions, "argv": sys.argv[1:], "sizes": sizes, "results": results}
        with open(args.out, "w") as fh:
            json.dump(payload, fh, indent=1, default=float)
    return results


if __name__ == "__main__":
    main()
