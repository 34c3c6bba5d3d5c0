"""validate: check the raw table against the data contract (params validate.*); quarantine rows that break
a row rule, naming the rules; fail with one line when a whole-table rule breaks or too many rows do."""

import argparse

import pandas as pd

from mlpipe.cli import describe, log_written, run_stage
from mlpipe.config import load_params
from mlpipe.io import write_json, write_parquet
from mlpipe.validation import validate_table


def main(log):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--raw", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--quarantine", required=True)
    parser.add_argument("--metrics", required=True)
    args = parser.parse_args()

    params = load_params(args.params)
    table = pd.read_parquet(args.raw)
    log.info("read %s from %s", describe(table), args.raw)
    result = validate_table(table, params.data, params.validate)
    for rule, count in result.report["failures_by_rule"].items():
        if count:
            log.info("quarantined %d rows breaking %s", count, rule)
    log.info("%s passed, %d quarantined", describe(result.clean), len(result.quarantine))
    log_written(
        log,
        write_parquet(result.clean, args.out),
        write_parquet(result.quarantine, args.quarantine),
        write_json(result.report, args.metrics),
    )


if __name__ == "__main__":
    run_stage("validate", main)
