"""evaluate: score the test set; write metrics overall and per period, plot data and PNG figures."""

import argparse
from pathlib import Path

import pandas as pd

from mlpipe import evaluation, plots
from mlpipe.cli import describe, log_written, run_stage
from mlpipe.config import load_params
from mlpipe.io import read_json, write_json
from mlpipe.model import feature_importance, model_from_text, predict_proba
from mlpipe.schema import FeatureSchema


def main(log):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", required=True)
    parser.add_argument("--model-schema", required=True)
    parser.add_argument("--features", required=True)
    parser.add_argument("--train-metrics", required=True)
    parser.add_argument("--curve", required=True)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--plots-dir", required=True, type=Path)
    parser.add_argument("--figures-dir", required=True, type=Path)
    args = parser.parse_args()

    params = load_params(args.params).evaluate
    schema = FeatureSchema.from_json(Path(args.model_schema).read_text(encoding="utf-8"))
    booster = model_from_text(Path(args.model).read_text(encoding="utf-8"))
    table = pd.read_parquet(args.features)
    log.info("read %s from %s", describe(table), args.features)
    y, proba = table[schema.target].to_numpy(), predict_proba(booster, table, schema)

    report = {"threshold": params.threshold, "test": evaluation.binary_metrics(y, proba, params.threshold)}
    periods = evaluation.period_labels(table[schema.time_column], params.period, params.max_periods) if schema.time_column else None
    if periods is not None:
        report["by_period"] = evaluation.metrics_by_period(y, proba, periods, params.threshold)
    test = report["test"]
    log.info("test ROC-AUC %.4f, PR-AUC %.4f, log-loss %.4f on %d rows", test["roc_auc"] or float("nan"), test["pr_auc"] or float("nan"), test["log_loss"], test["rows"])
    for period, values in report.get("by_period", {}).items():
        log.info("  %s: ROC-AUC %.4f on %d rows", period, values["roc_auc"] or float("nan"), values["rows"])

    tables = {
        "roc": evaluation.roc_points(y, proba, params.curve_points),
        "precision_recall": evaluation.precision_recall_points(y, proba, params.curve_points),
        "calibration": evaluation.calibration_points(y, proba, params.calibration_bins),
        "confusion": evaluation.confusion_counts(y, proba, params.threshold, (schema.negative_label, schema.positive_label)),
        "feature_importance": feature_importance(booster).to_dict("records"),
    }
    curve, best = read_json(args.curve), read_json(args.train_metrics).get("best_iteration")
    figures = {
        "roc": plots.roc_figure(tables["roc"], test["roc_auc"]),
        "precision_recall": plots.precision_recall_figure(tables["precision_recall"], test["pr_auc"], test["positive_rate"]),
        "calibration": plots.calibration_figure(tables["calibration"]),
        "confusion": plots.confusion_figure(tables["confusion"], params.threshold),
        "feature_importance": plots.importance_figure(tables["feature_importance"]),
        "training_curve": plots.training_curve_figure(curve, best),
    }
    if "by_period" in report:
        figures["roc_auc_by_period"] = plots.metric_by_period_figure(report["by_period"])
    log_written(
        log,
        write_json(report, args.metrics),
        *(write_json(rows, args.plots_dir / f"{name}.json") for name, rows in tables.items()),
        *(plots.save_figure(figure, args.figures_dir / f"{name}.png") for name, figure in figures.items()),
    )


if __name__ == "__main__":
    run_stage("evaluate", main)
