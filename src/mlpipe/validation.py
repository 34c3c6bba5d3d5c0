"""Data validation: fatal checks on the table's shape, row-level checks that quarantine.

Column-level problems (a missing column, a non-binary target, a column that is mostly null)
make the whole table unusable and raise `DataError`. Row-level problems (a missing label, a
duplicate id, a value outside its declared range) move just those rows to a quarantine table
with the reason, so nothing is silently dropped.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mlpipe.config import DataParams, ValidateParams
from mlpipe.errors import DataError
from mlpipe.schema import label_matches

REASON_COLUMN = "quarantine_reason"


@dataclass(frozen=True)
class ValidationResult:
    clean: pd.DataFrame
    quarantine: pd.DataFrame
    report: dict[str, Any]


def check_columns(table: pd.DataFrame, data: DataParams, validation: ValidateParams) -> None:
    """Every column named in params must exist; suggest the closest name when it does not."""
    named = dict(data.declared_columns)
    named["validate.required_columns"] = validation.required_columns
    named["validate.ranges"] = list(validation.ranges)
    present = list(table.columns)
    for key, columns in named.items():
        for column in columns:
            if column not in table.columns:
                close = difflib.get_close_matches(column, present, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f"; the table has {len(present)} columns: {present[:12]}"
                raise DataError(f"column '{column}' named in {key} is not in the table{hint}")


def check_target(target: pd.Series, positive_label: Any) -> None:
    """The target must have exactly two non-null values, one of them the positive label."""
    values = target.dropna().unique().tolist()
    shown = sorted(values, key=str)[:10]
    if len(values) != 2:
        raise DataError(
            f"target '{target.name}' must be binary but has {len(values)} distinct values {shown}: "
            "map it to two classes or point data.target at a binary column"
        )
    if not label_matches(pd.Series(values), positive_label).any():
        raise DataError(
            f"data.positive_label {positive_label!r} is not one of the target values {shown} "
            "(quote labels such as 'yes' in YAML so they stay strings)"
        )


def validate_table(table: pd.DataFrame, data: DataParams, validation: ValidateParams) -> ValidationResult:
    check_columns(table, data, validation)
    check_target(table[data.target], data.positive_label)

    null_share = table.isna().mean()
    too_null = null_share[null_share > validation.max_null_share]
    if not too_null.empty:
        column, share = too_null.index[0], float(too_null.iloc[0])
        raise DataError(
            f"column '{column}' is {share:.1%} null, above validate.max_null_share={validation.max_null_share}: "
            "fix the source, add the column to data.drop_columns, or raise the limit"
        )

    row_checks = _row_checks(table, data, validation)
    failures = pd.DataFrame(row_checks, index=table.index)
    bad = failures.any(axis=1)
    flagged = failures[bad]
    reasons = pd.Series(["; ".join(failures.columns[row]) for row in flagged.to_numpy()], index=flagged.index, dtype=object)

    bad_share = float(bad.mean())
    report = {
        "rows_in": len(table),
        "rows_out": int((~bad).sum()),
        "rows_quarantined": int(bad.sum()),
        "bad_row_share": bad_share,
        "quarantined_by_reason": {reason: int(failed.sum()) for reason, failed in row_checks.items()},
        "null_share": {column: float(share) for column, share in null_share.items() if share > 0},
    }
    if bad_share > validation.max_bad_row_share:
        worst = max(report["quarantined_by_reason"].items(), key=lambda item: item[1])[0]
        raise DataError(
            f"{bad_share:.2%} of rows fail validation (most: {worst}), above "
            f"validate.max_bad_row_share={validation.max_bad_row_share}: fix the source or raise the limit"
        )
    quarantine = table[bad].assign(**{REASON_COLUMN: reasons})
    return ValidationResult(table[~bad].reset_index(drop=True), quarantine.reset_index(drop=True), report)


def _row_checks(table: pd.DataFrame, data: DataParams, validation: ValidateParams) -> dict[str, pd.Series]:
    checks = {"missing_target": table[data.target].isna()}
    if data.time_column:
        checks["missing_time"] = table[data.time_column].isna()
    if data.id_columns:
        checks["duplicate_id"] = table.duplicated(subset=data.id_columns, keep="first")
    for column, bounds in validation.ranges.items():
        values = pd.to_numeric(table[column], errors="coerce")
        outside = pd.Series(False, index=table.index)
        if bounds.min is not None:
            outside |= values < bounds.min
        if bounds.max is not None:
            outside |= values > bounds.max
        # A non-numeric value in a ranged column is out of range too, not silently ignored.
        outside |= values.isna() & table[column].notna()
        checks[f"out_of_range:{column}"] = outside
    return checks
