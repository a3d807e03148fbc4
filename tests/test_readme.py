"""The README's Python examples run as written, in order, and print what they promise.

Each group of blocks runs in its own Python process: a crash inside JAX or XLA then shows
its whole stderr in the failure (rather than taking down a pytest-xdist worker with the
reason cut off), the groups spread over the workers, and nothing compiled by earlier tests
is held in memory while they run. A group starts with the import lines of the blocks
before it, as a reader who pasted the earlier examples would have them.
"""

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _prelude(before):
    """The top-level import lines of the README's blocks before block ``before``."""
    lines = [ln for b in _python_blocks()[:before] for ln in b.splitlines()]
    return "\n".join(ln for ln in lines if ln.startswith(("import ", "from ")))


# group name -> (README block indices, executed in order; checks run after them)
GROUPS = {
    "hmm_and_fit": (
        [0, 1, 2],
        """
        rates = mcmc.get_samples()["rates"].mean(0)
        # the README promises rates close to (1, 6)
        assert abs(float(rates[0]) - 1.0) < 0.6 and abs(float(rates[1]) - 6.0) < 1.5, rates
        assert float((path == states).mean()) > 0.8
        from probdyn.report import group_names  # InferenceData (ArviZ 0.x) or DataTree (1.x)

        assert {"posterior", "log_likelihood", "posterior_predictive"} <= set(group_names(idata))
        assert idata.posterior["rates"].dims == ("chain", "draw", "state")
        assert idata.observed_data["y"].dims == ("time",)
        loss = idata_svi.sample_stats["loss"].values
        assert loss[-100:].mean() < loss[:100].mean()
        """,
    ),
    "sgld": (
        [3],
        """
        w = idata_sg.posterior["w"].mean(("chain", "draw")).values
        # 2,000 labels: posterior sd of each weight is about 0.1
        assert abs(w[0] - 1.0) < 0.5 and abs(w[1] + 2.0) < 0.6 and abs(w[2] - 0.5) < 0.5, w
        """,
    ),
    "model_comparison": (
        [4],
        """
        import numpy as np

        # K = 2 vs K = 3: one term per time step, compared by PSIS-LOO and by LFO
        assert fits["K=2"].log_likelihood["y"].dims == ("chain", "draw", "time")
        assert set(comparison.index) == {"K=2", "K=3"}
        for res in lfo_k.values():
            assert len(res.pointwise) == 20 and res.refits[0] == 130 and np.isfinite(res.elpd)
        """,
    ),
    "ctmc": (
        [5],
        """
        # 300 noisy samples of a 2-state channel with rates (1, 2)
        log_k = idata_ctmc.posterior["log_rates"].mean(("chain", "draw")).values
        assert abs(log_k[0] - 0.0) < 0.5 and abs(log_k[1] - 0.69) < 0.5, log_k
        assert not bool(hidden.overflow)
        """,
    ),
    "pmmh": (
        [6],
        """
        k = idata_pmmh.posterior["k"].mean(("chain", "draw")).values
        assert abs(k[0] / k[1] - 20.0) < 10.0, k  # stationary mean 20 molecules
        """,
    ),
    "sde": (
        [7],
        """
        # OU with sigma 0.4, 101 observations
        assert abs(float(idata_ou.posterior["sigma"].mean()) - 0.4) < 0.15
        """,
    ),
    "barnn": (
        [8],
        """
        import numpy as np

        # finite scores, and the ensemble mean beats persistence of u_0
        test_ = np.asarray(test)
        assert np.isfinite(scores["nll"]) and 0.0 <= scores["ece"] <= 0.5, scores
        persistence = np.sqrt(np.mean((test_[:, 1:] - test_[:, :1]) ** 2))
        assert scores["rmse"] < persistence, (scores["rmse"], persistence)
        """,
    ),
    "kernels": ([9], ""),
}


def test_readme_has_examples():
    assert len(_python_blocks()) >= 2


def test_every_block_is_run():
    covered = sorted(i for blocks, _ in GROUPS.values() for i in blocks)
    assert covered == sorted(set(covered)), "a block is run by two groups"
    assert covered == list(range(len(_python_blocks()))), (
        "add the README's new python block to GROUPS in tests/test_readme.py"
    )


@pytest.mark.integration
@pytest.mark.parametrize("group", sorted(GROUPS))
def test_readme_examples_run(group, tmp_path):
    blocks, checks = GROUPS[group]
    source = _python_blocks()
    parts = [_prelude(blocks[0])]
    parts += [source[i] for i in blocks]
    parts.append(textwrap.dedent(checks))
    script = tmp_path / f"readme_{group}.py"
    script.write_text("\n\n".join(parts))
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", str(script)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, (
        f"README group {group!r} (blocks {blocks}) exited with {proc.returncode}\n"
        f"--- stdout (tail) ---\n{proc.stdout[-3000:]}\n"
        f"--- stderr (tail) ---\n{proc.stderr[-6000:]}"
    )
