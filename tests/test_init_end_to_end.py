"""`make init` then the whole pipeline on four tables the project has never seen, as a new user runs
them, in throw-away git+DVC copies of the project (the tables are built in tests/test_init.py)."""

import json
import re

import pandas as pd
import pytest
import yaml

import messy_table as messy
from conftest import make_repo
from test_init import breast_cancer, contacts, orders

pytestmark = pytest.mark.integration

STAGES = ["ingest", "validate", "split", "featurize", "train", "evaluate", "fairness", "predict", "drift", "card"]


def run_whole_pipeline(repo) -> dict:
    """`make repro` on the initialised copy: every stage runs; the test metrics come back."""
    run = repo.make("repro")
    assert run.stages_run == STAGES, run.stdout
    test = json.loads((repo.path / "metrics" / "evaluation.json").read_text())["test"]
    assert re.search(rf"^  test +{test['rows']:,} +{test['roc_auc']:.4f} ", run.stdout, re.M), "make repro ends with the headline metrics"
    return test


def run_every_stage(repo) -> dict:
    """Every stage on the initialised copy in the order `dvc repro` runs them, each with its
    `dvc.yaml` arguments (`Repo.stage`: in this process, drift as its own); the test metrics come
    back. What DVC and make add on a new table (its dependencies on the table `make init`
    versioned, the cache, the summary) is proven once, through `make repro`, on the contacts table."""
    for stage in STAGES:
        done = repo.stage(stage)
        assert done.returncode == 0, (stage, done.stdout, done.stderr)
    return json.loads((repo.path / "metrics" / "evaluation.json").read_text())["test"]


def test_breast_cancer_table_without_time_column_and_with_text_labels(tmp_path):
    repo = make_repo(tmp_path / "repo")
    breast_cancer().to_csv(tmp_path / "breast_cancer.csv", index=False)  # outside the repository, as a download would be
    done = repo.make("init", f"DATA={tmp_path / 'breast_cancer.csv'}", "TARGET=diagnosis", "POSITIVE=malignant")
    assert "time column: none (no date or year-like column)" in done.stdout
    assert "split: stratified random" in done.stdout
    params = repo.params()
    assert params["data"]["source"] == "data/breast_cancer.csv"
    assert params["data"]["positive_label"] == "malignant"
    assert params["drift"]["windows"] == {"all": {}}
    assert params["validate"]["columns"]["diagnosis"]["allowed"] == ["benign", "malignant"]
    assert (repo.path / "data" / "breast_cancer.csv.dvc").exists(), "a local source outside git is versioned by dvc add"
    repo.commit("my table")
    assert run_every_stage(repo)["roc_auc"] >= 0.97
    assert "by_period" not in json.loads((repo.path / "metrics" / "evaluation.json").read_text())
    schema = json.loads((repo.path / "models" / "schema.json").read_text())
    assert (schema["positive_label"], schema["negative_label"]) == ("malignant", "benign") and len(schema["features"]) == 30
    confusion = json.loads((repo.path / "metrics" / "plots" / "confusion.json").read_text())
    assert {row["actual"] for row in confusion} == {"malignant", "benign"}
    assert not (repo.path / "reports" / "figures" / "roc_auc_by_period.png").exists()


def test_table_with_a_date_column_and_a_text_id(tmp_path):
    repo = make_repo(tmp_path / "repo")
    orders().to_parquet(repo.path / "data" / "orders.parquet", index=False)
    done = repo.make("init", "DATA=data/orders.parquet", "TARGET=churned")
    assert "positive label: 'yes'" in done.stdout
    assert "time column: 'order_date' (the only date or year-like column)" in done.stdout
    params = repo.params()
    assert params["data"]["id_columns"] == ["customer_id"]
    assert params["data"]["categorical_columns"] == ["region"]
    assert params["split"] == {**params["split"], "strategy": "time", "train_until": "2023-06-30", "test_from": "2023-07-01"}
    assert params["evaluate"]["period"] == "Q"
    assert params["drift"]["windows"] == {
        "2023Q3": {"start": "2023-07-01", "end": "2023-09-30"},
        "2023Q4": {"start": "2023-10-01", "end": "2023-12-31"},
        "all": {},
    }
    repo.commit("my table")
    assert run_every_stage(repo)["roc_auc"] >= 0.85
    drift = json.loads((repo.path / "metrics" / "drift.json").read_text())
    assert list(drift["windows"]) == ["2023Q3", "2023Q4", "all"]


def test_csv_with_personal_looking_columns_and_batches_that_carry_them(tmp_path, monkeypatch):
    """init flags personal columns; whichever rule the user then keeps (drop, or hash to keep a
    key), no clear value reaches any output, cache object, metric or report, through ingest or
    through a new batch scored by predict."""
    repo = make_repo(tmp_path / "repo")
    table = contacts()
    table.to_csv(repo.path / "data" / "contacts.csv", index=False)
    done = repo.make("init", "DATA=data/contacts.csv", "TARGET=bought")
    assert "warning: column 'email' looks personal (named like an e-mail address)" in done.stdout
    assert "warning: column 'full_name' looks personal (named like a person's name)" in done.stdout
    assert repo.params()["data"]["personal_columns"] == {"email": "drop", "full_name": "drop"}

    # The user keeps the e-mail as a salted hash (a join key) and monitors a folder of new batches.
    monkeypatch.setenv("MLPIPE_PII_SALT", "a-test-salt-not-a-real-secret")
    (repo.path / "data" / "incoming").mkdir()
    batch = table.sample(100, random_state=0).assign(email=lambda t: "new." + t["email"], full_name=lambda t: "New " + t["full_name"])
    batch.to_csv(repo.path / "data" / "incoming" / "batch-001.csv", index=False)
    repo.set_params(
        data={"personal_columns": {"email": "hash", "full_name": "drop"}, "id_columns": ["email"]},
        monitor={"current_source": "data/incoming"},
    )
    repo.commit("my table")
    assert run_whole_pipeline(repo)["roc_auc"] >= 0.8

    raw = pd.read_parquet(repo.path / "data" / "raw" / "dataset.parquet")
    assert "full_name" not in raw.columns and raw["email"].str.fullmatch(r"[0-9a-f]{64}").all()
    scored = pd.read_parquet(repo.path / "data" / "predictions" / "current.parquet")
    assert len(scored) == 100 and scored["email"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert "warning: data/contacts.csv itself holds the personal-looking columns in clear" in done.stdout
    # The sources themselves (and the cache object `dvc add` made of the table) are the user's data as given.
    md5 = yaml.safe_load((repo.path / "data" / "contacts.csv.dvc").read_text())["outs"][0]["md5"]
    sources = {
        repo.path / "data" / "contacts.csv",
        repo.path / "data" / "incoming" / "batch-001.csv",
        repo.path / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:],
    }
    checked = [
        path
        for folder in (".dvc/cache", "data", "models", "metrics", "reports")
        for path in (repo.path / folder).rglob("*")
        if path.is_file() and path not in sources
    ]
    leaked = [path for path in checked if b"@example.com" in path.read_bytes() or b"Person Number" in path.read_bytes()]
    assert leaked == [] and len(checked) > 40


def test_messy_table_of_people_with_a_later_outcome_needs_no_hand_edits(tmp_path):
    """The kind of public table a new user brings (tests/messy_table.py): columns recorded after
    the outcome, names and a birth date, dates stored as text, case numbers, null and constant
    columns, a header that repeats two names. `make init` then `make repro`, with no hand edit in between: the leaks are dropped
    and named, no personal or date-as-text column reaches the features, the ROC-AUC is honest,
    and a random split of this static table shows no drift."""
    repo = make_repo(tmp_path / "repo")
    messy.write_messy_people_csv(tmp_path / "people.csv")
    done = repo.make("init", f"DATA={tmp_path / 'people.csv'}", f"TARGET={messy.TARGET}")
    assert (
        "the header repeats 'decile_score', 'priors_count' with the same values: kept the first column of each" in done.stdout + done.stderr
    )
    data = repo.params()["data"]
    not_features = {*data["drop_columns"], *data["id_columns"], *data["personal_columns"], data["time_column"], messy.TARGET}
    assert not_features >= {*messy.LEAKS, *messy.PERSONAL, *messy.TEXT_DATES, *messy.CASE_NUMBERS, *messy.ALL_NULL, *messy.CONSTANT}
    assert not not_features & set(messy.HONEST), "an honest column was dropped"
    assert "is_recid" in data["drop_columns"] and "warning: drop 'is_recid'" in done.stdout, "the leak is named"
    assert set(data["personal_columns"]) == set(messy.PERSONAL)
    proposed = {"sex", "age", "age_cat", "race"}  # the protected attributes init recognised, the age in bands
    assert set(repo.params()["fairness"]["groups"]) == proposed and "fairness.groups: proposed sex (sex)" in done.stdout
    repo.commit("my table")

    test = run_every_stage(repo)
    assert 0.68 <= test["roc_auc"] <= 0.82, f"ROC-AUC {test['roc_auc']}: a leak got through, or honest columns were lost"
    features = json.loads((repo.path / "models" / "schema.json").read_text())["features"]
    assert {feature["name"] for feature in features} <= set(messy.HONEST)
    drift = json.loads((repo.path / "metrics" / "drift.json").read_text())
    assert drift["retrain_recommended"] is False, drift["reasons"]
    assert all(not window["drifted_columns"] for window in drift["windows"].values())
    # The card of this model: the groups reported, and none of the default data's statements.
    card = json.loads((repo.path / "models" / "card.json").read_text())
    assert set(card["evaluation"]["by_group"]["attributes"]) == proposed
    assert card["uses"] == {"intended_use": None, "out_of_scope": []} and card["model_details"]["name"] == "two_year_recid classifier"
    assert "Not stated: describe it in card.intended_use (params.yaml)." in (repo.path / "models" / "card.md").read_text()
