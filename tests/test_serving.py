"""The serving library in process: loading and checking the model, the request contract's
policies, personal data in the prediction log, the log's files, and `make serve`'s refusals.
The service over real HTTP is tests/test_service.py."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():
    # Starlette 1.10's test client announces a move from httpx to httpx2; it runs on the pinned httpx.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from conftest import ROOT
from mlpipe.config import ServeParams, load_params
from mlpipe.errors import EXIT_USAGE, ArtifactError, DataError, OutputError
from mlpipe.model.calibration import Calibration
from mlpipe.serving.app import create_app
from mlpipe.serving.prediction_log import SERVED_AT, PredictionLog
from mlpipe.serving.scorer import load_served_model, score_records
from mlpipe.tools import serve as serve_tool


@pytest.fixture(scope="module")
def files(built_repo_without_reports):
    repo = built_repo_without_reports
    return {
        "model": repo.path_of("train", "model"),
        "schema": repo.path_of("train", "model-schema"),
        "params": load_params(repo.path / "params.yaml"),
        "rows": json.loads(pd.read_parquet(repo.path / repo.params()["monitor"]["current_source"]).head(40).to_json(orient="records")),
    }


def protected_log(files, folder, **options) -> PredictionLog:
    """The log `make serve` sets up (the files' personal-data rules), in `folder`."""
    params = files["params"]
    serve = params.serve.model_copy(update={"log_folder": str(folder), "log_rows_per_file": 100, "log_flush_seconds": 60})
    return serve_tool.service_log(params.model_copy(update={"serve": serve}), **options)


def client(files, log: PredictionLog | None = None, **serve) -> TestClient:
    params = files["params"]
    params = params.model_copy(update={"serve": params.serve.model_copy(update=serve)}) if serve else params
    return TestClient(create_app(lambda: load_served_model(files["model"], files["schema"]), params, prediction_log=log))


def with_data_rules(files, **data) -> dict:
    params = files["params"]
    return {**files, "params": params.model_copy(update={"data": params.data.model_copy(update=data)})}


def test_model_and_schema_must_exist_parse_and_belong_together(files, tmp_path):
    with pytest.raises(DataError, match="model '.*missing.txt' does not exist: run `dvc repro train`"):
        load_served_model(tmp_path / "missing.txt", files["schema"])
    (tmp_path / "broken.txt").write_text("tree\nnot a model")
    with pytest.raises(ArtifactError, match=r"model '.*broken.txt' is corrupt or truncated .*: rebuild it with `dvc repro train`"):
        load_served_model(tmp_path / "broken.txt", files["schema"])
    schema = json.loads(files["schema"].read_text())
    schema["features"] = schema["features"][::-1]
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    with pytest.raises(DataError, match="does not describe .*: the model's features .* are not the schema's"):
        load_served_model(files["model"], tmp_path / "schema.json")
    schema = json.loads(files["schema"].read_text())
    next(spec for spec in schema["features"] if spec["kind"] == "categorical")["categories"].append("99")
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    with pytest.raises(DataError, match="categorical levels differ"):
        load_served_model(files["model"], tmp_path / "schema.json")


def test_records_encode_to_the_batch_features_to_the_bit(files):
    """The service's encoder (no DataFrame per request) against the batch path (make_features,
    then LightGBM's own conversion of pandas categoricals): the same probabilities, bit for bit,
    with missing values, unseen levels, and levels sent as text or as whole floats."""
    import dataclasses

    model = load_served_model(files["model"], files["schema"])
    first, second, third = files["rows"][:3]
    edited = [{**first, "RELP": 99, "MAR": None, "AGEP": None}, {**second, "MAR": 2.0, "RELP": "17"}, {**third, "ANC": True}]
    whole_columns = [{**record, "RELP": -5 if i % 7 == 0 else record["RELP"]} for i, record in enumerate(files["rows"])]
    for records in ([first, second, third, *edited], whole_columns):  # value by value; a long column of integers at once
        encoded, _ = score_records(records, model)
        through_pandas, _ = score_records(records, dataclasses.replace(model, encoder=None))
        assert model.encoder is not None and encoded.tobytes() == through_pandas.tobytes()
    assert len(set(encoded.tolist())) > 30  # the rows differ: the comparison is not vacuous


def test_unknown_category_scored_as_unseen_or_refused_by_policy(files):
    unseen = {**files["rows"][0], "RELP": 99}  # a level training never saw (and no contract rule on RELP)
    scored = client(files, unknown_category="missing").post("/predict", json=unseen)
    assert scored.status_code == 200 and 0 < scored.json()["predictions"][0]["probability"] < 1
    refused = client(files, unknown_category="reject").post("/predict", json=unseen)
    assert refused.status_code == 422
    assert refused.json()["detail"] == [{"field": "RELP", "message": refused.json()["detail"][0]["message"]}]
    assert "is a category the model does not know" in refused.json()["detail"][0]["message"]


def test_personal_columns_are_protected_before_anything_is_logged(files, tmp_path, monkeypatch):
    monkeypatch.setenv("MLPIPE_PII_SALT", "a-long-random-test-salt")
    rules = with_data_rules(files, personal_columns={"email": "hash", "name": "drop"})
    log = protected_log(rules, tmp_path / "log")
    record = {**files["rows"][0], "email": "ann@example.com", "name": "Ann Example"}
    assert client(rules, log).post("/predict", json=record).status_code == 200
    log.close()
    logged = pd.concat(map(pd.read_parquet, (tmp_path / "log").rglob("*.parquet")))
    assert "name" not in logged and logged["email"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert b"ann@example.com" not in b"".join(path.read_bytes() for path in (tmp_path / "log").rglob("*") if path.is_file())
    # An undeclared column is refused, not logged.
    assert client(rules, log).post("/predict", json={**record, "phone": "555"}).status_code == 422


def test_the_watch_swaps_in_changed_model_files_and_keeps_serving_through_a_broken_one(files, tmp_path, caplog):
    import shutil
    import time

    import lightgbm

    from mlpipe.serving.scorer import files_state

    model, schema = tmp_path / "model.txt", tmp_path / "schema.json"
    shutil.copy(files["model"], model)
    shutil.copy(files["schema"], schema)
    params = files["params"].model_copy(update={"serve": files["params"].serve.model_copy(update={"watch_seconds": 0.05})})
    app = create_app(lambda: load_served_model(model, schema), params, watch=lambda: files_state(model, schema))

    def version_after(change) -> str:
        before = http.get("/ready").json()["model_version"]
        change()
        deadline = time.monotonic() + 10
        while http.get("/ready").json()["model_version"] == before and time.monotonic() < deadline:
            time.sleep(0.05)
        return http.get("/ready").json()["model_version"]

    with TestClient(app) as http:  # the lifespan runs: the watch is on
        old = http.get("/ready").json()["model_version"]
        smaller = lightgbm.Booster(model_file=str(model)).model_to_string(num_iteration=5)
        new = version_after(lambda: model.write_text(smaller))
        assert new != old and http.post("/predict", json=files["rows"][:2]).json()["model_version"] == new
        model.write_text("not a model")
        time.sleep(0.5)  # ten checks: it was tried once, refused, and the last good model still serves
        assert http.get("/ready").json()["model_version"] == new
        assert sum("do not load" in record.message for record in caplog.records) == 1  # not retried until the files change
        assert version_after(lambda: shutil.copy(files["model"], model)) == old


def test_a_body_streamed_past_the_limit_is_refused(files):
    chunks = (b" " * 1024 for _ in range(2000))  # no Content-Length: counted as it arrives
    response = client(files).post("/predict", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "serve.max_body_bytes" in response.json()["detail"]


def test_the_log_is_date_partitioned_rotated_by_rows_and_written_whole(tmp_path):
    moments = iter([dt.datetime(2026, 11, 30, 23, 59, 58, tzinfo=dt.UTC)] * 3 + [dt.datetime(2026, 12, 1, 0, 0, 1, tzinfo=dt.UTC)] * 2)
    log = PredictionLog(tmp_path / "log", rows_per_file=2, flush_seconds=60, clock=lambda: next(moments), background=False)
    for value in range(5):
        log.append([{"x": value}])
    log.close()
    files = sorted((tmp_path / "log").rglob("*"))
    parquet = [path for path in files if path.is_file()]
    assert [path.parent.name for path in parquet] == ["date=2026-11-30"] * 2 + ["date=2026-12-01"] * 2
    # Full at the second row; the fourth fills it again across midnight (a file per day); close writes the last.
    assert [len(pd.read_parquet(path)) for path in parquet] == [2, 1, 1, 1]
    rows = pd.concat(map(pd.read_parquet, parquet))
    assert sorted(rows["x"]) == [0, 1, 2, 3, 4] and rows[SERVED_AT].str.startswith(("2026-11-30T23:59:58", "2026-12-01T00:00:01")).all()
    assert not [path for path in files if path.name.startswith(".")]  # no temporaries left


def test_a_failed_write_keeps_the_rows_for_the_next_flush(tmp_path):
    blocked = tmp_path / "log"
    blocked.write_text("a file where the log folder should be")
    log = PredictionLog(blocked, rows_per_file=100, flush_seconds=60)
    log.append([{"x": 1}, {"x": 2}])
    with pytest.raises(OutputError, match="cannot write"):
        log.flush()
    blocked.unlink()
    log.close()
    assert sorted(pd.concat(map(pd.read_parquet, blocked.rglob("*.parquet")))["x"]) == [1, 2]


def test_rows_a_failed_table_left_are_written_by_the_next_flush(tmp_path):
    failures = iter([RuntimeError("the personal-data rules failed once")])

    def protect(table):
        failure = next(failures, None)
        if failure:
            raise failure
        return table

    log = PredictionLog(tmp_path / "log", rows_per_file=100, flush_seconds=60, protect=protect, background=False)
    log.append([{"x": 1}, {"x": 2}])
    with pytest.raises(RuntimeError, match="failed once"):
        log.flush()
    log.append([{"x": 3}])
    log.close()
    assert sorted(pd.concat(map(pd.read_parquet, (tmp_path / "log").rglob("*.parquet")))["x"]) == [1, 2, 3]


def test_a_field_sent_as_text_and_as_numbers_is_logged_as_text(tmp_path):
    # A text field accepts numbers too (as categorical levels): one file must still hold one type.
    log = PredictionLog(tmp_path / "log", rows_per_file=100, flush_seconds=60, background=False)
    outputs = {"probability": np.array([0.25, 0.75]), "model_version": "abc"}
    log.append([{"x": 1, "code": "A7", "day": "2023-07-01"}, {"x": 2.5, "code": 7, "day": "2023-07-02"}], outputs)
    log.append([{"x": None, "code": None, "day": None}], {"probability": np.array([0.5]), "model_version": "abc"})
    log.close()
    (written,) = (tmp_path / "log").rglob("*.parquet")
    rows = pd.read_parquet(written)
    assert rows["code"].tolist() == ["A7", "7", None] and rows["x"].tolist()[:2] == [1.0, 2.5] and rows["x"].isna().iloc[2]
    assert rows["day"].tolist() == ["2023-07-01", "2023-07-02", None]  # text as sent, not a timestamp
    assert rows["probability"].tolist() == [0.25, 0.75, 0.5] and set(rows["model_version"]) == {"abc"}


def test_a_date_sent_as_text_is_logged_as_text(tmp_path):
    log = PredictionLog(tmp_path / "log", rows_per_file=100, flush_seconds=60, background=False)
    log.append([{"x": 1, "day": "2023-07-01"}, {"x": 2, "day": "2023-07-02T10:00:00"}], {"probability": np.array([0.25, 0.75])})
    log.close()
    (written,) = (tmp_path / "log").rglob("*.parquet")
    rows = pd.read_parquet(written)
    assert rows["day"].tolist() == ["2023-07-01", "2023-07-02T10:00:00"] and rows["x"].tolist() == [1, 2]
    assert list(rows.columns) == ["x", "day", "probability", SERVED_AT]


def test_a_field_the_first_record_lacks_is_logged_for_the_records_that_have_it(tmp_path):
    log = PredictionLog(tmp_path / "log", rows_per_file=100, flush_seconds=60, background=False)
    log.append([{"x": 1}, {"x": 2, "employed": True}])
    log.append([{"id": "p-3", "x": 3}])
    log.close()
    (written,) = (tmp_path / "log").rglob("*.parquet")
    rows = pd.read_parquet(written)
    assert list(rows.columns) == ["x", "employed", "id", SERVED_AT] and rows["x"].tolist() == [1, 2, 3]
    assert rows["employed"].tolist() == [None, True, None] and rows["id"].tolist() == [None, None, "p-3"]


def test_make_serve_refuses_to_start_in_one_line(built_repo_without_reports, tmp_path, monkeypatch, capsys):
    repo = built_repo_without_reports.copy(tmp_path / "repo")
    monkeypatch.chdir(repo.path)
    arguments = ["--evaluation", "metrics/evaluation.json", "--training-params", "metrics/train/params.yaml"]

    def refusal() -> str:
        assert serve_tool.main(arguments) == EXIT_USAGE  # 2, as for every user error (1 is a gate's finding)
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: serve: ")
        return lines[0]

    (repo.path / "models" / "model.txt").unlink()
    assert "does not exist: run `dvc repro train`" in refusal()
    repo.set_params(data={"personal_columns": {"email": "hash"}})
    monkeypatch.delenv("MLPIPE_PII_SALT", raising=False)
    assert "MLPIPE_PII_SALT (data.salt_env) is not set" in refusal()
    text = (repo.path / "dvc.yaml").read_text()
    (repo.path / "dvc.yaml").write_text(text[: text.index("\nartifacts:")] + "\n")
    assert "needs exactly one artifact of type model" in refusal()


def test_a_json_array_or_object_as_a_field_value_is_a_422_naming_the_field(files):
    """Rows enter as flat values on every path: files drop nested columns as they are read, the
    service refuses them, so the prediction log never holds one."""
    served = client(files)
    record = files["rows"][0]
    categorical = next(spec["name"] for spec in json.loads(files["schema"].read_text())["features"] if spec["kind"] == "categorical")
    for field in ("AGEP", categorical, "SEX", "id"):
        for value in ([1, 2], {"a": 1}, []):
            answer = served.post("/predict", json={**record, field: value})
            assert answer.status_code == 422, (field, value)
            assert [problem["field"] for problem in answer.json()["detail"]] == [field], answer.json()


def test_ids_sent_as_text_and_as_numbers_reach_predict_as_text(built_repo_without_reports, tmp_path):
    """Two accepted requests, `"id": "A-1"` then `"id": 2`, land in two log files of different
    types; predict reads the log as one table: the id is text, with one warning (it crashed in
    Arrow: 'Conversion failed for column id')."""
    repo = built_repo_without_reports.copy(tmp_path / "repo")
    files = {"model": repo.path_of("train", "model"), "schema": repo.path_of("train", "model-schema")}
    files["params"] = load_params(repo.path / "params.yaml")
    rows = json.loads(pd.read_parquet(repo.path / repo.params()["monitor"]["current_source"]).head(2).to_json(orient="records"))
    log = PredictionLog(repo.path / "data" / "served", rows_per_file=1, flush_seconds=60, background=False)
    served = client(files, log)
    assert served.post("/predict", json={**rows[0], "id": "A-1"}).status_code == 200
    assert served.post("/predict", json={**rows[1], "id": 2}).status_code == 200
    log.close()
    assert len(list((repo.path / "data" / "served").rglob("*.parquet"))) == 2
    repo.set_params(monitor={"current_source": "data/served"})
    done = repo.stage("predict")
    assert done.returncode == 0, done.stderr
    assert pd.read_parquet(repo.path_of("predict", "out-current"))["id"].tolist() == ["A-1", "2"]
    (warning,) = [line for line in (done.stdout + done.stderr).splitlines() if "disagree" in line]
    assert "the batches disagree on the type of 'id' (text in " in warning and warning.endswith("): read as text")


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_two_parquet_batches_whose_column_types_differ_are_scored_with_it_as_text(built_repo_without_reports, tmp_path, engine):
    repo = built_repo_without_reports.copy(tmp_path / "repo")
    rows = pd.read_parquet(repo.path / repo.params()["monitor"]["current_source"]).head(40)
    (repo.path / "batches").mkdir()
    rows.head(20).assign(id=lambda table: "A-" + table["id"].astype(str)).to_parquet(repo.path / "batches" / "a.parquet")
    rows.tail(20).to_parquet(repo.path / "batches" / "b.parquet")
    repo.set_params(monitor={"current_source": "batches"}, compute={"engine": engine, "workers": 1})
    done = repo.stage("predict")
    assert done.returncode == 0, done.stderr
    (warning,) = [line for line in (done.stdout + done.stderr).splitlines() if "disagree" in line]
    assert "the batches disagree on the type of 'id' (text in " in warning and warning.endswith("): read as text")
    scored = pd.read_parquet(repo.path_of("predict", "out-current"))
    assert scored["id"].tolist() == [f"A-{value}" for value in rows["id"].head(20)] + [str(value) for value in rows["id"].tail(20)]


_VALUES = {
    "numbers": st.lists(st.one_of(st.none(), st.integers(-(2**40), 2**40)), min_size=1, max_size=4),
    "floats": st.lists(st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)), min_size=1, max_size=4),
    "booleans": st.lists(st.booleans(), min_size=1, max_size=4),
    "text": st.lists(st.one_of(st.none(), st.text(max_size=5)), min_size=1, max_size=4),
    "dates": st.lists(st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2030, 1, 1)), min_size=1, max_size=4),
}


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(sorted(_VALUES)).flatmap(lambda kind: _VALUES[kind]), min_size=1, max_size=4))
def test_batches_of_any_column_types_combine_into_one_table_parquet_can_hold(columns):
    """Whatever types the files give one column, the combined table has one type per column:
    it writes to Parquet, and each value is kept (as text when the files disagree)."""
    import pyarrow as pa

    from mlpipe.data.schema import category_label
    from mlpipe.data.sources import concat_batches

    named = [(f"part-{index}.parquet", pd.DataFrame({"x": values})) for index, values in enumerate(columns)]
    combined = concat_batches(named)
    pa.Table.from_pandas(combined)  # raised ArrowTypeError / ArrowInvalid on a mix
    sent = [value for values in columns for value in values]
    assert len(combined) == len(sent)
    if combined["x"].dtype == object and any(isinstance(value, str) for value in sent):
        assert combined["x"].tolist() == [None if value is None else category_label(value) for value in sent]


def test_a_request_without_one_of_two_similar_personal_columns_is_logged(files, tmp_path, caplog):
    """`first_name` sent, `last_name` not: an absent declared column is no misspelling of the other
    (every flush failed with "did you mean 'first_name'?" and the rows were lost at shutdown)."""
    rules = with_data_rules(files, personal_columns={"first_name": "drop", "last_name": "drop"})
    log = protected_log(rules, tmp_path / "log", background=False)
    assert client(rules, log).post("/predict", json={**files["rows"][0], "first_name": "Ann"}).status_code == 200
    log.close()
    (written,) = (tmp_path / "log").rglob("*.parquet")
    assert "first_name" not in pd.read_parquet(written) and log.dropped_rows == 0
    # At ingest the whole table is known: a near miss of an undeclared column is still refused there.
    from mlpipe.data.privacy import protect_personal_columns

    with pytest.raises(DataError, match="names 'last_name', which is not in the table; did you mean 'lastname'"):
        protect_personal_columns(pd.DataFrame({"first_name": ["a"], "lastname": ["b"]}), rules["params"].data.personal_columns, None, "S")
    assert list(
        protect_personal_columns(pd.DataFrame({"first_name": ["a"], "x": [1]}), {"first_name": "drop", "last_name": "drop"}, None, "S")
    ) == ["x"]


def test_a_log_that_cannot_write_holds_at_most_its_bound_and_counts_what_it_drops(files, tmp_path, caplog):
    blocked = tmp_path / "log"
    blocked.write_text("a file where the log folder should be")
    log = PredictionLog(blocked, rows_per_file=2, flush_seconds=60, background=False, max_buffered_rows=4)
    served = client(files, log)  # the service counts what the log drops
    for value in range(6):
        with contextlib.suppress(OutputError):  # without the background thread, a full append writes (and fails) itself
            log.append([{"x": value}])
    assert log.dropped_rows == 2  # the two oldest: at most four rows were ever held
    with pytest.raises(ValueError, match="serve.log_max_buffered_rows .* must be at least serve.log_rows_per_file"):
        ServeParams(log_rows_per_file=1000, log_max_buffered_rows=999)
    assert "mlpipe_prediction_log_dropped_rows_total 2.0" in served.get("/metrics").text
    blocked.unlink()
    log.close()
    assert sorted(pd.concat(map(pd.read_parquet, blocked.rglob("*.parquet")))["x"]) == [2, 3, 4, 5]
    # Still failing at shutdown: one line, the rows counted, no traceback out of close().
    blocked = tmp_path / "blocked"
    blocked.write_text("")
    log = PredictionLog(blocked, rows_per_file=100, flush_seconds=60, background=False)
    log.append([{"x": 1}, {"x": 2}])
    log.close()
    assert log.dropped_rows == 2
    assert [record.getMessage()[:60] for record in caplog.records if record.levelname == "ERROR"] == [
        f"prediction log: 2 row(s) not written at shutdown: cannot write '{blocked}"[:60]
    ]


def test_a_background_writer_that_keeps_failing_says_so_once_per_attempt(tmp_path, caplog):
    import time

    failures = []

    def protect(table):
        failures.append(1)
        raise DataError("the personal-data rules failed")

    log = PredictionLog(tmp_path / "log", rows_per_file=1000, flush_seconds=0.05, protect=protect, max_buffered_rows=1000)
    log.append([{"x": 1}])
    deadline = time.monotonic() + 10
    while len(failures) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    log.close()
    lines = [record.getMessage() for record in caplog.records if record.name == "mlpipe.serving.prediction_log"]
    assert len(lines) == len(failures) >= 3  # the attempts at 0.05 s, then close's
    assert (
        lines[0]
        == "prediction log: cannot write (the personal-data rules failed); 1 row(s) held, 0 dropped so far (serve.log_max_buffered_rows 1000)"
    )
    assert lines[-1] == "prediction log: 1 row(s) not written at shutdown: the personal-data rules failed" and log.dropped_rows == 1


def test_temporaries_of_killed_writers_are_removed_and_never_read(tmp_path):
    import subprocess
    import sys

    from mlpipe.data.sources import read_batches

    folder = tmp_path / "log" / "date=2026-11-30"
    folder.mkdir(parents=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    ).stdout.strip()
    killed, running = folder / f".part-081502-{dead}-000001.parquet.{dead}.tmp", folder / f".part-081502-1-000001.parquet.{os.getpid()}.tmp"
    killed.write_bytes(b"PAR1 half a file")
    running.write_bytes(b"PAR1 being written")
    log = PredictionLog(tmp_path / "log", rows_per_file=100, flush_seconds=60, background=False)
    log.append([{"x": 1}])
    with pytest.raises(DataError, match="holds no .csv or .parquet batch files"):  # temporaries are no batches
        read_batches(tmp_path / "log")
    log.close()
    assert not killed.exists() and running.exists()  # a live writer's temporary is its own
    assert read_batches(tmp_path / "log")["x"].tolist() == [1]  # hidden files are never batches


def test_retention_removes_the_oldest_log_files_by_age_and_by_total_size(tmp_path):
    now = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
    clock = iter([now - dt.timedelta(days=days) for days in (10, 9, 5)] + [now] * 10)
    log = PredictionLog(tmp_path / "log", rows_per_file=1, flush_seconds=60, clock=lambda: next(clock), background=False, tidy_seconds=0)
    for value in range(3):  # served 10, 9 and 5 days ago
        log.append([{"x": value}])
    other = tmp_path / "log" / "kept-by-hand.parquet"  # not one of the log's files: never removed
    pd.DataFrame({"x": [9]}).to_parquet(other)
    log.max_age_days = 7
    log.append([{"x": 3}])  # served now; the write tidies
    assert sorted(pd.concat(map(pd.read_parquet, (tmp_path / "log").glob("date=*/*.parquet")))["x"]) == [2, 3]
    assert sorted(path.name for path in (tmp_path / "log").iterdir()) == ["date=2026-11-28", "date=2026-12-03", "kept-by-hand.parquet"]
    size = next((tmp_path / "log").glob("date=2026-12-03/*.parquet")).stat().st_size
    log.max_bytes = 2 * size  # room for two files: the oldest goes first, the one just written never
    log.append([{"x": 4}])
    log.append([{"x": 5}])
    log.close()
    assert sorted(pd.concat(map(pd.read_parquet, (tmp_path / "log").glob("date=*/*.parquet")))["x"]) == [4, 5] and other.exists()


def test_rows_being_written_count_against_the_bound(tmp_path):
    """What a kill -9 can lose is at most serve.log_max_buffered_rows, the rows of a write in
    progress included: a writer far behind the traffic drops (and counts) rather than grows."""

    def protect(table):  # a request arrives while the three rows are being written
        if log.dropped_rows == 0 and len(table) == 3:
            log.append([{"x": 9}])
        return table

    log = PredictionLog(tmp_path / "log", rows_per_file=3, flush_seconds=60, protect=protect, background=False, max_buffered_rows=3)
    log.append([{"x": 0}, {"x": 1}, {"x": 2}])  # full: written now, with the fourth arriving meanwhile
    assert log.dropped_rows == 1
    log.close()
    assert sorted(pd.read_parquet(next((tmp_path / "log").rglob("*.parquet")))["x"]) == [0, 1, 2]


_HUGE_NUMBERS = st.one_of(
    st.integers(min_value=18, max_value=4000).map(lambda digits: "9" * digits),  # past int64, past a float64's range
    st.integers(min_value=18, max_value=4000).map(lambda digits: "-" + "9" * digits),
    st.sampled_from(["1e400", "-1e400", "1e308", "9223372036854775808", "-9223372036854775809", "Infinity", "-Infinity", "NaN"]),
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(field=st.sampled_from(["DIS", "AGEP", "RELP", "MAR", "SEX", "id", "year", "employed"]), number=_HUGE_NUMBERS)
def test_a_huge_or_non_finite_number_in_any_field_is_scored_or_a_422_naming_it(files, field, number):
    """A 400-digit integer in an unbounded numeric field was a 500 (OverflowError in the encoder):
    every field, whether numeric, categorical, allowed-values, id or time, answers 200 or a 422 naming it."""
    served = shared_client(files)
    record = {key: value for key, value in files["rows"][0].items() if key != field}
    body = json.dumps(record)[:-1] + f', "{field}": {number}}}'
    answer = served.post("/predict", content=body.encode(), headers={"content-type": "application/json"})
    assert answer.status_code in (200, 422), (field, number[:30], answer.text[:300])
    if answer.status_code == 422:
        assert [problem["field"] for problem in answer.json()["detail"]] == [field], answer.json()
    else:
        assert 0 <= answer.json()["predictions"][0]["probability"] <= 1
    # Past 4,300 digits JSON's parser itself refuses the number: a 400 that says so.
    beyond = served.post("/predict", content=body.replace(number, "9" * 4400).encode(), headers={"content-type": "application/json"})
    assert beyond.status_code == 400 and "number out of range" in beyond.json()["detail"]


_CLIENTS: dict[int, TestClient] = {}


def shared_client(files) -> TestClient:
    """One app per module's files, for property tests that send many requests."""
    return _CLIENTS.setdefault(id(files), client(files))


def test_an_empty_or_unsendable_api_key_refuses_to_start_and_an_open_host_warns(built_repo_without_reports, tmp_path, monkeypatch, capsys):
    """MLPIPE_API_KEY="" (what "$(cat /run/secrets/key)" gives when the file is missing) turned
    authentication off; a non-ASCII key could never match; 0.0.0.0 without a key said nothing."""
    import uvicorn

    repo = built_repo_without_reports.copy(tmp_path / "repo")
    monkeypatch.chdir(repo.path)
    started = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **options: started.append(options["host"]))
    arguments = ["--evaluation", "metrics/evaluation.json", "--training-params", "metrics/train/params.yaml"]
    for key, says in [("", "is set but empty"), ("clé-secrète", "non-ASCII"), ("two words", "a space")]:
        monkeypatch.setenv("MLPIPE_API_KEY", key)
        assert serve_tool.main(arguments) == EXIT_USAGE
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: serve: MLPIPE_API_KEY (serve.api_key_env) ") and says in lines[0], lines
    assert started == []
    monkeypatch.setenv("MLPIPE_API_KEY", "a-good-key")  # the fix the message gives works
    assert serve_tool.main([*arguments, "--host", "0.0.0.0"]) == 0 and capsys.readouterr().err == ""
    monkeypatch.delenv("MLPIPE_API_KEY")
    assert serve_tool.main([*arguments, "--host", "0.0.0.0"]) == 0
    (warning,) = capsys.readouterr().err.strip().splitlines()
    assert warning.startswith("warning: serve: listening on 0.0.0.0 without an API key") and "set MLPIPE_API_KEY" in warning
    for host in ("127.0.0.1", "localhost", "::1"):
        assert serve_tool.main([*arguments, "--host", host]) == 0 and capsys.readouterr().err == ""
    assert started == ["0.0.0.0", "0.0.0.0", "127.0.0.1", "localhost", "::1"]


def test_with_an_api_key_the_open_routes_do_not_tell_the_model_version(files):
    """/ready and /metrics stay open for probes and scrapers, without the version; /metadata tells it."""
    params = files["params"]
    keyed = TestClient(create_app(lambda: load_served_model(files["model"], files["schema"]), params, api_key="k3y"))
    version = client(files).get("/ready").json()["model_version"]
    assert keyed.get("/ready").json() == {"ready": True}
    exposition = keyed.get("/metrics").text
    assert "mlpipe_model_info 1.0" in exposition and version not in exposition
    assert (
        keyed.get("/metadata").status_code == 401
        and keyed.get("/metadata", headers={"X-API-Key": "k3y"}).json()["model_version"] == version
    )
    # A header of latin-1 bytes is compared as bytes: refused, never a 500.
    assert keyed.post("/predict", json=files["rows"][0], headers={"X-API-Key": "k3\xe9".encode("latin-1")}).status_code == 401
    assert keyed.post("/predict", json=files["rows"][0], headers={"X-API-Key": "k3y"}).status_code == 200


def test_a_reload_describes_and_labels_with_the_new_model_and_threshold(built_repo_without_reports, tmp_path, monkeypatch):
    """/metadata kept the first model's training params and test metrics after a reload (read
    once at start), and a changed threshold was picked up by neither /reload nor the watch: now the
    calibration file (models/calibration.json) is read with the model, and swapped with it."""
    import dataclasses
    import time

    import lightgbm
    import yaml

    repo = built_repo_without_reports.copy(tmp_path / "repo")
    monkeypatch.chdir(repo.path)
    repo.set_params(serve={"watch_seconds": 0.05})
    args = serve_tool.parser().parse_args(["--evaluation", "metrics/evaluation.json", "--training-params", "metrics/train/params.yaml"])
    params = load_params(args.params)
    files = serve_tool.served_files(args, tmp_path / "unused")
    load, watch, model = *serve_tool.model_loader(files, params), files.model
    with TestClient(create_app(load, params, watch=watch)) as http:
        before = http.get("/metadata").json()
        model.write_text(lightgbm.Booster(model_file=str(model)).model_to_string(num_iteration=5))
        evaluation = json.loads(args.evaluation.read_text())
        evaluation["test"]["roc_auc"] = 0.625
        args.evaluation.write_text(json.dumps(evaluation))
        args.training_params.write_text(yaml.safe_dump({**yaml.safe_load(args.training_params.read_text()), "num_leaves": 7}))
        reloaded = http.post("/reload").json()
        after = http.get("/metadata").json()
        assert after["model_version"] == reloaded["model_version"] != before["model_version"]
        assert after["test_metrics"]["roc_auc"] == 0.625 != before["test_metrics"]["roc_auc"]
        assert after["training_params"]["num_leaves"] == 7 != before["training_params"]["num_leaves"]
        assert after["threshold"] == before["threshold"] and after["calibration"]["method"] == "sigmoid"
        rows = files_rows(repo)
        answers = http.post("/predict", json=rows).json()["predictions"]
        assert all(p["label"] == ("1" if p["probability"] >= after["threshold"] else "0") for p in answers)
        calibration = repo.path / "models" / "calibration.json"
        # A new calibration and no other edit: the watch sees the file change.
        calibration.write_text(dataclasses.replace(Calibration.read(calibration), threshold=1.0).to_json())
        deadline = time.monotonic() + 10
        while http.get("/metadata").json()["threshold"] != 1.0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert http.get("/metadata").json()["threshold"] == 1.0
        assert {p["label"] for p in http.post("/predict", json=rows).json()["predictions"]} == {"0"}
        calibration.write_text(calibration.read_text()[:50])  # a calibration that does not read: the last good one keeps serving
        assert http.post("/reload").status_code == 409 and http.get("/metadata").json()["threshold"] == 1.0


def files_rows(repo, rows: int = 40) -> list[dict]:
    return json.loads(pd.read_parquet(repo.path / repo.params()["monitor"]["current_source"]).head(rows).to_json(orient="records"))


@settings(max_examples=100, deadline=None, derandomize=True)
@given(cut=st.tuples(st.floats(0, 1), st.floats(0, 1)))
def test_a_model_text_cut_or_spliced_anywhere_is_refused_in_one_line_never_a_crash(files, cut):
    """LightGBM finds trees by the sizes its header lists and aborts the process when they are
    wrong: text[:i] + text[j:], cut in the trees, kept the start and end a model has and crashed every loader."""
    from mlpipe.model.booster import model_from_text

    text = files["model"].read_text()
    trees, end = text.index("\nTree=0\n"), text.index("\nend of trees\n")  # a cut in the trees: where LightGBM crashed
    i, j = sorted(trees + int(point * (end - trees)) for point in cut)
    if i == j:
        return
    with pytest.raises(ArtifactError, match="is corrupt or truncated"):
        model_from_text(text[:i] + text[j:], origin="models/model.txt")


_ALLOWED_VALUES = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),  # beyond int64 a JSON integer is read as a float (see above)
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-3, 3).map(str),
    st.floats(-3, 3, allow_nan=False).map(str),
    st.booleans(),
    st.text(max_size=5),
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    value=_ALLOWED_VALUES, allowed=st.lists(_ALLOWED_VALUES | st.sampled_from([0, 1, 1.0, "1", "1.0", True, False]), min_size=1, max_size=4)
)
def test_the_service_allows_exactly_the_values_batch_validation_allows(value, allowed):
    """The service's `allowed` was a `Literal` (true and 1.0 taken for 1, "1" refused) while batch
    validation compares category labels (1, 1.0 and "1" one label; "1.0" and true others)."""
    from pydantic import TypeAdapter, ValidationError

    from mlpipe.config import ColumnContract
    from mlpipe.data.schema import FeatureSchema, FeatureSpec
    from mlpipe.data.validation import validate_rows
    from mlpipe.serving.scorer import RecordError, record_model

    params = _project_params()
    validate = params.validate.model_copy(update={"columns": {"c": ColumnContract(allowed=allowed)}})
    batch = validate_rows(pd.DataFrame({"c": [value]}), params.data, validate)
    schema = FeatureSchema(
        target=params.data.target, positive_label=1, negative_label=0, features=(FeatureSpec("c", "numeric", "float64"),)
    )
    record = TypeAdapter(record_model(schema, params.model_copy(update={"validate": validate})))
    try:
        record.validate_json(json.dumps({"c": value}))
        served = True
    except ValidationError as exc:
        (cause,) = [error["ctx"]["error"] for error in exc.errors() if isinstance((error.get("ctx") or {}).get("error"), RecordError)]
        shown = [repr(value) for value in allowed]
        assert cause.reason == "not_allowed" and str(cause).startswith(f"must be one of {', '.join(shown[:-1])}")
        assert str(cause).endswith(f"{shown[-1]} (the data contract)")
        served = False
    assert served == (len(batch.clean) == 1), (value, allowed, batch.report)


@functools.cache
def _project_params():
    """The project's params, read once: the data and serve sections the request model reads."""
    return load_params(ROOT / "params.yaml")
