"""Time and stratified random splits."""

import numpy as np
import pandas as pd
import pytest

from mlpipe.config import SplitParams
from mlpipe.data.sampling import stratified_mask
from mlpipe.data.split import split_table
from mlpipe.errors import ConfigError, DataError


def years_table():
    return pd.DataFrame({"year": [2014, 2015, 2015, 2016, 2017, 2018] * 10, "y": [0, 1] * 30})


def test_time_split_trains_on_the_past_and_tests_on_the_future():
    train, test = split_table(years_table(), SplitParams(strategy="time", train_until=2015, test_from=2016), "year", "y")
    assert set(train["year"]) == {2014, 2015} and set(test["year"]) == {2016, 2017, 2018}


def test_time_split_gap_between_cutoffs_is_in_neither_set():
    train, test = split_table(years_table(), SplitParams(strategy="time", train_until=2015, test_from=2017), "year", "y")
    assert 2016 not in set(train["year"]) | set(test["year"])


def test_time_split_on_dates_parses_text_dates():
    table = pd.DataFrame({"when": ["2020-01-05", "2020-03-01", "2020-07-01", "2021-02-01"] * 5, "y": [0, 1] * 10})
    train, test = split_table(table, SplitParams(strategy="time", train_until="2020-06-30"), "when", "y")
    assert len(train) == 10 and len(test) == 10


def test_time_split_needs_a_time_column():
    with pytest.raises(ConfigError, match="data.time_column is null"):
        split_table(years_table(), SplitParams(strategy="time", train_until=2015), None, "y")


def test_text_cutoff_on_numeric_time_is_a_clear_error():
    with pytest.raises(ConfigError, match="split.train_until='2015-01-01' must be a number"):
        split_table(years_table(), SplitParams(strategy="time", train_until="2015-01-01"), "year", "y")


def test_non_time_column_is_a_clear_error():
    table = pd.DataFrame({"when": ["a", "b"] * 5, "y": [0, 1] * 5})
    with pytest.raises(DataError, match=r"time column .when.: row 1 holds .a., which is not a date \(every row\)"):
        split_table(table, SplitParams(strategy="time", train_until=1), "when", "y")


@pytest.mark.parametrize(("cutoffs", "which"), [({"train_until": 2000}, "training"), ({"train_until": 2018}, "test")])
def test_cutoffs_that_empty_a_set_fail_with_the_range(cutoffs, which):
    with pytest.raises(ConfigError, match=f"leaves the {which} set empty.*2014..2018"):
        split_table(years_table(), SplitParams(strategy="time", **cutoffs), "year", "y")


def test_random_split_is_stratified_and_seeded():
    table = pd.DataFrame({"y": [1] * 100 + [0] * 900, "x": range(1000)})
    params = SplitParams(strategy="random", test_size=0.2, seed=7)
    train, test = split_table(table, params, None, "y")
    assert len(test) == 200 and test["y"].sum() == 20
    again, _ = split_table(table, params, None, "y")
    pd.testing.assert_frame_equal(train, again)
    other, _ = split_table(table, SplitParams(strategy="random", test_size=0.2, seed=8), None, "y")
    assert not train["x"].equals(other["x"])


def test_stratified_mask_fraction_per_class():
    labels = pd.Series(["a"] * 50 + ["b"] * 10)
    mask = stratified_mask(labels, 60, 0.2, seed=0)
    assert mask[:50].sum() == 10 and mask[50:].sum() == 2
    assert np.array_equal(mask, stratified_mask(labels, 60, 0.2, seed=0))
