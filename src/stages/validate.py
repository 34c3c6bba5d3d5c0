"""validate: check the raw table against the data contract (params validate.*); quarantine rows that break
a row rule, naming the rules; fail with one line when a whole-table rule breaks or too many rows do."""

from logging import Logger
from pathlib import Path

from mlpipe.config import Params
from mlpipe.data.validation import validate_table
from mlpipe.harness import describe, log_written, run_stage
from mlpipe.io import read_pipeline_table, write_json, write_parquet


def run(params: Params, log: Logger, *, raw: Path, out: Path, quarantine: Path, metrics: Path) -> None:
    if params.compute.engine == "dask":
        from mlpipe.data.validation import validate_parts

        report = validate_parts(raw, out, quarantine, params.data, params.validate)
        written = [out, quarantine]
    else:
        table = read_pipeline_table(raw, "the ingested table", "ingest")
        log.info("read %s from %s", describe(table), raw)
        result = validate_table(table, params.data, params.validate)
        report, written = result.report, [write_parquet(result.clean, out), write_parquet(result.quarantine, quarantine)]
    for rule, count in report["failures_by_rule"].items():
        if count:
            log.info("quarantined %d rows breaking %s", count, rule)
    log.info("%s of %s rows passed, %s quarantined", f"{report['rows_out']:,}", f"{report['rows_in']:,}", f"{report['rows_quarantined']:,}")
    log_written(log, *written, write_json(report, metrics))


if __name__ == "__main__":
    run_stage(run)
