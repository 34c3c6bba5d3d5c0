"""ingest: read the source named in params.data (a file or a folder of partitions, local or at a URL),
drop or hash personal columns, normalise column names and dtypes, write raw Parquet parts."""

from logging import Logger
from pathlib import Path

from mlpipe.config import Params
from mlpipe.data.sources import ingest
from mlpipe.harness import log_written, run_stage


def run(params: Params, log: Logger, *, out: Path) -> None:
    found = ingest(params.data, out)
    log.info(
        "read %d file(s) from %s: %s rows x %d columns", found["files"], params.data.source, f"{found['rows']:,}", len(found["columns"])
    )
    log_written(log, out)


if __name__ == "__main__":
    run_stage(run)
