"""Train/test splitting: by time (train on the past, test on the future) or stratified random."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from mlpipe.config import SplitParams
from mlpipe.data.sampling import stratified_mask
from mlpipe.data.times import time_values
from mlpipe.engine.parts import map_parts, offsets, part_rows, parts_checked, read_columns, staged
from mlpipe.errors import ConfigError

log = logging.getLogger(__name__)


def split_folder(validated: Path, train: Path, test: Path, settings: SplitParams, time_column: str | None, target: str) -> tuple[int, int]:
    """The table of parts `validated` as training rows (the parts of `train`) and test rows (of
    `test`); returns how many of each. `split_masks` decides on the target and time columns alone
    (the random split's mask is drawn on the whole target column, in row order: the same rows for
    any cut into parts), then each part keeps its slice."""
    parts = parts_checked(validated, "the validated table", "validate")
    columns = read_columns(parts, [target, *([time_column] if time_column and settings.strategy == "time" else [])])
    is_train, is_test = split_masks(columns, settings, time_column, target)
    starts = offsets(part_rows(parts))
    slices = [(is_train[start:end], is_test[start:end]) for start, end in zip(starts[:-1], starts[1:], strict=True)]
    with staged(train, test) as folders:
        map_parts(_split_part, parts, folders, per_part=slices, what="split")
    return int(is_train.sum()), int(is_test.sum())


def split_table(table: pd.DataFrame, split: SplitParams, time_column: str | None, target: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A table in memory as (training rows, test rows): `split_folder`'s one-part case."""
    return _split_part(table, 0, *split_masks(table, split, time_column, target))[0]


def split_masks(table: pd.DataFrame, split: SplitParams, time_column: str | None, target: str) -> tuple[np.ndarray, np.ndarray]:
    """Which rows go to training and which to test. `table` needs only the target and time
    columns, so `split_folder` decides on those two columns and applies the masks part by part."""
    if split.strategy == "time":
        if not time_column:
            raise ConfigError("split.strategy is 'time' but data.time_column is null: set data.time_column or use split.strategy: random")
        is_train, is_test = _time_masks(table[time_column], split)
    else:
        is_test = pd.Series(stratified_mask(table[target] if split.stratify else None, len(table), split.test_size, split.seed))
        is_train = ~is_test
    is_train, is_test = np.asarray(is_train, dtype=bool), np.asarray(is_test, dtype=bool)
    gap = len(table) - int(is_train.sum()) - int(is_test.sum())
    if gap:
        log.info("%d rows fall between split.train_until and split.test_from and are in neither set", gap)
    for name, rows in (("training", is_train), ("test", is_test)):
        if not rows.any():
            raise ConfigError(f"the split leaves the {name} set empty: {_describe(table, split, time_column)}")
        if table[target][rows].nunique() < 2:
            raise ConfigError(f"the {name} set holds only one target class: {_describe(table, split, time_column)}")
    return is_train, is_test


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


def _split_part(table: pd.DataFrame, index: int, is_train: np.ndarray, is_test: np.ndarray):
    return (table[is_train].reset_index(drop=True), table[is_test].reset_index(drop=True)), None
