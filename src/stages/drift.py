"""drift: compare each current window with the reference period; write verdicts, plot data and HTML reports."""

import argparse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from mlpipe import drift
from mlpipe.cli import log_written, run_stage
from mlpipe.config import load_params
from mlpipe.errors import DataError
from mlpipe.io import read_json, write_json, write_text
from mlpipe.monitoring import retrain_verdict
from mlpipe.schema import FeatureSchema


def main(log):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--reference", required=True)
    parser.add_argument("--current", required=True)
    parser.add_argument("--model-schema", required=True)
    parser.add_argument("--evaluation", required=True, help="metrics of the test period, for the ROC-AUC change")
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--plot", required=True)
    parser.add_argument("--reports-dir", required=True, type=Path)
    args = parser.parse_args()

    params = load_params(args.params).drift
    schema = FeatureSchema.from_json(Path(args.model_schema).read_text(encoding="utf-8"))
    # Evidently's import and the HTML reports run in a second thread while the data is read
    # and the verdicts are computed here: the two overlap on separate cores.
    with ThreadPoolExecutor(max_workers=1) as reporter:
        reporter.submit(drift.import_evidently)
        reference, current = pd.read_parquet(args.reference), pd.read_parquet(args.current)
        columns = drift.monitored_columns(schema, current)
        drift.check_current(current, reference, columns)
        selected = {name: drift.window_rows(current, schema.time_column, name, window) for name, window in params.windows.items()}
        for name, rows in selected.items():
            if rows.empty:
                raise DataError(f"drift.windows.{name} selects no rows of the current table: adjust its start/end")
        pending = {name: reporter.submit(drift.report_html, reference, rows, columns, params) for name, rows in selected.items()}
        windows = {}
        for name, rows in selected.items():
            windows[name] = drift.window_drift(reference, rows, columns, params)
            log.info("window %s: %d rows, %d of %d features drifted, prediction %s", name, len(rows), windows[name]["drifted_features"],
                     len(columns.features), "drifted" if windows[name]["prediction_drift"]["drifted"] else "stable")
        reports = {name: future.result() for name, future in pending.items()}
    retrain, reasons = retrain_verdict(windows, read_json(args.evaluation)["test"]["roc_auc"], params.max_auc_drop)
    log.info("retrain recommended: %s%s", retrain, "".join(f"\n  - {reason}" for reason in reasons))
    scores = [
        {"window": name, "column": column, **values, "score_over_threshold": values["score"] / values["threshold"]}
        for name, result in windows.items()
        for column, values in {**result["columns"], "(prediction)": result["prediction_drift"]}.items()
    ]
    log_written(
        log,
        write_json({"retrain_recommended": retrain, "reasons": reasons, "windows": windows}, args.metrics),
        write_json(scores, args.plot),
        *(write_text(html, args.reports_dir / f"{name}.html") for name, html in reports.items()),
    )


if __name__ == "__main__":
    run_stage("drift", main)
