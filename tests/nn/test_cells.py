"""Recurrent cells against hand-written NumPy steps, equinox's cells and (if present) PyTorch."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probdyn.nn import MLP, ElmanCell, GRUCell, LSTMCell, run

IN, HID = 3, 4


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _np_params(cell):
    return [
        np.asarray(p, np.float64)
        for p in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    ]


def _np_gru(cell, x, h):
    w_ih, w_hh, b_ih, b_hh = _np_params(cell)
    out = []
    for t in range(x.shape[0]):
        a, b = w_ih @ x[t] + b_ih, w_hh @ h + b_hh
        r = _sig(a[:HID] + b[:HID])
        z = _sig(a[HID : 2 * HID] + b[HID : 2 * HID])
        n = np.tanh(a[2 * HID :] + r * b[2 * HID :])
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out)


def _np_lstm(cell, x, h, c):
    w_ih, w_hh, b_ih, b_hh = _np_params(cell)
    out = []
    for t in range(x.shape[0]):
        g = w_ih @ x[t] + b_ih + w_hh @ h + b_hh
        i, f, gg, o = (
            _sig(g[:HID]),
            _sig(g[HID : 2 * HID]),
            np.tanh(g[2 * HID : 3 * HID]),
            _sig(g[3 * HID :]),
        )
        c = f * c + i * gg
        h = o * np.tanh(c)
        out.append((h, c))
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


@pytest.fixture(scope="module")
def seq():
    rng = np.random.default_rng(0)
    return rng.normal(size=(5, IN)).astype(np.float32), rng.normal(size=HID).astype(np.float32)


def test_gru_matches_numpy_and_equinox(seq):
    xs, h0 = seq
    cell = GRUCell(IN, HID, key=jax.random.PRNGKey(1))
    final, hs = run(cell, jnp.asarray(xs), jnp.asarray(h0))
    ref = _np_gru(cell, xs.astype(np.float64), h0.astype(np.float64))
    np.testing.assert_allclose(hs, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(final, ref[-1], rtol=1e-5, atol=1e-6)
    # equinox's GRUCell folds b_hh of the r, z gates into one bias and keeps b_hn apart.
    e = eqx.nn.GRUCell(IN, HID, key=jax.random.PRNGKey(9))
    bias = cell.bias_ih + jnp.concatenate([cell.bias_hh[: 2 * HID], jnp.zeros(HID)])
    e = eqx.tree_at(
        lambda m: (m.weight_ih, m.weight_hh, m.bias, m.bias_n),
        e,
        (cell.weight_ih, cell.weight_hh, bias, cell.bias_hh[2 * HID :]),
    )
    np.testing.assert_allclose(
        cell(xs[0], h0), e(jnp.asarray(xs[0]), jnp.asarray(h0)), rtol=1e-5, atol=1e-6
    )


def test_lstm_matches_numpy_and_equinox(seq):
    xs, h0 = seq
    c0 = -0.5 * h0
    cell = LSTMCell(IN, HID, key=jax.random.PRNGKey(2))
    (h, c), (hs, cs) = run(cell, jnp.asarray(xs), (jnp.asarray(h0), jnp.asarray(c0)))
    ref_h, ref_c = _np_lstm(
        cell, xs.astype(np.float64), h0.astype(np.float64), c0.astype(np.float64)
    )
    np.testing.assert_allclose(hs, ref_h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cs, ref_c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, ref_h[-1], rtol=1e-5, atol=1e-6)
    e = eqx.nn.LSTMCell(IN, HID, key=jax.random.PRNGKey(9))
    e = eqx.tree_at(
        lambda m: (m.weight_ih, m.weight_hh, m.bias),
        e,
        (cell.weight_ih, cell.weight_hh, cell.bias_ih + cell.bias_hh),
    )
    ours = cell(xs[0], (h0, c0))
    theirs = e(jnp.asarray(xs[0]), (jnp.asarray(h0), jnp.asarray(c0)))
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_elman_matches_numpy(seq, nonlinearity):
    xs, h0 = seq
    cell = ElmanCell(IN, HID, nonlinearity=nonlinearity, key=jax.random.PRNGKey(3))
    _, hs = run(cell, jnp.asarray(xs), jnp.asarray(h0))
    w_ih, w_hh, b_ih, b_hh = _np_params(cell)
    act = np.tanh if nonlinearity == "tanh" else (lambda v: np.maximum(v, 0.0))
    h, ref = h0.astype(np.float64), []
    for x in xs.astype(np.float64):
        h = act(w_ih @ x + b_ih + w_hh @ h + b_hh)
        ref.append(h)
    np.testing.assert_allclose(hs, np.stack(ref), rtol=1e-5, atol=1e-6)


def test_run_reverse_and_default_state(seq):
    xs, _ = seq
    cell = GRUCell(IN, HID, key=jax.random.PRNGKey(4))
    final, hs = run(cell, jnp.asarray(xs), reverse=True)
    ref = _np_gru(cell, xs[::-1].astype(np.float64), np.zeros(HID))
    np.testing.assert_allclose(hs, ref[::-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(final, ref[-1], rtol=1e-5, atol=1e-6)


def test_cells_vmap_jit_grad(seq):
    xs, _ = seq
    cell = LSTMCell(IN, HID, key=jax.random.PRNGKey(5))
    batch = jnp.stack([jnp.asarray(xs), 2 * jnp.asarray(xs)])

    @eqx.filter_jit
    def loss(c, b):
        (h, _), _ = jax.vmap(lambda s: run(c, s))(b)
        return jnp.sum(h**2)

    grads = eqx.filter_grad(loss)(cell, batch)
    assert all(
        bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(eqx.filter(grads, eqx.is_array))
    )
    assert float(jnp.abs(grads.weight_ih).sum()) > 0


@pytest.mark.skipif(
    not __import__("importlib").util.find_spec("torch"), reason="torch is not installed"
)
def test_against_torch(seq):
    import torch

    xs, h0 = seq
    for ours, theirs in [
        (GRUCell(IN, HID, key=jax.random.PRNGKey(6)), torch.nn.GRUCell(IN, HID)),
        (
            ElmanCell(IN, HID, "relu", key=jax.random.PRNGKey(6)),
            torch.nn.RNNCell(IN, HID, nonlinearity="relu"),
        ),
    ]:
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(theirs, name).copy_(torch.tensor(np.asarray(getattr(ours, name))))
            ref = theirs(torch.tensor(xs[:1]), torch.tensor(h0[None])).numpy()[0]
        np.testing.assert_allclose(ours(xs[0], h0), ref, rtol=1e-5, atol=1e-6)
    ours = LSTMCell(IN, HID, key=jax.random.PRNGKey(7))
    theirs = torch.nn.LSTMCell(IN, HID)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(theirs, name).copy_(torch.tensor(np.asarray(getattr(ours, name))))
        h, c = theirs(torch.tensor(xs[:1]), (torch.tensor(h0[None]), torch.tensor(h0[None])))
    oh, oc = ours(xs[0], (h0, h0))
    np.testing.assert_allclose(oh, h.numpy()[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(oc, c.numpy()[0], rtol=1e-5, atol=1e-6)


def test_mlp_matches_numpy():
    mlp = MLP(
        3,
        2,
        width=5,
        depth=2,
        activation="relu",
        final_activation="tanh",
        key=jax.random.PRNGKey(8),
    )
    x = np.array([0.3, -1.2, 0.7], np.float32)
    h = x.astype(np.float64)
    for i, layer in enumerate(mlp.layers):
        h = np.asarray(layer.weight, np.float64) @ h + np.asarray(layer.bias, np.float64)
        h = np.maximum(h, 0) if i < 2 else np.tanh(h)
    np.testing.assert_allclose(mlp(x), h, rtol=1e-5, atol=1e-6)
    assert [layer.weight.shape for layer in mlp.layers] == [(5, 3), (5, 5), (2, 5)]
    linear = MLP(3, 2, width=5, depth=0, key=jax.random.PRNGKey(8))
    assert len(linear.layers) == 1
    custom = MLP(3, 2, width=5, depth=1, activation=jnp.sin, key=jax.random.PRNGKey(8))
    assert custom(x).shape == (2,)


def test_invalid_arguments():
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="hidden_size"):
        GRUCell(3, 0, key=key)
    with pytest.raises(TypeError, match="input_size"):
        LSTMCell(2.5, 3, key=key)
    with pytest.raises(ValueError, match="nonlinearity"):
        ElmanCell(2, 3, nonlinearity="sigmoid", key=key)
    with pytest.raises(ValueError, match="activation"):
        MLP(2, 2, 4, 1, activation="swishy", key=key)
    with pytest.raises(ValueError, match="depth"):
        MLP(2, 2, 4, -1, key=key)
    cell = GRUCell(3, 4, key=key)
    with pytest.raises(ValueError, match=r"x must have shape \(3,\)"):
        cell(jnp.zeros((2, 3)), jnp.zeros(4))
    with pytest.raises(ValueError, match="xs must have shape"):
        run(cell, jnp.zeros(3))
    with pytest.raises(TypeError, match="pair"):
        LSTMCell(3, 4, key=key)(jnp.zeros(3), jnp.zeros(4))


def test_cells_inside_numpyro_svi():
    """An Elman RNN + MLP readout registered with numpyro.contrib.module.eqx_module learns."""
    import numpyro
    import numpyro.distributions as dist
    import optax
    from numpyro.contrib.module import eqx_module
    from numpyro.infer import SVI, Trace_ELBO

    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    cell0 = ElmanCell(1, 4, key=k1)
    head0 = MLP(4, 1, width=4, depth=1, key=k2)
    xs = jnp.sin(jnp.linspace(0, 6, 20))[:, None]

    def model(xs):
        cell = eqx_module("cell", cell0)
        head = eqx_module("head", head0)
        _, hs = run(cell, xs[:-1])
        loc = jax.vmap(head)(hs)
        numpyro.sample("y", dist.Normal(loc, 0.1).to_event(2), obs=xs[1:])

    svi = SVI(model, lambda xs: None, optax.adam(0.05), Trace_ELBO())
    result = svi.run(jax.random.PRNGKey(1), 60, xs, progress_bar=False)
    assert set(result.params) == {"cell$params", "head$params"}
    assert result.losses[-1] < 0.2 * result.losses[0]
