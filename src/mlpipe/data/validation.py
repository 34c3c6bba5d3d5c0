"""Data validation: the data contract in `validate.*`, enforced with pandera.

Three outcomes, in order:
- The table as a whole breaks the contract (a column named in params is missing, the target is
  not binary, a column is more null than allowed, the row count is out of bounds): `DataError`,
  one line, the stage fails. Nothing downstream could be trusted.
- Rows break row rules (a value that cannot take the declared dtype, lies outside min/max, is
  not an allowed category, is null where the contract forbids it, or repeats a unique key): those
  rows move to the quarantine table with the name of every rule they broke. Nothing is dropped
  silently; every rule's failure count is reported, zeros included, so a diff shows new problems.
- Too many rows quarantined (`validate.max_bad_row_share`): `DataError`.

Besides the declared contract, data.* implies rules of its own: the target and the time column
are never null, and the id columns are unique.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlpipe.config import ColumnContract, DataParams, ValidateParams
from mlpipe.data.schema import category_label, category_strings, label_matches
from mlpipe.data.times import time_values
from mlpipe.engine.parts import (
    map_parts,
    offsets,
    parts_checked,
    read_columns,
    repeated_positions,
    row_keys,
    sample_part,
    staged,
    summaries,
)
from mlpipe.errors import DataError

REASON_COLUMN = "quarantine_reason"


@dataclass(frozen=True)
class ValidationResult:
    clean: pd.DataFrame
    quarantine: pd.DataFrame
    report: dict[str, Any]


def check_columns(table: pd.DataFrame, data: DataParams, validation: ValidateParams) -> None:
    """Every column named in params must exist; suggest the closest name when it does not."""
    named = dict(data.declared_columns)
    named["validate.columns"] = list(validation.columns)
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


def column_contracts(data: DataParams, validation: ValidateParams) -> dict[str, ColumnContract]:
    """The declared per-column contract, tightened by what data.* implies."""
    contracts = dict(validation.columns)

    def tighten(column: str, **rules: Any) -> None:
        contracts[column] = contracts.get(column, ColumnContract()).model_copy(update=rules)

    tighten(data.target, nullable=False)
    if data.time_column:
        tighten(data.time_column, nullable=False)
    if len(data.id_columns) == 1:
        tighten(data.id_columns[0], unique=True)
    return contracts


def arriving_row_contracts(data: DataParams, validation: ValidateParams) -> dict[str, ColumnContract]:
    """The contract for rows that arrive after training (batches, requests): as declared, except
    that the label may be missing."""
    contracts = column_contracts(data, validation)
    if data.target in contracts:
        contracts[data.target] = contracts[data.target].model_copy(update={"nullable": True})
    return contracts


def parses_time_column(data: DataParams, contracts: dict[str, ColumnContract]) -> bool:
    """Whether validate reads the time column as times, here where its rows are still the source's
    (a value that does not parse is named with its row in the source, before the split meets it).
    A declared dtype casts it row by row instead, quarantining the values that cannot take it."""
    return bool(data.time_column) and contracts[data.time_column].dtype is None


def check_bad_row_share(report: dict[str, Any], validation: ValidateParams) -> None:
    if report["bad_row_share"] > validation.max_bad_row_share:
        raise DataError(
            f"{report['bad_row_share']:.2%} of rows fail validation (most: {worst_rule(report)}), above "
            f"validate.max_bad_row_share={validation.max_bad_row_share}: fix the source or raise the limit"
        )


def validate_rows(table: pd.DataFrame, data: DataParams, validation: ValidateParams) -> ValidationResult:
    """The contract's row rules on rows that arrive after training (batches to score, requests).

    Whole-table rules do not apply: a batch may be small, unlabelled (the target may be missing),
    or lack columns the model does not read. A high share of bad rows is reported, not fatal:
    monitoring must go on and say so (see `monitoring.quality_reasons`).
    """
    contracts = {column: contract for column, contract in arriving_row_contracts(data, validation).items() if column in table.columns}
    id_columns = [column for column in data.id_columns if column in table.columns]
    return quarantine_rows(table, contracts, id_columns, validation.max_text_length, unchecked=data.drop_columns)


def quarantine_rows(
    table: pd.DataFrame,
    contracts: dict[str, ColumnContract],
    id_columns: list[str],
    max_text_length: int,
    known_failures: dict[str, pd.Series] | None = None,
    unchecked: Collection[str] = (),
) -> ValidationResult:
    """Rows that pass every row rule (cast to the declared dtypes), rows that break one with the
    names of the rules they broke, and the counts per rule. `known_failures` adds rules decided
    elsewhere ({rule: which rows break it}), such as ids repeated in another partition; the
    `unchecked` columns (data.drop_columns) get only the rules declared for them."""
    coerced, coercion_failures = coerce_dtypes(table, contracts)
    row_failures = {
        **coercion_failures,
        **row_rule_failures(coerced, contracts, id_columns, max_text_length, unchecked),
        **(known_failures or {}),
    }
    failed = pd.DataFrame({rule: rows.reindex(table.index, fill_value=False) for rule, rows in row_failures.items()}, index=table.index)
    bad = failed.any(axis=1)
    reasons = pd.Series(["; ".join(failed.columns[row]) for row in failed[bad].to_numpy()], index=table.index[bad], dtype=object)
    report = {
        "rows_in": len(table),
        "rows_out": int((~bad).sum()),
        "rows_quarantined": int(bad.sum()),
        "bad_row_share": float(bad.mean()) if len(table) else 0.0,
        "failures_by_rule": {rule: int(rows.sum()) for rule, rows in failed.items()},
    }
    quarantine = table[bad].assign(**{REASON_COLUMN: reasons})
    clean = coerced.loc[~bad[coerced.index]]
    return ValidationResult(clean.reset_index(drop=True), quarantine.reset_index(drop=True), report)


def worst_rule(report: dict[str, Any]) -> str:
    """The rule most rows broke."""
    return max(report["failures_by_rule"].items(), key=lambda item: item[1])[0]


def check_table_rules(
    rows: int, null_share: pd.Series, validation: ValidateParams, contracts: dict[str, ColumnContract], data: DataParams
) -> None:
    """The whole-table rules, from the row count and each column's null share: every broken one
    is named in one `DataError`, with fixes that work when applied as written. A column in
    data.drop_columns is exempt from the null limits (it is never a feature, so its nulls cannot
    harm the model). (Counts, not rows: the dask engine merges them from its partitions.)"""
    problems = [
        problem for problem in (_row_count_problem(rows, validation), _null_problem(null_share, validation, contracts, data)) if problem
    ]
    if problems:
        raise DataError("; and ".join(problems))


def _row_count_problem(rows: int, validation: ValidateParams) -> str | None:
    bounds = validation.rows
    for bound, broken in (("min", bounds.min is not None and rows < bounds.min), ("max", bounds.max is not None and rows > bounds.max)):
        if broken:
            return (
                f"the table has {rows:,} rows, outside validate.rows.{bound}={getattr(bounds, bound)}: check the source "
                f"(a partial export?) or set validate.rows.{bound} to {rows} (or null for no bound)"
            )
    return None


# Columns named in a message before "and N more": enough to act on, short enough to read.
SHOWN_COLUMNS = 10


def _null_problem(null_share: pd.Series, validation: ValidateParams, contracts: dict[str, ColumnContract], data: DataParams) -> str | None:
    """Every column more null than its limit, most null first, with the limit it breaks and the
    share to allow (rounded up, so that a limit copied from the message passes)."""
    over = []
    for column, share in null_share.items():
        declared = contracts.get(column, ColumnContract()).max_null_share
        limit, key = (
            (validation.max_null_share, "validate.max_null_share")
            if declared is None
            else (declared, f"validate.columns.{column}.max_null_share")
        )
        if share > limit and column not in data.drop_columns:
            over.append((-float(share), str(column), key, limit))
    if not over:
        return None
    over.sort()
    shown = ", ".join(f"'{column}' {_allowing(-share):.1%} (over {key}={limit})" for share, column, key, limit in over[:SHOWN_COLUMNS])
    more = f" and {len(over) - SHOWN_COLUMNS} more" if len(over) > SHOWN_COLUMNS else ""
    roles = {data.target, *data.id_columns, *([data.time_column] if data.time_column else [])}
    fixes = ["fix the source"]
    if any(column not in roles for _, column, _, _ in over):
        fixes.append("list the columns that are not features in data.drop_columns")
    first_share, first_column = -over[0][0], over[0][1]
    fixes.append(
        f"give each its own validate.columns.<name>.max_null_share, its share as a fraction ({first_column}: {_allowing(first_share):g})"
    )
    by_default = [-share for share, _, key, _ in over if key == "validate.max_null_share"]
    if by_default:
        fixes.append(f"raise validate.max_null_share to {_allowing(max(by_default)):g}")
    count = f"{len(over)} columns are" if len(over) > 1 else "column is"
    return f"{count} more null than allowed: {shown}{more}: {', or '.join(fixes)}"


def _allowing(share: float) -> float:
    """The smallest limit with three decimals that `share` does not exceed: shown in messages, so
    that a limit copied from one passes (84.21% shows as 84.3%, never as a failing 84.2%)."""
    thousandths = math.ceil(share * 1000)
    while thousandths / 1000 < share:  # float rounding of share * 1000
        thousandths += 1
    return thousandths / 1000


def coerce_dtypes(table: pd.DataFrame, contracts: dict[str, ColumnContract]) -> tuple[pd.DataFrame, dict[str, pd.Series]]:
    """Cast each column with a declared dtype (and each ranged column that is not numeric) to its
    dtype. Rows whose value cannot take it, or would change doing so (2.5 as an integer, 'maybe'
    or a null as a bool), fail rule `column:dtype(...)`; the rest come back cast.
    Returns (cast rows that passed, failures)."""
    import pandera.pandas as pa

    targets = {column: contract.dtype for column, contract in contracts.items() if contract.dtype}
    for column, contract in contracts.items():
        ranged = contract.min is not None or contract.max is not None
        if ranged and column not in targets and not pd.api.types.is_numeric_dtype(table[column]):
            targets[column] = "float64"  # a range only means something for numbers
    if not targets:
        return table, {}
    kinds = {column: pd.api.types.pandas_dtype(dtype) for column, dtype in targets.items()}
    failures = {column: pd.Series(False, index=table.index) for column in targets}
    source = table.copy(deep=False)
    for column, kind in kinds.items():
        if pd.api.types.is_bool_dtype(kind):
            # A plain cast makes every non-empty string True and a null False; parse instead.
            source[column] = table[column].map(_as_bool, na_action="ignore")
            failures[column] |= ~source[column].map(lambda value: isinstance(value, bool))
    schema = pa.DataFrameSchema({c: pa.Column(d, coerce=True, nullable=True) for c, d in targets.items()})
    cases = _failure_cases(schema, source[~_any_failed(failures)])
    for column, rows in cases[cases["check"].str.startswith("coerce_dtype")].groupby("column")["index"]:
        failures[column].loc[rows.to_numpy()] = True
    cast = schema.validate(source[~_any_failed(failures)])
    for column, kind in kinds.items():
        if pd.api.types.is_numeric_dtype(kind) and not pd.api.types.is_bool_dtype(kind):
            before = pd.to_numeric(table.loc[cast.index, column], errors="coerce")
            changed = before.notna() & (before != cast[column].astype("float64"))
            failures[column].loc[changed[changed].index] = True
    return cast.loc[~_any_failed(failures)[cast.index]], {f"{column}:dtype({targets[column]})": rows for column, rows in failures.items()}


def _any_failed(failures: dict[str, pd.Series]) -> pd.Series:
    """Per row: whether any of the rules failed."""
    return pd.concat(failures.values(), axis=1).any(axis=1)


BOOL_WORDS = dict.fromkeys(("true", "t", "yes", "y", "1"), True) | dict.fromkeys(("false", "f", "no", "n", "0"), False)


def _as_bool(value: Any) -> Any:
    """The bool a value unambiguously means (True, 1, 'yes', 'FALSE', ...); the value itself otherwise."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return BOOL_WORDS.get(value.strip().lower(), value)
    return value


def row_rule_failures(
    table: pd.DataFrame, contracts: dict[str, ColumnContract], id_columns: list[str], max_text_length: int, unchecked: Collection[str] = ()
) -> dict[str, pd.Series]:
    """Rule name -> which rows of `table` break it, for every row rule (rules nobody breaks included).

    Besides the declared rules, every column gets the rules its values imply: numbers finite
    (unless its contract says `finite: false`) and text no longer than `max_length` (default
    `validate.max_text_length`), since one huge cell can exhaust memory downstream. The
    `unchecked` columns (data.drop_columns) do not: they never reach the model, and an inf or a
    long note there must not cost the row.
    """
    import pandera.pandas as pa

    columns, rules, by_check = {}, [], {}
    for column in [*contracts, *(name for name in table.columns if name not in contracts)]:
        contract = contracts.get(column, ColumnContract())
        checks = [] if column in unchecked else implied_checks(table[column], contract, max_text_length)
        if contract.min is not None or contract.max is not None:
            low, high = contract.min, contract.max
            if low is not None and high is not None:
                checks.append(pa.Check.in_range(low, high, error=f"{column}:in_range({_number(low)}, {_number(high)})"))
            elif low is not None:
                checks.append(pa.Check.ge(low, error=f"{column}:>=({_number(low)})"))
            else:
                checks.append(pa.Check.le(high, error=f"{column}:<=({_number(high)})"))
        if contract.allowed is not None:
            checks.append(allowed_check(contract.allowed, error=f"{column}:allowed{contract.allowed}"))
        if not checks and column not in contracts:
            continue
        columns[column] = pa.Column(nullable=contract.nullable, unique=contract.unique, report_duplicates="exclude_first", checks=checks)
        if not contract.nullable:
            rules.append(by_check.setdefault((column, "not_nullable"), f"{column}:not_null"))
        if contract.unique:
            rules.append(by_check.setdefault((column, "field_uniqueness"), f"{column}:unique"))
        rules.extend(check.error for check in checks)
    composite = id_columns if len(id_columns) > 1 else None
    if composite:
        rules.append(f"{','.join(composite)}:unique")
        by_check.update({(column, "multiple_fields_uniqueness"): rules[-1] for column in composite})
    schema = pa.DataFrameSchema(columns, unique=composite, report_duplicates="exclude_first")

    failures = {rule: pd.Series(False, index=table.index) for rule in rules}
    cases = _failure_cases(schema, table)
    for (column, check), group in cases.groupby(["column", "check"], dropna=False):
        rule, rows = by_check.get((column, check), check), group["index"]
        if rows.isna().any() or rule not in failures:
            raise DataError(f"rule {rule} could not be checked on column '{column}': {group['failure_case'].iloc[0]}")
        failures[rule].loc[rows.to_numpy()] = True
    return failures


def allowed_check(allowed: list[Any], error: str):
    """The rule `allowed`: a value is allowed when it is the same category label as an allowed one
    (`schema.category_label`): 1, 1.0 and '1' are one label, so a column read as text because
    batches disagree on its type (`sources.concat_batches`, which writes 1.0 as '1') meets the rule
    its numbers met. '1.0' and True are other labels, as they are other levels of a categorical
    feature: what passes the rule is what the model knows by that name. (pandera's `isin` compares
    types strictly: '1' is not 1.) Labels are made once per distinct value, so millions of rows cost
    little."""
    import pandera.pandas as pa

    labels = sorted({category_label(value) for value in allowed})

    def check(values: pd.Series) -> pd.Series:
        strings = category_strings(values)
        fits = np.append(strings.cat.categories.isin(labels), True)  # code -1: missing, the null rules' business
        return pd.Series(fits[strings.cat.codes.to_numpy()], index=values.index)

    return pa.Check(check, error=error)


def implied_checks(values: pd.Series, contract: ColumnContract, max_text_length: int) -> list:
    """The finite-number and text-length rules a column's values call for."""
    import pandera.pandas as pa

    if pd.api.types.is_float_dtype(values) and contract.finite:
        return [
            pa.Check(
                lambda column: pd.Series(np.isfinite(column.to_numpy(dtype=float, na_value=np.nan)), index=column.index) | column.isna(),
                error=f"{values.name}:finite",
            )
        ]
    if pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values):
        limit = contract.max_length or max_text_length
        return [
            pa.Check(
                lambda column: column.map(lambda value: not isinstance(value, str) or len(value) <= limit),
                error=f"{values.name}:max_length({limit})",
            )
        ]
    return []


def _failure_cases(schema, table: pd.DataFrame) -> pd.DataFrame:
    """pandera's failure cases (column, check, failure_case, index), empty when the table passes."""
    import pandera.pandas as pa

    try:
        schema.validate(table, lazy=True)
    except pa.errors.SchemaErrors as errors:
        return errors.failure_cases
    return pd.DataFrame(columns=["column", "check", "failure_case", "index"])


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def validate(raw: Path, out: Path, quarantine: Path, data: DataParams, validation: ValidateParams) -> dict[str, Any]:
    """The whole contract on the table of parts `raw`: its rows that pass to the parts of `out`,
    those that do not to `quarantine`; returns the report (metrics/data_quality.json).

    Each part is summarised (rows, nulls, target values, a hash of each unique key); the
    whole-table rules are decided on the merged summaries (`TableRules`); then the row rules run
    part by part, with the rows whose key an earlier row already holds, in any part, marked."""
    parts = parts_checked(raw, "the ingested table", "ingest")
    check_columns(sample_part(parts), data, validation)
    rules = TableRules.of(data, validation)
    found = summaries(_table_summary, parts, data.target, rules.unique_keys, what="validate: counts")
    null_share = rules.check(found, lambda: read_columns(parts, [data.time_column])[data.time_column])
    with staged(out, quarantine) as folders:
        reports = map_parts(
            _quarantine_part,
            parts,
            folders,
            rules.contracts,
            validation.max_text_length,
            data.drop_columns,
            per_part=rules.repeats(found),
            what="validate: row rules",
        )
        report = rules.report(reports, null_share)
    return report


def validate_table(table: pd.DataFrame, data: DataParams, validation: ValidateParams) -> ValidationResult:
    """The whole contract on a table in memory: `validate`'s one-part case (the same summary,
    whole-table rules and row rules), for tests and tools that hold a table."""
    check_columns(table, data, validation)
    rules = TableRules.of(data, validation)
    found = [_table_summary(table, 0, data.target, rules.unique_keys)]
    null_share = rules.check(found, lambda: table[data.time_column])
    (clean, quarantined), report = _quarantine_part(
        table, 0, rules.contracts, validation.max_text_length, data.drop_columns, *rules.repeats(found)[0]
    )
    return ValidationResult(clean, quarantined, rules.report([report], null_share))


@dataclass(frozen=True)
class TableRules:
    """The contract's rules that need the whole table, decided on the parts' merged summaries.

    Uniqueness is one of them: a unique column (an id column, or one declared `unique`) and the
    id columns together must not repeat across the whole table, so each is checked on a hash of
    its values in every part (`unique_keys`: rule -> columns): the first row keeps a value, every
    later one is quarantined, also when the first breaks another rule. The row rules of each part
    (`contracts`) are the rest."""

    data: DataParams
    validation: ValidateParams
    contracts: dict[str, ColumnContract]
    unique_keys: dict[str, list[str]]

    @classmethod
    def of(cls, data: DataParams, validation: ValidateParams) -> TableRules:
        contracts = column_contracts(data, validation)
        unique_keys = {f"{column}:unique": [column] for column, contract in contracts.items() if contract.unique}
        if len(data.id_columns) > 1:
            unique_keys[f"{','.join(data.id_columns)}:unique"] = list(data.id_columns)
        for column in (column for column, contract in contracts.items() if contract.unique):
            contracts[column] = contracts[column].model_copy(update={"unique": False})
        return cls(data, validation, contracts, unique_keys)

    def check(self, found: list[dict[str, Any]], time_column: Callable[[], pd.Series]) -> pd.Series:
        """The whole-table rules on the parts' summaries: the target binary with the positive label,
        the time column's values (read by `time_column` when validate parses them), the row count,
        every column's null share. Each broken one is a `DataError`; returns the null shares."""
        data = self.data
        check_target(pd.Series(pd.unique(np.concatenate([summary["targets"] for summary in found])), name=data.target), data.positive_label)
        if parses_time_column(data, self.contracts):
            time_values(time_column())
        rows = sum(summary["rows"] for summary in found)
        null_share = sum(summary["nulls"] for summary in found) / max(rows, 1)
        check_table_rules(rows, null_share, self.validation, self.contracts, data)
        return null_share

    def repeats(self, found: list[dict[str, Any]]) -> list[tuple[dict[str, np.ndarray]]]:
        """Per part: ({unique rule: positions in the part of the rows whose key an earlier row holds},)."""
        starts = offsets([summary["rows"] for summary in found])
        per_rule = {rule: repeated_positions([summary["keys"][rule] for summary in found]) for rule in self.unique_keys}
        return [
            ({rule: repeated[(repeated >= start) & (repeated < end)] - start for rule, repeated in per_rule.items()},)
            for start, end in zip(starts[:-1], starts[1:], strict=True)
        ]

    def report(self, reports: list[dict[str, Any]], null_share: pd.Series) -> dict[str, Any]:
        """The parts' row-rule reports as one, with the null shares; too many bad rows is a `DataError`."""
        report = merged_report(reports)
        report["null_share"] = {column: float(share) for column, share in null_share.items() if share > 0}
        check_bad_row_share(report, self.validation)
        return report


def _table_summary(table: pd.DataFrame, index: int, target: str, unique_keys: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "rows": len(table),
        "nulls": table.isna().sum(),
        "targets": table[target].dropna().unique(),
        "keys": {rule: row_keys(table, columns) for rule, columns in unique_keys.items()},
    }


def _quarantine_part(
    table: pd.DataFrame,
    index: int,
    contracts: dict[str, ColumnContract],
    max_text_length: int,
    unchecked: list[str],
    repeated: dict[str, np.ndarray],
):
    known = {}
    for rule, positions in repeated.items():
        known[rule] = pd.Series(False, index=table.index)
        known[rule].iloc[positions] = True
    result = quarantine_rows(table, contracts, [], max_text_length, known_failures=known, unchecked=unchecked)
    return (result.clean, result.quarantine), result.report


def merged_report(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The parts' row-rule reports as one, as `quarantine_rows` reports a whole table."""
    rows_in = sum(report["rows_in"] for report in reports)
    quarantined = sum(report["rows_quarantined"] for report in reports)
    rules: dict[str, int] = {}
    for report in reports:
        for rule, count in report["failures_by_rule"].items():
            rules[rule] = rules.get(rule, 0) + count
    return {
        "rows_in": rows_in,
        "rows_out": rows_in - quarantined,
        "rows_quarantined": quarantined,
        "bad_row_share": quarantined / rows_in if rows_in else 0.0,
        "failures_by_rule": rules,
    }
