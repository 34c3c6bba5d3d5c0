"""The feature schema: the contract between feature engineering, training and serving.

It records column order, kinds, dtypes, category levels, derived-feature expressions and the
target's labels, and round-trips through JSON so the model file never travels without it.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from mlpipe.errors import first_line
from mlpipe.io import corrupt_artifact, read_pipeline_text

OTHER_LEVEL = "__other__"
# Columns a scored table adds to its inputs (see scoring.score_table).
PROBABILITY = "probability"
PREDICTED_LABEL = "predicted_label"
MODEL_VERSION = "model_version"


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    kind: Literal["numeric", "categorical"]
    dtype: str
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeatureSchema:
    target: str
    positive_label: Any
    negative_label: Any
    features: tuple[FeatureSpec, ...]
    time_column: str | None = None
    id_columns: tuple[str, ...] = ()
    derived: dict[str, str] = field(default_factory=dict)
    # Columns featurize left out because they cannot teach the model anything, with the reason
    # (all missing or one value in the training rows): never features, never monitored for drift.
    dropped: dict[str, str] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return [spec.name for spec in self.features]

    @property
    def categorical_names(self) -> list[str]:
        return [spec.name for spec in self.features if spec.kind == "categorical"]

    @property
    def meta_columns(self) -> list[str]:
        """Columns carried next to the features for reporting, never fed to the model."""
        return [*self.id_columns, *([self.time_column] if self.time_column else [])]

    @property
    def input_columns(self) -> list[str]:
        """Raw columns a caller must supply to score a row (derived features are computed)."""
        return [name for name in self.feature_names if name not in self.derived]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def read(cls, path: str | Path, stage: str = "train") -> FeatureSchema:
        """The schema in `path`, which `stage` writes (train writes the model's; featurize the one train reads)."""
        return cls.from_json(read_pipeline_text(path, "feature schema", stage), origin=str(path), stage=stage)

    @classmethod
    def from_json(cls, text: str, origin: str = "the feature schema", stage: str = "train") -> FeatureSchema:
        """Parse and check a schema. Its derived expressions are checked against the grammar before
        anything can evaluate them: a schema may come from a remote, and must not carry code. A
        text that is not a schema (truncated, say) is an `ArtifactError` naming `stage` to rebuild it."""
        try:
            raw = json.loads(text)
            if not isinstance(raw.get("derived", {}), dict):
                raise TypeError("derived must map names to expressions")
            raw["features"] = tuple(FeatureSpec(**{**spec, "categories": tuple(spec["categories"])}) for spec in raw["features"])
            raw["id_columns"] = tuple(raw["id_columns"])
            schema = cls(**raw)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise corrupt_artifact(
                "feature schema", origin, stage, f"not a feature schema written by this pipeline: {first_line(exc)}"
            ) from None
        from mlpipe.data.expressions import check_derived

        check_derived(schema.derived, f"{origin}: derived")
        return schema


def label_matches(values: pd.Series, label: Any) -> pd.Series:
    """Compare target values with a label from YAML, tolerating 1 vs 1.0 vs '1'."""
    if pd.api.types.is_numeric_dtype(values) and isinstance(label, (int, float)) and not isinstance(label, bool):
        return values == label
    if pd.api.types.is_bool_dtype(values) and isinstance(label, bool):
        return values == label
    return values.astype(str) == str(label)


def category_strings(values: pd.Series) -> pd.Series:
    """The values as a categorical of string labels, so that 3, 3.0 and '3' are one level.

    Works on the distinct values only (factorize, then label each once), which keeps it fast
    on millions of rows.
    """
    codes, uniques = pd.factorize(values, sort=False)
    if values.dtype == object and any(isinstance(value, (bool, np.bool_, numbers.Number)) and value in (0, 1) for value in uniques):
        # factorize takes True for 1 and False for 0, as `==` does, but they are other labels: a
        # column that may mix them is labelled value by value first.
        codes, uniques = pd.factorize(values.map(category_label, na_action="ignore"), sort=False)
    labels = [category_label(value) for value in uniques]
    distinct = sorted(set(labels))
    position = {label: i for i, label in enumerate(distinct)}
    remap = np.array([position[label] for label in labels] + [-1], dtype=np.int64)  # code -1 (missing) stays -1
    return pd.Series(pd.Categorical.from_codes(remap[codes], categories=distinct), index=values.index, name=values.name)


def category_texts(values: pd.Series) -> pd.Series:
    """The values as text labels (3, 3.0 and '3' are all '3'), missing ones None: a column read
    as text where files disagree on its type (`mlpipe.data.sources.concat_batches`)."""
    return category_strings(values).astype(object).where(values.notna(), None)


def value_kind(dtype: Any) -> str:
    """What a column's dtype (pandas', or Arrow's `to_pandas_dtype()`) holds, as files that give one
    column different types are told apart: booleans, numbers, dates or text."""
    if pd.api.types.is_bool_dtype(dtype):
        return "booleans"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numbers"
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return "dates"
    return "text"


def mixed_types_warning(mixed: dict[str, dict[str, str]]) -> str:
    """One line for {column: {kind: first file holding it}}: the columns read as text."""
    columns = "; ".join(
        f"'{column}' ({', '.join(f'{kind} in {name!r}' for kind, name in found.items())})" for column, found in mixed.items()
    )
    return f"the batches disagree on the type of {columns}: read as text"


def to_levels(strings: pd.Series, levels: tuple[str, ...]) -> pd.Categorical:
    """Re-code string categories onto fixed levels; unknown ones go to the "other" level if
    there is one, else become missing."""
    index = {level: i for i, level in enumerate(levels)}
    fallback = index.get(OTHER_LEVEL, -1)
    remap = np.array([index.get(label, fallback) for label in strings.cat.categories] + [-1], dtype=np.int64)
    return pd.Categorical.from_codes(remap[strings.cat.codes.to_numpy()], categories=list(levels))


def category_label(value: Any) -> str:
    """A value as the categorical level it is: 3, 3.0 and '3' are all '3'; True is 'True'."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)
