"""Jacobians and stability: the ReLU closed form against jacfwd, eigenvalue classes against
hand-made spectra, the Moebius map against its closed form."""

import jax.numpy as jnp
import numpy as np
import pytest

from probdyn.analysis import (
    STABILITY_LABELS,
    classify_stability,
    jacobian,
    jacobians,
    local_growth_rate,
    mobius_transform,
    relu_jacobian,
)


def test_relu_closed_form_equals_jacfwd(relu_rnn):
    rng = np.random.default_rng(0)
    hs = jnp.asarray(2.0 * rng.normal(size=(3, 8)), jnp.float32)
    xs = jnp.asarray(2.0 * rng.normal(size=(3, 3)), jnp.float32)
    active = []
    for h, x in zip(hs, xs, strict=True):
        a = relu_rnn.preactivation(h, x)
        active.append(np.asarray(a > 0))
        np.testing.assert_allclose(
            relu_jacobian(relu_rnn.W_hh, a), jacobian(relu_rnn.step, h, x), atol=1e-6
        )
    assert 0 < np.sum(active) < np.size(active)  # both branches exercised
    # batched pre-activations, and the input-free Jacobians at many states
    a0 = jnp.stack([relu_rnn.preactivation(h, jnp.zeros(3)) for h in hs])
    np.testing.assert_allclose(
        relu_jacobian(relu_rnn.W_hh, a0), jacobians(relu_rnn.step, hs, 3), atol=1e-6
    )


def test_classification_of_hand_made_spectra():
    J = np.stack(
        [
            np.diag([0.5, -0.3]),  # stable
            np.diag([1.5, 0.3]),  # saddle
            np.diag([-2.0, 1.2]),  # unstable
            np.diag([1.0, 0.2]),  # marginal
            1.2 * np.array([[np.cos(1.0), -np.sin(1.0)], [np.sin(1.0), np.cos(1.0)]]),
        ]
    )
    st = classify_stability(J, tol=1e-6)
    assert [STABILITY_LABELS[i] for i in st.label] == [
        "stable",
        "saddle",
        "unstable",
        "marginal",
        "unstable",
    ]
    np.testing.assert_array_equal(st.num_unstable, [0, 1, 2, 0, 2])
    np.testing.assert_allclose(st.spectral_radius, [0.5, 1.5, 2.0, 1.0, 1.2])
    np.testing.assert_allclose(st.eigenvalues[4], 1.2 * np.exp(np.array([1j, -1j])), atol=1e-12)
    single = classify_stability(np.diag([0.5, -0.3]))
    assert single.eigenvalues.shape == (1, 2)


def test_mobius_transform_real_part_sign():
    rng = np.random.default_rng(0)
    lam = rng.normal(size=200) + 1j * rng.normal(size=200)
    z = mobius_transform(lam)
    np.testing.assert_allclose(z.real, (np.abs(lam) ** 2 - 1) / np.abs(lam + 1) ** 2)
    np.testing.assert_array_equal(z.real < 0, np.abs(lam) < 1)


def test_invalid_inputs():
    with pytest.raises(ValueError, match="jacobian_matrices"):
        classify_stability(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="jacobian_matrices"):
        classify_stability(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="W_hh"):
        relu_jacobian(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="preactivation"):
        relu_jacobian(np.zeros((2, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="h must"):
        jacobian(lambda h, x: h, np.zeros((2, 2)), np.zeros(1))


def test_local_growth_rate_smooth_and_at_relu_origin():
    import jax

    # linear map: tends to the spectral radius (0.8), error O(1/k)
    A = jnp.asarray([[0.8, 0.3], [0.0, 0.5]], jnp.float32)
    g = local_growth_rate(jax.random.PRNGKey(0), lambda h, x: A @ h, jnp.zeros(2), 1,
                          num_steps=60)  # fmt: skip
    assert abs(float(g) - 0.8) < 0.03
    # bias-free ReLU at h = 0: autodiff reports the Jacobian as 0, but a perturbation v
    # maps to ReLU(W v); with W = diag(0.9, 0.6) its positive part shrinks by 0.9 per step
    W = jnp.asarray([[0.9, 0.0], [0.0, 0.6]], jnp.float32)

    def relu_step(h, x):
        return jax.nn.relu(W @ h)

    zero = jnp.zeros(2)
    assert float(classify_stability(jacobians(relu_step, zero[None], 1)).spectral_radius[0]) == 0
    g = local_growth_rate(jax.random.PRNGKey(1), relu_step, zero, 1, num_steps=60)
    assert abs(float(g) - 0.9) < 0.03
