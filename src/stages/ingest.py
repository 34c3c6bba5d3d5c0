"""ingest: read the source named in params.data (a file or a folder of partitions), drop or hash personal
columns, normalise column names and dtypes, write raw Parquet."""

from logging import Logger
from pathlib import Path

from mlpipe.config import Params
from mlpipe.data.privacy import apply_personal_rules
from mlpipe.data.sources import normalise_columns, read_source
from mlpipe.harness import describe, log_written, run_stage
from mlpipe.io import write_parquet


def run(params: Params, log: Logger, *, out: Path) -> None:
    data = params.data
    if params.compute.engine == "dask":
        from mlpipe.data.sources import ingest_parts

        found = ingest_parts(data.source, data.format, data.pattern, data, params.compute.partition_rows, out)
        log.info("read %d file(s) from %s: %s rows x %d columns", found["files"], data.source, f"{found['rows']:,}", len(found["columns"]))
        return log_written(log, out)
    table = normalise_columns(read_source(data.source, data.format, data.pattern, data.csv), origin=data.source)
    log.info("read %s from %s", describe(table), data.source)
    table = apply_personal_rules(table, data, origin=data.source)
    log_written(log, write_parquet(table, out))


if __name__ == "__main__":
    run_stage(run)
