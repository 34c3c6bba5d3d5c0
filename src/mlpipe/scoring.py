"""Scoring any table that matches a model's feature schema: the batch `predict` stage, the
serving API and a distributed runner all call `score_table`."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mlpipe.features import encode_target, make_features
from mlpipe.model import predict_proba
from mlpipe.schema import MODEL_VERSION, PREDICTED_LABEL, PROBABILITY, FeatureSchema
from mlpipe.sources import BATCH_COLUMN

if TYPE_CHECKING:
    import lightgbm as lgb


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
