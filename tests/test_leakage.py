"""The leakage guard (`mlpipe.tools.leakage`, make init) and train's warning when one feature carries a
near-perfect model (`mlpipe.model.training.dominant_feature`)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpipe.config import InitParams, TrainParams
from mlpipe.tools.leakage import find_leaks, leak_guard

RULE = InitParams()


def outcome(rows: int, rate: float, seed: int) -> pd.Series:
    return pd.Series(np.random.default_rng(seed).random(rows) < rate)


def honest_columns(target: pd.Series, seed: int) -> pd.DataFrame:
    """Columns an honest table has: one moderately predictive number, noise, a category."""
    rng = np.random.default_rng(seed + 1)
    rows = len(target)
    return pd.DataFrame(
        {
            "score": target * 0.8 + rng.normal(0, 1, rows),
            "noise": rng.normal(0, 1, rows),
            "region": rng.choice(["north", "south", "east", "west"], rows),
        }
    )


def dropped(features: pd.DataFrame, target: pd.Series, rule: InitParams = RULE) -> list[str]:
    return [leak.column for leak in find_leaks(features, target, "y", True, rule)[0]]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(400, 3000),
    rate=st.floats(0.2, 0.8),
    noise=st.floats(0.0, 0.05),
    as_text=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_a_copy_of_the_target_with_some_noise_is_dropped(rows, rate, noise, as_text, seed):
    target = outcome(rows, rate, seed)
    # Exactly a `noise` share of rows flipped: independent flips at 5% gave 8.5% of 400 rows (34),
    # a copy no longer within the property's 5% of the target.
    flipped = np.zeros(rows, dtype=bool)
    flipped[np.random.default_rng(seed + 2).permutation(rows)[: round(noise * rows)]] = True
    copy = target ^ flipped
    features = honest_columns(target, seed).assign(flag=copy.map({True: "reoffended", False: "no"}) if as_text else copy.astype(int))
    leaks, scores = find_leaks(features, target, "y", True, RULE)
    assert [leak.column for leak in leaks] == ["flag"], {score.column: round(score.best, 3) for score in scores}
    # Named by its score, or (few flips landing on one side) by a value that settles the target.
    assert leaks[0].warning.startswith(("drop 'flag': alone it predicts y with ROC-AUC ", "drop 'flag': where it is "))
    assert "keep it only if it is known at prediction time" in leaks[0].warning


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(200, 3000),
    rate=st.floats(0.02, 0.98),
    kind=st.sampled_from(["number", "integer", "category", "text", "ids", "sparse"]),
    seed=st.integers(0, 2**16),
)
def test_a_column_independent_of_the_target_is_never_dropped(rows, rate, kind, seed):
    target = outcome(rows, rate, seed)
    rng = np.random.default_rng(seed + 3)
    column = {
        "number": lambda: rng.normal(0, 1, rows),
        "integer": lambda: rng.integers(0, 3, rows),
        "category": lambda: rng.choice(["a", "b", "c"], rows, p=[0.7, 0.2, 0.1]),
        "text": lambda: rng.choice([f"word{number}" for number in range(300)], rows),
        "ids": lambda: [f"C{number:07d}" for number in rng.permutation(rows)],
        "sparse": lambda: np.where(rng.random(rows) < 0.9, np.nan, rng.normal(0, 1, rows)),
    }[kind]()
    assert dropped(pd.DataFrame({"independent": column}), target) == []


def test_a_column_present_only_after_the_outcome_is_dropped_for_its_emptiness():
    target = outcome(3000, 0.4, 0)
    rng = np.random.default_rng(5)
    features = honest_columns(target, 0).assign(
        # the days to a later event: recorded for 70% of the positives (its values say nothing)
        days_to_event=np.where(target & (rng.random(3000) < 0.7), rng.integers(0, 700, 3000), np.nan),
        # empty exactly when the outcome did not happen, but for 3% of rows (recorded with errors)
        event_charge=np.where(target ^ (rng.random(3000) < 0.03), rng.choice(["F3", "M1"], 3000), None),
    )
    leaks = {leak.column: leak for leak in find_leaks(features, target, "y", True, RULE)[0]}
    assert sorted(leaks) == ["days_to_event", "event_charge"]
    assert "where it is not empty" in leaks["days_to_event"].warning and "y is True in every row" in leaks["days_to_event"].warning
    assert leaks["event_charge"].warning.startswith("drop 'event_charge': whether it is empty predicts y with ROC-AUC 0.9")


def test_a_value_that_settles_the_target_is_dropped_though_its_auc_is_low():
    """A subset of the outcome (a violent re-offence among re-offences) ranks like an honest
    column (ROC-AUC about 0.62), but where it is 1 the target is 1 in hundreds of rows."""
    target = outcome(3000, 0.5, 1)
    violent = target & (np.random.default_rng(6).random(3000) < 0.25)
    leaks, scores = find_leaks(honest_columns(target, 1).assign(violent=violent.astype(int)), target, "y", True, RULE)
    assert [leak.column for leak in leaks] == ["violent"]
    assert next(score for score in scores if score.column == "violent").best < 0.7
    assert dropped(honest_columns(target, 1).assign(violent=violent.astype(int)), target, InitParams(min_settled_share=1)) == []


def test_strong_columns_in_a_continuum_are_kept_and_those_far_above_the_rest_are_not():
    """The breast-cancer shape: strong columns, and others a little weaker, and others weaker
    still; no gap of init.min_auc_gap among them, so none is dropped. A strong column far above
    every other is dropped, until it is kept or the rule is changed."""
    target = outcome(2000, 0.4, 2)
    rng = np.random.default_rng(7)
    continuum = pd.DataFrame(
        {f"size_{number}": target * strength + rng.normal(0, 1, 2000) for number, strength in enumerate(np.linspace(0.5, 3, 12))}
    )
    assert dropped(continuum, target) == []
    assert dropped(continuum[["size_11", "size_10", "size_9"]], target) == [], "a table whose every column is strong is a strong table"
    alone = honest_columns(target, 2).assign(size=continuum["size_11"])  # ROC-AUC about 0.98, the next 0.72
    assert dropped(alone, target) == ["size"]
    assert dropped(alone, target, InitParams(keep_columns=["size"])) == []
    assert dropped(alone, target, InitParams(suspect_feature_auc=0.99)) == []


def test_a_kept_column_counts_among_those_that_stay():
    """init.keep_columns: a leak the user says is known at prediction time is not dropped, and a
    column just below it is not far above every column that stays."""
    target = outcome(3000, 0.5, 3)
    rng = np.random.default_rng(8)
    features = honest_columns(target, 3).assign(
        flag=(target ^ (rng.random(3000) < 0.02)).astype(int), event=(target ^ (rng.random(3000) < 0.04)).astype(int)
    )
    assert sorted(dropped(features, target)) == ["event", "flag"]
    assert dropped(features, target, InitParams(keep_columns=["flag"])) == []


def test_the_guard_scores_the_training_rows_of_a_time_split_only():
    """Features are chosen without looking at the test period: a column that gives the outcome away
    only there is not the guard's to see, one that does in the training period is dropped."""
    rows = 4000
    target = outcome(rows, 0.5, 4)
    year = np.repeat([2019, 2020, 2021, 2022], rows // 4)
    noise = np.random.default_rng(9).integers(0, 2, rows)
    table = honest_columns(target, 4).assign(
        year=year, in_test=np.where(year == 2022, target, noise), in_training=np.where(year < 2022, target, noise), y=target.astype(int)
    )
    split = {"strategy": "time", "train_until": 2021, "test_from": 2022}
    leaks = leak_guard(table, "y", 1, ["score", "noise", "region", "in_test", "in_training"], split, "year", RULE)
    assert [leak.column for leak in leaks] == ["in_training"]


def test_init_params_are_checked():
    with pytest.raises(ValueError, match="suspect_feature_auc: must not exceed init.max_feature_auc=0.95"):
        InitParams(max_feature_auc=0.95, suspect_feature_auc=0.97)


# -- train: one feature carrying a near-perfect model ---------------------------------------------


def train_on(features: pd.DataFrame, target: pd.Series, **settings) -> dict:
    from mlpipe.model.training import train_model

    params = TrainParams(n_estimators=200, min_child_samples=20, **settings)
    return train_model(features, target.astype(int), params).summary


def test_train_warns_when_one_feature_carries_a_near_perfect_model(caplog):
    from mlpipe.model.training import leak_warning

    target = outcome(3000, 0.4, 5)
    flag = (target ^ (np.random.default_rng(10).random(3000) < 0.01)).astype(int)
    honest = honest_columns(target, 5).drop(columns="region")
    summary = train_on(honest.assign(flag=flag), target)
    assert summary["leak_warning"] == 1 and summary["top_feature"] == "flag"
    assert summary["top_feature_gain_share"] > 0.9 and summary["validation_roc_auc"] > 0.97
    line = leak_warning(summary, TrainParams())
    assert line.startswith("warning: one feature, 'flag', carries 9") and "validation ROC-AUC is 0.9" in line
    assert "train.leak_warning_gain_share=0.5, train.leak_warning_validation_auc=0.97" in line

    plain = train_on(honest, target)
    assert plain["leak_warning"] == 0 and plain["validation_roc_auc"] < 0.9 and leak_warning(plain, TrainParams()) is None
    assert train_on(honest.assign(flag=flag), target, leak_warning_validation_auc=1.0)["leak_warning"] == 0


def test_the_train_stage_logs_the_warning_and_records_it(tmp_path, caplog):
    """In process: the stage's log line and the training record that review sees."""
    import json

    from conftest import stage_function
    from mlpipe.config import parse_params, read_params_file
    from mlpipe.data.schema import FeatureSchema

    target = outcome(2000, 0.4, 6)
    flag = (target ^ (np.random.default_rng(11).random(2000) < 0.01)).astype(int)
    table = honest_columns(target, 6).drop(columns="region").assign(flag=flag, y=target.astype(int))
    table.to_parquet(tmp_path / "train.parquet")
    from mlpipe.data.schema import FeatureSpec

    specs = (
        FeatureSpec("score", "numeric", "float64"),
        FeatureSpec("noise", "numeric", "float64"),
        FeatureSpec("flag", "numeric", "int64"),
    )
    schema = FeatureSchema(target="y", positive_label=1, negative_label=0, features=specs)
    (tmp_path / "schema.json").write_text(schema.to_json())
    raw = read_params_file("params.yaml")
    raw["train"].update(min_child_samples=20)
    names = ("model.txt", "model_schema.json", "calibration.json", "reliability", "record", "tuning.json", "tuning_plot.json")
    outputs = {name: tmp_path / name for name in names}
    with caplog.at_level(logging.INFO):
        stage_function("train")(
            parse_params(raw),
            logging.getLogger("train"),
            features=tmp_path / "train.parquet",
            schema=tmp_path / "schema.json",
            model=outputs["model.txt"],
            model_schema=outputs["model_schema.json"],
            calibration=outputs["calibration.json"],
            reliability=outputs["reliability"],
            record=outputs["record"],
            tuning=outputs["tuning.json"],
            tuning_plot=outputs["tuning_plot.json"],
        )
    warned = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warned) == 1 and warned[0].startswith("warning: one feature, 'flag', carries ")
    recorded = json.loads((outputs["record"] / "metrics.json").read_text())
    assert recorded["leak_warning"] == 1 and recorded["top_feature"] == "flag" and recorded["validation_roc_auc"] > 0.97
