"""drift: compare each current window with the reference period; write verdicts, plot data and HTML reports."""

import argparse
import os
from pathlib import Path

import pandas as pd

from mlpipe import drift
from mlpipe.cli import describe, log_written, run_stage
from mlpipe.config import load_params
from mlpipe.io import read_json, write_json, write_text
from mlpipe.monitoring import coverage_reasons, quality_reasons, retrain_verdict
from mlpipe.schema import FeatureSchema


def main(log):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--reference", required=True)
    parser.add_argument("--current", required=True)
    parser.add_argument("--model-schema", required=True)
    parser.add_argument("--evaluation", required=True, help="metrics of the test period, for the ROC-AUC change")
    parser.add_argument("--current-quality", required=True, help="the current rows' data-quality metrics (from predict)")
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--plot", required=True)
    parser.add_argument("--reports-dir", required=True, type=Path)
    args = parser.parse_args()

    all_params = load_params(args.params)
    params = all_params.drift
    schema = FeatureSchema.read(args.model_schema)

    def progress(name, result):
        log.info(
            "window %s: %d rows, %d of %d features drifted, prediction %s",
            name,
            result["rows"],
            result["drifted_features"],
            len(result["columns"]),
            "drifted" if result["prediction_drift"]["drifted"] else "stable",
        )

    # The report workers start (and import Evidently) before the reading, which they overlap.
    with drift.report_workers(min(len(params.windows), os.cpu_count() or 1)) as reporter:
        reference, current = pd.read_parquet(args.reference), pd.read_parquet(args.current)
        log.info("reference %s; current %s", describe(reference), describe(current))
        windows, reports = drift.monitor(reference, current, schema, params, reporter, on_window=progress)
    empty = drift.empty_windows(windows, params)
    for name, why in empty.items():
        log.warning("window %s %s: no verdict or report for it", name, why)
    retrain, reasons = retrain_verdict(windows, read_json(args.evaluation)["test"]["roc_auc"], params.max_auc_drop)
    reasons += quality_reasons(read_json(args.current_quality), all_params.validate.max_bad_row_share)
    reasons += coverage_reasons(windows, empty)
    retrain = bool(reasons)
    log.info("retrain recommended: %s%s", retrain, "".join(f"\n  - {reason}" for reason in reasons))
    log_written(
        log,
        write_json({"retrain_recommended": retrain, "reasons": reasons, "empty_windows": empty, "windows": windows}, args.metrics),
        write_json(drift.score_records(windows), args.plot),
        *(write_text(html, args.reports_dir / f"{name}.html") for name, html in reports.items()),
    )


if __name__ == "__main__":
    run_stage("drift", main)
