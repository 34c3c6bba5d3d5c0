"""Feature engineering: derive columns, fix categorical levels on the training period, encode.

`learn_schema` learns everything from the training parts only, from per-part summaries merged
exactly (`build_schema` is its one-part case, on a table); `make_features` applies it identically
to training, test, batch-scoring and serving inputs. `featurize` is the stage's step.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlpipe.config import DataParams, FeaturesParams
from mlpipe.data.expressions import check_derived
from mlpipe.data.schema import OTHER_LEVEL, FeatureSchema, FeatureSpec, category_strings, label_matches, to_levels
from mlpipe.engine.parts import describe_parts, map_parts, merged_counts, parts_checked, sample_part, staged, summaries
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


def build_schema(train: pd.DataFrame, data: DataParams, features: FeaturesParams) -> FeatureSchema:
    """The feature schema of one training table: the one-part case of `learn_schema` (the same
    plan, part summary and merge)."""
    plan = _Plan.of(train, data, features)
    return plan.schema([schema_summary(train, 0, plan)])


def learn_schema(parts: Sequence[Path], data: DataParams, features: FeaturesParams) -> FeatureSchema:
    """The feature list, kinds and category levels, learned from the training parts: the columns
    and their dtypes from the first rows (every part has the same schema), the levels, labels and
    contents from per-part summaries merged exactly (`_Plan.schema`)."""
    plan = _Plan.of(sample_part(parts), data, features)
    return plan.schema(summaries(schema_summary, parts, plan, what="featurize: levels"))


@dataclass(frozen=True)
class _Plan:
    """What a schema is learned from, decided on the first training rows (derived columns added):
    the feature columns, their dtypes, and which of them are categorical."""

    names: list[str]
    dtypes: dict[str, str]
    categorical: set[str]
    data: DataParams
    features: FeaturesParams

    @classmethod
    def of(cls, sample: pd.DataFrame, data: DataParams, features: FeaturesParams) -> _Plan:
        table = add_derived(sample, features.derived)
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
        return cls(names, {name: str(table[name].dtype) for name in names}, categorical, data, features)

    def schema(self, found: list[dict[str, Any]]) -> FeatureSchema:
        """The schema from every part's summary, merged (in part order).

        A column with no usable value in the training rows, or one value in every row, teaches the
        model nothing and would only reach drift as a false alarm: it is dropped with a warning and
        recorded in the schema's `dropped`, so that train, predict and the service agree."""
        contents = {name: Contents.merge([summary["contents"][name] for summary in found]) for name in self.names}
        dropped = {name: why for name in self.names if (why := contents[name].useless())}
        for name, why in dropped.items():
            log.warning("feature %s dropped: %s", name, why)
        if len(dropped) == len(self.names):
            raise DataError(
                f"no usable feature: every feature column is empty or constant in the training rows ({', '.join(dropped)}): "
                "check the source and data.drop_columns"
            )
        counts = merged_counts([summary["counts"] for summary in found])
        specs = []
        for name in (name for name in self.names if name not in dropped):
            if name in self.categorical:
                specs.append(FeatureSpec(name, "categorical", self.dtypes[name], _levels(name, counts[name], self.features.max_categories)))
            else:
                specs.append(FeatureSpec(name, "numeric", self.dtypes[name]))
        labels = pd.unique(np.concatenate([summary["labels"] for summary in found])).tolist()
        positives = label_matches(pd.Series(labels), self.data.positive_label)
        negative = next(label for label, positive in zip(labels, positives, strict=True) if not positive)
        positive = next(label for label, positive in zip(labels, positives, strict=True) if positive)
        return FeatureSchema(
            target=self.data.target,
            positive_label=_plain(positive),
            negative_label=_plain(negative),
            features=tuple(specs),
            time_column=self.data.time_column,
            id_columns=tuple(self.data.id_columns),
            derived=dict(self.features.derived),
            dropped=dropped,
        )


def schema_summary(table: pd.DataFrame, index: int, plan: _Plan) -> dict[str, Any]:
    """One training part's level counts, target labels (in order of appearance) and column contents."""
    table = add_derived(table, plan.features.derived)
    return {
        "counts": category_counts(table, [name for name in plan.names if name in plan.categorical]),
        "labels": table[plan.data.target].dropna().unique(),
        "contents": column_contents(table, plan.names, plan.categorical),
    }


@dataclass(frozen=True)
class Contents:
    """What decides whether a column can teach the model anything: up to two of its distinct usable
    values (present, and finite for numbers), and whether some row has none, merged over the
    training parts (`Contents.merge`)."""

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


def featurize(
    train: Path, test: Path, train_out: Path, test_out: Path, data: DataParams, features: FeaturesParams
) -> tuple[FeatureSchema, dict[str, int]]:
    """The featurize step, folder of parts in, folders of parts out: the schema learned from the
    training parts (`learn_schema`), then `feature_table` on every part of both sets, each written
    under its part's name. Returns the schema and, per categorical feature, the test rows with a
    level unseen in training."""
    train_parts, test_parts = parts_checked(train, "the training set", "split"), parts_checked(test, "the test set", "split")
    log.info("training set: %s; test set: %s", describe_parts(train_parts), describe_parts(test_parts))
    learned = learn_schema(train_parts, data, features)
    with staged(train_out, test_out) as (train_folder, test_folder):
        map_parts(_feature_part, train_parts, [train_folder], learned, what="featurize: training set")
        unseen = map_parts(_feature_part, test_parts, [test_folder], learned, what="featurize: test set")
    totals: dict[str, int] = {}
    for counts in unseen:
        for column, rows in counts.items():
            totals[column] = totals.get(column, 0) + rows
    return learned, totals


def _feature_part(table: pd.DataFrame, index: int, learned: FeatureSchema):
    return (feature_table(table, learned),), unseen_levels(table, learned)
