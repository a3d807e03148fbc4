"""Fixed and slow points: closed forms for a linear map, a 2-D map with a saddle and two
stable nodes, a ghost (slow point without fixed point), and agreement of the two methods."""

import jax.numpy as jnp
import numpy as np
import pytest

from probdyn.analysis import (
    classify_stability,
    find_fixed_points,
    fixed_point_by_relaxation,
    jacobians,
    speed,
    unique_points,
)

DT = 0.1


def _linear_map(seed=0, size=5, radius=0.8):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(size, size))
    A *= radius / np.max(np.abs(np.linalg.eigvals(A)))
    b = rng.normal(size=size)
    A32, b32 = jnp.asarray(A, jnp.float32), jnp.asarray(b, jnp.float32)
    return A, b, lambda h, x: A32 @ h + b32 + 0.0 * x[0]


def _bistable(h, x):
    """x' = x + dt (x - x^3), y' = (1 - dt) y: stable nodes at (+-1, 0), a saddle at 0."""
    return jnp.stack([h[0] + DT * (h[0] - h[0] ** 3), (1 - DT) * h[1]]) + 0.0 * x[0]


def test_linear_map_fixed_point_and_spectrum():
    A, b, step = _linear_map()
    starts = np.random.default_rng(1).normal(scale=3.0, size=(8, 5))
    fp = find_fixed_points(step, starts, noise_dim=1)
    expected = np.linalg.solve(np.eye(5) - A, b)
    assert fp.points.shape == (1, 5)
    np.testing.assert_allclose(fp.points[0], expected, atol=1e-5)
    assert not fp.is_outlier.any() and len(fp.slow_points) == 0
    st = classify_stability(jacobians(step, fp.points, noise_dim=1))
    lam = np.linalg.eigvals(A)
    np.testing.assert_allclose(np.sort(np.abs(st.eigenvalues[0])), np.sort(np.abs(lam)), atol=1e-5)
    np.testing.assert_allclose(np.sort_complex(st.eigenvalues[0]), np.sort_complex(lam), atol=1e-5)
    assert st.label[0] == 0 and st.num_unstable[0] == 0
    np.testing.assert_allclose(st.spectral_radius[0], 0.8, atol=1e-5)


def test_bistable_map_saddle_and_nodes():
    grid = np.stack(np.meshgrid(np.linspace(-2, 2, 5), np.linspace(-1, 1, 3)), -1).reshape(-1, 2)
    fp = find_fixed_points(_bistable, grid, noise_dim=1)
    order = np.argsort(fp.points[:, 0])
    pts = fp.points[order]
    np.testing.assert_allclose(pts, [[-1, 0], [0, 0], [1, 0]], atol=1e-5)
    assert np.all(fp.q < 1e-10)
    st = classify_stability(jacobians(_bistable, pts, noise_dim=1))
    # Jacobian diag(1 + dt (1 - 3 x^2), 1 - dt): nodes (0.9, 0.8), saddle (1.1, 0.9)
    np.testing.assert_allclose(st.eigenvalues.real, [[0.9, 0.8], [1.1, 0.9], [0.9, 0.8]], atol=1e-5)
    assert list(st.label) == [0, 1, 0]
    assert list(st.num_unstable) == [0, 1, 0]
    # the paper's Moebius map: Re z > 0 exactly for the unstable direction
    assert list((st.mobius.real > 0).sum(axis=1)) == [0, 1, 0]
    # relaxation from one basin finds its node; from both, the spread flags the mean
    right = fixed_point_by_relaxation(_bistable, grid[grid[:, 0] > 0], noise_dim=1, num_steps=300)
    np.testing.assert_allclose(right.point, [1.0, 0.0], atol=1e-5)
    assert float(right.spread) < 1e-5 and float(right.q) < 1e-10
    both = fixed_point_by_relaxation(_bistable, grid[grid[:, 0] != 0], noise_dim=1, num_steps=300)
    assert float(both.spread) > 0.9


def test_slow_point_of_a_ghost():
    """h' = h + dt (r + h^2) has no fixed point; q has its minimum dt^2 r^2 / 2 at h = 0."""
    r = 0.05

    def ghost(h, x):
        return h + DT * (r + h**2) + 0.0 * x[0]

    fp = find_fixed_points(ghost, np.linspace(-1, 1, 5)[:, None], noise_dim=1, unique_tol=1e-2)
    assert fp.points.shape == (0, 1)
    assert fp.slow_points.shape == (1, 1)
    np.testing.assert_allclose(fp.slow_points[0, 0], 0.0, atol=1e-3)
    np.testing.assert_allclose(fp.slow_q[0], 0.5 * DT**2 * r**2, rtol=1e-4)
    np.testing.assert_allclose(speed(ghost, fp.slow_points, noise_dim=1), fp.slow_q, rtol=1e-5)


def test_methods_agree_on_contracting_relu_rnn(relu_rnn):
    rng = np.random.default_rng(2)
    starts = np.abs(rng.normal(size=(16, 8)))
    relaxed = fixed_point_by_relaxation(relu_rnn.step, starts, noise_dim=3)
    fp = find_fixed_points(relu_rnn.step, starts, noise_dim=3)
    assert float(relaxed.spread) < 1e-5
    assert fp.points.shape == (1, 8)
    np.testing.assert_allclose(fp.points[0], relaxed.point, atol=1e-5)
    # independent check: the fixed point of a contraction by long plain iteration
    h = np.zeros(8, np.float32)
    W, b = np.asarray(relu_rnn.W_hh), np.asarray(relu_rnn.b)
    for _ in range(400):
        h = np.maximum(W @ h + b, 0)
    np.testing.assert_allclose(fp.points[0], h, atol=1e-5)
    st = classify_stability(jacobians(relu_rnn.step, fp.points, noise_dim=3))
    assert st.label[0] == 0 and st.spectral_radius[0] < 0.9 + 1e-6


def test_outliers_are_dropped():
    A, b, step = _linear_map()
    starts = np.random.default_rng(1).normal(scale=0.01, size=(4, 5)) + np.linalg.solve(
        np.eye(5) - A, b
    )
    # starts spread ~0.02 around a point ~11 from the fixed point: every end is an outlier
    far = find_fixed_points(
        step, starts + 5.0, noise_dim=1, outlier_scale=2.0, num_steps=10, polish_steps=0
    )
    assert far.is_outlier.all() and far.points.shape == (0, 5)


def test_unique_points_keeps_slowest_of_each_cluster():
    pts = np.array([[0.0, 0.0], [0.0005, 0.0], [1.0, 1.0], [1.0, 1.0002]])
    q = np.array([2.0, 1.0, 0.5, 3.0])
    np.testing.assert_array_equal(unique_points(pts, q, tol=1e-3), [2, 1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"noise_dim": 0}, "noise_dim"),
        ({"noise_dim": 1, "num_steps": 0}, "num_steps"),
        ({"noise_dim": 1, "tol_q": -1.0}, "tol_q"),
        ({"noise_dim": 1, "tol_q": 1e-3, "slow_tol": 1e-6}, "slow_tol"),
        ({"noise_dim": 1, "optimizer": "adam"}, "optimizer"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        find_fixed_points(_bistable, np.zeros((2, 2)), **kwargs)


def test_invalid_states():
    with pytest.raises(ValueError, match="initial_states"):
        fixed_point_by_relaxation(_bistable, np.zeros(2), noise_dim=1)
    with pytest.raises(ValueError, match="initial_states"):
        find_fixed_points(_bistable, np.full((2, 2), np.nan), noise_dim=1)
    with pytest.raises(TypeError, match="step_fn"):
        find_fixed_points("f", np.zeros((2, 2)), noise_dim=1)
