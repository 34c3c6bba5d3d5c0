"""The fairness report: fairlearn's own MetricFrame and difference functions give the same figures
on the default data, groups are made as params say, and bad params are one line naming the key."""

from __future__ import annotations

import functools
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from conftest import ROOT, employment_sample, run_in_process
from mlpipe.config import DataParams, FairnessParams, FeaturesParams, Guard, SensitiveGroups, TrainParams, load_params
from mlpipe.data.features import build_schema, feature_table, make_features
from mlpipe.errors import DataError
from mlpipe.model import fairness
from mlpipe.model.booster import model_from_text, model_to_text, predict_proba
from mlpipe.model.calibration import Calibration
from mlpipe.model.training import train_model
from mlpipe.tools import review

DEFAULT = load_params(ROOT / "params.yaml").fairness  # the default data's sex, race and age bands


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(model text, schema, test folder of 3 parts, test rows): a small model trained on the default
    data's 2015 rows without SEX among its features, and its later rows, every column kept."""
    table = employment_sample(rows_per_year=1500)
    train, test = table[table["year"] <= 2015], table[table["year"] >= 2016].reset_index(drop=True)
    data = DataParams(
        source="t",
        target="employed",
        positive_label=1,
        time_column="year",
        id_columns=["id"],
        drop_columns=["SEX"],
        categorical_columns=["RAC1P"],
    )
    schema = build_schema(train, data, FeaturesParams())
    features = feature_table(train, schema)
    params = TrainParams(n_estimators=60, learning_rate=0.1, early_stopping_rounds=0, validation_fraction=0, num_threads=1)
    text = model_to_text(train_model(features[schema.feature_names], features["employed"], params).booster)
    folder = tmp_path_factory.mktemp("fairness") / "test.parquet"
    folder.mkdir()
    for index, rows in enumerate(np.array_split(np.arange(len(test)), 3)):
        test.iloc[rows].to_parquet(folder / f"part-{index:05d}-0000.parquet", index=False)
    return text, schema, folder, test


def parts(folder):
    return sorted(folder.glob("*.parquet"))


def test_the_report_is_fairlearns_own_on_the_default_data(model):
    """Every group's rates and both differences equal fairlearn's MetricFrame and functions,
    called here on the same rows; ROC-AUC is scikit-learn's on each group's rows."""
    text, schema, folder, test = model
    report, plot_rows = fairness.assess(parts(folder), text, schema, Calibration(), DEFAULT, str(folder))
    proba = predict_proba(model_from_text(text), make_features(test, schema), schema)
    y, predicted = test["employed"].to_numpy(), (proba >= 0.5).astype(int)
    assert report["rows"] == len(test) and "SEX" not in schema.feature_names
    names = {
        "sex": test["SEX"].map({1: "male", 2: "female"}),
        "race": test["RAC1P"].map(lambda code: DEFAULT.groups["race"].labels[code]),
        "age": pd.cut(
            test["AGEP"],
            [-np.inf, 16, 25, 35, 45, 55, 65, 75, np.inf],
            right=False,
            labels=["under 16", "16-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75 and over"],
        ).astype(str),
    }
    for name, groups in names.items():
        found = report["sensitive"][name]
        frame = MetricFrame(
            metrics={
                "selection_rate": selection_rate,
                "true_positive_rate": true_positive_rate,
                "false_positive_rate": false_positive_rate,
            },
            y_true=y,
            y_pred=predicted,
            sensitive_features=groups,
        )
        assert set(found["groups"]) == set(groups)
        for group, entry in found["groups"].items():
            rows = (groups == group).to_numpy()
            assert (entry["rows"], entry["positives"]) == (rows.sum(), y[rows].sum())
            if rows.sum() < DEFAULT.min_group_rows:
                assert set(entry) == {"rows", "positives", "in_differences"}
                continue
            for rate in fairness.RATES:
                if entry[rate] is not None:
                    assert entry[rate] == pytest.approx(frame.by_group.loc[group, rate], abs=1e-12)
            both = 0 < y[rows].sum() < rows.sum()
            assert entry["roc_auc"] == (pytest.approx(roc_auc_score(y[rows], proba[rows]), abs=1e-12) if both else None)
        compared = [group for group, entry in found["groups"].items() if entry["in_differences"]]
        kept = groups.isin(compared).to_numpy()
        assert found["demographic_parity_difference"] == pytest.approx(
            demographic_parity_difference(y[kept], predicted[kept], sensitive_features=groups[kept]), abs=1e-12
        )
        assert found["equalized_odds_difference"] == pytest.approx(
            equalized_odds_difference(y[kept], predicted[kept], sensitive_features=groups[kept]), abs=1e-12
        )
        assert [row["group"] for row in plot_rows if row["attribute"] == name] == [f"{name}: {group}" for group in compared]
    # Children hold one class (nobody under 16 is employed): no ROC-AUC, no true positive rate, not compared.
    children = report["sensitive"]["age"]["groups"]["under 16"]
    assert children["rows"] >= DEFAULT.min_group_rows and children["positives"] == 0
    assert (children["roc_auc"], children["true_positive_rate"], children["in_differences"]) == (None, None, False)


def test_rows_are_labelled_at_the_calibrations_threshold_on_its_calibrated_probability(model):
    """The selection rate counts what `predict` labels positive: the calibrated probability at or
    above the threshold of models/calibration.json, not the model's own probability at 0.5."""
    text, schema, folder, test = model
    calibration = Calibration(method="sigmoid", mapping={"a": 1.3, "b": -0.2}, threshold=0.35)
    report, _ = fairness.assess(parts(folder), text, schema, calibration, DEFAULT, str(folder))
    proba = calibration.apply(predict_proba(model_from_text(text), make_features(test, schema), schema))
    assert report["threshold"] == 0.35
    assert report["overall"]["selection_rate"] == pytest.approx(np.mean(proba >= 0.35), abs=1e-12)
    assert np.mean(proba >= 0.35) != pytest.approx(np.mean(proba >= 0.5), abs=0.01)
    male = (test["SEX"] == 1).to_numpy()
    assert report["sensitive"]["sex"]["groups"]["male"]["selection_rate"] == pytest.approx(np.mean(proba[male] >= 0.35), abs=1e-12)


def test_band_names():
    assert fairness.band_names([16.0, 25.0, 65.0], integral=True) == ["under 16", "16-24", "25-64", "65 and over"]
    assert fairness.band_names([16, 17], integral=True) == ["under 16", "16", "17 and over"]
    assert fairness.band_names([0.5, 1.0], integral=True) == ["under 0.5", "0.5 to under 1", "1 and over"]
    assert fairness.band_names([16.0, 25.0], integral=False) == ["under 16", "16 to under 25", "25 and over"]


@settings(max_examples=200, deadline=None)
@given(
    edges=st.lists(st.integers(-50, 50), min_size=1, max_size=5, unique=True).map(sorted),
    values=st.lists(st.one_of(st.none(), st.floats(-100, 100, allow_nan=False)), min_size=1, max_size=40),
)
def test_every_value_falls_in_the_band_that_holds_it(edges, values):
    column = pd.Series(values, dtype=float)
    rows, order = fairness.group_names(column, SensitiveGroups(column="x", bins=edges))
    names = fairness.band_names(edges, integral=bool((column.dropna() % 1 == 0).all()))
    for value, group in zip(column, rows, strict=True):
        assert group == (fairness.MISSING if math.isnan(value) else names[np.searchsorted(edges, value, side="right")])
    assert order == [name for name in [*names, fairness.MISSING] if name in set(rows)]  # bands in ascending order, missing last


def test_labels_name_values_in_their_order_and_merge_values_that_share_a_name():
    column = pd.Series([10, 2, 3, None, 2, 4], dtype="Int16")
    rows, order = fairness.group_names(column, SensitiveGroups(column="x", labels={2: "two", 3: "three or four", 4: "three or four"}))
    assert list(rows) == ["10", "two", "three or four", "missing", "two", "three or four"]
    assert order == ["two", "three or four", "10", "missing"]  # numbers in numeric order, not as text


def scored(groups: list[str], y: list[int], predicted: list[int]) -> fairness.Scored:
    return fairness.Scored(
        np.array(y, dtype=np.int8),
        np.array(predicted, dtype=np.int8),
        np.linspace(0.1, 0.9, len(y)),
        pd.DataFrame({"g": groups}),
    )


def test_a_small_group_and_a_group_with_one_class_stay_out_of_the_differences():
    rows = scored(
        ["a"] * 4 + ["b"] * 4 + ["c"] * 2 + ["d"] * 4,
        [0, 1, 0, 1] + [0, 1, 1, 1] + [0, 1] + [0, 0, 0, 0],
        [0, 1, 1, 1] + [0, 0, 1, 1] + [1, 1] + [1, 0, 0, 0],
    )
    report, plot_rows = fairness.fairness_report(rows, {"g": SensitiveGroups(column="g")}, min_group_rows=3)
    found = report["sensitive"]["g"]
    assert found["groups"]["c"] == {"rows": 2, "positives": 1, "in_differences": False}  # below min_group_rows: counts only
    assert found["groups"]["d"] == {
        "rows": 4,
        "positives": 0,
        "roc_auc": None,
        "selection_rate": 0.25,
        "true_positive_rate": None,  # no positives: fairlearn's 0 would be a rate of nothing
        "false_positive_rate": 0.25,
        "in_differences": False,
    }
    # a: selection 3/4, TPR 1, FPR 1/2; b: selection 2/4, TPR 2/3, FPR 0
    assert found["demographic_parity_difference"] == pytest.approx(0.25)
    assert found["equalized_odds_difference"] == pytest.approx(0.5)
    assert [row["group"] for row in plot_rows] == ["g: a", "g: b"]


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=60),
    min_group_rows=st.integers(1, 6),
)
def test_rates_from_the_counted_cells_are_fairlearns_on_the_rows_to_the_last_bit(rows, min_group_rows):
    """The report weighs each (group, label, predicted label) cell by its count: every rate, ROC-AUC
    and difference is exactly what fairlearn and scikit-learn give on the rows one by one, small
    groups and groups of one class included."""
    groups, y, predicted = (list(column) for column in zip(*rows, strict=True))
    data = scored(groups, y, predicted)
    report, _ = fairness.fairness_report(data, {"g": SensitiveGroups(column="g")}, min_group_rows=min_group_rows)
    found, labels = report["sensitive"]["g"], pd.Series(groups)
    frame = MetricFrame(
        metrics={
            "selection_rate": selection_rate,
            "true_positive_rate": functools.partial(true_positive_rate, pos_label=1),
            "false_positive_rate": functools.partial(false_positive_rate, pos_label=1),
        },
        y_true=data.y,
        y_pred=data.predicted,
        sensitive_features=labels,
    )
    assert report["overall"]["selection_rate"] == frame.overall["selection_rate"]
    for group, entry in found["groups"].items():
        member = (labels == group).to_numpy()
        assert (entry["rows"], entry["positives"]) == (member.sum(), data.y[member].sum())
        if "selection_rate" in entry:
            both = 0 < entry["positives"] < entry["rows"]
            assert entry["roc_auc"] == (roc_auc_score(data.y[member], data.proba[member]) if both else None)
            for rate in fairness.RATES:
                assert entry[rate] is None or entry[rate] == frame.by_group.loc[group, rate]
    compared = labels.isin([group for group, entry in found["groups"].items() if entry["in_differences"]]).to_numpy()
    if found["demographic_parity_difference"] is not None:
        kept = {"y_true": data.y[compared], "y_pred": data.predicted[compared], "sensitive_features": labels[compared]}
        assert found["demographic_parity_difference"] == demographic_parity_difference(**kept)
        assert found["equalized_odds_difference"] == equalized_odds_difference(**kept)


def test_fewer_than_two_groups_to_compare_give_no_difference():
    rows = scored(["a"] * 4 + ["b"] * 2, [0, 1, 0, 1, 0, 1], [0, 1, 1, 1, 0, 1])
    report, plot_rows = fairness.fairness_report(rows, {"g": SensitiveGroups(column="g")}, min_group_rows=3)
    assert report["sensitive"]["g"]["demographic_parity_difference"] is None
    assert report["sensitive"]["g"]["equalized_odds_difference"] is None
    assert [row["group"] for row in plot_rows] == ["g: a"]


def test_no_groups_is_an_empty_report_and_nothing_is_scored(tmp_path):
    report, plot_rows = fairness.assess([tmp_path / "absent.parquet"], "not a model", None, Calibration(), FairnessParams(), "nowhere")
    assert report == {"threshold": 0.5, "min_group_rows": 100, "sensitive": {}} and plot_rows == []


@pytest.mark.parametrize(
    "groups, message",
    [
        (
            {"sex": SensitiveGroups(column="SEXX")},
            "fairness.groups.sex.column: 'SEXX' is not a column of the test rows (t) (did you mean 'SEX'?): "
            "name one of the table's columns in params.yaml, or remove the entry",
        ),
        (
            {"age": SensitiveGroups(column="label", bins=[1.0])},
            "fairness.groups.age.bins: 'label' holds text, not numbers: remove bins (one group per value, named by labels) or name a numeric column",
        ),
    ],
)
def test_a_column_the_test_rows_lack_or_bins_on_text_is_one_line_naming_the_key(tmp_path, groups, message):
    pd.DataFrame({"SEX": [1, 2], "label": ["a", "b"]}).to_parquet(tmp_path / "part.parquet")
    with pytest.raises(DataError) as caught:
        fairness.check_columns([tmp_path / "part.parquet"], groups, "t")
    assert str(caught.value) == message


def run_stage(folder, *args: str) -> tuple[int, str, str]:
    done = run_in_process(folder, "fairness", args)
    return done.returncode, done.stdout, done.stderr


ARGUMENTS = ["--model", "models/model.txt", "--model-schema", "models/schema.json", "--calibration", "models/calibration.json"]
ARGUMENTS += ["--test", "test.parquet"]
ARGUMENTS += ["--metrics", "fairness.json", "--plot", "plot.json", "--figure", "fairness.png"]


def stage_folder(model, folder):
    """The files the stage reads, as dvc.yaml passes them (ARGUMENTS), in `folder`; the default params."""
    text, schema, test, _ = model
    (folder / "models").mkdir()
    (folder / "models" / "model.txt").write_text(text)
    (folder / "models" / "schema.json").write_text(schema.to_json())
    (folder / "models" / "calibration.json").write_text(Calibration().to_json())  # the model's probability, labelled from 0.5
    shutil.copytree(test, folder / "test.parquet")
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_the_stage_on_a_column_that_is_not_a_feature_and_the_fix_its_message_gives(model, tmp_path):
    """The stage reads SEX from the test rows though the model never saw it; a misspelt column
    fails in one line before anything is scored, and the column it suggests works."""
    schema, arguments = model[1], ARGUMENTS
    params = stage_folder(model, tmp_path)
    params["fairness"]["groups"]["sex"]["column"] = "SEXX"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    code, _, stderr = run_stage(tmp_path, *arguments)
    assert (code, stderr.count("\n")) == (1, 1)
    assert stderr.startswith(
        "error: fairness: fairness.groups.sex.column: 'SEXX' is not a column of the test rows (test.parquet) (did you mean 'SEX'?)"
    )
    assert not (tmp_path / "fairness.json").exists()
    params["fairness"]["groups"]["sex"]["column"] = "SEX"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    code, stdout, stderr = run_stage(tmp_path, *arguments)
    assert (code, stderr) == (0, "")
    report = json.loads((tmp_path / "fairness.json").read_text())
    assert set(report["sensitive"]) == {"sex", "race", "age"} and "SEX" not in schema.feature_names
    assert json.loads((tmp_path / "plot.json").read_text()) and (tmp_path / "fairness.png").stat().st_size
    assert "sex: 2 groups (2 compared); demographic parity difference" in stdout


def test_the_stage_without_groups_writes_an_empty_report(model, tmp_path):
    params = stage_folder(model, tmp_path)
    params["fairness"]["groups"] = {}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    code, stdout, stderr = run_stage(tmp_path, *ARGUMENTS)
    assert (code, stderr) == (0, "") and "sensitive attributes: none" in stdout
    assert json.loads((tmp_path / "fairness.json").read_text()) == {"threshold": 0.5, "min_group_rows": 100, "sensitive": {}}
    assert json.loads((tmp_path / "plot.json").read_text()) == [] and (tmp_path / "fairness.png").stat().st_size


def flattened(payload, prefix=""):
    """A metrics file's keys as `dvc metrics diff` names them: nested keys joined by dots."""
    if isinstance(payload, dict):
        return {key: value for name, item in payload.items() for key, value in flattened(item, f"{prefix}{name}.").items()}
    return {prefix[:-1]: payload}


def test_a_guard_on_an_equalised_odds_difference_fails_on_a_rise_beyond_its_limit(model):
    text, schema, folder, _ = model
    report, _ = fairness.assess(parts(folder), text, schema, Calibration(), DEFAULT, str(folder))
    key = "sensitive.sex.equalized_odds_difference"  # the key params.yaml's example guard and docs name
    new = flattened(report)[key]
    for rise, failed in [(0.03, True), (0.015, False), (-0.05, False)]:
        diff = {"metrics/fairness.json": {key: {"old": new - rise, "new": new}}}
        [result] = review.check_guards(diff, [Guard(file="metrics/fairness.json", key=key, max_rise=0.02)])
        assert result.failed is failed, (rise, result.describe())
    text = review.render("main", {}, diff, [result], None, "plots/index.html", ("metrics/fairness.json", report))
    assert "## Fairness by group" in text and "<summary><code>sex</code> (<code>SEX</code>): " in text
    assert f"| equalised odds (`{key}`) | {new + 0.05:.6g} | {new:.6g} |" in text
    assert "| under 16 |" in text and "| no |" in text
