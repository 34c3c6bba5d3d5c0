"""What a table's own params should say, read off the table: the decisions behind `make init`.

`profile_table` looks at a DataFrame and returns the data-specific params sections (data,
the validate contract, split, drift windows) with one human-readable reason per decision.
It reads and writes nothing; `mlpipe.tools.init` does the file work around it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlpipe.errors import DataError
from mlpipe.times import time_values

# Value pairs whose positive member is plain from the words themselves (compared lower-cased).
OBVIOUS_POSITIVE = {
    frozenset({"0", "1"}): "1",
    frozenset({"false", "true"}): "true",
    frozenset({"no", "yes"}): "yes",
    frozenset({"n", "y"}): "y",
    frozenset({"f", "t"}): "t",
    frozenset({"negative", "positive"}): "positive",
}
TIME_NAME = re.compile(r"(^|[_\s-])(date|time|year|period|month|day|timestamp|datetime|dt)($|[_\s-])", re.IGNORECASE)
ID_NAME = re.compile(r"(^|[_\s-])(id|key|uuid|guid)$|^id([_\s-]|$)", re.IGNORECASE)
PERSONAL_NAME = re.compile(
    r"e-?mail|phone|mobile|(^|[_\s-])(tel|fax|ssn|passport|address|street|zip|postcode|dob|birth_?date|ip)($|[_\s-])"
    r"|(^|[_\s-])((first|last|full|sur|given|family|middle|user|customer|patient|maiden)[_\s-]?)?name($|[_\s-])",
    re.IGNORECASE,
)
EMAIL_VALUE = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
PHONE_VALUE = re.compile(r"\+?[\d\s().-]{7,20}")
DATE_VALUE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}.*|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")
YEAR_RANGE = (1800, 2200)
MAX_DRIFT_WINDOWS = 6
PERIOD_CHOICES = ("Y", "Q", "M", "W", "D")  # coarsest first: the first giving enough periods wins
MIN_PERIODS = 4
FREE_TEXT_SHARE = 0.5  # a text column with more distinct values than this share of rows is not a category


@dataclass
class Profile:
    """The params a table needs, and why: `decisions` are one line each, `warnings` need a look."""

    data: dict[str, Any]
    contract: dict[str, dict[str, Any]]
    rows_min: int
    split: dict[str, Any]
    windows: dict[str, dict[str, Any]]
    columns: list[str] = field(default_factory=list)
    period: str | None = None
    decisions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def profile_table(table: pd.DataFrame, target: str, positive: str | None = None, time_column: str | None = None, ask=None) -> Profile:
    """Infer the data-specific params of `table`. `positive` and `time_column` override the inference;
    `ask(question) -> answer` is called when the positive label cannot be told (None: an error)."""
    if table.empty or table.shape[1] == 0:
        raise DataError("the table has no rows: point DATA at a table with data")
    decisions: list[str] = []
    warnings: list[str] = []
    _require_column(table, target, "TARGET")
    labels = _binary_labels(table[target])
    positive_label = _positive_label(table[target].name, labels, positive, ask, decisions)

    personal = personal_columns(table.drop(columns=[target]))
    for column, why in personal.items():
        warnings.append(
            f"column '{column}' looks personal ({why}): data.personal_columns drops it at ingest; "
            f"change it to hash (a salted SHA-256, salt in $MLPIPE_PII_SALT) to keep it as a key"
        )
    usable = table.drop(columns=[target, *personal])

    chosen_time = _time_column(usable, time_column, decisions)
    others = usable.drop(columns=[chosen_time] if chosen_time else [])
    ids = id_columns(others)
    if ids:
        decisions.append(f"id columns: {', '.join(ids)} (unique in every row; checked for duplicates, never a feature)")
    drop, categorical = [], []
    for column in others.columns.drop(ids):
        values = others[column]
        if pd.api.types.is_datetime64_any_dtype(values):
            drop.append(column)
            decisions.append(f"drop '{column}': a date other than the time column is not a model feature")
        elif not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            if len(values) > 100 and values.nunique() > FREE_TEXT_SHARE * len(values):
                drop.append(column)
                decisions.append(f"drop '{column}': free text ({values.nunique():,} distinct values in {len(values):,} rows)")
            else:
                categorical.append(column)
    decisions.append(f"categorical columns: {', '.join(categorical) if categorical else 'none'} (text and boolean columns)")

    split, windows, period = _split_and_windows(table, target, chosen_time, decisions)
    data = {
        "target": target,
        "positive_label": positive_label,
        "time_column": chosen_time,
        "id_columns": ids,
        "drop_columns": drop,
        "categorical_columns": categorical,
        "personal_columns": {column: "drop" for column in personal},
    }
    kept = table.drop(columns=list(personal))
    contract = inferred_contract(kept, target, labels, chosen_time, ids)
    rows_min = max(1, len(table) // 2)
    decisions.append(
        f"contract: dtype and widened ranges for {len(contract)} columns (pandera's schema inference); "
        f"validate.rows.min {rows_min:,} (half of today's {len(table):,} rows, so a truncated file fails)"
    )
    return Profile(data, contract, rows_min, split, windows, [str(c) for c in kept.columns], period, decisions, warnings)


def _require_column(table: pd.DataFrame, column: str, option: str) -> None:
    if column not in table.columns:
        import difflib

        close = difflib.get_close_matches(column, [str(name) for name in table.columns], n=1)
        shown = ", ".join(map(str, table.columns[:20])) + (", ..." if table.shape[1] > 20 else "")
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise DataError(f"{option}={column!r} is not a column of the table; {hint}columns: {shown}")


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value YAML can write."""
    return value.item() if isinstance(value, np.generic) else value


def _binary_labels(values: pd.Series) -> list[Any]:
    labels = sorted((_plain(value) for value in values.dropna().unique()), key=str)
    if len(labels) != 2:
        shown = ", ".join(repr(label) for label in labels[:5]) + (", ..." if len(labels) > 5 else "")
        raise DataError(
            f"target '{values.name}' has {len(labels)} distinct value(s) ({shown}); the pipeline predicts a "
            "binary target: choose a column with two values or map it to two first"
        )
    return labels


def _positive_label(target: str, labels: list[Any], positive: str | None, ask, decisions: list[str]) -> Any:
    shown = ", ".join(repr(label) for label in labels)
    if positive is not None:
        for label in labels:
            if str(label) == str(positive) or str(label).lower() == str(positive).lower():
                decisions.append(f"positive label: {label!r} (given)")
                return label
        raise DataError(f"POSITIVE={positive!r} is not a value of '{target}' (values: {shown})")
    obvious = OBVIOUS_POSITIVE.get(frozenset(str(label).lower() for label in labels))
    if obvious is not None:
        label = next(label for label in labels if str(label).lower() == obvious)
        decisions.append(f"positive label: {label!r} (of {shown})")
        return label
    if ask is None:
        raise DataError(f"cannot tell which value of '{target}' is the positive class (values: {shown}): pass POSITIVE=<value>")
    return _positive_label(target, labels, ask(f"which value of '{target}' is the positive class ({shown})? "), None, decisions)


def personal_columns(table: pd.DataFrame) -> dict[str, str]:
    """Columns that look like personal data, with why: by name, or by values that are e-mail addresses
    or phone numbers in most of a sample."""
    found = {}
    for column in table.columns:
        name = str(column)
        if PERSONAL_NAME.search(name):
            found[column] = f"its name '{name}'"
            continue
        values = table[column]
        if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
            continue
        sample = values.dropna().astype(str).head(1000)
        if sample.empty:
            continue
        if sample.str.fullmatch(EMAIL_VALUE).mean() > 0.5:
            found[column] = "e-mail addresses"
        elif (sample.str.fullmatch(PHONE_VALUE) & sample.str.count(r"\d").ge(7) & ~sample.str.fullmatch(DATE_VALUE)).mean() > 0.5:
            found[column] = "phone numbers"
    return found


def id_columns(table: pd.DataFrame) -> list[str]:
    """Unique keys: integer or text columns with a distinct value in every row, named like an id,
    or text codes of any name (distinct values without spaces; with spaces it is free text)."""
    ids = []
    for column in table.columns:
        values = table[column]
        is_text = (
            not pd.api.types.is_numeric_dtype(values)
            and not pd.api.types.is_bool_dtype(values)
            and not pd.api.types.is_datetime64_any_dtype(values)
        )
        is_integer = pd.api.types.is_integer_dtype(values) and not pd.api.types.is_bool_dtype(values)
        named_like_an_id = bool(ID_NAME.search(str(column)))
        if not ((is_integer and named_like_an_id) or (is_text and (named_like_an_id or _looks_like_codes(values)))):
            continue
        if len(values) > 1 and values.notna().all() and values.is_unique:
            ids.append(column)
    return ids


def _looks_like_codes(values: pd.Series) -> bool:
    return not values.dropna().astype(str).head(1000).str.contains(r"\s").any()


def _is_time_like(values: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(values):
        return True
    if not TIME_NAME.search(str(values.name)) or values.isna().all():
        return False
    if pd.api.types.is_integer_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return bool(values.dropna().between(*YEAR_RANGE).all())
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return False
    try:
        time_values(values.dropna().head(1000))
    except DataError:
        return False
    return True


def _time_column(table: pd.DataFrame, given: str | None, decisions: list[str]) -> str | None:
    if given is not None:
        _require_column(table, given, "TIME")
        if table[given].isna().any():
            raise DataError(f"TIME column '{given}' has missing values: every row needs a time for a time split")
        time_values(table[given])  # numbers or dates, or a one-line error
        decisions.append(f"time column: '{given}' (given)")
        return given
    candidates = [column for column in table.columns if _is_time_like(table[column]) and table[column].notna().all()]
    if len(candidates) == 1:
        decisions.append(f"time column: '{candidates[0]}' (the only date or year-like column)")
        return candidates[0]
    if candidates:
        decisions.append(f"time column: none (several candidates: {', '.join(candidates)}; pass TIME=<column> for a time split)")
    else:
        decisions.append("time column: none (no date or year-like column)")
    return None


def _periods(times: pd.Series) -> tuple[pd.Series, str | None]:
    """Each row's period label, and the pandas period code for dates (None for numbers)."""
    if not pd.api.types.is_datetime64_any_dtype(times):
        return times, None
    for code in PERIOD_CHOICES:
        periods = times.dt.to_period(code)
        if periods.nunique() >= MIN_PERIODS:
            return periods, code
    return times.dt.to_period("D"), "D"


def _time_text(value: Any) -> Any:
    """A time cut-off as params.yaml holds it: numbers as they are, dates as ISO text."""
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d") if value == value.normalize() else value.isoformat()
    return _plain(value)


def _split_and_windows(
    table: pd.DataFrame, target: str, time_column: str | None, decisions: list[str]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], str | None]:
    random_split = {"strategy": "random", "train_until": None, "test_from": None}
    if time_column is None:
        decisions.append("split: stratified random (no time column); drift window: all")
        return random_split, {"all": {}}, None
    times = time_values(table[time_column])
    periods, code = _periods(times)
    ordered = sorted(periods.unique())
    if len(ordered) < 2:
        decisions.append(f"split: stratified random ('{time_column}' holds one period); drift window: all")
        return random_split, {"all": {}}, code
    test_periods = ordered[-max(1, round(len(ordered) / 4)) :]
    is_test = periods.isin(test_periods)
    if table.loc[is_test, target].nunique() < 2 or table.loc[~is_test, target].nunique() < 2:
        decisions.append("split: stratified random (a time split would leave one target class on a side); drift window: all")
        return random_split, {"all": {}}, code
    split = {"strategy": "time", "train_until": _time_text(times[~is_test].max()), "test_from": _time_text(times[is_test].min())}
    unit = {None: "period", "Y": "year", "Q": "quarter", "M": "month", "W": "week", "D": "day"}[code]
    decisions.append(
        f"split: by time on '{time_column}': train until {split['train_until']}, test from {split['test_from']} "
        f"(the last {len(test_periods)} of {len(ordered)} {unit}s, about a quarter)"
    )
    windows = {}
    shown = test_periods[-MAX_DRIFT_WINDOWS:]
    for period in shown:
        inside = times[periods == period]
        windows[_window_name(period)] = {"start": _time_text(inside.min()), "end": _time_text(inside.max())}
    windows["all"] = {}
    capped = f" (the last {len(shown)} of {len(test_periods)})" if len(shown) < len(test_periods) else ""
    decisions.append(f"drift windows: one per test {unit}{capped} and all")
    return split, windows, code


def _window_name(period: Any) -> str:
    text = str(_plain(period))
    if isinstance(period, float) and period.is_integer():
        text = str(int(period))
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def inferred_contract(
    table: pd.DataFrame, target: str, labels: list[Any], time_column: str | None, ids: list[str]
) -> dict[str, dict[str, Any]]:
    """A contract per column from pandera's schema inference, its ranges widened so that ordinary
    new data passes: half the observed span on each side, rounded outward, a non-negative column
    stays non-negative, the time column has no upper bound (new periods are expected) and id
    columns no range at all (new rows bring new ids)."""
    import pandera.pandas as pa

    inferred = pa.infer_schema(table)
    contract: dict[str, dict[str, Any]] = {}
    for name, column in inferred.columns.items():
        rules: dict[str, Any] = {}
        dtype = str(column.dtype)
        if name == target:
            rules["allowed"] = labels
        elif dtype.startswith(("int", "uint", "float")):
            rules["dtype"] = "int64" if dtype.startswith(("int", "uint")) else "float64"
            low, high = _bound(column.checks, "greater_than_or_equal_to"), _bound(column.checks, "less_than_or_equal_to")
            if name not in ids and low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
                rules.update(_widened(low, high, integer=rules["dtype"] == "int64", open_above=name == time_column))
        elif dtype.startswith("datetime"):
            rules["dtype"] = "datetime64[ns]"
        elif dtype == "bool":
            rules["dtype"] = "bool"
        if not column.nullable:
            rules["nullable"] = False
        if rules:
            contract[str(name)] = rules
    return contract


def _bound(checks: list, statistic: str) -> float | None:
    for check in checks:
        value = check.statistics.get("min_value" if statistic == "greater_than_or_equal_to" else "max_value")
        if check.name == statistic and value is not None:
            return float(value)
    return None


def _widened(low: float, high: float, integer: bool, open_above: bool) -> dict[str, Any]:
    span = high - low or max(abs(high), 1.0)
    margin = span / 2
    step = 10 ** math.floor(math.log10(margin))
    new_low = math.floor((low - margin) / step) * step
    new_high = math.ceil((high + margin) / step) * step
    if low >= 0:
        new_low = max(new_low, 0)
    rules: dict[str, Any] = {"min": new_low}
    if not open_above:
        rules["max"] = new_high
    if integer:
        return {key: int(value) for key, value in rules.items()}
    return {key: float(f"{value:.6g}") for key, value in rules.items()}
