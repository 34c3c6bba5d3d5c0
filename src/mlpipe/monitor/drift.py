"""Drift between a reference period and current windows, with Evidently 0.7's statistical tests.

Verdicts use Evidently's statistical tests, chosen the way its `DataDriftPreset` chooses them
(by column type, row count and number of distinct values), on every row. For Evidently's
default tests on large data (normed Wasserstein distance for numeric columns, Jensen-Shannon
distance for categorical ones) the same statistics are computed exactly from each column's
value counts, which is what makes a million rows take a second instead of a minute; any other
test, and small data, go through Evidently's own functions, on values rebuilt from the counts.
Counts are also what a table's parts send back and merge exactly (`window_summary`,
`merged_window`), so a verdict does not depend on how the table is cut. The HTML reports are drawn
apart, by `mlpipe.monitor.report`.

Two checks keep the verdicts silent when nothing changed (a random split of a static table). A
distance (Wasserstein, Jensen-Shannon, PSI, ...) is biased upward on small samples and on columns
with many distinct values, and chi-square on sparse levels gives p-values near 0 by chance, so a
column its test flags is drift only when its score also beats the same statistic on every one of
`drift.null_draws` random re-splits of the pooled rows (a seeded permutation test, drawn from the
value counts; it runs only for flagged columns). And a p-value test flags 5% of stable columns by
design, so the p-values of a window's columns are corrected for testing many at once
(Benjamini-Hochberg, `drift.p_value_correction`).
"""

from __future__ import annotations

import gc
import logging
import operator
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlpipe.config import DriftParams, DriftWindow
from mlpipe.data.schema import PREDICTED_LABEL, PROBABILITY, FeatureSchema, category_strings
from mlpipe.data.times import time_values
from mlpipe.errors import ConfigError, DataError, first_line
from mlpipe.model.metrics import binary_metrics
from mlpipe.monitor.estimation import Histogram, estimate

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
    positive_label: str  # the predicted label column's text for the positive class

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
    return MonitoredColumns(numerical, categorical, schema.feature_names, PROBABILITY, target, str(schema.positive_label))


def check_current(current: pd.DataFrame, reference: pd.DataFrame, columns: MonitoredColumns) -> None:
    """The current table must carry every monitored column and the predicted label (the estimate's
    accuracy reads it), with the reference's kind of values."""
    missing = [name for name in [*columns.all, PREDICTED_LABEL] if name not in current.columns]
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
    (`usable_values`) as counts per value, which merge exactly over a table's parts (`Side.merge`)."""

    rows: int
    infinite: int
    counts: pd.Series

    @classmethod
    def of(cls, values: pd.Series, kind: str) -> Side:
        usable = usable_values(values, kind)
        if kind == NUMERICAL:
            # One sort gives the distinct numbers in order with their counts, as floats (1 and 1.0
            # are one value): a million distinct values count several times faster than by hashing.
            distinct, counts = np.unique(usable.to_numpy(dtype=float), return_counts=True)
            return cls(len(values), _count_infinite(values), pd.Series(counts, index=distinct))
        return cls(len(values), 0, usable.value_counts())

    @classmethod
    def merge(cls, sides: list[Side]) -> Side:
        from mlpipe.engine.parts import concat_counts

        # A table of one part keeps its counts as they are (`aligned_counts` orders any counts alike).
        counts = sides[0].counts if len(sides) == 1 else concat_counts([side.counts for side in sides])
        return cls(sum(side.rows for side in sides), sum(side.infinite for side in sides), counts)

    @property
    def usable(self) -> int:
        return int(self.counts.sum())

    def as_values(self, name: str) -> pd.Series:
        return pd.Series(np.repeat(self.counts.index.to_numpy(), self.counts.to_numpy()), name=name)


@dataclass(frozen=True)
class Chance:
    """What a column its stat test flags must also beat to count as drift: the same statistic
    between `draws` random re-splits of the pooled rows into a reference and a current side of the
    observed sizes (0: no check), seeded by `seed` and the column's name, so that a verdict does
    not depend on the column order."""

    draws: int = 99
    seed: int = 42


P_VALUE, DISTANCE = "p_value", "distance"


def column_drift(
    reference: pd.Series, current: pd.Series, kind: str, method: str | None, threshold: float | None, key: str, chance: Chance = Chance()
) -> dict[str, Any]:
    """Evidently's stat test for one column (`kind` is "numerical" or "categorical"), on all rows."""
    return side_drift(Side.of(reference, kind), Side.of(current, kind), kind, method, threshold, key, str(reference.name), chance)


def side_drift(
    reference: Side,
    current: Side,
    kind: str,
    method: str | None,
    threshold: float | None,
    key: str,
    name: str,
    chance: Chance = Chance(),
) -> dict[str, Any]:
    """Evidently's stat test for one column, from both sides' value counts.

    A test that cannot run because of the current rows (no usable value, infinite values the
    reference never had) or gives no finite score is a finding: the column counts as drifted and
    says why, never silently as stable. A reference without a usable value is a finding too, but
    not drift: nothing about the current data changed (featurize drops such a column before
    training, so only a reference from elsewhere can have one).
    """
    if current.infinite and not reference.infinite:
        return _finding(kind, f"{current.infinite:,} of {current.rows:,} current values are infinite, and the reference has none")
    if not reference.usable:
        return _finding(kind, "no usable value in the reference rows (all missing or not finite)", drifted=False)
    if not current.usable:
        return _finding(kind, "no usable value in the current rows (all missing or not finite)")
    if method is None and reference.usable > LARGE_SAMPLE_ROWS:
        distance, score = default_distance(reference.counts, current.counts, kind)
        limit = DEFAULT_THRESHOLD if threshold is None else threshold
        verdict = column_verdict(kind, distance, score, limit, score >= limit, DISTANCE)
        statistic = DISTANCES[distance]
    else:
        verdict, statistic = evidently_test(reference.as_values(name), current.as_values(name), kind, method, threshold, key)
    if "finding" not in verdict and not np.isfinite(verdict["score"]):
        return _finding(kind, f"the {verdict['method']} score could not be computed", verdict["method"])
    if verdict["drifted"] and chance.draws and "finding" not in verdict:
        beaten, chance_score = beats_chance(verdict, resampled_scores(reference, current, kind, statistic, chance, name))
        verdict = {**verdict, "chance_score": chance_score, "drifted": beaten}
    return verdict


# A statistic of two sides given as counts over their pooled distinct values (sorted).
Statistic = Callable[[np.ndarray, np.ndarray, np.ndarray], float]


def beats_chance(verdict: dict[str, Any], scores: Iterator[float]) -> tuple[bool, float]:
    """Whether the observed score is more extreme (a distance above, a p-value below) than the
    score of every re-split, and the most extreme re-split score seen. It stops at the first
    re-split as extreme as the observed score: that settles "not drift", which is what a stable
    column gives, after a draw or two."""
    more_extreme = operator.gt if verdict["statistic"] == DISTANCE else operator.lt
    extreme = None
    for score in scores:
        extreme = score if extreme is None or more_extreme(score, extreme) else extreme
        if not more_extreme(verdict["score"], score):
            return False, float(extreme)
    return True, float(extreme)


def resampled_scores(reference: Side, current: Side, kind: str, statistic: Statistic, chance: Chance, name: str) -> Iterator[float]:
    """The statistic between `chance.draws` random re-splits of both sides' pooled rows, each side
    keeping its size: what the statistic gives when nothing changed (a permutation null), drawn
    one at a time.

    A re-split's current counts are a multivariate hypergeometric draw from the pooled counts, so
    each draw costs the number of distinct values (or of rows, when nearly every value is
    distinct), not a shuffle of the table; the pooled counts are sorted by value, so a table cut
    into any parts draws the same numbers.
    """
    support, reference_counts, current_counts = aligned_counts(reference.counts, current.counts, kind)
    pooled = reference_counts + current_counts
    rows = int(current_counts.sum())
    rng = np.random.default_rng([chance.seed, zlib.crc32(name.encode("utf-8", "surrogatepass"))])
    method = "marginals" if 4 * len(pooled) < pooled.sum() else "count"  # numpy's faster method for the shape
    for _ in range(chance.draws):
        drawn = rng.multivariate_hypergeometric(pooled, rows, method=method)
        yield statistic(support, pooled - drawn, drawn)


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
) -> tuple[dict[str, Any], Statistic | None]:
    """Run Evidently's own stat test function on the rows (small data, or a method named in params);
    also returns the test as a statistic of counts, for `resampled_scores` (None for a finding)."""
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
        return _finding(kind, f"the {test.name} score could not be computed: {first_line(exc)}", test.name), None
    score, limit, drifted = float(result.drift_score), float(result.actual_threshold), bool(result.drifted)
    # Evidently's p-value tests flag drift below their threshold, its distances at or above it.
    kind_of_score = P_VALUE if drifted == (score <= limit) else DISTANCE

    def statistic(support: np.ndarray, reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
        rows = (pd.Series(np.repeat(support, counts), name=reference.name) for counts in (reference_counts, current_counts))
        try:
            with np.errstate(divide="ignore", invalid="ignore"):  # chi-square's empty expected levels: scored below
                return float(test(*rows, column_type, threshold).drift_score)
        except (ValueError, ZeroDivisionError):
            # A re-split the test cannot score (chi-square on a level one side lacks) counts as the
            # most extreme score: an observed score never beats it, so it never makes a column drift.
            return 0.0 if kind_of_score == P_VALUE else np.inf

    return column_verdict(kind, test.name, score, limit, drifted, kind_of_score), statistic


def column_verdict(kind: str, method: str, score: float, threshold: float, drifted: bool, statistic: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "method": method,
        "statistic": statistic,  # p_value: drift below the threshold; distance: at or above it
        "score": float(score),
        "threshold": float(threshold),
        "drifted": bool(drifted),
    }


def _finding(kind: str, reason: str, method: str | None = None, drifted: bool = True) -> dict[str, Any]:
    return {"kind": kind, "method": method, "score": None, "threshold": None, "drifted": drifted, "finding": reason}


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
    support, reference, current = aligned_counts(reference_counts, current_counts, kind)
    distance = "wasserstein" if kind == NUMERICAL and len(support) > 5 else "jensenshannon"
    return distance, DISTANCES[distance](support, reference, current)


def aligned_counts(reference_counts: pd.Series, current_counts: pd.Series, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both sides' counts over their pooled distinct values, sorted (numbers as floats, so that
    1 and 1.0 are one value)."""
    if kind == NUMERICAL:
        # In numpy, without hashing: a continuous column has about as many distinct values as rows.
        (reference_values, reference), (current_values, current) = _float_counts(reference_counts), _float_counts(current_counts)
        values = np.concatenate([reference_values, current_values])
        order = np.argsort(values, kind="stable")  # two sorted runs: merged in linear time
        values = values[order]
        starts = np.flatnonzero(np.diff(values, prepend=-np.inf) > 0)  # where each distinct value begins
        spread = (np.concatenate([reference, np.zeros_like(current)])[order], np.concatenate([np.zeros_like(reference), current])[order])
        return values[starts], *(np.add.reduceat(counts, starts) if len(starts) else counts for counts in spread)
    support = reference_counts.index.union(current_counts.index).sort_values()
    return (
        support.to_numpy(),
        reference_counts.reindex(support, fill_value=0).to_numpy(dtype=np.int64),
        current_counts.reindex(support, fill_value=0).to_numpy(dtype=np.int64),
    )


def _float_counts(counts: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Counts per number as (distinct values as floats, sorted; their counts)."""
    values, numbers = counts.index.to_numpy(dtype=float), counts.to_numpy(dtype=np.int64)
    if len(values) > 1 and not (np.diff(values) > 0).all():  # not yet sorted and distinct
        values, inverse = np.unique(values, return_inverse=True)
        numbers = np.bincount(inverse, weights=numbers, minlength=len(values)).astype(np.int64)
    return values, numbers


def _jensenshannon(support: np.ndarray, reference: np.ndarray, current: np.ndarray) -> float:
    from scipy.spatial import distance

    return float(distance.jensenshannon(reference / reference.sum(), current / current.sum()))


def _normed_wasserstein(support: np.ndarray, reference: np.ndarray, current: np.ndarray) -> float:
    """W1 = the area between the two CDFs, over sorted distinct values; / max(std(reference), 0.001)."""
    values = support.astype(float)
    ref_cdf, cur_cdf = np.cumsum(reference) / reference.sum(), np.cumsum(current) / current.sum()
    distance_w1 = float(np.sum(np.abs(ref_cdf - cur_cdf)[:-1] * np.diff(values)))
    weights = reference / reference.sum()
    mean = float(np.sum(weights * values))
    std = float(np.sqrt(np.sum(weights * (values - mean) ** 2)))
    return distance_w1 / max(std, 0.001)


DISTANCES: dict[str, Statistic] = {"wasserstein": _normed_wasserstein, "jensenshannon": _jensenshannon}


def window_drift(reference: pd.DataFrame, current: pd.DataFrame, columns: MonitoredColumns, params: DriftParams) -> dict[str, Any]:
    """The verdicts on two tables: the one-part case of the drift stage's (`window_summary` of each
    side's one part, `merged_window`, `window_verdicts`)."""
    reference_side, current_side = (merged_window([window_summary(table, columns)], columns) for table in (reference, current))
    return window_verdicts(reference_side, current_side, columns, params)


def window_summary(rows: pd.DataFrame, columns: MonitoredColumns) -> dict[str, Any]:
    """What one part's rows of a window (or of the reference) bring to the verdicts: their number,
    each monitored column's `Side`, the labels, probabilities and predicted labels of the labelled
    rows, and the `Histogram` of every row's probability that the performance estimate comes from."""
    return {
        "rows": len(rows),
        "sides": {name: Side.of(rows[name], column_kind(name, columns)) for name in columns.all},
        "labels": window_labels(rows, columns),
        "estimation": Histogram.of(rows[PROBABILITY].to_numpy(), predicted_positive(rows, columns)),
    }


def merged_window(parts: list[dict[str, Any]], columns: MonitoredColumns) -> dict[str, Any]:
    """The `window_summary` of every part of a window, in part order, as one."""
    labels = None
    if columns.target:
        labels = tuple(np.concatenate([part["labels"][k] for part in parts]) for k in range(3))
    return {
        "rows": sum(part["rows"] for part in parts),
        "sides": {name: Side.merge([part["sides"][name] for part in parts]) for name in columns.all},
        "labels": labels,
        "estimation": Histogram.merge([part["estimation"] for part in parts]),
    }


def window_verdicts(reference: dict[str, Any], current: dict[str, Any], columns: MonitoredColumns, params: DriftParams) -> dict[str, Any]:
    """Per-column verdicts, the dataset verdict over features, prediction and target drift, and
    ROC-AUC when the window is labelled, and the performance estimated from the probabilities, from
    both sides' merged summaries."""
    sides = ((name, (reference["sides"][name], current["sides"][name])) for name in columns.all)
    return drift_result(sides, current["rows"], current["labels"], current["estimation"], columns, params)


def window_labels(rows: pd.DataFrame, columns: MonitoredColumns) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The labelled rows' 0/1 labels, probabilities (for ROC-AUC) and whether their predicted label
    is positive (for accuracy), or None without a target."""
    if not columns.target:
        return None
    labelled = rows[columns.target].notna()
    return (
        rows.loc[labelled, columns.target].astype(int).to_numpy(),
        rows.loc[labelled, PROBABILITY].to_numpy(),
        predicted_positive(rows[labelled], columns),
    )


def predicted_positive(rows: pd.DataFrame, columns: MonitoredColumns) -> np.ndarray:
    """Whether each row's predicted label (predict's, at the threshold it used) is the positive one."""
    return (rows[PREDICTED_LABEL].astype(str) == columns.positive_label).to_numpy()


def column_kind(name: str, columns: MonitoredColumns) -> str:
    return CATEGORICAL if name in columns.categorical else NUMERICAL


def drift_result(
    sides: Iterable[tuple[str, tuple[Side, Side]]],
    rows: int,
    labels: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    histogram: Histogram,
    columns: MonitoredColumns,
    params: DriftParams,
) -> dict[str, Any]:
    """A window's verdicts from each monitored column's (name, (reference side, current side))
    (an iterable, possibly lazy), its row count, its (label, probability, predicted positive)
    arrays when the table is labelled, and the histogram of its probabilities.

    A window of a labelled table whose rows have no label yet (labels arrive late) is judged as
    an unlabelled one: no target drift nor ROC-AUC, only the estimate."""
    chance = Chance(params.null_draws, params.seed)

    def one(name: str, reference: Side, current: Side) -> dict[str, Any]:
        kind = column_kind(name, columns)
        method, threshold, key = (
            (params.cat_method, params.cat_threshold, "drift.cat_method")
            if kind == CATEGORICAL
            else (params.num_method, params.num_threshold, "drift.num_method")
        )
        return side_drift(reference, current, kind, method, threshold, key, name, chance)

    per_column = {name: one(name, *pair) for name, pair in sides}
    if params.p_value_correction == "benjamini-hochberg":
        per_column = corrected_p_values(per_column)
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
    labelled = 0 if labels is None else len(labels[0])
    if labelled:
        result["target_drift"] = per_column[columns.target]
        result["roc_auc"] = binary_metrics(labels[0], labels[1], 0.5)["roc_auc"]  # the threshold plays no part in ROC-AUC
    result["estimated_performance"] = estimated_performance(histogram, labels, result.get("roc_auc"), params.seed)
    return result


def estimated_performance(
    histogram: Histogram, labels: tuple[np.ndarray, np.ndarray, np.ndarray] | None, realised_auc: float | None, seed: int
) -> dict[str, Any]:
    """The window's ROC-AUC and accuracy estimated from every row's probability (`estimation`), with
    the realised values beside them over its labelled rows (None without any): a partly labelled
    window gets the estimate on all of its rows and the realised metrics on the labelled ones."""
    found = estimate(histogram, seed)
    labelled = 0 if labels is None else len(labels[0])
    realised_accuracy = float(np.mean(labels[2] == (labels[0] == 1))) if labelled else None
    return {
        "rows": found["rows"],
        "labelled_rows": labelled,
        "roc_auc": {**found["roc_auc"], "realised": realised_auc},
        "accuracy": {**found["accuracy"], "realised": realised_accuracy},
    }


def corrected_p_values(per_column: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The window's p-value verdicts corrected for testing its columns at once (Benjamini-Hochberg):
    each gets `adjusted_p_value` and drifts only when that is at or below its threshold too. Testing
    twenty stable columns at 0.05 flags one of them on average; corrected, a window of stable
    columns flags any at all in at most 5% of windows, while a real change keeps a tiny p-value."""
    from scipy.stats import false_discovery_control

    tested = [name for name, values in per_column.items() if values.get("statistic") == P_VALUE]
    if not tested:
        return per_column
    adjusted = false_discovery_control([per_column[name]["score"] for name in tested], method="bh")
    corrected = dict(per_column)
    for name, p_value in zip(tested, adjusted, strict=True):
        values = per_column[name]
        corrected[name] = {
            **values,
            "adjusted_p_value": float(p_value),
            "drifted": bool(values["drifted"] and p_value <= values["threshold"]),
        }
    return corrected


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
