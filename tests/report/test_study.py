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


def _toy_idata(diverging=True):

    rng = np.random.default_rng(1)
    post = {"a": rng.normal(size=(2, 200)), "b": rng.normal(size=(2, 200, 3))}
    post["b"][1] += 3.0  # the chains of b disagree: R-hat far above 1
    stats = (
        {"diverging": np.zeros((2, 200), bool)} if diverging else {"accepted": np.ones((2, 200))}
    )
    if diverging:
        stats["diverging"][0, [3, 50]] = True
        stats["diverging"][1, 7] = True
    from probdyn.report.idata import to_inference_data  # either ArviZ line

    return to_inference_data(post, sample_stats=stats)


def test_nuts_metrics_aggregates_arviz_per_variable():
    import arviz as az

    from probdyn.report.study import nuts_metrics

    idata = _toy_idata()
    m = nuts_metrics(idata, ["a", "b"])
    rhat, ess = az.rhat(idata), az.ess(idata, method="bulk")
    assert m["rhat_max"] == pytest.approx(max(float(rhat[v].max()) for v in ("a", "b")))
    assert m["ess_bulk_min"] == pytest.approx(min(float(ess[v].min()) for v in ("a", "b")))
    assert m["rhat_max"] > 1.5 and m["divergences"] == 3
    assert nuts_metrics(idata, ["a"])["rhat_max"] < 1.1
    # samplers without divergences (PMMH): no key
    assert "divergences" not in nuts_metrics(_toy_idata(diverging=False), ["a"])


def test_write_outputs_files_and_manifest(tmp_path):
    import json

    import arviz as az

    from probdyn.report.output import prepare_output_dir
    from probdyn.report.study import write_outputs

    out = prepare_output_dir(tmp_path / "run")
    (out / "fig.png").write_bytes(b"png")
    files = write_outputs(
        out, _toy_idata(), {"x": np.float32(1.5)}, ["# t", "body"], json_default=float
    )
    assert files == ["fig.png", "idata.nc", "metrics.json", "report.md"]
    assert json.loads((out / "metrics.json").read_text()) == {"x": 1.5}
    assert (out / "report.md").read_text() == "# t\nbody"
    assert az.from_netcdf(out / "idata.nc").posterior["b"].shape == (2, 200, 3)
