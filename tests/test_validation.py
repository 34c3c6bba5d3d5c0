"""Validation: the data contract (pandera) — fatal whole-table rules, quarantined rows with the rules they broke."""

import re
from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpipe.config import ColumnContract, DataParams, ValidateParams, parse_params
from mlpipe.data.validation import REASON_COLUMN, validate_table
from mlpipe.errors import ConfigError, DataError

DATA = DataParams(source="t.csv", target="y", positive_label="yes", time_column="t", id_columns=["id"])
RULES = ValidateParams(max_bad_row_share=0.9, columns={"age": {"min": 0, "max": 120}})


def table(**overrides):
    base = {
        "id": [1, 2, 3, 4, 5, 6],
        "t": [2015, 2015, 2016, None, 2016, 2016],
        "age": [30, 40, -1, 50, 60, 70],
        "y": ["yes", "no", "yes", "no", None, "no"],
    }
    base.update(overrides)
    return pd.DataFrame(base)


def reasons(result) -> dict:
    return dict(zip(result.quarantine["id"], result.quarantine[REASON_COLUMN], strict=True))


def test_bad_rows_are_quarantined_with_every_rule_and_counted():
    frame = table(id=[1, 2, 3, 4, 5, 2])
    result = validate_table(frame, DATA, RULES)
    assert list(result.clean["id"]) == [1, 2]
    assert reasons(result) == {3: "age:in_range(0, 120)", 4: "t:not_null", 5: "y:not_null", 2: "id:unique"}
    assert result.report["failures_by_rule"] == {
        "age:in_range(0, 120)": 1,
        "y:not_null": 1,
        "t:not_null": 1,
        "id:unique": 1,
        "t:finite": 0,
        "y:max_length(1000)": 0,  # rules every float and text column gets
    }
    assert result.report["rows_in"] == 6 and result.report["rows_out"] == 2 and result.report["rows_quarantined"] == 4
    # nothing lost: every input row is in exactly one of the two outputs
    assert len(result.clean) + len(result.quarantine) == len(frame)


def test_a_row_breaking_several_rules_lists_them_all():
    frame = table(t=[2015, 2015, None, 2016, 2016, 2016])
    result = validate_table(frame, DATA, RULES)
    assert "age:in_range(0, 120); t:not_null" in set(result.quarantine[REASON_COLUMN])


def test_every_rule_kind_of_the_contract():
    rules = ValidateParams(
        max_bad_row_share=0.9,
        columns={
            "sex": {"allowed": ["f", "m"], "nullable": False},
            "score": {"min": 0},
            "code": {"unique": True},
        },
    )
    frame = table(
        sex=["f", "m", "x", None, "f", "m"],
        score=[1.5, -0.5, 2, 3, 4, 5],
        code=["a", "b", "c", "d", "e", "a"],
        t=[2015] * 6,
        y=["yes", "no"] * 3,
    )
    result = validate_table(frame, DATA, rules)
    assert reasons(result) == {2: "score:>=(0)", 3: "sex:allowed['f', 'm']", 4: "sex:not_null", 6: "code:unique"}
    assert result.report["failures_by_rule"]["y:not_null"] == 0, "rules nobody breaks are reported as 0"


def test_declared_dtype_casts_and_quarantines_what_would_not_survive_the_cast():
    rules = ValidateParams(max_bad_row_share=0.9, columns={"n": {"dtype": "int64"}})
    frame = table(n=["7", "2.5", "3", "three", 5.0, "6"], t=[2015] * 6, y=["yes", "no"] * 3)
    result = validate_table(frame, DATA, rules)
    assert reasons(result) == {2: "n:dtype(int64)", 4: "n:dtype(int64)"}
    assert result.clean["n"].dtype == "int64" and list(result.clean["n"]) == [7, 3, 5, 6]
    assert list(result.quarantine["n"]) == ["2.5", "three"], "quarantined rows keep their original values"


def test_a_bool_dtype_parses_words_and_quarantines_what_means_neither():
    rules = ValidateParams(max_bad_row_share=0.9, columns={"flag": {"dtype": "bool"}})
    frame = table(flag=["yes", "FALSE", "maybe", None, 1, True], t=[2015] * 6, y=["yes", "no"] * 3)
    result = validate_table(frame, DATA, rules)
    assert reasons(result) == {3: "flag:dtype(bool)", 4: "flag:dtype(bool)"}  # a bool cannot be null either
    assert result.clean["flag"].dtype == bool and list(result.clean["flag"]) == [True, False, True, True]


def test_text_in_a_ranged_column_is_quarantined_and_the_column_becomes_numeric():
    frame = table(age=[30, 40, "old", 50, 60, 70], t=[2015] * 6, y=["yes", "no"] * 3)
    result = validate_table(frame, DATA, RULES)
    assert list(result.quarantine[REASON_COLUMN]) == ["age:dtype(float64)"]
    assert result.clean["age"].dtype == "float64"


def test_composite_id_columns_must_be_unique_together():
    data = DataParams(source="t.csv", target="y", positive_label="yes", id_columns=["id", "t"])
    frame = table(id=[1, 1, 2, 2, 3, 3], t=[2015, 2016, 2015, 2015, 2015, 2016], y=["yes", "no"] * 3)
    result = validate_table(frame, data, RULES)
    assert reasons(result) == {2: "id,t:unique"}


def test_row_count_bounds_are_fatal_and_name_the_key():
    with pytest.raises(DataError, match=r"the table has 6 rows, outside validate.rows.min=10"):
        validate_table(table(), DATA, ValidateParams(max_bad_row_share=0.9, rows={"min": 10}))
    with pytest.raises(DataError, match=r"outside validate.rows.max=5"):
        validate_table(table(), DATA, ValidateParams(max_bad_row_share=0.9, rows={"max": 5}))


def test_a_column_null_limit_overrides_the_default_and_is_named():
    frame = table(note=[None, "x", "y", "z", "w", "v"])
    validate_table(frame, DATA, RULES)  # 17% null is under the 50% default
    with pytest.raises(
        DataError, match=r"column is more null than allowed: 'note' 16.7% \(over validate.columns.note.max_null_share=0.1\)"
    ):
        validate_table(frame, DATA, ValidateParams(max_bad_row_share=0.9, columns={"note": {"max_null_share": 0.1}}))


def test_contract_params_are_checked_when_loaded():
    base = {"data": {"source": "t.csv", "target": "y", "positive_label": 1}, "monitor": {"current_source": "new.csv"}}
    with pytest.raises(ConfigError, match=r"validate.columns.age: .*'integer' is not a pandas dtype"):
        parse_params({**base, "validate": {"columns": {"age": {"dtype": "integer"}}}})
    with pytest.raises(ConfigError, match=r"validate.columns.age: min must not exceed max"):
        parse_params({**base, "validate": {"columns": {"age": {"min": 5, "max": 1}}}})
    with pytest.raises(ConfigError, match=r"unknown key 'validate.columns.age.range'"):
        parse_params({**base, "validate": {"columns": {"age": {"range": [0, 1]}}}})


def test_too_many_bad_rows_fails_naming_the_limit():
    with pytest.raises(DataError, match="validate.max_bad_row_share=0.1"):
        validate_table(table(), DATA, ValidateParams(max_bad_row_share=0.1, columns=RULES.columns))


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
    with pytest.raises(DataError, match="column 'Age' named in validate.columns .* did you mean 'age'"):
        validate_table(table(), DATA, ValidateParams(columns={"Age": {"min": 0}}))


def test_mostly_null_column_is_fatal():
    frame = table(extra=[None, None, None, None, 1, None], t=[2015] * 6)
    with pytest.raises(DataError, match=r"'extra' 83.4% \(over validate.max_null_share=0.5\)"):
        validate_table(frame, DATA, RULES)


def test_personal_columns_are_dropped_or_salted_hashed():
    import hashlib

    from mlpipe.data.privacy import protect_personal_columns

    table = pd.DataFrame({"email": ["a@x.org", None, "a@x.org"], "name": ["A", "B", "C"], "age": [30, 40, 50]})
    protected = protect_personal_columns(table, {"email": "hash", "name": "drop"}, "pepper", "SALT")
    assert list(protected.columns) == ["email", "age"]
    assert protected["email"][0] == hashlib.sha256(b"peppera@x.org").hexdigest()
    assert protected["email"][0] == protected["email"][2] and protected["email"][1] is None
    other = protect_personal_columns(table, {"email": "hash"}, "another salt", "SALT")
    assert other["email"][0] != protected["email"][0]
    assert table["email"][0] == "a@x.org"  # the input is not modified


def test_infinite_numbers_and_over_long_text_are_quarantined_by_default():
    frame = pd.DataFrame(
        {
            "id": range(6),
            "t": [1.0] * 6,
            "y": ["a", "b"] * 3,
            "x": [1.0, np.inf, -np.inf, np.nan, 2.0, 3.0],
            "note": ["ok", "z" * 1001, None, "fine", "z" * 1000, "x"],
        }
    )
    loose = ValidateParams(max_bad_row_share=1.0)
    result = validate_table(frame, DataParams(source="s", target="y", positive_label="a"), loose)
    assert reasons(result) == {1: "x:finite; note:max_length(1000)", 2: "x:finite"}
    assert result.report["failures_by_rule"]["x:finite"] == 2 and result.report["failures_by_rule"]["note:max_length(1000)"] == 1
    assert list(result.clean["id"]) == [0, 3, 4, 5]

    allowed = ValidateParams(
        max_bad_row_share=1.0, max_text_length=5000, columns={"x": ColumnContract(finite=False), "note": ColumnContract(max_length=2)}
    )
    result = validate_table(frame, DataParams(source="s", target="y", positive_label="a"), allowed)
    assert reasons(result) == {1: "note:max_length(2)", 3: "note:max_length(2)", 4: "note:max_length(2)"}


def test_personal_rules_apply_on_every_entry_path_once():
    from mlpipe.data.privacy import apply_personal_rules

    data = DataParams(source="s", target="y", positive_label=1, personal_columns={"email": "hash", "full_name": "drop"})
    batch = pd.DataFrame({"email": ["a@x.org", "b@x.org"], "full_name": ["A", "B"], "y": [1, 0]})
    protected = apply_personal_rules(batch, data, "data/incoming", environ={"MLPIPE_PII_SALT": "pepper"})
    assert list(protected.columns) == ["email", "y"] and protected["email"].str.fullmatch("[0-9a-f]{64}").all()
    # Rows that already came through an entry path (a snapshot read again by ingest) are not hashed twice.
    again = apply_personal_rules(protected, data, "data/snapshots/x.parquet", environ={"MLPIPE_PII_SALT": "pepper"})
    pd.testing.assert_frame_equal(again, protected)
    # A batch without the personal columns passes; one with a misspelt copy of them does not.
    assert list(apply_personal_rules(batch[["y"]], data, "b", environ={}).columns) == ["y"]
    with pytest.raises(DataError, match="names 'email', which is not in data/incoming; did you mean 'e_mail'"):
        apply_personal_rules(batch.rename(columns={"email": "e_mail"}), data, "data/incoming", environ={"MLPIPE_PII_SALT": "p"})
    with pytest.raises(ConfigError, match="MLPIPE_PII_SALT"):
        apply_personal_rules(batch, data, "data/incoming", environ={})


def test_rows_arriving_after_training_meet_the_row_rules_but_may_be_unlabelled_and_small():
    from mlpipe.data.validation import validate_rows
    from mlpipe.monitor.retrain import quality_reasons

    batch = pd.DataFrame(
        {
            "id": [1, 2, 3, 3],
            "t": [2016, 2016, None, 2016],
            "y": [None, None, None, None],
            "age": [30, 500, 40, 50],
            "x": [1.0, 2.0, np.inf, 3.0],
        }
    )
    result = validate_rows(batch, DATA, RULES)
    assert list(result.quarantine[REASON_COLUMN]) == ["age:in_range(0, 120)", "t:not_null; x:finite", "id:unique"]
    assert list(result.clean["id"]) == [1] and len(result.clean) + len(result.quarantine) == len(batch)
    assert result.report["bad_row_share"] == 0.75
    (reason,) = quality_reasons(result.report, 0.01)
    assert reason.startswith("current data: 3 of 4 rows (75.0%) broke the data contract") and "validate.max_bad_row_share=0.01" in reason
    assert quality_reasons(validate_rows(batch.head(1), DATA, RULES).report, 0.01) == []


# The whole-table rules name every broken limit at once, and each fix their message gives works
# when applied as written (the old message named one column per run and advised
# data.drop_columns, which did not exempt the column).

NULLS = re.compile(r"'(\w+)' (\d+\.\d)% \(over ([\w.]+)=")


def nulls_table(nulls: dict[str, int], rows: int) -> pd.DataFrame:
    """`rows` rows of a binary target `y` and one float column per entry, with that many nulls at the end."""
    columns = {name: [1.0] * (rows - count) + [np.nan] * count for name, count in nulls.items()}
    return pd.DataFrame({"y": [0, 1] * (rows // 2) + [0] * (rows % 2), **columns})


def null_message(frame: pd.DataFrame, data: DataParams, rules: ValidateParams) -> str | None:
    try:
        validate_table(frame, data, rules)
    except DataError as exc:
        return str(exc)
    return None


def with_rules(rules: ValidateParams, **changes) -> ValidateParams:
    return ValidateParams.model_validate({**rules.model_dump(), **changes})


NULL_DATA = DataParams(source="t.csv", target="y", positive_label=1)


def test_every_column_over_its_null_limit_is_named_in_one_message_most_null_first():
    frame = nulls_table({f"c{number:02d}": 60 + number for number in range(13)} | {"fine": 10}, rows=100)
    message = null_message(frame, NULL_DATA, ValidateParams())
    assert message.startswith("13 columns are more null than allowed: 'c12' 72.0% (over validate.max_null_share=0.5), 'c11' 71.0%")
    assert [column for column, _, _ in NULLS.findall(message)] == [f"c{number:02d}" for number in range(12, 2, -1)]
    assert "and 3 more" in message and "'fine'" not in message and "\n" not in message
    # The rest are named on the next run, once the ten shown are dealt with.
    dropped = NULL_DATA.model_copy(update={"drop_columns": [column for column, _, _ in NULLS.findall(message)]})
    assert [column for column, _, _ in NULLS.findall(null_message(frame, dropped, ValidateParams()))] == ["c02", "c01", "c00"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(2, 300),
    shares=st.lists(st.floats(0, 1), min_size=1, max_size=8),
    default=st.floats(0, 0.95),
    declared=st.lists(st.one_of(st.none(), st.floats(0, 0.95)), min_size=8, max_size=8),
)
def test_each_fix_the_null_message_gives_makes_validate_pass(rows, shares, default, declared):
    nulls = {f"c{number}": round(share * rows) for number, share in enumerate(shares)}
    default = round(default, 3)
    columns = {
        f"c{number}": {"max_null_share": round(limit, 3)} for number, limit in enumerate(declared[: len(shares)]) if limit is not None
    }
    rules = ValidateParams(max_null_share=default, columns=columns)
    frame = nulls_table(nulls, rows)
    message = null_message(frame, NULL_DATA, rules)
    over = {
        column: count / rows for column, count in nulls.items() if count / rows > columns.get(column, {}).get("max_null_share", default)
    }
    if not over:
        assert message is None
        return
    found = NULLS.findall(message)
    assert {column for column, _, _ in found} == set(over) and len(found) == len(over)
    assert [float(share) for _, share, _ in found] == sorted((float(share) for _, share, _ in found), reverse=True)
    # (a) The columns in data.drop_columns.
    assert "data.drop_columns" in message
    assert null_message(frame, NULL_DATA.model_copy(update={"drop_columns": list(over)}), rules) is None
    # (b) Each its own limit: the share shown, as a fraction.
    own = {**columns, **{column: {"max_null_share": round(float(share) / 100, 3)} for column, share, _ in found}}
    assert null_message(frame, NULL_DATA, with_rules(rules, columns=own)) is None
    # (c) validate.max_null_share raised as the message says: every column over the default passes.
    by_default = [column for column, _, key in found if key == "validate.max_null_share"]
    if by_default:
        raised = float(re.search(r"raise validate.max_null_share to ([\d.]+)", message).group(1))
        left = null_message(frame, NULL_DATA, with_rules(rules, max_null_share=raised))
        assert left is None or {column for column, _, _ in NULLS.findall(left)} == set(over) - set(by_default)
    else:
        assert "raise validate.max_null_share" not in message


def test_a_dropped_column_is_exempt_from_null_limits_and_implied_rules_but_not_from_declared_ones():
    frame = nulls_table({"empty": 6}, rows=6).assign(note=["z" * 2000] * 6, ratio=[np.inf] * 6, code=["a", "a", "b", "a", "a", "a"])
    rules = ValidateParams(max_null_share=0.5, max_bad_row_share=1.0, columns={"empty": {"max_null_share": 0.1}})
    data = NULL_DATA.model_copy(update={"drop_columns": ["empty", "note", "ratio", "code"]})
    result = validate_table(frame, data, rules)
    assert len(result.clean) == 6 and result.report["null_share"] == {"empty": 1.0}
    assert not any(rule.startswith(("note:", "ratio:")) for rule in result.report["failures_by_rule"])
    declared = validate_table(frame, data, with_rules(rules, columns={"code": {"allowed": ["a"]}}))
    assert reasons_of(declared) == ["code:allowed['a']"]
    # Rows arriving later (predict's batches) follow the same rule.
    from mlpipe.data.validation import validate_rows

    assert validate_rows(frame, data, rules).report["rows_quarantined"] == 0


def reasons_of(result) -> list[str]:
    return result.quarantine[REASON_COLUMN].tolist()


@pytest.mark.parametrize(("bound", "rows"), [("min", 10), ("max", 5)])
def test_each_fix_the_row_count_message_gives_makes_validate_pass(bound, rows):
    rules = ValidateParams(max_bad_row_share=0.9, rows={bound: rows}, columns=RULES.columns)
    message = null_message(table(), DATA, rules)
    assert message.startswith(f"the table has 6 rows, outside validate.rows.{bound}={rows}")
    value = int(re.search(rf"set validate.rows.{bound} to (\d+)", message).group(1))
    assert null_message(table(), DATA, with_rules(rules, rows={bound: value})) is None
    assert "(or null for no bound)" in message and null_message(table(), DATA, with_rules(rules, rows={bound: None})) is None


def test_a_row_count_and_null_columns_out_of_bounds_are_one_message():
    message = null_message(nulls_table({"a": 5, "b": 4}, rows=6), NULL_DATA, ValidateParams(rows={"min": 10}))
    assert message.startswith("the table has 6 rows, outside validate.rows.min=10") and "; and 2 columns are more null" in message


def test_a_table_in_parts_meets_the_same_table_rules_and_exemptions(tmp_path):
    """Null shares and the row count from the parts' merged counts: the same message and report
    as the table in one piece."""
    from mlpipe.data.validation import validate

    frame = nulls_table({"a": 50, "b": 45, "c": 10}, rows=60).assign(note=["z" * 2000] * 60)
    raw = tmp_path / "raw"
    raw.mkdir()
    for index, start in enumerate(range(0, 60, 20)):
        frame.iloc[start : start + 20].to_parquet(raw / f"part-{index}.parquet", index=False)
    outputs = (tmp_path / "clean", tmp_path / "quarantine")
    with pytest.raises(DataError) as failed:
        validate(raw, *outputs, NULL_DATA, ValidateParams(max_bad_row_share=1.0))
    assert str(failed.value) == null_message(frame, NULL_DATA, ValidateParams(max_bad_row_share=1.0))
    dropped = NULL_DATA.model_copy(update={"drop_columns": ["a", "b", "note"]})
    report = validate(raw, *outputs, dropped, ValidateParams())
    assert report["rows_quarantined"] == 0 and report == validate_table(frame, dropped, ValidateParams()).report


# A time value that does not parse is named with its row, never a good value as the example (the
# old message showed the column's first value, a valid date).


@settings(max_examples=60, deadline=None)
@given(
    dates=st.lists(st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 1, 1)), min_size=1, max_size=200),
    bad=st.text(alphabet="qwkxv!#? ", min_size=1, max_size=12).filter(str.strip),
    where=st.integers(0, 10_000),
    with_time=st.booleans(),
)
def test_an_unparsable_time_is_named_with_its_row(dates, bad, where, with_time):
    from mlpipe.data.times import time_values

    values = [f"{day:%Y-%m-%d}" + (" 06:03:42" if with_time else "") for day in dates]
    position = where % (len(values) + 1)
    values.insert(position, bad)
    with pytest.raises(DataError) as failed:
        time_values(pd.Series(values, name="screening_date"))
    message = str(failed.value)
    assert f"time column 'screening_date': row {position + 1:,} holds {bad!r}, which is not a date (1 row in all)" in message
    assert values[0 if position else 1] not in message  # no good value as an example


def test_validate_names_an_unparsable_time_with_its_row_in_the_source_before_the_split_meets_it():
    frame = table(t=["2015-01-01", "2015-02-01", "2016-03-01", "2016-13-45", "2016-05-01", "n/a"])
    data = DataParams(source="t.csv", target="y", positive_label="yes", time_column="t", id_columns=["id"])
    with pytest.raises(DataError, match=r"time column 't': row 4 holds '2016-13-45', which is not a date \(2 rows in all\)"):
        validate_table(frame, data, RULES)
    # A date in another format than the column's first one is named as such (pandas parses a column in one format).
    with pytest.raises(DataError, match=r"row 2 holds '03/04/2016', a date in another format than the column's first date"):
        validate_table(table(t=["2015-01-01", "03/04/2016", *["2016-01-01"] * 4]), data, RULES)
    # A declared dtype casts the column row by row instead: the bad rows are quarantined.
    cast = validate_table(frame, data, ValidateParams(max_bad_row_share=0.9, columns={**RULES.columns, "t": {"dtype": "datetime64[ns]"}}))
    assert sorted(cast.quarantine.loc[cast.quarantine[REASON_COLUMN].str.contains("t:dtype"), "t"]) == ["2016-13-45", "n/a"]


def test_every_reader_of_the_time_column_names_the_bad_value():
    from mlpipe.config import DriftWindow, SplitParams
    from mlpipe.data.split import split_table
    from mlpipe.model.evaluation import period_labels
    from mlpipe.monitor.drift import window_rows

    times = pd.Series(["2015-01-01", "2015-06-01", "not a date", "2016-01-01"], name="t")
    frame = pd.DataFrame({"t": times, "y": [0, 1, 0, 1]})
    expected = r"time column 't': row 3 holds 'not a date', which is not a date"
    with pytest.raises(DataError, match=expected):
        split_table(frame, SplitParams(strategy="time", train_until="2015-12-31"), "t", "y")
    with pytest.raises(DataError, match=expected):
        period_labels(times, "Y", 10)
    with pytest.raises(DataError, match=expected):
        window_rows(frame, "t", "2016", DriftWindow(start="2016-01-01"))


def test_text_in_a_numeric_column_is_shown_by_its_text_values():
    from mlpipe.config import FeaturesParams
    from mlpipe.data.features import build_schema

    frame = pd.DataFrame({"y": [0, 1] * 3, "count": ["1", "2", "3", "4", "many", "5"]})
    with pytest.raises(DataError, match=r"column 'count' holds text \(\['many'\]\)"):
        build_schema(frame, DataParams(source="s", target="y", positive_label=1, categorical_columns=[]), FeaturesParams())


def allowed_rules(allowed: list) -> ValidateParams:
    return ValidateParams(max_bad_row_share=1.0, columns={"code": {"allowed": allowed}})


ALLOWED_DATA = DataParams(source="s", target="y", positive_label=1)


def test_allowed_values_hold_for_numbers_read_as_text_and_text_that_names_them():
    """Issue 28: a column read as text because batches disagree on its type (3 in one, 'A-1' in
    another) held '1', which `allowed: [1, 2, 3]` refused. A value is allowed when it is the same
    category label as an allowed one (`schema.category_label`): 1, 1.0 and '1' are one label; '1.0'
    and True are others, as they are other levels of a categorical feature."""
    mixed = pd.DataFrame({"code": pd.Series(["1", "2", 3, 3.0, "1.0", "4", True, None, "3"], dtype=object), "y": [0, 1] * 4 + [0]})
    result = validate_table(mixed, ALLOWED_DATA, allowed_rules([1, 2, 3]))
    assert result.clean["code"].tolist() == ["1", "2", 3, 3.0, None, "3"]
    assert result.quarantine["code"].tolist() == ["1.0", "4", True]
    numbers = pd.DataFrame({"code": [1.0, 2.0, 3.0, np.nan], "y": [0, 1, 0, 1]})
    assert validate_table(numbers, ALLOWED_DATA, allowed_rules(["1", "2"])).quarantine["code"].tolist() == [3.0]
    from mlpipe.data.validation import validate_rows  # predict's batches: the same rule

    assert validate_rows(mixed, ALLOWED_DATA, allowed_rules([1, 2, 3])).quarantine["code"].tolist() == ["1.0", "4", True]


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.integers(-3, 3) | st.floats(-3, 3).map(lambda x: round(x, 1)) | st.booleans(), min_size=1, max_size=12),
    allowed=st.lists(
        st.integers(-3, 3)
        | st.floats(-3, 3).map(lambda x: round(x, 1))
        | st.booleans()
        | st.sampled_from(["1", "-2", "0.5", "1.0", "True", "x"]),
        min_size=1,
        max_size=5,
    ),
)
def test_an_allowed_rule_keeps_the_same_rows_whether_the_values_are_numbers_or_read_as_text(values, allowed):
    """The rows `allowed` refuses are the same for a column of numbers (or booleans) and for the
    same column read as text (`schema.category_texts`, what mixed batches become), and they are
    the rows whose label is not an allowed one's."""
    from mlpipe.data.schema import category_label, category_texts
    from mlpipe.data.validation import row_rule_failures

    contracts = {"code": ColumnContract(allowed=allowed)}
    rule = f"code:allowed{allowed}"
    native = pd.DataFrame({"code": pd.Series(values, dtype=object)})
    refused = row_rule_failures(native, contracts, [], 1000)[rule].tolist()
    assert row_rule_failures(native.assign(code=category_texts(native["code"])), contracts, [], 1000)[rule].tolist() == refused
    labels = {category_label(value) for value in allowed}
    assert refused == [category_label(value) not in labels for value in values]


def test_allowed_applies_to_parts_read_as_text(tmp_path):
    """Parts that disagree on a column's type are read as text (`unify_parts`, as ingest writes
    them); `validate` checks `allowed` on them with the same rule."""
    from mlpipe.data.validation import validate
    from mlpipe.engine.parts import unify_parts

    raw = tmp_path / "raw"
    raw.mkdir()
    pd.DataFrame({"code": [1, 2, 3, 4], "y": [0, 1, 0, 1]}).to_parquet(raw / "part-0.parquet", index=False)
    pd.DataFrame({"code": ["1", "A-1", "2", "3"], "y": [1, 0, 1, 0]}).to_parquet(raw / "part-1.parquet", index=False)
    import pyarrow.parquet as pq

    unify_parts(raw, {path: pq.read_schema(path) for path in sorted(raw.glob("*.parquet"))}, mixed_as_text=True)
    report = validate(raw, tmp_path / "clean", tmp_path / "quarantine", ALLOWED_DATA, allowed_rules([1, 2, 3]))
    assert report["rows_quarantined"] == 2 and report["failures_by_rule"]["code:allowed[1, 2, 3]"] == 2


def test_category_labels_keep_true_apart_from_one_in_a_mixed_column():
    """`pd.factorize` takes True for 1 (as `==` does): `category_strings` labels such a column value by value."""
    from mlpipe.data.schema import category_strings

    values = pd.Series([1, True, 0.0, False, "1", None], dtype=object)
    assert category_strings(values).astype(object).tolist() == ["1", "True", "0", "False", "1", np.nan]


def parts_of(frame: pd.DataFrame, cuts: list[int], folder) -> None:
    """`frame` as a folder of Parquet parts, cut before each row position in `cuts`."""
    folder.mkdir()
    bounds = [0, *sorted(set(cuts)), len(frame)]
    for index, (start, end) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        frame.iloc[start:end].to_parquet(folder / f"part-{index:05d}.parquet", index=False)


def test_a_column_declared_unique_is_unique_across_parts_as_in_one_table(tmp_path):
    """A value of a `unique` column (not an id) repeated in a later part is quarantined, as in one
    table (part by part, it was checked within each part only)."""
    from mlpipe.data.validation import validate

    frame = pd.DataFrame({"code": [1, 2, 3, 4, 1, 5], "y": [0, 1, 0, 1, 0, 1]})
    parts_of(frame, [3], tmp_path / "raw")
    data, rules = (
        DataParams(source="s", target="y", positive_label=1),
        ValidateParams(max_bad_row_share=0.5, columns={"code": {"unique": True}}),
    )
    report = validate(tmp_path / "raw", tmp_path / "clean", tmp_path / "quarantine", data, rules)
    assert report == validate_table(frame, data, rules).report and report["failures_by_rule"]["code:unique"] == 1
    assert pd.read_parquet(tmp_path / "quarantine")[REASON_COLUMN].tolist() == ["code:unique"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 6), st.sampled_from(["a", "b"]), st.integers(-2, 9), st.sampled_from(["1", "2", "x"]), st.integers(0, 1)),
        min_size=4,
        max_size=30,
    ),
    cuts=st.lists(st.integers(1, 29), max_size=4),
    composite=st.booleans(),
)
def test_validate_on_any_cut_into_parts_gives_the_one_table_result(tmp_path_factory, rows, cuts, composite):
    """Ids repeated within and across parts (one id column or two), a declared unique column, a
    range and a dtype rule: the parts' clean and quarantined rows, read back as one table, and the
    report are the one-part case's, wherever the table is cut."""
    from mlpipe.data.validation import validate

    frame = pd.DataFrame(rows, columns=["id", "site", "age", "code", "y"]).assign(y=lambda t: np.arange(len(t)) % 2)
    folder = tmp_path_factory.mktemp("parts")
    parts_of(frame, [cut for cut in cuts if cut < len(frame)], folder / "raw")
    data = DataParams(source="s", target="y", positive_label=1, id_columns=["id", "site"] if composite else ["id"])
    rules = ValidateParams(
        max_bad_row_share=1.0, columns={"age": {"min": 0}, "code": {"dtype": "int64"}, "site": {"unique": not composite}}
    )
    whole = validate_table(frame, data, rules)
    report = validate(folder / "raw", folder / "clean", folder / "quarantine", data, rules)
    assert report == whole.report
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "clean"), whole.clean)
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "quarantine"), whole.quarantine)
