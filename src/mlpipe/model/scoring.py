"""Scoring any table that matches a model's feature schema: `score_table` on one table or part,
and `predict`, the predict stage's step, which maps it over the parts of the reference and of the
new batches."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlpipe.data.features import encode_target, make_features
from mlpipe.data.schema import MODEL_VERSION, PREDICTED_LABEL, PROBABILITY, FeatureSchema
from mlpipe.data.sources import BATCH_COLUMN
from mlpipe.engine.parts import map_parts, parts_checked, staged
from mlpipe.errors import DataError
from mlpipe.model.booster import predict_proba
from mlpipe.model.explain import contribution_columns, contributions

if TYPE_CHECKING:
    import lightgbm as lgb

    from mlpipe.config import DataParams, ValidateParams
    from mlpipe.model.calibration import Calibration


def model_version(model_text: str) -> str:
    """The md5 of the model file: names exactly which model scored a row."""
    return hashlib.md5(model_text.encode("utf-8")).hexdigest()


def predicted_labels(calibrated: np.ndarray, calibration: Calibration, schema: FeatureSchema) -> np.ndarray:
    """The label of each calibrated probability at the calibration's threshold, as text: the
    positive label from it up, the negative one below."""
    return np.where(calibration.label(calibrated), str(schema.positive_label), str(schema.negative_label))


def score_table(
    table: pd.DataFrame,
    booster: lgb.Booster,
    schema: FeatureSchema,
    calibration: Calibration,
    version: str,
    passthrough: tuple[str, ...] = (BATCH_COLUMN,),
    explain_top_k: int = 0,
) -> pd.DataFrame:
    """Meta and passthrough columns (those present), the model's features, the 0/1 label when
    the table has one, then the calibrated probability of the positive label, the label at the
    calibration's threshold and the model version; with `explain_top_k`, each row's explanation
    last (`mlpipe.model.explain.contribution_columns`)."""
    features = make_features(table, schema)
    proba = calibration.apply(predict_proba(booster, features, schema))
    kept = [c for c in [*schema.meta_columns, *passthrough] if c in table.columns]
    parts = [table[kept], features]
    if schema.target in table.columns:
        labelled = table[schema.target].notna()
        parts.append(encode_target(table[schema.target], schema).astype("Int8").where(labelled))
    scored = pd.concat(parts, axis=1)
    scored[PROBABILITY] = proba
    scored[PREDICTED_LABEL] = predicted_labels(proba, calibration, schema)
    scored[MODEL_VERSION] = version
    if explain_top_k:
        contrib = contributions(booster, features, schema)
        scored = pd.concat([scored, contribution_columns(contrib, schema.feature_names, explain_top_k, scored.index)], axis=1)
    return scored


@dataclass(frozen=True)
class Scores:
    """What the log says of a scored table: its rows, their summed probability and how many got
    the positive label (sums, so that the parts' merge exactly)."""

    rows: int = 0
    probability_sum: float = 0.0
    positives: int = 0

    @classmethod
    def of(cls, scored: pd.DataFrame, schema: FeatureSchema) -> Scores:
        return cls(len(scored), float(scored[PROBABILITY].sum()), int((scored[PREDICTED_LABEL] == str(schema.positive_label)).sum()))

    @classmethod
    def merge(cls, parts: list[Scores]) -> Scores:
        return cls(sum(part.rows for part in parts), sum(part.probability_sum for part in parts), sum(part.positives for part in parts))

    def describe(self, schema: FeatureSchema) -> str:
        if not self.rows:
            return "no rows"
        return (
            f"{self.rows:,} rows, mean probability {self.probability_sum / self.rows:.4f}, "
            f"{100 * self.positives / self.rows:.1f}% labelled {schema.positive_label}"
        )


@dataclass(frozen=True)
class Predicted:
    quality: dict[str, Any]  # the current rows' data-quality report (`mlpipe.data.validation.merged_report`)
    reference: Scores
    current: Scores


def predict(
    reference: Path,
    source: str,
    out_reference: Path,
    out_current: Path,
    quarantine: Path,
    model: tuple[str, str],
    schema: FeatureSchema,
    calibration: Calibration,
    data: DataParams,
    validation: ValidateParams,
    explain_top_k: int = 0,
) -> Predicted:
    """The predict step, folders of parts out: `score_table` on every part of the reference (the
    training set, under its parts' names) and on the current rows (`source`: a file, or a folder of
    batch files and subfolders such as the service's prediction log, read as data.csv says), with
    the model (`model`: its text and the file it came from) and its calibration. With
    `explain_top_k`, each current row also gets its explanation (`score_table`); the reference,
    the training period that drift compares against, is never explained: nobody reads its rows
    one by one, and TreeSHAP would cost some hundred predictions for each.

    New rows enter here: each batch's rows meet the personal-data rules and the contract's row
    rules (`validate_rows`) as ingest and validate apply them, its bad rows go to `quarantine` with
    the rules they broke, its scored rows are cut into parts of at most data.partition_rows rows,
    and rows from a folder carry the `batch` they came in. Batches may disagree: a column text in
    one and numbers in another is text (one warning), a column one lacks is missing there, as
    `mlpipe.data.sources.read_batches` reads them. A current table whose every row breaks the
    contract fails the stage, and nothing is written."""
    from mlpipe.data.sources import partition_files, read_source_file
    from mlpipe.data.validation import merged_report, worst_rule

    path = Path(source)
    if not path.exists():
        raise DataError(f"monitor.current_source '{source}' does not exist: point it at a file or a folder of batches in params.yaml")
    files = partition_files(path, "**/*") if path.is_dir() else [path]
    batches = [file.relative_to(path).as_posix() if path.is_dir() else None for file in files]
    # A task reads its file at its absolute path; messages name it as monitor.current_source does.
    read = functools.partial(read_source_file, fmt=None, csv_options=data.csv, shown_as=(str(path.absolute()), str(path)))
    reference_parts = parts_checked(reference, "the training set", "split")
    version = model_version(model[0])
    with staged(out_reference, out_current, quarantine) as (reference_folder, current_folder, quarantine_folder):
        # The current rows first: a batch that does not fit the model stops the stage before the reference is scored.
        found = map_parts(
            _score_current_part,
            files,
            [current_folder, quarantine_folder],
            model,
            schema,
            calibration,
            version,
            data,
            validation,
            explain_top_k,
            per_part=[(str(file), batch) for file, batch in zip(files, batches, strict=True)],  # each task its own file's names
            read=read,
            chunk_rows=data.partition_rows,  # part names that are the same for any source file names
            mixed_as_text=True,
            origins=[str(file) for file in files],  # the warning names the batch files
            what="predict: current",
        )
        quality = merged_report([report for report, _ in found])
        if quality["rows_out"] == 0:
            raise DataError(
                f"every row of the current table ({source}) breaks the data contract (most: {worst_rule(quality)}): "
                "fix the batch or the contract in validate.*"
            )
        scores = map_parts(
            _score_part,
            reference_parts,
            [reference_folder],
            model,
            schema,
            calibration,
            version,
            str(reference),
            what="predict: reference",
        )
    return Predicted(quality, Scores.merge(scores), Scores.merge([scored for _, scored in found]))


@functools.lru_cache(maxsize=2)
def _booster(model: tuple[str, str]):
    from mlpipe.model.booster import model_from_text  # imports LightGBM: in the task, once per process

    return model_from_text(*model)


def _score_part(
    table: pd.DataFrame, index: int, model: tuple[str, str], schema: FeatureSchema, calibration: Calibration, version: str, origin: str
):
    try:
        scored = score_table(table, _booster(model), schema, calibration, version)
    except DataError as exc:
        raise DataError(f"reference table ({origin}): {exc}") from None
    return (scored,), Scores.of(scored, schema)


def _score_current_part(
    table: pd.DataFrame,
    index: int,
    model: tuple[str, str],
    schema: FeatureSchema,
    calibration: Calibration,
    version: str,
    data: DataParams,
    validation: ValidateParams,
    explain_top_k: int,
    name: str,
    batch: str | None,
):
    from mlpipe.data.privacy import apply_personal_rules
    from mlpipe.data.sources import normalise_columns
    from mlpipe.data.validation import validate_rows

    table = apply_personal_rules(normalise_columns(table, origin=name), data, origin=name)
    if batch is not None:
        table = table.assign(**{BATCH_COLUMN: batch})
    checked = validate_rows(table, data, validation)
    try:
        scored = score_table(checked.clean, _booster(model), schema, calibration, version, explain_top_k=explain_top_k)
    except DataError as exc:
        raise DataError(f"current table ({name}): {exc}") from None
    return (scored, checked.quarantine), (checked.report, Scores.of(scored, schema))
