"""Train/test splitting: by time (train on the past, test on the future) or stratified random."""

from __future__ import annotations

import logging

import pandas as pd

from mlpipe.config import SplitParams
from mlpipe.errors import ConfigError
from mlpipe.sampling import stratified_mask
from mlpipe.times import time_values

log = logging.getLogger(__name__)


def split_table(table: pd.DataFrame, split: SplitParams, time_column: str | None, target: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    if split.strategy == "time":
        if not time_column:
            raise ConfigError("split.strategy is 'time' but data.time_column is null: set data.time_column or use split.strategy: random")
        is_train, is_test = _time_masks(table[time_column], split)
    else:
        is_test = pd.Series(stratified_mask(table[target] if split.stratify else None, len(table), split.test_size, split.seed))
        is_train = ~is_test
    train, test = table[is_train].reset_index(drop=True), table[is_test].reset_index(drop=True)
    gap = len(table) - len(train) - len(test)
    if gap:
        log.info("%d rows fall between split.train_until and split.test_from and are in neither set", gap)
    for name, part in (("training", train), ("test", test)):
        if part.empty:
            raise ConfigError(f"the split leaves the {name} set empty: {_describe(table, split, time_column)}")
        if part[target].nunique() < 2:
            raise ConfigError(f"the {name} set holds only one target class: {_describe(table, split, time_column)}")
    return train, test


def _cutoff(value, times: pd.Series, key: str):
    if pd.api.types.is_datetime64_any_dtype(times):
        try:
            return pd.Timestamp(value)
        except ValueError:
            raise ConfigError(f"{key}={value!r} is not a date") from None
    if isinstance(value, str):
        raise ConfigError(f"{key}={value!r} must be a number like the time column '{times.name}'")
    return value


def _time_masks(values: pd.Series, split: SplitParams) -> tuple[pd.Series, pd.Series]:
    times = time_values(values)
    train_until = _cutoff(split.train_until, times, "split.train_until")
    is_train = times <= train_until
    if split.test_from is None:
        is_test = times > train_until
    else:
        test_from = _cutoff(split.test_from, times, "split.test_from")
        if test_from <= train_until:
            raise ConfigError(f"split.test_from={split.test_from!r} must come after split.train_until={split.train_until!r}")
        is_test = times >= test_from
    return is_train, is_test


def _describe(table: pd.DataFrame, split: SplitParams, time_column: str | None) -> str:
    if split.strategy == "time" and time_column:
        times = table[time_column]
        return (
            f"data.time_column '{time_column}' spans {times.min()}..{times.max()}, "
            f"split.train_until={split.train_until!r}, split.test_from={split.test_from!r}: move the cutoffs"
        )
    return f"{len(table)} rows with split.test_size={split.test_size}: use more data or change split.test_size"
