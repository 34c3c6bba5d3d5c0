"""split: divide the validated table into training and test sets, by time or stratified at random."""

import argparse

import pandas as pd

from mlpipe.cli import describe, log_written, run_stage
from mlpipe.config import load_params
from mlpipe.io import write_parquet
from mlpipe.split import split_table


def main(log):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--validated", required=True)
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    args = parser.parse_args()

    params = load_params(args.params)
    table = pd.read_parquet(args.validated)
    log.info("read %s from %s", describe(table), args.validated)
    train, test = split_table(table, params.split, params.data.time_column, params.data.target)
    log.info("%s split: training %s, test %s", params.split.strategy, describe(train), describe(test))
    log_written(log, write_parquet(train, args.train), write_parquet(test, args.test))


if __name__ == "__main__":
    run_stage("split", main)
