"""Hyper-parameter search: Optuna's seeded TPE sampler over a space declared in params, each
candidate scored by k-fold cross-validation on the training period with `lightgbm.cv`.

Folds are time-ordered when the data has a time column (each fold validates on rows later
than the ones it fits, like the real time split) and stratified otherwise. Trials run one
after another, so the same data, params and seed give the same history and the same winner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd

from mlpipe.config import INTEGER_PARAMS, TrainParams, TuneParams
from mlpipe.errors import DataError
from mlpipe.model.booster import categorical_columns, for_lightgbm, lightgbm_core, lightgbm_params

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial comes from `tune` instead

# The LightGBM metric behind each tune.metric, and whether higher is better.
METRICS = {"roc_auc": ("auc", True), "log_loss": ("binary_logloss", False)}


@dataclass(frozen=True)
class TuningResult:
    best_params: dict[str, Any]
    best_score: float
    trials: list[dict[str, Any]]

    def summary(self, tune: TuneParams) -> dict[str, Any]:
        return {
            "enabled": True,
            "metric": tune.metric,
            "folds": tune.folds,
            "n_trials": len(self.trials),
            "best_score": self.best_score,
            "best_params": self.best_params,
            "trials": self.trials,
        }

    def history(self) -> list[dict[str, Any]]:
        """Plot data: each trial's score and the best score so far."""
        return [{"trial": trial["number"], "score": trial["score"], "best_so_far": trial["best_so_far"]} for trial in self.trials]


def cv_folds(target: pd.Series, times: pd.Series | None, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit rows, validation rows) position pairs: expanding time-ordered folds, or stratified ones."""
    from sklearn.model_selection import StratifiedKFold, TimeSeriesSplit

    if times is not None:
        order = np.argsort(times.to_numpy(), kind="stable")
        splits = [(order[fit], order[valid]) for fit, valid in TimeSeriesSplit(n_splits=folds).split(order)]
    else:
        splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(len(target)), target))
    for number, (_, valid) in enumerate(splits, start=1):
        if target.iloc[valid].nunique() < 2:
            raise DataError(f"tuning fold {number} of {folds} has only one class in its validation rows: lower tune.folds")
    return splits


def cross_validate(features: pd.DataFrame, target: pd.Series, params: TrainParams, folds, metric: str) -> tuple[float, float, int]:
    """Mean and spread of the metric across folds at the best number of trees, and that number."""
    name, higher_is_better = METRICS[metric]
    settings = {**lightgbm_params(params), "metric": [name]}
    lgb = lightgbm_core()
    features = for_lightgbm(features)
    dataset = lgb.Dataset(features, target, categorical_feature=categorical_columns(features), free_raw_data=False)
    callbacks = [lgb.early_stopping(params.early_stopping_rounds, verbose=False)] if params.early_stopping_rounds else []
    scores = lgb.cv(settings, dataset, num_boost_round=params.n_estimators, folds=folds, callbacks=callbacks)
    means, spreads = scores[f"valid {name}-mean"], scores[f"valid {name}-stdv"]
    best = int(np.argmax(means) if higher_is_better else np.argmin(means))
    return float(means[best]), float(spreads[best]), best + 1


def suggest(trial: optuna.Trial, tune: TuneParams) -> dict[str, Any]:
    chosen = {}
    for name, dimension in tune.space.items():
        if dimension.choices is not None:
            chosen[name] = trial.suggest_categorical(name, dimension.choices)
        elif name in INTEGER_PARAMS:
            chosen[name] = trial.suggest_int(name, int(dimension.low), int(dimension.high), log=dimension.log)
        else:
            chosen[name] = trial.suggest_float(name, dimension.low, dimension.high, log=dimension.log)
    return chosen


def search(
    features: pd.DataFrame,
    target: pd.Series,
    times: pd.Series | None,
    train: TrainParams,
    tune: TuneParams,
    on_trial: Callable[[dict[str, Any], float], None] = lambda trial, seconds: None,
) -> TuningResult:
    """Run `tune.n_trials` trials; parameters outside `tune.space` keep their `train` values."""
    folds = cv_folds(target, times, tune.folds, tune.seed)
    _, higher_is_better = METRICS[tune.metric]
    trials: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        chosen = suggest(trial, tune)
        started = time.perf_counter()
        try:
            candidate = TrainParams.model_validate({**train.model_dump(), **chosen})
        except ValueError as exc:  # a candidate the train section's own rules reject
            raise DataError(f"tune.space gives invalid train params {chosen}: {exc.errors()[0]['msg']}") from None
        mean, spread, rounds = cross_validate(features, target, candidate, folds, tune.metric)
        best = (max if higher_is_better else min)([*(t["score"] for t in trials), mean])
        record = {
            "number": trial.number,
            "params": chosen,
            "score": mean,
            "score_std": spread,
            "best_iteration": rounds,
            "best_so_far": best,
        }
        trials.append(record)
        on_trial(record, time.perf_counter() - started)
        return mean

    study = optuna.create_study(
        direction="maximize" if higher_is_better else "minimize", sampler=optuna.samplers.TPESampler(seed=tune.seed)
    )
    study.optimize(objective, n_trials=tune.n_trials)
    best = trials[study.best_trial.number]
    return TuningResult(best_params=best["params"], best_score=best["score"], trials=trials)
