"""Validation: fatal column problems, quarantined rows with reasons."""

import pandas as pd
import pytest

from mlpipe.config import DataParams, ValidateParams
from mlpipe.errors import DataError
from mlpipe.validation import REASON_COLUMN, validate_table

DATA = DataParams(source="t.csv", target="y", positive_label="yes", time_column="t", id_columns=["id"])
RULES = ValidateParams(max_bad_row_share=0.9, ranges={"age": {"min": 0, "max": 120}})


def table(**overrides):
    base = {
        "id": [1, 2, 3, 4, 5, 6],
        "t": [2015, 2015, 2016, None, 2016, 2016],
        "age": [30, 40, -1, 50, 60, 70],
        "y": ["yes", "no", "yes", "no", None, "no"],
    }
    base.update(overrides)
    return pd.DataFrame(base)


def test_bad_rows_are_quarantined_with_every_reason_and_counted():
    frame = table(id=[1, 2, 3, 4, 5, 2])
    result = validate_table(frame, DATA, RULES)
    assert list(result.clean["id"]) == [1, 2]
    reasons = dict(zip(result.quarantine["id"], result.quarantine[REASON_COLUMN]))
    assert reasons == {3: "out_of_range:age", 4: "missing_time", 5: "missing_target", 2: "duplicate_id"}
    assert result.report["quarantined_by_reason"] == {
        "missing_target": 1, "missing_time": 1, "duplicate_id": 1, "out_of_range:age": 1,
    }
    assert result.report["rows_in"] == 6 and result.report["rows_out"] == 2 and result.report["rows_quarantined"] == 4
    # nothing lost: every input row is in exactly one of the two outputs
    assert len(result.clean) + len(result.quarantine) == len(frame)


def test_a_row_failing_several_checks_lists_them_all():
    frame = table(t=[2015, 2015, None, 2016, 2016, 2016])
    result = validate_table(frame, DATA, RULES)
    assert "missing_time; out_of_range:age" in set(result.quarantine[REASON_COLUMN])


def test_text_in_a_ranged_column_is_out_of_range():
    frame = table(age=[30, 40, "old", 50, 60, 70], t=[2015] * 6, y=["yes", "no"] * 3)
    result = validate_table(frame, DATA, RULES)
    assert list(result.quarantine[REASON_COLUMN]) == ["out_of_range:age"]


def test_too_many_bad_rows_fails_naming_the_limit():
    with pytest.raises(DataError, match="validate.max_bad_row_share=0.1"):
        validate_table(table(), DATA, ValidateParams(max_bad_row_share=0.1, ranges=RULES.ranges))


def test_non_binary_target_is_fatal():
    with pytest.raises(DataError, match="must be binary but has 3 distinct values"):
        validate_table(table(y=["yes", "no", "maybe", "no", "yes", "no"]), DATA, RULES)


def test_single_class_target_is_fatal():
    with pytest.raises(DataError, match="1 distinct values"):
        validate_table(table(y=["yes"] * 6), DATA, RULES)


def test_positive_label_must_be_a_target_value():
    data = DataParams(source="t.csv", target="y", positive_label="true", time_column="t")
    with pytest.raises(DataError, match="data.positive_label 'true'"):
        validate_table(table(), data, RULES)


def test_numeric_labels_match_across_int_float_and_text():
    data = DataParams(source="t.csv", target="y", positive_label=1)
    for values in ([1, 0, 1, 0, 1, 0], [1.0, 0.0, 1.0, 0.0, 1.0, 0.0], ["1", "0", "1", "0", "1", "0"]):
        result = validate_table(pd.DataFrame({"y": values}), data, ValidateParams())
        assert len(result.clean) == 6


def test_missing_column_suggests_the_closest_name():
    data = DataParams(source="t.csv", target="y", positive_label="yes", categorical_columns=["agee"])
    with pytest.raises(DataError, match="column 'agee' named in data.categorical_columns .* did you mean 'age'"):
        validate_table(table(), data, RULES)


def test_mostly_null_column_is_fatal():
    frame = table(extra=[None, None, None, None, 1, None], t=[2015] * 6)
    with pytest.raises(DataError, match="column 'extra' is 83.3% null"):
        validate_table(frame, DATA, RULES)


def test_personal_columns_are_dropped_or_salted_hashed():
    import hashlib

    from mlpipe.privacy import protect_personal_columns

    table = pd.DataFrame({"email": ["a@x.org", None, "a@x.org"], "name": ["A", "B", "C"], "age": [30, 40, 50]})
    protected = protect_personal_columns(table, {"email": "hash", "name": "drop"}, "pepper", "SALT")
    assert list(protected.columns) == ["email", "age"]
    assert protected["email"][0] == hashlib.sha256(b"peppera@x.org").hexdigest()
    assert protected["email"][0] == protected["email"][2] and protected["email"][1] is None
    other = protect_personal_columns(table, {"email": "hash"}, "another salt", "SALT")
    assert other["email"][0] != protected["email"][0]
    assert table["email"][0] == "a@x.org"  # the input is not modified
