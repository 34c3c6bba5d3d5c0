"""Scoring any table that matches a model's feature schema: the batch `predict` stage, the
serving API and a distributed runner all call `score_table`."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlpipe.data.features import encode_target, make_features
from mlpipe.data.schema import MODEL_VERSION, PREDICTED_LABEL, PROBABILITY, FeatureSchema
from mlpipe.data.sources import BATCH_COLUMN
from mlpipe.engine.parts import map_parts, part_files, staged
from mlpipe.errors import DataError
from mlpipe.model.booster import predict_proba

if TYPE_CHECKING:
    import lightgbm as lgb

    from mlpipe.config import DataParams, ValidateParams


def model_version(model_text: str) -> str:
    """The md5 of the model file: names exactly which model scored a row."""
    return hashlib.md5(model_text.encode("utf-8")).hexdigest()


def predicted_labels(proba: np.ndarray, threshold: float, schema: FeatureSchema) -> np.ndarray:
    """The label at `threshold`, as text: the positive label from it up, the negative one below."""
    return np.where(proba >= threshold, str(schema.positive_label), str(schema.negative_label))


def score_table(
    table: pd.DataFrame,
    booster: lgb.Booster,
    schema: FeatureSchema,
    threshold: float,
    version: str,
    passthrough: tuple[str, ...] = (BATCH_COLUMN,),
) -> pd.DataFrame:
    """Meta and passthrough columns (those present), the model's features, the 0/1 label when
    the table has one, then the probability of the positive label, the label at `threshold`
    and the model version."""
    features = make_features(table, schema)
    proba = predict_proba(booster, features, schema)
    kept = [c for c in [*schema.meta_columns, *passthrough] if c in table.columns]
    parts = [table[kept], features]
    if schema.target in table.columns:
        labelled = table[schema.target].notna()
        parts.append(encode_target(table[schema.target], schema).astype("Int8").where(labelled))
    scored = pd.concat(parts, axis=1)
    scored[PROBABILITY] = proba
    scored[PREDICTED_LABEL] = predicted_labels(proba, threshold, schema)
    scored[MODEL_VERSION] = version
    return scored


def score_parts(
    reference: Path,
    source: str,
    out_reference: Path,
    out_current: Path,
    quarantine: Path,
    model_text: str,
    schema: FeatureSchema,
    threshold: float,
    data: DataParams,
    validation: ValidateParams,
) -> dict[str, Any]:
    """The predict stage: the reference parts scored; the current source's files (their rows
    under the personal-data rules and the row rules, as with the local engine) scored part by
    part, bad rows to the quarantine. Returns the current rows' quality report."""
    from mlpipe.data.sources import partition_files, read_table
    from mlpipe.data.validation import merged_report

    path = Path(source)
    files = partition_files(path, "**/*") if path.is_dir() else [path]
    batches = [file.relative_to(path).as_posix() for file in files] if path.is_dir() else None
    version = model_version(model_text)
    with staged(out_reference, out_current, quarantine) as (reference_folder, current_folder, quarantine_folder):
        map_parts(_score_part, part_files(reference), [reference_folder], model_text, schema, threshold, version, what="predict: reference")
        reports = map_parts(
            _score_current_part,
            files,
            [current_folder, quarantine_folder],
            model_text,
            schema,
            threshold,
            version,
            data,
            validation,
            [str(file) for file in files],
            batches,
            read=functools.partial(read_table, csv_options=data.csv),
            mixed_as_text=True,  # new batches: a column text in one and numbers in another is text, as with the local engine
            what="predict: current",
        )
        report = merged_report(reports)
        if report["rows_out"] == 0:
            raise DataError(
                f"every row of the current table ({source}) breaks the data contract: fix the batch or the contract in validate.*"
            )
    return report


@functools.lru_cache(maxsize=2)
def _booster(model_text: str):
    from mlpipe.model.booster import model_from_text

    return model_from_text(model_text)


def _score_part(table: pd.DataFrame, index: int, model_text: str, schema: FeatureSchema, threshold: float, version: str):
    return (score_table(table, _booster(model_text), schema, threshold, version),), None


def _score_current_part(
    table: pd.DataFrame,
    index: int,
    model_text: str,
    schema: FeatureSchema,
    threshold: float,
    version: str,
    data: DataParams,
    validation: ValidateParams,
    names: list[str],
    batches: list[str] | None,
):
    from mlpipe.data.privacy import apply_personal_rules
    from mlpipe.data.sources import normalise_columns
    from mlpipe.data.validation import validate_rows

    table = apply_personal_rules(normalise_columns(table, origin=names[index]), data, origin=names[index])
    if batches is not None:
        table = table.assign(**{BATCH_COLUMN: batches[index]})
    checked = validate_rows(table, data, validation)
    try:
        scored = score_table(checked.clean, _booster(model_text), schema, threshold, version)
    except DataError as exc:
        raise DataError(f"current table ({names[index]}): {exc}") from None
    return (scored, checked.quarantine), checked.report
