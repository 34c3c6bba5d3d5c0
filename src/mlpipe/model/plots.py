"""Matplotlib figures of the evaluation, drawn from the same tables DVC renders.

PNG metadata is stripped of the software version so the bytes depend only on the data.
"""

from __future__ import annotations

import functools
import logging
import textwrap
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


def _axes(title: str, xlabel: str, ylabel: str, size=(5, 4.5)):
    # Tight layout fits the margins to the labels as drawn (a long name, a wide tick label), so
    # nothing is clipped at the figure's edge; it costs about 20 ms a figure.
    figure = _figure_class()(figsize=size, layout="tight")
    axes = figure.subplots()
    # The title over the figure, not the axes: over axes pushed aside by long tick labels it
    # would overhang the figure's edge.
    figure.suptitle(shorten(title))
    axes.set(xlabel=shorten(xlabel), ylabel=shorten(ylabel))
    axes.grid(alpha=0.3)
    return figure, axes


LABEL_CHARACTERS = 40  # the longest label drawn in full; the layout makes room for that much


def shorten(label: Any, limit: int = LABEL_CHARACTERS) -> str:
    """A label of at most `limit` characters: a longer one keeps its start and end around an
    ellipsis (names that differ tell apart at either end, as `income_2017` and `income_2018` do)."""
    text = str(label)
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2 + (limit - 1) % 2
    return f"{text[:head]}…{text[len(text) - (limit - 1 - head) :]}"


def wrapped(label: Any, width: int, lines: int = 3) -> str:
    """A label on lines of at most `width` characters, at most `lines` of them (then an ellipsis)."""
    return textwrap.fill(str(label), width, max_lines=lines, placeholder=" …")


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
    # aspect="auto": square cells would shrink the axes after the layout placed its labels.
    axes.imshow(frame.to_numpy(), cmap="Blues", aspect="auto")
    # Class labels side by side under a column each: wrapped onto lines of a column's width.
    axes.set_xticks(range(len(frame.columns)), [wrapped(label, 16) for label in frame.columns])
    axes.set_yticks(range(len(frame.index)), [wrapped(label, 20) for label in frame.index])
    peak = frame.to_numpy().max()
    for (row, col), value in pd.DataFrame(frame.to_numpy()).stack().items():
        axes.text(col, row, f"{value:,}", ha="center", va="center", color="white" if value > peak / 2 else "black")
    return figure


IMPORTANCES = {"gain_share": "gain", "contribution_share": "mean |contribution| (TreeSHAP)"}


def importance_figure(importance: Records, top: int = 20) -> Figure:
    """Each feature's share of the total gain beside its share of the mean |contribution|, the
    `top` features by the larger of the two: gain counts where the trees split, contributions how
    much a feature moves the test rows' scores, and the two can disagree."""
    frame = pd.DataFrame(importance)
    frame = frame.loc[frame[list(IMPORTANCES)].max(axis=1).sort_values(ascending=False, kind="stable").index].head(top).iloc[::-1]
    names = [shorten(name) for name in frame["feature"]]
    # Room for the longest name (about 0.085 inch a character at 10 points) beside axes as wide as
    # the title above them.
    width = max(5.5, 4.5 + 0.085 * max((len(name) for name in names), default=0))
    figure, axes = _axes("Feature importance (share of the total)", "share", "", size=(width, 0.45 * len(frame) + 1.6))
    # Bars at positions, names as tick labels: two names shortened alike still get a bar each.
    bar = 0.8 / len(IMPORTANCES)
    for offset, (column, label) in enumerate(IMPORTANCES.items()):
        axes.barh([position + (0.5 - offset) * bar for position in range(len(frame))], frame[column], height=bar, label=label)
    axes.set_yticks(range(len(frame)), names)
    axes.legend(loc="lower right", fontsize="small")
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
    axes.plot(range(len(periods)), [by_period[p][metric] for p in periods], marker="o")
    labels = [shorten(period, 20) for period in periods]
    # Side by side while they fit under the axes; slanted (and the layout makes room) when not.
    slanted = sum(len(label) + 2 for label in labels) > 45
    axes.set_xticks(range(len(periods)), labels, rotation=30 if slanted else 0, ha="right" if slanted else "center")
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


FAIRNESS_RATES = {
    "selection_rate": "selection rate",
    "true_positive_rate": "true positive rate",
    "false_positive_rate": "false positive rate",
}


def fairness_figure(rows: Records) -> Figure:
    """Each compared group's rates (the fairness stage's plot rows), a bar per rate, the groups of
    one attribute together: equal bars across a block are demographic parity and equalised odds."""
    height = 0.45 * len(rows) + 1.6
    names = [shorten(row["group"]) for row in rows]
    width = max(6.0, 4.5 + 0.085 * max((len(name) for name in names), default=0))
    figure, axes = _axes("Rates by group (test)", "rate", "", size=(width, height))
    if not rows:
        axes.text(0.5, 0.5, "no groups to compare\n(fairness.groups)", ha="center", va="center", transform=axes.transAxes)
        return figure
    positions = list(range(len(rows)))[::-1]  # the first group at the top
    bar = 0.8 / len(FAIRNESS_RATES)
    for offset, (rate, label) in enumerate(FAIRNESS_RATES.items()):
        axes.barh([p + (1 - offset) * bar for p in positions], [row[rate] for row in rows], height=bar, label=label)
    axes.set_yticks(positions, names)
    axes.set_xlim(0, 1)
    axes.legend(loc="lower right", fontsize="small")
    return figure
