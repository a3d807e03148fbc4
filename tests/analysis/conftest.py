"""A small ReLU RNN with random weights, shared by the analysis tests."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest


class ReluRNN(NamedTuple):
    """``h' = ReLU(W_hh h + W_ih x + b)``, readout ``W_out h`` (the emulator's form, plus b)."""

    W_hh: jax.Array
    W_ih: jax.Array
    W_out: jax.Array
    b: jax.Array

    def preactivation(self, h, x):
        return self.W_hh @ h + self.W_ih @ x + self.b

    def step(self, h, x):
        return jax.nn.relu(self.preactivation(h, x))

    def readout(self, h):
        return self.W_out @ h


def make_relu_rnn(seed=0, hidden_size=8, noise_dim=3, num_symbols=3, norm=0.9, bias=0.5):
    """Random ReLU RNN whose recurrent matrix has spectral norm ``norm`` (a contraction
    when norm < 1, since ReLU is 1-Lipschitz)."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(hidden_size, hidden_size))
    W *= norm / np.linalg.norm(W, 2)
    return ReluRNN(
        W_hh=jnp.asarray(W, jnp.float32),
        W_ih=jnp.asarray(
            rng.normal(size=(hidden_size, noise_dim)) / np.sqrt(noise_dim), jnp.float32
        ),
        W_out=jnp.asarray(rng.normal(size=(num_symbols, hidden_size)), jnp.float32),
        b=jnp.asarray(bias * rng.uniform(0.5, 1.5, size=hidden_size), jnp.float32),
    )


@pytest.fixture(scope="module")
def relu_rnn():
    return make_relu_rnn()
