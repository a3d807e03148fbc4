"""Case-study helpers: interval rows against numpy quantiles, docstring rendering."""

import numpy as np
import pytest

from probdyn.report.study import doc_as_markdown, interval_rows, interval_table_markdown


def test_interval_rows_match_numpy_quantiles():
    rng = np.random.default_rng(0)
    draws = {"a": rng.normal(size=(4000, 2)), "b": rng.normal(3.0, 1.0, size=4000)}
    rows = interval_rows(draws, {"a": [0.0, 2.0], "b": 3.0}, {"a": ["x", "y"]}, level=0.9)
    assert [r["parameter"] for r in rows] == ["x", "y", "b"]
    assert [r["covered"] for r in rows] == [True, False, True]
    np.testing.assert_allclose(rows[0]["upper"], np.quantile(draws["a"][:, 0], 0.95))
    assert "| x |" in interval_table_markdown(rows)
    with pytest.raises(ValueError, match="truth"):
        interval_rows(draws, {"a": [0.0]})


def test_doc_as_markdown_drops_summary_and_outputs():
    doc = "Summary.\n\nQuestion\n    Why?\n    Because.\n\nOutputs: files."
    assert doc_as_markdown(doc) == "**Question.** Why? Because."
