"""Scoring records as they arrive, with the pipeline's own model and rules: the model and its
feature schema loaded and checked together, a request contract built from the feature schema
and the data contract, and the batch stage's `score_table`, so a served probability equals the
batch one for the same row, to the last bit.

Free of HTTP and of the repository's layout: `mlpipe.service` puts it behind FastAPI, and
`mlpipe.tools.serve` finds the files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pandas as pd
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, create_model

from mlpipe.config import ColumnContract, Params
from mlpipe.errors import DataError, first_line
from mlpipe.model import model_from_text
from mlpipe.privacy import apply_personal_rules
from mlpipe.schema import MODEL_VERSION, PREDICTED_LABEL, PROBABILITY, FeatureSchema, category_label
from mlpipe.scoring import model_version, score_table
from mlpipe.validation import column_contracts

if TYPE_CHECKING:
    import lightgbm as lgb

Number = StrictInt | StrictFloat
Scalar = StrictBool | StrictInt | StrictFloat | StrictStr


@dataclass(frozen=True)
class ServedModel:
    """A model ready to score: the booster, its feature schema, its version (the model file's md5,
    as the batch stage writes it) and what /metadata shows about it."""

    booster: lgb.Booster
    schema: FeatureSchema
    version: str
    metadata: dict[str, Any] = field(default_factory=dict)


def load_served_model(model_path: str | Path, schema_path: str | Path, metadata: Mapping[str, Any] | None = None) -> ServedModel:
    """Read the LightGBM text model and its feature schema (never a pickle) and check that they
    belong together; one-line `DataError`s name the file and the fix."""
    model_path = Path(model_path)
    try:
        text = model_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"model '{model_path}' does not exist: run `dvc repro train` (or `dvc pull`) first") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read model '{model_path}': {first_line(exc)}") from None
    schema = FeatureSchema.read(schema_path)
    try:
        booster = model_from_text(text)
    except Exception as exc:  # LightGBM raises its own LightGBMError for any text it cannot parse
        raise DataError(f"'{model_path}' is not a LightGBM model ({first_line(exc)}): run `dvc repro train` or pull it again") from None
    check_model_matches_schema(booster, schema, f"'{schema_path}' does not describe '{model_path}'")
    return ServedModel(booster, schema, model_version(text), dict(metadata or {}))


def check_model_matches_schema(booster: lgb.Booster, schema: FeatureSchema, problem: str) -> None:
    """The features, their order and the categorical levels the model was trained on must be the schema's."""
    fix = "train writes both together: run `dvc repro train` or pull both files from the same revision"
    if booster.feature_name() != schema.feature_names:
        raise DataError(f"{problem}: the model's features {booster.feature_name()} are not the schema's {schema.feature_names}; {fix}")
    trained_levels = [list(map(str, levels)) for levels in (booster.pandas_categorical or [])]
    schema_levels = [list(spec.categories) for spec in schema.features if spec.kind == "categorical"]
    if trained_levels != schema_levels:
        raise DataError(f"{problem}: the model's categorical levels differ from the schema's; {fix}")


class RecordError(ValueError):
    """A field that breaks the request contract; `reason` is its label in the service's metrics."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def record_model(schema: FeatureSchema, params: Params) -> type[BaseModel]:
    """The request contract of one record, as a pydantic model (and so as OpenAPI for /docs).

    Every raw input of the model is required (null only where the data contract allows it),
    with the contract's type, bounds and allowed values; categoricals list the levels the model
    knows, and with `serve.unknown_category: reject` accept only those. Id and time columns, the
    target (for replays with labels) and declared personal columns may come along: they are
    checked, logged (personal ones protected) and never fed to the model. Anything else is refused.
    """
    contracts = column_contracts(params.data, params.validate)
    if params.data.target in contracts:  # a label may come along, or not
        contracts[params.data.target] = contracts[params.data.target].model_copy(update={"nullable": True})
    specs = {spec.name: spec for spec in schema.features}
    fields: dict[str, Any] = {}
    for name in schema.input_columns:
        fields[name] = _field(name, contracts.get(name, ColumnContract()), params, specs[name], required=True)
    optional = [*schema.meta_columns, params.data.target, *params.data.personal_columns]
    for name in dict.fromkeys(optional):
        if name not in fields:
            fields[name] = _field(name, contracts.get(name, ColumnContract()), params, None, required=False)
    config = ConfigDict(extra="forbid", title="Record", json_schema_extra={"description": "One row to score."})
    return create_model("Record", __config__=config, **fields)


def _field(name: str, contract: ColumnContract, params: Params, spec: Any, required: bool) -> tuple[Any, Any]:
    categories = spec.categories if spec is not None and spec.kind == "categorical" else ()
    numeric = spec is not None and spec.kind == "numeric" or contract.min is not None or contract.max is not None
    kind = Number if numeric else Scalar
    nullable = contract.nullable or not required
    annotation = Annotated[kind | None if nullable else kind, AfterValidator(_checker(name, contract, params, categories))]
    schema_extra: dict[str, Any] = {}
    notes = []
    if contract.min is not None:
        schema_extra["minimum"] = contract.min
    if contract.max is not None:
        schema_extra["maximum"] = contract.max
    if contract.allowed is not None:
        notes.append(f"one of {contract.allowed}")
    if categories:
        unseen = "refused" if params.serve.unknown_category == "reject" else "scored as unseen (serve.unknown_category)"
        notes.append(f"categorical: the model knows {list(categories)}; others are {unseen}")
        if params.serve.unknown_category == "reject":
            schema_extra["enum"] = list(categories)
    role = "model input" if spec is not None else _role(name, params)
    description = "; ".join([role, *notes])
    default = ... if required else None
    return annotation, Field(default, description=description, json_schema_extra=schema_extra or None)


def _role(name: str, params: Params) -> str:
    if name == params.data.target:
        return "the label, when known (logged for monitoring, not used to score)"
    if name in params.data.personal_columns:
        action = params.data.personal_columns[name]
        return f"personal data: {'dropped' if action == 'drop' else 'salted-hashed'} before anything is logged"
    return "identifies the row or its time (logged, not used to score)"


def _checker(name: str, contract: ColumnContract, params: Params, categories: tuple[str, ...]):
    integral = contract.dtype is not None and contract.dtype.lower().startswith(("int", "uint"))
    max_length = contract.max_length or params.validate.max_text_length
    reject_unknown = bool(categories) and params.serve.unknown_category == "reject"

    def check(value: Any) -> Any:
        if value is None:
            return value
        if isinstance(value, float) and not math.isfinite(value) and contract.finite:
            raise RecordError("not_finite", "must be a finite number")
        if integral and isinstance(value, float) and not value.is_integer():
            raise RecordError("not_whole", f"must be a whole number ({contract.dtype})")
        if contract.min is not None and value < contract.min:
            raise RecordError("out_of_range", f"must be at least {contract.min:g} (the data contract)")
        if contract.max is not None and value > contract.max:
            raise RecordError("out_of_range", f"must be at most {contract.max:g} (the data contract)")
        if contract.allowed is not None and category_label(value) not in {category_label(allowed) for allowed in contract.allowed}:
            raise RecordError("not_allowed", f"must be one of {contract.allowed} (the data contract)")
        if isinstance(value, str) and len(value) > max_length:
            raise RecordError("too_long", f"is longer than {max_length} characters")
        if reject_unknown and category_label(value) not in categories:
            raise RecordError("unknown_category", f"unknown category {category_label(value)!r}: the model knows {list(categories)}")
        return value

    return check


def score_records(records: list[dict[str, Any]], model: ServedModel, params: Params) -> pd.DataFrame:
    """Score validated records (the fields each one was sent with) as the batch stage scores a
    table: personal-data rules first, then `score_table`. Returns the records as they may be
    logged (personal columns protected) with the probability, predicted label and model version."""
    table = apply_personal_rules(pd.DataFrame.from_records(records), params.data, origin="the request")
    scored = score_table(table, model.booster, model.schema, params.evaluate.threshold, model.version, passthrough=())
    return pd.concat([table, scored[[PROBABILITY, PREDICTED_LABEL, MODEL_VERSION]]], axis=1)
