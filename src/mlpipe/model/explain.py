"""Explanations from the model itself: LightGBM's own TreeSHAP (`predict(pred_contrib=True)`), exact
for a tree ensemble, with no other package.

Each row gets a contribution per feature to its raw score (log-odds, before calibration) and the
base value, the model's expected raw score: a row's contributions and the base value add up to
`booster.predict(raw_score=True)`. The rows are prepared exactly as for its probability
(`booster.model_input`), so an unseen category is explained as it is scored.

TreeSHAP costs over 100 times the plain prediction (docs/trust.md#explanations): the global
importance averages a bounded number of evenly spaced test rows (`explained_positions`), and
per-record explanations are asked for (`explain.*` for the predict stage, `?explain=true` in the
service).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlpipe.data.schema import FeatureSchema
from mlpipe.model.booster import feature_importance, model_input

if TYPE_CHECKING:
    import lightgbm as lgb

BASE_VALUE = "contribution_base_value"  # the batch column of the base value


def contributions(booster: lgb.Booster, features: pd.DataFrame, schema: FeatureSchema, threads: int = 0) -> np.ndarray:
    """(rows, features + 1): each row's contribution of every feature, in schema order, to its raw
    score, then the base value. `features` as `predict_proba` takes them."""
    if len(features) == 0:  # LightGBM refuses an empty table
        return np.zeros((0, len(schema.feature_names) + 1))
    return rows_contributions(booster, model_input(features, schema), threads)


def rows_contributions(booster: lgb.Booster, rows: Any, threads: int = 0) -> np.ndarray:
    """`contributions` of rows already in the model's input form (a `model_input` frame, or the
    service's encoded matrix)."""
    return booster.predict(rows, pred_contrib=True, num_threads=threads)


def top_contributions(contrib: np.ndarray, names: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(feature names, contributions), each (rows, min(k, features)): per row the k features of
    largest |contribution|, largest first; equal ones in feature order (a stable sort), so the
    same rows always give the same columns."""
    order = np.argsort(-np.abs(contrib[:, : len(names)]), axis=1, kind="stable")[:, : min(k, len(names))]
    return np.asarray(names, dtype=object)[order], np.take_along_axis(contrib, order, axis=1)


def contribution_columns(contrib: np.ndarray, names: Sequence[str], k: int, index: pd.Index) -> pd.DataFrame:
    """The batch predictions' explanation columns: contribution_1_feature, contribution_1_value, ...
    (the top k, largest |contribution| first), then the base value."""
    top_names, top_values = top_contributions(contrib, names, k)
    columns: dict[str, Any] = {}
    for rank in range(top_names.shape[1]):
        columns[f"contribution_{rank + 1}_feature"] = top_names[:, rank]
        columns[f"contribution_{rank + 1}_value"] = top_values[:, rank]
    columns[BASE_VALUE] = contrib[:, -1]
    return pd.DataFrame(columns, index=index)


def explanations(contrib: np.ndarray, names: Sequence[str], k: int) -> list[dict[str, Any]]:
    """The service's explanation of each row: its top k as [{"feature", "contribution"}] and the base value."""
    top_names, top_values = top_contributions(contrib, names, k)
    return [
        {
            "base_value": base,
            "contributions": [{"feature": name, "contribution": value} for name, value in zip(row_names, row_values, strict=True)],
        }
        for base, row_names, row_values in zip(contrib[:, -1].tolist(), top_names.tolist(), top_values.tolist(), strict=True)
    ]


@dataclass
class ContributionSums:
    """Explained rows and each feature's sum of |contribution| over them: sums that merge by
    addition, so the mean over a table's parts is the mean over the whole table."""

    rows: int
    absolute: np.ndarray  # per feature, schema order

    @classmethod
    def of(cls, contrib: np.ndarray) -> ContributionSums:
        return cls(len(contrib), np.abs(contrib[:, :-1]).sum(axis=0))

    def __add__(self, other: ContributionSums) -> ContributionSums:
        return ContributionSums(self.rows + other.rows, self.absolute + other.absolute)

    def means(self) -> np.ndarray:
        return self.absolute / max(self.rows, 1)


def explained_positions(total: int, most: int | None) -> np.ndarray:
    """The positions, in a table of `total` rows, of the rows the global importance explains:
    all of them, or `most` evenly spaced (every total/most-th row, so every period of a table in
    time order is in). Integers only: the same positions on any machine and any layout of parts."""
    if most is None or most >= total:
        return np.arange(total, dtype=np.int64)
    return np.arange(most, dtype=np.int64) * total // most


def importance_table(booster: lgb.Booster, names: Sequence[str], sums: ContributionSums) -> pd.DataFrame:
    """`booster.feature_importance` (gain, splits, gain share) with each feature's mean
    |contribution| over the explained rows and its share of their total, so the two compare."""
    table = feature_importance(booster, names)
    means = dict(zip(names, sums.means().tolist(), strict=True))
    table["mean_abs_contribution"] = table["feature"].map(means)
    table["contribution_share"] = table["mean_abs_contribution"] / max(table["mean_abs_contribution"].sum(), 1e-12)
    return table
