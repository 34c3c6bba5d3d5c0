"""validate: check the raw table against the data contract (params validate.*); quarantine rows that break
a row rule, naming the rules; fail with one line when a whole-table rule breaks or too many rows do."""

from logging import Logger
from pathlib import Path

from mlpipe.config import Params
from mlpipe.data.validation import validate
from mlpipe.harness import log_written, run_stage
from mlpipe.io import write_json


def run(params: Params, log: Logger, *, raw: Path, out: Path, quarantine: Path, metrics: Path) -> None:
    report = validate(raw, out, quarantine, params.data, params.validate)
    for rule, count in report["failures_by_rule"].items():
        if count:
            log.info("quarantined %d rows breaking %s", count, rule)
    log.info("%s of %s rows passed, %s quarantined", f"{report['rows_out']:,}", f"{report['rows_in']:,}", f"{report['rows_quarantined']:,}")
    log_written(log, out, quarantine, write_json(report, metrics))


if __name__ == "__main__":
    run_stage(run)
