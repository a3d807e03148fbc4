"""The seed-replicate summary of case_studies/barnn_pde.py against hand computations."""

import math

import numpy as np

from probdyn.case_studies import barnn_pde


def _table(nll_barnn, ece_barnn, rmse_barnn):
    base = {"crps": 0.1, "coverage_50": 0.5, "coverage_90": 0.9}
    return {
        "deterministic": {"nll": math.inf, "ece": 0.25, "rmse": 1.0, **base},
        "barnn": {"nll": nll_barnn, "ece": ece_barnn, "rmse": rmse_barnn, **base},
    }


def test_seed_summary_mean_and_standard_error():
    tables = [_table(1.0, 0.1, 1.0), _table(2.0, 0.2, 1.2), _table(4.0, 0.3, 1.05)]
    out = barnn_pde._seed_summary(tables)
    nll = out["barnn"]["nll"]
    assert nll["values"] == [1.0, 2.0, 4.0]
    np.testing.assert_allclose(nll["mean"], 7.0 / 3.0)
    # sample standard deviation sqrt(((4/3)^2 + (1/3)^2 + (5/3)^2) / 2) over sqrt(3)
    np.testing.assert_allclose(nll["se"], math.sqrt((16 + 1 + 25) / 9 / 2) / math.sqrt(3))
    np.testing.assert_allclose(out["barnn"]["ece"]["se"], 0.1 / math.sqrt(3))
    # an infinite NLL (zero spread) has an infinite mean and no standard error
    assert out["deterministic"]["nll"]["mean"] == math.inf
    assert out["deterministic"]["nll"]["se"] is None  # JSON null, not NaN
    # one seed: no standard error; the claims on the means
    one = barnn_pde._seed_summary(tables[:1])
    assert one["barnn"]["rmse"]["se"] is None
    means = {m: {k: v["mean"] for k, v in row.items()} for m, row in out.items()}
    claims = barnn_pde._claims(means)
    assert claims["barnn_lowest_nll"] and claims["barnn_lowest_ece"]
    np.testing.assert_allclose(claims["barnn_rmse_ratio_to_deterministic"], 3.25 / 3)
    assert claims["barnn_rmse_comparable"]  # 1.083 <= 1.1
    text = barnn_pde._seed_table(out, 3)
    assert "| BARNN (tVAMP) | 2.33 ± 0.882 |" in text
