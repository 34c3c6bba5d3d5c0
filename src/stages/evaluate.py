"""evaluate: score the test set; write metrics overall and per period, plot data and PNG figures."""

from logging import Logger
from pathlib import Path
from typing import Annotated

from mlpipe.config import Params
from mlpipe.data.schema import FeatureSchema
from mlpipe.engine.parts import parts_checked
from mlpipe.harness import log_written, run_stage
from mlpipe.io import read_pipeline_json, read_pipeline_text, write_json
from mlpipe.model import evaluation, plots
from mlpipe.model.booster import model_from_text
from mlpipe.model.calibration import Calibration
from mlpipe.model.tracking import read_training_curve


def run(
    params: Params,
    log: Logger,
    *,
    model: Path,
    model_schema: Path,
    calibration: Annotated[Path, "the model's calibration and decision threshold (models/calibration.json)"],
    features: Path,
    train_record: Annotated[Path, "the train stage's DVCLive folder"],
    metrics: Path,
    plots_dir: Path,
    figures_dir: Path,
) -> None:
    schema = FeatureSchema.read(model_schema)
    parts = parts_checked(features, "the test features", "featurize")
    model_text = read_pipeline_text(model, "model", "train")
    calibrated = Calibration.read(calibration)
    log.info("scoring %d part(s) of %s (%s)", len(parts), features, calibrated.describe(with_slice=False))
    # A model cut short is one line naming the file, before any part is scored; imports LightGBM: after the first line.
    model_from_text(model_text, origin=str(model))
    # Scored part by part where the parts are read; the scores wait, sorted, beside the metrics.
    report, tables = evaluation.evaluate(parts, model_text, schema, params.evaluate, calibrated, scratch_in=metrics.parent)
    for name, values in {"test": report["test"], **report.get("by_period", {})}.items():
        log.info(
            "%s: ROC-AUC %s, PR-AUC %s, log-loss %.4f on %d rows",
            name,
            _fmt(values["roc_auc"]),
            _fmt(values["pr_auc"]),
            values["log_loss"],
            values["rows"],
        )
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
