"""split: divide the validated table into training and test sets, by time or stratified at random."""

from logging import Logger
from pathlib import Path

from mlpipe.config import Params
from mlpipe.data.split import split_folder
from mlpipe.harness import log_written, run_stage


def run(params: Params, log: Logger, *, validated: Path, train: Path, test: Path) -> None:
    rows = split_folder(validated, train, test, params.split, params.data.time_column, params.data.target)
    log.info("%s split: training %s rows, test %s rows", params.split.strategy, f"{rows[0]:,}", f"{rows[1]:,}")
    log_written(log, train, test)


if __name__ == "__main__":
    run_stage(run)
