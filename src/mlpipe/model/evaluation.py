"""Binary-classification metrics and the small, fixed-size curve tables behind the plots.

Curves are resampled onto fixed grids so that plot files stay a few kilobytes (they live in
git for review) and diff cleanly between revisions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlpipe.config import EvaluateParams
from mlpipe.data.schema import category_strings
from mlpipe.data.times import time_values
from mlpipe.model.metrics import binary_metrics, precision_recall_curve, roc_curve


def evaluation_report(y_true: np.ndarray, proba: np.ndarray, times: pd.Series | None, params: EvaluateParams) -> dict[str, Any]:
    """Metrics on the whole set and, when rows carry a time, per period."""
    report: dict[str, Any] = {"threshold": params.threshold, "test": binary_metrics(y_true, proba, params.threshold)}
    periods = period_labels(times, params.period, params.max_periods) if times is not None else None
    if periods is not None:
        report["by_period"] = metrics_by_period(y_true, proba, periods, params.threshold)
    return report


def curve_tables(y_true: np.ndarray, proba: np.ndarray, params: EvaluateParams, labels: tuple[Any, Any]) -> dict[str, list[dict[str, Any]]]:
    """The plot data DVC renders: ROC, precision-recall, calibration and confusion counts."""
    return {
        "roc": roc_points(y_true, proba, params.curve_points),
        "precision_recall": precision_recall_points(y_true, proba, params.curve_points),
        "calibration": calibration_points(y_true, proba, params.calibration_bins),
        "confusion": confusion_counts(y_true, proba, params.threshold, labels),
    }


def period_labels(times: pd.Series, period: str, max_periods: int) -> pd.Series | None:
    """A label per row naming its period: the value itself for years or other small sets of
    numbers, a calendar period (`evaluate.period`, e.g. Y, Q, M) for dates. None if too many."""
    values = time_values(times)
    if pd.api.types.is_datetime64_any_dtype(values):
        labels = values.dt.to_period(period).astype(str)
    else:
        labels = category_strings(values)  # 2016.0 and 2016 are both "2016"
    return labels if labels.nunique() <= max_periods else None


def metrics_by_period(y_true: np.ndarray, proba: np.ndarray, periods: pd.Series, threshold: float) -> dict[str, dict[str, Any]]:
    codes, names = pd.factorize(periods, sort=True)
    y_true, proba = np.asarray(y_true), np.asarray(proba)
    return {str(name): binary_metrics(y_true[codes == i], proba[codes == i], threshold) for i, name in enumerate(names)}


def roc_points(y_true: np.ndarray, proba: np.ndarray, n_points: int) -> list[dict[str, float]]:
    fpr, tpr, _ = roc_curve(y_true, proba)
    grid = np.linspace(0, 1, n_points)
    return [{"fpr": float(x), "tpr": float(y)} for x, y in zip(grid, np.interp(grid, fpr, tpr), strict=True)]


def precision_recall_points(y_true: np.ndarray, proba: np.ndarray, n_points: int) -> list[dict[str, float]]:
    precision, recall, _ = precision_recall_curve(y_true, proba)
    # Interpolated precision: the best precision reachable at this recall or higher. The curve's
    # recall never rises along the array, so that is a running maximum; reversing (rather than
    # argsort, whose order among tied recalls depends on the CPU's SIMD sort and so changed the
    # curve between machines) puts recall in the rising order np.interp needs. Among tied
    # recalls the first then holds the maximum, so one point per recall leaves no ambiguity.
    best = np.maximum.accumulate(precision)[::-1]
    recall, first = np.unique(recall[::-1], return_index=True)
    grid = np.linspace(0, 1, n_points)
    return [{"recall": float(r), "precision": float(p)} for r, p in zip(grid, np.interp(grid, recall, best[first]), strict=True)]


def calibration_points(y_true: np.ndarray, proba: np.ndarray, n_bins: int) -> list[dict[str, float]]:
    bins = np.minimum((np.asarray(proba) * n_bins).astype(int), n_bins - 1)
    frame = pd.DataFrame({"bin": bins, "y": y_true, "p": proba}).groupby("bin")
    table = frame.agg(mean_predicted=("p", "mean"), fraction_positive=("y", "mean"), rows=("y", "size"))
    return [
        {
            "bin": int(b),
            "mean_predicted": float(row.mean_predicted),
            "fraction_positive": float(row.fraction_positive),
            "rows": int(row.rows),
        }
        for b, row in table.iterrows()
    ]


def confusion_counts(y_true: np.ndarray, proba: np.ndarray, threshold: float, labels: tuple[Any, Any]) -> list[dict[str, Any]]:
    """Counts per (actual, predicted) pair; `labels` is (negative, positive) as the user named them."""
    predicted = (np.asarray(proba) >= threshold).astype(int)
    y_true = np.asarray(y_true).astype(int)
    return [
        {"actual": str(labels[a]), "predicted": str(labels[p]), "count": int(((y_true == a) & (predicted == p)).sum())}
        for a in (0, 1)
        for p in (0, 1)
    ]
