"""Checkpoint/resume of probdyn.fit: SIGKILL mid-run, resume, compare bit for bit."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from probdyn.infer import checkpoint as ckpt_module
from probdyn.infer.fit import fit
from probdyn.report._arviz import from_netcdf, get_group, group_names

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from probdyn.infer import checkpoint as ckpt_module
    from probdyn.infer.fit import fit

    Y = jnp.asarray([0.3, -0.2, 1.1, 0.7, 0.4])


    def model(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        numpyro.deterministic("mu2", 2 * mu)
        with numpyro.plate("obs_id", y.shape[0]):
            numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


    # HMC with a fixed number of leapfrog steps compiles faster than NUTS; the checkpoint
    # logic is the same for every MCMC kernel.
    SETTINGS = dict(method="hmc", num_steps=3, trajectory_length=None, num_chains=2,
                    num_warmup=50, num_samples=60, seed=7, checkpoint_every=30,
                    progress_bar=False)


    if __name__ == "__main__":
        if sys.argv[2] == "slow":  # give the parent time to kill us after a checkpoint
            save = ckpt_module.Checkpoint.save_progress

            def slow_save(self, payload, partial, done):
                save(self, payload, partial, done)
                if done > 0:
                    print("saved", done, flush=True)
                    time.sleep(60)

            ckpt_module.Checkpoint.save_progress = slow_save
        fit(model, Y, checkpoint=sys.argv[1], **SETTINGS)
    """
)


def _load_script(path):
    spec = importlib.util.spec_from_file_location("ckpt_model_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _posterior_equal(a, b):
    assert set(a.posterior.data_vars) == set(b.posterior.data_vars)
    for name in a.posterior.data_vars:
        assert np.array_equal(a.posterior[name].values, b.posterior[name].values), name
    for name in a.sample_stats.data_vars:
        assert np.array_equal(a.sample_stats[name].values, b.sample_stats[name].values), name


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    script = tmp_path / "run_fit.py"
    script.write_text(SCRIPT)
    path = tmp_path / "run.nc"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path), "slow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()  # blocks until the first draws are on disk
        assert line.startswith("saved"), (line, proc.stderr.read() if proc.poll() else "")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    # The interrupted run left a partial, readable file and a state file.
    partial = from_netcdf(path)
    assert partial.attrs["probdyn_checkpoint"] == "partial"
    assert partial.posterior["mu"].shape == (2, 30)
    assert os.path.exists(str(path) + ".state.npz")

    mod = _load_script(script)
    resumed = fit(mod.model, mod.Y, checkpoint=str(path), **mod.SETTINGS)
    assert not os.path.exists(str(path) + ".state.npz")
    uninterrupted = fit(mod.model, mod.Y, checkpoint=str(tmp_path / "other.nc"), **mod.SETTINGS)
    _posterior_equal(resumed, uninterrupted)
    assert resumed.posterior["mu"].shape == (2, 60)
    np.testing.assert_array_equal(resumed.posterior["mu"].values[:, :30], partial.posterior["mu"])
    assert {"log_likelihood", "observed_data"} <= set(group_names(resumed))

    # A completed checkpoint loads and returns (no sampling: _run_mcmc is not reached).
    again = fit(mod.model, mod.Y, checkpoint=str(path), **mod.SETTINGS)
    for group in group_names(resumed):
        xr.testing.assert_identical(get_group(again, group), get_group(resumed, group))
    assert again.attrs == resumed.attrs

    # Different arguments, data or model: refused, and the file is left alone.
    before = path.read_bytes()
    changed = [
        dict(mod.SETTINGS, num_samples=80),
        dict(mod.SETTINGS, seed=8),
        dict(mod.SETTINGS, target_accept_prob=0.9),
        dict(mod.SETTINGS, checkpoint_every=20),
    ]
    for settings in changed:
        with pytest.raises(ValueError, match="checkpoint=") as info:
            fit(mod.model, mod.Y, checkpoint=str(path), **settings)
        assert "different run" in str(info.value)
    with pytest.raises(ValueError, match="model_args"):
        fit(mod.model, mod.Y + 1.0, checkpoint=str(path), **mod.SETTINGS)

    def other_model(y):
        return mod.model(y)

    with pytest.raises(ValueError, match="differs in model"):
        fit(other_model, mod.Y, checkpoint=str(path), **mod.SETTINGS)
    assert path.read_bytes() == before


def test_foreign_file_is_never_overwritten(tmp_path):
    path = tmp_path / "mine.nc"
    path.write_text("not a probdyn checkpoint")
    with pytest.raises(ValueError, match="not written by probdyn.fit"):
        fit(lambda: None, method="svi", checkpoint=str(path), num_steps=1, progress_bar=False)
    assert path.read_text() == "not a probdyn checkpoint"
    with pytest.raises(ValueError, match="checkpoint="):
        fit(lambda: None, checkpoint=str(tmp_path / "missing" / "x.nc"), progress_bar=False)


def _svi_model(y):
    import numpyro
    import numpyro.distributions as dist

    loc = numpyro.sample("loc", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    scale = numpyro.sample("scale", dist.LogNormal(0.0, 1.0))
    with numpyro.plate("obs_id", y.shape[0]):
        numpyro.sample("y", dist.Normal(loc, scale).to_event(1), obs=y)


def test_svi_crash_then_resume_is_bit_identical(tmp_path, monkeypatch):
    y = jnp.asarray(np.random.default_rng(1).normal(size=(6, 2)), dtype=jnp.float32)
    settings = dict(
        method="svi",
        guide="normal",
        num_steps=40,
        num_samples=15,
        num_chains=2,
        seed=3,
        checkpoint_every=20,
        progress_bar=False,
    )
    full = fit(_svi_model, y, checkpoint=str(tmp_path / "full.nc"), **settings)

    class Crash(Exception):
        pass

    save = ckpt_module.Checkpoint.save_progress

    def crash_after_first(self, payload, partial, done):
        save(self, payload, partial, done)
        raise Crash

    monkeypatch.setattr(ckpt_module.Checkpoint, "save_progress", crash_after_first)
    path = tmp_path / "svi.nc"
    with pytest.raises(Crash):
        fit(_svi_model, y, checkpoint=str(path), **settings)
    partial = from_netcdf(path)
    assert partial.sample_stats["loss"].shape == (20,)
    monkeypatch.setattr(ckpt_module.Checkpoint, "save_progress", save)
    resumed = fit(_svi_model, y, checkpoint=str(path), **settings)
    _posterior_equal(resumed, full)
    assert np.array_equal(resumed.sample_stats["loss"], full.sample_stats["loss"])
    for name in full.svi_params.data_vars:
        assert np.array_equal(resumed.svi_params[name], full.svi_params[name])
    assert json.loads(from_netcdf(path).attrs["probdyn_fingerprint"])["method"]
