"""Scoring records as they arrive, with the pipeline's own model and rules: the model and its
feature schema loaded and checked together, a request contract built from the feature schema
and the data contract, and the batch stage's feature encoding, so a served probability equals
the batch one for the same row, to the last bit.

Free of HTTP and of the repository's layout: `mlpipe.serving.app` puts it behind FastAPI, and
`mlpipe.tools.serve` finds the files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NotRequired, Required

import numpy as np
import pandas as pd
from pydantic import AfterValidator, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from typing_extensions import TypedDict  # pydantic needs this one's TypedDict before Python 3.12

from mlpipe.config import ColumnContract, Params
from mlpipe.data.features import make_features
from mlpipe.data.schema import OTHER_LEVEL, FeatureSchema, FeatureSpec, category_label
from mlpipe.data.validation import arriving_row_contracts
from mlpipe.errors import DataError
from mlpipe.io import read_pipeline_text
from mlpipe.model.booster import lightgbm_names, model_from_text, model_input
from mlpipe.model.calibration import Calibration
from mlpipe.model.explain import explanations, rows_contributions
from mlpipe.model.scoring import model_version, predicted_labels

if TYPE_CHECKING:
    import lightgbm as lgb


@dataclass(frozen=True)
class RecordEncoder:
    """The model's input rows straight from records, without a DataFrame per request: numbers as
    float64, a categorical as the position of its level among the training levels (an unseen one
    as the shared __other__ level's, else missing). That is what `features.make_features` and
    LightGBM's own conversion of pandas categoricals hand the booster, so the probabilities are
    the batch stage's to the bit (tests/test_serving.py holds the two paths equal).
    Schemas with derived features go through `make_features` instead."""

    columns: tuple[_Column, ...]

    @classmethod
    def for_schema(cls, schema: FeatureSchema) -> RecordEncoder | None:
        if schema.derived:
            return None
        return cls(tuple(_Column.of(spec) for spec in schema.features))

    def encode(self, records: list[dict[str, Any]]) -> np.ndarray:
        rows = np.empty((len(records), len(self.columns)))
        for position, column in enumerate(self.columns):
            rows[:, position] = column.encode([record.get(column.name) for record in records])
        return rows


@dataclass(frozen=True)
class _Column:
    name: str
    levels: dict[str, int] | None  # categorical: level -> code; None for a number
    unseen: float  # the code of a level training never saw: __other__'s, or missing
    int_levels: np.ndarray  # the levels that are integers ('3'), sorted, and their codes: a long
    int_codes: np.ndarray  # column of integers is looked up at once (numpy), a short one value by value

    @classmethod
    def of(cls, spec: FeatureSpec) -> _Column:
        if spec.kind != "categorical":
            return cls(spec.name, None, np.nan, np.empty(0, np.int64), np.empty(0))
        levels = {level: code for code, level in enumerate(spec.categories)}
        integral = sorted((int(level), code) for level, code in levels.items() if level.lstrip("-").isdigit() and str(int(level)) == level)
        keys, codes = (np.array(values) for values in zip(*integral, strict=True)) if integral else (np.empty(0, np.int64), np.empty(0))
        return cls(spec.name, levels, float(levels.get(OTHER_LEVEL, np.nan)), keys.astype(np.int64), codes.astype(float))

    def encode(self, values: list[Any]) -> np.ndarray | list[float]:
        if self.levels is None:
            return np.array(values, dtype=float)  # None is NaN
        if len(values) >= 32 and len(self.int_levels) and all(type(value) is int and -(2**63) <= value < 2**63 for value in values):
            numbers = np.array(values, dtype=np.int64)
            found = np.searchsorted(self.int_levels, numbers).clip(0, len(self.int_levels) - 1)
            return np.where(self.int_levels[found] == numbers, self.int_codes[found], self.unseen)
        return [_code(value, self.levels, self.unseen) for value in values]


def _code(value: Any, levels: dict[str, int], unseen: float) -> float:
    # A level is looked up by its name: 3, 3.0 and '3' are all '3'.
    kind = type(value)
    if kind is str:
        return levels.get(value, unseen)
    if kind is int:
        return levels.get(str(value), unseen)
    return np.nan if value is None else levels.get(category_label(value), unseen)


@dataclass(frozen=True)
class ServedModel:
    """A model ready to score: the booster, its feature schema, its version (the model file's md5,
    as the batch stage writes it) and what /metadata shows about it."""

    booster: lgb.Booster
    schema: FeatureSchema
    version: str
    metadata: dict[str, Any] = field(default_factory=dict)
    encoder: RecordEncoder | None = None
    calibration: Calibration = field(default_factory=Calibration)  # read with the model: a reload swaps both


def load_served_model(
    model_path: str | Path,
    schema_path: str | Path,
    metadata: Mapping[str, Any] | None = None,
    calibration_path: str | Path | None = None,
) -> ServedModel:
    """Read the LightGBM text model, its feature schema and its calibration (models/calibration.json;
    None: the model's probability at 0.5), never a pickle, and check that model and schema belong
    together; one-line `DataError`s name the file and the fix."""
    text = read_pipeline_text(model_path, "model", "train")
    schema = FeatureSchema.read(schema_path)
    booster = model_from_text(text, origin=str(model_path))
    check_model_matches_schema(booster, schema, f"'{schema_path}' does not describe '{model_path}'")
    calibration = Calibration() if calibration_path is None else Calibration.read(calibration_path)
    return ServedModel(booster, schema, model_version(text), dict(metadata or {}), RecordEncoder.for_schema(schema), calibration)


def files_state(*paths: str | Path) -> tuple[tuple[int, int, int] | None, ...]:
    """(inode, size, modification time) of each file, None where it is missing: changes when a
    file is rewritten or replaced (`dvc repro`, `dvc pull`, `dvc checkout`), read without opening it."""
    found = []
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            found.append(None)
        else:
            found.append((stat.st_ino, stat.st_size, stat.st_mtime_ns))
    return tuple(found)


def check_model_matches_schema(booster: lgb.Booster, schema: FeatureSchema, problem: str) -> None:
    """The features, their order and the categorical levels the model was trained on must be the schema's."""
    fix = "train writes both together: run `dvc repro train` or pull both files from the same revision"
    if booster.feature_name() != lightgbm_names(schema.feature_names):
        raise DataError(f"{problem}: the model's features {booster.feature_name()} are not the schema's {schema.feature_names}; {fix}")
    trained_levels = [list(map(str, levels)) for levels in (booster.pandas_categorical or [])]
    schema_levels = [list(spec.categories) for spec in schema.features if spec.kind == "categorical"]
    if trained_levels != schema_levels:
        raise DataError(f"{problem}: the model's categorical levels differ from the schema's; {fix}")


# The integers a field takes as integers: a larger one goes to the float member (see `_field`).
INT64 = (-(2**63), 2**63 - 1)
MAX_REMEMBERED = 4096  # verdicts an `allowed` check keeps per field


class RecordError(ValueError):
    """A field that breaks the request contract; `reason` is its label in the service's metrics."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def record_model(schema: FeatureSchema, params: Params) -> type:
    """The request contract of one record, as a TypedDict pydantic validates (and shows as
    OpenAPI on /docs).

    Every raw input of the model is required (null only where the data contract allows it), with
    the contract's type, bounds and allowed values; categoricals list the levels the model knows,
    and with `serve.unknown_category: reject` accept only those. Id and time columns, the target
    (for replays with labels) and declared personal columns may come along: they are checked,
    logged (personal ones protected) and never fed to the model. Anything else is refused. The
    type, bound and length checks are pydantic's own (in Rust): a 1,000-record body is checked
    in milliseconds.
    """
    contracts = arriving_row_contracts(params.data, params.validate)
    specs = {spec.name: spec for spec in schema.features}
    fields: dict[str, Any] = {}
    for name in schema.input_columns:
        fields[name] = Required[_field(name, contracts.get(name, ColumnContract()), params, specs[name], required=True)]
    optional = [*schema.meta_columns, params.data.target, *params.data.personal_columns]
    for name in dict.fromkeys(optional):
        if name not in fields:
            fields[name] = NotRequired[_field(name, contracts.get(name, ColumnContract()), params, None, required=False)]
    record = TypedDict("Record", fields, total=False)
    record.__pydantic_config__ = ConfigDict(extra="forbid", json_schema_extra={"description": "One row to score."})
    return record


def _field(name: str, contract: ColumnContract, params: Params, spec: Any, required: bool) -> Any:
    categories = spec.categories if spec is not None and spec.kind == "categorical" else ()
    bounds = {key: value for key, value in (("ge", contract.min), ("le", contract.max)) if value is not None}
    # A JSON integer beyond 64 bits is read as the float member (1e30), or refused as not finite
    # beyond a float's range: a 400-digit integer would overflow the encoder and the log's Parquet.
    integer = Annotated[StrictInt, Field(ge=max(bounds.get("ge", INT64[0]), INT64[0]), le=min(bounds.get("le", INT64[1]), INT64[1]))]
    checks = []
    if (spec is not None and spec.kind == "numeric" or bounds) and contract.allowed is None:
        whole = {"multiple_of": 1} if contract.dtype is not None and contract.dtype.lower().startswith(("int", "uint")) else {}
        kind = integer | Annotated[StrictFloat, Field(**bounds, **whole, allow_inf_nan=not contract.finite)]
    else:
        text = Annotated[StrictStr, Field(max_length=contract.max_length or params.validate.max_text_length)]
        kind = StrictBool | integer | Annotated[StrictFloat, Field(allow_inf_nan=not contract.finite)] | text
    if contract.allowed is not None:
        # batch validation's rule (`validation.allowed_check`): a value is allowed when its category
        # label is an allowed one's, so 1, 1.0 and "1" are one value, "1.0" and true others (a
        # `Literal` took true and 1.0 for 1 but refused "1"). A set lookup per value: microseconds.
        shown = [repr(value) for value in contract.allowed]
        message = f"must be one of {' or '.join(filter(None, [', '.join(shown[:-1]), shown[-1]]))} (the data contract)"
        checks.append(AfterValidator(_allowed(frozenset(category_label(value) for value in contract.allowed), message)))
    if categories and params.serve.unknown_category == "reject":
        checks.append(
            AfterValidator(
                _one_of(frozenset(categories), f"is a category the model does not know: it knows {list(categories)}", "unknown_category")
            )
        )
    schema_extra: dict[str, Any] = {}
    notes = [f"one of {contract.allowed}"] if contract.allowed is not None else []
    if categories:
        unseen = "refused" if params.serve.unknown_category == "reject" else "scored as unseen (serve.unknown_category)"
        notes.append(f"categorical: the model knows {list(categories)}; others are {unseen}")
        if params.serve.unknown_category == "reject":
            schema_extra["enum"] = list(categories)
    role = "model input" if spec is not None else _role(name, params)
    nullable = contract.nullable or not required
    if contract.allowed is not None and "enum" not in schema_extra:
        # Machine-readable too (the description says it to people): a client such as `mlpipe smoke`
        # builds a record the contract accepts from the schema alone.
        schema_extra["enum"] = [*contract.allowed, *([None] if nullable else [])]
    description = Field(description="; ".join([role, *notes]), json_schema_extra=schema_extra or None)
    return Annotated[kind | None if nullable else kind, description, *checks]


def _one_of(labels: frozenset[str], message: str, reason: str):
    def check(value: Any) -> Any:
        if value is not None and category_label(value) not in labels:
            raise RecordError(reason, message)
        return value

    return check


def _allowed(labels: frozenset[str], message: str):
    """`_one_of` for `allowed`, remembering each (type, value)'s verdict: a request repeats a few
    codes, and a dict lookup costs a third of labelling the value again. The type is part of the
    key because True == 1 in Python while their labels differ."""
    verdicts: dict[tuple[type, Any], bool] = {}

    def check(value: Any) -> Any:
        if value is None:
            return value
        key = (value.__class__, value)
        allowed = verdicts.get(key)
        if allowed is None:
            allowed = category_label(value) in labels
            if len(verdicts) < MAX_REMEMBERED:  # bounded: a stream of distinct values must not grow it for ever
                verdicts[key] = allowed
        if not allowed:
            raise RecordError("not_allowed", message)
        return value

    return check


def _role(name: str, params: Params) -> str:
    if name == params.data.target:
        return "the label, when known (logged for monitoring, not used to score)"
    if name in params.data.personal_columns:
        action = params.data.personal_columns[name]
        return f"personal data: {'dropped' if action == 'drop' else 'salted-hashed'} before anything is logged"
    return "identifies the row or its time (logged, not used to score)"


def score_records(records: list[dict[str, Any]], model: ServedModel, threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(calibrated probability of the positive label, label at the calibration's threshold) for
    validated records (dicts of the fields each was sent with), as the batch stage would score the
    same rows. `threads` is LightGBM's (0: its default); rows are scored independently, so it
    changes no result."""
    probability = model.booster.predict(model_rows(records, model), num_threads=threads)
    calibrated = model.calibration.apply(probability)
    return calibrated, predicted_labels(calibrated, model.calibration, model.schema)


def model_rows(records: list[dict[str, Any]], model: ServedModel) -> np.ndarray | pd.DataFrame:
    """What the booster is given for validated records (at least one): the encoder's matrix, or,
    for schemas with derived features, the batch stage's features (`make_features`)."""
    if model.encoder is not None:
        return model.encoder.encode(records)
    return model_input(make_features(pd.DataFrame.from_records(records), model.schema), model.schema)


def explain_records(records: list[dict[str, Any]], model: ServedModel, top_k: int, threads: int = 0) -> list[dict[str, Any]]:
    """Each validated record's explanation: its `top_k` features of largest TreeSHAP contribution
    to the raw score and the base value (`mlpipe.model.explain.explanations`), from the rows
    `score_records` scores, so they are the batch stage's explanations of the same rows."""
    return explanations(rows_contributions(model.booster, model_rows(records, model), threads), model.schema.feature_names, top_k)
