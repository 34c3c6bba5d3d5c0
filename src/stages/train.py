"""train: fit LightGBM on the training features; save the native-format model, its schema and the curve."""

import argparse

import pandas as pd

from mlpipe.cli import describe, log_written, run_stage
from mlpipe.config import load_params
from mlpipe.io import write_json, write_text
from mlpipe.model import model_to_text, train_model
from mlpipe.schema import FeatureSchema


def main(log):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--features", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--model-schema", required=True)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--curve", required=True)
    args = parser.parse_args()

    params = load_params(args.params).train
    schema = FeatureSchema.read(args.schema)
    table = pd.read_parquet(args.features)
    log.info("read %s from %s", describe(table), args.features)
    trained = train_model(table[schema.feature_names], table[schema.target], params)
    log_written(
        log,
        write_text(model_to_text(trained.booster), args.model),
        write_text(schema.to_json(), args.model_schema),
        write_json(trained.summary, args.metrics),
        write_json(trained.curve, args.curve),
    )


if __name__ == "__main__":
    run_stage("train", main)
