"""ingest: read the source named in params.data (a file or a folder of partitions), drop or hash personal
columns, normalise column names and dtypes, write raw Parquet."""

import argparse
import os

from mlpipe.cli import describe, log_written, run_stage
from mlpipe.config import load_params
from mlpipe.io import normalise_columns, read_source, write_parquet
from mlpipe.privacy import protect_personal_columns


def main(log):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    data = load_params(args.params).data
    table = normalise_columns(read_source(data.source, data.format, data.pattern), origin=data.source)
    log.info("read %s from %s", describe(table), data.source)
    if data.personal_columns:
        table = protect_personal_columns(table, data.personal_columns, os.environ.get(data.salt_env), data.salt_env)
        done = {"hash": "salted-hashed", "drop": "dropped"}
        log.info("personal data: %s", ", ".join(f"{column} {done[action]}" for column, action in data.personal_columns.items()))
    log_written(log, write_parquet(table, args.out))


if __name__ == "__main__":
    run_stage("ingest", main)
