"""train: optionally tune, then fit LightGBM on the training features; save the native-format
model, its schema, the DVCLive training record and the tuning history."""

import argparse

import pandas as pd

from mlpipe import tuning
from mlpipe.cli import describe, log_written, run_stage
from mlpipe.config import TrainParams, load_params
from mlpipe.io import write_json, write_text
from mlpipe.model import lightgbm_params, model_to_text, train_model
from mlpipe.schema import FeatureSchema
from mlpipe.tracking import write_training_record


def main(log):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--features", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--model-schema", required=True)
    parser.add_argument("--record", required=True, help="DVCLive folder: params, summary metrics, training curve")
    parser.add_argument("--tuning", required=True, help="search summary and history (JSON)")
    parser.add_argument("--tuning-plot", required=True)
    args = parser.parse_args()

    params = load_params(args.params)
    schema = FeatureSchema.read(args.schema)
    table = pd.read_parquet(args.features)
    log.info("read %s from %s", describe(table), args.features)
    features, target = table[schema.feature_names], table[schema.target]

    train_params, tuning_summary, tuning_history = params.train, {"enabled": False}, []
    if params.tune.enabled:
        times = table[schema.time_column] if schema.time_column else None
        log.info("tuning: %d trials, %d-fold cross-validation on %s", params.tune.n_trials, params.tune.folds, params.tune.metric)

        def progress(trial, seconds):
            log.info(
                "trial %d/%d: %s %.5f ± %.5f (best %.5f) in %.1fs  %s",
                trial["number"] + 1,
                params.tune.n_trials,
                params.tune.metric,
                trial["score"],
                trial["score_std"],
                trial["best_so_far"],
                seconds,
                trial["params"],
            )

        result = tuning.search(features, target, times, params.train, params.tune, on_trial=progress)
        log.info("tuning chose %s (%s %.5f)", result.best_params, params.tune.metric, result.best_score)
        train_params = TrainParams.model_validate({**params.train.model_dump(), **result.best_params})
        tuning_summary, tuning_history = result.summary(params.tune), result.history()

    trained = train_model(features, target, train_params)
    log_written(
        log,
        write_text(model_to_text(trained.booster), args.model),
        write_text(schema.to_json(), args.model_schema),
        write_training_record(args.record, lightgbm_params(train_params), trained.curve, trained.summary),
        write_json(tuning_summary, args.tuning),
        write_json(tuning_history, args.tuning_plot),
    )


if __name__ == "__main__":
    run_stage("train", main)
