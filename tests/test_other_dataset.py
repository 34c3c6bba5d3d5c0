"""Bring your own data: a different real table, no time column, string labels, CSV — params only."""

import json

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from conftest import make_repo

pytestmark = pytest.mark.integration


def test_breast_cancer_csv_without_time_column_runs_end_to_end(tmp_path, monkeypatch):
    bunch = load_breast_cancer(as_frame=True)
    table = bunch.frame.rename(columns=lambda name: name.replace(" ", "_"))
    table["diagnosis"] = table.pop("target").map({0: "malignant", 1: "benign"})
    table.insert(0, "patient_id", range(1, len(table) + 1))
    # Personal data that must never reach the cache in clear: hashed (kept as an identifier) or dropped.
    table["email"] = [f"patient{i}@clinic.example" for i in table["patient_id"]]
    table["full_name"] = [f"Ada Quxley {i}" for i in table["patient_id"]]
    monkeypatch.setenv("MLPIPE_PII_SALT", "a-test-salt-not-a-real-secret")

    repo = make_repo(tmp_path / "repo")
    table.to_csv(repo.path / "data" / "breast_cancer.csv", index=False)
    # A new batch, with the same personal columns, enters through the incoming folder (scored by predict).
    (repo.path / "data" / "incoming").mkdir()
    batch = table.sample(100, random_state=0).assign(email=lambda t: "new." + t["email"], full_name=lambda t: "John " + t["full_name"])
    batch.to_csv(repo.path / "data" / "incoming" / "batch-001.csv", index=False)
    params = repo.params()
    params["data"] = {
        "source": "data/breast_cancer.csv",
        "format": None,
        "target": "diagnosis",
        "positive_label": "malignant",
        "time_column": None,
        "id_columns": ["patient_id", "email"],
        "drop_columns": [],
        "categorical_columns": None,
        "personal_columns": {"email": "hash", "full_name": "drop"},
    }
    params["validate"] = {
        "max_bad_row_share": 0.01,
        "rows": {"min": 500, "max": 1000},
        "columns": {"mean_radius": {"min": 0}, "diagnosis": {"allowed": ["benign", "malignant"]}},
    }
    params["split"] = {"strategy": "random", "test_size": 0.3, "stratify": True, "seed": 1}
    params["train"].update(min_child_samples=10, num_leaves=15)
    params["drift"]["windows"] = {"all": {}}  # no time column: one window of every scored row
    params["monitor"] = {"current_source": "data/incoming"}
    repo.set_params(**params)
    repo.commit("point the pipeline at breast cancer data")

    run = repo.dvc("repro")
    assert run.stages_run == ["ingest", "validate", "split", "featurize", "train", "evaluate", "predict", "drift"]
    metrics = json.loads((repo.path / "metrics" / "evaluation.json").read_text())
    assert "by_period" not in metrics
    assert metrics["test"]["rows"] == round(0.3 * 212) + round(0.3 * 357)
    assert metrics["test"]["roc_auc"] > 0.97
    schema = json.loads((repo.path / "models" / "schema.json").read_text())
    assert (schema["positive_label"], schema["negative_label"]) == ("malignant", "benign")
    assert len(schema["features"]) == 30 and "patient_id" not in [f["name"] for f in schema["features"]]
    confusion = json.loads((repo.path / "metrics" / "plots" / "confusion.json").read_text())
    assert {row["actual"] for row in confusion} == {"malignant", "benign"}
    assert not (repo.path / "reports" / "figures" / "roc_auc_by_period.png").exists()

    raw = pd.read_parquet(repo.path / "data" / "raw" / "dataset.parquet")
    assert "full_name" not in raw.columns
    assert raw["email"].str.fullmatch(r"[0-9a-f]{64}").all() and raw["email"].is_unique
    scored = pd.read_parquet(repo.path / "data" / "predictions" / "current.parquet")
    assert len(scored) == 100 and scored["email"].str.fullmatch(r"[0-9a-f]{64}").all()
    # Nothing but the sources themselves holds a clear value: no output, no cache object, no metric or report.
    sources = {repo.path / "data" / "breast_cancer.csv", repo.path / "data" / "incoming" / "batch-001.csv"}
    checked = 0
    for folder in (".dvc/cache", "data", "models", "metrics", "reports"):
        for path in (repo.path / folder).rglob("*"):
            if path.is_file() and path not in sources:
                content = path.read_bytes()
                assert b"clinic.example" not in content and b"Quxley" not in content, path
                checked += 1
    assert checked > 30
