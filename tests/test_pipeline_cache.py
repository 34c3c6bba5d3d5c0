"""Real `dvc repro` in temporary git+DVC copies: what runs, what is cached, what is reproducible."""

from __future__ import annotations

import json

import pandas as pd
import pytest

pytestmark = pytest.mark.integration

ALL_STAGES = ["ingest", "validate", "split", "featurize", "train", "evaluate", "fairness", "predict", "drift", "card"]


def out_hashes(lock: dict) -> dict[str, str]:
    return {out["path"]: out.get("md5") for stage in lock["stages"].values() for out in stage.get("outs", [])}


def test_first_repro_runs_every_stage_in_order_and_reports_metrics(built_repo):
    assert built_repo.first_run.stages_run == ALL_STAGES
    metrics = json.loads((built_repo.path / "metrics" / "evaluation.json").read_text())
    assert metrics["test"]["rows"] == 3 * 1500  # 2016-2018 of the 1,500-rows-per-year sample
    assert sorted(metrics["by_period"]) == ["2016", "2017", "2018"]
    assert 0.8 < metrics["test"]["roc_auc"] < 1.0
    quality = json.loads((built_repo.path / "metrics" / "data_quality.json").read_text())
    assert quality["rows_in"] == quality["rows_out"] == 4 * 1500


def test_second_repro_runs_nothing(repo):
    run = repo.dvc("repro")
    assert run.stages_run == []
    assert "up to date" in repo.dvc("status").stdout


def test_train_param_change_reruns_train_and_downstream_only(repo):
    repo.set_params(train={"learning_rate": 0.1})
    assert repo.dvc("repro").stages_run == ["train", "evaluate", "fairness", "predict", "drift", "card"]


def test_split_param_change_reruns_split_and_downstream_not_ingest_or_validate(repo):
    repo.set_params(split={"train_until": 2016, "test_from": 2017}, drift={"windows": {"2017": {"start": 2017, "end": 2017}, "all": {}}})
    run = repo.dvc("repro")
    assert run.stages_run == ["split", "featurize", "train", "evaluate", "fairness", "predict", "drift", "card"]
    metrics = json.loads((repo.path / "metrics" / "evaluation.json").read_text())
    assert sorted(metrics["by_period"]) == ["2017", "2018"]
    assert sorted(json.loads((repo.path / "metrics" / "drift.json").read_text())["windows"]) == ["2017", "all"]


def test_comment_or_unrelated_params_key_reruns_nothing(repo):
    params = repo.path / "params.yaml"
    text = params.read_text()
    text = text.replace("learning_rate: 0.05", "learning_rate: 0.05   # a reviewer's note")
    params.write_text(text + "\nnotes:\n  owner: data-team\n  ticket: 123\n")
    assert repo.dvc("repro").stages_run == []


def test_editing_train_script_reruns_train_and_nothing_after_it(repo):
    script = repo.path / "src" / "stages" / "train.py"
    script.write_text(script.read_text() + "\n# a harmless edit\n")
    # train reruns; its outputs are byte-identical, so nothing downstream has a changed input.
    assert repo.dvc("repro").stages_run == ["train"]


@pytest.mark.parametrize(
    ("module", "reruns"),
    [
        ("model/evaluation.py", ["evaluate"]),
        # How sources are read (files, partitions, S3, HTTP): the stages that read sources, and fairness (its scoring imports it).
        ("data/sources.py", ["ingest", "fairness", "predict"]),
    ],
)
def test_editing_a_library_module_reruns_only_the_stages_that_import_it(repo, module, reruns):
    path = repo.path / "src" / "mlpipe" / module
    path.write_text(path.read_text() + "\n# a harmless edit\n")
    assert repo.dvc("repro").stages_run == reruns


def test_forced_repro_gives_identical_hashes_for_every_output(repo_with_reports):
    """A copy of a repository that already ran every stage once (HTML reports included): running
    them all again must reproduce every output byte for byte. Each stage process has another string
    hash seed than in the run that built the copy: a set's order must not matter."""
    first = out_hashes(repo_with_reports.lock())
    metrics_first = (repo_with_reports.path / "metrics" / "evaluation.json").read_bytes()
    assert repo_with_reports.dvc("repro", "-f").stages_run == ALL_STAGES
    second = out_hashes(repo_with_reports.lock())
    assert first == second
    assert all(first.values()) and len(first) >= 20
    assert (repo_with_reports.path / "metrics" / "evaluation.json").read_bytes() == metrics_first


def test_no_output_holds_an_absolute_path_or_todays_date(built_repo):
    """Every file DVC tracks as an output (models, tables, JSON, PNG figures, HTML reports, DVCLive
    files) is free of the machine's paths and of timestamps: byte for byte, not only text files."""
    import datetime

    today = datetime.date.today()
    forbidden = [
        str(built_repo.path),
        "/tmp/",
        *{today.strftime(form) for form in ("%Y-%m-%d", "%Y%m%d", "%d/%m/%Y", "%m/%d/%Y", "%b %d %Y")},
    ]
    files = []
    for stage in built_repo.lock()["stages"].values():
        for out in stage.get("outs", []):
            path = built_repo.path / out["path"]
            files += [file for file in path.rglob("*") if file.is_file()] if path.is_dir() else [path]
    suffixes = {file.suffix for file in files}
    assert {".parquet", ".json", ".txt", ".png", ".html", ".yaml", ".tsv"} <= suffixes, suffixes
    for file in files:
        content = file.read_bytes()
        found = [text for text in forbidden if text.encode() in content]
        assert found == [], (file.relative_to(built_repo.path), found)


def test_new_batch_in_the_incoming_folder_reruns_only_scoring_and_drift(repo):
    import pandas as pd

    incoming = repo.path / "data" / "incoming"
    incoming.mkdir()
    test_rows = pd.read_parquet(repo.path / "data" / "split" / "test.parquet")
    test_rows[test_rows["year"] == 2016].to_csv(incoming / "batch-2016.csv", index=False)
    repo.set_params(monitor={"current_source": "data/incoming"}, drift={"windows": {"all": {}}})
    assert repo.dvc("repro").stages_run == ["predict", "drift", "card"]

    test_rows[test_rows["year"] == 2017].to_parquet(incoming / "batch-2017.parquet", index=False)
    assert repo.dvc("repro").stages_run == ["predict", "drift", "card"]
    scored = pd.read_parquet(repo.path / "data" / "predictions" / "current.parquet")
    assert len(scored) == 3000 and scored["model_version"].nunique() == 1
    assert sorted(scored["batch"].unique()) == ["batch-2016.csv", "batch-2017.parquet"]
    report = json.loads((repo.path / "metrics" / "drift.json").read_text())
    assert report["windows"]["all"]["rows"] == 3000  # both batches, 1,500 rows each
    assert repo.dvc("repro").stages_run == []


def test_new_partition_in_the_training_source_folder_reruns_only_what_it_affects(repo):
    """data.source as a folder: the same rows as partitions give the same model and metrics (a
    table's parts follow its source files, so the data stages rerun, but train does not), and a
    new partition of a later year changes the test period only."""
    parts = repo.path / "data" / "parts"
    parts.mkdir()
    table = pd.read_parquet(repo.path / "data" / "employment_ma.parquet")
    for year in sorted(table["year"].unique()):
        table[table["year"] == year].to_parquet(parts / f"year={year}.parquet", index=False)
    repo.set_params(data={"source": "data/parts", "pattern": "year=*.parquet"})
    before = (repo.path / "metrics" / "evaluation.json").read_text()
    # One part per partition file now, holding the same rows: the training period (one year, one
    # part) is the same bytes, so DVC skips train, and the metrics come out the same.
    run = repo.dvc("repro")
    assert run.stages_run == ["ingest", "validate", "split", "featurize", "evaluate", "fairness", "predict", "drift", "card"]
    assert "Stage 'train' didn't change" in run.stdout
    assert (repo.path / "metrics" / "evaluation.json").read_text() == before
    repo.commit("training data as partitions")

    # A year no earlier run (nor DVC's run-cache) has seen: 2018's rows as 2019, with new ids.
    later = table[table["year"] == 2018].head(1000).copy()
    later["year"] += 1
    later["id"] += table["id"].max() + 1
    later.to_parquet(parts / "year=2019.parquet", index=False)
    run = repo.dvc("repro")
    # train's inputs (the 2015 rows and the schema learned from them) are unchanged: DVC skips it.
    assert run.stages_run == ["ingest", "validate", "split", "featurize", "evaluate", "fairness", "predict", "drift", "card"]
    assert "Stage 'train' didn't change" in run.stdout
    rows = json.loads((repo.path / "metrics" / "evaluation.json").read_text())["by_period"]
    assert set(rows) == {"2016", "2017", "2018", "2019"} and rows["2019"]["rows"] == 1000
