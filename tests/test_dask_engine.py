"""The dask engine (compute.engine: dask) on a real LocalCluster of worker processes: training on
the cluster gives a model as good as the local engine's, with LightGBM's own early-stopping rule;
an unreachable scheduler or an address with a password is one line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import unused_port
from mlpipe import dask_training
from mlpipe.compute import dask_client
from mlpipe.config import ComputeParams, TrainParams, load_params, parse_params
from mlpipe.errors import ConfigError, DataError
from mlpipe.metrics import log_loss, roc_auc
from mlpipe.model import lgb, train_model


@pytest.fixture(scope="module")
def features(built_repo_without_reports):
    repo = built_repo_without_reports
    schema = json.loads((repo.path / "data" / "features" / "schema.json").read_text())
    names, target = [feature["name"] for feature in schema["features"]], schema["target"]
    train, test = (pd.read_parquet(repo.path / "data" / "features" / f"{part}.parquet") for part in ("train", "test"))
    return {"train": (train[names], train[target]), "test": (test[names], test[target]), "params": load_params(repo.path / "params.yaml")}


def test_the_cluster_trains_a_model_as_good_as_the_local_engine_and_the_same_one_every_run(features):
    (inputs, target), (test_inputs, test_target) = features["train"], features["test"]
    params = features["params"].train.model_copy(update={"n_estimators": 300})  # the cluster fits them all before choosing
    local = train_model(inputs, target, params)
    runs = []
    for _ in range(2):  # a fresh cluster each time: new worker addresses and ports
        with dask_client(ComputeParams(engine="dask", workers=2, memory_limit="1GiB")) as client:
            runs.append(dask_training.train_model_on_cluster(inputs, target, params, client))
    clustered = runs[0]
    assert clustered.summary["workers"] == 2 and clustered.summary["validation_rows"] == local.summary["validation_rows"]
    auc = {
        name: roc_auc(test_target.to_numpy(), model.booster.predict(test_inputs)) for name, model in (("local", local), ("dask", clustered))
    }
    assert abs(auc["dask"] - auc["local"]) <= 0.005, (auc, clustered.summary, local.summary)
    assert runs[0].booster.model_to_string() == runs[1].booster.model_to_string()  # to the byte: the same DVC hash
    assert "[machines: ]" in runs[0].booster.model_to_string()  # no run's ports in the saved model
    # The saved model is the ordinary text model: it reads back and scores the same.
    reread = lgb.Booster(model_str=clustered.booster.model_to_string())
    assert np.array_equal(reread.predict(test_inputs), clustered.booster.predict(test_inputs))
    assert clustered.curve[0]["iteration"] == 1 and len(clustered.curve) >= clustered.summary["n_trees"]
    # The curves' log-loss by round equals LightGBM's raw scores asked for round by round.
    raw, expected = np.zeros(len(test_inputs)), []
    for round_index in range(local.booster.current_iteration()):
        raw += local.booster.predict(test_inputs, raw_score=True, start_iteration=round_index, num_iteration=1)
        expected.append(log_loss(test_target.to_numpy(), 1 / (1 + np.exp(-raw))))
    found = dask_training.logloss_by_round(local.booster, test_inputs, test_target, chunk_rows=1000)
    assert np.allclose(found, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("patience", [None, 3, 10])
def test_the_stopping_rule_is_lightgbms_early_stopping(patience):
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
    expected = booster.best_iteration if patience else int(np.argmin(full["valid_0"]["binary_logloss"])) + 1
    assert dask_training.stopping_round(full["valid_0"]["binary_logloss"], patience) == expected


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


@pytest.mark.integration
def test_switching_the_engine_reruns_train_on_a_cluster_under_dvc(repo):
    repo.set_params(compute={"engine": "dask", "workers": 2, "memory_limit": "1GiB"}, train={"n_estimators": 300})
    run = repo.dvc("repro", "train")
    assert run.stages_run == ["train"], run.stdout
    assert "local Dask cluster: 2 worker processes x 1 thread(s), 1GiB each" in run.stdout + run.stderr
    model = (repo.path / "models" / "model.txt").read_text()
    assert "[tree_learner: data]" in model and "[machines: ]" in model
    assert "up to date" in repo.dvc("status", "train").stdout
