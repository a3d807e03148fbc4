"""Checkpoint faults (issue 9, items 3 and 4): no pickle, corrupt files, long runs."""

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import zipfile

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from probdyn.infer import checkpoint as ckpt_module
from probdyn.infer import segments
from probdyn.infer.fit import fit

Y = jnp.asarray([0.3, -0.2, 1.1], dtype=jnp.float32)
# HMC with one leapfrog step: the cheapest kernel to compile; the checkpoint logic is the
# same for every MCMC kernel.
SETTINGS = dict(
    method="hmc",
    num_steps=1,
    trajectory_length=None,
    num_chains=2,
    num_warmup=10,
    num_samples=12,
    seed=1,
    checkpoint_every=2,
    progress_bar=False,
)


def model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    with numpyro.plate("obs_id", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


class _Crash(Exception):
    pass


@pytest.fixture(scope="module")
def partial_dir(tmp_path_factory):
    """A run killed after 4 of 12 draws: ``run.nc`` (partial) and ``run.nc.state.npz``."""
    folder = tmp_path_factory.mktemp("partial")
    save = ckpt_module.Checkpoint.save_progress

    def crash_at_4(self, payload, partial, done):
        save(self, payload, partial, done)
        if done == 4:
            raise _Crash

    mp = pytest.MonkeyPatch()
    mp.setattr(ckpt_module.Checkpoint, "save_progress", crash_at_4)
    try:
        with pytest.raises(_Crash):
            fit(model, Y, checkpoint=str(folder / "run.nc"), **SETTINGS)
    finally:
        mp.undo()
    return folder


@pytest.fixture
def run_copy(partial_dir, tmp_path):
    for name in ("run.nc", "run.nc.state.npz"):
        shutil.copy(partial_dir / name, tmp_path / name)
    return tmp_path / "run.nc"


class _Planted:
    """Unpickling this creates a marker file: proof that the pickle was loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _rewrite_state(state_path, edit_meta=None, edit_members=None):
    with np.load(state_path, allow_pickle=False) as npz:
        members = {k: npz[k] for k in npz.files}
    meta = json.loads(members.pop("__meta__").tobytes())
    if edit_meta:
        edit_meta(meta)
    if edit_members:
        edit_members(members)
    members["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(state_path, "wb") as f:
        np.savez(f, **members)


def test_state_file_is_plain_arrays_and_json(partial_dir):
    with zipfile.ZipFile(partial_dir / "run.nc.state.npz") as zf:
        names = zf.namelist()
    assert "__meta__.npy" in names
    with np.load(partial_dir / "run.nc.state.npz", allow_pickle=False) as npz:
        meta = json.loads(npz["__meta__"].tobytes())
        arrays = [npz[k] for k in npz.files]  # allow_pickle=False: would raise on objects
    assert meta["format"] == "probdyn-checkpoint-state"
    assert meta["values"] == {"kind": "mcmc", "draws_done": 4}
    assert meta["fingerprint"]["method"] == "'hmc'"
    assert all(a.dtype.kind in "biuf" for a in arrays)
    assert not os.path.exists(str(partial_dir / "run.nc") + ".state.pkl")


def test_planted_pickle_is_never_loaded(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "run.nc"
    planted = str(path) + ".state.pkl"
    with open(planted, "wb") as f:
        pickle.dump(_Planted(marker), f)
    before = open(planted, "rb").read()
    with pytest.raises(ValueError, match="never reads pickle"):
        fit(model, Y, checkpoint=str(path), **SETTINGS)
    assert not marker.exists()
    assert open(planted, "rb").read() == before


def test_pickled_member_in_npz_is_refused(run_copy, tmp_path):
    marker = tmp_path / "pwned"
    state = str(run_copy) + ".state.npz"

    def plant(members):
        obj = np.empty((), dtype=object)
        obj[()] = _Planted(marker)
        members["tree.state.0"] = obj

    # np.savez pickles object arrays; probdyn reads with allow_pickle=False
    _rewrite_state(state, edit_members=plant)
    with pytest.raises(ValueError, match="cannot be used"):
        fit(model, Y, checkpoint=str(run_copy), **SETTINGS)
    assert not marker.exists()
    # a pickled header is refused too, before the fingerprint or anything else is read
    with open(state, "wb") as f:
        header = np.empty((), dtype=object)
        header[()] = _Planted(marker)
        np.savez(f, __meta__=header)
    with pytest.raises(ValueError, match="run.nc.state.npz"):
        fit(model, Y, checkpoint=str(run_copy), **SETTINGS)
    assert not marker.exists()


def test_truncated_state_names_the_file(run_copy):
    state = str(run_copy) + ".state.npz"
    data = open(state, "rb").read()
    with open(state, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"state file .*run\.nc\.state\.npz.* cannot be used"):
        fit(model, Y, checkpoint=str(run_copy), **SETTINGS)


def test_edited_draws_done_is_cross_checked(run_copy):
    def edit(meta):
        meta["values"]["draws_done"] = 2  # the arrays hold 4 draws

    _rewrite_state(str(run_copy) + ".state.npz", edit_meta=edit)
    with pytest.raises(ValueError, match=r"draws_done=2 but the saved"):
        fit(model, Y, checkpoint=str(run_copy), **SETTINGS)


def test_resume_truncated_netcdf_stale_tmp_one_compile(run_copy, monkeypatch):
    # a write killed mid-way left a temporary file; the partial netCDF is truncated
    stale = run_copy.parent / ".run.nc.abc123.tmp"
    stale.write_bytes(b"half a file")
    run_copy.write_bytes(run_copy.read_bytes()[:100])
    runs, original = [], segments.segment_sampler

    def counting(*args, **kwargs):
        runs.append(original(*args, **kwargs))
        return runs[-1]

    monkeypatch.setattr(segments, "segment_sampler", counting)
    with pytest.warns(RuntimeWarning, match="not readable"):
        idata = fit(model, Y, checkpoint=str(run_copy), **SETTINGS)
    assert not stale.exists()
    assert idata.posterior["mu"].shape == (2, 12)
    assert np.all(np.isfinite(idata.posterior["mu"].values))
    assert not os.path.exists(str(run_copy) + ".state.npz")
    # four segments of two draws after the resume, compiled once (not once per segment)
    assert len(runs) == 1 and runs[0].compiled._cache_size() <= 2


def test_unwritable_checkpoint_fails_before_warmup(monkeypatch):
    def no_warmup(*args, **kwargs):
        raise AssertionError("warmup started")

    monkeypatch.setattr(numpyro.infer.MCMC, "warmup", no_warmup)
    monkeypatch.setattr(numpyro.infer.MCMC, "run", no_warmup)
    with pytest.raises(ValueError, match="cannot write in folder '/proc'"):
        fit(model, Y, checkpoint="/proc/run.nc", **SETTINGS)


LONG_RUN = textwrap.dedent(
    """
    import sys
    import jax.numpy as jnp
    import numpyro, numpyro.distributions as dist
    from probdyn.infer import checkpoint as ck
    from probdyn.infer.fit import fit

    def model(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    marks = {}
    save = ck.Checkpoint.save_progress

    def spy(self, payload, partial, done):
        save(self, payload, partial, done)
        if done in (20, 200):
            with open("/proc/self/maps") as f:
                maps = sum(1 for _ in f)
            with open("/proc/self/status") as f:
                rss = [int(x.split()[1]) for x in f if x.startswith("VmRSS")][0]
            marks[done] = (maps, rss)

    ck.Checkpoint.save_progress = spy
    fit(model, jnp.asarray([0.5, 0.1]), method="hmc", num_steps=1, trajectory_length=None,
        num_chains=1, num_warmup=5, num_samples=200, checkpoint=sys.argv[1],
        checkpoint_every=1, progress_bar=False)
    print(marks[20][0], marks[20][1], marks[200][0], marks[200][1])
    """
)


@pytest.mark.slow
def test_200_segments_keep_flat_memory(tmp_path):
    # was: ~1,500 new memory maps per 10 draws, then a segfault after ~80 segments
    script = tmp_path / "long_run.py"
    script.write_text(LONG_RUN)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    res = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "long.nc")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    maps20, rss20, maps200, rss200 = map(int, res.stdout.split())
    assert maps200 - maps20 < 20  # measured: 0
    assert rss200 - rss20 < 30_000  # kB; measured ~1,000
