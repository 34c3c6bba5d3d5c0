"""train: optionally tune, then fit LightGBM on the training features outside the calibration
slice, then the calibration and the decision threshold on that slice; save the native-format
model, its schema, its calibration, the DVCLive training record, the slice's reliability curves
and the tuning history."""

import json
from logging import Logger
from pathlib import Path
from typing import Annotated

from mlpipe.config import Params, TrainParams
from mlpipe.data.schema import FeatureSchema
from mlpipe.engine.parts import parts_checked
from mlpipe.harness import describe, log_written, run_stage
from mlpipe.io import read_pipeline_table, rounded, write_json, write_text, write_texts
from mlpipe.model.booster import lightgbm_params, model_to_text
from mlpipe.model.tracking import write_training_record
from mlpipe.model.training import leak_warning, train


def run(
    params: Params,
    log: Logger,
    *,
    features: Path,
    schema: Path,
    model: Path,
    model_schema: Path,
    calibration: Annotated[Path, "the calibration and decision threshold (JSON)"],
    reliability: Annotated[Path, "folder: the calibration slice's reliability curve before (raw.json) and after (calibrated.json)"],
    record: Annotated[Path, "DVCLive folder: params, summary metrics, training curve"],
    tuning: Annotated[Path, "search summary and history (JSON)"],
    tuning_plot: Path,
) -> None:
    learned = FeatureSchema.read(schema, stage="featurize")
    parts = parts_checked(features, "the training features", "featurize")
    train_params, tuning_summary, tuning_history = params.train, {"enabled": False}, []
    if params.tune.enabled:
        from mlpipe.model import tuning as search  # Optuna is imported only when tuning is on

        # Tuning reads the whole training table into this process, under either engine.
        table = read_pipeline_table(features, "the training features", "featurize")
        log.info("read %s from %s to tune", describe(table), features)
        inputs, target = table[learned.feature_names], table[learned.target]
        tune = params.tune
        times = table[learned.time_column] if learned.time_column else None
        log.info("tuning: %d trials, %d-fold cross-validation on %s", tune.n_trials, tune.folds, tune.metric)

        def progress(trial, seconds):
            log.info(
                "trial %d/%d: %s %.5f ± %.5f (best %.5f) in %.1fs  %s",
                trial["number"] + 1,
                tune.n_trials,
                tune.metric,
                trial["score"],
                trial["score_std"],
                trial["best_so_far"],
                seconds,
                trial["params"],
            )

        result = search.search(inputs, target, times, params.train, tune, on_trial=progress)
        log.info("tuning chose %s (%s %.5f)", result.best_params, tune.metric, result.best_score)
        train_params = TrainParams.model_validate({**params.train.model_dump(), **result.best_params})
        tuning_summary, tuning_history = result.summary(tune), result.history()

    log.info("training on %d part(s) of %s", len(parts), features)
    trained = train(parts, learned.feature_names, learned.target, train_params, params.calibration)
    warning = leak_warning(trained.summary, train_params)
    if warning:
        log.warning(warning)
    fitted = trained.calibration
    log.info("%s", fitted.describe())
    curves = fitted.fitted_on.get("reliability", {"raw": [], "calibrated": []})
    log_written(
        log,
        write_text(model_to_text(trained.booster), model),
        write_text(learned.to_json(), model_schema),
        write_text(fitted.to_json(), calibration),
        write_texts({f"{name}.json": json.dumps(rounded(points), indent=2) + "\n" for name, points in curves.items()}, reliability),
        write_training_record(record, lightgbm_params(train_params), trained.curve, trained.summary),
        write_json(tuning_summary, tuning),
        write_json(tuning_history, tuning_plot),
    )


if __name__ == "__main__":
    run_stage(run)
