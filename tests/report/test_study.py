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


SIZES = {"smoke": {"n": 1}, "quick": {"n": 10}, "full": {"n": 100}}


def test_sizes_smoke_quick_full_and_exclusive(capsys):
    from probdyn.report.study import chosen_size, study_parser

    p = study_parser("demo", "Demo.\n", sizes=SIZES)
    for argv, size in (([], "full"), (["--quick"], "quick"), (["--smoke"], "smoke")):
        name, cfg = chosen_size(p.parse_args(argv), SIZES)
        assert (name, cfg) == (size, SIZES[size])
    cfg["n"] = -1  # a copy: the study's table is untouched
    assert SIZES["smoke"]["n"] == 1
    with pytest.raises(SystemExit):
        p.parse_args(["--smoke", "--quick"])
    assert "not allowed with argument" in capsys.readouterr().err
    # without sizes there is no --smoke (studies that add their own keep working)
    plain = study_parser("demo", "Demo.\n")
    plain.add_argument("--smoke", action="store_true")
    assert plain.parse_args(["--smoke"]).smoke
    from probdyn.report.study import size_note

    assert "mean nothing" in size_note("smoke") and size_note("full") == ""
    with pytest.raises(ValueError, match="size must be one of"):
        size_note("tiny")
    with pytest.raises(ValueError, match="sizes must be a mapping with keys"):
        study_parser("demo", "Demo.\n", sizes={"quick": {}, "full": {}})
