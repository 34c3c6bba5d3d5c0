"""The test set's metrics, overall and per period, and the small fixed-size curve tables behind
the plots, computed part by part with the stage's executor (`mlpipe.engine.executor.current()`):
the stage's process holds summaries whose size does not grow with the rows.

Every figure is exact (the same as on the whole table: scikit-learn's definitions, as
`mlpipe.model.metrics`, up to the order of floating-point sums), in two passes:

1. each part is scored where it is read (`score_part`); it sends back sums that merge by
   addition (rows, positives, the confusion counts, log-loss and Brier sums, calibration bins,
   and each feature's sum of |TreeSHAP contribution| over its explained rows: the importance
   table's mean) and the count of positives and negatives in each of GRID_BINS fixed score bins,
   per period, and leaves its scores, sorted, in a scratch folder;
2. the score axis is cut, on bin edges, into ranges of about a part's rows; each range's rows
   are gathered from every part's scratch file (`rank_range`). A range knows how many positives
   and negatives score above it (from the bins), which is all that its share of the ROC-AUC
   (Mann-Whitney's count, in integers), of the average precision and of the ROC and
   precision-recall curve points needs. Rows with one score are always in one range.

Curves are resampled onto fixed grids so that plot files stay a few kilobytes (they live in
git for review) and diff cleanly between revisions. `evaluate_scores` is the one-part case, for
scores already in memory.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlpipe.config import EvaluateParams
from mlpipe.data.schema import FeatureSchema, category_strings
from mlpipe.data.times import time_values
from mlpipe.engine.parts import offsets, part_rows, read_part_columns, run_in_order
from mlpipe.model.calibration import Calibration, reliability_sums, reliability_table
from mlpipe.model.explain import ContributionSums, contributions, explained_positions, importance_table
from mlpipe.model.metrics import counts_at_thresholds, metric_sums, metrics_from_counts, own_class_losses

GRID_BINS = 1024
# Bin edges on the probability, even in log-odds: a range's rows are found by comparing scores
# with the edges, the same comparison that counted them (`score_bins`).
EDGES = 1.0 / (1.0 + np.exp(-np.linspace(-12.0, 12.0, GRID_BINS - 1)))
ALL = "test"  # the group of every row (the others are periods)


def score_bins(proba: np.ndarray) -> np.ndarray:
    """Each score's bin: how many edges are at or below it."""
    return np.searchsorted(EDGES, proba, side="right")


@dataclass
class Sums:
    """What the metrics of a group of rows need, as sums that merge by addition."""

    rows: int = 0
    positives: int = 0
    tp: int = 0
    fp: int = 0
    log_loss_sum: float = 0.0
    brier_sum: float = 0.0
    bins: np.ndarray = field(default_factory=lambda: np.zeros((GRID_BINS, 2), dtype=np.int64))  # [negatives, positives]

    @classmethod
    def of(cls, y: np.ndarray, proba: np.ndarray, threshold: float) -> Sums:
        bins = np.zeros((GRID_BINS, 2), dtype=np.int64)
        np.add.at(bins, (score_bins(proba), y), 1)
        return cls(**metric_sums(y, proba, threshold), bins=bins)

    def __add__(self, other: Sums) -> Sums:
        return Sums(
            self.rows + other.rows,
            self.positives + other.positives,
            self.tp + other.tp,
            self.fp + other.fp,
            self.log_loss_sum + other.log_loss_sum,
            self.brier_sum + other.brier_sum,
            self.bins + other.bins,
        )


@dataclass
class PartSummary:
    groups: dict[str, Sums]  # ALL, then each period's label
    calibration: np.ndarray  # calibration bin x (rows, sum of probabilities, positives)
    raw: np.ndarray  # (log-loss sum, Brier sum) of the model's own probabilities, before calibration
    too_many_periods: bool = False
    explained: ContributionSums | None = None  # |contribution| sums of the part's explained rows (`score_part`)

    def __add__(self, other: PartSummary) -> PartSummary:
        groups = dict(self.groups)
        for name, sums in other.groups.items():
            groups[name] = groups[name] + sums if name in groups else sums
        explained = None if self.explained is None or other.explained is None else self.explained + other.explained
        return PartSummary(
            groups, self.calibration + other.calibration, self.raw + other.raw, self.too_many_periods or other.too_many_periods, explained
        )


def summarise_scores(
    y: np.ndarray, raw: np.ndarray, periods: pd.Series | None, params: EvaluateParams, calibration: Calibration
) -> tuple[PartSummary, np.ndarray]:
    """The summary of one part's scores, the model's probabilities `raw` calibrated and labelled
    at the threshold of `calibration` (`periods`: a label per row, None without periods), and the
    calibrated probabilities."""
    y, raw = np.asarray(y).astype(np.int64), np.asarray(raw, dtype=float)
    proba, threshold = calibration.apply(raw), calibration.threshold
    groups = {ALL: Sums.of(y, proba, threshold)}
    if periods is not None:
        codes, names = pd.factorize(periods, sort=True)
        groups.update({str(name): Sums.of(y[codes == i], proba[codes == i], threshold) for i, name in enumerate(names)})
    table = reliability_sums(y, proba, params.calibration_bins)
    raw_sums = np.array([own_class_losses(y, raw).sum(), ((raw - y) ** 2).sum()])
    return PartSummary(groups, table, raw_sums), proba


def period_labels(times: pd.Series, period: str, max_periods: int) -> pd.Series | None:
    """A label per row naming its period: the value itself for years or other small sets of
    numbers, a calendar period (`evaluate.period`, e.g. Y, Q, M) for dates. None if too many
    (in these rows: a set's parts each check theirs, and the merge checks them all)."""
    values = time_values(times)
    if pd.api.types.is_datetime64_any_dtype(values):
        labels = values.dt.to_period(period).astype(str).where(values.notna())
    else:
        labels = category_strings(values).astype(object).where(values.notna())  # 2016.0 and 2016 are both "2016"
    return labels if labels.nunique() <= max_periods else None


# -- pass 2: the ranking metrics, range by range --------------------------------------------------


@dataclass(frozen=True)
class Range:
    """Bins `low`..`high` (inclusive) of the score axis, and, per group, the (positives,
    negatives) that score above it and in all."""

    low: int
    high: int
    above: dict[str, tuple[int, int]]
    totals: dict[str, tuple[int, int]]

    def filters(self) -> list[tuple] | None:
        """The range's scores as Parquet filters (the same comparisons as `score_bins`)."""
        found = ([("proba", ">=", float(EDGES[self.low - 1]))] if self.low > 0 else []) + (
            [("proba", "<", float(EDGES[self.high]))] if self.high < GRID_BINS - 1 else []
        )
        return found or None

    def holds(self, proba: np.ndarray) -> np.ndarray:
        bins = score_bins(proba)
        return (bins >= self.low) & (bins <= self.high)


def plan_ranges(merged: PartSummary, range_rows: int) -> list[Range]:
    """The score axis cut on bin edges, from the highest scores down, into ranges of at least
    `range_rows` rows (the last may hold fewer); a bin holding more stays one range."""
    every = merged.groups[ALL].bins.sum(axis=1)
    cuts, start, held = [], GRID_BINS - 1, 0
    for bin_index in range(GRID_BINS - 1, -1, -1):
        held += every[bin_index]
        if held >= range_rows or bin_index == 0:
            if held:
                cuts.append((bin_index, start))
            start, held = bin_index - 1, 0
    ranges = []
    for low, high in cuts:
        above = {name: _negatives_positives(sums.bins[high + 1 :]) for name, sums in merged.groups.items()}
        totals = {name: _negatives_positives(sums.bins) for name, sums in merged.groups.items()}
        ranges.append(Range(low, high, above, totals))
    return ranges


def _negatives_positives(bins: np.ndarray) -> tuple[int, int]:
    return int(bins[:, 0].sum()), int(bins[:, 1].sum())


def rank_range(y: np.ndarray, proba: np.ndarray, periods: np.ndarray | None, spot: Range, curve_points: int) -> dict[str, Any]:
    """A range's share of each group's ROC-AUC and average precision, and its pieces of the ROC
    and precision-recall curve points (the whole set only). `y`, `proba`, `periods`: the
    range's rows, in any order."""
    y, proba = np.asarray(y).astype(np.int64), np.asarray(proba, dtype=float)
    groups = {ALL: _ranking(y, proba, spot.above[ALL], spot.totals[ALL])}
    if periods is not None:
        for name in spot.totals:
            if name != ALL:
                chosen = periods == name
                groups[name] = _ranking(y[chosen], proba[chosen], spot.above[name], spot.totals[name])
    return {"groups": groups, "curves": _curve_pieces(y, proba, spot.above[ALL], spot.totals[ALL], curve_points)}


def _ranking(y: np.ndarray, proba: np.ndarray, above: tuple[int, int], totals: tuple[int, int]) -> tuple[int, float]:
    """(twice the range's Mann-Whitney count, its terms of the average precision).

    Each distinct score's positives beat the range's negatives that score lower and tie with
    those that score the same (half each, hence twice, in integers); their average-precision
    term is their share of the positives times the precision at that score, counted from the top
    of the whole set."""
    negatives_above, positives_above = above
    positives_total = totals[1]
    if len(y) == 0 or positives_total == 0:
        return 0, 0.0
    fps, tps, _ = counts_at_thresholds(y, proba)
    new_positives = np.diff(tps, prepend=0.0)
    new_negatives = np.diff(fps, prepend=0.0)
    negatives_below = fps[-1] - fps
    twice_u = int(np.sum(new_positives.astype(np.int64) * (2 * negatives_below + new_negatives).astype(np.int64)))
    precision = (positives_above + tps) / (positives_above + negatives_above + tps + fps)
    return twice_u, float(np.sum(new_positives / positives_total * precision))


def _curve_pieces(y, proba, above: tuple[int, int], totals: tuple[int, int], curve_points: int) -> dict[str, Any]:
    """The ROC points on the grid that fall in the range, and, for each grid recall that falls in
    it, the two recalls around it with the best precision at or beyond each within the range
    (the merge adds what lies beyond the range)."""
    negatives_above, positives_above = above
    negatives, positives = totals
    grid = np.linspace(0, 1, curve_points)
    fps, tps, _ = counts_at_thresholds(y, proba) if len(y) else (np.zeros(0), np.zeros(0), None)
    # The range's vertices, after the last vertex above it (the origin for the top range).
    fp_counts, tp_counts = np.r_[negatives_above, negatives_above + fps], np.r_[positives_above, positives_above + tps]
    roc = {}
    if negatives and positives:
        fpr, tpr = fp_counts / negatives, tp_counts / positives
        for index in np.flatnonzero((grid >= fpr[0]) & (grid <= fpr[-1])):
            roc[int(index)] = float(np.interp(grid[index], fpr, tpr))
    pr: dict[int, tuple] = {}
    best_here = 0.0
    if positives:
        recall = tp_counts / positives
        # The top range starts at the origin, which the curve counts as (recall 0, precision 1).
        precision = np.where(tp_counts + fp_counts > 0, tp_counts / np.maximum(tp_counts + fp_counts, 1), 1.0)
        best = np.maximum.accumulate(precision[::-1])[::-1]  # the best precision at this recall or beyond, here
        distinct, first = np.unique(recall, return_index=True)
        values = best[first]
        best_here = float(precision[1:].max()) if len(precision) > 1 else 0.0
        for index in np.flatnonzero((grid >= recall[0]) & (grid <= recall[-1])):
            at = int(np.searchsorted(distinct, grid[index], side="right")) - 1
            if distinct[at] == grid[index] or at == len(distinct) - 1:
                pr[int(index)] = (float(distinct[at]), None, float(values[at]), None, at == 0)
            else:
                pr[int(index)] = (float(distinct[at]), float(distinct[at + 1]), float(values[at]), float(values[at + 1]), at == 0)
    # Where the last run of equal recall starts: its first vertex has the run's best precision.
    run_start = int(np.flatnonzero(tp_counts == tp_counts[-1])[0])
    return {
        "roc": roc,
        "pr": pr,
        "best_precision": best_here,
        "end": (int(tp_counts[-1]), int(fp_counts[run_start]), bool(len(tps) and tps[-1] > 0)),
    }


def merge_ranks(ranges: Sequence[Range], pieces: Sequence[dict[str, Any]], merged: PartSummary, curve_points: int) -> tuple[dict, dict]:
    """({group: (ROC-AUC, PR-AUC)}, {"roc": [...], "precision_recall": [...]}) from the ranges'
    pieces (top range first)."""
    ranking: dict[str, tuple[float | None, float | None]] = {}
    for name, sums in merged.groups.items():
        negatives, positives = sums.rows - sums.positives, sums.positives
        if not negatives or not positives:
            ranking[name] = (None, None)
            continue
        twice_u, average_precision = 0, 0.0
        for spot, piece in zip(ranges, pieces, strict=True):
            range_twice_u, range_ap = piece["groups"].get(name, (0, 0.0))
            negatives_in, positives_in = _negatives_positives(sums.bins[spot.low : spot.high + 1])
            negatives_below = negatives - spot.above[name][0] - negatives_in
            # Each positive of the range also beats every negative below the range.
            twice_u += range_twice_u + 2 * positives_in * negatives_below
            average_precision += range_ap
        ranking[name] = (twice_u / (2 * positives * negatives), max(0.0, average_precision))
    return ranking, {"roc": _roc_points(pieces, curve_points), "precision_recall": _precision_recall_points(pieces, curve_points)}


def _roc_points(pieces: Sequence[dict[str, Any]], curve_points: int) -> list[dict[str, float]]:
    """The true positive rate at each grid false positive rate: where several ranges hold a grid
    point (a run of positives across their border), the last one has the run's top."""
    grid, found = np.linspace(0, 1, curve_points), {}
    for piece in pieces:
        found.update(piece["curves"]["roc"])
    return [{"fpr": float(x), "tpr": found.get(i, float("nan"))} for i, x in enumerate(grid)]


def _precision_recall_points(pieces: Sequence[dict[str, Any]], curve_points: int) -> list[dict[str, float]]:
    """The interpolated precision (the best precision at this recall or higher) at each grid
    recall. A range's own best values miss the vertices beyond it (lower scores, higher recall:
    the best of the ranges below) and, at its first recall, the run of equal recall that began
    above it (whose first vertex has the best precision of the run)."""
    grid, found = np.linspace(0, 1, curve_points), {}
    best = [piece["curves"]["best_precision"] for piece in pieces]
    beyond = np.r_[np.maximum.accumulate(best[::-1])[::-1][1:], 0.0] if best else []
    carried = (0, 0)  # (positives, negatives) at the first vertex of the last run of equal recall so far
    for piece, after in zip(pieces, beyond, strict=True):
        head = 1.0 if carried[0] == 0 else carried[0] / (carried[0] + carried[1])
        for index, (low, high, best_low, best_high, low_is_start) in piece["curves"]["pr"].items():
            if index not in found:
                value_low = max(best_low, after, head if low_is_start else 0.0)
                found[index] = value_low if high is None else float(np.interp(grid[index], [low, high], [value_low, max(best_high, after)]))
        positives_end, negatives_first, has_positives = piece["curves"]["end"]
        if has_positives:
            carried = (positives_end, negatives_first)
    return [{"recall": float(r), "precision": found.get(i, float("nan"))} for i, r in enumerate(grid)]


# -- the report ------------------------------------------------------------------------------------


def assemble(
    merged: PartSummary,
    ranges: Sequence[Range],
    pieces: Sequence[dict[str, Any]],
    params: EvaluateParams,
    labels: tuple[Any, Any],
    calibration: Calibration,
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """(the metrics report, the curve tables) from the merged summary and the ranges' pieces. The
    metrics are those of the calibrated probabilities at the calibration's threshold; the test
    set's log-loss and Brier score of the model's own probabilities stand beside them."""
    ranking, curves = merge_ranks(ranges, pieces, merged, params.curve_points)

    def metrics(name: str) -> dict[str, Any]:
        sums = merged.groups[name]
        roc_auc, pr_auc = ranking[name]
        return metrics_from_counts(sums.rows, sums.positives, sums.tp, sums.fp, sums.log_loss_sum, sums.brier_sum, roc_auc, pr_auc)

    whole = merged.groups[ALL]
    test = metrics(ALL)
    if whole.rows:
        test.update(log_loss_raw=float(merged.raw[0] / whole.rows), brier_raw=float(merged.raw[1] / whole.rows))
    report: dict[str, Any] = {"threshold": calibration.threshold, "calibration": calibration.method, "test": test}
    periods = sorted(name for name in merged.groups if name != ALL)
    if periods and not merged.too_many_periods and len(periods) <= params.max_periods:
        report["by_period"] = {name: metrics(name) for name in periods}
    counts = {(0, 0): whole.rows - whole.positives - whole.fp, (0, 1): whole.fp, (1, 0): whole.positives - whole.tp, (1, 1): whole.tp}
    tables = {
        **curves,
        "calibration": reliability_table(merged.calibration),
        "confusion": [{"actual": str(labels[a]), "predicted": str(labels[p]), "count": int(counts[a, p])} for a in (0, 1) for p in (0, 1)],
    }
    return report, tables


def evaluate_scores(
    y_true: np.ndarray,
    raw: np.ndarray,
    times: pd.Series | None,
    params: EvaluateParams,
    labels: tuple[Any, Any] = (0, 1),
    range_rows: int | None = None,
    calibration: Calibration = Calibration(),  # noqa: B008 - frozen: the model's probability at 0.5
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """The report and the curve tables of the model's probabilities `raw` in memory, calibrated:
    one part (ranges of `range_rows`, default one range)."""
    y_true = np.asarray(y_true).astype(np.int64)
    periods = period_labels(times, params.period, params.max_periods) if times is not None else None
    merged, proba = summarise_scores(y_true, raw, periods, params, calibration)
    merged.too_many_periods = times is not None and periods is None
    ranges = plan_ranges(merged, range_rows or max(1, len(y_true)))
    period_values = None if periods is None else periods.to_numpy(dtype=object)
    pieces = [
        rank_range(y_true[held], proba[held], None if period_values is None else period_values[held], spot, params.curve_points)
        for spot in ranges
        for held in [spot.holds(proba)]
    ]
    return assemble(merged, ranges, pieces, params, labels, calibration)


def evaluate(
    parts: Sequence[str | Path], model_text: str, schema: FeatureSchema, params: EvaluateParams, calibration: Calibration, scratch_in: Path
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """The report and the curve tables of the model, calibrated, on the test features' parts, with
    the stage's executor; the parts' sorted scores wait in a scratch folder inside `scratch_in`
    (one the workers see), removed on the way out."""
    from mlpipe.model.booster import booster_of

    # The rows TreeSHAP explains, by their place in the whole table (the same rows whatever the
    # parts), handed to each part as its own positions.
    starts = offsets(part_rows([Path(part) for part in parts]))
    chosen = explained_positions(int(starts[-1]), params.explain_rows)
    explained = [chosen[(chosen >= start) & (chosen < end)] - start for start, end in zip(starts[:-1], starts[1:], strict=True)]
    with _scratch(scratch_in) as scratch:
        files = [str(scratch / f"scores-{index:05d}.parquet") for index in range(len(parts))]
        # Absolute paths: a worker's working directory is its own.
        calls = [
            (str(Path(part).absolute()), model_text, schema, params, calibration, file, rows)
            for part, file, rows in zip(parts, files, explained, strict=True)
        ]
        summaries = run_in_order(score_part, calls, "evaluate: scores")
        merged = summaries[0]
        for summary in summaries[1:]:
            merged = merged + summary
        ranges = plan_ranges(merged, max(1, max(summary.groups[ALL].rows for summary in summaries)))
        pieces = run_in_order(rank_files, [(files, spot, params.curve_points) for spot in ranges], "evaluate: ranking")
    report, tables = assemble(merged, ranges, pieces, params, (schema.negative_label, schema.positive_label), calibration)
    tables["feature_importance"] = importance_table(booster_of(model_text), schema.feature_names, merged.explained).to_dict("records")
    return report, tables


@contextlib.contextmanager
def _scratch(parent: Path) -> Iterator[Path]:
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".evaluate-scores-", dir=parent) as folder:
        yield Path(folder).absolute()


def score_part(
    part: str, model_text: str, schema: FeatureSchema, params: EvaluateParams, calibration: Calibration, scores: str, explained: np.ndarray
) -> PartSummary:
    """Score one part (where it is read): its summary back, with the |contribution| sums of its
    rows at positions `explained`, its calibrated scores sorted into `scores`."""
    from mlpipe.model.booster import booster_of, predict_proba

    columns = list(dict.fromkeys([*schema.feature_names, schema.target, *([schema.time_column] if schema.time_column else [])]))
    table = read_part_columns(part, columns, "part of the test features", "featurize")
    booster = booster_of(model_text)
    y, raw = table[schema.target].to_numpy().astype(np.int64), predict_proba(booster, table, schema)
    periods = period_labels(table[schema.time_column], params.period, params.max_periods) if schema.time_column else None
    summary, proba = summarise_scores(y, raw, periods, params, calibration)
    summary.too_many_periods = schema.time_column is not None and periods is None
    summary.explained = ContributionSums.of(contributions(booster, table.iloc[explained], schema))
    order = np.argsort(proba, kind="stable")
    period_column = (
        pa.array(None if periods is None else periods.to_numpy(dtype=object)[order], type=pa.string())
        if periods is not None
        else pa.nulls(len(y), pa.string())
    )
    # Small row groups, sorted: a range reads only the groups its scores fall in.
    pq.write_table(pa.table({"proba": proba[order], "y": y[order].astype(np.int8), "period": period_column}), scores, row_group_size=65_536)
    return summary


def rank_files(files: Sequence[str], spot: Range, curve_points: int) -> dict[str, Any]:
    """`rank_range` on the range's rows of every part's scores."""
    table = pa.concat_tables([pq.read_table(file, filters=spot.filters()) for file in files])
    periods = table["period"].to_numpy(zero_copy_only=False)
    return rank_range(
        table["y"].to_numpy(), table["proba"].to_numpy(), None if table["period"].null_count == len(table) else periods, spot, curve_points
    )
