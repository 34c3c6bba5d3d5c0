"""Training determinism, persistence, scoring, and the metric tables."""

import dataclasses
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import make_classification

from mlpipe.config import DataParams, EvaluateParams, FeaturesParams, TrainParams
from mlpipe.data.features import build_schema, feature_table
from mlpipe.model import evaluation, metrics
from mlpipe.model.booster import (
    feature_importance,
    lightgbm_names,
    model_from_text,
    model_to_text,
    predict_proba,
    real_names,
)
from mlpipe.model.calibration import Calibration
from mlpipe.model.training import train_model


@pytest.fixture(scope="module")
def dataset():
    X, y = make_classification(n_samples=3000, n_features=6, n_informative=4, random_state=0)
    table = pd.DataFrame(X, columns=[f"x{i}" for i in range(6)])
    table["colour"] = np.where(X[:, 0] > 0, "red", "blue")
    table["label"] = np.where(y == 1, "pos", "neg")
    schema = build_schema(table, DataParams(source="t", target="label", positive_label="pos"), FeaturesParams())
    return schema, feature_table(table, schema)


FAST = TrainParams(n_estimators=200, learning_rate=0.1, early_stopping_rounds=10, num_threads=1)


def test_training_is_byte_for_byte_deterministic(dataset):
    schema, table = dataset
    first = train_model(table[schema.feature_names], table["label"], FAST)
    second = train_model(table[schema.feature_names], table["label"], FAST)
    assert model_to_text(first.booster) == model_to_text(second.booster)
    assert first.curve == second.curve


def test_early_stopping_then_refit_on_all_rows(dataset):
    schema, table = dataset
    trained = train_model(table[schema.feature_names], table["label"], FAST)
    summary = trained.summary
    assert summary["train_rows"] == 3000 and summary["validation_rows"] == 300
    assert 1 <= summary["best_iteration"] < 200
    assert summary["n_trees"] == summary["best_iteration"] == trained.booster.num_trees()
    assert len(trained.curve) >= summary["best_iteration"]


def test_without_validation_slice_all_trees_are_fitted(dataset):
    schema, table = dataset
    params = TrainParams(n_estimators=30, early_stopping_rounds=0, validation_fraction=0, num_threads=1)
    trained = train_model(table[schema.feature_names], table["label"], params)
    assert trained.booster.num_trees() == 30 and trained.curve == []


def test_model_text_round_trip_predicts_the_same(dataset):
    schema, table = dataset
    trained = train_model(table[schema.feature_names], table["label"], FAST)
    text = model_to_text(trained.booster)
    assert "pandas_categorical" in text and "\x80" not in text  # LightGBM text format, no pickle
    reloaded = model_from_text(text)
    np.testing.assert_array_equal(predict_proba(trained.booster, table, schema), predict_proba(reloaded, table, schema))
    proba = predict_proba(reloaded, table, schema)
    assert metrics.binary_metrics(table["label"].to_numpy(), proba, 0.5)["roc_auc"] > 0.9
    importance = feature_importance(reloaded, schema.feature_names)
    assert set(importance["feature"]) == set(schema.feature_names)
    assert importance["gain_share"].sum() == pytest.approx(1.0)


# Every character LightGBM refuses or alters in a feature name, control and separator characters,
# the `_` they become, and unicode, so that names like `a:b`, `a_b` and `a b` meet.
NAME_CHARACTERS = st.sampled_from(list(',:[]{}"_ \t\n\r\x00\x1f\x7f\x85\u00a0\u2028\u200b') + list("ab1é")) | st.characters()


@settings(max_examples=300, deadline=None, derandomize=True)
@given(names=st.lists(st.text(NAME_CHARACTERS, min_size=1, max_size=6), min_size=1, max_size=8, unique=True))
def test_the_names_given_to_lightgbm_are_distinct_storable_and_map_back(names):
    """Issue 28: a column named `a:b` could not be a feature. LightGBM is given other names for it
    (`model.lightgbm_names`): distinct, ones it stores as they are, the same on every call, a plain
    name unchanged, and each maps back to its real name."""
    given_names = lightgbm_names(names)
    assert len(set(given_names)) == len(names)
    assert given_names == lightgbm_names(list(names))
    assert real_names(given_names, names) == names
    assert real_names(given_names[::-1], names) == names[::-1]
    for real, name in zip(names, given_names, strict=True):
        assert name and not set(name) & set(',:[]{}"') and name.isprintable() and not any(char.isspace() for char in name)
        if real.isprintable() and not set(real) & set(',:[]{}" ') and not any(char.isspace() for char in real):
            assert name == real


def test_a_colliding_encoding_gets_a_stable_suffix():
    assert lightgbm_names(["a:b", "x[1]", "plain"]) == ["a_b", "x_1_", "plain"]
    first = lightgbm_names(["a:b", "a_b"])
    assert first[1] == "a_b" and first[0].startswith("a_b_") and lightgbm_names(["a_b", "a:b"]) == first[::-1]


def test_columns_lightgbm_cannot_store_train_predict_and_report_under_their_real_names():
    """Issue 28: `a:b`, `x[1]` (and `a_b` beside `a:b`) are features; LightGBM sees other names,
    the importance table, the top feature and the model's check in the service see the real ones.
    `a b` trained before, but LightGBM stored it as `a_b`, which the service then refused."""
    from mlpipe.serving.scorer import check_model_matches_schema

    rng = np.random.default_rng(0)
    table = pd.DataFrame({name: rng.normal(size=2000) for name in ("a:b", "x[1]", "a_b", "a b")})
    table["k{1}"] = np.where(rng.normal(size=2000) > 0, "red", "blue")
    table["label"] = np.where(3 * table["a:b"] + table["x[1]"] + rng.normal(size=2000) > 0, "pos", "neg")
    schema = build_schema(table, DataParams(source="t", target="label", positive_label="pos"), FeaturesParams())
    assert schema.feature_names == ["a:b", "x[1]", "a_b", "a b", "k{1}"] and schema.categorical_names == ["k{1}"]
    features = feature_table(table, schema)
    trained = train_model(features[schema.feature_names], features["label"], FAST)
    reloaded = model_from_text(model_to_text(trained.booster))
    assert reloaded.feature_name() == lightgbm_names(schema.feature_names) != schema.feature_names
    check_model_matches_schema(reloaded, schema, "test")
    proba = predict_proba(reloaded, features, schema)
    assert metrics.binary_metrics(features["label"].to_numpy(), proba, 0.5)["roc_auc"] > 0.9
    importance = feature_importance(reloaded, schema.feature_names)
    assert set(importance["feature"]) == set(schema.feature_names) and importance["feature"].iloc[0] == "a:b"
    assert trained.summary["top_feature"] == "a:b"


def test_binary_metrics_on_a_hand_checked_example():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.9])
    m = metrics.binary_metrics(y, p, threshold=0.5)
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["accuracy"] == 0.5 and m["precision"] == 0.5 and m["recall"] == 0.5
    assert m["brier"] == pytest.approx((0.01 + 0.36 + 0.36 + 0.01) / 4)
    one_class = metrics.binary_metrics(np.array([1, 1]), np.array([0.2, 0.9]), 0.5)
    assert one_class["roc_auc"] is None and one_class["recall"] == 0.5


def test_curve_tables_are_fixed_size_and_monotone():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    p = np.clip(y * 0.3 + rng.random(5000) * 0.7, 0, 1)
    _, tables = evaluation.evaluate_scores(y, p, None, EvaluateParams(curve_points=101), ("no", "yes"))
    roc = tables["roc"]
    assert len(roc) == 101 and roc[0]["fpr"] == 0 and roc[-1]["tpr"] == 1
    assert all(a["tpr"] <= b["tpr"] for a, b in pairwise(roc))
    pr = evaluation.evaluate_scores(y, p, None, EvaluateParams(curve_points=51))[1]["precision_recall"]
    assert len(pr) == 51 and all(a["precision"] >= b["precision"] for a, b in pairwise(pr))
    assert sum(row["rows"] for row in tables["calibration"]) == 5000
    assert sum(row["count"] for row in tables["confusion"]) == 5000
    assert {row["actual"] for row in tables["confusion"]} == {"no", "yes"}


def test_interpolated_precision_is_the_best_precision_at_that_recall_or_higher():
    # Four positives, so every achievable recall is on the grid (every 5th of 21 points); the flat stretches of
    # recall (negatives between positives) are ties whose order once depended on the CPU.
    y = np.array([1, 0, 0, 1, 0, 1, 0, 0, 1, 0])
    p = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    achieved = [(y[p >= t].sum() / 4, y[p >= t].mean()) for t in p]
    expected = [max(precision for recall, precision in achieved if recall >= r) for r in np.linspace(0, 1, 5)]
    for range_rows in (None, 1, 3):  # one range, or a range per score bin
        tables = evaluation.evaluate_scores(y, p, None, EvaluateParams(curve_points=21), range_rows=range_rows)[1]
        assert [point["precision"] for point in tables["precision_recall"][::5]] == pytest.approx(expected)


def reference_tables(y: np.ndarray, p: np.ndarray, params: EvaluateParams) -> dict:
    """The curve tables as evaluate wrote them from the whole table, before it worked by parts."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    grid = np.linspace(0, 1, params.curve_points)
    fpr, tpr, _ = roc_curve(y, p)
    precision, recall, _ = precision_recall_curve(y, p)
    best = np.maximum.accumulate(precision)[::-1]
    recall, first = np.unique(recall[::-1], return_index=True)
    bins = np.minimum((p * params.calibration_bins).astype(int), params.calibration_bins - 1)
    calibration = pd.DataFrame({"bin": bins, "y": y, "p": p}).groupby("bin").agg(m=("p", "mean"), f=("y", "mean"), n=("y", "size"))
    return {
        "roc": [{"fpr": x, "tpr": v} for x, v in zip(grid, np.interp(grid, fpr, tpr), strict=True)],
        "precision_recall": [{"recall": r, "precision": v} for r, v in zip(grid, np.interp(grid, recall, best[first]), strict=True)],
        "calibration": [
            {"bin": b, "mean_predicted": row.m, "fraction_positive": row.f, "rows": row.n} for b, row in calibration.iterrows()
        ],
    }


def reference_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    from sklearn import metrics as skm

    both = 0 < y.sum() < len(y)
    predicted = (p >= threshold).astype(int)
    return {
        "rows": len(y),
        "positive_rate": y.mean(),
        "predicted_positive_rate": predicted.mean(),
        "roc_auc": skm.roc_auc_score(y, p) if both else None,
        "pr_auc": skm.average_precision_score(y, p) if both else None,
        "log_loss": skm.log_loss(y, p, labels=[0, 1]),
        "brier": np.mean((p - y) ** 2),
        "accuracy": skm.accuracy_score(y, predicted),
        "precision": skm.precision_score(y, predicted, zero_division=0),
        "recall": skm.recall_score(y, predicted, zero_division=0),
        "f1": skm.f1_score(y, predicted, zero_division=0),
    }


def assert_close(found, expected, tolerance=1e-9):
    if isinstance(expected, dict):
        assert list(found) == list(expected)
        for key in expected:
            assert_close(found[key], expected[key], tolerance)
    elif isinstance(expected, list):
        assert len(found) == len(expected)
        for mine, theirs in zip(found, expected, strict=True):
            assert_close(mine, theirs, tolerance)
    elif expected is None or isinstance(expected, str):
        assert found == expected
    else:
        assert found == pytest.approx(expected, abs=tolerance, nan_ok=True)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    rows=st.integers(2, 400),
    distinct=st.sampled_from([2, 5, 40, 10_000]),
    range_rows=st.sampled_from([None, 1, 7, 60]),
    seed=st.integers(0, 2**16),
)
def test_every_metric_and_curve_by_ranges_is_scikit_learns_on_the_whole_table(rows, distinct, range_rows, seed):
    """Issue 29: evaluate works from per-part sums and score ranges (any cut of the score axis),
    and every figure is the whole table's, by scikit-learn's definitions: ties inside and across
    ranges, periods, one class in a period, probabilities of 0 and 1."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows)
    p = np.clip(np.round((0.35 * y + rng.random(rows) * 0.65) * distinct) / distinct, 0, 1)
    years = pd.Series(rng.choice([2016, 2017, 2018], rows), name="year")
    y[years.to_numpy() == 2018] = 1  # a period of one class
    params = EvaluateParams(curve_points=21)
    report, tables = evaluation.evaluate_scores(y, p, years, params, (0, 1), range_rows=range_rows)
    # Without a calibration the model's own probabilities are the calibrated ones: the same log-loss and Brier.
    raw = {key.removesuffix("_raw"): report["test"].pop(key) for key in ("log_loss_raw", "brier_raw")}
    assert raw == {key: report["test"][key] for key in raw}
    assert_close(report["test"], reference_metrics(y, p, 0.5))
    labels = years.astype(str).to_numpy()
    assert list(report["by_period"]) == sorted(set(labels))
    for name, found in report["by_period"].items():
        assert_close(found, reference_metrics(y[labels == name], p[labels == name], 0.5))
    if 0 < y.sum() < rows:
        reference = reference_tables(y, p, params)
        for name in ("roc", "precision_recall", "calibration"):
            assert_close(tables[name], reference[name])


def test_periods_from_years_and_dates():
    years = evaluation.period_labels(pd.Series([2016, 2017, 2016], name="year"), "Y", 50)
    assert list(years) == ["2016", "2017", "2016"]
    months = evaluation.period_labels(pd.Series(pd.to_datetime(["2020-01-03", "2020-02-10"]), name="d"), "M", 50)
    assert list(months) == ["2020-01", "2020-02"]
    assert evaluation.period_labels(pd.Series(range(100), name="t"), "Y", 50) is None
    report, _ = evaluation.evaluate_scores(
        np.array([0, 1, 0, 1]), np.array([0.2, 0.8, 0.3, 0.6]), pd.Series([5, 5, 6, 6]), EvaluateParams()
    )
    assert list(report["by_period"]) == ["5", "6"] and report["by_period"]["5"]["rows"] == 2
    many = evaluation.evaluate_scores(np.arange(60) % 2, np.linspace(0, 1, 60), pd.Series(range(60)), EvaluateParams(max_periods=50))
    assert "by_period" not in many[0]


def test_the_test_features_in_parts_give_the_whole_tables_report(tmp_path, dataset):
    """`evaluate` on a folder of parts (scored where read, ranked by ranges of their sorted scores)
    writes what `evaluate_scores` gives for the whole table, and leaves no scratch file."""
    schema, table = dataset
    trained = train_model(table[schema.feature_names], table["label"], FAST)
    text = model_to_text(trained.booster)
    table = table.assign(year=np.repeat([2016, 2017, 2018], 1000))
    schema = dataclasses.replace(schema, time_column="year")
    folder = tmp_path / "test.parquet"
    folder.mkdir()
    for index, block in enumerate(np.array_split(np.arange(len(table)), 4)):
        table.iloc[block].to_parquet(folder / f"part-{index:05d}-0000.parquet", index=False)
    params = EvaluateParams()
    found = evaluation.evaluate(sorted(folder.iterdir()), text, schema, params, Calibration(), tmp_path / "metrics")
    proba = predict_proba(model_from_text(text), table, schema)
    expected = evaluation.evaluate_scores(
        table["label"].to_numpy(), proba, table["year"], params, (schema.negative_label, schema.positive_label)
    )
    assert_close(found[0], expected[0], 1e-12)
    importance = found[1].pop("feature_importance")  # the parts' own table (tests/test_explain.py)
    assert {row["feature"] for row in importance} == set(schema.feature_names)
    assert_close(found[1], expected[1], 1e-12)
    assert list((tmp_path / "metrics").iterdir()) == []


@pytest.mark.parametrize(
    "rows, params, message",
    [
        (8, TrainParams(min_child_samples=1), "too few to hold out train.validation_fraction=0.1"),
        (60, TrainParams(min_child_samples=40), "54 training rows are left to fit: a split needs train.min_child_samples=40"),
        (1, TrainParams(validation_fraction=0, early_stopping_rounds=0), "1 rows and 1 class(es)"),
    ],
)
def test_a_training_set_too_small_is_one_line_before_lightgbm_runs(rows, params, message):
    from mlpipe.errors import DataError

    features = pd.DataFrame({"x": np.arange(rows, dtype=float)})
    target = pd.Series(np.arange(rows) % 2, name="y")
    with pytest.raises(DataError) as raised:
        train_model(features, target, params)
    assert message in str(raised.value) and "\n" not in str(raised.value)
