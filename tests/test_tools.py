"""The small tools around the pipeline: the `mlpipe` command and its exit statuses, the headline
metrics `make repro` ends with, the offline plots page, the sweep's table."""

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpipe import errors
from mlpipe.tools import command
from mlpipe.tools.plots_page import render_page
from mlpipe.tools.summary import summary

EVALUATION = {"threshold": 0.5, "test": {"roc_auc": 0.9052, "log_loss": 0.377, "accuracy": 0.828, "rows": 208_892}}
PATHS = {
    "evaluation": Path("m/e.json"),
    "drift": Path("m/d.json"),
    "quality": Path("m/q.json"),
    "figures": Path("r/f"),
    "reports": Path("r/d"),
    "card": Path("m/card.md"),
}


def test_the_summary_names_the_headline_metrics_the_verdict_and_where_to_look():
    drift = {"retrain_recommended": True, "reasons": ["window 2018: dataset drift", "window all: target drift"], "windows": {}}
    quality = {"rows_in": 1000, "rows_out": 990, "rows_quarantined": 10}
    text = summary(EVALUATION, drift, quality, [Path("r/f/roc.png")], [], PATHS)
    assert "rows: 1,000 read, 990 kept, 10 quarantined (m/q.json)" in text
    assert "test metrics at threshold 0.5 (calibration none) (m/e.json):" in text
    assert re.search(r"^  test +208,892 +0\.9052 +n/a +0\.3770 +0\.828", text, re.M), text
    assert "drift: RETRAIN RECOMMENDED, 2 reason(s), first: window 2018: dataset drift (m/d.json)" in text
    assert "figures: 1 PNG in r/f/; drift reports: 0 HTML in r/d/" in text
    assert "model card: none yet at m/card.md (dvc repro card)" in text
    assert "every metric: dvc metrics show" in text
    calm = summary(EVALUATION, {"retrain_recommended": False, "reasons": [], "windows": {"all": {}}}, None, [], [], PATHS)
    assert "drift: no retraining needed across 1 window(s)" in calm


def test_the_summary_links_the_model_card_once_the_card_stage_wrote_it(tmp_path):
    (tmp_path / "card.md").write_text("---\n---\n# Model card\n")
    calm = {"retrain_recommended": False, "reasons": [], "windows": {}}
    text = summary(EVALUATION, calm, None, [], [], {**PATHS, "card": tmp_path / "card.md"})
    assert f"model card: {tmp_path / 'card.md'} (for tools: {tmp_path / 'card.json'})" in text


def test_the_metrics_stay_narrow_on_a_wide_table_with_many_periods():
    """`make metrics` printed `dvc metrics show`: one row hundreds of columns wide on a wide table."""
    periods = {f"2020-{month:02d}": {**EVALUATION["test"], "rows": 1000 + month} for month in range(1, 13)}
    periods |= {f"2021-{month:02d}": EVALUATION["test"] for month in range(1, 13)}
    quality = {"rows_in": 10, "rows_out": 10, "rows_quarantined": 0, "null_share": {f"column_{i}": 0.0 for i in range(500)}}
    drift = {"retrain_recommended": False, "reasons": [], "windows": {"all": {"columns": {f"column_{i}": {} for i in range(500)}}}}
    text = summary({**EVALUATION, "by_period": periods}, drift, quality, [], [], PATHS)
    assert max(map(len, text.splitlines())) <= 120, text
    assert len(text.splitlines()) <= 25 and "2021-12" in text and "2020-01" not in text and "and 12 earlier periods" in text


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


WINDOW = {"rows": 10, "drifted_columns": [], "prediction_drift": {"drifted": False}}
CALM = {"retrain_recommended": False, "reasons": [], "windows": {"all": WINDOW}}


def test_mlpipe_monitor_exits_1_when_retraining_is_recommended_and_0_otherwise(tmp_path, capsys):
    """`mlpipe monitor` (also `python -m mlpipe.monitor.retrain`): its exit status gates CI."""
    from mlpipe.monitor.retrain import main

    verdict = tmp_path / "drift.json"
    verdict.write_text(json.dumps(CALM))
    assert main([str(verdict)]) == errors.EXIT_OK == command.main(["monitor", str(verdict)])
    assert "no retraining needed" in capsys.readouterr().out
    verdict.write_text(json.dumps({**CALM, "retrain_recommended": True, "reasons": ["window all: dataset drift"]}))
    assert main([str(verdict)]) == errors.EXIT_FINDING
    assert "RETRAIN RECOMMENDED:\n  - window all: dataset drift" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.json")]) == errors.EXIT_USAGE
    assert (
        capsys.readouterr().err
        == f"error: monitor: the drift verdict '{tmp_path / 'missing.json'}' does not exist: run `dvc repro drift` (or `dvc pull`) first\n"
    )


TEXT = json.dumps({**CALM, "reasons": ["window all: a reason"], "empty_windows": {}}, indent=2)


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(TEXT) - 1), garbage=st.sampled_from([b"", b"\x00\x00", b"\xff"]))
def test_a_truncated_or_corrupt_verdict_exits_3_in_one_line_never_retrain(tmp_path_factory, cut, garbage):
    """A truncated metrics/drift.json made `python -m mlpipe.monitor.retrain` print a traceback and exit 1,
    the status that means "retrain"."""
    from mlpipe.monitor.retrain import main

    verdict = tmp_path_factory.mktemp("drift") / "drift.json"
    verdict.write_bytes(TEXT[:cut].encode() + garbage)
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        assert main([str(verdict)]) == errors.EXIT_CORRUPT
    assert stdout.getvalue() == "" and stderr.getvalue().count("\n") == 1
    assert (
        stderr.getvalue().startswith(f"error: monitor: the drift verdict '{verdict}' is corrupt")
        and "`dvc repro drift`" in stderr.getvalue()
    )


def test_python_m_monitoring_and_the_mlpipe_command_give_the_same_line_and_status(tmp_path):
    verdict = tmp_path / "drift.json"
    verdict.write_text(TEXT[:100])
    for how in (["-m", "mlpipe.monitor.retrain"], ["-m", "mlpipe.tools.command", "monitor"]):
        done = subprocess.run([sys.executable, *how, str(verdict)], capture_output=True, text=True)
        assert done.returncode == errors.EXIT_CORRUPT and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.startswith("error: monitor: the drift verdict") and done.stderr.count("\n") == 1


def test_a_verdict_missing_its_keys_is_corrupt_too(tmp_path, capsys):
    verdict = tmp_path / "drift.json"
    for broken in ({}, [], {**CALM, "windows": {"all": {"rows": 1}}}):
        verdict.write_text(json.dumps(broken))
        assert command.main(["monitor", str(verdict)]) == errors.EXIT_CORRUPT
        assert capsys.readouterr().err.count("\n") == 1


def test_every_command_has_its_own_help_and_mlpipe_lists_them(capsys):
    assert command.main(["--help"]) == errors.EXIT_OK
    listed = capsys.readouterr().out
    for name in command.COMMANDS:
        assert re.search(rf"^  {name} +\S", listed, re.M), name
        with pytest.raises(SystemExit) as done:
            command.main([name, "--help"])
        assert done.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: mlpipe {name} "), name
    assert command.main(["nope"]) == errors.EXIT_USAGE
    assert "error: mlpipe: no command 'nope': use one of init, " in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        command.main(["monitor", "--no-such-option"])
    assert done.value.code == errors.EXIT_USAGE


def test_importing_the_command_imports_no_command():
    """`mlpipe monitor` starts in a fraction of a second: no pandas, DVC or LightGBM before a command runs."""
    code = "import sys, mlpipe.tools.command; print(sorted(m for m in sys.modules if m.startswith(('pandas', 'dvc', 'lightgbm', 'pydantic', 'mlpipe.tools.'))))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['mlpipe.tools.command']"


def test_the_console_script_is_installed():
    script = Path(sys.executable).parent / "mlpipe"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "monitor" in done.stdout


def test_a_user_error_exits_2_and_a_corrupt_pipeline_file_3(tmp_path, capsys):
    """init returned 1 (the status of a finding) for a user error."""
    assert command.main(["init", "--data", "x.csv", "--target", "y", "--params", str(tmp_path / "params.yaml")]) == errors.EXIT_USAGE
    assert capsys.readouterr().err.startswith("error: init: ")
    evaluation = tmp_path / "evaluation.json"
    assert command.main(["metrics", "--evaluation", str(evaluation)]) == errors.EXIT_USAGE
    evaluation.write_text('{"threshold": 0.5, "test": {"roc')
    assert command.main(["metrics", "--evaluation", str(evaluation)]) == errors.EXIT_CORRUPT
    assert capsys.readouterr().err.endswith(
        f"'{evaluation}' is corrupt or truncated (Unterminated string starting at: line 1 column 29 (char 28)): rebuild it with `dvc repro evaluate`\n"
    )


def test_the_exit_status_table_in_the_docs_is_errors_py():
    """docs/troubleshooting.md's table of exit statuses, against the constants the commands use."""
    docs = (Path(__file__).resolve().parents[1] / "docs" / "troubleshooting.md").read_text()
    rows = re.findall(r"^\| (\d+) \| `(EXIT_[A-Z]+)` \| (.*) \|$", docs, re.M)
    constants = {name: value for name, value in vars(errors).items() if name.startswith("EXIT_") and isinstance(value, int)}
    assert {name: int(value) for value, name, _ in rows} == constants
    assert {int(value): meaning for value, _, meaning in rows} == errors.EXIT_MEANINGS


def test_the_review_refuses_a_corrupt_guarded_metrics_file_instead_of_calling_it_a_regression(tmp_path, monkeypatch):
    """`dvc metrics diff` skips a file it cannot read: the guard then saw a "missing" metric, exit 1."""
    from mlpipe.config import Guard
    from mlpipe.tools.review import check_readable

    monkeypatch.chdir(tmp_path)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "params.yaml").write_text("review: {}\n")
    (tmp_path / "evaluation.json").write_text('{"test": {"roc_auc": 0.9')
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "corrupt at HEAD"], check=True)
    guards = [Guard(file="evaluation.json", key="test.roc_auc", max_drop=0.01)]
    with pytest.raises(errors.ArtifactError, match=r"the metrics file 'evaluation.json' is corrupt or truncated"):
        check_readable("HEAD", "params.yaml", guards)
    (tmp_path / "evaluation.json").write_text('{"test": {"roc_auc": 0.9}}')
    with pytest.raises(errors.ArtifactError, match=r"'evaluation.json' at revision HEAD is corrupt or truncated .*another BASE"):
        check_readable("HEAD", "params.yaml", guards)
    (tmp_path / "params.yaml").write_text("review: [\n")
    subprocess.run([*git, "commit", "-qam", "broken params"], check=True)
    (tmp_path / "params.yaml").write_text("review: {}\n")
    with pytest.raises(errors.ConfigError, match=r"params.yaml at revision HEAD is not valid YAML"):
        check_readable("HEAD", "params.yaml", [])


def test_the_sweep_table_shows_a_failed_experiment_as_failed_without_its_parents_metrics():
    """`dvc exp show` gives a failed experiment its baseline's metrics files: they were shown beside
    the impossible parameter, with no state column."""
    from mlpipe.tools.experiments import comparison_table

    def data(rate, auc):
        return {
            "params": {"params.yaml": {"data": {"train": {"learning_rate": rate}}}},
            "metrics": {"metrics/evaluation.json": {"data": {"test": {"roc_auc": auc, "log_loss": 0.4}}}},
        }

    shown = [
        {"rev": "workspace", "data": data(0.05, 0.9)},
        {
            "rev": "abc1234def",
            "name": "main",
            "data": data(0.05, 0.9),
            "experiments": [
                {"name": "bad-rate", "executor": {"state": "failed"}, "revs": [{"data": data(-1, 0.9)}]},
                {"name": "good", "executor": None, "revs": [{"data": data(0.1, 0.95)}]},
                {"name": "other-sweep", "executor": None, "revs": [{"data": data(0.2, 0.99)}]},
            ],
        },
    ]
    lines = comparison_table(shown, ["bad-rate", "good"], ["train.learning_rate=0.1,-1"]).splitlines()
    assert lines[0] == "| Experiment | State | train.learning_rate | test.roc_auc | test.log_loss | best_iteration | retrain_recommended |"
    assert lines[2:] == [
        "| main | baseline | 0.05 | 0.9 | 0.4 | — | — |",
        "| good | success | 0.1 | 0.95 | 0.4 | — | — |",
        "| bad-rate | failed | -1 | — | — | — | — |",
    ]


def test_the_plots_page_refuses_plot_data_dvc_could_not_read(monkeypatch):
    """DVC leaves out a plot file it cannot read (listing it under `errors`): the page drew it blank."""
    from mlpipe.tools import plots_page

    def shown(*errors):
        monkeypatch.setattr(plots_page, "dvc", lambda *args: json.dumps({"errors": list(errors), "data": {"ROC curve": []}}))

    corrupt = {
        "name": "ROC curve",
        "source": "metrics/plots/roc.json",
        "type": "JSONFileCorruptedError",
        "msg": "JSON file structure is corrupted",
    }
    shown({**corrupt, "rev": "workspace"})
    with pytest.raises(errors.ArtifactError, match=r"^the plot data 'metrics/plots/roc.json' is corrupt .*: rebuild it with `dvc repro`$"):
        plots_page.plots_json(None)
    shown({**corrupt, "rev": "main"})
    with pytest.raises(errors.ArtifactError, match=r"'metrics/plots/roc.json' at revision main is corrupt .*compare with another BASE$"):
        plots_page.plots_json("main")
    missing = {"name": "ROC curve", "source": "metrics/plots/roc.json", "type": "FileNotFoundError", "msg": "No such file"}
    shown({**missing, "rev": "workspace"})
    with pytest.raises(errors.DataError, match=r"does not exist: run `dvc repro` \(or `dvc pull`\) first"):
        plots_page.plots_json(None)
    shown({**missing, "rev": "main"})  # a plot added since the base revision: drawn from the workspace alone
    assert plots_page.plots_json("main") == {"ROC curve": []}


def test_the_readme_results_are_the_committed_metrics():
    """README.md's results block is generated from metrics/: a repro that changes a figure and
    forgets `python -m mlpipe.tools.results_doc` fails here."""
    from mlpipe.tools import results_doc

    root = Path(__file__).resolve().parents[1]
    assert results_doc.main(["--check", "--root", str(root)]) == errors.EXIT_OK


def test_results_doc_rewrites_only_its_block_and_check_sees_a_changed_metric(tmp_path, capsys):
    from mlpipe.tools import results_doc

    root = Path(__file__).resolve().parents[1]
    for name in ("metrics/evaluation.json", "metrics/train/metrics.json", "metrics/fairness.json", "metrics/drift.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text((root / name).read_text())
    (tmp_path / "README.md").write_text(f"# Before\n\n{results_doc.BEGIN}\nstale\n{results_doc.END}\n\n## After\n")
    assert results_doc.main(["--check", "--root", str(tmp_path)]) == errors.EXIT_FINDING
    assert results_doc.main(["--root", str(tmp_path)]) == errors.EXIT_OK
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith("# Before\n\n") and readme.endswith("\n\n## After\n") and "stale" not in readme
    evaluation = json.loads((tmp_path / "metrics/evaluation.json").read_text())
    assert f"| test | {evaluation['test']['rows']:,} | {evaluation['test']['roc_auc']:.4f} |" in readme
    assert results_doc.main(["--check", "--root", str(tmp_path)]) == errors.EXIT_OK
    evaluation["test"]["roc_auc"] = 0.5
    (tmp_path / "metrics/evaluation.json").write_text(json.dumps(evaluation))
    assert results_doc.main(["--check", "--root", str(tmp_path)]) == errors.EXIT_FINDING
    assert "results_doc" in capsys.readouterr().err
    (tmp_path / "README.md").write_text("# no markers\n")
    assert results_doc.main(["--root", str(tmp_path)]) == errors.EXIT_USAGE
