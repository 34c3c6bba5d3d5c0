"""The calibration and the decision threshold (`mlpipe.model.calibration`): scikit-learn's own
fits on the default data, each objective against a brute-force search, the JSON file."""

import json

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator

from conftest import employment_sample
from mlpipe.errors import ArtifactError, ConfigError, DataError
from mlpipe.model.calibration import Calibration, choose_threshold, fit

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
