"""Performance estimated without labels (CBPE, `mlpipe.monitor.estimation`): on the default data's
later years the estimate holds the realised ROC-AUC and accuracy; the binned estimate is the exact
one; parts merge to the whole table; windows without labels get the estimate and the retrain
reason; on perfectly calibrated data the interval covers the realised metric as often as it says."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, employment_sample
from mlpipe.config import load_params
from mlpipe.data.features import build_schema, feature_table
from mlpipe.data.schema import PREDICTED_LABEL, PROBABILITY
from mlpipe.data.split import split_table
from mlpipe.model.calibration import Calibration
from mlpipe.model.metrics import roc_auc
from mlpipe.model.scoring import score_table
from mlpipe.model.training import train_model
from mlpipe.monitor import estimation
from mlpipe.monitor import report as drift_report
from mlpipe.monitor.retrain import format_verdict, retrain_verdict

# Rows per survey year: a model trained on 2015's rows is then close to calibrated on 2016-2018
# (trained on 1,500 rows it is overconfident, and the estimate overshoots by 0.03: calibration matters).
SAMPLE_ROWS = 10_000
WINDOWS = ("2016", "2017", "2018", "all")


@pytest.fixture(scope="module")
def default_data():
    """The default data's sample: a model trained on 2015 as the pipeline trains it, and the
    reference (2015) and current (2016-2018, labelled) rows scored by it as predict scores them;
    with a degraded model (two features) that scores the same current rows."""
    params = load_params(ROOT / "params.yaml")
    train, test = split_table(employment_sample(SAMPLE_ROWS), params.split, params.data.time_column, params.data.target)
    schema = build_schema(train, params.data, params.features)
    features = feature_table(train, schema)

    def scored_by(model_schema):
        booster = train_model(features[model_schema.feature_names], features[schema.target], params.train).booster
        return [score_table(rows, booster, model_schema, Calibration(), "v") for rows in (train, test)]

    reference, current = scored_by(schema)
    weak = scored_by(dataclasses.replace(schema, features=tuple(spec for spec in schema.features if spec.name in ("AGEP", "MIL"))))[1]
    degraded = current.assign(**{name: weak[name] for name in (PROBABILITY, PREDICTED_LABEL)})  # the same rows, the weak model's outputs
    settings_ = params.drift.model_copy(update={"report_windows": []})
    return schema, settings_, params.drift, reference, current, degraded


def parts(folder, table: pd.DataFrame, rows: int | None = None):
    """`table` as a folder of Parquet parts of at most `rows` rows, as predict writes it."""
    folder.mkdir()
    rows = rows or len(table)
    for index, start in enumerate(range(0, len(table), rows)):
        table.iloc[start : start + rows].to_parquet(folder / f"part-{index:05d}-0000.parquet", index=False)
    return folder


def monitored(default_data, tmp_path, current: pd.DataFrame, rows: int | None = None) -> dict:
    """The drift stage's step (`drift_report.monitor`) on the reference and `current`."""
    schema, params, _, reference, _, _ = default_data
    folder = tmp_path / f"run-{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    windows, _ = drift_report.monitor(
        parts(folder / "reference", reference), parts(folder / "current", current, rows), schema, params, None
    )
    return windows


def test_the_estimate_holds_the_realised_metrics_of_the_default_datas_later_years(default_data, tmp_path):
    """2016, 2017 and 2018 are labelled: the estimate from the probabilities alone is within its
    95% interval of the realised ROC-AUC and accuracy, and within 0.007 of them (measured: it is
    below by 0.0010 to 0.0034 for ROC-AUC and 0.0018 to 0.0061 for accuracy)."""
    windows = monitored(default_data, tmp_path, default_data[4])
    assert list(windows) == list(WINDOWS)
    for name, result in windows.items():
        estimated = result["estimated_performance"]
        assert estimated["rows"] == estimated["labelled_rows"] == result["rows"]
        assert estimated["roc_auc"]["realised"] == result["roc_auc"]  # the window's own ROC-AUC, not a second one
        for metric in ("roc_auc", "accuracy"):
            found = estimated[metric]
            assert found["low"] <= found["realised"] <= found["high"], (name, metric, found)
            assert abs(found["value"] - found["realised"]) < 0.007, (name, metric, found)
            assert 0 < found["std"] < 0.01 and found["low"] < found["value"] < found["high"]


def test_the_binned_estimate_is_the_exact_one(default_data):
    """The histogram's bins (1e-4 wide) treat their rows as tied: on 30,000 real probabilities
    (16,474 distinct) the ROC-AUC moves by 2e-8 from the exact CBPE curve over every distinct
    probability; accuracy is exact up to the sums' rounding (at most 3e-8 per row)."""
    current = default_data[4]
    probabilities = current[PROBABILITY].to_numpy()
    positive = (current[PREDICTED_LABEL] == "1").to_numpy()
    distinct, group = np.unique(probabilities, return_inverse=True)
    exact_auc = estimation.expected_roc_auc(np.bincount(group), np.bincount(group, weights=probabilities))
    exact_accuracy = np.mean(np.where(positive, probabilities, 1 - probabilities))
    binned = estimation.estimate(estimation.Histogram.of(probabilities, positive), seed=42)
    assert len(distinct) > 5_000
    assert binned["roc_auc"]["value"] == pytest.approx(exact_auc, abs=1e-6)
    assert binned["accuracy"]["value"] == pytest.approx(exact_accuracy, abs=1e-7)
    # The exact curve is CBPE's: NannyML's estimate_roc_auc (row by row, cumulative sums, trapezoids).
    order = np.argsort(probabilities, kind="stable")[::-1]
    tps = np.r_[0, np.cumsum(probabilities[order])]
    fps = np.r_[0, np.arange(1, len(order) + 1) - tps[1:]]
    assert exact_auc == pytest.approx(np.trapezoid(tps / tps[-1], fps / fps[-1]), abs=1e-12)


def test_parts_merge_to_the_whole_tables_estimate_to_the_bit(default_data, tmp_path):
    current = default_data[4]
    probabilities, positive = current[PROBABILITY].to_numpy(), (current[PREDICTED_LABEL] == "1").to_numpy()
    whole = estimation.Histogram.of(probabilities, positive)
    cut = estimation.Histogram.merge(
        [estimation.Histogram.of(probabilities[at : at + 700], positive[at : at + 700]) for at in range(0, len(current), 700)]
    )
    assert np.array_equal(whole.counts, cut.counts) and np.array_equal(whole.sums, cut.sums)
    one_part, many_parts = monitored(default_data, tmp_path, current), monitored(default_data, tmp_path, current, rows=7_000)
    for name in WINDOWS:
        assert many_parts[name]["estimated_performance"] == one_part[name]["estimated_performance"]


def test_rows_without_a_target_get_an_estimate_and_a_degraded_models_drop_is_a_retrain_reason(default_data, tmp_path):
    """As the service's prediction log: no target column at all. The full model's estimate stays
    near the test ROC-AUC, no reason; a model on two features scores the same rows, and its
    estimated ROC-AUC (0.843 for 2016) falls below the limit: a reason, in the same words as the
    realised one's. That model is calibrated too, so its estimate holds its realised ROC-AUC."""
    schema, _, drift_params, _, current, degraded = default_data
    test_auc = roc_auc(current[schema.target].to_numpy(), current[PROBABILITY].to_numpy())
    good = monitored(default_data, tmp_path, current.drop(columns=schema.target))
    bad = monitored(default_data, tmp_path, degraded.drop(columns=schema.target))
    for result in (*good.values(), *bad.values()):
        estimated = result["estimated_performance"]
        assert estimated["labelled_rows"] == 0 and estimated["rows"] == result["rows"]
        assert estimated["roc_auc"]["realised"] is None and estimated["accuracy"]["realised"] is None
        assert "roc_auc" not in result and "target_drift" not in result
    assert retrain_verdict(good, test_auc, drift_params.max_auc_drop, drift_params.max_estimated_auc_drop) == (False, [])
    retrain, reasons = retrain_verdict(bad, test_auc, drift_params.max_auc_drop, drift_params.max_estimated_auc_drop)
    assert retrain and len(reasons) == len(WINDOWS)
    estimated = bad["2016"]["estimated_performance"]["roc_auc"]
    assert estimated["high"] < test_auc - drift_params.max_estimated_auc_drop
    realised = roc_auc(current.loc[current["year"] == 2016, schema.target], degraded.loc[current["year"] == 2016, PROBABILITY])
    assert estimated["low"] <= realised <= estimated["high"]
    assert reasons[0] == (
        f"window 2016: estimated ROC-AUC {estimated['value']:.4f} (95% interval {estimated['low']:.4f}-{estimated['high']:.4f}; "
        f"no labels: estimated from the probabilities) fell {test_auc - estimated['value']:.4f} below the test ROC-AUC "
        f"{test_auc:.4f} (limit drift.max_estimated_auc_drop={drift_params.max_estimated_auc_drop})"
    )
    text = format_verdict({"windows": bad, "retrain_recommended": retrain, "reasons": reasons})
    assert f"estimated ROC-AUC {estimated['value']:.4f} (95% interval" in text and "no labels" in text


def test_a_partly_labelled_table_estimates_on_every_row_and_realises_on_the_labelled_ones(default_data, tmp_path):
    """Labels arrive late: 2017's rows have none yet and half of 2018's. 2017 is judged as a window
    without labels (no target drift, no ROC-AUC: only the estimate); 2018 gets the estimate on all
    of its rows, the same as with every label, and the realised metrics on the labelled half."""
    schema = default_data[0]
    current = default_data[4]
    year = current["year"]
    late = (year == 2017) | ((year == 2018) & (np.arange(len(current)) % 2 == 0))
    windows = monitored(default_data, tmp_path, current.assign(**{schema.target: current[schema.target].mask(late)}))
    every_label = monitored(default_data, tmp_path, current)
    assert "roc_auc" not in windows["2017"] and "target_drift" not in windows["2017"]
    assert windows["2017"]["estimated_performance"]["labelled_rows"] == 0
    half = windows["2018"]["estimated_performance"]
    labelled = current[(year == 2018) & ~late]
    assert half["rows"] == (year == 2018).sum() and half["labelled_rows"] == len(labelled)
    assert half["roc_auc"]["realised"] == windows["2018"]["roc_auc"] == roc_auc(labelled[schema.target], labelled[PROBABILITY])
    assert half["accuracy"]["realised"] == np.mean((labelled[PREDICTED_LABEL] == "1") == (labelled[schema.target] == 1))
    for metric in ("roc_auc", "accuracy"):
        assert {k: v for k, v in half[metric].items() if k != "realised"} == {
            k: v for k, v in every_label["2018"]["estimated_performance"][metric].items() if k != "realised"
        }
    assert windows["all"]["estimated_performance"]["labelled_rows"] == (~late).sum()
    # No "ROC-AUC cannot be computed" nor target finding for 2017: a window still waiting for its labels is no news.
    test_auc = roc_auc(current[schema.target].to_numpy(), current[PROBABILITY].to_numpy())
    assert retrain_verdict(windows, test_auc, 0.02, 0.03) == (False, [])


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    rows=st.integers(300, 4000),
    shape=st.tuples(st.floats(0.3, 4.0), st.floats(0.3, 4.0)),
    threshold=st.floats(0.2, 0.8),
    seed=st.integers(0, 2**16),
)
def test_on_perfectly_calibrated_data_the_interval_covers_the_realised_metrics_as_claimed(rows, shape, threshold, seed):
    """Probabilities from a beta distribution, and 40 label sets drawn from them (each row positive
    with its probability: calibrated by construction). The realised ROC-AUC and accuracy fall in
    the 95% interval in at least 32 of the 40 (fails by chance with probability 1e-4), and their
    mean is within four standard errors of the estimate."""
    rng = np.random.default_rng(seed)
    probabilities = rng.beta(*shape, rows)
    positive = probabilities >= threshold
    found = estimation.estimate(estimation.Histogram.of(probabilities, positive), seed=42)
    draws = 40
    realised = {"roc_auc": [], "accuracy": []}
    for _ in range(draws):
        labels = rng.random(rows) < probabilities
        if 0 < labels.sum() < rows:
            realised["roc_auc"].append(roc_auc(labels, probabilities))
        realised["accuracy"].append(np.mean(labels == positive))
    for metric, values in realised.items():
        values = np.array(values)
        estimate = found[metric]
        covered = np.mean((estimate["low"] <= values) & (values <= estimate["high"]))
        assert covered >= 0.8, (metric, covered, estimate)
        assert abs(values.mean() - estimate["value"]) <= 4 * estimate["std"] / np.sqrt(len(values)) + 1e-3, (
            metric,
            values.mean(),
            estimate,
        )
        assert estimate["std"] == pytest.approx(values.std(ddof=1), rel=0.5)
