"""The README's Python examples run as written, in order, in one namespace."""

import re
from pathlib import Path

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
