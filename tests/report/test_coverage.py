"""replicate_coverage: fixed-truth coverage of NUTS intervals over replicate data sets."""

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import stats

from probdyn.report import replicate_coverage


def _model(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(5.0))
    numpyro.sample("y", dist.Normal(mu, sigma).expand([20]).to_event(1), obs=y)


def test_coverage_matches_nominal_and_intervals_match_closed_form():
    rng = np.random.default_rng(0)
    R, mu, sigma = 60, 1.5, 2.0
    ys = mu + sigma * rng.standard_normal((R, 20))
    res = replicate_coverage(
        _model,
        {"y": ys},
        {"mu": mu},
        levels=(0.5, 0.9),
        num_warmup=300,
        num_samples=400,
        seed=1,
    )
    assert res.covered.shape == (R, 1, 2)
    assert res.param_names == ["mu"]
    # With a vague prior the marginal posterior of mu is close to the Student-t interval
    # ybar +- t_{n-1} s / sqrt(n); compare the 90% end points (MC error of a 5% quantile
    # from ~400 correlated draws is ~0.1 sd; the HalfNormal prior on sigma shifts it a little).
    n = 20
    ybar, s = ys.mean(1), ys.std(1, ddof=1)
    half = stats.t.ppf(0.95, n - 1) * s / np.sqrt(n)
    sd = s / np.sqrt(n)
    for end, ref in ((res.upper, ybar + half), (res.lower, ybar - half)):
        err = np.abs(end[:, 0, 1] - ref) / sd
        assert err.mean() < 0.2 and err.max() < 0.8, err
    # calibrated: counts are Binomial(R, level); 99.9% two-sided bounds
    for i, lv in enumerate((0.5, 0.9)):
        lo, hi = stats.binom.ppf([0.0005, 0.9995], R, lv)
        assert lo <= res.covered[:, 0, i].sum() <= hi
    assert res.pvalues.shape == (1, 2)
    assert "mu" in res.to_markdown()
    assert res.divergences.shape == (R,)


def test_bad_input():
    with pytest.raises(ValueError, match="levels"):
        replicate_coverage(_model, {"y": np.zeros((2, 20))}, {"mu": 0.0}, levels=(0.9, 0.5))
    with pytest.raises(ValueError, match="datasets"):
        replicate_coverage(_model, {}, {"mu": 0.0})
    with pytest.raises(ValueError, match="truth"):
        replicate_coverage(_model, {"y": np.zeros((2, 20))}, {})
