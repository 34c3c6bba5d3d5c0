"""evaluate: score the test set; write metrics overall and per period, plot data and PNG figures."""

from logging import Logger
from pathlib import Path
from typing import Annotated

from mlpipe.config import Params
from mlpipe.data.schema import FeatureSchema
from mlpipe.harness import describe, log_written, run_stage
from mlpipe.io import read_pipeline_json, read_pipeline_table, read_pipeline_text, write_json
from mlpipe.model import evaluation, plots
from mlpipe.model.booster import feature_importance, model_from_text, predict_proba
from mlpipe.model.tracking import read_training_curve


def run(
    params: Params,
    log: Logger,
    *,
    model: Path,
    model_schema: Path,
    features: Path,
    train_record: Annotated[Path, "the train stage's DVCLive folder"],
    metrics: Path,
    plots_dir: Path,
    figures_dir: Path,
) -> None:
    schema = FeatureSchema.read(model_schema)
    table = read_pipeline_table(features, "the test features", "featurize")
    log.info("read %s from %s", describe(table), features)
    booster = model_from_text(read_pipeline_text(model, "model", "train"), origin=str(model))  # imports LightGBM: after the first line
    y, proba = table[schema.target].to_numpy(), predict_proba(booster, table, schema)
    times = table[schema.time_column] if schema.time_column else None
    report = evaluation.evaluation_report(y, proba, times, params.evaluate)
    for name, values in {"test": report["test"], **report.get("by_period", {})}.items():
        log.info(
            "%s: ROC-AUC %s, PR-AUC %s, log-loss %.4f on %d rows",
            name,
            _fmt(values["roc_auc"]),
            _fmt(values["pr_auc"]),
            values["log_loss"],
            values["rows"],
        )
    tables = evaluation.curve_tables(y, proba, params.evaluate, (schema.negative_label, schema.positive_label))
    tables["feature_importance"] = feature_importance(booster, schema.feature_names).to_dict("records")
    curve, best_iteration = (
        read_training_curve(train_record),
        read_pipeline_json(train_record / "metrics.json", "the training summary", "train").get("best_iteration"),
    )
    figures = plots.evaluation_figures(report, tables, curve, best_iteration)
    log_written(
        log,
        write_json(report, metrics),
        *(write_json(rows, plots_dir / f"{name}.json") for name, rows in tables.items()),
        *(plots.save_figure(figure, figures_dir / f"{name}.png") for name, figure in figures.items()),
    )


def _fmt(value):
    return "n/a (one class)" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    run_stage(run)
