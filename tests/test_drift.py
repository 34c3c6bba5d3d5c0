"""Drift verdicts: no false alarm on a random split, injected shifts flagged on exactly the
shifted columns, degraded labels trigger the retrain signal, bad input is a clear error."""

from itertools import islice
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from conftest import DEFAULT_DATA
from mlpipe.config import DataParams, DriftParams, DriftWindow, FeaturesParams
from mlpipe.data.features import build_schema, encode_target, make_features
from mlpipe.data.schema import PREDICTED_LABEL, PROBABILITY
from mlpipe.errors import ConfigError, DataError
from mlpipe.monitor import drift
from mlpipe.monitor import report as drift_report
from mlpipe.monitor.retrain import format_verdict, retrain_verdict

DATA = DataParams(
    source="x",
    target="employed",
    positive_label=1,
    time_column="year",
    id_columns=["id"],
    categorical_columns=["MAR", "RELP", "ESP", "CIT", "MIG", "MIL", "ANC", "RAC1P"],
)
PARAMS = DriftParams()


@pytest.fixture(scope="module")
def period():
    """One survey year as the monitored table: features as the model sees them, a score, the label."""
    raw = pd.read_parquet(DEFAULT_DATA)
    raw = raw[raw["year"] == 2015].reset_index(drop=True)
    schema = build_schema(raw, DATA, FeaturesParams())
    table = make_features(raw, schema)
    table["employed"] = encode_target(raw["employed"], schema)
    # A fixed, informative score: what matters here is that both sides share its distribution.
    rng = np.random.default_rng(0)
    table[PROBABILITY] = np.clip(0.25 + 0.5 * table["employed"] + rng.normal(0, 0.2, len(table)), 0, 1)
    table[PREDICTED_LABEL] = np.where(table[PROBABILITY] >= 0.5, "1", "0")  # as predict writes it
    table["year"] = raw["year"]
    return schema, table


def halves(table, seed=1):
    in_first = np.random.default_rng(seed).random(len(table)) < 0.5
    return table[in_first].reset_index(drop=True), table[~in_first].reset_index(drop=True)


def verdict(schema, reference, current, params=PARAMS):
    return drift.window_drift(reference, current, drift.monitored_columns(schema, current), params)


def as_parts(folder, table, rows=None):
    """`table` as a folder of Parquet parts of at most `rows` rows (one part by default), as the
    predict stage writes the scored tables."""
    folder.mkdir()
    rows = rows or max(len(table), 1)
    for index, start in enumerate(range(0, len(table), rows)):
        table.iloc[start : start + rows].to_parquet(folder / f"part-{index:05d}-0000.parquet", index=False)
    return folder


def test_random_split_of_one_period_shows_no_drift(period):
    schema, table = period
    reference, current = halves(table)
    result = verdict(schema, reference, current)
    assert result["dataset_drift"] is False
    assert result["drifted_columns"] == []
    assert result["prediction_drift"]["drifted"] is False and result["target_drift"]["drifted"] is False
    methods = {values["method"] for values in result["columns"].values()}
    assert methods == {"wasserstein", "jensenshannon"}  # Evidently's defaults for > 1,000 rows


def test_mean_shift_in_a_numeric_column_is_flagged_on_that_column_only(period):
    schema, table = period
    reference, current = halves(table)
    current = current.assign(AGEP=current["AGEP"] + 8)
    result = verdict(schema, reference, current)
    assert result["drifted_columns"] == ["AGEP"]
    assert result["columns"]["AGEP"]["score"] > result["columns"]["AGEP"]["threshold"]


def test_changed_category_frequencies_are_flagged_on_that_column_only(period):
    schema, table = period
    reference, current = halves(table)
    married = current["MAR"] == "1"
    flip = married & (np.random.default_rng(2).random(len(current)) < 0.6)
    mar = current["MAR"].astype(str).where(~flip, "5")
    current = current.assign(MAR=pd.Categorical(mar, categories=current["MAR"].cat.categories))
    assert verdict(schema, reference, current)["drifted_columns"] == ["MAR"]


def test_a_category_never_seen_in_reference_is_flagged(period):
    schema, table = period
    reference, current = halves(table)
    novel = np.random.default_rng(3).random(len(current)) < 0.3
    rac = current["RAC1P"].astype(str).where(~novel, "99")
    current = current.assign(RAC1P=rac)
    result = verdict(schema, reference, current)
    assert result["drifted_columns"] == ["RAC1P"]


def test_degraded_labels_show_the_auc_drop_and_recommend_retraining(period):
    schema, table = period
    reference, current = halves(table)
    flip = np.random.default_rng(4).random(len(current)) < 0.3
    current = current.assign(employed=np.where(flip, 1 - current["employed"], current["employed"]))
    stable = verdict(schema, reference, halves(table)[1])
    degraded = verdict(schema, reference, current)
    assert degraded["roc_auc"] < stable["roc_auc"] - 0.1
    retrain, reasons = retrain_verdict({"stable": stable, "degraded": degraded}, stable["roc_auc"], 0.02, 0.02)
    assert retrain is True
    assert len(reasons) == 1 and reasons[0].startswith("window degraded: ROC-AUC")
    assert degraded["auc_change"] < -0.1 and stable["auc_change"] == 0
    text = format_verdict({"windows": {"degraded": degraded}, "retrain_recommended": retrain, "reasons": reasons})
    assert "RETRAIN RECOMMENDED" in text


def test_dataset_drift_needs_the_declared_share_of_features(period):
    schema, table = period
    reference, current = halves(table)
    current = current.assign(AGEP=current["AGEP"] + 8)
    strict = DriftParams(drift_share=1 / 16)
    assert verdict(schema, reference, current, strict)["dataset_drift"] is True
    retrain, reasons = retrain_verdict({"w": verdict(schema, reference, current, strict)}, None, 0.02, 0.02)
    assert retrain and "dataset drift (1 of 16 features drifted: AGEP)" in reasons[0]


def test_stat_test_and_threshold_come_from_params(period):
    schema, table = period
    reference, current = halves(table)
    result = verdict(schema, reference, current, DriftParams(num_method="psi", num_threshold=0.2, cat_method="chisquare"))
    assert result["columns"]["AGEP"]["method"] == "psi" and result["columns"]["AGEP"]["threshold"] == 0.2
    assert result["columns"]["MAR"]["method"] == "chisquare"


def test_unknown_stat_test_names_the_key(period):
    schema, table = period
    reference, current = halves(table)
    with pytest.raises(ConfigError, match="drift.num_method: unknown stat test 'wassersteinn'"):
        verdict(schema, reference, current, DriftParams(num_method="wassersteinn"))


def test_current_table_missing_a_column_or_with_wrong_dtype(period):
    schema, table = period
    reference, current = halves(table)
    columns = drift.monitored_columns(schema, current)
    with pytest.raises(DataError, match=r"missing column\(s\) \['SCHL'\]"):
        drift.check_current(current.drop(columns=["SCHL"]), reference, columns)
    with pytest.raises(DataError, match="column 'AGEP' is object in the current table but numeric"):
        drift.check_current(current.assign(AGEP=current["AGEP"].astype(str)), reference, columns)


def test_windows_select_by_time_and_unbounded_windows_take_everything(period):
    _, table = period
    both = pd.concat([table, table.assign(year=2016)], ignore_index=True)
    assert len(drift.window_rows(both, "year", "w", DriftWindow(start=2016, end=2016))) == len(table)
    assert len(drift.window_rows(both, "year", "all", DriftWindow())) == 2 * len(table)
    assert drift.window_rows(both, "year", "w", DriftWindow(start=2020)).empty
    with pytest.raises(ConfigError, match="drift.windows.w has start/end but data.time_column is null"):
        drift.window_rows(both, None, "w", DriftWindow(start=2016))


def test_report_html_is_byte_identical_for_the_same_data(period):
    schema, table = period
    reference, current = halves(table)
    small = DriftParams(report_sample_size=500)
    columns = drift.monitored_columns(schema, current)
    first = drift_report.report_html(reference, current, columns, small)
    assert first == drift_report.report_html(reference, current, columns, small)
    assert first.startswith("<html") or "<html" in first[:500]
    assert "AGEP" in first


@pytest.mark.parametrize("seed", [0, 1])
def test_value_count_distances_equal_evidentlys_own_tests(period, seed):
    """The fast path must give Evidently's scores and verdicts, column by column."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    schema, table = period
    reference, current = halves(table, seed)
    current = current.assign(AGEP=current["AGEP"] * 1.15, probability=current[PROBABILITY] ** 1.5)
    columns = drift.monitored_columns(schema, current)
    for name in columns.all:
        kind = ColumnType.Categorical if name in columns.categorical else ColumnType.Numerical
        ours = drift.column_drift(
            reference[name], current[name], drift.CATEGORICAL if name in columns.categorical else drift.NUMERICAL, None, None, "k"
        )
        ref, cur = reference[name].dropna(), current[name].dropna()
        if kind == ColumnType.Categorical:
            ref, cur = ref.astype(str), cur.astype(str)
        test = get_stattest(ref, cur, kind, None)
        theirs = test(ref, cur, kind, None)
        assert ours["method"] == test.name, name
        assert ours["score"] == pytest.approx(float(theirs.drift_score), rel=1e-9, abs=1e-12), name
        assert ours["drifted"] == bool(theirs.drifted), name


def test_infinite_values_in_the_current_rows_are_a_finding_not_a_stable_column(period):
    schema, table = period
    reference, current = halves(table)
    current = current.assign(AGEP=current["AGEP"].where(current.index % 2 == 0, np.inf))
    result = verdict(schema, reference, current)
    assert result["columns"]["AGEP"]["drifted"] is True and result["columns"]["AGEP"]["score"] is None
    assert "current values are infinite" in result["columns"]["AGEP"]["finding"]
    retrain, reasons = retrain_verdict({"w": result}, None, 0.02, 0.02)
    assert retrain and any("column AGEP:" in reason and "infinite" in reason for reason in reasons)


def test_a_feature_with_no_value_in_the_current_rows_is_a_finding_and_the_report_still_draws(period):
    schema, table = period
    reference, current = halves(table)
    current = current.assign(AGEP=np.nan, MAR=pd.Categorical([None] * len(current), categories=current["MAR"].cat.categories))
    columns = drift.monitored_columns(schema, current)
    result = drift.window_drift(reference, current, columns, PARAMS)
    for name in ("AGEP", "MAR"):
        assert result["columns"][name]["drifted"] is True
        assert result["columns"][name]["finding"] == "no usable value in the current rows (all missing or not finite)"
    cells = {record["column"]: record for record in drift.score_records({"w": result})}
    assert cells["AGEP"]["score_over_threshold"] is None and cells["SCHL"]["score_over_threshold"] is not None
    html = drift_report.report_html(reference, current, columns, DriftParams(report_sample_size=500))
    assert "SCHL" in html and "AGEP" not in html  # drawn without the columns Evidently cannot draw


def test_a_test_period_whose_labels_hold_one_class_is_a_retrain_reason(period):
    schema, table = period
    reference, current = halves(table)
    current = current[current["employed"] == 1].reset_index(drop=True)
    result = verdict(schema, reference, current)
    assert result["roc_auc"] is None and result["target_drift"]["drifted"] is True
    retrain, reasons = retrain_verdict({"w": result}, 0.9, 0.02, 0.02)
    assert retrain
    assert any("target drift" in reason for reason in reasons)
    assert any("ROC-AUC cannot be computed" in reason for reason in reasons)


def test_memory_does_not_depend_on_the_longest_category_value(period):
    """Two 50 KB cells among 6,000 rows: a fixed-width string array would take 6,000 x 50,000 x 4 bytes."""
    import tracemalloc

    schema, table = period
    reference, current = (part.head(3000).copy() for part in halves(table))
    long_value = "z" * 50_000
    levels = [*current["MAR"].cat.categories, long_value]
    for part in (reference, current):
        mar = part["MAR"].astype(object)
        mar.iloc[[5, 10]] = long_value
        part["MAR"] = pd.Categorical(mar, categories=levels)
    columns = drift.monitored_columns(schema, current)
    tracemalloc.start()
    drift.window_drift(reference, current, columns, PARAMS)
    drift_report.report_sample(current, columns, PARAMS).pipe(drift_report.drawable_values, columns)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100 * 2**20, f"{peak / 2**20:.0f} MB"


def test_a_stat_test_that_fails_on_small_data_is_a_finding():
    """Evidently's chi-square (its choice below 1,000 rows) raises on some small tables (found by
    tests/test_properties.py); the column is then a finding, not a traceback."""
    levels = ["", "-4850", "0", "\x00"]  # as the model's schema fixes them
    reference = pd.Series(pd.Categorical(["0"] * 25 + ["-4850", "", "\x00"], categories=levels))
    current = pd.Series(pd.Categorical(["0", "0"], categories=levels))
    result = drift.column_drift(reference, current, drift.CATEGORICAL, None, None, "drift.cat_method")
    assert result["drifted"] is True and result["finding"].startswith("the chisquare score could not be computed")


def test_one_report_worker_per_reported_window_and_core():
    assert drift_report.worker_count(windows=0, cores=2) == 0
    assert drift_report.worker_count(windows=4, cores=2) == 2
    assert drift_report.worker_count(windows=1, cores=8) == 1
    assert drift_report.worker_count(windows=3, cores=8) == 3


def test_only_the_windows_in_report_windows_get_a_report(period, tmp_path):
    """Verdicts for every window; reports for the named ones; with [] no report and no worker."""
    schema, table = period
    reference, current = (as_parts(tmp_path / name, half) for name, half in zip(("reference", "current"), halves(table), strict=True))
    windows = {"first": {"end": 2015}, "all": {}}
    drawn = []

    class Recorder:  # an executor that records what it is asked to draw instead of drawing it
        def submit(self, function, reference_rows, current_rows, *args):
            drawn.append(len(current_rows))
            return SimpleNamespace(result=lambda: "<html>")

    for report_windows, reports in ((["all"], ["all"]), (None, ["first", "all"]), ([], [])):
        params = DriftParams(windows=windows, report_windows=report_windows)
        verdicts, html = drift_report.monitor(reference, current, schema, params, Recorder() if reports else None)
        assert list(verdicts) == ["first", "all"] and list(html) == reports
        assert drift_report.worker_count(len(params.reported), cores=2) == min(len(reports), 2)


def test_a_report_draws_at_most_report_max_columns_features_the_drifted_ones_first(period, tmp_path):
    """5,000 features took Evidently over 10 minutes (issue 28): past drift.report_max_columns the
    report draws that many, the window's drifted features first, after its verdicts on all."""
    schema, table = period
    reference, current = halves(table)
    current = current.assign(SCHL=current["SCHL"] + 8)  # the second feature: the first is AGEP
    reference, current = as_parts(tmp_path / "reference", reference), as_parts(tmp_path / "current", current)
    asked = []

    class Recorder:  # records the columns each report would draw
        def submit(self, function, reference_rows, current_rows, columns, params):
            asked.append((columns, list(current_rows.columns)))
            return SimpleNamespace(result=lambda: "<html>")

    for limit, drawn in ((1, ["SCHL"]), (3, ["AGEP", "SCHL", "MAR"])):
        verdicts, _ = drift_report.monitor(
            reference, current, schema, DriftParams(windows={"all": {}}, report_max_columns=limit), Recorder()
        )
        assert verdicts["all"]["drifted_columns"] == ["SCHL"] and len(verdicts["all"]["columns"]) == len(schema.feature_names)
        columns, sampled = asked[-1]
        assert columns.features == drawn
        assert set(columns.numerical) | set(columns.categorical) == {*drawn, PROBABILITY, "employed"} and sampled == columns.all
    drift_report.monitor(reference, current, schema, DriftParams(windows={"all": {}}), Recorder())
    assert asked[-1][0].features == schema.feature_names  # within the limit: every feature, as before


def monitored_table(raw: pd.DataFrame, data: DataParams) -> tuple:
    """A table as the drift stage sees it: the model's features, the 0/1 label and a score that
    depends on the label (so that both sides of any random split share its distribution)."""
    schema = build_schema(raw, data, FeaturesParams())
    table = make_features(raw, schema)
    table[schema.target] = encode_target(raw[schema.target], schema)
    noise = np.random.default_rng(0).normal(0, 0.2, len(table))
    table[PROBABILITY] = np.clip(0.3 + 0.4 * table[schema.target] + noise, 0, 1)
    table[PREDICTED_LABEL] = np.where(table[PROBABILITY] >= 0.5, "1", "0")
    return schema, table


def static_table(name: str) -> tuple:
    if name == "employment":
        from conftest import employment_sample

        return monitored_table(employment_sample(), DATA)
    if name == "breast cancer":
        from sklearn.datasets import load_breast_cancer

        return monitored_table(load_breast_cancer(as_frame=True).frame, DataParams(source="x", target="target", positive_label=1))
    if name == "messy people":
        from messy_table import TARGET, messy_people_table

        # Every column but the id, leaks, names and text dates included: a random split moves none of them.
        return monitored_table(messy_people_table(3000), DataParams(source="x", target=TARGET, positive_label=1, id_columns=["id"]))
    rng = np.random.default_rng(7)
    rows = 3000
    raw = pd.DataFrame(
        {
            "city": rng.choice([f"c{i}" for i in range(60)], rows),
            "street": [f"s{value}" for value in rng.zipf(1.3, rows) % 5000],
            "code": [f"k{value}" for value in rng.integers(0, 2500, rows)],
            "color": rng.choice(["red", "green", "blue", "grey"], rows, p=[0.4, 0.3, 0.2, 0.1]),
            "flag": rng.choice(["y", "n"], rows),
            "income": rng.lognormal(10, 1, rows),
            "visits": rng.poisson(2, rows),
            "score": rng.integers(0, 8, rows),
            "y": rng.integers(0, 2, rows),
        }
    )
    return monitored_table(raw, DataParams(source="x", target="y", positive_label=1))


def random_splits(table: pd.DataFrame, seed: int):
    """Two random splits of one static table: halves, and a window of 200 rows against the rest."""
    rng = np.random.default_rng(seed)
    in_first = rng.random(len(table)) < 0.5
    window = np.zeros(len(table), dtype=bool)
    window[rng.choice(len(table), 200, replace=False)] = True
    for reference, current in ((in_first, ~in_first), (~window, window)):
        yield table[reference].reset_index(drop=True), table[current].reset_index(drop=True)


@pytest.mark.parametrize("name", ["employment", "breast cancer", "messy people", "high-cardinality categories"])
def test_a_random_split_of_a_static_table_drifts_no_column_and_recommends_no_retraining(name):
    """A random split has no drift by construction: over several seeds and both split shapes, at
    most 5% of the monitored columns (features, prediction and label) may drift by chance, and no
    window may recommend retraining. Before the chance check and the p-value correction, 44% of the
    messy table's columns drifted (Jensen-Shannon on names, text dates and case numbers; chi-square
    where nulls leave the reference under 1,000 rows) and every window said retrain."""
    schema, table = static_table(name)
    drifted, monitored = [], 0
    for seed in range(4):
        for reference, current in random_splits(table, seed):
            result = drift.window_drift(reference, current, drift.monitored_columns(schema, current), PARAMS)
            columns = {**result["columns"], "(prediction)": result["prediction_drift"], "(target)": result["target_drift"]}
            drifted += [column for column, values in columns.items() if values["drifted"]]
            monitored += len(columns)
            assert retrain_verdict({"w": result}, None, 1.0, 1.0) == (False, [])
    assert len(drifted) <= 0.05 * monitored, f"{len(drifted)} of {monitored} columns drifted: {drifted}"


def test_a_real_change_in_a_small_window_is_still_flagged():
    """The chance check must not hide real drift: 200 current rows whose city moved to a few levels
    and whose income doubled are flagged on those two columns."""
    schema, table = static_table("high-cardinality categories")
    reference, current = next(islice(random_splits(table, 0), 1, None))
    moved = current["city"].astype(str).where(current.index % 2 == 0, "c1")
    current = current.assign(city=pd.Categorical(moved, categories=current["city"].cat.categories), income=current["income"] * 2)
    result = drift.window_drift(reference, current, drift.monitored_columns(schema, current), PARAMS)
    assert sorted(result["drifted_columns"]) == ["city", "income"]
    assert result["columns"]["income"]["score"] > result["columns"]["income"]["chance_score"]


def test_a_distance_that_chance_reaches_is_not_drift():
    """Jensen-Shannon between two halves of a 2,400-level column is far above 0.1 although nothing
    changed: re-splits of the pooled rows reach it, so the column is not drifted (and says why)."""
    values = pd.Series([f"k{value}" for value in np.random.default_rng(1).integers(0, 2400, 3000)])
    result = drift.column_drift(values[:2000], values[2000:], drift.CATEGORICAL, None, None, "drift.cat_method")
    assert result["method"] == "jensenshannon" and result["score"] > 0.3
    assert result["drifted"] is False and result["chance_score"] >= result["score"]
    unchecked = drift.column_drift(values[:2000], values[2000:], drift.CATEGORICAL, None, None, "k", drift.Chance(draws=0))
    assert unchecked["drifted"] is True  # Evidently's verdict, which the check corrects


@pytest.mark.parametrize("rows", [700, 4000])
def test_a_table_cut_into_parts_gets_the_whole_tables_verdicts(period, rows):
    """The drift stage judges from per-part summaries, merged (`window_summary`, `merged_window`):
    cut anywhere, a table gets the verdicts of the whole, to the bit, chance scores and ROC-AUC included."""
    schema, table = period
    reference, current = halves(table)
    current = current.assign(AGEP=current["AGEP"] + 3, MAR=current["MAR"].where(current.index % 3 > 0, current["MAR"].iloc[0]))
    columns = drift.monitored_columns(schema, current)

    def cut(rows_of):
        return drift.merged_window(
            [drift.window_summary(rows_of.iloc[at : at + rows], columns) for at in range(0, len(rows_of), rows)], columns
        )

    whole = drift.window_drift(reference, current, columns, PARAMS)
    assert whole["columns"]["AGEP"]["drifted"] and "chance_score" in whole["columns"]["AGEP"]
    assert drift.window_verdicts(cut(reference), cut(current), columns, PARAMS) == whole


def test_p_values_are_corrected_for_the_number_of_columns_tested():
    """Twenty stable columns give p-values spread over (0, 1), and one of them below 0.05 by chance
    (here 0.03): once corrected for the 21 tests (Benjamini-Hochberg) it no longer drifts, while a
    p-value of 1e-6 still does. Distances are left alone."""
    stable = {f"c{i}": drift.column_verdict("numerical", "ks", 0.03 + 0.045 * i, 0.05, i == 0, drift.P_VALUE) for i in range(20)}
    verdicts = {
        **stable,
        "moved": drift.column_verdict("numerical", "ks", 1e-6, 0.05, True, drift.P_VALUE),
        "far": drift.column_verdict("numerical", "wasserstein", 0.4, 0.1, True, drift.DISTANCE),
    }
    corrected = drift.corrected_p_values(verdicts)
    assert [name for name, values in corrected.items() if values["drifted"]] == ["moved", "far"]
    assert corrected["c0"]["adjusted_p_value"] == pytest.approx(0.03 * 21 / 2)
    assert "adjusted_p_value" not in corrected["far"]


def test_a_reference_without_usable_values_is_a_finding_but_not_drift_nor_a_retrain_reason(period):
    """No usable value in the reference is the reference's problem (featurize drops such a column
    before training): nothing about the current data changed. A current window without a usable
    value is real news and stays a retrain reason."""
    schema, table = period
    reference, current = halves(table)
    result = verdict(schema, reference.assign(AGEP=np.nan), current)
    assert result["columns"]["AGEP"] == {
        "kind": "numerical",
        "method": None,
        "score": None,
        "threshold": None,
        "drifted": False,
        "finding": "no usable value in the reference rows (all missing or not finite)",
    }
    assert result["drifted_columns"] == [] and retrain_verdict({"w": result}, None, 0.02, 0.02) == (False, [])
    current_side = verdict(schema, reference, current.assign(AGEP=np.nan))
    retrain, reasons = retrain_verdict({"w": current_side}, None, 0.02, 0.02)
    assert retrain and reasons == ["window w: column AGEP: no usable value in the current rows (all missing or not finite)"]


def test_a_negative_drift_seed_is_refused_by_the_params_check():
    """numpy refuses a negative seed with a traceback: the params check names the key first."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="seed"):
        DriftParams(seed=-1)
