"""Matplotlib figures of the evaluation, drawn from the same tables DVC renders.

PNG metadata is stripped of the software version so the bytes depend only on the data.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlpipe.io import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Records = list[dict[str, Any]]


@functools.cache
def _figure_class() -> type[Figure]:
    """matplotlib's Figure, imported on first use (0.4 s). Figures are made without pyplot:
    no global registry of open figures to close, no backend to choose; `savefig` draws PNGs with
    the Agg renderer, as it picks it for the format."""
    from matplotlib.figure import Figure

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its INFO notes on axis units are noise here
    return Figure


def save_figure(figure: Figure, target: str | Path) -> Path:
    with atomic_path(target) as temporary:
        figure.savefig(temporary, format="png", dpi=100, metadata={"Software": None})
    return Path(target)


def _axes(title: str, xlabel: str, ylabel: str, size=(5, 4.5), left: float = 0.15):
    # Fixed margins rather than constrained layout: the layout solver costs the evaluate
    # stage about a second across its figures, for no visible gain on these simple plots.
    figure = _figure_class()(figsize=size)
    axes = figure.subplots()
    figure.subplots_adjust(left=left, right=0.95, top=0.9, bottom=0.12)
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.grid(alpha=0.3)
    return figure, axes


def roc_figure(points: Records, auc: float | None) -> Figure:
    figure, axes = _axes("ROC curve (test)", "false positive rate", "true positive rate")
    frame = pd.DataFrame(points)
    axes.plot(frame["fpr"], frame["tpr"], label=f"model (AUC {auc:.4f})" if auc is not None else "model")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    axes.legend(loc="lower right")
    return figure


def precision_recall_figure(points: Records, pr_auc: float | None, positive_rate: float) -> Figure:
    figure, axes = _axes("Precision-recall (test)", "recall", "precision")
    frame = pd.DataFrame(points)
    axes.plot(frame["recall"], frame["precision"], label=f"model (AP {pr_auc:.4f})" if pr_auc is not None else "model")
    axes.axhline(positive_rate, linestyle="--", color="grey", label=f"base rate {positive_rate:.3f}")
    axes.set_ylim(0, 1.02)
    axes.legend(loc="lower left")
    return figure


def calibration_figure(points: Records) -> Figure:
    figure, axes = _axes("Calibration (test)", "mean predicted probability", "observed positive rate")
    frame = pd.DataFrame(points)
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    axes.plot(frame["mean_predicted"], frame["fraction_positive"], marker="o", label="model")
    axes.legend(loc="upper left")
    return figure


def confusion_figure(counts: Records, threshold: float) -> Figure:
    frame = pd.DataFrame(counts).pivot(index="actual", columns="predicted", values="count")
    figure, axes = _axes(f"Confusion matrix (threshold {threshold})", "predicted", "actual", size=(4.5, 4))
    axes.grid(False)
    axes.imshow(frame.to_numpy(), cmap="Blues")
    axes.set_xticks(range(len(frame.columns)), frame.columns)
    axes.set_yticks(range(len(frame.index)), frame.index)
    peak = frame.to_numpy().max()
    for (row, col), value in pd.DataFrame(frame.to_numpy()).stack().items():
        axes.text(col, row, f"{value:,}", ha="center", va="center", color="white" if value > peak / 2 else "black")
    return figure


def importance_figure(importance: Records, top: int = 20) -> Figure:
    frame = pd.DataFrame(importance).head(top).iloc[::-1]
    height = 0.3 * len(frame) + 1.2
    figure, axes = _axes("Feature importance (share of total gain)", "gain share", "", size=(5.5, height), left=0.3)
    figure.subplots_adjust(top=1 - 0.5 / height, bottom=0.6 / height)
    axes.barh(frame["feature"], frame["gain_share"])
    return figure


def training_curve_figure(curve: Records, best_iteration: int | None) -> Figure:
    figure, axes = _axes("Training curve", "boosting iteration", "log-loss")
    if not curve:
        axes.text(0.5, 0.5, "no validation slice\n(train.validation_fraction is 0)", ha="center", va="center", transform=axes.transAxes)
        return figure
    frame = pd.DataFrame(curve)
    axes.plot(frame["iteration"], frame["train_logloss"], label="training slice")
    axes.plot(frame["iteration"], frame["validation_logloss"], label="validation slice")
    if best_iteration:
        axes.axvline(best_iteration, linestyle="--", color="grey", label=f"chosen: {best_iteration} trees")
    axes.legend(loc="upper right")
    return figure


def metric_by_period_figure(by_period: dict[str, dict[str, Any]], metric: str = "roc_auc") -> Figure:
    figure, axes = _axes(f"Test {metric} by period", "period", metric)
    periods = list(by_period)
    axes.plot(periods, [by_period[p][metric] for p in periods], marker="o")
    return figure


def evaluation_figures(report: dict[str, Any], tables: dict[str, Records], curve: Records, best_iteration: int | None) -> dict[str, Figure]:
    """Every evaluation figure by name, drawn from the report and the plot tables."""
    test = report["test"]
    figures = {
        "roc": roc_figure(tables["roc"], test["roc_auc"]),
        "precision_recall": precision_recall_figure(tables["precision_recall"], test["pr_auc"], test["positive_rate"]),
        "calibration": calibration_figure(tables["calibration"]),
        "confusion": confusion_figure(tables["confusion"], report["threshold"]),
        "feature_importance": importance_figure(tables["feature_importance"]),
        "training_curve": training_curve_figure(curve, best_iteration),
    }
    if "by_period" in report:
        figures["roc_auc_by_period"] = metric_by_period_figure(report["by_period"])
    return figures
