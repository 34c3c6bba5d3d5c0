"""drift: compare each current window with the reference period; write verdicts, plot data and HTML reports."""

from logging import Logger
from pathlib import Path
from typing import Annotated

from mlpipe.config import Params
from mlpipe.data.schema import FeatureSchema
from mlpipe.harness import log_written, run_stage
from mlpipe.io import read_pipeline_json, write_json, write_texts
from mlpipe.monitor import drift
from mlpipe.monitor import report as drift_report
from mlpipe.monitor.retrain import coverage_reasons, estimate_line, quality_reasons, retrain_verdict


def run(
    params: Params,
    log: Logger,
    *,
    reference: Path,
    current: Path,
    model_schema: Path,
    evaluation: Annotated[Path, "metrics of the test period, for the ROC-AUC change"],
    current_quality: Annotated[Path, "the current rows' data-quality metrics (from predict)"],
    metrics: Path,
    plot: Path,
    reports_dir: Path,
) -> None:
    settings, schema = params.drift, FeatureSchema.read(model_schema)

    def progress(name, result):
        log.info(
            "window %s: %d rows, %d of %d features drifted, prediction %s; %s",
            name,
            result["rows"],
            result["drifted_features"],
            len(result["columns"]),
            "drifted" if result["prediction_drift"]["drifted"] else "stable",
            estimate_line(result["estimated_performance"]),
        )

    workers = drift_report.worker_count(len(settings.reported))
    if workers:
        log.info("importing Evidently for %d report worker(s)", workers)
    with drift_report.report_workers(workers) as reporter:
        windows, reports = drift_report.monitor(reference, current, schema, settings, reporter, on_window=progress)
    empty = drift.empty_windows(windows, settings)
    for name, why in empty.items():
        log.warning("window %s %s: no verdict or report for it", name, why)
    retrain, reasons = retrain_verdict(
        windows,
        read_pipeline_json(evaluation, "the evaluation metrics", "evaluate", keys=("test",))["test"]["roc_auc"],
        settings.max_auc_drop,
        settings.max_estimated_auc_drop,
    )
    reasons += quality_reasons(
        read_pipeline_json(
            current_quality,
            "the current data-quality metrics",
            "predict",
            keys=("rows_in", "rows_quarantined", "bad_row_share", "failures_by_rule"),
        ),
        params.validate.max_bad_row_share,
    )
    reasons += coverage_reasons(windows, empty)
    retrain = bool(reasons)
    log.info("retrain recommended: %s%s", retrain, "".join(f"\n  - {reason}" for reason in reasons))
    log_written(
        log,
        write_json({"retrain_recommended": retrain, "reasons": reasons, "empty_windows": empty, "windows": windows}, metrics),
        write_json(drift.score_records(windows), plot),
        write_texts({f"{name}.html": html for name, html in reports.items()}, reports_dir),
    )


if __name__ == "__main__":
    run_stage(run)
