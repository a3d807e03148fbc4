"""Chains and replicates over devices and processes (probdyn.distributed).

The multi-device checks run in a subprocess whose ``XLA_FLAGS`` force 4 CPU devices
before JAX starts (this process keeps its one device); the two-process check starts two
``jax.distributed`` processes on 127.0.0.1. The reference of each is the same work on one
device: bit-identical for SG-MCMC chains and for HMC replicates (no data-dependent loop
lengths); NUTS chains agree with one device only up to float rounding (XLA vectorises a
batch of 4 chains and one of 16 differently, ~1e-6, which the discrete tree choices then
amplify), so they are checked against the closed-form posterior instead.
"""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probdyn import distributed

WORKER = str(Path(__file__).with_name("_distributed_worker.py"))
Y = np.array([0.3, -0.1, 1.2, 0.8, 0.1, 0.5])


def _env(num_devices: int | None) -> dict:
    """This process's environment (the suite's XLA flags and compilation cache), with
    ``num_devices`` forced CPU devices instead of any device count it asked for."""
    env = dict(os.environ)
    flags = [
        f
        for f in env.get("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    ]
    if num_devices is not None:
        flags.append(f"--xla_force_host_platform_device_count={num_devices}")
    env["XLA_FLAGS"] = " ".join(flags)
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _start(args: list[str], num_devices: int | None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, WORKER, *args],
        env=_env(num_devices),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _finish(procs: list[subprocess.Popen], timeout: float) -> list[str]:
    """Wait for every process; kill all that are still running at the timeout."""
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=timeout)[0].decode(errors="replace"))
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    for p, text in zip(procs, outs, strict=False):
        assert p.returncode == 0, text[-3000:]
    return outs


def _four_devices(tmp_path_factory, mode):
    out = tmp_path_factory.mktemp(mode)
    _finish([_start([mode, str(out)], 4)], timeout=900)
    return dict(np.load(out / "result.npz"))


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    """One subprocess for the default-suite checks (~25 s of CPU)."""
    return _four_devices(tmp_path_factory, "devices")


@pytest.fixture(scope="module")
def four_devices_more(tmp_path_factory):
    """One subprocess for the slow checks: NUTS, checkpoints, a data-parallel fit."""
    return _four_devices(tmp_path_factory, "devices-more")


def test_sharded_sgld_chains_bit_identical_to_one_device(four_devices):
    assert int(four_devices["device_count"]) == 4
    assert str(four_devices["default_chain_method"]) == "sharded"
    # 6 chains on 4 devices (padded to 8) against the same chains vectorized on one
    np.testing.assert_array_equal(
        four_devices["sgld_default_mu"], four_devices["sgld_vectorized_mu"]
    )
    assert np.std(four_devices["sgld_default_mu"]) > 0


@pytest.mark.slow
def test_sharded_checkpoint_segments_bit_identical(four_devices_more):
    # checkpointed segments through the sharded segment sampler
    np.testing.assert_array_equal(
        four_devices_more["sgld_ckpt_sharded_mu"], four_devices_more["sgld_ckpt_vectorized_mu"]
    )


def test_hmc_replicates_bit_identical_to_one_device(four_devices):
    # 10 replicates over 4 devices (padded to 12) against a one-device mesh
    np.testing.assert_array_equal(
        four_devices["hmc_replicates_mu"], four_devices["hmc_replicates_one_mu"]
    )


@pytest.mark.slow
def test_sharded_nuts_matches_closed_form_posterior(four_devices_more):
    # conjugate normal: posterior N(sum y / (n + 1), 1 / (n + 1)); 16 chains x 100 draws
    assert str(four_devices_more["nuts_chain_method"]) == "sharded"
    mu = four_devices_more["nuts_mu"]
    assert mu.shape == (16, 100)
    mean, sd = Y.sum() / 7, 1 / np.sqrt(7)
    # MC error of the mean with an ESS of at least ~400 of the 1600 draws: sd / 20
    assert abs(mu.mean() - mean) < 4 * sd / 20
    assert abs(mu.std() - sd) < 0.15 * sd
    # each chain mixes on its own device (no chain stuck at its start)
    assert np.all(mu.std(axis=1) > 0.3 * sd)


def test_data_parallel_sgld_gradient_is_the_one_device_minibatch_gradient(four_devices):
    # per-device gradients of the data shards, psum-ed, against the gradient of the
    # one-device minibatch potential with the same 8 indices and the same N/B scale
    np.testing.assert_allclose(four_devices["dp_grad"], four_devices["dp_grad_ref"], rtol=1e-5)
    assert np.abs(four_devices["dp_grad"]).min() > 1e-3


@pytest.mark.slow
def test_data_parallel_sgld_fit(four_devices_more):
    assert str(four_devices_more["dp_chain_method"]) == "vectorized"
    beta = four_devices_more["dp_beta"]
    assert beta.shape == (2, 200, 3) and np.all(np.isfinite(beta))
    # separable data along (1, -1, 0.5): the draws lean that way
    mean = beta.reshape(-1, 3).mean(0)
    assert mean[0] > 0.5 and mean[1] < -0.5 and mean[2] > 0


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    """Two jax.distributed processes on 127.0.0.1 (2 devices each) against one process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    two, one = tmp_path / "two", tmp_path / "one"
    two.mkdir()
    one.mkdir()
    procs = [_start(["process", str(port), str(i), str(two)], None) for i in range(2)]
    procs.append(_start(["single", str(one)], None))
    _finish(procs, timeout=900)
    got, ref = np.load(two / "result.npz"), np.load(one / "result.npz")
    assert int(got["process_count"]) == 2 and int(got["device_count"]) == 4
    assert int(ref["process_count"]) == 1 and int(ref["device_count"]) == 1
    assert str(got["default_chain_method"]) == "sharded"
    assert str(ref["default_chain_method"]) == "vectorized"
    for name in ("sgld_default_mu", "hmc_replicates_mu", "sbc_ranks"):
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
    mu, mean, sd = got["nuts_mu"], Y.sum() / 7, 1 / np.sqrt(7)
    assert abs(mu.mean() - mean) < 4 * sd / 20
    # only process 0 wrote: one result file, nothing else from process 1
    assert sorted(p.name for p in two.iterdir()) == ["result.npz"]


# ---- one device, in this process ----------------------------------------------------


def test_map_over_devices_pads_and_keeps_items_apart():
    mesh = distributed.device_mesh()
    mapped = distributed.map_over_devices(lambda x, d: {"s": jnp.sum(x) + d["b"]}, mesh)
    x = np.arange(15.0).reshape(5, 3)
    out = mapped(x, {"b": np.arange(5.0)})
    np.testing.assert_array_equal(out["s"], x.sum(1) + np.arange(5.0))
    with pytest.raises(ValueError, match="leading axes differ"):
        mapped(x, {"b": np.arange(4.0)})


def test_device_mesh_and_chain_method_errors():
    assert distributed.device_mesh(1).devices.shape == (1,)
    too_many = jax.device_count() + 1
    with pytest.raises(ValueError, match=f"devices={too_many}"):
        distributed.device_mesh(too_many)
    with pytest.raises(TypeError, match="devices="):
        distributed.device_mesh(["cpu"])
    with pytest.raises(ValueError, match="1-D mesh"):
        distributed.map_over_devices(
            lambda x: x, jax.sharding.Mesh(np.array(jax.devices()), ("chains",))
        )
    assert distributed.is_main_process()
    from probdyn import fit

    with pytest.raises(ValueError, match="chain_method='pmap'"):
        fit(lambda: None, chain_method="pmap")
    with pytest.raises(ValueError, match="chain_method='sharded' with data_parallel"):
        fit(lambda: None, method="sgld", chain_method="sharded", data_parallel=(0,))
    from probdyn.infer import SGLD

    with pytest.raises(TypeError, match="data_parallel"):
        SGLD(lambda: None, data_parallel=(1.5,))


def test_old_import_paths_still_work():
    import importlib

    from probdyn.infer import minibatch, sgmcmc

    sbc = importlib.import_module("probdyn.report.sbc")
    assert sgmcmc.full_data_model is minibatch.full_data_model
    assert sgmcmc._iid_plates is minibatch.iid_plates
    assert callable(sbc._fit_vectorized_hmc)
