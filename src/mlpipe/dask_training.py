"""`train_model`'s steps on a Dask cluster, with LightGBM's own distributed training (lightgbm.dask).

The same validation slice, the same early-stopping rule and the same refit on every training row
as `mlpipe.model.train_model`; the result is an ordinary booster (`to_local()`), saved as the same
text model, so evaluate, predict, serving and DVC do not change. lightgbm.dask takes evaluation
sets but not callbacks: the number of trees is read from the evaluation record with the rule
LightGBM's `early_stopping` callback applies.

Import this module before `mlpipe.model`: lightgbm.dask needs LightGBM's scikit-learn wrappers,
which `mlpipe.model` leaves out when it is the first to import LightGBM.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import lightgbm.dask as lgb_dask  # noqa: I001  (first: with scikit-learn, see above)
import pandas as pd

from mlpipe.config import TrainParams
from mlpipe.model import CURVE_SAMPLE_ROWS, TrainedModel, categorical_columns, lightgbm_params, log, model_from_text, validation_split
from mlpipe.sampling import stratified_mask

if TYPE_CHECKING:
    from distributed import Client


def stopping_round(losses: list[float], patience: int | None) -> int:
    """The number of trees LightGBM's early_stopping(patience) keeps for this validation curve:
    the best round so far, once `patience` rounds have passed without a better one."""
    best = 0
    for round_index, loss in enumerate(losses):
        if loss < losses[best]:
            best = round_index
        elif patience and round_index - best >= patience:
            break
    return best + 1


def train_model_on_cluster(features: pd.DataFrame, target: pd.Series, params: TrainParams, client: Client) -> TrainedModel:
    """Fit on the cluster's workers, one part of the rows each; see the module's notes."""
    import dask.dataframe as dd

    workers = max(1, len(client.scheduler_info()["workers"]))
    settings = lightgbm_params(params)
    categorical = categorical_columns(features)

    def distributed(frame: pd.DataFrame | pd.Series):
        return dd.from_pandas(frame, npartitions=min(workers, max(1, len(frame))), sort=False)

    def fitted(rounds: int, rows: pd.DataFrame, labels: pd.Series, **fit: Any) -> lgb_dask.DaskLGBMClassifier:
        model = lgb_dask.DaskLGBMClassifier(client=client, n_estimators=rounds, **settings)
        return model.fit(distributed(rows), distributed(labels), categorical_feature=categorical, **fit)

    summary: dict[str, Any] = {"train_rows": len(features), "engine": "dask", "workers": workers}
    curve: list[dict[str, float]] = []
    rounds = params.n_estimators
    is_valid = validation_split(target, params)
    if params.validation_fraction:
        fit_features, fit_target = features[~is_valid], target[~is_valid]
        in_sample = stratified_mask(fit_target, len(fit_target), min(1.0, CURVE_SAMPLE_ROWS / len(fit_target)), params.seed)
        started = time.perf_counter()
        model = fitted(
            params.n_estimators,
            fit_features,
            fit_target,
            eval_set=[
                (distributed(fit_features[in_sample]), distributed(fit_target[in_sample])),
                (distributed(features[is_valid]), distributed(target[is_valid])),
            ],
            eval_names=["training", "validation"],
        )
        history = model.evals_result_
        validation = history["validation"]["binary_logloss"]
        rounds = stopping_round(validation, params.early_stopping_rounds)
        shown = len(validation) if not params.early_stopping_rounds else min(len(validation), rounds + params.early_stopping_rounds)
        curve = [
            {"iteration": i + 1, "train_logloss": train_loss, "validation_logloss": valid_loss}
            for i, (train_loss, valid_loss) in enumerate(
                zip(history["training"]["binary_logloss"][:shown], validation[:shown], strict=True)
            )
        ]
        summary.update(validation_rows=int(is_valid.sum()), best_iteration=rounds, validation_logloss=validation[rounds - 1])
        log.info(
            "early stopping rule chose %d trees (validation logloss %.5f) on %d workers in %.1fs",
            rounds,
            summary["validation_logloss"],
            workers,
            time.perf_counter() - started,
        )
        booster = model.to_local().booster_
    if not params.validation_fraction or params.refit_full:
        started = time.perf_counter()
        booster = fitted(rounds, features, target).to_local().booster_
        log.info(
            "fitted %d trees on all %d training rows on %d workers in %.1fs", rounds, len(features), workers, time.perf_counter() - started
        )
    elif rounds < booster.current_iteration():  # no refit: keep the trees early stopping would have kept
        booster = model_from_text(booster.model_to_string(num_iteration=rounds))
    summary["n_trees"] = rounds
    return TrainedModel(booster=booster, curve=curve, summary=summary)
