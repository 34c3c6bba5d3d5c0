"""Calibration of the model's probabilities and the decision threshold, both fitted on a held-out
slice of the training period (`mlpipe.model.training` holds it out; the model never fits it) and
saved beside the model as plain JSON, `models/calibration.json`: never a pickle, and the same file
for evaluate, predict, the service and every later reader.

- `isotonic`: scikit-learn's `IsotonicRegression` (as `CalibratedClassifierCV(method="isotonic")`
  fits it), kept as its breakpoints and applied with `np.interp` (linear between them, clipped at
  the ends, as `IsotonicRegression.predict` with out_of_bounds="clip");
- `sigmoid`: Platt's scaling, calibrated = 1 / (1 + exp(-(a * log-odds + b))) on the model's
  log-odds (LightGBM's raw score), a and b fitted with Platt's smoothed targets as
  `CalibratedClassifierCV(method="sigmoid")` does on a decision function;
- `none`: the model's probability as it is.

The decision threshold applies to the calibrated probability: a row is positive when it is at or
above it. It is chosen on the slice's calibrated probabilities for an objective (`choose_threshold`).

Every table the pipeline writes (predictions, the service's log) holds the calibrated probability
already: apply `Calibration.apply` to the model's own output (`predict_proba`), never twice.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlpipe.errors import ConfigError
from mlpipe.io import corrupt_artifact, read_pipeline_json, rounded

METHODS = ("isotonic", "sigmoid", "none")
OBJECTIVES = ("f1", "cost", "precision", "recall", "fixed")
FORMAT = 1  # the layout of calibration.json; a reader refuses another


@dataclass(frozen=True)
class Calibration:
    """A fitted calibration and threshold.

    method: one of METHODS. mapping: isotonic {"x": breakpoints of the model's probability, "y":
    the calibrated probability at each}; sigmoid {"a", "b"}; none {}. threshold: the calibrated
    probability at or above which a row is positive. objective: the rule that chose it
    (calibration.threshold in params). fitted_on: the slice's figures, before ("raw") and after
    ("calibrated"): rows, positives, Brier score, log-loss, the reliability curve, and precision,
    recall and F1 at the threshold ({} when nothing was fitted)."""

    method: str = "none"
    mapping: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.5
    objective: dict[str, Any] = field(default_factory=lambda: {"objective": "fixed", "value": 0.5})
    fitted_on: dict[str, Any] = field(default_factory=dict)

    def apply(self, proba: np.ndarray) -> np.ndarray:
        """The calibrated probability of each of the model's probabilities."""
        proba = np.asarray(proba, dtype=float)
        if self.method == "isotonic":
            return np.interp(proba, self.mapping["x"], self.mapping["y"])
        if self.method == "sigmoid":
            return _expit(self.mapping["a"] * _logit(proba) + self.mapping["b"])
        return proba

    def label(self, calibrated: np.ndarray) -> np.ndarray:
        """True where a calibrated probability (what `apply` returns) is labelled positive."""
        return np.asarray(calibrated, dtype=float) >= self.threshold

    def describe(self, with_slice: bool = True) -> str:
        """One line for logs and summaries: the method, the threshold with its objective, and (with
        `with_slice`) the slice's Brier score and log-loss before and after."""
        line = f"calibration {self.method}, threshold {self.threshold:.4g} ({describe_objective(self.objective)})"
        figures = self.fitted_on
        if not with_slice:
            return line
        if not figures:
            return f"{line}, no calibration slice"
        return (
            f"{line}; on the calibration slice ({figures['rows']} rows) Brier {figures['brier_raw']:.5f} -> "
            f"{figures['brier_calibrated']:.5f}, log-loss {figures['log_loss_raw']:.5f} -> {figures['log_loss_calibrated']:.5f}"
        )

    def to_dict(self) -> dict[str, Any]:
        # The mapping and the threshold keep every digit: rounding them would change labels.
        return {
            "format": FORMAT,
            "method": self.method,
            "mapping": self.mapping,
            "threshold": self.threshold,
            "objective": self.objective,
            "fitted_on": self.fitted_on,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, payload: Any, path: str | Path = "calibration.json") -> Calibration:
        """The calibration in `payload` (a parsed calibration.json); an `ArtifactError` naming
        `path` when it is not one."""
        problem = _problem(payload)
        if problem:
            raise corrupt_artifact("the calibration", path, "train", problem)
        mapping = {key: [float(v) for v in value] if isinstance(value, list) else float(value) for key, value in payload["mapping"].items()}
        return cls(payload["method"], mapping, float(payload["threshold"]), dict(payload["objective"]), dict(payload["fitted_on"]))

    @classmethod
    def read(cls, path: str | Path) -> Calibration:
        """models/calibration.json (or another path the train stage wrote): a `DataError` when it
        is missing, an `ArtifactError` when it is truncated or not a calibration."""
        payload = read_pipeline_json(
            path, "the calibration", "train", ("format", "method", "mapping", "threshold", "objective", "fitted_on")
        )
        return cls.from_dict(payload, path)


def _problem(payload: Any) -> str | None:
    """What makes `payload` not a calibration this code wrote (None when it is one)."""
    if not isinstance(payload, dict):
        return "not a JSON object"
    if payload.get("format") != FORMAT:
        return f"format {payload.get('format')!r}, expected {FORMAT}"
    method, mapping, threshold = payload.get("method"), payload.get("mapping"), payload.get("threshold")
    if method not in METHODS:
        return f"method {method!r} is not one of {', '.join(METHODS)}"
    if not _number(threshold):
        return f"threshold {threshold!r} is not a number"
    if not isinstance(mapping, dict) or not isinstance(payload.get("objective"), dict) or not isinstance(payload.get("fitted_on"), dict):
        return "mapping, objective and fitted_on must be JSON objects"
    if method == "isotonic":
        x, y = mapping.get("x"), mapping.get("y")
        if not (isinstance(x, list) and isinstance(y, list) and x and len(x) == len(y) and all(map(_number, [*x, *y]))):
            return "an isotonic mapping needs lists x and y of numbers, of one length"
        if any(later < earlier for earlier, later in zip(x, x[1:], strict=False)):
            return "the isotonic breakpoints x are not in increasing order"
    if method == "sigmoid" and not (_number(mapping.get("a")) and _number(mapping.get("b"))):
        return "a sigmoid mapping needs numbers a and b"
    return None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _logit(proba: np.ndarray) -> np.ndarray:
    eps = np.finfo(float).eps  # LightGBM's probabilities never reach 0 or 1; a clip keeps log finite anyway
    clipped = np.clip(proba, eps, 1 - eps)
    return np.log(clipped) - np.log1p(-clipped)


def _expit(value: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-value))


def describe_objective(rule: Mapping[str, Any]) -> str:
    objective = rule["objective"]
    if objective == "fixed":
        return f"fixed at {rule['value']:g}"
    if objective == "cost":
        return f"least cost, a false positive {rule['false_positive_cost']:g}, a false negative {rule['false_negative_cost']:g}"
    if objective == "precision":
        return f"the highest recall at precision >= {rule['target']:g}"
    if objective == "recall":
        return f"the highest precision at recall >= {rule['target']:g}"
    return "the highest F1"


# -- fitting ---------------------------------------------------------------------------------------


def fit(labels: np.ndarray, raw: np.ndarray, method: str, rule: Mapping[str, Any], bins: int = 10) -> Calibration:
    """The calibration of `method` and the threshold of `rule` (calibration.threshold: objective,
    value, false_positive_cost, false_negative_cost, target), fitted on the slice's 0/1 `labels`
    and the model's probabilities `raw`; the slice's figures before and after, with `bins`
    equal-width bins for the reliability curve."""
    labels, raw = np.asarray(labels).astype(np.int64), np.asarray(raw, dtype=float)
    if method == "isotonic":
        mapping = fit_isotonic(labels, raw)
    elif method == "sigmoid":
        mapping = fit_sigmoid(labels, raw)
    else:
        mapping = {}
    calibration = Calibration(method, mapping, 0.5, dict(rule))
    calibrated = calibration.apply(raw)
    threshold = choose_threshold(labels, calibrated, rule)
    fitted_on = slice_figures(labels, raw, calibrated, threshold, bins)
    return Calibration(method, mapping, threshold, dict(rule), fitted_on)


def fit_isotonic(labels: np.ndarray, raw: np.ndarray) -> dict[str, list[float]]:
    """The breakpoints of scikit-learn's isotonic fit (what CalibratedClassifierCV fits)."""
    from sklearn.isotonic import IsotonicRegression

    fitted = IsotonicRegression(out_of_bounds="clip").fit(raw, labels)
    return {"x": [float(v) for v in fitted.X_thresholds_], "y": [float(v) for v in fitted.y_thresholds_]}


def fit_sigmoid(labels: np.ndarray, raw: np.ndarray) -> dict[str, float]:
    """Platt's a and b on the log-odds. Platt's targets are smoothed, (positives + 1) /
    (positives + 2) for a positive and 1 / (negatives + 2) for a negative, so that a slice without
    overlap still gives finite a and b; an unpenalised logistic regression on each row twice, as a
    positive weighted by its target and as a negative weighted by the rest, minimises the same
    cross-entropy as scikit-learn's own Platt fit."""
    from sklearn.linear_model import LogisticRegression

    positives = int(labels.sum())
    negatives = len(labels) - positives
    target = np.where(labels == 1, (positives + 1.0) / (positives + 2.0), 1.0 / (negatives + 2.0))
    score = _logit(raw).reshape(-1, 1)
    model = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000)
    model.fit(np.vstack([score, score]), np.r_[np.ones(len(raw)), np.zeros(len(raw))], sample_weight=np.r_[target, 1.0 - target])
    return {"a": float(model.coef_[0, 0]), "b": float(model.intercept_[0])}


def choose_threshold(labels: np.ndarray, calibrated: np.ndarray, rule: Mapping[str, Any]) -> float:
    """The threshold `rule` asks for on these (calibrated) probabilities: one of their distinct
    values (or, for cost, just above the highest: nothing positive). Among thresholds equally good,
    the highest. An unreachable target is a `ConfigError` naming the key."""
    objective = rule["objective"]
    if objective == "fixed":
        return float(rule["value"])
    labels, calibrated = np.asarray(labels).astype(np.int64), np.asarray(calibrated, dtype=float)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        raise ConfigError(
            f"calibration.threshold.objective: {objective} needs both classes on the calibration slice ({len(labels)} rows, "
            f"{positives} positive): raise calibration.fraction or use objective: fixed"
        )
    from mlpipe.model.metrics import counts_at_thresholds

    fps, tps, thresholds = counts_at_thresholds(labels, calibrated)  # from the highest threshold down
    fns = positives - tps
    precision, recall = tps / (tps + fps), tps / positives
    if objective == "f1":
        return float(thresholds[_first_best(2 * tps / (2 * tps + fps + fns))])
    if objective == "cost":
        # Nothing positive costs every positive; it is a candidate too, just above the highest score.
        cost = np.r_[positives * rule["false_negative_cost"], rule["false_positive_cost"] * fps + rule["false_negative_cost"] * fns]
        best = _first_best(-cost)
        return float(np.nextafter(thresholds[0], np.inf)) if best == 0 else float(thresholds[best - 1])
    target = float(rule["target"])
    wanted, other = (precision, recall) if objective == "precision" else (recall, precision)
    reached = wanted >= target
    if not reached.any():
        raise ConfigError(
            f"calibration.threshold.target: no threshold reaches {objective} {target:g} on the calibration slice "
            f"({len(labels)} rows; the highest {objective} there is {wanted.max():.4g}): lower calibration.threshold.target "
            "or use calibration.threshold.objective: f1"
        )
    # The best other figure where the target is reached; ties go to the better target figure.
    candidates = np.flatnonzero(reached)
    best = candidates[np.lexsort((-wanted[candidates], -other[candidates]))[0]]
    return float(thresholds[best])


def _first_best(values: np.ndarray) -> int:
    """The index of the largest value, the first (the highest threshold) among ties."""
    return int(np.argmax(values))


def reliability_sums(labels: np.ndarray, proba: np.ndarray, bins: int) -> np.ndarray:
    """Each of `bins` equal-width probability bins' (rows, sum of probabilities, positives): sums
    that merge by addition, so evaluate's parts each send theirs (`reliability_table` reads them)."""
    index = np.minimum((proba * bins).astype(int), bins - 1)
    return np.stack([np.bincount(index, weights=weights, minlength=bins) for weights in (None, proba, labels)], axis=1)


def reliability_table(sums: np.ndarray) -> list[dict[str, Any]]:
    """The reliability curve from `reliability_sums`: in each bin that holds rows, their mean
    probability and the share of them that is positive."""
    return [
        {"bin": int(b), "mean_predicted": float(row[1] / row[0]), "fraction_positive": float(row[2] / row[0]), "rows": int(row[0])}
        for b, row in enumerate(sums)
        if row[0]
    ]


def reliability(labels: np.ndarray, proba: np.ndarray, bins: int) -> list[dict[str, Any]]:
    """The reliability curve of these rows (the calibration slice's, and evaluate's calibration table)."""
    return reliability_table(reliability_sums(labels, proba, bins))


def slice_figures(labels: np.ndarray, raw: np.ndarray, calibrated: np.ndarray, threshold: float, bins: int) -> dict[str, Any]:
    """The slice's figures before and after calibration, and at the threshold (rounded as every
    metric the pipeline writes, so that a calibration read back equals the one fitted)."""
    from mlpipe.model.metrics import log_loss, metric_sums, metrics_from_counts

    sums = metric_sums(labels, calibrated, threshold)
    at = metrics_from_counts(**sums, roc_auc=None, pr_auc=None)
    figures = {
        "rows": len(labels),
        "positives": sums["positives"],
        "brier_raw": float(np.mean((raw - labels) ** 2)),
        "brier_calibrated": at["brier"],
        "log_loss_raw": log_loss(labels, raw),
        "log_loss_calibrated": at["log_loss"],
        "at_threshold": {key: at[key] for key in ("precision", "recall", "f1", "predicted_positive_rate")},
        "reliability": {"raw": reliability(labels, raw, bins), "calibrated": reliability(labels, calibrated, bins)},
    }
    return rounded(figures)
