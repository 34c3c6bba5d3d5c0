"""Reading a time column: the one place that decides what counts as a time (numbers such as
years, datetimes, or text parsed as dates). Used by the split, evaluation per period, drift
windows and `make init`."""

from __future__ import annotations

import warnings
from collections.abc import Hashable

import numpy as np
import pandas as pd

from mlpipe.errors import DataError


def time_values(values: pd.Series) -> pd.Series:
    """Numbers (e.g. years) and datetimes are used as they are; text is parsed as dates. A value
    that does not parse is a `DataError` naming the first such value and its row."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
        return values
    try:
        with warnings.catch_warnings():
            # pandas warns when it falls back to parsing element by element; failures still raise.
            warnings.simplefilter("ignore", UserWarning)
            return pd.to_datetime(values)
    except (ValueError, TypeError, OverflowError):
        raise DataError(unparsable_times(values)) from None


def unparsable_times(values: pd.Series) -> str:
    """The first value of a time column that does not parse, with its row (counted from 1, in the
    table read) and how many rows do not: a value that is no date at all, or a date in another
    format than the column's first one (pandas parses a column in one format, as it should: mixing
    day-first and month-first dates would swap days and months silently)."""
    # Each distinct value parsed once (this runs on whole columns); a list or dict value is no date.
    codes, uniques = pd.factorize(values.map(lambda value: value if isinstance(value, Hashable) else repr(value)))
    alone = np.array([_parses(value) for value in uniques] + [True], dtype=bool)[codes]  # code -1: missing
    together = alone.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            together &= pd.to_datetime(values.where(alone), errors="coerce").notna().to_numpy() | (codes == -1)
        except (ValueError, TypeError, OverflowError):
            pass
    bad = ~together
    position = int(bad.argmax())
    count = int(bad.sum())
    value = values.iloc[position]
    what = "which is not a date" if not alone[position] else "a date in another format than the column's first date"
    rows = "every row" if count == len(values) else f"{count:,} row{'s' if count > 1 else ''} in all"
    return (
        f"time column '{values.name}': row {position + 1:,} holds {value!r}, {what} ({rows}): "
        "fix those values in the source (dates in one format, or numbers such as years), or choose another data.time_column"
    )


def _parses(value) -> bool:
    """Whether one value, alone, is a date."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return pd.Timestamp(value) is not pd.NaT
    except (ValueError, TypeError, OverflowError):
        return False
