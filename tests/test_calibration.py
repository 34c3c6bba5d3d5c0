"""The calibration and the decision threshold (`mlpipe.model.calibration`): scikit-learn's own
fits on the default data, each objective against a brute-force search, the JSON file."""

import hashlib
import json

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator

from conftest import ROOT, employment_sample
from mlpipe.config import CalibrationParams, EvaluateParams, TrainParams, load_params, parse_params, read_params_file
from mlpipe.data.features import build_schema, feature_table
from mlpipe.errors import ArtifactError, ConfigError, DataError
from mlpipe.model import training
from mlpipe.model.booster import lightgbm_names, model_to_text
from mlpipe.model.calibration import Calibration, choose_threshold, fit
from mlpipe.model.evaluation import evaluate_scores
from mlpipe.model.metrics import binary_metrics

FEATURES = ["AGEP", "SCHL", "MAR", "SEX", "DIS", "RAC1P"]


@pytest.fixture(scope="module")
def employment():
    """A LightGBM model on a sample of the default data; a calibration slice and later rows."""
    table = employment_sample(rows_per_year=1500)
    X, y = table[FEATURES].to_numpy(float), table["employed"].to_numpy()
    model = lgb.LGBMClassifier(n_estimators=60, verbose=-1, num_threads=1).fit(X[:3000], y[:3000])
    return model, (X[3000:4500], y[3000:4500]), X[4500:]


class ProbabilityOnly(ClassifierMixin, BaseEstimator):
    """The model seen through its probabilities only, so scikit-learn's isotonic calibration fits
    on the probability (as ours does), not on LightGBM's decision function (its log-odds)."""

    def __init__(self, model=None):
        self.model = model

    def fit(self, X, y):
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):
        return self.model.predict_proba(X)

    def predict(self, X):
        return self.model.predict(X)


@pytest.mark.parametrize(("method", "tolerance"), [("isotonic", 1e-12), ("sigmoid", 1e-7)])
def test_the_calibration_is_scikit_learns_calibrated_classifier(employment, method, tolerance):
    model, (X_slice, y_slice), X_later = employment
    # Platt's sigmoid on LightGBM's decision function (the log-odds), isotonic on the probability.
    frozen = FrozenEstimator(model if method == "sigmoid" else ProbabilityOnly(model).fit(X_slice, y_slice))
    expected = CalibratedClassifierCV(frozen, method=method).fit(X_slice, y_slice).predict_proba(X_later)[:, 1]
    ours = fit(y_slice, model.predict_proba(X_slice)[:, 1], method, {"objective": "f1"})
    found = ours.apply(model.predict_proba(X_later)[:, 1])
    assert np.abs(found - expected).max() < tolerance
    # Read back from its JSON, it maps and labels every row the same.
    again = Calibration.from_dict(json.loads(ours.to_json()))
    assert again == ours
    assert np.array_equal(again.label(again.apply(model.predict_proba(X_later)[:, 1])), found >= ours.threshold)
    assert ours.fitted_on["brier_calibrated"] < ours.fitted_on["brier_raw"]


def test_none_is_the_models_probability():
    proba = np.array([0.01, 0.5, 0.99])
    assert np.array_equal(Calibration().apply(proba), proba)
    assert Calibration(threshold=0.5).label(proba).tolist() == [False, True, True]


def _counts(labels, scores, threshold):
    chosen = scores >= threshold
    tp, fp = int((chosen & (labels == 1)).sum()), int((chosen & (labels == 0)).sum())
    return tp, fp, int(labels.sum()) - tp


def _value(objective, labels, scores, threshold, rule):
    tp, fp, fn = _counts(labels, scores, threshold)
    precision, recall = (tp / (tp + fp) if tp + fp else None), tp / (tp + fn)
    return {
        "f1": 2 * tp / (2 * tp + fp + fn),
        "cost": -(rule["false_positive_cost"] * fp + rule["false_negative_cost"] * fn),
        "precision": recall if precision is not None and precision >= rule["target"] else None,
        "recall": precision if precision is not None and recall >= rule["target"] else None,
    }[objective]


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 20)), min_size=2, max_size=60).filter(
        lambda pairs: len({label for label, _ in pairs}) == 2
    ),
    objective=st.sampled_from(["f1", "cost", "precision", "recall"]),
    target=st.sampled_from([0.3, 0.5, 0.8, 0.95, 1.0]),
    costs=st.tuples(st.sampled_from([0.5, 1.0, 5.0]), st.sampled_from([0.5, 1.0, 5.0])),
)
def test_each_objective_finds_the_best_threshold_a_search_of_every_one_finds(pairs, objective, target, costs):
    labels = np.array([label for label, _ in pairs])
    scores = np.array([score / 20 for _, score in pairs])  # ties on purpose
    rule = {"objective": objective, "target": target, "false_positive_cost": costs[0], "false_negative_cost": costs[1]}
    candidates = [*np.unique(scores), np.inf]  # every distinct labelling, nothing positive last
    values = [_value(objective, labels, scores, t, rule) for t in candidates]
    reachable = [value for value in values if value is not None]
    if not reachable:
        with pytest.raises(ConfigError, match=r"^calibration\.threshold\.target: no threshold reaches"):
            choose_threshold(labels, scores, rule)
        return
    threshold = choose_threshold(labels, scores, rule)
    assert _value(objective, labels, scores, threshold, rule) == pytest.approx(max(reachable))


def test_a_fixed_threshold_is_the_value_and_one_class_cannot_choose():
    assert choose_threshold(np.array([0, 1]), np.array([0.2, 0.7]), {"objective": "fixed", "value": 0.3}) == 0.3
    with pytest.raises(ConfigError, match=r"^calibration\.threshold\.objective: f1 needs both classes"):
        choose_threshold(np.array([1, 1]), np.array([0.2, 0.7]), {"objective": "f1"})


def test_the_file_reads_back_and_a_damaged_one_is_an_artifact_error(tmp_path, employment):
    model, (X_slice, y_slice), _ = employment
    calibration = fit(y_slice, model.predict_proba(X_slice)[:, 1], "isotonic", {"objective": "precision", "target": 0.8})
    path = tmp_path / "calibration.json"
    path.write_text(calibration.to_json())
    assert Calibration.read(path) == calibration
    path.write_text(calibration.to_json()[:200])
    with pytest.raises(ArtifactError, match=r"the calibration '.*calibration.json' is corrupt or truncated .*dvc repro train"):
        Calibration.read(path)
    broken = {**calibration.to_dict(), "mapping": {"x": [0.2, 0.1], "y": [0.0, 1.0]}}
    path.write_text(json.dumps(broken))
    with pytest.raises(ArtifactError, match="not in increasing order"):
        Calibration.read(path)
    with pytest.raises(DataError, match=r"does not exist: run `dvc repro train`"):
        Calibration.read(tmp_path / "missing.json")


# -- the slice in training ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def training_parts():
    """The default data's training period (a sample) as 3 parts of features, as featurize writes them."""
    params = load_params(ROOT / "params.yaml")
    table = employment_sample(rows_per_year=1500)
    train = table[table["year"] <= params.split.train_until]
    schema = build_schema(train, params.data, params.features)
    train = feature_table(train, schema)
    return [train.iloc[block] for block in np.array_split(np.arange(len(train)), 3)], schema


def test_without_a_calibration_slice_the_model_is_the_one_trained_before_calibration_came(training_parts):
    """md5 of the model this sample gave before the calibration slice existed (at f3bd64d)."""
    parts, schema = training_parts
    off = CalibrationParams(method="none", fraction=0, threshold={"objective": "fixed", "value": 0.5})
    for calibration in (off, training.NO_CALIBRATION):
        trained = training.train(parts, schema.feature_names, schema.target, TrainParams(), calibration)
        assert hashlib.md5(model_to_text(trained.booster).encode()).hexdigest() == "8f83d18bf12171c6e4f63fcca7071ed4"
        assert trained.calibration == Calibration("none", {}, 0.5, off.threshold.model_dump(), {})


def test_the_calibration_slice_is_never_fitted_and_the_calibration_is_fitted_on_its_scores(training_parts):
    parts, schema = training_parts
    names, target, params, calibration = schema.feature_names, schema.target, TrainParams(), CalibrationParams()
    trained = training.train(parts, names, target, params, calibration)
    rows = training.Rows(names, target, params, calibration_fraction=calibration.fraction)
    slices = [training.holdout_masks(part[target].astype("int64"), index, rows) for index, part in enumerate(parts)]
    for held in slices:
        assert held.calibration.any() and not (held.calibration & (held.validation | held.fitted | held.sample)).any()
    # Other feature values on the slice's rows (the slices follow the labels only): the same model.
    changed = [part.assign(AGEP=np.where(held.calibration, 0, part["AGEP"])) for part, held in zip(parts, slices, strict=True)]
    again = training.train(changed, names, target, params, calibration)
    assert model_to_text(again.booster) == model_to_text(trained.booster)
    assert again.calibration != trained.calibration
    # The calibration is `fit` on the final model's probabilities of the slice's rows.
    chosen = pd.concat([part[held.calibration] for part, held in zip(parts, slices, strict=True)])
    proba = trained.booster.predict(chosen[names].set_axis(lightgbm_names(names), axis=1))
    expected = fit(chosen[target].to_numpy(), proba, calibration.method, calibration.threshold.model_dump(), calibration.bins)
    assert trained.calibration == expected
    assert trained.summary["calibration_rows"] == len(chosen) and trained.summary["threshold"] == expected.threshold


def test_a_calibration_slice_with_one_class_is_one_line_and_its_fix_works(training_parts):
    parts, schema = training_parts
    every = pd.concat(parts)
    few = pd.concat([every[every[schema.target] == 1].head(214), every[every[schema.target] == 0].head(6)])  # 5% of 6 rounds to 0
    calibration = CalibrationParams(fraction=0.05)
    with pytest.raises(DataError, match=r"too few to hold out a calibration slice with both classes .*set calibration\.fraction: 0"):
        training.train_model(
            few[schema.feature_names], few[schema.target], TrainParams(early_stopping_rounds=0, validation_fraction=0), calibration
        )
    fixed = CalibrationParams(fraction=0, method="none", threshold={"objective": "fixed"})
    training.train_model(few[schema.feature_names], few[schema.target], TrainParams(early_stopping_rounds=0, validation_fraction=0), fixed)


def test_an_old_evaluate_threshold_is_one_line_and_its_fix_keeps_the_threshold():
    raw = read_params_file(ROOT / "params.yaml")
    raw["evaluate"] = {**raw["evaluate"], "threshold": 0.7}
    with pytest.raises(ConfigError) as caught:
        parse_params(raw)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("params.yaml: 'evaluate.threshold' is gone:")
    assert "set calibration.threshold.objective: fixed and calibration.threshold.value: 0.7" in message
    del raw["evaluate"]["threshold"]  # the fix it gives
    raw["calibration"]["threshold"].update(objective="fixed", value=0.7)
    assert parse_params(raw).calibration.threshold.value == 0.7


def test_evaluate_reports_the_calibrated_probabilities_at_the_threshold_and_the_raw_ones_beside(employment):
    model, (X_slice, y_slice), X_later = employment
    calibration = fit(y_slice, model.predict_proba(X_slice)[:, 1], "isotonic", {"objective": "f1"})
    raw = model.predict_proba(X_slice)[:, 1]
    report, _ = evaluate_scores(y_slice, raw, None, EvaluateParams(), calibration=calibration)
    calibrated = calibration.apply(raw)
    expected = binary_metrics(y_slice, calibrated, calibration.threshold)
    assert report["threshold"] == calibration.threshold and report["calibration"] == "isotonic"
    assert report["test"]["f1"] == pytest.approx(expected["f1"]) and report["test"]["brier"] == pytest.approx(expected["brier"])
    assert report["test"]["brier_raw"] == pytest.approx(np.mean((raw - y_slice) ** 2))
    # The slice's own figures, fitted and reported there, are the same numbers.
    assert report["test"]["brier"] == pytest.approx(calibration.fitted_on["brier_calibrated"], abs=1e-6)
    assert report["test"]["f1"] == pytest.approx(calibration.fitted_on["at_threshold"]["f1"], abs=1e-6)
