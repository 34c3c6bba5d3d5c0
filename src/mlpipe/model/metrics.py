"""Binary-classification metrics of predicted probabilities against labels, for the test set
(evaluate) and for labelled drift windows (drift).

The ranking metrics and curves are scikit-learn's definitions (1.9), computed in numpy:
importing `sklearn.metrics` costs about a second of CPU (it loads scipy.stats), more than the
metrics themselves, in every `evaluate` and `drift` process. tests/test_metrics.py holds each
function equal to scikit-learn's, bit for bit, on tables with and without ties.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def binary_metrics(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, Any]:
    sums = metric_sums(y_true, proba, threshold)
    both_classes = 0 < sums["positives"] < sums["rows"]
    return metrics_from_counts(
        **sums,
        roc_auc=roc_auc(y_true, proba) if both_classes else None,
        pr_auc=average_precision(y_true, proba) if both_classes else None,
    )


def metric_sums(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, Any]:
    """The counts and sums of these rows that `metrics_from_counts` takes: they merge by addition."""
    y_true = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, dtype=float)
    predicted, positive = proba >= threshold, y_true == 1
    return {
        "rows": len(y_true),
        "positives": int(positive.sum()),
        "tp": int((predicted & positive).sum()),
        "fp": int((predicted & ~positive).sum()),
        "log_loss_sum": float(own_class_losses(y_true, proba).sum()),
        "brier_sum": float(((proba - y_true) ** 2).sum()),
    }


def metrics_from_counts(
    rows: int, positives: int, tp: int, fp: int, log_loss_sum: float, brier_sum: float, roc_auc: float | None, pr_auc: float | None
) -> dict[str, Any]:
    """The metrics from counts and sums that merge by addition (so a set's parts can each send
    theirs: `mlpipe.model.evaluation`) and the two ranking metrics. Threshold metrics from the
    confusion counts (zero_division=0, as scikit-learn's default)."""
    fn, tn = positives - tp, rows - positives - fp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "rows": int(rows),
        "positive_rate": positives / rows if rows else float("nan"),
        "predicted_positive_rate": (tp + fp) / rows if rows else float("nan"),
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
        "log_loss": log_loss_sum / rows if rows else float("nan"),
        "brier": brier_sum / rows if rows else float("nan"),
        "accuracy": (tp + tn) / rows if rows else float("nan"),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
    }


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (`sklearn.metrics.roc_auc_score`); both classes must be present."""
    fpr, tpr, _ = roc_curve(y_true, score)
    return float(np.trapezoid(tpr, fpr))


def average_precision(y_true: np.ndarray, score: np.ndarray) -> float:
    """Average precision, the step-wise area under the precision-recall curve
    (`sklearn.metrics.average_precision_score`)."""
    precision, recall, _ = precision_recall_curve(y_true, score)
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


def log_loss(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log-likelihood, probabilities clipped to [eps, 1 - eps] (`sklearn.metrics.log_loss`)."""
    return float(np.mean(own_class_losses(y_true, proba)))


def own_class_losses(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Each row's negative log-likelihood (`log_loss` is their mean)."""
    proba = np.asarray(proba, dtype=float)
    eps = np.finfo(proba.dtype).eps
    # scikit-learn clips the probability of each row's own class, so the negative class's is 1 - p, then clipped.
    own = np.where(np.asarray(y_true) == 1, np.clip(proba, eps, 1 - eps), np.clip(1 - proba, eps, 1 - eps))
    return -np.log(own)


def roc_curve(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate, thresholds) from (0, 0) up, without the points
    that lie between and in line with their neighbours (`sklearn.metrics.roc_curve`)."""
    fps, tps, thresholds = counts_at_thresholds(y_true, score)
    if len(fps) > 2:
        corners = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps, thresholds = fps[corners], tps[corners], thresholds[corners]
    fps, tps, thresholds = np.r_[0.0, fps], np.r_[0.0, tps], np.r_[np.inf, thresholds]
    return fps / fps[-1], tps / tps[-1], thresholds


def precision_recall_curve(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) with recall falling to a final (recall 0, precision 1)
    point (`sklearn.metrics.precision_recall_curve`); y_true must hold a positive."""
    fps, tps, thresholds = counts_at_thresholds(y_true, score)
    precision = tps / (tps + fps)  # never 0/0: each threshold counts at least one row
    recall = tps / tps[-1]
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1]


def counts_at_thresholds(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positives when every score >= each distinct score counts as positive,
    from the highest score down. The counts at the last row of each group of tied scores do not
    depend on the order within the group, so the sort's handling of ties cannot change them."""
    score = np.asarray(score, dtype=float)
    order = np.argsort(score, kind="stable")[::-1]
    score, positive = score[order], (np.asarray(y_true)[order] == 1).astype(float)
    last_of_each_score = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]
    tps = np.cumsum(positive)[last_of_each_score]
    fps = 1 + last_of_each_score - tps
    return fps, tps, score[last_of_each_score]
