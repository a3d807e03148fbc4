"""Run by tests/test_distributed.py in a subprocess with forced host devices.

``python _distributed_worker.py devices OUT``: one process with 4 CPU devices (set by
the caller's ``XLA_FLAGS``), the default-suite checks; ``devices-more OUT``: the slow ones.
``python _distributed_worker.py process PORT ID OUT``: one of two ``jax.distributed``
processes on 127.0.0.1:PORT with 2 CPU devices each (a 4-device mesh over both).
``python _distributed_worker.py single OUT``: the same work in one process, one device.

Writes ``OUT/result.npz`` (the arrays the test compares) from process 0 only.
"""

import os
import sys

mode = sys.argv[1]
if mode == "process":  # import probdyn initializes jax.distributed from these
    port, process_id, out = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    os.environ["PROBDYN_COORDINATOR_ADDRESS"] = f"127.0.0.1:{port}"
    os.environ["PROBDYN_NUM_PROCESSES"] = "2"
    os.environ["PROBDYN_PROCESS_ID"] = str(process_id)
    os.environ["PROBDYN_LOCAL_DEVICE_COUNT"] = "2"
else:
    out = sys.argv[2]

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402

from probdyn import distributed, fit  # noqa: E402
from probdyn.infer import fit_replicates  # noqa: E402
from probdyn.report import sbc  # noqa: E402

Y = np.array([0.3, -0.1, 1.2, 0.8, 0.1, 0.5], dtype=np.float32)
BIG = jnp.linspace(-1.0, 2.0, 64)


def conjugate(y=None):
    """mu ~ N(0, 1), y_i ~ N(mu, 1): posterior N(sum y / (n + 1), 1 / (n + 1))."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    with numpyro.plate("time", 6):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def sub_model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    with numpyro.plate("obs", y.shape[0], subsample_size=8) as idx:
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y[idx])


def logistic(X, y=None):
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    with numpyro.plate("obs", X.shape[0], subsample_size=8) as idx:
        numpyro.sample("y", dist.Bernoulli(logits=X[idx] @ beta), obs=y[idx])


def sgld(**kw):
    idata = fit(sub_model, BIG, method="sgld", step_size=1e-3, num_chains=6, num_warmup=20,
                num_samples=30, seed=1, progress_bar=False, **kw)  # fmt: skip
    return idata, np.asarray(idata.posterior["mu"].values)


res = {"device_count": jax.device_count(), "process_count": jax.process_count()}
ys = np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32)
if mode != "devices-more":
    idata, res["sgld_default_mu"] = sgld()
    res["default_chain_method"] = idata.attrs["chain_method"]
    hmc = fit_replicates(conjugate, {"y": ys}, method="hmc", num_steps=3, num_warmup=30,
                         num_samples=20, seed=4)  # fmt: skip
    res["hmc_replicates_mu"] = hmc.draws["mu"]
if mode != "devices":
    nuts = fit(conjugate, Y, num_chains=16, num_warmup=100, num_samples=100, seed=3,
               progress_bar=False)  # fmt: skip
    res["nuts_mu"] = np.asarray(nuts.posterior["mu"].values)
    res["nuts_chain_method"] = nuts.attrs["chain_method"]

if mode == "devices-more":
    for cm in ("sharded", "vectorized"):
        res[f"sgld_ckpt_{cm}_mu"] = sgld(chain_method=cm, checkpoint_every=8,
                                         checkpoint=os.path.join(out, f"{cm}.nc"))[1]  # fmt: skip
if mode == "devices":
    res["sgld_vectorized_mu"] = sgld(chain_method="vectorized")[1]
    one = fit_replicates(conjugate, {"y": ys}, method="hmc", num_steps=3, num_warmup=30,
                         num_samples=20, seed=4, mesh=distributed.device_mesh(1))  # fmt: skip
    res["hmc_replicates_one_mu"] = one.draws["mu"]
    # data-parallel SGLD: the psum-ed gradient against the one-device gradient with the
    # same (stratified) minibatch indices, computed by hand
    from probdyn.infer import SGLD
    from probdyn.infer.minibatch import iid_indices

    kx, kb = jax.random.split(jax.random.PRNGKey(7))
    X = jax.random.normal(kx, (64, 3))
    yb = (X @ jnp.array([1.0, -1.0, 0.5]) > 0).astype(jnp.float32)
    kernel = SGLD(logistic, step_size=1e-3, data_parallel=(0, "y"))
    kernel.init(jax.random.PRNGKey(0), 0, None, (X,), {"y": yb})
    z = {"beta": jnp.array([0.3, -0.2, 0.1])}
    key = jax.random.PRNGKey(11)
    res["dp_grad"] = np.asarray(kernel._grad_estimator((X,), {"y": yb})(z, key)["beta"])
    idx = []
    for d in range(4):  # what each device draws: seed(fold_in(key, d)) -> the plate's key
        k = jax.random.split(jax.random.fold_in(key, d))[1]
        idx.append(16 * d + iid_indices(16, 2, k))
    idx = jnp.concatenate(idx)

    def log_density(beta):
        prior = dist.Normal(0.0, 1.0).log_prob(beta).sum()
        lik = dist.Bernoulli(logits=X[idx] @ beta).log_prob(yb[idx]).sum()
        return prior + 64 / 8 * lik

    res["dp_grad_ref"] = np.asarray(jax.grad(log_density)(z["beta"]))
if mode == "devices-more":
    kx, _ = jax.random.split(jax.random.PRNGKey(7))
    X = jax.random.normal(kx, (64, 3))
    yb = (X @ jnp.array([1.0, -1.0, 0.5]) > 0).astype(jnp.float32)
    dp = fit(logistic, X, method="sgld", step_size=2e-3, num_chains=2, num_warmup=50,
             num_samples=200, seed=0, progress_bar=False, data_parallel=(0, "y"),
             model_kwargs={"y": yb})  # fmt: skip
    res["dp_beta"] = np.asarray(dp.posterior["beta"].values)
    res["dp_chain_method"] = dp.attrs["chain_method"]
if mode in ("process", "single"):  # an SBC, replicates over the processes' devices
    ranks = sbc(conjugate, num_replicates=12, num_posterior_draws=19, thin=1, seed=2,
                vectorized=True, method="hmc", num_steps=3, num_warmup=30,
                progress_bar=False)  # fmt: skip
    res["sbc_ranks"] = ranks.ranks

if distributed.is_main_process():
    np.savez(os.path.join(out, "result.npz"), **res)
