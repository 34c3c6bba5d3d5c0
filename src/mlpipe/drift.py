"""Drift between a reference period and current windows, with Evidently 0.7's statistical tests.

Verdicts use Evidently's statistical tests, chosen the way its `DataDriftPreset` chooses them
(by column type, row count and number of distinct values), on every row. For Evidently's
default tests on large data (normed Wasserstein distance for numeric columns, Jensen-Shannon
distance for categorical ones) the same statistics are computed exactly from each column's
value counts, which is what makes a million rows take a second instead of a minute; any other
test, and small data, go through Evidently's own functions. The HTML reports are drawn apart,
by `mlpipe.drift_report`.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlpipe.config import DriftParams, DriftWindow
from mlpipe.errors import ConfigError, DataError, first_line
from mlpipe.metrics import binary_metrics
from mlpipe.schema import PROBABILITY, FeatureSchema, category_strings
from mlpipe.times import time_values

log = logging.getLogger(__name__)

# Evidently is imported where it is used, not here: importing it takes seconds, and the
# drift stage overlaps that import (in report worker processes) with reading and verdicts.
NUMERICAL, CATEGORICAL = "numerical", "categorical"


@dataclass(frozen=True)
class MonitoredColumns:
    numerical: list[str]
    categorical: list[str]
    features: list[str]
    prediction: str
    target: str | None

    @property
    def all(self) -> list[str]:
        return [*self.features, self.prediction, *([self.target] if self.target else [])]


def monitored_columns(schema: FeatureSchema, current: pd.DataFrame, labelled: bool | None = None) -> MonitoredColumns:
    """Features as the model sees them, its predicted probability, and the label when present
    (`labelled` says so for a `current` that holds only some of the rows)."""
    if labelled is None:
        labelled = schema.target in current.columns and bool(current[schema.target].notna().any())
    target = schema.target if labelled else None
    categorical = [*schema.categorical_names, *([target] if target else [])]
    numerical = [name for name in schema.feature_names if name not in schema.categorical_names] + [PROBABILITY]
    return MonitoredColumns(numerical, categorical, schema.feature_names, PROBABILITY, target)


def check_current(current: pd.DataFrame, reference: pd.DataFrame, columns: MonitoredColumns) -> None:
    """The current table must carry every monitored column, with the reference's kind of values."""
    missing = [name for name in columns.all if name not in current.columns]
    if missing:
        raise DataError(f"current table is missing column(s) {missing} that the reference has")
    for name in columns.numerical:
        if not pd.api.types.is_numeric_dtype(current[name]) and pd.api.types.is_numeric_dtype(reference[name]):
            raise DataError(f"column '{name}' is {current[name].dtype} in the current table but numeric in the reference")


def window_rows(current: pd.DataFrame, time_column: str | None, name: str, window: DriftWindow) -> pd.DataFrame:
    if window.start is None and window.end is None:
        return current
    if not time_column:
        raise ConfigError(f"drift.windows.{name} has start/end but data.time_column is null: use a window without bounds")
    times = time_values(current[time_column])
    keep = pd.Series(True, index=current.index)
    if window.start is not None:
        keep &= times >= _bound(window.start, times)
    if window.end is not None:
        keep &= times <= _bound(window.end, times)
    return current[keep]


def _bound(value, times: pd.Series):
    return pd.Timestamp(value) if pd.api.types.is_datetime64_any_dtype(times) else value


# Evidently's defaults: above this many reference rows it uses distances, not p-value tests.
LARGE_SAMPLE_ROWS = 1000
DEFAULT_THRESHOLD = 0.1  # of both wasserstein and jensenshannon


@dataclass(frozen=True)
class Side:
    """One side of a column's comparison: its rows, how many are infinite, and its usable values
    (`usable_values`), either as they are (the local engine) or as counts per value, which the
    dask engine merges exactly from its parts (`Side.merge`)."""

    rows: int
    infinite: int
    values: pd.Series | None = None
    counts: pd.Series | None = None

    @classmethod
    def of(cls, values: pd.Series, kind: str) -> Side:
        infinite = _count_infinite(values) if kind == NUMERICAL else 0
        return cls(len(values), infinite, values=usable_values(values, kind))

    @classmethod
    def counted(cls, values: pd.Series, kind: str) -> Side:
        side = cls.of(values, kind)
        return cls(side.rows, side.infinite, counts=side.value_counts())

    @classmethod
    def merge(cls, sides: list[Side]) -> Side:
        from mlpipe.partitioned import concat_counts

        return cls(
            sum(side.rows for side in sides), sum(side.infinite for side in sides), counts=concat_counts([side.counts for side in sides])
        )

    @property
    def usable(self) -> int:
        return len(self.values) if self.values is not None else int(self.counts.sum())

    def value_counts(self) -> pd.Series:
        return self.counts if self.counts is not None else self.values.value_counts()

    def as_values(self, name: str) -> pd.Series:
        if self.values is not None:
            return self.values
        return pd.Series(np.repeat(self.counts.index.to_numpy(), self.counts.to_numpy()), name=name)


def column_drift(
    reference: pd.Series, current: pd.Series, kind: str, method: str | None, threshold: float | None, key: str
) -> dict[str, Any]:
    """Evidently's stat test for one column (`kind` is "numerical" or "categorical"), on all rows."""
    return side_drift(Side.of(reference, kind), Side.of(current, kind), kind, method, threshold, key, str(reference.name))


def side_drift(
    reference: Side, current: Side, kind: str, method: str | None, threshold: float | None, key: str, name: str
) -> dict[str, Any]:
    """Evidently's stat test for one column, from both sides' values or counts.

    A test that cannot run (no usable value on one side) or gives no finite score is a finding:
    the column counts as drifted and says why, never silently as stable.
    """
    if current.infinite and not reference.infinite:
        return _finding(kind, f"{current.infinite:,} of {current.rows:,} current values are infinite, and the reference has none")
    for side, values in (("reference", reference), ("current", current)):
        if not values.usable:
            return _finding(kind, f"no usable value in the {side} rows (all missing or not finite)")
    if method is None and reference.usable > LARGE_SAMPLE_ROWS:
        if kind == NUMERICAL and reference.values is not None and _continuous(reference.values):
            # Many distinct values: counting them gains nothing, sorting does the job.
            distance, score = (
                "wasserstein",
                sorted_wasserstein(reference.values.to_numpy(dtype=float), current.values.to_numpy(dtype=float)),
            )
        else:
            distance, score = default_distance(reference.value_counts(), current.value_counts(), kind)
        limit = DEFAULT_THRESHOLD if threshold is None else threshold
        verdict = _verdict(kind, distance, score, limit, score >= limit)
    else:
        verdict = evidently_test(reference.as_values(name), current.as_values(name), kind, method, threshold, key)
    if "finding" not in verdict and not np.isfinite(verdict["score"]):
        return _finding(kind, f"the {verdict['method']} score could not be computed", verdict["method"])
    return verdict


def _count_infinite(values: pd.Series) -> int:
    return int(np.isinf(values.dropna().to_numpy(dtype=float)).sum())


def usable_values(values: pd.Series, kind: str) -> pd.Series:
    """The values a stat test can use: present, finite numbers, and categories as text."""
    if kind == CATEGORICAL:
        return category_values(values.dropna())
    numbers = values.dropna()
    return numbers[np.isfinite(numbers.to_numpy(dtype=float))]


def evidently_test(
    reference: pd.Series, current: pd.Series, kind: str, method: str | None, threshold: float | None, key: str
) -> dict[str, Any]:
    """Run Evidently's own stat test function on the rows (small data, or a method named in params)."""
    from evidently.legacy.calculations.stattests.registry import StatTestNotFoundError, get_stattest
    from evidently.legacy.core import ColumnType

    column_type = ColumnType.Categorical if kind == CATEGORICAL else ColumnType.Numerical
    try:
        test = get_stattest(reference, current, column_type, method)
    except StatTestNotFoundError:
        raise ConfigError(
            f"{key}: unknown stat test '{method}' (Evidently knows e.g. wasserstein, ks, psi, jensenshannon, chisquare)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - Evidently signals a method unfit for the column type this way
        raise ConfigError(f"{key}: stat test '{method}' cannot be used for {kind} column '{reference.name}': {exc}") from None
    try:
        result = test(reference, current, column_type, threshold)
    except (ValueError, ZeroDivisionError) as exc:  # e.g. scipy's chi-square on a level the reference never had
        return _finding(kind, f"the {test.name} score could not be computed: {first_line(exc)}", test.name)
    return _verdict(kind, test.name, result.drift_score, result.actual_threshold, result.drifted)


def _verdict(kind: str, method: str, score: float, threshold: float, drifted: bool) -> dict[str, Any]:
    return {"kind": kind, "method": method, "score": float(score), "threshold": float(threshold), "drifted": bool(drifted)}


def _finding(kind: str, reason: str, method: str | None = None) -> dict[str, Any]:
    return {"kind": kind, "method": method, "score": None, "threshold": None, "drifted": True, "finding": reason}


def _continuous(values: pd.Series) -> bool:
    """More than 1,000 distinct values among the first 10,000: certainly more than five, and
    too many for value counts to be cheaper than sorting."""
    return values.iloc[:10_000].nunique() > 1000


def category_values(values: pd.Series) -> pd.Series:
    """Categories as text, each distinct value converted once (fast on millions of rows), in an
    object column: `astype(str)` on a categorical builds a fixed-width array of rows x the longest
    value, and two 200 KB cells in 6,000 rows took gigabytes."""
    return category_strings(values).astype(object)


def default_distance(reference_counts: pd.Series, current_counts: pd.Series, kind: str) -> tuple[str, float]:
    """Evidently's default test for more than 1,000 reference rows, from value counts alone.

    Numeric columns with more than five distinct values (over both sides) get the Wasserstein
    distance normed by the reference's standard deviation; every other column gets the
    Jensen-Shannon distance between the two frequency tables. Both equal what Evidently computes
    from the raw rows (tests/test_drift.py checks this against Evidently itself).
    """
    support = reference_counts.index.union(current_counts.index)
    if kind == NUMERICAL and len(support) > 5:
        return "wasserstein", _normed_wasserstein(reference_counts, current_counts)
    from scipy.spatial import distance

    reference_share = reference_counts.reindex(support, fill_value=0).to_numpy() / reference_counts.sum()
    current_share = current_counts.reindex(support, fill_value=0).to_numpy() / current_counts.sum()
    return "jensenshannon", float(distance.jensenshannon(reference_share, current_share))


def sorted_wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    """W1 between two samples, normed by max(std(reference), 0.001), as Evidently defines it.

    scipy's `wasserstein_distance` integrates |F - G| over the merged sorted values; so does
    this, but it sorts each side once and merges the two sorted runs with a stable argsort
    (linear for two runs), then reads both CDFs off running counts: about twice as fast on a
    million rows. Between tied values the step width is zero, so ties need no special care.
    """
    u, v = np.sort(reference), np.sort(current)
    merged = np.concatenate([u, v])
    order = np.argsort(merged, kind="stable")
    from_u = order < len(u)
    values = merged[order]
    u_cdf = np.cumsum(from_u)[:-1] / len(u)
    v_cdf = np.cumsum(~from_u)[:-1] / len(v)
    distance_w1 = float(np.sum(np.abs(u_cdf - v_cdf) * np.diff(values)))
    return distance_w1 / max(float(np.std(reference)), 0.001)


def _normed_wasserstein(reference_counts: pd.Series, current_counts: pd.Series) -> float:
    """W1 = the area between the two CDFs, over sorted distinct values; / max(std(reference), 0.001)."""
    values = np.union1d(reference_counts.index.to_numpy(dtype=float), current_counts.index.to_numpy(dtype=float))
    ref = reference_counts.groupby(reference_counts.index.astype(float)).sum().reindex(values, fill_value=0).to_numpy(dtype=float)
    cur = current_counts.groupby(current_counts.index.astype(float)).sum().reindex(values, fill_value=0).to_numpy(dtype=float)
    ref_cdf, cur_cdf = np.cumsum(ref) / ref.sum(), np.cumsum(cur) / cur.sum()
    distance_w1 = float(np.sum(np.abs(ref_cdf - cur_cdf)[:-1] * np.diff(values)))
    weights = ref / ref.sum()
    mean = float(np.sum(weights * values))
    std = float(np.sqrt(np.sum(weights * (values - mean) ** 2)))
    return distance_w1 / max(std, 0.001)


def window_drift(reference: pd.DataFrame, current: pd.DataFrame, columns: MonitoredColumns, params: DriftParams) -> dict[str, Any]:
    """Per-column verdicts, the dataset verdict over features, prediction and target drift, and
    ROC-AUC when the window is labelled."""
    labels = window_labels(current, columns)
    # Sides one column at a time (a column's values are dropped once judged): the cores are shared
    # with the report workers, the drift stage's critical path.
    sides = (
        (name, (Side.of(reference[name], column_kind(name, columns)), Side.of(current[name], column_kind(name, columns))))
        for name in columns.all
    )
    return drift_result(sides, len(current), labels, columns, params)


def window_labels(rows: pd.DataFrame, columns: MonitoredColumns) -> tuple[np.ndarray, np.ndarray] | None:
    """The labelled rows' 0/1 labels and probabilities (for ROC-AUC), or None without a target."""
    if not columns.target:
        return None
    labelled = rows[columns.target].notna()
    return rows.loc[labelled, columns.target].astype(int).to_numpy(), rows.loc[labelled, PROBABILITY].to_numpy()


def column_kind(name: str, columns: MonitoredColumns) -> str:
    return CATEGORICAL if name in columns.categorical else NUMERICAL


def drift_result(
    sides: Iterable[tuple[str, tuple[Side, Side]]],
    rows: int,
    labels: tuple[np.ndarray, np.ndarray] | None,
    columns: MonitoredColumns,
    params: DriftParams,
) -> dict[str, Any]:
    """A window's verdicts from each monitored column's (name, (reference side, current side))
    (an iterable, possibly lazy), its row count, and its (label, probability) arrays when it is
    labelled."""

    def one(name: str, reference: Side, current: Side) -> dict[str, Any]:
        kind = column_kind(name, columns)
        method, threshold, key = (
            (params.cat_method, params.cat_threshold, "drift.cat_method")
            if kind == CATEGORICAL
            else (params.num_method, params.num_threshold, "drift.num_method")
        )
        return side_drift(reference, current, kind, method, threshold, key, name)

    per_column = {name: one(name, *pair) for name, pair in sides}
    drifted = [name for name in columns.features if per_column[name]["drifted"]]
    share = len(drifted) / len(columns.features)
    result = {
        "rows": rows,
        "dataset_drift": share >= params.drift_share,
        "drift_share": share,
        "drifted_features": len(drifted),
        "drifted_columns": drifted,
        "prediction_drift": per_column[columns.prediction],
        "columns": {name: per_column[name] for name in columns.features},
    }
    if columns.target:
        result["target_drift"] = per_column[columns.target]
        result["roc_auc"] = binary_metrics(*labels, 0.5)["roc_auc"]
    return result


def import_evidently() -> None:
    """Import what `report_html` and `evidently_test` need (seconds of work: start it early)."""
    # The import builds about a thousand pydantic models; garbage collections during it find
    # nothing to free and cost about a quarter of its time.
    gc.disable()
    try:
        import evidently.legacy.calculations.stattests.registry  # noqa: F401
        import evidently.presets  # noqa: F401
    finally:
        gc.enable()


def empty_windows(windows: dict[str, dict[str, Any]], params: DriftParams) -> dict[str, str]:
    """The windows of `params` that selected no current rows, with their bounds, for the verdict."""
    return {
        name: f"selects no rows of the current data (start {window.start}, end {window.end})"
        for name, window in params.windows.items()
        if name not in windows
    }


def score_records(windows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per window and column (the prediction included): the drift heat map's data.
    A finding (a score that could not be computed) has no ratio: its cell stays empty."""
    return [
        {
            "window": name,
            "column": column,
            **values,
            "score_over_threshold": None if values["score"] is None else values["score"] / values["threshold"],
        }
        for name, result in windows.items()
        for column, values in {**result["columns"], "(prediction)": result["prediction_drift"]}.items()
    ]
