"""Reading a time column: the one place that decides what counts as a time (numbers such as
years, datetimes, or text parsed as dates). Used by the split, evaluation per period, drift
windows and `make init`."""

from __future__ import annotations

import warnings

import pandas as pd

from mlpipe.errors import DataError


def time_values(values: pd.Series) -> pd.Series:
    """Numbers (e.g. years) and datetimes are used as they are; text is parsed as dates."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
        return values
    try:
        with warnings.catch_warnings():
            # pandas warns when it falls back to parsing element by element; failures still raise.
            warnings.simplefilter("ignore", UserWarning)
            return pd.to_datetime(values)
    except (ValueError, TypeError):
        raise DataError(f"time column '{values.name}' is neither numeric nor dates (e.g. {values.iloc[0]!r})") from None
