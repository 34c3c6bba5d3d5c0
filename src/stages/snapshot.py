"""snapshot: read one SQL query (params sql_snapshots.<name>) through SQLAlchemy and write its rows,
in a stable order, to Parquet. DVC runs it on every repro and hashes the result, so the stages
after it rerun only when the database returned different rows."""

import os
from logging import Logger
from pathlib import Path
from typing import Annotated

from mlpipe.config import Params
from mlpipe.data.privacy import apply_personal_rules
from mlpipe.data.sources import normalise_columns
from mlpipe.data.sql import read_query
from mlpipe.errors import ConfigError
from mlpipe.harness import describe, log_written, run_stage
from mlpipe.io import write_parquet


def run(params: Params, log: Logger, *, name: Annotated[str, "the entry of sql_snapshots to read"], out: Path) -> None:
    if name not in params.sql_snapshots:
        raise ConfigError(f"sql_snapshots.{name} is not in the params file; declared: {sorted(params.sql_snapshots)}")
    spec, origin = params.sql_snapshots[name], f"sql_snapshots.{name}"
    password = None
    if spec.password_env:
        password = os.environ.get(spec.password_env)
        if password is None:
            raise ConfigError(f"{origin}.password_env names {spec.password_env}, which is not set in the environment")
    table = normalise_columns(read_query(spec.url, query=spec.query, table=spec.table, password=password, order_by=spec.order_by), origin)
    log.info("read %s from %s", describe(table), origin)
    # The snapshot is cached and pushed: personal data is protected here, not only at ingest.
    log_written(log, write_parquet(apply_personal_rules(table, params.data, origin=origin), out))


if __name__ == "__main__":
    run_stage(run)
