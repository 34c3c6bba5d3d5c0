"""Training LightGBM on the training features, part by part: one validation slice, one
early-stopping rule and one refit, whichever executor runs the stage.

The executor is the only difference (`mlpipe.engine.executor.current()`):

- in process: the parts are read here and fitted with `lightgbm.train`;
- on a Dask cluster: each part is read on a worker (part i on the i-th worker by address, round
  robin) and fitted with LightGBM's own distributed training (`lightgbm.dask`); the stage's
  process never holds the rows. The result is an ordinary booster, saved as the same text model,
  so evaluate, predict, serving and DVC do not change.

What is the same code for both: the held-out slices (seeded stratified slices chosen inside each
part, `holdout_masks`: the calibration slice, which no fit ever sees, and the validation slice),
the checks on the counts the parts send back, the stopping rule
(`stopping_round`, LightGBM's `early_stopping` rule, applied to the validation log-loss by round),
the validation ROC-AUC, the refit on every training row outside the calibration slice, the
calibration and threshold fitted on that slice's scores (`mlpipe.model.calibration`) and the summary. The validation
log-loss by round comes from LightGBM's evaluation of the slice in process (where the rule also
stops the fit early, through a callback); lightgbm.dask evaluates a set only on the part the
returning worker holds and runs no callbacks, so on a cluster every round is fitted and the
curves are summed from the parts (`part_losses`) on the workers.

Tuning (Optuna, `mlpipe.model.tuning`) is not part of this: it reads the training table into the
stage's process under either engine (docs/scaling.md, "Limits").
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from mlpipe.config import CalibrationParams, TrainParams
from mlpipe.data.sampling import stratified_mask
from mlpipe.engine.executor import OnCluster, current
from mlpipe.engine.parts import read_part_columns, run_in_order
from mlpipe.errors import DataError, first_line
from mlpipe.model.booster import (
    booster_of,
    categorical_columns,
    feature_importance,
    lightgbm_core,
    lightgbm_names,
    lightgbm_params,
    model_from_text,
    model_to_text,
)
from mlpipe.model.calibration import Calibration, fit

if TYPE_CHECKING:
    import lightgbm as lgb
    from distributed import Client

log = logging.getLogger(__name__)

CURVE_SAMPLE_ROWS = 20_000
WORKER_WAIT_SECONDS = 60
FIT_ATTEMPTS = 3  # a worker lost mid-fit costs one attempt; three in a row is a sick cluster
LABEL = "__label__"  # the target's column in the rows a part hands to LightGBM (features keep LightGBM's names)

Part = str | pd.DataFrame  # a part's path, or (`train_model`, the one-part case) the table itself


# Without a calibration slice: the model's probability, labelled positive from 0.5 up (train_model's default).
NO_CALIBRATION = CalibrationParams(method="none", fraction=0, threshold={"objective": "fixed", "value": 0.5})


@dataclass(frozen=True)
class TrainedModel:
    booster: lgb.Booster
    curve: list[dict[str, float]]
    summary: dict[str, Any]
    calibration: Calibration


@dataclass(frozen=True)
class Rows:
    """Which columns of a part are the features and the target, and how its rows are split."""

    features: list[str]
    target: str
    params: TrainParams
    sample_fraction: float = 1.0  # of each part's fitted rows, for the training curve
    calibration_fraction: float = 0.0  # of each part's rows, held out of every fit for the calibration

    def read(self, part: Part) -> pd.DataFrame:
        """The part's features (under LightGBM's names) and its 0/1 target as LABEL."""
        return self.frame(_read_columns(part, [*self.features, self.target]))

    def frame(self, found: pd.DataFrame) -> pd.DataFrame:
        table = found[self.features].copy(deep=False)
        table.columns = lightgbm_names(self.features)
        table[LABEL] = found[self.target].to_numpy(dtype="int64")
        return table

    def labels(self, part: Part) -> pd.Series:
        return _read_columns(part, [self.target])[self.target].astype("int64")


def _read_columns(part: Part, columns: list[str]) -> pd.DataFrame:
    return part if isinstance(part, pd.DataFrame) else read_part_columns(part, columns, "part of the training features", "featurize")


def part_seed(params: TrainParams, index: int) -> int | list[int]:
    """Part `index`'s seed. Part 0 uses train.seed itself, so a one-part table keeps the slices it
    had before tables came in parts."""
    return params.seed if index == 0 else [params.seed, index]


@dataclass(frozen=True)
class Slices:
    """Part `index`'s rows by role (boolean masks)."""

    calibration: np.ndarray  # never fitted, never used to stop: the calibration and the threshold are fitted on it
    validation: np.ndarray  # early stopping's, fitted by the refit
    sample: np.ndarray  # the training curve's sample of the fitted rows

    @property
    def fitted(self) -> np.ndarray:
        """The rows the early-stopped fit uses."""
        return ~(self.calibration | self.validation)


def holdout_masks(labels: pd.Series, index: int, rows: Rows) -> Slices:
    """The slices of part `index`: seeded, stratified, chosen inside the part, so that any process
    holding the part finds the same rows. The calibration slice comes first (its own seed), the
    validation slice from the rest: without a calibration slice it is the slice it always was, so
    the model stays the same bytes. The sample is a share of the part's fitted rows."""
    params, count = rows.params, len(labels)
    calibration = (
        stratified_mask(labels, count, rows.calibration_fraction, [params.seed, index, 1])
        if rows.calibration_fraction
        else np.zeros(count, dtype=bool)
    )
    rest = np.flatnonzero(~calibration)
    validation = np.zeros(count, dtype=bool)
    validation[rest[stratified_mask(labels.iloc[rest], len(rest), params.validation_fraction, part_seed(params, index))]] = True
    fitted = np.flatnonzero(~(calibration | validation))
    sample = np.zeros(count, dtype=bool)
    sample[fitted[stratified_mask(labels.iloc[fitted], len(fitted), rows.sample_fraction, part_seed(params, index))]] = True
    return Slices(calibration, validation, sample)


def part_counts(part: Part, index: int, rows: Rows) -> dict[str, pd.Series]:
    """The class counts of part `index`, in all, in its fitted rows and in its calibration slice:
    what the checks need."""
    labels = rows.labels(part)
    slices = holdout_masks(labels, index, rows)
    return {
        "all": labels.value_counts(),
        "fitted": labels[slices.fitted].value_counts(),
        "calibration": labels[slices.calibration].value_counts(),
    }


def check_counts(counts: list[dict[str, Any]], params: TrainParams) -> tuple[int, int, int]:
    """(rows, fitted rows, calibration rows), once the training set is known to be fit for
    LightGBM: both classes, a validation slice and a fitted part that are not empty, both classes
    in a calibration slice, enough rows left to split on."""
    every = pd.concat([part["all"] for part in counts]).groupby(level=0).sum()
    fitted = pd.concat([part["fitted"] for part in counts]).groupby(level=0).sum()
    calibration = pd.concat([part["calibration"] for part in counts]).groupby(level=0).sum()
    rows, fit_rows, calibration_rows = int(every.sum()), int(fitted.sum()), int(calibration.sum())
    if rows == 0 or len(every[every > 0]) < 2:
        raise DataError(f"the training set has {rows} rows and {len(every[every > 0])} class(es): LightGBM needs rows of both classes")
    if calibration_rows and len(calibration[calibration > 0]) < 2:
        raise DataError(
            f"the training set has {rows} rows ({every.min()} in its smaller class): too few to hold out a calibration slice "
            f"with both classes ({calibration_rows} rows); use more data, raise calibration.fraction, or set calibration.fraction: 0, "
            "calibration.method: none and calibration.threshold.objective: fixed"
        )
    held_out = rows - calibration_rows - fit_rows
    if params.validation_fraction and (held_out == 0 or fit_rows == 0 or len(fitted[fitted > 0]) < 2):
        raise DataError(
            f"the training set has {rows} rows ({every.min()} in its smaller class): too few to hold out "
            f"train.validation_fraction={params.validation_fraction} for early stopping ({held_out} rows) and fit on the rest; use more data, "
            "or set train.validation_fraction: 0 and train.early_stopping_rounds: 0"
        )
    if fit_rows < 2 * params.min_child_samples:
        # LightGBM would not fail: it would fit trees without a single split, a constant model.
        raise DataError(
            f"{fit_rows} training rows are left to fit: a split needs train.min_child_samples={params.min_child_samples} "
            "rows on each side, so every tree would be a constant; use more data or lower train.min_child_samples"
        )
    return rows, fit_rows, calibration_rows


def stopping_round(losses: Sequence[float], patience: int) -> int:
    """The number of trees early stopping keeps for this validation curve: the best round so far,
    once `patience` rounds have passed without a better one (LightGBM's `early_stopping` rule);
    every round when `patience` is 0 (early stopping off)."""
    if not patience:
        return len(losses)
    best = 0
    for round_index, loss in enumerate(losses):
        if loss < losses[best]:
            best = round_index
        elif round_index - best >= patience:
            break
    return best + 1


def train_model(
    features: pd.DataFrame, target: pd.Series, params: TrainParams, calibration: CalibrationParams = NO_CALIBRATION
) -> TrainedModel:
    """`train` on one table in memory: the one-part case (tests, `make init`'s checks)."""
    names = [str(name) for name in features.columns]
    table = features.set_axis(names, axis=1).assign(**{LABEL: target.to_numpy()})
    return train(table_parts=[table], features=names, target=LABEL, params=params, calibration=calibration)


def train(
    table_parts: Sequence[Part | Path],
    features: list[str],
    target: str,
    params: TrainParams,
    calibration: CalibrationParams = NO_CALIBRATION,
) -> TrainedModel:
    """Fit LightGBM on the parts (paths, in row order) outside the calibration slice; with a
    validation slice, early-stop on it and optionally refit on all those rows with the chosen number
    of trees, so the validation slice chooses the model size without costing the final model any
    data. Then fit the calibration and choose the threshold on the calibration slice's scores."""
    # Absolute paths: a worker's working directory is its own (docs/scaling.md: the repository is
    # at the same path on every machine).
    executor, parts = current(), [part if isinstance(part, pd.DataFrame) else str(Path(part).absolute()) for part in table_parts]
    rows = Rows(features, target, params, calibration_fraction=calibration.fraction)
    counts = run_in_order(part_counts, [(part, index, rows) for index, part in enumerate(parts)], "train: counts")
    total, fit_rows, calibration_rows = check_counts(counts, params)
    log.info(
        "%d training rows in %d part(s)%s", total, len(parts), f", {calibration_rows} held out to calibrate" if calibration_rows else ""
    )
    rows = Rows(features, target, params, min(1.0, CURVE_SAMPLE_ROWS / fit_rows), calibration.fraction)
    fitter = ClusterFit(executor.cluster, parts, rows) if isinstance(executor, OnCluster) else InProcessFit(parts, rows)
    summary: dict[str, Any] = {"train_rows": total, **fitter.facts}
    curve: list[dict[str, float]] = []
    rounds = params.n_estimators
    if params.validation_fraction:
        started = time.perf_counter()
        booster, validation, training = fitter.fit_holdout()
        rounds = stopping_round(validation, params.early_stopping_rounds)
        curve = [
            {"iteration": i + 1, "train_logloss": train_loss, "validation_logloss": valid_loss}
            for i, (train_loss, valid_loss) in enumerate(zip(training, validation, strict=True))
        ]
        summary.update(
            validation_rows=total - calibration_rows - fit_rows,
            best_iteration=rounds,
            validation_logloss=validation[rounds - 1],
            validation_roc_auc=validation_roc_auc(parts, rows, model_to_text(booster), rounds),
        )
        log.info(
            "early stopping chose %d trees (validation logloss %.5f)%s in %.1fs",
            rounds,
            summary["validation_logloss"],
            fitter.where,
            time.perf_counter() - started,
        )
    if not params.validation_fraction or params.refit_full:
        started = time.perf_counter()
        booster = fitter.fit_all(rounds)
        log.info(
            "fitted %d trees on all %d fitted rows%s in %.1fs",
            rounds,
            total - calibration_rows,
            fitter.where,
            time.perf_counter() - started,
        )
    elif rounds < booster.current_iteration():  # no refit: keep the trees early stopping chose
        booster = model_from_text(booster.model_to_string(num_iteration=rounds))
    summary["n_trees"] = rounds
    summary.update(dominant_feature(booster, features, summary.get("validation_roc_auc"), params))
    fitted = calibrated(parts, rows, model_to_text(booster), calibration)
    summary.update(calibration_summary(fitted))
    return TrainedModel(booster=booster, curve=curve, summary=summary, calibration=fitted)


def calibrated(parts: Sequence[Part], rows: Rows, model_text: str, params: CalibrationParams) -> Calibration:
    """The calibration and threshold fitted on the calibration slice's scores by the final model
    (the slice's labels and probabilities come to this process, as the validation slice's do);
    without a slice, the model's probability at calibration.threshold.value."""
    rule = params.threshold.model_dump()
    if not rows.calibration_fraction:
        return Calibration("none", {}, params.threshold.value, rule, {})
    labels, proba = slice_scores(parts, rows, model_text, None, "calibration")
    return fit(labels, proba, params.method, rule, params.bins)


def calibration_summary(fitted: Calibration) -> dict[str, Any]:
    """The calibration's figures for metrics/train/metrics.json (flat: `dvc metrics diff` shows them)."""
    figures = fitted.fitted_on
    summary: dict[str, Any] = {"threshold": fitted.threshold}
    if figures:
        summary.update(
            calibration_rows=figures["rows"],
            calibration_brier_raw=figures["brier_raw"],
            calibration_brier_calibrated=figures["brier_calibrated"],
            calibration_log_loss_raw=figures["log_loss_raw"],
            calibration_log_loss_calibrated=figures["log_loss_calibrated"],
        )
    return summary


class InProcessFit:
    """`lightgbm.train` on the parts, read into this process."""

    where = ""

    def __init__(self, parts: Sequence[Part], rows: Rows) -> None:
        tables, slices = [], []
        for index, part in enumerate(parts):
            table = rows.read(part)
            tables.append(table)
            slices.append(holdout_masks(table[LABEL], index, rows))
        self.table = tables[0] if len(tables) == 1 else pd.concat(tables, ignore_index=True)
        self.is_valid, self.in_sample = np.concatenate([s.validation for s in slices]), np.concatenate([s.sample for s in slices])
        self.is_calibration = np.concatenate([s.calibration for s in slices])
        self.rows, self.facts = rows, {}
        self.inputs = self.table.drop(columns=LABEL)
        self.categorical = categorical_columns(self.inputs)

    def fit_holdout(self) -> tuple[lgb.Booster, list[float], list[float]]:
        """The fit on the rows outside the validation and calibration slices, stopped by
        `stopping_round` as soon as it has chosen; the validation and training-sample log-loss by round."""
        lgb, params = lightgbm_core(), self.rows.params
        labels, fitted = self.table[LABEL], ~(self.is_valid | self.is_calibration)
        fit_set = lgb.Dataset(self.inputs[fitted], labels[fitted], categorical_feature=self.categorical, free_raw_data=False)
        valid_set = fit_set.create_valid(self.inputs[self.is_valid], labels[self.is_valid])
        # The curve's training loss comes from a fixed sample of the fitted rows: scoring all of
        # them every round would cost seconds per million rows and show the same curve.
        sample_set = fit_set.create_valid(self.inputs[self.in_sample], labels[self.in_sample])
        history: dict[str, dict[str, list[float]]] = {}
        booster = lgb.train(
            lightgbm_params(params),
            fit_set,
            num_boost_round=params.n_estimators,
            valid_sets=[sample_set, valid_set],
            valid_names=["sample", "validation"],
            callbacks=[lgb.record_evaluation(history), lgb.log_evaluation(period=100), stop_when_chosen(params.early_stopping_rounds)],
        )
        return booster, history["validation"]["binary_logloss"], history["sample"]["binary_logloss"]

    def fit_all(self, rounds: int) -> lgb.Booster:
        """The refit on every row outside the calibration slice."""
        lgb = lightgbm_core()
        inputs, labels = self.inputs, self.table[LABEL]
        if self.is_calibration.any():  # else no copy of the table: the same Dataset as ever
            inputs, labels = inputs[~self.is_calibration], labels[~self.is_calibration]
        full_set = lgb.Dataset(inputs, labels, categorical_feature=self.categorical)
        return lgb.train(lightgbm_params(self.rows.params), full_set, num_boost_round=rounds)


def stop_when_chosen(patience: int):
    """A LightGBM callback that ends the fit once `stopping_round` has chosen, so that in process
    no tree is fitted past the rule's decision (the rule itself is applied to the whole curve)."""
    lgb, losses = lightgbm_core(), []

    def callback(env) -> None:
        losses.append(next(value for name, _metric, value, _ in env.evaluation_result_list if name == "validation"))
        if patience and len(losses) - stopping_round(losses, patience) >= patience:
            raise lgb.EarlyStopException(stopping_round(losses, patience) - 1, env.evaluation_result_list)

    callback.order = 30  # after record_evaluation (20), as LightGBM's own early_stopping
    return callback


class ClusterFit:
    """`lightgbm.dask` on the parts, each read on a worker; the curves summed from the parts."""

    def __init__(self, client: Client, parts: Sequence[Part], rows: Rows) -> None:
        self.client, self.parts, self.rows = client, parts, rows
        self.workers = sorted(client.scheduler_info()["workers"])
        if not self.workers:
            raise DataError(f"the Dask cluster at {client.scheduler.address} has no workers: start some, then run the stage again")
        self.facts = {"engine": "dask", "workers": len(self.workers)}
        self.where = f" on {len(self.workers)} workers"
        first = parts[0]
        meta = first.head(0) if isinstance(first, pd.DataFrame) else pq.read_schema(first).empty_table().to_pandas()
        self.meta = rows.frame(meta)
        self.categorical = categorical_columns(self.meta.drop(columns=LABEL))

    def fit_holdout(self) -> tuple[lgb.Booster, list[float], list[float]]:
        params = self.rows.params
        booster = self.fitted(params.n_estimators, holdout=True)
        validation, training = part_losses_merged(self.parts, self.rows, model_to_text(booster))
        rounds = stopping_round(validation, params.early_stopping_rounds)
        # The curve stops where the in-process fit would have stopped.
        shown = min(len(validation), rounds + params.early_stopping_rounds) if params.early_stopping_rounds else len(validation)
        return booster, validation[:shown], training[:shown]

    def fit_all(self, rounds: int) -> lgb.Booster:
        return self.fitted(rounds, holdout=False)

    def fit_once(self, rounds: int, holdout: bool, on: list[str]) -> lgb.Booster:
        import dask.dataframe as dd
        import lightgbm.dask as lgb_dask

        # Part i is read on the i-th worker by address (round robin), and LightGBM ranks its
        # machines in the order their first part comes (compute's OrderedClient): the same rows
        # meet the same rank on every run, so a run is repeatable on the same cluster shape.
        # pure=False: fresh keys, so that a part a failed attempt left on a worker is not reused
        # under its old key when this attempt reads it on another.
        tables = [
            self.client.submit(fitted_rows, part, index, self.rows, holdout, workers=[on[index % len(on)]], pure=False)
            for index, part in enumerate(self.parts)
        ]
        columns = lightgbm_names(self.rows.features)
        inputs = [
            self.client.submit(_columns, table, columns, workers=[on[index % len(on)]], pure=False) for index, table in enumerate(tables)
        ]
        labels = [
            self.client.submit(_columns, table, LABEL, workers=[on[index % len(on)]], pure=False) for index, table in enumerate(tables)
        ]
        model = lgb_dask.DaskLGBMClassifier(client=self.client, n_estimators=rounds, **lightgbm_params(self.rows.params))
        with cancelled_when_a_worker_leaves(self.client, on, [*tables, *inputs, *labels]):
            fitted = model.fit(
                dd.from_delayed(inputs, meta=self.meta[columns], verify_meta=False),
                dd.from_delayed(labels, meta=self.meta[LABEL], verify_meta=False),
                categorical_feature=self.categorical,
            )
        return model_from_text(without_network_settings(fitted.to_local().booster_.model_to_string()))

    def fitted(self, rounds: int, holdout: bool) -> lgb.Booster:
        for attempt in range(1, FIT_ATTEMPTS + 1):
            # The workers that answer now: one may have died in an earlier attempt and come back
            # (a nanny restarts it) under a new address.
            on = answering_workers(self.client, len(self.workers))
            try:
                return self.fit_once(rounds, holdout, on)
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
            fresh_workers(self.client, on)
            time.sleep(attempt)  # backoff: a cluster that keeps losing workers gets time to settle
        raise AssertionError("unreachable")


@contextlib.contextmanager
def cancelled_when_a_worker_leaves(client: Client, on: list[str], futures: list) -> Iterator[None]:
    """Cancel the fit's parts as soon as a worker of `on` stops answering. The scheduler would
    recompute a lost part, but only on the worker it was pinned to, which is gone: LightGBM's
    other ranks would wait for it for ever. Cancelled, the fit fails, and `fitted` tries again."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.5):
            answering = set(client.run(lambda: None, on_error="ignore"))
            if not set(on) <= answering:
                client.cancel(futures, force=True)
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def fitted_rows(part: Part, index: int, rows: Rows, holdout: bool) -> pd.DataFrame:
    """The rows of part `index` a fit uses: those outside the validation and calibration slices,
    or (the refit) all outside the calibration slice."""
    table = rows.read(part)
    slices = holdout_masks(table[LABEL], index, rows)
    kept = slices.fitted if holdout else ~slices.calibration
    return table if kept.all() else table[kept]


def _columns(table: pd.DataFrame, columns):
    return table[columns]


def part_losses(part: Part, index: int, rows: Rows, model_text: str) -> tuple[np.ndarray, int, np.ndarray, int]:
    """(log-loss summed by round, rows) on the part's validation slice and on its training-curve
    sample: sums, so that the parts' merge is exact."""
    table = rows.read(part)
    slices = holdout_masks(table[LABEL], index, rows)
    booster = booster_of(model_text)
    inputs = table.drop(columns=LABEL)
    return (
        loss_sums_by_round(booster, inputs[slices.validation], table[LABEL][slices.validation]),
        int(slices.validation.sum()),
        loss_sums_by_round(booster, inputs[slices.sample], table[LABEL][slices.sample]),
        int(slices.sample.sum()),
    )


def part_losses_merged(parts: Sequence[Part], rows: Rows, model_text: str) -> tuple[list[float], list[float]]:
    """The validation and training-sample log-loss by round, from every part's sums."""
    calls = [(part, index, rows, model_text) for index, part in enumerate(parts)]
    found = run_in_order(part_losses, calls, "train: validation curve")
    validation = sum(result[0] for result in found) / max(1, sum(result[1] for result in found))
    training = sum(result[2] for result in found) / max(1, sum(result[3] for result in found))
    return validation.tolist(), training.tolist()


def part_slice_scores(part: Part, index: int, rows: Rows, model_text: str, rounds: int | None, which: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities of the first `rounds` trees, None: all) of the part's `which` slice
    (validation or calibration)."""
    table = rows.read(part)
    chosen = getattr(holdout_masks(table[LABEL], index, rows), which)
    if not chosen.any():
        return np.zeros(0, dtype=np.int8), np.zeros(0)
    proba = booster_of(model_text).predict(table.drop(columns=LABEL)[chosen], num_iteration=rounds)
    return table[LABEL].to_numpy()[chosen].astype(np.int8), proba


def slice_scores(parts: Sequence[Part], rows: Rows, model_text: str, rounds: int | None, which: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) of every part's `which` slice, scored where the part is read. Only
    they come to this process: 9 bytes a row, a tenth of the rows by default (docs/scaling.md, "Limits")."""
    calls = [(part, index, rows, model_text, rounds, which) for index, part in enumerate(parts)]
    found = run_in_order(part_slice_scores, calls, f"train: {which} scores")
    return np.concatenate([result[0] for result in found]), np.concatenate([result[1] for result in found])


def validation_roc_auc(parts: Sequence[Part], rows: Rows, model_text: str, rounds: int) -> float | None:
    """The early-stopped model's ROC-AUC on the validation slice (None with one class there)."""
    from mlpipe.model.metrics import roc_auc

    labels, proba = slice_scores(parts, rows, model_text, rounds, "validation")
    if len(np.unique(labels)) < 2:
        return None
    return roc_auc(labels, proba)


def loss_sums_by_round(booster, rows: pd.DataFrame, labels: pd.Series, chunk_rows: int = 10_000) -> np.ndarray:
    """The log-loss (`mlpipe.model.metrics.log_loss`) of the first 1, 2, ... trees on these rows,
    summed over the rows.

    One `predict(pred_leaf=True)` per chunk of rows gives every tree's leaf for every row; a
    tree's raw score is its leaf's output, and the first k trees' raw score is their cumulative
    sum. Asking LightGBM for each round in turn would convert the table once per round."""
    from mlpipe.model.metrics import log_loss

    rounds = booster.current_iteration()
    totals = np.zeros(rounds)
    if len(rows) == 0:
        return totals
    trees = booster.dump_model(num_iteration=rounds)["tree_info"]
    outputs = np.full((rounds, max(tree["num_leaves"] for tree in trees)), np.nan)
    for tree in trees:
        index = tree["tree_index"]
        outputs[index, : tree["num_leaves"]] = [booster.get_leaf_output(index, leaf) for leaf in range(tree["num_leaves"])]
    positive = labels.to_numpy()
    for start in range(0, len(rows), chunk_rows):
        leaves = booster.predict(rows.iloc[start : start + chunk_rows], pred_leaf=True, num_iteration=rounds)
        raw = np.cumsum(outputs[np.arange(rounds), leaves], axis=1)  # rows x rounds
        probability = 1.0 / (1.0 + np.exp(-raw))
        chunk = positive[start : start + chunk_rows]
        totals += [len(chunk) * log_loss(chunk, probability[:, k]) for k in range(rounds)]
    return totals


def dominant_feature(booster: lgb.Booster, names: Sequence[str], validation_auc: float | None, params: TrainParams) -> dict[str, Any]:
    """The feature that carries most of the final model's gain, its share, and `leak_warning` (1 or 0,
    a number so that `dvc metrics diff` shows it change): 1 when that share and the validation
    ROC-AUC both reach train.leak_warning_*, which is how a column recorded after the outcome looks."""
    top = feature_importance(booster, names).iloc[0]
    share = float(top["gain_share"])
    suspect = (
        validation_auc is not None and share >= params.leak_warning_gain_share and validation_auc >= params.leak_warning_validation_auc
    )
    return {"top_feature": str(top["feature"]), "top_feature_gain_share": share, "leak_warning": int(suspect)}


def leak_warning(summary: dict[str, Any], params: TrainParams) -> str | None:
    """The stage log's line for a suspected leak (None when there is none)."""
    if not summary.get("leak_warning"):
        return None
    return (
        f"warning: one feature, '{summary['top_feature']}', carries {summary['top_feature_gain_share']:.0%} of the gain and the "
        f"validation ROC-AUC is {summary['validation_roc_auc']:.3f} (train.leak_warning_gain_share="
        f"{params.leak_warning_gain_share:g}, train.leak_warning_validation_auc={params.leak_warning_validation_auc:g}): "
        f"a column recorded after the outcome? if it is not known at prediction time, add it to data.drop_columns"
    )


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


# The model text lists the parameters it was trained with, the cluster's network among them: the
# ports are new on every run, and would make the same model a new file (and a new DVC hash).
_NETWORK_SETTINGS = re.compile(r"^\[(machines|local_listen_port): [^\]]*\]$", re.MULTILINE)


def without_network_settings(model_text: str) -> str:
    return _NETWORK_SETTINGS.sub(lambda match: f"[{match.group(1)}: ]", model_text)
