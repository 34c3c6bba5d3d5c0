"""Bad input: one line on stderr naming the problem and what to fix, non-zero exit, nothing written."""

from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.integration


def assert_one_line_error(run, *fragments: str) -> None:
    """The stage failed with one line `error: <stage>: ...` holding every fragment, and wrote nothing."""
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"error: {run.stage}: "), lines[0]
    assert "Traceback" not in run.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert run.changed == [], f"a failed stage changed {run.changed}"


def test_hashing_personal_data_without_a_salt(repo, monkeypatch):
    monkeypatch.delenv("MLPIPE_PII_SALT", raising=False)
    repo.set_params(data={"personal_columns": {"id": "hash"}})
    assert_one_line_error(repo.stage("ingest"), "data.personal_columns", "MLPIPE_PII_SALT", "is not set")


def test_misspelt_personal_column(repo, monkeypatch):
    monkeypatch.setenv("MLPIPE_PII_SALT", "salt")
    repo.set_params(data={"personal_columns": {"AGE": "drop"}})
    assert_one_line_error(repo.stage("ingest"), "data.personal_columns names 'AGE'", "did you mean 'AGEP'?")


def test_missing_source_file(repo):
    repo.set_params(data={"source": "data/no_such_file.parquet"})
    run = repo.stage("ingest")
    assert_one_line_error(run, "data/no_such_file.parquet", "does not exist", "data.source")


def test_unreadable_parquet_file(repo):
    (repo.path / "data" / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet at all" * 10)
    repo.set_params(data={"source": "data/corrupt.parquet"})
    run = repo.stage("ingest")
    assert_one_line_error(run, "data/corrupt.parquet", "cannot read")


def test_empty_table_header_only(repo):
    (repo.path / "data" / "empty.csv").write_text("id,year,AGEP,employed\n")
    repo.set_params(data={"source": "data/empty.csv"})
    assert_one_line_error(repo.stage("ingest"), "data/empty.csv", "no rows")


def test_empty_file(repo):
    (repo.path / "data" / "blank.csv").write_text("")
    repo.set_params(data={"source": "data/blank.csv"})
    assert_one_line_error(repo.stage("ingest"), "data/blank.csv", "empty")


def test_unknown_format_suffix(repo):
    (repo.path / "data" / "table.xlsx").write_bytes(b"whatever")
    repo.set_params(data={"source": "data/table.xlsx"})
    assert_one_line_error(repo.stage("ingest"), "data.format")


def test_misspelt_categorical_column_suggests_the_right_one(repo):
    repo.set_params(data={"categorical_columns": ["MARR", "RELP"]})
    run = repo.stage("validate")
    assert_one_line_error(run, "'MARR'", "data.categorical_columns", "did you mean 'MAR'")


def test_missing_target_column(repo):
    repo.set_params(data={"target": "employd"})
    assert_one_line_error(repo.stage("validate"), "'employd'", "data.target", "did you mean 'employed'")


def test_non_binary_target(repo):
    categorical = [column for column in repo.params()["data"]["categorical_columns"] if column != "MAR"]
    repo.set_params(data={"target": "MAR", "categorical_columns": categorical})
    run = repo.stage("validate")
    assert_one_line_error(run, "'MAR'", "binary", "5 distinct values")


def test_positive_label_absent_from_target(repo):
    repo.set_params(data={"positive_label": "yes"})
    assert_one_line_error(repo.stage("validate"), "data.positive_label", "'yes'")


def test_negative_learning_rate(repo):
    repo.set_params(train={"learning_rate": -0.1})
    run = repo.stage("train")
    assert_one_line_error(run, "train.learning_rate", "greater than 0", "-0.1")


def test_unknown_split_strategy(repo):
    repo.set_params(split={"strategy": "temporal"})
    assert_one_line_error(repo.stage("split"), "split.strategy", "'time' or 'random'", "temporal")


def test_misspelt_params_key(repo):
    repo.set_params(train={"learning_rat": 0.1})
    assert_one_line_error(repo.stage("train"), "train.learning_rat", "spelling")


def test_cutoff_that_leaves_training_set_empty(repo):
    repo.set_params(split={"train_until": 2000, "test_from": 2016})
    run = repo.stage("split")
    assert_one_line_error(run, "training set empty", "split.train_until=2000", "2015..2018")


def test_cutoff_that_leaves_test_set_empty(repo):
    repo.set_params(split={"train_until": 2018, "test_from": None}, drift={"windows": {"all": {}}})
    assert_one_line_error(repo.stage("split"), "test set empty")


def test_dvc_repro_surfaces_the_error_and_recovers_once_params_are_fixed(repo):
    model = repo.path / "models" / "model.txt"
    good_model = model.read_bytes()
    good_params = (repo.path / "params.yaml").read_text()
    repo.set_params(train={"learning_rate": -0.1})
    run = repo.dvc("repro", check=False)
    assert run.returncode != 0
    assert run.stages_run == ["train"]
    assert "error: train: params.yaml: train.learning_rate" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    assert not model.exists() or model.read_bytes() == good_model  # never a partial model

    (repo.path / "params.yaml").write_text(good_params)
    repo.dvc("repro")
    assert model.read_bytes() == good_model
    assert "up to date" in repo.dvc("status").stdout


def current_batch(repo, name, transform):
    import pandas as pd

    table = transform(pd.read_parquet(repo.path_of("split", "test")))
    path = repo.path / "data" / name
    table.to_csv(path, index=False)
    repo.set_params(monitor={"current_source": f"data/{name}"})


def test_current_table_missing_a_feature_column(repo):
    current_batch(repo, "no_schl.csv", lambda t: t.drop(columns=["SCHL"]))
    run = repo.stage("predict")
    assert_one_line_error(run, "current table (data/no_schl.csv)", "['SCHL']")


def test_current_rows_breaking_the_contract_are_quarantined_and_flagged_not_scored(repo):
    """Batches meet the row rules of the data contract: bad rows go to the current quarantine with
    their rule, the rest are scored, and the drift verdict says the batch broke the contract."""

    import pandas as pd

    current_batch(repo, "text_age.csv", lambda t: t.assign(AGEP=t["AGEP"].astype(str).where(t.index % 7 != 0, "unknown")))
    run = repo.stage("predict")
    assert run.returncode == 0, run.stderr
    quarantine = pd.read_parquet(repo.path_of("predict", "quarantine"))
    scored = pd.read_parquet(repo.path_of("predict", "out-current"))
    assert set(quarantine["AGEP"]) == {"unknown"} and set(quarantine["quarantine_reason"]) == {"AGEP:dtype(int16)"}
    assert len(quarantine) + len(scored) == len(pd.read_csv(repo.path / "data" / "text_age.csv"))
    quality = json.loads(repo.path_of("predict", "quality").read_text())
    assert quality["rows_quarantined"] == len(quarantine) and quality["failures_by_rule"]["AGEP:dtype(int16)"] == len(quarantine)

    assert repo.stage("drift").returncode == 0
    verdict = json.loads(repo.path_of("drift", "metrics").read_text())
    assert verdict["retrain_recommended"] is True
    assert any(
        reason.startswith(f"current data: {len(quarantine):,} of ") and "AGEP:dtype(int16)" in reason for reason in verdict["reasons"]
    )


def test_a_batch_whose_every_row_breaks_the_contract_is_one_clear_error(repo):
    current_batch(repo, "all_bad.csv", lambda t: t.assign(AGEP=-5))
    assert_one_line_error(
        repo.stage("predict"), "every row of the current table (data/all_bad.csv) breaks the data contract", "AGEP:in_range(0, 120)"
    )


def test_empty_current_table(repo):
    current_batch(repo, "empty_batch.csv", lambda t: t.head(0))
    assert_one_line_error(repo.stage("predict"), "data/empty_batch.csv", "no rows")


def test_a_current_source_that_does_not_exist_names_monitor_current_source(repo):
    """It named data.source, the training source's key (predict read it as ingest does)."""
    repo.set_params(monitor={"current_source": "data/incoming"})
    assert_one_line_error(repo.stage("predict"), "monitor.current_source 'data/incoming' does not exist", "params.yaml")
    current_batch(repo, "incoming.csv", lambda t: t.head(50))  # the fix: a source that is there
    assert repo.stage("predict").returncode == 0


def test_a_drift_window_the_current_data_does_not_reach_is_reported_not_fatal(repo):
    # Which periods new batches cover is not known in advance: an empty window is named in the
    # verdict, and only when no window selects anything is that a reason to look.
    repo.set_params(drift={"windows": {"2030": {"start": 2030, "end": 2030}, "all": {}}, "report_windows": None})
    assert repo.stage("drift").returncode == 0
    verdict = json.loads(repo.path_of("drift", "metrics").read_text())
    assert verdict["empty_windows"] == {"2030": "selects no rows of the current data (start 2030, end 2030)"}
    assert list(verdict["windows"]) == ["all"]
    assert sorted(path.name for path in repo.path_of("drift", "reports-dir").iterdir()) == ["all.html"]
    assert not any("no drift window" in reason for reason in verdict["reasons"])

    repo.set_params(drift={"windows": {"2030": {"start": 2030, "end": 2030}}, "report_windows": []})
    assert repo.stage("drift").returncode == 0
    verdict = json.loads(repo.path_of("drift", "metrics").read_text())
    assert verdict["retrain_recommended"] is True
    assert "no drift window selects any current rows (2030): drift was not measured" in " ".join(verdict["reasons"])


def test_unknown_stat_test_name(repo):
    repo.set_params(drift={"cat_method": "jensen"})
    assert_one_line_error(repo.stage("drift"), "drift.cat_method", "unknown stat test 'jensen'")


def test_code_in_a_derived_feature_never_runs(repo, tmp_path):
    marker = tmp_path / "pwned"
    repo.set_params(features={"derived": {"X": f"AGEP + 0 * @logging.os.system('id > {marker}')"}})
    assert_one_line_error(repo.stage("featurize"), "features.derived.X", "not a valid expression")
    repo.set_params(features={"derived": {"X": "AGEP + 0 * __import__('os').system('id')"}})
    assert_one_line_error(repo.stage("featurize"), "features.derived.X", "the call")
    assert not marker.exists()


def test_a_model_schema_carrying_code_is_refused_by_predict(repo, tmp_path):
    marker = tmp_path / "pwned"
    schema_file = repo.path_of("predict", "model-schema")
    schema = json.loads(schema_file.read_text())
    schema["derived"] = {"X": f"__import__('os').system('id > {marker}')"}
    schema_file.write_text(json.dumps(schema))
    assert_one_line_error(repo.stage("predict"), "models/schema.json: derived.X", "the call")
    assert not marker.exists()


def test_nested_parquet_columns_are_dropped_with_one_line_on_every_path_rows_enter(repo):
    """A list, struct or map column cannot be a feature (it ended in a traceback in featurize):
    it is dropped as the file is read, with one warning naming it and its type."""
    import pandas as pd

    def with_nested(table):
        return table.assign(
            tags=[["a", "b"][: index % 3] for index in range(len(table))], address=[{"zip": str(index)} for index in range(len(table))]
        )

    source = pd.read_parquet(repo.path / repo.params()["data"]["source"])
    with_nested(source).to_parquet(repo.path / "data" / "nested.parquet", index=False)
    repo.set_params(data={"source": "data/nested.parquet"})
    ingest = repo.stage("ingest")
    assert ingest.returncode == 0, ingest.stderr
    warning = [line for line in ingest.stdout.splitlines() if "nested column" in line]
    assert len(warning) == 1 and "tags (list<element: string>), address (struct<zip: string>)" in warning[0], ingest.stdout
    assert "flatten them in the source" in warning[0]
    for stage in ("validate", "split", "featurize"):
        run = repo.stage(stage)
        assert run.returncode == 0 and not run.stderr, (stage, run.stderr)
    assert not {"tags", "address"} & set(pd.read_parquet(repo.path_of("ingest", "out")).columns)

    batch = with_nested(pd.read_parquet(repo.path_of("split", "test")))
    batch.to_parquet(repo.path / "data" / "nested_batch.parquet", index=False)
    repo.set_params(monitor={"current_source": "data/nested_batch.parquet"})
    predict = repo.stage("predict")
    assert predict.returncode == 0 and not predict.stderr, predict.stderr
    assert len(pd.read_parquet(repo.path_of("predict", "out-current"))) == len(batch)


# A file an earlier stage wrote, cut in half (a full disk, a killed copy, a partial `dvc pull`):
# one line naming it and the stage that rebuilds it, exit status 3 (EXIT_CORRUPT), no traceback.
# (reading stage, its option naming the file, what the message calls it, the stage that writes it)
WRITTEN_EARLIER = [
    ("validate", "raw", "the ingested table", "ingest"),
    ("split", "validated", "the validated table", "validate"),
    ("featurize", "train", "the training set", "split"),
    ("train", "schema", "feature schema", "featurize"),
    ("train", "features", "the training features", "featurize"),
    ("evaluate", "model-schema", "feature schema", "train"),
    ("evaluate", "model", "model", "train"),
    ("evaluate", "features", "the test features", "featurize"),
    ("predict", "model-schema", "feature schema", "train"),
    ("predict", "model", "model", "train"),
    ("predict", "reference", "the training set", "split"),
    ("drift", "evaluation", "the evaluation metrics", "evaluate"),
    ("drift", "current-quality", "the current data-quality metrics", "predict"),
    ("drift", "current", "the scored current rows", "predict"),
]


@pytest.mark.parametrize(("stage", "option", "what", "writer"), WRITTEN_EARLIER, ids=[f"{s}-{o}" for s, o, _, _ in WRITTEN_EARLIER])
def test_a_truncated_file_an_earlier_stage_wrote_is_one_line_and_exit_3(repo, stage, option, what, writer):
    from mlpipe.errors import EXIT_CORRUPT

    if stage == "drift":
        repo.set_params(drift={"report_windows": []})  # no Evidently reports: the verdict is what is tested
    output = repo.path_of(stage, option)
    path = sorted(output.glob("*.parquet"))[0] if output.is_dir() else output  # a table of parts: one part cut
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    run = repo.stage(stage)
    assert run.returncode == EXIT_CORRUPT, (run.returncode, run.stderr)
    # The line names the table, or the part of it that was cut.
    named = re.search(rf"{re.escape(what)} '([^']+)' is corrupt or truncated", run.stderr)
    assert named and named.group(1) in (output.relative_to(repo.path).as_posix(), path.relative_to(repo.path).as_posix()), run.stderr
    assert_one_line_error(run, f"rebuild it with `dvc repro {writer}`")


def test_a_truncated_file_in_the_prediction_log_is_refused_naming_it(repo):
    """The log writes each file whole (renamed into place), so a cut one was damaged afterwards: it
    cannot be rebuilt, and monitoring the rest silently would judge drift on part of the traffic."""
    import pandas as pd

    from mlpipe.errors import EXIT_CORRUPT

    log = repo.path / "data" / "served" / "date=2026-01-02"
    log.mkdir(parents=True)
    batch = pd.read_parquet(repo.path_of("split", "test")).head(200)
    batch.to_parquet(log / "part-000001-1-000001.parquet", index=False)
    batch.to_parquet(log / "part-000002-1-000002.parquet", index=False)
    cut = log / "part-000002-1-000002.parquet"
    cut.write_bytes(cut.read_bytes()[:-100])
    repo.set_params(monitor={"current_source": "data/served"})
    run = repo.stage("predict")
    assert run.returncode == EXIT_CORRUPT, run.stderr
    assert_one_line_error(
        run, "prediction log file 'data/served/date=2026-01-02/part-000002-1-000002.parquet' is corrupt or truncated", "move it out of"
    )
    cut.rename(repo.path / "data" / "damaged.parquet")  # the fix the message gives
    assert repo.stage("predict").returncode == 0
