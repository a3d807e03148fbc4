"""Step-size schedules (infer/schedules.py) against their closed forms."""

import jax
import numpy as np
import pytest

from probdyn.infer.schedules import make_schedule


def test_schedules():
    t = np.arange(0, 400)
    const = make_schedule("constant", 1e-3)
    np.testing.assert_allclose(jax.vmap(const)(t), 1e-3)
    poly = make_schedule("polynomial", 1e-3, {"b": 10.0, "gamma": 0.75})
    np.testing.assert_allclose(jax.vmap(poly)(t), 1e-3 * (10.0 / (10.0 + t)) ** 0.75, rtol=1e-5)
    cyc = make_schedule("cyclical", 1e-3, {"num_steps": 400, "num_cycles": 3})  # L = 134
    expected = 5e-4 * (np.cos(np.pi * (t % 134) / 134) + 1)
    np.testing.assert_allclose(jax.vmap(cyc)(t), expected, rtol=1e-4, atol=1e-12)
    custom = make_schedule(lambda i: 1e-3 / (1 + i), 1e-3)
    assert custom(3) == 2.5e-4


@pytest.mark.parametrize(
    "args, match",
    [
        (("constant", -1e-3), "step_size"),
        (("constant", float("nan")), "step_size"),
        (("polynomial", 1e-3, {"b": 0.0}), "b"),
        (("cyclical", 1e-3, {"num_steps": 0, "num_cycles": 3}), "num_steps"),
    ],
)
def test_bad_schedule_arguments_name_the_argument(args, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make_schedule(*args)
