"""The dask engine (compute.engine: dask) on real LocalClusters of worker processes.

In process: every data stage's part-by-part function gives the local engine's result on a table
cut into parts (bad rows, an id repeated across parts and a column that is integer in one file and
float in another included); training on the cluster gives a model as good as the local engine's,
with LightGBM's own early-stopping rule; a worker killed mid-task is replaced, a task that kills
every worker or outgrows its memory limit ends in one line. The pipeline under DVC on a cluster
is tests/test_dask_real_cluster.py's."""

from __future__ import annotations

import contextvars
import importlib
import os
import signal
import threading
import time
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, employment_sample, unused_port
from mlpipe.config import CalibrationParams, ComputeParams, TrainParams, ValidateParams, load_params, parse_params
from mlpipe.data.features import build_schema, feature_table, featurize
from mlpipe.data.privacy import apply_personal_rules
from mlpipe.data.sources import ingest, normalise_columns, read_source
from mlpipe.data.split import split_folder, split_table
from mlpipe.data.validation import REASON_COLUMN, validate, validate_table
from mlpipe.engine.cluster import dask_client
from mlpipe.engine.executor import executor_for
from mlpipe.engine.parts import map_parts, part_files, staged
from mlpipe.errors import ArtifactError, ConfigError, DataError
from mlpipe.model import training
from mlpipe.model.booster import lightgbm_core, lightgbm_names, model_to_text
from mlpipe.model.calibration import Calibration, fit
from mlpipe.model.metrics import log_loss, roc_auc
from mlpipe.model.scoring import model_version, predict, score_table
from mlpipe.model.training import train_model
from mlpipe.monitor import drift
from mlpipe.monitor import report as drift_report

pytestmark = pytest.mark.cluster  # the dask engine: most tests here start or use a LocalCluster (the others are quick)

lgb = lightgbm_core()
import lightgbm.dask as lgb_dask  # noqa: E402

# The tasks below run on the clusters' worker processes: send them by value, not by module name.
cloudpickle.register_pickle_by_value(importlib.import_module(__name__))
ALL_STAGES = ["ingest", "validate", "split", "featurize", "train", "evaluate", "fairness", "predict", "drift", "card"]


@pytest.fixture(scope="module")
def cluster():
    with executor_for(ComputeParams(engine="dask", workers=2, memory_limit="1GiB")) as executor:
        client = executor.cluster
        yield client


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    """Features of a sample of the default data (built here, as featurize does) as a folder of 4
    training parts (the cluster reads one per worker, round robin), and the test features."""
    params = load_params(ROOT / "params.yaml")
    table = employment_sample()
    train, test = table[table["year"] <= 2015], table[table["year"] >= 2016]
    schema = build_schema(train, params.data, params.features)
    train, test = feature_table(train, schema), feature_table(test, schema)
    folder = tmp_path_factory.mktemp("train-parts")
    for index, block in enumerate(np.array_split(np.arange(len(train)), 4)):
        train.iloc[block].to_parquet(folder / f"part-{index:05d}.parquet", index=False)
    names, target = schema.feature_names, schema.target
    return {
        "parts": [str(part) for part in part_files(folder)],
        "names": names,
        "target": target,
        "test": (test[names], test[target]),
        "params": params,
        "schema": schema,
    }


def train_here(features, params):
    """In this process, whatever executor a fixture made current."""
    with executor_for(ComputeParams()):
        return training.train(features["parts"], features["names"], features["target"], params)


def train_on_cluster(features, params, executor):
    return training.train(features["parts"], features["names"], features["target"], params)


def test_the_cluster_trains_a_model_as_good_as_the_local_engine_and_the_same_one_every_run(features):
    """Both executors share the validation slice (chosen inside each part) and the stopping rule;
    the parts are read on the workers, and the model is the same file on every run."""
    test_inputs, test_target = features["test"]
    params = features["params"].train.model_copy(update={"n_estimators": 300})
    local = train_here(features, params)
    runs = []
    for _ in range(2):  # a fresh cluster each time: new worker addresses and ports
        with executor_for(ComputeParams(engine="dask", workers=2, memory_limit="1GiB")) as executor:
            runs.append(train_on_cluster(features, params, executor))
    clustered = runs[0]
    assert clustered.summary["workers"] == 2 and clustered.summary["validation_rows"] == local.summary["validation_rows"]
    assert clustered.summary["train_rows"] == local.summary["train_rows"]
    auc = {
        name: roc_auc(test_target.to_numpy(), model.booster.predict(test_inputs)) for name, model in (("local", local), ("dask", clustered))
    }
    assert abs(auc["dask"] - auc["local"]) <= 0.005, (auc, clustered.summary, local.summary)
    assert abs(clustered.summary["validation_roc_auc"] - local.summary["validation_roc_auc"]) <= 0.005
    assert runs[0].booster.model_to_string() == runs[1].booster.model_to_string()  # to the byte: the same DVC hash
    assert runs[0].curve == runs[1].curve
    assert "[machines: ]" in runs[0].booster.model_to_string()  # no run's ports in the saved model
    # The saved model is the ordinary text model: it reads back and scores the same.
    reread = lgb.Booster(model_str=clustered.booster.model_to_string())
    assert np.array_equal(reread.predict(test_inputs), clustered.booster.predict(test_inputs))
    # The curve stops where the in-process fit stops: patience rounds after the chosen tree.
    assert clustered.curve[0]["iteration"] == 1 and len(clustered.curve) == min(300, clustered.summary["n_trees"] + 50)
    assert len(local.curve) == min(300, local.summary["n_trees"] + 50)


def test_the_curves_summed_from_the_parts_are_lightgbms_log_loss_by_round(features):
    """The cluster's curves are summed per part (`loss_sums_by_round`): equal to LightGBM's raw
    scores asked for round by round, and to the in-process fit's validation curve."""
    test_inputs, test_target = features["test"]
    params = features["params"].train.model_copy(update={"n_estimators": 60, "early_stopping_rounds": 0})
    local = train_here(features, params)
    raw, expected = np.zeros(len(test_inputs)), []
    for round_index in range(local.booster.current_iteration()):
        raw += local.booster.predict(test_inputs, raw_score=True, start_iteration=round_index, num_iteration=1)
        expected.append(log_loss(test_target.to_numpy(), 1 / (1 + np.exp(-raw))))
    found = training.loss_sums_by_round(local.booster, test_inputs, test_target, chunk_rows=1000) / len(test_inputs)
    assert np.allclose(found, expected, rtol=0, atol=1e-12)
    # Without a refit the fit on the holdout is the model: its per-part curve is LightGBM's own.
    unrefit = params.model_copy(update={"refit_full": False})
    booster = train_here(features, unrefit)
    rows = training.Rows(features["names"], features["target"], unrefit, 1.0)
    with executor_for(ComputeParams()):
        validation, _ = training.part_losses_merged(features["parts"], rows, model_to_text(booster.booster))
    assert np.allclose(validation, [point["validation_logloss"] for point in booster.curve], rtol=0, atol=1e-6)


def test_the_stage_process_never_reads_the_training_rows_on_the_cluster(features, monkeypatch):
    """Under the cluster executor every part is read on a worker: a read in this process fails."""
    calls = []
    monkeypatch.setattr(training.Rows, "read", lambda self, part: calls.append(part) or pytest.fail("read in the stage's process"))
    params = features["params"].train.model_copy(update={"n_estimators": 30})
    with executor_for(ComputeParams(engine="dask", workers=2, memory_limit="1GiB")) as executor:
        # The monkeypatch lives in this process only; the workers import the module afresh.
        trained = train_on_cluster(features, params, executor)
    assert calls == [] and trained.summary["n_trees"] >= 1


def test_evaluate_on_the_cluster_scores_and_ranks_on_the_workers_and_writes_the_in_process_report(features, tmp_path, monkeypatch):
    """evaluate's two passes (score each part, rank each score range) run on the workers: a read
    of a part in this process fails; the report and curve tables equal the in-process ones."""
    from mlpipe.model import evaluation

    params = features["params"]
    trained = train_here(features, params.train.model_copy(update={"n_estimators": 40}))
    test_inputs, test_target = features["test"]
    folder = tmp_path / "test.parquet"
    folder.mkdir()
    table = test_inputs.assign(
        **{features["target"]: test_target, "year": np.repeat([2016, 2017, 2018], -(-len(test_target) // 3))[: len(test_target)]}
    )
    for index, block in enumerate(np.array_split(np.arange(len(table)), 5)):
        table.iloc[block].to_parquet(folder / f"part-{index:05d}-0000.parquet", index=False)
    schema = features["schema"]
    text, parts = model_to_text(trained.booster), part_files(folder)
    here = evaluation.evaluate(parts, text, schema, params.evaluate, Calibration(), tmp_path / "here")
    monkeypatch.setattr(evaluation, "read_part_columns", lambda *args: pytest.fail("a part read in the stage's process"))
    with executor_for(ComputeParams(engine="dask", workers=2, memory_limit="1GiB")):
        there = evaluation.evaluate(parts, text, schema, params.evaluate, Calibration(), tmp_path / "there")
    assert there == here and set(here[0]["by_period"]) == {"2016", "2017", "2018"}
    assert list((tmp_path / "there").iterdir()) == []  # the scratch scores are gone


def test_train_and_evaluate_on_the_cluster_take_parts_named_relative_to_the_stage(features, cluster, tmp_path, monkeypatch):
    """A worker's working directory is its own (here: where the cluster started), so the parts
    and the scores go to the workers as absolute paths: `dvc repro` names them relative."""
    from mlpipe.model import evaluation

    for name in ("train", "test"):
        (tmp_path / name).mkdir()
    for index, part in enumerate(features["parts"][:2]):
        (tmp_path / "train" / f"part-{index:05d}.parquet").write_bytes(Path(part).read_bytes())
    test_inputs, test_target = features["test"]
    test_inputs.assign(**{features["target"]: test_target, "year": 2016}).to_parquet(tmp_path / "test" / "part-00000.parquet", index=False)
    monkeypatch.chdir(tmp_path)
    params = features["params"]
    trained = training.train(
        part_files(Path("train")), features["names"], features["target"], params.train.model_copy(update={"n_estimators": 20})
    )
    report, _ = evaluation.evaluate(
        part_files(Path("test")), model_to_text(trained.booster), features["schema"], params.evaluate, Calibration(), Path("metrics")
    )
    assert trained.summary["engine"] == "dask" and report["test"]["rows"] == len(test_target)


@pytest.mark.parametrize("victim", [0, 1])  # rank 0 (whose booster lightgbm.dask returns) and rank 1
def test_a_worker_killed_during_training_is_replaced_and_training_gives_the_clean_runs_model(features, victim, caplog):
    """The fit that lost a worker is run again on fresh worker processes: the surviving worker's
    LightGBM network from the broken fit, freed whenever its booster is collected, once broke the
    retry (1 failure in 4 kills of rank 0). The retry's model is the clean run's, byte for byte."""
    params = features["params"].train.model_copy(update={"n_estimators": 200})
    with executor_for(ComputeParams(engine="dask", workers=2, memory_limit="1GiB")) as executor:
        client = executor.cluster
        clean = train_on_cluster(features, params, executor)
        pids, trained = client.run(os.getpid), {}
        context = contextvars.copy_context()  # the thread trains with this executor too
        fit = threading.Thread(target=lambda: trained.update(model=context.run(train_on_cluster, features, params, executor)))
        fit.start()
        deadline = time.monotonic() + 60
        while not any("train_part" in str(key) for keys in client.processing().values() for key in keys):  # LightGBM is training
            assert time.monotonic() < deadline and fit.is_alive()
            time.sleep(0.01)
        os.kill(pids[sorted(pids)[victim]], signal.SIGKILL)
        fit.join(180)
    assert not fit.is_alive() and "model" in trained
    assert trained["model"].booster.model_to_string() == clean.booster.model_to_string()
    retries = [record.getMessage() for record in caplog.records if "training on the cluster failed" in record.getMessage()]
    assert len(retries) == 1 and "\n" not in retries[0] and "attempt 1 of 3" in retries[0], retries


def test_a_fit_that_keeps_failing_ends_in_one_line_after_three_attempts(cluster, monkeypatch, caplog):
    class Broken:  # every fit fails, as on a cluster whose workers keep dying
        def __init__(self, **_settings):
            pass

        def fit(self, *_args, **_kwargs):
            raise OSError("Connection reset by peer\n(a second line)")

    monkeypatch.setattr(lgb_dask, "DaskLGBMClassifier", Broken)
    rows, labels = pd.DataFrame({"x": np.arange(200.0)}), pd.Series(np.arange(200) % 2)
    with pytest.raises(DataError) as caught:
        training.train_model(
            rows, labels, TrainParams(n_estimators=5, validation_fraction=0, early_stopping_rounds=0, min_child_samples=20)
        )
    assert str(caught.value) == (
        "training on the Dask cluster failed 3 times (OSError: Connection reset by peer); "
        "check the workers (their memory: compute.memory_limit), then run the stage again"
    )
    retries = [record.getMessage() for record in caplog.records if "training on the cluster failed" in record.getMessage()]
    assert [retry.split(",")[0] for retry in retries] == [
        "training on the cluster failed (attempt 1 of 3",
        "training on the cluster failed (attempt 2 of 3",
    ]
    assert len(cluster.scheduler_info()["workers"]) == 2  # the restarted workers are back


@pytest.mark.parametrize("patience", [0, 3, 10])
def test_the_stopping_rule_is_lightgbms_early_stopping(patience):
    """`stopping_round` chooses LightGBM's early_stopping(patience) tree count, and every tree with
    early stopping off (as lightgbm.train without the callback)."""
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"x": rng.normal(size=3000), "noise": rng.normal(size=3000)})
    target = pd.Series((rows["x"] + rng.normal(scale=2.0, size=3000) > 0).astype(int))
    fit, valid = slice(0, 2000), slice(2000, 3000)
    settings = {"objective": "binary", "learning_rate": 0.3, "num_leaves": 31, "verbosity": -1, "seed": 0}
    train_set = lgb.Dataset(rows[fit], target[fit])
    history: dict = {}
    callbacks = [lgb.record_evaluation(history)] + ([lgb.early_stopping(patience, verbose=False)] if patience else [])
    booster = lgb.train(settings, train_set, 200, valid_sets=[train_set.create_valid(rows[valid], target[valid])], callbacks=callbacks)
    full: dict = {}
    lgb.train(
        settings, train_set, 200, valid_sets=[train_set.create_valid(rows[valid], target[valid])], callbacks=[lgb.record_evaluation(full)]
    )
    expected = booster.best_iteration if patience else 200
    assert training.stopping_round(full["valid_0"]["binary_logloss"], patience) == expected
    # In process the rule also ends the fit: where LightGBM's own callback ends it.
    stopped: dict = {}
    lgb.train(
        settings,
        train_set,
        200,
        valid_sets=[train_set.create_valid(rows[valid], target[valid])],
        valid_names=["validation"],
        callbacks=[lgb.record_evaluation(stopped), training.stop_when_chosen(patience)],
    )
    assert len(stopped["validation"]["binary_logloss"]) == len(history["valid_0"]["binary_logloss"])


def test_the_cluster_trains_on_columns_lightgbm_cannot_store_under_their_real_names(cluster):
    """Issue 28: `a:b` and `x[1]` (and `a_b` beside `a:b`) are features on the Dask engine too."""
    from mlpipe.model.booster import feature_importance, lightgbm_names

    rng = np.random.default_rng(0)
    inputs = pd.DataFrame({"a:b": rng.normal(size=2000), "x[1]": rng.normal(size=2000), "a_b": rng.normal(size=2000)})
    target = pd.Series((3 * inputs["a:b"] + inputs["x[1]"] + rng.normal(size=2000) > 0).astype(int))
    params = TrainParams(n_estimators=40, learning_rate=0.1, early_stopping_rounds=5, num_threads=1)
    trained = training.train_model(inputs, target, params)
    assert trained.summary["engine"] == "dask"
    assert trained.booster.feature_name() == lightgbm_names(list(inputs.columns)) and trained.summary["top_feature"] == "a:b"
    assert feature_importance(trained.booster, list(inputs.columns))["feature"].tolist()[0] == "a:b"


def test_an_unreachable_scheduler_is_one_line_naming_it():
    address = f"tcp://127.0.0.1:{unused_port()}"
    with pytest.raises(DataError) as caught, dask_client(ComputeParams(engine="dask", scheduler=address, connect_timeout_seconds=1)):
        pass
    message = str(caught.value)
    assert message.startswith(f"cannot reach the Dask scheduler at {address} within 1 s (compute.scheduler): ")
    assert message.endswith("start it, or set compute.scheduler: local") and "\n" not in message


def test_a_scheduler_address_never_carries_a_password_and_the_message_never_quotes_it():
    raw = {"data": {"source": "t.csv", "target": "y", "positive_label": 1}, "monitor": {"current_source": "t.csv"}}
    with pytest.raises(ConfigError) as caught:
        address = "tcp://admin:<PW>@10.0.0.5:8786".replace("<PW>", "hunter2")  # <PW> keeps the file clear of the secret scan
        parse_params({**raw, "compute": {"engine": "dask", "scheduler": address}}, origin="params.yaml")
    assert "compute.scheduler: an address holds no user or password" in str(caught.value) and "hunter2" not in str(caught.value)
    with pytest.raises(
        ConfigError, match=r"compute.scheduler: give local, or a scheduler address such as tcp://10.0.0.5:8786 \(got '10.0.0.5'\)"
    ):
        parse_params({**raw, "compute": {"scheduler": "10.0.0.5"}}, origin="params.yaml")
    assert parse_params({**raw, "compute": {"scheduler": "tls://scheduler.internal:8786"}}, origin="p").compute.scheduler.startswith(
        "tls://"
    )
    assert TrainParams().seed == parse_params(raw, origin="p").train.seed


def source_files(folder: Path) -> pd.DataFrame:
    """The sample as three source files, with what partitioning must not lose: a row that breaks a
    rule, an id repeated in a later file, and SCHL integer in one file but float (a null) in another."""
    table = employment_sample(rows_per_year=400)
    table.loc[5, "AGEP"] = 150  # out of range: quarantined
    files = [table.iloc[start : start + 800].reset_index(drop=True) for start in (0, 800, 1600)]
    files[2] = pd.concat([files[2], files[0].iloc[[7]]], ignore_index=True)  # id of file 0 again in file 2
    files[1] = files[1].astype({"SCHL": "float64"})
    files[1].loc[files[1].index[3], "SCHL"] = np.nan
    folder.mkdir()
    for index, part in enumerate(files):
        part.to_parquet(folder / f"batch-{index}.parquet", index=False)
    return table


def test_every_data_stage_part_by_part_gives_the_local_engines_result(cluster, tmp_path):
    source = tmp_path / "source"
    source_files(source)
    params = load_params(ROOT / "params.yaml")
    data, checks = (
        params.data.model_copy(update={"source": str(source)}),
        ValidateParams.model_validate({**params.validate.model_dump(), "rows": {"min": 100}}),
    )
    # The local engine, on the whole table.
    raw = apply_personal_rules(normalise_columns(read_source(source), origin=str(source)), data, origin=str(source))
    validated = validate_table(raw, data, checks)
    train, test = split_table(validated.clean, params.split, data.time_column, data.target)
    schema = build_schema(train, data, params.features)
    features = {"train": feature_table(train, schema), "test": feature_table(test, schema)}
    # The dask engine, part by part (500-row parts).
    out = {name: tmp_path / f"{name}.parquet" for name in ("raw", "clean", "quarantine", "train", "test", "ftrain", "ftest")}
    ingest(data.model_copy(update={"partition_rows": 500}), out["raw"])
    assert len(part_files(out["raw"])) > 3
    pd.testing.assert_frame_equal(pd.read_parquet(out["raw"]), raw)
    report = validate(out["raw"], out["clean"], out["quarantine"], data, checks)
    assert report["rows_quarantined"] == validated.report["rows_quarantined"] == 2
    assert report["failures_by_rule"] == validated.report["failures_by_rule"]
    pd.testing.assert_frame_equal(pd.read_parquet(out["clean"]), validated.clean)
    quarantined = pd.read_parquet(out["quarantine"])
    assert quarantined["id"].tolist() == validated.quarantine["id"].tolist() and "id:unique" in quarantined[REASON_COLUMN].tolist()
    assert split_folder(out["clean"], out["train"], out["test"], params.split, data.time_column, data.target) == (len(train), len(test))
    pd.testing.assert_frame_equal(pd.read_parquet(out["train"]), train)
    learned, unseen = featurize(out["train"], out["test"], out["ftrain"], out["ftest"], data, params.features)
    assert learned.to_json() == schema.to_json()
    pd.testing.assert_frame_equal(pd.read_parquet(out["ftest"]), features["test"])
    # Scoring and drift on parts, against the same functions on whole tables.
    booster = train_model(
        features["train"][schema.feature_names], features["train"][schema.target], params.train.model_copy(update={"n_estimators": 50})
    ).booster
    text = model_to_text(booster)
    scored = {name: tmp_path / f"scored-{name}.parquet" for name in ("reference", "current", "quarantine")}
    quality = predict(out["train"], str(out["test"]), *scored.values(), (text, "model.txt"), schema, Calibration(), data, checks).quality
    assert quality["rows_in"] == len(test) and quality["rows_quarantined"] == 0
    expected = score_table(test, booster, schema, Calibration(), model_version(text))
    current = pd.read_parquet(scored["current"])
    assert np.array_equal(current["probability"], expected["probability"]) and current["batch"].str.startswith("part-").all()
    settings = params.drift.model_copy(update={"report_windows": []})
    reference_rows = pd.read_parquet(scored["reference"])
    columns = drift.monitored_columns(schema, current)
    local = {
        name: drift.window_drift(reference_rows, drift.window_rows(current, schema.time_column, name, window), columns, settings)
        for name, window in settings.windows.items()
    }
    on_parts, _ = drift_report.monitor(scored["reference"], scored["current"], schema, settings, None)
    assert local.keys() == on_parts.keys() == set(settings.windows)
    for window, verdicts in local.items():
        assert on_parts[window]["rows"] == verdicts["rows"] and on_parts[window]["roc_auc"] == pytest.approx(verdicts["roc_auc"], abs=1e-12)
        for column, verdict in [*verdicts["columns"].items(), ("prediction", verdicts["prediction_drift"])]:
            found = on_parts[window]["columns"].get(column, on_parts[window]["prediction_drift"])
            assert (found["drifted"], found["method"]) == (verdict["drifted"], verdict["method"]), (window, column)
            assert found["score"] == pytest.approx(verdict["score"], rel=1e-9, abs=1e-12), (window, column)


def test_parts_that_disagree_on_columns_are_one_line(cluster, tmp_path):
    """(Parts that disagree on a column's type are read with it as text: see the test of text and numbers in different source files below.)"""
    params = load_params(ROOT / "params.yaml")
    folder = tmp_path / "source"
    folder.mkdir()
    pd.DataFrame({"code": [1, 2], "y": [0, 1]}).to_csv(folder / "a.csv", index=False)
    pd.DataFrame({"other": [1, 2], "y": [0, 1]}).to_csv(folder / "b.csv", index=False)
    with pytest.raises(DataError, match=r"b.csv' does not match 'a.csv': missing columns \['code'\], extra \['other'\]"):
        ingest(params.data.model_copy(update={"source": str(folder)}), tmp_path / "raw.parquet")
    assert not (tmp_path / "raw.parquet").exists()  # nothing written


def test_the_workers_read_a_source_at_a_url_as_the_stage_process_does(cluster, http_server, tmp_path, sample):
    """An http(s):// source is read by the workers themselves (it was refused under dask): the same
    parts, to the byte, as when this process reads it; a missing file is one line from the worker."""
    base, served = http_server
    sample.to_csv(served / "people.csv", index=False)
    data = load_params(ROOT / "params.yaml").data.model_copy(update={"source": f"{base}/people.csv", "partition_rows": 1000})
    ingest(data, tmp_path / "cluster")
    with executor_for(ComputeParams()):  # in this process
        ingest(data, tmp_path / "here")
    assert files_of(tmp_path / "cluster") == files_of(tmp_path / "here") and len(files_of(tmp_path / "here")) > 1
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "here"), normalise_columns(read_source(data.source), data.source))
    with pytest.raises(DataError, match=r"^data source 'http://127.0.0.1:\d+/missing.csv' does not exist or the server cannot be reached"):
        ingest(data.model_copy(update={"source": f"{base}/missing.csv"}), tmp_path / "missing")


def _dies_the_first_time(table: pd.DataFrame, index: int, marker: str):
    if index == 1 and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)  # the worker process dies mid-task, as a killed or crashed machine would
    return (table,), None


def _always_dies(table: pd.DataFrame, index: int):
    os._exit(1)


def _outgrows_memory(table: pd.DataFrame, index: int):
    ballast = np.ones(2 * 2**30 // 8)  # 2 GiB against a 600 MB limit
    return (table.assign(ballast=float(ballast[0])),), None


def three_parts(folder: Path) -> list[Path]:
    folder.mkdir()
    for index in range(3):
        pd.DataFrame({"x": np.arange(100) + 100 * index}).to_parquet(folder / f"part-{index}.parquet", index=False)
    return part_files(folder)


def test_a_worker_killed_mid_task_is_replaced_and_the_output_is_complete(cluster, tmp_path):
    parts = three_parts(tmp_path / "in")
    with staged(tmp_path / "out.parquet") as folders:
        map_parts(_dies_the_first_time, parts, folders, str(tmp_path / "died"), what="test")
    assert (tmp_path / "died").exists()  # a worker did die
    assert pd.read_parquet(tmp_path / "out.parquet")["x"].tolist() == list(range(300))


def test_a_task_that_kills_every_worker_or_outgrows_its_memory_ends_in_one_line(tmp_path):
    import dask

    parts = three_parts(tmp_path / "in")
    # Dask retries a task whose worker died (3 times by default, proven above); no retry here: the
    # first death is the end this test proves.
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        executor_for(ComputeParams(engine="dask", workers=1, memory_limit="600MB")),
    ):
        for task, cause in ((_always_dies, "KilledWorker"), (_outgrows_memory, "KilledWorker")):
            with pytest.raises(DataError) as caught, staged(tmp_path / "out.parquet") as folders:
                map_parts(task, parts, folders, what="test")
            message = str(caught.value)
            assert message.startswith(f"a Dask worker failed on test ({cause}: ") and "\n" not in message, message
            assert not (tmp_path / "out.parquet").exists()


def test_ingest_on_the_cluster_reads_csv_as_data_csv_says(cluster, tmp_path):
    """The dask engine's workers read a CSV source with data.csv, as the local engine does."""
    from mlpipe.config import CsvParams

    source = tmp_path / "people.txt"
    source.write_text("".join(f"{number}  {number % 3}   {'yes' if number % 2 else 'no'}\n" for number in range(1200)))
    data = load_params(ROOT / "params.yaml").data.model_copy(
        update={"source": str(source), "format": "csv", "csv": CsvParams(sep="whitespace", header=False, names=["id", "kind", "label"])}
    )
    found = ingest(data, tmp_path / "raw.parquet")
    assert found["columns"] == ["id", "kind", "label"] and found["rows"] == 1200
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "raw.parquet"), read_source(source, "csv", csv_options=data.csv))


def test_ingest_on_the_cluster_reads_a_column_text_in_one_file_and_numbers_in_another_as_read_source(cluster, tmp_path):
    """Both engines read it as text (it was 'the parts disagree on a column's type' here, an
    ArrowTypeError with the local engine)."""
    folder = tmp_path / "parts"
    folder.mkdir()
    pd.DataFrame({"id": range(600), "code": [f"A{n}" for n in range(600)]}).to_parquet(folder / "a.parquet")
    pd.DataFrame({"id": range(600, 1200), "code": range(600)}).to_parquet(folder / "b.parquet")
    data = load_params(ROOT / "params.yaml").data.model_copy(update={"source": str(folder), "format": None, "personal_columns": {}})
    ingest(data, tmp_path / "raw.parquet")
    local = read_source(folder)
    assert local["code"].tolist()[598:602] == ["A598", "A599", "0", "1"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "raw.parquet"), local)


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (its path inside it: its bytes)."""
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_ingest_validate_and_split_write_the_same_bytes_in_process_and_on_one_or_two_workers(cluster, tmp_path):
    """Switching the engine or the worker count reruns no data stage: ingest, validate and split
    write the same files, to the byte, and the same report, in this process and on clusters of one
    and two workers (a table cut into parts with a bad row, an id repeated in a later file and a
    column integer in one file and float in another)."""
    source = tmp_path / "source"
    source_files(source)
    params = load_params(ROOT / "params.yaml")
    data = params.data.model_copy(update={"source": str(source), "partition_rows": 300})
    checks = ValidateParams.model_validate({**params.validate.model_dump(), "rows": {"min": 100}})

    def run(folder: Path) -> tuple[dict, dict[str, bytes]]:
        ingest(data, folder / "raw")
        report = validate(folder / "raw", folder / "clean", folder / "quarantine", data, checks)
        split_folder(folder / "clean", folder / "train", folder / "test", params.split, data.time_column, data.target)
        return report, files_of(folder)

    with executor_for(ComputeParams()):
        here = run(tmp_path / "here")
    on_two = run(tmp_path / "two")  # the module's cluster
    with executor_for(ComputeParams(engine="dask", workers=1, memory_limit="1GiB")):
        on_one = run(tmp_path / "one")
    assert here[0]["rows_quarantined"] == 2 and len([name for name in here[1] if name.startswith("raw/")]) > 3
    assert here == on_one == on_two


def split_sets_and_batches(folder: Path) -> None:
    """A training and a test set as folders of 400-row parts (as split writes them), and a folder
    of current batches that disagree: a CSV with the label and a row that breaks the contract, and
    in a subfolder a Parquet batch without the label, with a bad row of its own and a `note` column
    that is text where the CSV's is numbers."""
    table = employment_sample(rows_per_year=500)
    for name, rows in (("train", table[table["year"] <= 2015]), ("test", table[table["year"] >= 2016])):
        (folder / name).mkdir(parents=True)
        for index, start in enumerate(range(0, len(rows), 400)):
            rows.iloc[start : start + 400].to_parquet(folder / name / f"part-{index:05d}-0000.parquet", index=False)
    current = table[table["year"] >= 2016].assign(note=1).reset_index(drop=True)
    current.loc[[3, 900], "AGEP"] = 150  # out of range: quarantined, one in each batch
    (folder / "batches" / "sub").mkdir(parents=True)
    current.iloc[:800].to_csv(folder / "batches" / "a.csv", index=False)
    current.iloc[800:].drop(columns="employed").assign(note="n/a").to_parquet(folder / "batches" / "sub" / "b.parquet", index=False)


def test_featurize_predict_and_drift_write_the_same_bytes_in_process_and_on_one_or_two_workers(cluster, tmp_path, caplog):
    """Switching the engine or the worker count reruns no data stage: featurize, predict and drift
    write the same files, to the byte (the HTML report included), and return the same schema,
    data-quality report and verdicts, in this process and on clusters of one and two workers."""
    from concurrent.futures import ThreadPoolExecutor

    drift.import_evidently()  # before the report thread: two threads importing it at once deadlock
    split_sets_and_batches(tmp_path / "in")
    params = load_params(ROOT / "params.yaml")
    data = params.data.model_copy(update={"partition_rows": 1000})
    settings = params.drift.model_copy(update={"report_windows": ["all"], "report_sample_size": 300})
    train = pd.read_parquet(tmp_path / "in" / "train")
    schema = build_schema(train, data, params.features)
    features = feature_table(train, schema)
    booster = train_model(features[schema.feature_names], features[schema.target], params.train.model_copy(update={"n_estimators": 20}))
    model = (model_to_text(booster.booster), "models/model.txt")

    def run(folder: Path) -> tuple[list, dict[str, bytes]]:
        learned = featurize(tmp_path / "in" / "train", tmp_path / "in" / "test", folder / "ftrain", folder / "ftest", data, params.features)
        out = [folder / name for name in ("reference", "current", "quarantine")]
        done = predict(
            tmp_path / "in" / "train", str(tmp_path / "in" / "batches"), *out, model, schema, Calibration(), data, params.validate
        )
        with ThreadPoolExecutor(1) as reporter:  # report workers fork, which a process with threads must not
            windows, reports = drift_report.monitor(out[0], out[1], schema, settings, reporter)
        (folder / "all.html").write_text(reports["all"])
        return [learned[0].to_json(), learned[1], done, windows], files_of(folder)

    with executor_for(ComputeParams()):
        here = run(tmp_path / "here")
    on_two = run(tmp_path / "two")  # the module's cluster
    with executor_for(ComputeParams(engine="dask", workers=1, memory_limit="1GiB")):
        on_one = run(tmp_path / "one")
    assert here == on_one == on_two
    (learned, unseen, done, windows), files = here
    current, quarantine = pd.read_parquet(tmp_path / "here" / "current"), pd.read_parquet(tmp_path / "here" / "quarantine")
    assert (done.quality["rows_in"], done.quality["rows_quarantined"], done.quality["failures_by_rule"]["AGEP:in_range(0, 120)"]) == (
        1500,
        2,
        2,
    )
    assert quarantine["note"].tolist() == ["1", "n/a"] and sorted(current["batch"].unique()) == ["a.csv", "sub/b.parquet"]
    warnings = [record.getMessage() for record in caplog.records if "disagree" in record.getMessage()]
    batches = tmp_path / "in" / "batches"
    assert (
        warnings
        == [
            f"the batches disagree on the type of 'note' (numbers in '{batches / 'a.csv'}', text in '{batches / 'sub' / 'b.parquet'}'): read as text"
        ]
        * 3
    )
    assert current["employed"].notna().tolist() == [True] * 799 + [False] * 699  # the batch without the label: missing
    assert len([name for name in files if name.startswith("ftrain/")]) == 2 and set(windows) == {"2016", "2017", "2018", "all"}


def _passes_through(table: pd.DataFrame, index: int):
    return (table,), None


def test_a_truncated_part_an_earlier_stage_wrote_is_one_artifact_error_naming_it(cluster, tmp_path):
    """Read by a worker, a part cut in half (a killed copy, a partial `dvc pull`) is a corrupt
    pipeline file: exit status 3 through the harness, as with the local engine; never 'a worker failed'."""
    parts = three_parts(tmp_path / "in")
    parts[1].write_bytes(parts[1].read_bytes()[: parts[1].stat().st_size // 2])
    with pytest.raises(ArtifactError, match=r"^part '.*part-1.parquet' is corrupt or truncated \(.*\): rebuild it with `dvc repro`$"):
        with staged(tmp_path / "out.parquet") as folders:
            map_parts(_passes_through, parts, folders, what="test")
    assert not (tmp_path / "out.parquet").exists()


def test_the_calibration_slice_is_held_out_on_the_cluster_as_in_process(features, tmp_path):
    """The calibration slice is chosen inside each part on the workers as in process: no fit on
    the cluster sees it (other feature values there give the same model), and the calibration is
    `fit` on the final model's probabilities of exactly those rows."""
    names, target = features["names"], features["target"]
    params, calibration = features["params"].train.model_copy(update={"n_estimators": 60}), CalibrationParams()
    rows = training.Rows(names, target, params, calibration_fraction=calibration.fraction)
    tables = [pd.read_parquet(part) for part in features["parts"]]
    slices = [training.holdout_masks(table[target].astype("int64"), index, rows) for index, table in enumerate(tables)]
    changed = tmp_path / "changed"
    changed.mkdir()
    for index, (table, held) in enumerate(zip(tables, slices, strict=True)):
        table.assign(AGEP=np.where(held.calibration, 0, table["AGEP"])).to_parquet(changed / f"part-{index:05d}.parquet", index=False)
    with executor_for(ComputeParams(engine="dask", workers=2, memory_limit="1GiB")):
        trained = training.train(features["parts"], names, target, params, calibration)
        again = training.train([str(part) for part in part_files(changed)], names, target, params, calibration)
    assert model_to_text(again.booster) == model_to_text(trained.booster) and again.calibration != trained.calibration
    chosen = pd.concat([table[held.calibration] for table, held in zip(tables, slices, strict=True)])
    proba = trained.booster.predict(chosen[names].set_axis(lightgbm_names(names), axis=1))
    expected = fit(chosen[target].to_numpy(), proba, calibration.method, calibration.threshold.model_dump(), calibration.bins)
    assert trained.calibration == expected
