"""featurize: learn the feature schema on the training set and apply it to training and test sets."""

import argparse

import pandas as pd

from mlpipe.cli import describe, log_written, run_stage
from mlpipe.config import load_params
from mlpipe.features import build_schema, feature_table, unseen_levels
from mlpipe.io import write_parquet, write_text


def main(log):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--train-out", required=True)
    parser.add_argument("--test-out", required=True)
    parser.add_argument("--schema", required=True)
    args = parser.parse_args()

    params = load_params(args.params)
    train, test = pd.read_parquet(args.train), pd.read_parquet(args.test)
    log.info("read training %s, test %s", describe(train), describe(test))
    schema = build_schema(train, params.data, params.features)
    log.info("%d features (%d categorical): %s", len(schema.features), len(schema.categorical_names), ", ".join(schema.feature_names))
    for column, rows in unseen_levels(test, schema).items():
        log.info("test column %s: %d rows carry a level unseen in training", column, rows)
    train_features, test_features = feature_table(train, schema), feature_table(test, schema)
    log_written(
        log,
        write_parquet(train_features, args.train_out),
        write_parquet(test_features, args.test_out),
        write_text(schema.to_json(), args.schema),
    )


if __name__ == "__main__":
    run_stage("featurize", main)
