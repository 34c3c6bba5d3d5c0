"""The small tools around the pipeline: the summary `make repro` ends with, and the offline plots page."""

from pathlib import Path

from mlpipe.tools.plots_page import render_page
from mlpipe.tools.summary import summary

EVALUATION = {"threshold": 0.5, "test": {"roc_auc": 0.9052, "log_loss": 0.377, "accuracy": 0.828, "rows": 208_892}}
PATHS = {"evaluation": Path("m/e.json"), "drift": Path("m/d.json"), "figures": Path("r/f"), "reports": Path("r/d")}


def test_the_summary_names_the_headline_metrics_the_verdict_and_where_to_look():
    drift = {"retrain_recommended": True, "reasons": ["window 2018: dataset drift", "window all: target drift"], "windows": {}}
    text = summary(EVALUATION, drift, [Path("r/f/roc.png")], [], PATHS)
    assert "test set: ROC-AUC 0.9052, log-loss 0.3770, accuracy 0.828 at threshold 0.5 on 208,892 rows (m/e.json)" in text
    assert "drift: RETRAIN RECOMMENDED, 2 reason(s), first: window 2018: dataset drift (m/d.json)" in text
    assert "figures: 1 PNG in r/f/; drift reports: 0 HTML in r/d/" in text
    calm = summary(EVALUATION, {"retrain_recommended": False, "reasons": [], "windows": {"all": {}}}, [], [], PATHS)
    assert "drift: no retraining needed across 1 window(s)" in calm


def test_the_plots_page_is_static_and_escapes_plot_names():
    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "data": {"values": [{"x": 0, "y": 0}, {"x": 1, "y": 1}]},
        "mark": "line",
        "encoding": {"x": {"field": "x", "type": "quantitative"}, "y": {"field": "y", "type": "quantitative"}},
    }
    page = render_page({"<script>alert(1)</script>": [{"type": "vega", "content": spec}], "empty": []}, "Plots")
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<svg") == 1 and "no data in this revision" in page
    assert "<script" not in page and "http" not in page.split("<body>")[1].replace("http://www.w3.org", "")


def test_make_monitor_exits_1_when_retraining_is_recommended_and_0_otherwise(tmp_path, capsys):
    """`make monitor` runs `python -m mlpipe.monitoring metrics/drift.json`: its exit status gates CI."""
    import json

    from mlpipe.monitoring import main

    window = {"rows": 10, "drifted_columns": [], "prediction_drift": {"drifted": False}}
    verdict = tmp_path / "drift.json"
    verdict.write_text(json.dumps({"retrain_recommended": False, "reasons": [], "windows": {"all": window}}))
    assert main([str(verdict)]) == 0
    assert "no retraining needed" in capsys.readouterr().out
    verdict.write_text(json.dumps({"retrain_recommended": True, "reasons": ["window all: dataset drift"], "windows": {"all": window}}))
    assert main([str(verdict)]) == 1
    assert "RETRAIN RECOMMENDED:\n  - window all: dataset drift" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.json")]) == 2
