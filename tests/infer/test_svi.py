"""SVI is bit-identical across processes (issue 9): the ELBO sums its terms in name order."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import Trace_ELBO, autoguide

from probdyn.infer.svi import OrderedTraceELBO


def _model(x, y=None):
    w = numpyro.sample("w", dist.Normal(0, 1).expand([3]).to_event(1))
    s = numpyro.sample("s", dist.HalfNormal(1.0))
    with numpyro.plate("obs", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ w, s), obs=y)


def test_ordered_elbo_equals_numpyro_trace_elbo(num_particles=3):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(20, 3)), dtype=jnp.float32)
    y = x @ jnp.arange(3.0) + jnp.asarray(rng.normal(size=20), dtype=jnp.float32)
    guide = autoguide.AutoNormal(_model)
    svi = numpyro.infer.SVI(_model, guide, optax.adam(1e-2), Trace_ELBO())
    params = svi.get_params(jax.jit(lambda k: svi.init(k, x, y=y))(jax.random.PRNGKey(0)))
    key = jax.random.PRNGKey(1)
    ours = jax.jit(lambda p: OrderedTraceELBO(num_particles).loss(key, p, _model, guide, x, y=y))
    ref = jax.jit(lambda p: Trace_ELBO(num_particles).loss(key, p, _model, guide, x, y=y))
    ours, ref = ours(params), ref(params)
    assert np.isfinite(float(ours))
    np.testing.assert_allclose(float(ours), float(ref), rtol=1e-6)


SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    from numpyro.infer import Trace_ELBO
    from probdyn.infer import fit

    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(50, 3)), dtype=jnp.float32)
    Y = X @ jnp.arange(3.0) + jnp.asarray(rng.normal(size=50), dtype=jnp.float32)

    def model(x, y=None):
        w = numpyro.sample("w", dist.Normal(0, 1).expand([3]).to_event(1))
        s = numpyro.sample("s", dist.HalfNormal(1.0))
        with numpyro.plate("obs", x.shape[0]):
            numpyro.sample("y", dist.Normal(x @ w, s), obs=y)

    out = {}
    for name, extra in (("probdyn", {}), ("numpyro", {"loss": Trace_ELBO()})):
        idata = fit(model, X, model_kwargs={"y": Y}, method="svi", num_steps=500,
                    num_samples=2, num_chains=1, progress_bar=False, **extra)
        out[name] = idata.sample_stats["loss"].values
    np.savez(sys.argv[1], **out)
    """
)


@pytest.mark.slow
def test_svi_bit_identical_across_processes(tmp_path):
    script = tmp_path / "svi_run.py"
    script.write_text(SCRIPT)
    procs = []
    for hash_seed in ("1", "3"):  # two string-hash seeds that order the ELBO's set differently
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), PYTHONHASHSEED=hash_seed)
        out = tmp_path / f"loss{hash_seed}.npz"
        procs.append((subprocess.Popen([sys.executable, str(script), str(out)], env=env), out))
    for proc, _ in procs:
        assert proc.wait(timeout=600) == 0
    a, b = (np.load(out) for _, out in procs)
    assert np.array_equal(a["probdyn"], b["probdyn"])
    # the cause, kept visible: NumPyro's own Trace_ELBO differs between the two processes
    # (136 of 500 steps when measured); if NumPyro fixes it, this line may be removed
    assert not np.array_equal(a["numpyro"], b["numpyro"])
