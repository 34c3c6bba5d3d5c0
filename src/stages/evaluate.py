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
from mlpipe.tracking import read_training_curve


def main(log):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", required=True)
    parser.add_argument("--model-schema", required=True)
    parser.add_argument("--features", required=True)
    parser.add_argument("--train-record", required=True, help="the train stage's DVCLive folder")
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--plots-dir", required=True, type=Path)
    parser.add_argument("--figures-dir", required=True, type=Path)
    args = parser.parse_args()

    params = load_params(args.params).evaluate
    schema = FeatureSchema.read(args.model_schema)
    booster = model_from_text(Path(args.model).read_text(encoding="utf-8"))
    table = pd.read_parquet(args.features)
    log.info("read %s from %s", describe(table), args.features)
    y, proba = table[schema.target].to_numpy(), predict_proba(booster, table, schema)

    times = table[schema.time_column] if schema.time_column else None
    report = evaluation.evaluation_report(y, proba, times, params)
    for name, values in {"test": report["test"], **report.get("by_period", {})}.items():
        log.info(
            "%s: ROC-AUC %s, PR-AUC %s, log-loss %.4f on %d rows",
            name,
            _fmt(values["roc_auc"]),
            _fmt(values["pr_auc"]),
            values["log_loss"],
            values["rows"],
        )
    tables = evaluation.curve_tables(y, proba, params, (schema.negative_label, schema.positive_label))
    tables["feature_importance"] = feature_importance(booster).to_dict("records")
    curve, best_iteration = (
        read_training_curve(args.train_record),
        read_json(Path(args.train_record) / "metrics.json").get("best_iteration"),
    )
    figures = plots.evaluation_figures(report, tables, curve, best_iteration)
    log_written(
        log,
        write_json(report, args.metrics),
        *(write_json(rows, args.plots_dir / f"{name}.json") for name, rows in tables.items()),
        *(plots.save_figure(figure, args.figures_dir / f"{name}.png") for name, figure in figures.items()),
    )


def _fmt(value):
    return "n/a (one class)" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    run_stage("evaluate", main)
