"""Binary-classification metrics of predicted probabilities against labels, for the test set
(evaluate) and for labelled drift windows (drift)."""

from __future__ import annotations

from typing import Any

import numpy as np


def binary_metrics(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, Any]:
    from sklearn import metrics as skm  # a second and a half of imports: only where metrics are computed

    y_true = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, dtype=float)
    predicted = proba >= threshold
    positive = y_true == 1
    # Threshold metrics from the confusion counts directly: the same definitions as
    # scikit-learn's (zero_division=0), without its per-call validation overhead.
    tp = int((predicted & positive).sum())
    fp = int((predicted & ~positive).sum())
    fn = int((~predicted & positive).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    both_classes = 0 < positive.sum() < len(y_true)
    return {
        "rows": int(len(y_true)),
        "positive_rate": float(positive.mean()),
        "predicted_positive_rate": float(predicted.mean()),
        "roc_auc": float(skm.roc_auc_score(y_true, proba)) if both_classes else None,
        "pr_auc": float(skm.average_precision_score(y_true, proba)) if both_classes else None,
        "log_loss": float(skm.log_loss(y_true, proba, labels=[0, 1])),
        "brier": float(np.mean((proba - y_true) ** 2)),
        "accuracy": float((predicted == positive).mean()),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
    }
