"""The README's Python examples run as written, in order, in one namespace."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(_python_blocks()) >= 2


def test_readme_examples_run(capsys):
    namespace: dict = {}
    for block in _python_blocks():
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
    rates = namespace["mcmc"].get_samples()["rates"].mean(0)
    # the README promises rates close to (1, 6)
    assert abs(float(rates[0]) - 1.0) < 0.6 and abs(float(rates[1]) - 6.0) < 1.5
    assert float((namespace["path"] == namespace["states"]).mean()) > 0.8
    idata = namespace["idata"]
    assert {"posterior", "log_likelihood", "posterior_predictive"} <= set(idata.groups())
    assert idata.posterior["rates"].dims == ("chain", "draw", "state")
    assert idata.observed_data["y"].dims == ("time",)
    assert idata_loss_decreased(namespace["idata_svi"])
    w = namespace["idata_sg"].posterior["w"].mean(("chain", "draw")).values
    # 2,000 labels: posterior sd of each weight is about 0.1
    assert abs(w[0] - 1.0) < 0.5 and abs(w[1] + 2.0) < 0.6 and abs(w[2] - 0.5) < 0.5
    # Markov jump processes: 300 noisy samples of a 2-state channel with rates (1, 2)
    log_k = namespace["idata_ctmc"].posterior["log_rates"].mean(("chain", "draw")).values
    assert abs(log_k[0] - 0.0) < 0.5 and abs(log_k[1] - 0.69) < 0.5
    assert not bool(namespace["hidden"].overflow)
    k = namespace["idata_pmmh"].posterior["k"].mean(("chain", "draw")).values
    assert abs(k[0] / k[1] - 20.0) < 10.0  # stationary mean 20 molecules
    # OU with sigma 0.4, 101 observations
    assert abs(float(namespace["idata_ou"].posterior["sigma"].mean()) - 0.4) < 0.15
    # BARNN on Burgers: finite scores, and the ensemble mean beats persistence of u_0
    scores, test = namespace["scores"], np.asarray(namespace["test"])
    assert np.isfinite(scores["nll"]) and 0.0 <= scores["ece"] <= 0.5
    persistence = np.sqrt(np.mean((test[:, 1:] - test[:, :1]) ** 2))
    assert scores["rmse"] < persistence


def idata_loss_decreased(idata):
    loss = idata.sample_stats["loss"].values
    return loss[-100:].mean() < loss[:100].mean()
