"""Feature engineering: derive columns, fix categorical levels on the training period, encode.

`build_schema` learns everything from the training table only; `make_features` applies it
identically to training, test, batch-scoring and serving inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlpipe.config import DataParams, FeaturesParams
from mlpipe.data.expressions import check_derived
from mlpipe.data.schema import OTHER_LEVEL, FeatureSchema, FeatureSpec, category_strings, label_matches, to_levels
from mlpipe.engine.parts import map_parts, merged_counts, part_files, sample_part, staged, summaries
from mlpipe.errors import ConfigError, DataError, first_line

log = logging.getLogger(__name__)


def add_derived(table: pd.DataFrame, derived: dict[str, str], key: str = "features.derived") -> pd.DataFrame:
    """Add each `name: expression` column (see `mlpipe.data.expressions`) in declaration order, so a
    later expression may use an earlier one."""
    if not derived:
        return table
    table = table.copy()
    for name, expression in check_derived(derived, key).items():
        missing = [column for column in expression.columns if column not in table.columns]
        if missing:
            raise ConfigError(f"{key}.{name}: '{expression.text}' uses column(s) {missing} that the table does not have")
        try:
            values = expression.evaluate(table)
        except (TypeError, ValueError) as exc:  # e.g. arithmetic on text
            raise ConfigError(f"{key}.{name}: cannot evaluate '{expression.text}': {first_line(exc)}") from None
        if np.ndim(values) == 0:
            raise ConfigError(f"{key}.{name}: '{expression.text}' gives one constant, not a value per row: use a column")
        table[name] = values
        if not pd.api.types.is_numeric_dtype(table[name]) and not pd.api.types.is_bool_dtype(table[name]):
            raise ConfigError(f"{key}.{name}: '{expression.text}' must give a number or a boolean per row")
    return table


def check_feature_name(name: str) -> None:
    """Any name with a visible character is a feature name: one LightGBM cannot store (`a:b`) is
    given to it under another name, at that boundary only (`model.lightgbm_names`)."""
    if not str(name).strip():
        raise DataError("a column without a name cannot be a model feature: name it in the source or drop it")


def is_inferred_categorical(values: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)


def build_schema(
    train: pd.DataFrame,
    data: DataParams,
    features: FeaturesParams,
    level_counts: Mapping[str, pd.Series] | None = None,
    labels: list | None = None,
    contents: Mapping[str, Contents] | None = None,
) -> FeatureSchema:
    """Decide the feature list, kinds and category levels from the training table.

    A column with no usable value in the training rows, or one value in every row, teaches the
    model nothing and would only reach drift as a false alarm: it is dropped with a warning and
    recorded in the schema's `dropped`, so that train, predict and the service agree.

    The dask engine passes a sample of the training table (for the columns and their dtypes),
    with the whole table's `level_counts` (`category_counts`, summed over its partitions), target
    `labels` and column `contents` (`column_contents`, merged over its partitions)."""
    table = add_derived(train, features.derived)
    names, categorical = _feature_columns(table, data)
    for name in names:
        check_feature_name(name)
    if not names:
        raise ConfigError(
            "no feature columns left after removing data.target, data.id_columns, data.time_column and data.drop_columns: "
            "take a column known at prediction time out of data.drop_columns (or data.id_columns) in params.yaml"
        )
    for name in names:
        if name not in categorical and not pd.api.types.is_numeric_dtype(table[name]):
            present = table[name].dropna()
            text = present[pd.to_numeric(present, errors="coerce").isna()]  # the values that make it text, not numbers
            raise DataError(
                f"column '{name}' holds text ({(text if len(text) else present).iloc[:3].tolist()}) but is not in "
                "data.categorical_columns: add it there or to data.drop_columns"
            )
    contents = column_contents(table, names, categorical) if contents is None else contents
    dropped = {name: why for name in names if (why := contents[name].useless())}
    for name, why in dropped.items():
        log.warning("feature %s dropped: %s", name, why)
    if len(dropped) == len(names):
        raise DataError(
            f"no usable feature: every feature column is empty or constant in the training rows ({', '.join(dropped)}): "
            "check the source and data.drop_columns"
        )
    specs = []
    for name in (name for name in names if name not in dropped):
        values = table[name]
        if name in categorical:
            counts = level_counts[name] if level_counts is not None else category_counts(table, [name])[name]
            specs.append(FeatureSpec(name, "categorical", str(values.dtype), _levels(name, counts, features.max_categories)))
        else:
            specs.append(FeatureSpec(name, "numeric", str(values.dtype)))
    labels = train[data.target].dropna().unique().tolist() if labels is None else labels
    positives = label_matches(pd.Series(labels), data.positive_label)
    negative = next(label for label, positive in zip(labels, positives, strict=True) if not positive)
    positive = next(label for label, positive in zip(labels, positives, strict=True) if positive)
    return FeatureSchema(
        target=data.target,
        positive_label=_plain(positive),
        negative_label=_plain(negative),
        features=tuple(specs),
        time_column=data.time_column,
        id_columns=tuple(data.id_columns),
        derived=dict(features.derived),
        dropped=dropped,
    )


@dataclass(frozen=True)
class Contents:
    """What decides whether a column can teach the model anything: up to two of its distinct usable
    values (present, and finite for numbers), and whether some row has none. The dask engine merges
    the contents of the parts (`Contents.merge`)."""

    values: tuple = ()
    missing: bool = False

    @classmethod
    def of(cls, values: pd.Series, categorical: bool) -> Contents:
        if categorical:
            strings = category_strings(values)
            return cls(tuple(strings.cat.categories[:2]), bool(strings.isna().any()))
        numbers = pd.to_numeric(values).to_numpy(dtype=float, na_value=np.nan)
        finite = numbers[np.isfinite(numbers)]
        return cls(tuple(pd.unique(finite)[:2].tolist()), len(finite) < len(numbers))

    @classmethod
    def merge(cls, parts: list[Contents]) -> Contents:
        return cls(tuple(dict.fromkeys(value for part in parts for value in part.values))[:2], any(part.missing for part in parts))

    def useless(self) -> str | None:
        """Why the column is no feature (None when it is one). One value beside missing rows stays:
        whether a value is there can carry information."""
        if not self.values:
            return "no usable value in the training rows (all missing or not finite)"
        if len(self.values) == 1 and not self.missing:
            return f"the same value ({self.values[0]!r}) in every training row"
        return None


def column_contents(table: pd.DataFrame, names: list[str], categorical: set[str]) -> dict[str, Contents]:
    return {name: Contents.of(table[name], name in categorical) for name in names}


def _feature_columns(table: pd.DataFrame, data: DataParams) -> tuple[list[str], set[str]]:
    """The feature columns of a table (derived columns added), and which of them are categorical."""
    excluded = {data.target, *data.id_columns, *data.drop_columns, *([data.time_column] if data.time_column else [])}
    names = [column for column in table.columns if column not in excluded]
    if data.categorical_columns is None:
        return names, {name for name in names if is_inferred_categorical(table[name])}
    return names, set(data.categorical_columns) - set(data.drop_columns)


def category_counts(table: pd.DataFrame, names: list[str]) -> dict[str, pd.Series]:
    """Rows per level (as text) of each column; counts of several tables add up (`Series.add`)."""
    counts = {}
    for name in names:
        found = category_strings(table[name]).value_counts()
        counts[name] = pd.Series(found.to_numpy(), index=found.index.astype(object), name=name)
    return counts


def _levels(name: str, counts: pd.Series, max_categories: int) -> tuple[str, ...]:
    counts = counts[counts > 0]
    if len(counts) > max_categories:
        # Keep the most frequent levels (ties broken by name, for determinism); the rest share one level.
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        kept = [level for level, _ in ranked[: max_categories - 1]]
        log.info(
            "feature %s: %d levels, keeping the %d most frequent and mapping the rest to %s",
            name,
            len(counts),
            len(kept),
            OTHER_LEVEL,
        )
        return tuple(sorted(kept)) + (OTHER_LEVEL,)
    return tuple(sorted(counts.index))


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def make_features(table: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """Model input in schema order: numeric as float64, categoricals with the training levels.

    A level never seen in training becomes the shared "other" level when the schema has one,
    otherwise missing (LightGBM sends missing values down the learned default branch).
    """
    missing = [name for name in schema.input_columns if name not in table.columns]
    if missing:
        raise DataError(f"input is missing feature column(s) {missing} required by the model's feature schema")
    table = add_derived(table, schema.derived, key="the model schema's derived")
    columns = {}
    for spec in schema.features:
        values = table[spec.name]
        if spec.kind == "numeric":
            numbers = pd.to_numeric(values, errors="coerce")
            not_numeric = numbers.isna() & values.notna()
            if not_numeric.any():
                position = int(not_numeric.to_numpy().argmax())
                raise DataError(
                    f"feature '{spec.name}' must be numeric but row {position + 1:,} holds {values.iloc[position]!r} "
                    f"({int(not_numeric.sum()):,} rows in all)"
                )
            columns[spec.name] = numbers.astype("float64")
        else:
            columns[spec.name] = to_levels(category_strings(values), spec.categories)
    return pd.DataFrame(columns, index=table.index)


def unseen_levels(table: pd.DataFrame, schema: FeatureSchema) -> dict[str, int]:
    """Count rows per categorical feature whose level the model never saw in training."""
    counts = {}
    for spec in schema.features:
        if spec.kind == "categorical" and spec.name in table.columns:
            strings = category_strings(table[spec.name])
            unseen = int(strings.notna().sum() - strings.isin(spec.categories).sum())
            if unseen:
                counts[spec.name] = unseen
    return counts


def encode_target(values: pd.Series, schema: FeatureSchema) -> pd.Series:
    """1 for the positive label, 0 for the other; the column keeps the target's name."""
    return label_matches(values, schema.positive_label).astype("int8").rename(schema.target)


def feature_table(table: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """Features, the 0/1 target and the meta columns, ready to write for training or evaluation."""
    return pd.concat(
        [make_features(table, schema), encode_target(table[schema.target], schema), table[schema.meta_columns]],
        axis=1,
    )


def featurize_parts(
    train: Path, test: Path, train_out: Path, test_out: Path, data: DataParams, features: FeaturesParams
) -> tuple[FeatureSchema, dict[str, int]]:
    """`build_schema` from the training parts' merged level counts and target labels (the same
    schema as the local engine's), then `feature_table` on every part of both sets. Returns the
    schema and, per categorical feature, the test rows with a level unseen in training."""
    train_parts, test_parts = part_files(train), part_files(test)
    sample = sample_part(train_parts)
    names, categorical = _feature_columns(add_derived(sample, features.derived), data)
    found = summaries(_level_summary, train_parts, names, categorical, data.target, features, what="featurize: levels")
    labels = pd.unique(np.concatenate([summary["labels"] for summary in found])).tolist()
    contents = {name: Contents.merge([summary["contents"][name] for summary in found]) for name in names}
    counts = merged_counts([summary["counts"] for summary in found])
    learned = build_schema(sample, data, features, level_counts=counts, labels=labels, contents=contents)
    with staged(train_out, test_out) as (train_folder, test_folder):
        map_parts(_feature_part, train_parts, [train_folder], learned, what="featurize: training set")
        unseen = map_parts(_feature_part, test_parts, [test_folder], learned, what="featurize: test set")
    totals: dict[str, int] = {}
    for counts in unseen:
        for column, rows in counts.items():
            totals[column] = totals.get(column, 0) + rows
    return learned, totals


def _level_summary(
    table: pd.DataFrame, index: int, names: list[str], categorical: set[str], target: str, features: FeaturesParams
) -> dict[str, Any]:
    table = add_derived(table, features.derived)
    return {
        "counts": category_counts(table, [name for name in names if name in categorical]),
        "labels": table[target].dropna().unique(),
        "contents": column_contents(
            table, [name for name in names if name in categorical or pd.api.types.is_numeric_dtype(table[name])], categorical
        ),
    }


def _feature_part(table: pd.DataFrame, index: int, learned: FeatureSchema):
    return (feature_table(table, learned),), unseen_levels(table, learned)
