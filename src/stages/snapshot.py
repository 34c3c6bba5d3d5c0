"""snapshot: read one SQL query (params sql_snapshots.<name>) through SQLAlchemy and write its rows,
in a stable order, to Parquet. DVC runs it on every repro and hashes the result, so the stages
after it rerun only when the database returned different rows."""

import argparse
import os

from mlpipe.cli import describe, log_written, run_stage
from mlpipe.config import load_params
from mlpipe.errors import ConfigError
from mlpipe.io import normalise_columns, write_parquet
from mlpipe.privacy import apply_personal_rules
from mlpipe.sql import read_query


def main(log):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    params = load_params(args.params)
    snapshots = params.sql_snapshots
    if args.name not in snapshots:
        raise ConfigError(f"sql_snapshots.{args.name} is not in {args.params}; declared: {sorted(snapshots)}")
    spec = snapshots[args.name]
    password = None
    if spec.password_env:
        password = os.environ.get(spec.password_env)
        if password is None:
            raise ConfigError(f"sql_snapshots.{args.name}.password_env names {spec.password_env}, which is not set in the environment")
    table = read_query(spec.url, query=spec.query, table=spec.table, password=password, order_by=spec.order_by)
    origin = f"sql_snapshots.{args.name}"
    table = normalise_columns(table, origin=origin)
    log.info("read %s from %s", describe(table), origin)
    # The snapshot is cached and pushed: personal data is protected here, not only at ingest.
    table = apply_personal_rules(table, params.data, origin=origin)
    log_written(log, write_parquet(table, args.out))


if __name__ == "__main__":
    run_stage("snapshot", main)
