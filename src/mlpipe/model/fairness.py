"""The model's metrics per group of people on the test rows, with fairlearn's `MetricFrame`, and
how far the groups differ: fairlearn's demographic-parity and equalised-odds differences.

A sensitive attribute (params `fairness.groups`) is a column of the split's test rows, which keep
every column of the table, so it need not be a model feature, and a rule that makes groups of its
values: bands of a number (`bins`) or names for values (`labels`). The rows are scored with the
predict stage's `score_table`, part by part with the stage's executor; each part sends back only
its labels, predicted labels, probabilities and sensitive columns (a few narrow columns: about
15 bytes a row, 150 MB for ten million rows), which are then taken whole. fairlearn costs about
2 µs a row for each argument of each metric, so only ROC-AUC, which ranks every probability, is
given the rows; the rates and differences are given the rows counted by group, label and
predicted label, weighted by the counts (`count_cells`: the same figures, to the last bit).

A group with fewer than `fairness.min_group_rows` rows gets its counts only, and neither it nor a
group holding one class (whose true or false positive rate does not exist: fairlearn would count
it as 0) enters the differences, which compare the other groups.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from mlpipe.data.schema import PREDICTED_LABEL, PROBABILITY, FeatureSchema, category_label, value_kind
from mlpipe.engine.parts import read_part_columns, summaries
from mlpipe.errors import DataError

if TYPE_CHECKING:
    from mlpipe.config import FairnessParams, SensitiveGroups
    from mlpipe.model.calibration import Calibration

MISSING = "missing"  # the group of rows whose sensitive value is missing
RATES = ("selection_rate", "true_positive_rate", "false_positive_rate")


@dataclass(frozen=True)
class Scored:
    """The test rows as the report needs them: the 0/1 label, the 0/1 predicted label, the
    probability of the positive label, and the sensitive columns as read."""

    y: np.ndarray
    predicted: np.ndarray
    proba: np.ndarray
    columns: pd.DataFrame

    @classmethod
    def concat(cls, parts: Sequence[Scored]) -> Scored:
        return cls(
            np.concatenate([part.y for part in parts]),
            np.concatenate([part.predicted for part in parts]),
            np.concatenate([part.proba for part in parts]),
            pd.concat([part.columns for part in parts], ignore_index=True),
        )


def check_columns(parts: Sequence[Path], groups: dict[str, SensitiveGroups], shown_as: str) -> None:
    """Every sensitive column is in the test rows (`shown_as`: where, for the message), and a
    column cut into bins holds numbers: one line naming the key, before anything is scored."""
    present = pq.read_schema(parts[0]).names  # the parts of a table share one schema (`unify_parts`)
    for name, spec in groups.items():
        if spec.column not in present:
            close = difflib.get_close_matches(spec.column, present, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise DataError(
                f"fairness.groups.{name}.column: '{spec.column}' is not a column of the test rows ({shown_as}){hint}: "
                "name one of the table's columns in params.yaml, or remove the entry"
            )
    binned = sorted({spec.column for spec in groups.values() if spec.bins is not None})
    kinds = read_part_columns(parts[0], binned, "part of the test rows", "split").dtypes if binned else {}
    for name, spec in groups.items():
        if spec.bins is not None and value_kind(kinds[spec.column]) != "numbers":
            raise DataError(
                f"fairness.groups.{name}.bins: '{spec.column}' holds {value_kind(kinds[spec.column])}, not numbers: "
                "remove bins (one group per value, named by labels) or name a numeric column"
            )


def score_rows(parts: Sequence[Path], model_text: str, schema: FeatureSchema, calibration: Calibration, columns: list[str]) -> Scored:
    """The test rows scored by `score_table` (calibrated, labelled at the calibration's threshold),
    part by part, with their sensitive `columns`."""
    return Scored.concat(summaries(_score_part, parts, model_text, schema, calibration, columns, what="fairness: scores"))


def _score_part(
    table: pd.DataFrame, index: int, model_text: str, schema: FeatureSchema, calibration: Calibration, columns: list[str]
) -> Scored:
    from mlpipe.model.booster import booster_of
    from mlpipe.model.scoring import score_table

    try:
        scored = score_table(table, booster_of(model_text), schema, calibration, version="")
    except DataError as exc:
        raise DataError(f"test rows (part {index}): {exc}") from None
    return Scored(
        scored[schema.target].to_numpy(dtype=np.int8),  # the split's rows are labelled: validate refuses a missing target
        (scored[PREDICTED_LABEL] == str(schema.positive_label)).to_numpy(dtype=np.int8),
        scored[PROBABILITY].to_numpy(dtype=float),
        table[columns].reset_index(drop=True),
    )


def group_names(values: pd.Series, spec: SensitiveGroups) -> tuple[pd.Series, list[str]]:
    """(each row's group, the groups in order): bands in ascending order, or the values' names
    in the values' order; rows with a missing value are the group `missing`, last."""
    if spec.bins is not None:
        # Bands closed below: [16, 25) is 16-24; below the first edge and from the last up are open.
        edges = [-np.inf, *spec.bins, np.inf]
        codes = pd.cut(values, edges, right=False, labels=False).fillna(-1).astype(int).to_numpy()
        names = band_names(spec.bins, integral=bool(((values.dropna() % 1) == 0).all()))
    else:
        codes, uniques = pd.factorize(values, sort=True)  # one type per column: numbers in numeric order
        given = {category_label(value): name for value, name in spec.labels.items()}
        names = [given.get(category_label(value), category_label(value)) for value in uniques]
    rows = pd.Series(np.array([*names, MISSING], dtype=object)[codes], index=values.index)  # code -1 (missing) -> MISSING
    present = set(rows)
    return rows, [name for name in dict.fromkeys([*names, MISSING]) if name in present]


def band_names(edges: Sequence[float], integral: bool) -> list[str]:
    """`under 16`, `16-24`, ..., `75 and over` for whole numbers; `16 to under 25` otherwise."""
    text = [category_label(edge) for edge in edges]
    middle = []
    for low, high, low_text, high_text in zip(edges, edges[1:], text, text[1:], strict=False):
        if integral and float(low).is_integer() and float(high).is_integer():
            middle.append(low_text if high - low == 1 else f"{low_text}-{category_label(high - 1)}")
        else:
            middle.append(f"{low_text} to under {high_text}")
    return [f"under {text[0]}", *middle, f"{text[-1]} and over"]


def _roc_auc(y_true, y_pred) -> float:
    """scikit-learn's ROC-AUC of the probabilities (MetricFrame's `y_pred` here); NaN for a group
    holding one class, where it does not exist."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y_true, y_pred)) if len(np.unique(y_true)) == 2 else float("nan")


@functools.cache
def _rates() -> dict[str, Any]:
    """MetricFrame's rates by report name (fairlearn imported on first use: about a second)."""
    from fairlearn.metrics import false_positive_rate, selection_rate, true_positive_rate

    return {
        "selection_rate": selection_rate,
        # pos_label 1: fairlearn would otherwise guess it from the values, which in a group that
        # holds one class are all 0
        "true_positive_rate": functools.partial(true_positive_rate, pos_label=1),
        "false_positive_rate": functools.partial(false_positive_rate, pos_label=1),
    }


def count_cells(scored: Scored, groups: pd.Series) -> pd.DataFrame:
    """The rows counted by (group, label, predicted label), at most four cells a group, as columns
    `group`, `y`, `predicted` and `rows`. MetricFrame turns every value of every argument into a
    Python object (about 2 µs a row per argument); a rate is a ratio of counts, so fairlearn's
    rates weighted by these counts are its rates on the rows themselves, to the last bit
    (whole-number weights keep every sum exact), at a cost that does not grow with the rows."""
    frame = pd.DataFrame({"group": groups.to_numpy(), "y": scored.y, "predicted": scored.predicted})
    return frame.groupby(["group", "y", "predicted"]).size().rename("rows").reset_index()


def group_metrics(scored: Scored, groups: pd.Series, cells: pd.DataFrame) -> tuple[dict[str, Any], pd.DataFrame]:
    """(the metrics on every row, the metrics by group): rows and positives counted from the
    `cells` of `count_cells`; the rates by fairlearn's MetricFrame on the cells weighted by their
    counts; ROC-AUC by MetricFrame on the rows (it ranks every probability: nothing to count)."""
    from fairlearn.metrics import MetricFrame

    weights = {"sample_weight": cells["rows"].to_numpy()}
    rates = MetricFrame(
        metrics=_rates(),
        y_true=cells["y"].to_numpy(),
        y_pred=cells["predicted"].to_numpy(),
        sensitive_features=cells["group"],
        sample_params={rate: weights for rate in RATES},
    )
    roc_auc = MetricFrame(metrics=_roc_auc, y_true=scored.y, y_pred=scored.proba, sensitive_features=groups.rename("group"))
    counts = cells.assign(positives=cells["rows"] * cells["y"]).groupby("group")[["rows", "positives"]].sum()
    by_group = pd.concat([counts, roc_auc.by_group.rename("roc_auc"), rates.by_group], axis=1)
    overall = {"rows": len(scored.y), "positives": int(scored.y.sum()), "roc_auc": roc_auc.overall, **rates.overall}
    return overall, by_group


def group_entry(values: dict[str, Any], min_group_rows: int | None = None) -> dict[str, Any]:
    """A group's (or every row's) line of the report: counts only below `min_group_rows`; a
    rate over rows of a class the group lacks is null, not fairlearn's 0."""
    rows, positives = int(values["rows"]), int(values["positives"])
    entry: dict[str, Any] = {"rows": rows, "positives": positives}
    if min_group_rows is not None and rows < min_group_rows:
        return entry
    roc_auc = values["roc_auc"]
    return {
        **entry,
        "roc_auc": None if np.isnan(roc_auc) else roc_auc,
        "selection_rate": values["selection_rate"],
        "true_positive_rate": values["true_positive_rate"] if positives else None,
        "false_positive_rate": values["false_positive_rate"] if positives < rows else None,
    }


def differences(cells: pd.DataFrame, compared: list[str]) -> dict[str, float | None]:
    """fairlearn's demographic-parity and equalised-odds differences (largest minus smallest
    group rate) over the rows of the `compared` groups, given as the `cells` of `count_cells`
    weighted by their counts (the same figures as on the rows: see `count_cells`); null with
    fewer than two groups."""
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    if len(compared) < 2:
        return {"demographic_parity_difference": None, "equalized_odds_difference": None}
    kept = cells[cells["group"].isin(compared)]
    arguments = {
        "y_true": kept["y"].to_numpy(),
        "y_pred": kept["predicted"].to_numpy(),
        "sensitive_features": kept["group"].to_numpy(),
        "sample_weight": kept["rows"].to_numpy(),
    }
    return {
        "demographic_parity_difference": float(demographic_parity_difference(**arguments)),
        "equalized_odds_difference": float(equalized_odds_difference(**arguments)),
    }


def fairness_report(scored: Scored, groups: dict[str, SensitiveGroups], min_group_rows: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the report, the plot rows: each compared group's rates) of scored rows."""
    overall, sensitive, plot_rows = None, {}, []
    for name, spec in groups.items():
        rows, order = group_names(scored.columns[spec.column], spec)
        cells = count_cells(scored, rows)
        overall, by_group = group_metrics(scored, rows, cells)  # every frame's overall is the same: every row
        table = {group: group_entry(by_group.loc[group].to_dict(), min_group_rows) for group in order}
        compared = [group for group, entry in table.items() if entry["rows"] >= min_group_rows and 0 < entry["positives"] < entry["rows"]]
        for group, entry in table.items():
            entry["in_differences"] = group in compared
        sensitive[name] = {"column": spec.column, **differences(cells, compared), "groups": table}
        plot_rows += [
            {"attribute": name, "group": f"{name}: {group}", **{rate: table[group][rate] for rate in RATES}} for group in compared
        ]
    head = {"rows": len(scored.y), "min_group_rows": min_group_rows} | ({"overall": group_entry(overall)} if overall else {})
    return {**head, "sensitive": sensitive}, plot_rows


def assess(
    parts: Sequence[Path], model_text: str, schema: FeatureSchema, calibration: Calibration, params: FairnessParams, shown_as: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The fairness step: the report and plot rows of the model on the test rows' `parts`
    (`shown_as`: their folder, for messages). No groups: an empty report, nothing scored."""
    if not params.groups:
        return {"threshold": calibration.threshold, "min_group_rows": params.min_group_rows, "sensitive": {}}, []
    check_columns(parts, params.groups, shown_as)
    columns = sorted({spec.column for spec in params.groups.values()})
    report, plot_rows = fairness_report(score_rows(parts, model_text, schema, calibration, columns), params.groups, params.min_group_rows)
    return {"threshold": calibration.threshold, **report}, plot_rows
