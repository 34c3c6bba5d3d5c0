"""Explanations from LightGBM itself (issue 30, item 2): TreeSHAP contributions that add up to the
raw score, the top k per row, the global mean |contribution| over parts, and served explanations
equal to the batch stage's. Real LightGBM on a sample of the default data."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

with warnings.catch_warnings():
    # Starlette's test client announces a move from httpx to httpx2; it runs on the pinned httpx.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from conftest import ROOT, employment_sample
from mlpipe.config import EvaluateParams, TrainParams, load_params
from mlpipe.data.features import build_schema, feature_table, make_features
from mlpipe.model import evaluation, explain
from mlpipe.model.booster import model_input, model_to_text
from mlpipe.model.calibration import Calibration
from mlpipe.model.scoring import predict
from mlpipe.model.training import train_model
from mlpipe.serving.app import create_app
from mlpipe.serving.scorer import explain_records, load_served_model

FAST = TrainParams(n_estimators=60, learning_rate=0.1, early_stopping_rounds=0, validation_fraction=0, min_child_samples=20, num_threads=1)


@pytest.fixture(scope="module")
def trained():
    """A model of the default data's features (numbers and categoricals) on a sample of its
    training years, its schema, and later rows to explain."""
    params = load_params(ROOT / "params.yaml")
    rows = employment_sample(rows_per_year=600)
    train, later = rows[rows["year"] <= 2015], rows[rows["year"] >= 2016].reset_index(drop=True)
    schema = build_schema(train, params.data, params.features)
    features = feature_table(train, schema)
    booster = train_model(features[schema.feature_names], features[schema.target], FAST).booster
    return {"params": params, "schema": schema, "text": model_to_text(booster), "booster": booster, "later": later}


def raw_scores(booster, features, schema) -> np.ndarray:
    return booster.predict(model_input(features, schema), raw_score=True)


def test_each_rows_contributions_add_up_to_its_raw_score(trained):
    """Numbers, categoricals, missing values and categories training never saw: the features'
    contributions and the base value sum to the raw score (log-odds) of the same row."""
    schema, booster, later = trained["schema"], trained["booster"], trained["later"].copy()
    assert schema.categorical_names and len(schema.categorical_names) < len(schema.feature_names)
    unseen = later.index % 3 == 0
    for name in schema.categorical_names:
        later[name] = later[name].astype(object).where(~unseen, "a level never seen")
    later.loc[later.index % 5 == 0, "SCHL"] = np.nan
    features = make_features(later, schema)
    for name in schema.categorical_names:  # scored as unseen: the shared __other__ level, else missing
        assert (features.loc[unseen, name].isna() | (features.loc[unseen, name] == "__other__")).all()
    contrib = explain.contributions(booster, features, schema)
    assert contrib.shape == (len(later), len(schema.feature_names) + 1)
    np.testing.assert_allclose(contrib.sum(axis=1), raw_scores(booster, features, schema), rtol=0, atol=1e-9)
    assert np.unique(contrib[:, -1]).size == 1  # the base value is the model's, the same for every row
    categorical = [schema.feature_names.index(name) for name in schema.categorical_names]
    assert np.abs(contrib[:, categorical]).sum() > 0  # the categoricals take part
    assert explain.contributions(booster, features.iloc[:0], schema).shape == (0, len(schema.feature_names) + 1)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    contrib=st.integers(1, 8).flatmap(
        lambda features: arrays(
            np.float64,
            st.tuples(st.integers(0, 6), st.just(features + 1)),
            elements=st.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.5]),
        )
    ),
    k=st.integers(1, 10),
)
def test_the_top_k_are_the_largest_by_magnitude_ties_in_feature_order(contrib, k):
    names = [f"f{i}" for i in range(contrib.shape[1] - 1)]
    top_names, top_values = explain.top_contributions(contrib, names, k)
    assert top_names.shape == top_values.shape == (len(contrib), min(k, len(names)))
    for row, row_names, row_values in zip(contrib, top_names, top_values, strict=True):
        positions = [names.index(name) for name in row_names]
        assert len(set(positions)) == len(positions)
        np.testing.assert_array_equal(row_values, row[positions])
        # What a sort by (-|contribution|, feature position) keeps first: no other choice is allowed.
        expected = sorted(range(len(names)), key=lambda i: (-abs(row[i]), i))[: len(positions)]
        assert positions == expected
    frame = explain.contribution_columns(contrib, names, k, pd.RangeIndex(len(contrib)))
    assert list(frame.columns[:2]) == ["contribution_1_feature", "contribution_1_value"] and frame.columns[-1] == explain.BASE_VALUE
    assert len(frame.columns) == 2 * min(k, len(names)) + 1


@pytest.mark.parametrize("total, most", [(10, None), (10, 10), (10, 20), (10, 3), (1000, 7), (0, 5)])
def test_explained_positions_are_distinct_sorted_and_evenly_spread(total, most):
    found = explain.explained_positions(total, most)
    assert len(found) == min(total, most or total) and np.all(np.diff(found) > 0) and (len(found) == 0 or found[-1] < total)
    if len(found) > 1:
        assert np.ptp(np.diff(found)) <= 1


@pytest.mark.parametrize("explain_rows", [None, 450])
def test_the_mean_contribution_over_parts_is_the_whole_tables(tmp_path, trained, explain_rows):
    """The evaluate stage's importance table: mean |contribution| over the explained rows of the
    parts, as it is over the same rows of the whole table (the gain columns beside it)."""
    schema, booster, later = trained["schema"], trained["booster"], trained["later"]
    table = feature_table(later, schema)
    folder = tmp_path / "test.parquet"
    folder.mkdir()
    for index, block in enumerate(np.array_split(np.arange(len(table)), 4)):
        table.iloc[block].to_parquet(folder / f"part-{index:05d}-0000.parquet", index=False)
    params = EvaluateParams(explain_rows=explain_rows)
    _, tables = evaluation.evaluate(sorted(folder.iterdir()), trained["text"], schema, params, Calibration(), scratch_in=tmp_path / "m")
    chosen = explain.explained_positions(len(table), explain_rows)
    whole = explain.ContributionSums.of(explain.contributions(booster, table.iloc[chosen], schema))
    expected = explain.importance_table(booster, schema.feature_names, whole)
    found = pd.DataFrame(tables["feature_importance"])
    assert list(found.columns) == ["feature", "gain", "splits", "gain_share", "mean_abs_contribution", "contribution_share"]
    assert list(found["feature"]) == list(expected["feature"])
    np.testing.assert_allclose(found["mean_abs_contribution"], expected["mean_abs_contribution"], rtol=1e-12, atol=0)
    assert found["contribution_share"].sum() == pytest.approx(1.0) and found["gain_share"].sum() == pytest.approx(1.0)
    assert whole.rows == len(chosen) == min(len(table), explain_rows or len(table))


@pytest.fixture(scope="module")
def served_and_batch(trained, tmp_path_factory):
    """The trained model's files, the service on them (TestClient) and the predict step's current
    rows with their explanations (`explain.batch`), on the same later rows."""
    folder = tmp_path_factory.mktemp("explain")
    schema, params = trained["schema"], trained["params"]
    (folder / "model.txt").write_text(trained["text"])
    (folder / "schema.json").write_text(schema.to_json())
    later = trained["later"][[*schema.meta_columns, *schema.input_columns, schema.target]].head(300).copy()
    later.loc[later.index % 7 == 0, "RELP"] = 99  # a relationship code training never saw
    assert "99" not in dict((spec.name, spec.categories) for spec in schema.features)["RELP"]
    later.to_parquet(folder / "current.parquet", index=False)
    trained["later"].head(50).to_parquet(folder / "reference.parquet", index=False)
    outputs = {name: folder / f"{name}-out.parquet" for name in ("reference", "current", "quarantine")}
    predict(
        folder / "reference.parquet",
        str(folder / "current.parquet"),
        outputs["reference"],
        outputs["current"],
        outputs["quarantine"],
        (trained["text"], str(folder / "model.txt")),
        schema,
        Calibration(),
        params.data,
        params.validate,
        explain_top_k=params.explain.top_k,
    )
    params = params.model_copy(update={"serve": params.serve.model_copy(update={"log_folder": None})})
    client = TestClient(create_app(lambda: load_served_model(folder / "model.txt", folder / "schema.json"), params))
    records = json.loads(later.to_json(orient="records"))
    return {
        "client": client,
        "records": records,
        "batch": pd.read_parquet(outputs["current"]),
        "reference": pd.read_parquet(outputs["reference"]),
        "params": params,
        "folder": folder,
    }


def test_served_and_batch_explanations_are_equal_for_the_same_rows(served_and_batch, trained):
    """`POST /predict?explain=true` and the predict stage's columns (explain.batch) give each row
    the same top k features and contributions, to the bit, and the same base value; the reference
    is not explained."""
    schema, k = trained["schema"], served_and_batch["params"].explain.top_k
    answer = served_and_batch["client"].post("/predict?explain=true", json=served_and_batch["records"])
    assert answer.status_code == 200, answer.text
    served = answer.json()["predictions"]
    batch = served_and_batch["batch"].set_index("id")
    assert len(batch) == len(served) == 300
    for record, prediction in zip(served_and_batch["records"], served, strict=True):
        row = batch.loc[record["id"]]
        assert prediction["probability"] == row["probability"]
        assert [item["feature"] for item in prediction["contributions"]] == [row[f"contribution_{i}_feature"] for i in range(1, k + 1)]
        assert [item["contribution"] for item in prediction["contributions"]] == [row[f"contribution_{i}_value"] for i in range(1, k + 1)]
        assert prediction["base_value"] == row[explain.BASE_VALUE]
    features = make_features(pd.DataFrame.from_records(served_and_batch["records"]), schema)
    _, top = explain.top_contributions(explain.contributions(trained["booster"], features, schema), schema.feature_names, k)
    assert [[item["contribution"] for item in prediction["contributions"]] for prediction in served] == top.tolist()
    assert not any(column.startswith("contribution_") for column in served_and_batch["reference"].columns)
    # Schemas with derived features are encoded by the batch stage's make_features: the same explanations.
    model = load_served_model(served_and_batch["folder"] / "model.txt", served_and_batch["folder"] / "schema.json")
    records = served_and_batch["records"]
    assert explain_records(records, dataclasses.replace(model, encoder=None), k) == explain_records(records, model, k)


def test_explain_is_a_true_or_false_query_and_the_default_answer_is_unchanged(served_and_batch):
    client, records = served_and_batch["client"], served_and_batch["records"][:3]
    plain = client.post("/predict", json=records)
    assert plain.status_code == 200 and set(plain.json()["predictions"][0]) == {"probability", "label", "model_version"}
    assert client.post("/predict?explain=false", json=records).json() == plain.json()
    for value in ("yes", "True", "1", ""):
        refused = client.post(f"/predict?explain={value}", json=records)
        assert refused.status_code == 422 and refused.json() == {
            "detail": f"the query parameter explain must be true or false, not {value!r}"
        }
    parameters = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["parameters"]
    (documented,) = [parameter for parameter in parameters if parameter["name"] == "explain"]
    assert documented["in"] == "query" and "TreeSHAP" in documented["description"]


def test_explanations_off_refuse_explain_true_with_the_fix(served_and_batch):
    folder, params = served_and_batch["folder"], served_and_batch["params"]
    params = params.model_copy(update={"explain": params.explain.model_copy(update={"top_k": 0})})
    client = TestClient(create_app(lambda: load_served_model(folder / "model.txt", folder / "schema.json"), params))
    refused = client.post("/predict?explain=true", json=served_and_batch["records"][:1])
    assert refused.status_code == 422 and "set explain.top_k to 1 or more" in refused.json()["detail"]
