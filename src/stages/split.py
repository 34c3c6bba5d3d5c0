"""split: divide the validated table into training and test sets, by time or stratified at random."""

from logging import Logger
from pathlib import Path

from mlpipe.config import Params
from mlpipe.data.split import split_table
from mlpipe.harness import describe, log_written, run_stage
from mlpipe.io import read_pipeline_table, write_parquet


def run(params: Params, log: Logger, *, validated: Path, train: Path, test: Path) -> None:
    if params.compute.engine == "dask":
        from mlpipe.data.split import split_parts

        rows = split_parts(validated, train, test, params.split, params.data.time_column, params.data.target)
        log.info("%s split: training %s rows, test %s rows", params.split.strategy, f"{rows[0]:,}", f"{rows[1]:,}")
        return log_written(log, train, test)
    table = read_pipeline_table(validated, "the validated table", "validate")
    log.info("read %s from %s", describe(table), validated)
    training, testing = split_table(table, params.split, params.data.time_column, params.data.target)
    log.info("%s split: training %s, test %s", params.split.strategy, describe(training), describe(testing))
    log_written(log, write_parquet(training, train), write_parquet(testing, test))


if __name__ == "__main__":
    run_stage(run)
