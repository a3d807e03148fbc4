"""Bad-input campaign for fit options, summary, sbc, particle_filter masks and the CLI.

Every bad input must give a clear error naming the argument (or a NaN / a reported
problem), never an obscure error from deep inside JAX or NumPyro and never a silent,
plausible result. ``CASES`` is the fixed campaign (run as a script, it prints the counts
per entry point: ``python tests/test_fuzz_infer.py``); the hypothesis tests below draw
more values around the same boundaries.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import math
import os
import pickle
import sys
import tempfile
from collections import Counter
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probdyn import case_studies
from probdyn.cli import main as cli_main
from probdyn.infer.fit import fit
from probdyn.infer.particle import particle_filter
from probdyn.report.idata import to_inference_data
from probdyn.report.sbc import sbc
from probdyn.report.summary import summary

# the package re-exports the function ``fit``, which shadows the submodule attribute
fit_module = importlib.import_module("probdyn.infer.fit")
CLEAR = (ValueError, TypeError, FileExistsError, NotADirectoryError, PermissionError)
Y = jnp.asarray([0.3, -0.2, 1.1], dtype=jnp.float32)


def model(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    with numpyro.plate("obs_id", 3):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


class Started(Exception):
    """Inference started: the bad input was accepted."""


def _no_run(*args, **kwargs):
    raise Started


@contextlib.contextmanager
def _patched(obj, name, value):
    old = getattr(obj, name, None)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if old is None:
            delattr(obj, name)
        else:
            setattr(obj, name, old)


def _fit(**kwargs):
    """fit() up to the start of inference (older versions: _run_mcmc; now run_mcmc)."""
    runner = "run_mcmc" if hasattr(fit_module, "run_mcmc") else "_run_mcmc"
    with _patched(fit_module, runner, _no_run), _patched(fit_module, "run_svi", _no_run):
        return fit(model, model_kwargs={"y": Y}, progress_bar=False, **kwargs)


def _summary_idata(case):
    rng = np.random.default_rng(0)
    post = {"mu": rng.normal(size=(2, 200))}
    stats = {"diverging": np.zeros((2, 200), bool), "energy": rng.normal(size=(2, 200))}
    if case == "inf_draw":
        post["mu"][0, 3] = np.inf
    elif case == "nan_energy":
        stats["energy"] = np.full((2, 200), np.nan)
    elif case == "one_draw":
        post, stats = {"mu": post["mu"][:, :1]}, {}
    elif case == "nan_diverging":
        stats["diverging"] = np.where(np.arange(200) == 4, np.nan, 0.0) * np.ones((2, 1))
    elif case == "inf_lp":
        stats["lp"] = np.where(np.arange(200) == 4, -np.inf, 0.0) * np.ones((2, 1))
    elif case == "tree_depth":
        stats["tree_depth"] = np.full((2, 200), 10)
    return to_inference_data(post, sample_stats=stats)


def _summary(case, **kwargs):
    res = summary(_summary_idata(case), **kwargs)
    return res  # a Summary that passes is a silent wrong result; problems are reported


def _sbc(**kwargs):
    def stand_in(*args, **kw):
        raise Started

    return sbc(model, obs_sites=("y",), num_replicates=10, num_posterior_draws=9,
               fit_fn=stand_in, progress_bar=False, **kwargs)  # fmt: skip


def _pf(mask, jit=False):
    def walk(key, x, t_prev, t):
        return x + jnp.sqrt(t - t_prev) * jax.random.normal(key, x.shape)

    def obs(y, x, t):
        return jax.scipy.stats.norm.logpdf(y, x[0], 1.0)

    def run(m):
        return particle_filter(
            jax.random.PRNGKey(0), lambda k: jnp.zeros(1), walk, obs, jnp.array([1.0, 2.0]),
            jnp.array([0.1, 0.2]), num_particles=4, mask=m,
        ).log_likelihood  # fmt: skip

    return float((jax.jit(run) if jit else run)(jnp.asarray(mask)))


FAKE_STUDY = """
import argparse
from probdyn.report.output import prepare_output_dir

def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="results/fake")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    out = prepare_output_dir(a.out, overwrite=a.overwrite)
    (out / "idata.nc").write_text("x")
    return 0
"""


def _cli(args, setup):
    """Run the CLI in a fresh temporary folder (never the caller's): (rc, stderr, intact)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "studies").mkdir()
        (tmp / "studies" / "fake.py").write_text(FAKE_STUDY)
        work = tmp / "work"
        work.mkdir()
        (work / "user_file.txt").write_text("mine")
        setup(work)
        old_cwd, old_path = os.getcwd(), case_studies.__path__
        sys.modules.pop("probdyn.case_studies.fake", None)
        err = io.StringIO()
        try:
            os.chdir(work)
            case_studies.__path__ = [str(tmp / "studies")]
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    rc = cli_main(args)
                except Exception as exc:  # noqa: BLE001 - an uncaught traceback for the user
                    rc = None
                    err.write(f"Traceback: {type(exc).__name__}: {exc}")
        finally:
            os.chdir(old_cwd)
            case_studies.__path__ = old_path
            sys.modules.pop("probdyn.case_studies.fake", None)
        intact = (work / "user_file.txt").exists()
        return rc, err.getvalue(), intact


def _planted_pickle():
    with tempfile.TemporaryDirectory() as tmp:
        marker = Path(tmp) / "pwned"
        with open(Path(tmp) / "run.nc.state.pkl", "wb") as f:
            f.write(pickle.dumps(_Planted(str(marker))))
        try:
            _fit(checkpoint=str(Path(tmp) / "run.nc"), method="svi")
        finally:
            if marker.exists():
                raise AssertionError("SILENT: the planted pickle ran")


class _Planted:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _nothing(work):
    return None


def _probdyn_folder(work):
    (work / "res").mkdir()
    (work / "res" / "notes.txt").write_text("user")
    (work / "res" / ".probdyn-output.json").write_text(
        json.dumps({"format": "probdyn-output", "files": ["idata.nc"]})
    )


def _symlink(work):
    (work / "link").symlink_to(work)


def _corrupt_nc(work):
    (work / "idata.nc").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)


# (entry point, label, thunk, word the error must contain). A thunk that returns is
# judged by ``_judge``: fit/sbc accepting the input is silent; a Summary that passes is
# silent; a particle-filter NaN is the wanted answer under jit.
CASES = [
    *[
        (
            "fit",
            f"target_accept_prob={v!r}",
            lambda v=v: _fit(target_accept_prob=v),
            "target_accept_prob",
        )
        for v in (1.5, -0.5, 0.0, 1.0, math.nan, "0.8")
    ],
    *[
        ("fit", f"max_tree_depth={v!r}", lambda v=v: _fit(max_tree_depth=v), "max_tree_depth")
        for v in (-1, 0, 2.5, (10, 0), 64)
    ],
    *[
        ("fit", f"step_size={v!r}", lambda v=v: _fit(step_size=v), "step_size")
        for v in (0.0, -1.0, math.inf, math.nan)
    ],
    ("fit", "hmc num_steps=0", lambda: _fit(method="hmc", num_steps=0), "num_steps"),
    (
        "fit",
        "hmc trajectory_length=-1",
        lambda: _fit(method="hmc", trajectory_length=-1.0),
        "trajectory_length",
    ),
    *[
        ("fit", f"{k}={v!r}", lambda k=k, v=v: _fit(**{k: v}), k)
        for k, v in (
            ("num_samples", 0),
            ("num_samples", 2.7),
            ("num_samples", "6"),
            ("num_samples", True),
            ("num_warmup", -1),
            ("num_chains", 0),
            ("num_chains", 2.0),
            ("thinning", 0),
            ("seed", -1),
            ("seed", 2**32),
            ("seed", 1.5),
            ("seed", "0"),
            ("checkpoint_every", 0),
            ("checkpoint", 3),
            ("predictive", "yes"),
            ("adapt_step_size", "no"),
            ("dense_mass", "yes"),
            ("init_strategy", 3),
            ("chain_method", "magic"),
            ("method", "NUTS"),
            ("method", None),
        )
    ],
    *[
        ("fit", f"svi {k}={v!r}", lambda k=k, v=v: _fit(method="svi", **{k: v}), k)
        for k, v in (
            ("learning_rate", 0.0),
            ("learning_rate", -1.0),
            ("learning_rate", math.inf),
            ("learning_rate", math.nan),
            ("num_steps", 0),
            ("num_steps", 2.5),
            ("num_particles", 0),
            ("stable_update", 1),
            ("guide_kwargs", [1]),
        )
    ],
    ("fit", "sgld step_size=-1e-3", lambda: _fit(method="sgld", step_size=-1e-3), "step_size"),
    ("fit", "sgld step_size=nan", lambda: _fit(method="sgld", step_size=math.nan), "step_size"),
    (
        "fit",
        "pmmh target_accept_prob=1.5",
        lambda: _fit(method="pmmh", target_accept_prob=1.5),
        "target_accept_prob",
    ),
    ("fit", "planted .state.pkl", _planted_pickle, "pickle"),
    *[
        ("summary", case, lambda c=case: _summary(c), "")
        for case in ("inf_draw", "nan_energy", "one_draw", "nan_diverging", "inf_lp", "tree_depth")
    ],
    *[
        ("summary", f"{k}=nan", lambda k=k: _summary("healthy", **{k: math.nan}), k)
        for k in ("rhat_max", "ess_min_per_chain", "bfmi_min", "elbo_rtol")
    ],
    ("summary", "var_names=['nope']", lambda: _summary("healthy", var_names=["nope"]), "var_names"),
    ("summary", "idata={}", lambda: summary({}), "idata"),
    *[
        ("sbc", f"{k}={v!r}", lambda k=k, v=v: _sbc(**{k: v}), k)
        for k, v in (
            ("num_bins", 0),
            ("num_bins", 1),
            ("num_bins", 2.5),
            ("num_bins", 11),
            ("seed", -1),
            ("seed", 2**32),
            ("seed", 1.5),
            ("num_replicates", 0),
            ("thin", 0),
            ("num_posterior_draws", 0),
        )
    ],
    ("particle_filter", "mask=0.5", lambda: _pf([1.0, 0.5]), "mask"),
    ("particle_filter", "mask=0.5 under jit", lambda: _pf([1.0, 0.5], jit=True), "mask"),
    ("particle_filter", "mask complex", lambda: _pf([1 + 0j, 1]), "mask"),
    (
        "cli",
        "run --out . --overwrite (user files)",
        lambda: _cli(["run", "fake", "--out", ".", "--overwrite"], _nothing),
        "out=",
    ),
    (
        "cli",
        "run --out <a file>",
        lambda: _cli(["run", "fake", "--out", "user_file.txt"], _nothing),
        "out=",
    ),
    (
        "cli",
        "run --out <a file> --overwrite",
        lambda: _cli(["run", "fake", "--out", "user_file.txt", "--overwrite"], _nothing),
        "out=",
    ),
    (
        "cli",
        "run --out <symlink> --overwrite",
        lambda: _cli(["run", "fake", "--out", "link", "--overwrite"], _symlink),
        "out=",
    ),
    (
        "cli",
        "run --out <probdyn folder + user file> --overwrite",
        lambda: _cli(["run", "fake", "--out", "res", "--overwrite"], _probdyn_folder),
        "notes.txt",
    ),
    (
        "cli",
        "report <corrupt idata.nc>",
        lambda: _cli(["report", "idata.nc"], _corrupt_nc),
        "idata.nc",
    ),
    (
        "cli",
        "report <folder without idata.nc>",
        lambda: _cli(["report", "."], _nothing),
        "idata.nc",
    ),
    ("cli", "report <a .txt file>", lambda: _cli(["report", "user_file.txt"], _nothing), "path"),
]


def _judge(entry, thunk, word) -> str:
    """'clear', 'obscure' or 'silent' for one bad input."""
    try:
        out = thunk()
    except Started:
        return "silent"
    except AssertionError as err:
        return "silent" if str(err).startswith("SILENT") else "obscure"
    except CLEAR as err:
        return "clear" if word in str(err) else "obscure"
    except Exception:  # noqa: BLE001 - anything else is obscure by definition
        return "obscure"
    if entry == "summary":
        return "silent" if out.ok else "clear"
    if entry == "particle_filter":
        return "clear" if math.isnan(out) else "silent"
    if entry == "cli":
        rc, err, intact = out
        if not intact or rc == 0:
            return "silent"  # data lost, or a bad --out accepted
        return "clear" if rc and word in err and "Traceback" not in err else "obscure"
    return "silent"


def campaign() -> dict[str, Counter]:
    counts: dict[str, Counter] = {}
    for entry, label, thunk, word in CASES:
        verdict = _judge(entry, thunk, word)
        counts.setdefault(entry, Counter())[verdict] += 1
        if verdict != "clear":
            print(f"  {verdict:8s} {entry}: {label}")
    return counts


@pytest.mark.parametrize(
    "entry, thunk, word",
    [pytest.param(e, t, w, id=f"{e}:{label}") for e, label, t, w in CASES],
)
def test_bad_input_is_a_clear_error_or_nan(entry, thunk, word):
    assert _judge(entry, thunk, word) == "clear"


_FAST = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))


@_FAST
@given(
    st.one_of(
        st.floats(max_value=0.0),
        st.floats(min_value=1.0),
        st.just(math.nan),
    )
)
def test_target_accept_prob_outside_unit_interval(value):
    with pytest.raises(ValueError, match="target_accept_prob="):
        _fit(target_accept_prob=value)


@_FAST
@given(st.one_of(st.integers(max_value=0), st.integers(min_value=31)))
def test_max_tree_depth_out_of_range(value):
    with pytest.raises(ValueError, match="max_tree_depth="):
        _fit(max_tree_depth=value)


@_FAST
@given(
    st.sampled_from(["num_samples", "num_chains", "thinning", "num_warmup", "seed"]),
    st.one_of(st.floats(allow_nan=True), st.text(max_size=3), st.booleans()),
)
def test_sizes_must_be_integers(name, value):
    with pytest.raises(TypeError, match=f"{name}="):
        _fit(**{name: value})


@_FAST
@given(st.one_of(st.floats(max_value=0.0), st.just(math.inf), st.just(math.nan)))
def test_svi_learning_rate_positive_finite(value):
    with pytest.raises(ValueError, match="learning_rate="):
        _fit(method="svi", learning_rate=value)


@_FAST
@given(st.floats(min_value=0.01, max_value=0.99))
def test_fractional_mask_never_counts_as_observed(value):
    with pytest.raises(ValueError, match="mask has values"):
        _pf([1.0, value])


if __name__ == "__main__":  # the campaign's counts, for the table
    total = Counter()
    for entry, c in campaign().items():
        total += c
        print(f"{entry:16s} tried {sum(c.values()):3d}  clear {c['clear']:3d}  "
              f"obscure {c['obscure']:3d}  silent {c['silent']:3d}")  # fmt: skip
    print(f"{'all':16s} tried {sum(total.values()):3d}  clear {total['clear']:3d}  "
          f"obscure {total['obscure']:3d}  silent {total['silent']:3d}")  # fmt: skip
