"""pointwise_log_likelihood against numpyro.infer.log_likelihood, and fit's group."""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import log_likelihood

from probdyn import DiscreteHMM, fit
from probdyn.report import pointwise_log_likelihood

A2 = jnp.array([[0.9, 0.1], [0.2, 0.8]])


def _model(y, mask=None):
    mu = numpyro.sample("mu", dist.Normal(jnp.zeros(2), 3.0).to_event(1))
    s = numpyro.sample("s", dist.HalfNormal(1.0))
    hmm = DiscreteHMM(jnp.ones(2) / 2, A2, dist.Normal(mu, 1.0))
    with numpyro.plate("seq", y.shape[0]):  # expands the HMM over sequences
        if mask is not None:
            hmm = hmm.mask(mask)
        numpyro.sample("y", hmm, obs=y)
    numpyro.sample("z", dist.Normal(s, 1.0).expand([3]).to_event(1), obs=jnp.zeros(3))


def test_matches_numpyro_log_likelihood_summed_over_time():
    rng = np.random.default_rng(0)
    y = jnp.asarray(rng.normal(size=(2, 7)))
    draws = {"mu": jnp.asarray(rng.normal(size=(2, 3, 2))), "s": jnp.ones((2, 3))}
    mask = jnp.array([True, False])
    ours = pointwise_log_likelihood(_model, draws, y, mask, batch_ndims=2)
    ref = log_likelihood(_model, draws, y, mask, batch_ndims=2)
    assert ours["y"].shape == (2, 3, 2, 7)  # chain, draw, seq, time
    np.testing.assert_allclose(np.asarray(ours["y"].sum(-1)), np.asarray(ref["y"]), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(ours["y"][:, :, 1]), 0.0)  # masked sequence
    np.testing.assert_allclose(np.asarray(ours["z"]), np.asarray(ref["z"]), rtol=1e-6)


def test_rejects_bad_batch_ndims():
    with pytest.raises(ValueError, match="batch_ndims"):
        pointwise_log_likelihood(
            _model, {"mu": jnp.zeros((3, 2))}, jnp.zeros((1, 4)), batch_ndims=-1
        )
    with pytest.raises(ValueError, match="leading"):
        pointwise_log_likelihood(
            _model, {"mu": jnp.zeros((3, 2)), "s": jnp.zeros(4)}, jnp.zeros((1, 4))
        )


@pytest.mark.slow  # a NUTS compilation; the README test checks the same on its HMM
def test_fit_log_likelihood_group_has_time_dim():
    y = jnp.asarray(np.random.default_rng(1).normal(size=(1, 12)))
    idata = fit(_model, y, num_chains=1, num_warmup=20, num_samples=10, progress_bar=False)
    da = idata.log_likelihood["y"]
    assert da.dims == ("chain", "draw", "seq", "time")
    assert da.shape == (1, 10, 1, 12)
    assert np.all(np.isfinite(da.values))


def _normal_model(y):
    mu = numpyro.sample("mu", dist.Normal(jnp.zeros(2), 3.0).to_event(1))
    with numpyro.plate("obs", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, 1.0).to_event(1), obs=y)


def test_chunks_match_numpyro():
    """Chunks of 3 draws (7 draws: the last chunk padded) and one chunk give the terms of
    numpyro.infer.log_likelihood."""
    rng = np.random.default_rng(2)
    y = jnp.asarray(rng.normal(size=(5, 2)), jnp.float32)
    draws = {"mu": jnp.asarray(rng.normal(size=(7, 2)), jnp.float32)}
    ref = np.asarray(log_likelihood(_normal_model, draws, y)["y"])
    for max_chunk_bytes in (3 * 5 * 4, None):
        ours = pointwise_log_likelihood(_normal_model, draws, y, max_chunk_bytes=max_chunk_bytes)
        np.testing.assert_allclose(np.asarray(ours["y"]), ref, rtol=1e-6)
    with pytest.raises(ValueError, match="max_chunk_bytes"):
        pointwise_log_likelihood(_normal_model, draws, y, max_chunk_bytes=0)


def test_model_that_needs_concrete_data():
    """A model that runs numpy on its data gets the data as constants (no tracer error)."""

    def model(x):
        m = numpyro.sample("m", dist.Normal(0.0, 1.0))
        centred = np.asarray(x) - np.mean(np.asarray(x))  # numpy: needs concrete x
        numpyro.sample("x", dist.Normal(m, 1.0), obs=centred)

    x = jnp.arange(5.0)
    draws = {"m": jnp.array([0.0, 1.0])}
    ours = pointwise_log_likelihood(model, draws, x)
    np.testing.assert_allclose(
        np.asarray(ours["x"]), np.asarray(log_likelihood(model, draws, x)["x"]), rtol=1e-6
    )
