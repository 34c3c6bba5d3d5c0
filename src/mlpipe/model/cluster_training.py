"""`train_model`'s steps on a Dask cluster, with LightGBM's own distributed training (lightgbm.dask).

The same validation slice, the same early-stopping rule and the same refit on every training row
as `mlpipe.model.booster.train_model`; the result is an ordinary booster (`to_local()`), saved as the same
text model, so evaluate, predict, serving and DVC do not change. lightgbm.dask takes evaluation
sets but not callbacks: the number of trees is read from the evaluation record with the rule
LightGBM's `early_stopping` callback applies.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import lightgbm.dask as lgb_dask
import numpy as np
import pandas as pd

from mlpipe.config import TrainParams
from mlpipe.data.sampling import stratified_mask
from mlpipe.errors import DataError, first_line
from mlpipe.model.booster import (
    CURVE_SAMPLE_ROWS,
    TrainedModel,
    categorical_columns,
    dominant_feature,
    for_lightgbm,
    lightgbm_params,
    log,
    model_from_text,
    validation_roc_auc,
    validation_split,
)

WORKER_WAIT_SECONDS = 60
FIT_ATTEMPTS = 3  # a worker lost mid-fit costs one attempt; three in a row is a sick cluster

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

    workers = sorted(client.scheduler_info()["workers"])
    if not workers:
        raise DataError(f"the Dask cluster at {client.scheduler.address} has no workers: start some, then run the stage again")
    settings = lightgbm_params(params)
    names, features = list(features.columns), for_lightgbm(features)
    categorical = categorical_columns(features)

    def distributed(frame: pd.DataFrame | pd.Series, on: list[str]):
        # Block i of the rows goes to the i-th worker by address, and LightGBM ranks its machines
        # in the order their first block comes: the same rows meet the same rank on every run,
        # so a run is repeatable on the same cluster shape (the scheduler would place them at will).
        # Fresh keys (hash=False): a block a failed attempt left on a worker must not stay there
        # under its old key when this attempt places it on another.
        blocks = np.array_split(np.arange(len(frame)), len(on))
        futures = [client.scatter(frame.iloc[block], workers=[worker], hash=False) for block, worker in zip(blocks, on, strict=True)]
        return dd.from_delayed(futures, meta=frame.iloc[:0], verify_meta=False)

    def fit_once(rounds: int, rows: pd.DataFrame, labels: pd.Series, on: list[str]):
        model = lgb_dask.DaskLGBMClassifier(client=client, n_estimators=rounds, **settings)
        booster = model.fit(distributed(rows, on), distributed(labels, on), categorical_feature=categorical).to_local().booster_
        return model_from_text(without_network_settings(booster.model_to_string()))

    def fitted(rounds: int, rows: pd.DataFrame, labels: pd.Series):
        for attempt in range(1, FIT_ATTEMPTS + 1):
            # The workers that answer now: one may have died in an earlier attempt and come back
            # (a nanny restarts it) under a new address.
            on = answering_workers(client, len(workers))
            try:
                return fit_once(rounds, rows, labels, on)
            except Exception as exc:  # noqa: BLE001 - a worker lost mid-fit surfaces as one of several distributed errors
                failure = f"{type(exc).__name__}: {first_line(exc)}"
            if attempt == FIT_ATTEMPTS:
                raise DataError(
                    f"training on the Dask cluster failed {FIT_ATTEMPTS} times ({failure}); "
                    "check the workers (their memory: compute.memory_limit), then run the stage again"
                )
            log.warning(
                "training on the cluster failed (attempt %d of %d, %s): restarting the workers that took part, training again in %d s",
                attempt,
                FIT_ATTEMPTS,
                failure,
                attempt,
            )
            fresh_workers(client, on)
            time.sleep(attempt)  # backoff: a cluster that keeps losing workers gets time to settle

    summary: dict[str, Any] = {"train_rows": len(features), "engine": "dask", "workers": len(workers)}
    curve: list[dict[str, float]] = []
    rounds = params.n_estimators
    is_valid = validation_split(target, params)
    if params.validation_fraction:
        fit_features, fit_target = features[~is_valid], target[~is_valid]
        in_sample = stratified_mask(fit_target, len(fit_target), min(1.0, CURVE_SAMPLE_ROWS / len(fit_target)), params.seed)
        started = time.perf_counter()
        booster = fitted(params.n_estimators, fit_features, fit_target)
        # lightgbm.dask reports an evaluation set only on the part the returning worker holds:
        # the curves are scored here, on the whole slice, round by round.
        validation = logloss_by_round(booster, features[is_valid], target[is_valid])
        rounds = stopping_round(validation, params.early_stopping_rounds)
        shown = len(validation) if not params.early_stopping_rounds else min(len(validation), rounds + params.early_stopping_rounds)
        training = logloss_by_round(booster, fit_features[in_sample], fit_target[in_sample], shown)
        curve = [
            {"iteration": i + 1, "train_logloss": train_loss, "validation_logloss": valid_loss}
            for i, (train_loss, valid_loss) in enumerate(zip(training, validation[:shown], strict=True))
        ]
        summary.update(
            validation_rows=int(is_valid.sum()),
            best_iteration=rounds,
            validation_logloss=validation[rounds - 1],
            validation_roc_auc=validation_roc_auc(booster, features[is_valid], target[is_valid], rounds),
        )
        log.info(
            "early stopping rule chose %d trees (validation logloss %.5f) on %d workers in %.1fs",
            rounds,
            summary["validation_logloss"],
            len(workers),
            time.perf_counter() - started,
        )
    if not params.validation_fraction or params.refit_full:
        started = time.perf_counter()
        booster = fitted(rounds, features, target)
        log.info(
            "fitted %d trees on all %d training rows on %d workers in %.1fs",
            rounds,
            len(features),
            len(workers),
            time.perf_counter() - started,
        )
    elif rounds < booster.current_iteration():  # no refit: keep the trees early stopping would have kept
        booster = model_from_text(booster.model_to_string(num_iteration=rounds))
    summary["n_trees"] = rounds
    summary.update(dominant_feature(booster, names, summary.get("validation_roc_auc"), params))
    return TrainedModel(booster=booster, curve=curve, summary=summary)


def fresh_workers(client: Client, took_part: list[str]) -> None:
    """Restart the workers of a failed fit that still answer. LightGBM keeps one network per
    process, and the booster of a fit that broke frees it whenever Python collects that booster:
    on a surviving worker that can be in the middle of the next fit, whose peers then see a broken
    pipe. A new process has no such state. (A worker without a nanny cannot be restarted: it
    leaves the cluster, and the fit goes on without it.)"""
    alive = set(client.run(lambda: None, on_error="ignore"))
    client.restart_workers([worker for worker in took_part if worker in alive], timeout=WORKER_WAIT_SECONDS, raise_for_error=False)


def answering_workers(client: Client, count: int) -> list[str]:
    """The workers that answer, sorted, once `count` of them do (or WORKER_WAIT_SECONDS pass): the
    scheduler may still list a worker that just died, and rows sent there would land elsewhere."""
    deadline = time.monotonic() + WORKER_WAIT_SECONDS
    while True:
        answering = sorted(client.run(lambda: None, on_error="ignore"))
        if len(answering) >= count:
            return answering
        if time.monotonic() > deadline:
            log.warning("%d of %d workers answer after %d s: training on those", len(answering), count, WORKER_WAIT_SECONDS)
            return answering
        time.sleep(0.2)


def logloss_by_round(booster, rows: pd.DataFrame, labels: pd.Series, rounds: int | None = None, chunk_rows: int = 10_000) -> list[float]:
    """The log-loss (`mlpipe.model.metrics.log_loss`) of the first 1, 2, ... `rounds` trees on these rows.

    One `predict(pred_leaf=True)` per chunk of rows gives every tree's leaf for every row; a
    tree's raw score is its leaf's output, and the first k trees' raw score is their cumulative
    sum. Asking LightGBM for each round in turn would convert the table once per round."""
    from mlpipe.model.metrics import log_loss

    rounds = rounds or booster.current_iteration()
    trees = booster.dump_model(num_iteration=rounds)["tree_info"]
    outputs = np.full((rounds, max(tree["num_leaves"] for tree in trees)), np.nan)
    for tree in trees:
        index = tree["tree_index"]
        outputs[index, : tree["num_leaves"]] = [booster.get_leaf_output(index, leaf) for leaf in range(tree["num_leaves"])]
    positive = labels.to_numpy()
    totals = np.zeros(rounds)
    for start in range(0, len(rows), chunk_rows):
        leaves = booster.predict(rows.iloc[start : start + chunk_rows], pred_leaf=True, num_iteration=rounds)
        raw = np.cumsum(outputs[np.arange(rounds), leaves], axis=1)  # rows x rounds
        probability = 1.0 / (1.0 + np.exp(-raw))
        chunk = positive[start : start + chunk_rows]
        totals += [len(chunk) * log_loss(chunk, probability[:, k]) for k in range(rounds)]
    return (totals / len(rows)).tolist()


# The model text lists the parameters it was trained with, the cluster's network among them: the
# ports are new on every run, and would make the same model a new file (and a new DVC hash).
_NETWORK_SETTINGS = re.compile(r"^\[(machines|local_listen_port): [^\]]*\]$", re.MULTILINE)


def without_network_settings(model_text: str) -> str:
    return _NETWORK_SETTINGS.sub(lambda match: f"[{match.group(1)}: ]", model_text)
