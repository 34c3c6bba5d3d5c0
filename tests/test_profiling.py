"""`make init`'s profile of a table (`mlpipe.tools.profiling`): the roles a person would pick, personal
data found by name and by value, TIME refused when it is not a time, and a contract that always
passes on the table it was inferred from."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import messy_table as messy
from conftest import DEFAULT_DATA, ROOT
from mlpipe.config import parse_params, read_params_text
from mlpipe.data.privacy import apply_personal_rules
from mlpipe.data.sources import read_table
from mlpipe.data.validation import validate_table
from mlpipe.errors import DataError
from mlpipe.tools.init import rewrite_params, yaml_round_trip
from mlpipe.tools.profiling import personal_columns, personal_name, profile_table
from test_init import breast_cancer

PROPERTY = settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), print_blob=True)


def as_read(table: pd.DataFrame) -> pd.DataFrame:
    """The table as `make init` reads it back from a CSV file (text dates stay text, nulls widen ints)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "table.csv"
        table.to_csv(path, index=False)
        return read_table(path)


@pytest.fixture(scope="module")
def messy_profile():
    return profile_table(as_read(messy.messy_people_table()), messy.TARGET)


def test_messy_table_gets_the_roles_a_person_would_pick(messy_profile):
    data, dropped = messy_profile.data, messy_profile.dropped
    assert set(data["personal_columns"]) == set(messy.PERSONAL)
    assert data["drop_columns"] == list(dropped)
    for column in [*messy.TEXT_DATES, *messy.ALL_NULL, *messy.CONSTANT]:
        assert column in dropped, column
    assert {column: dropped[column] for column in ["c_jail_in", "violent_recid", "type_of_assessment"]} == {
        "c_jail_in": "a date stored as text",
        "violent_recid": "all null",
        "type_of_assessment": "constant ('Risk of Recidivism')",
    }
    assert dropped["vr_case_number"] == "case numbers: unique per row", "present only for some rows, unique where present"
    assert data["id_columns"] == ["id", "c_case_number"], "complete unique keys only: validate enforces uniqueness on them"
    not_categorical = {*messy.TEXT_DATES, *messy.CASE_NUMBERS, *messy.PERSONAL, *messy.ALL_NULL, *messy.CONSTANT}
    assert not set(data["categorical_columns"]) & not_categorical
    assert not set(dropped) & set(messy.HONEST), "an honest column was dropped"
    for column in {*messy.TEXT_DATES, *messy.ALL_NULL, *messy.CONSTANT, "vr_case_number"}:
        assert f"drop '{column}': {dropped[column]}" in messy_profile.decisions


def test_a_column_over_the_null_limit_gets_its_own_limit_with_headroom():
    rows = 400
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"sparse": np.where(rng.random(rows) < 0.83, np.nan, rng.normal(size=rows)), "y": np.arange(rows) % 2})
    profile = profile_table(table, "y")
    share = table["sparse"].isna().mean()
    limit = profile.contract["sparse"]["max_null_share"]
    assert share < limit <= min(1.0, share + 0.1)
    assert f"'sparse' is {share:.1%} null, above validate.max_null_share=0.5: validate.columns.sparse.max_null_share {limit}" in (
        profile.decisions
    )
    assert "max_null_share" not in profile_table(table, "y", max_null_share=0.9).contract["sparse"], "under the limit given"


# A generated messy table: random mixes of the kinds of columns real tables have.
KINDS = ["numeric", "sparse", "integer", "constant", "all_null", "text_dates", "timestamps", "year", "id", "codes", "case_numbers"]
KINDS += ["free_text", "rare_levels", "boolean", "sparse_boolean", "long_text"]


def column_of(kind: str, rows: int, rng: np.random.Generator) -> np.ndarray | list:
    nulls = rng.random(rows) < rng.uniform(0, 0.95)
    if kind == "numeric":
        return np.where(rng.random(rows) < rng.uniform(0, 0.3), np.nan, rng.normal(50, 20, rows).round(3))
    if kind == "sparse":
        return np.where(nulls | (rng.random(rows) < 0.6), np.nan, rng.exponential(3, rows))
    if kind == "integer":
        return rng.integers(-5, 500, rows)
    if kind == "constant":
        return np.where(rng.random(rows) < 0.5 * rng.integers(0, 2), None, "Risk of Recidivism")
    if kind == "all_null":
        return np.full(rows, np.nan)
    if kind in ("text_dates", "timestamps"):
        times = pd.Timestamp("2013-01-01") + pd.to_timedelta(rng.integers(0, 86_400 * 700, rows), unit="s")
        text = times.strftime("%Y-%m-%d" if kind == "text_dates" else "%Y-%m-%d %H:%M:%S")
        return np.where(nulls, None, text)
    if kind == "year":
        return np.sort(rng.integers(2010, 2020, rows))
    if kind == "id":
        return rng.permutation(rows) + 1
    if kind == "codes":
        return [f"C{number:06d}" for number in rng.permutation(rows)]
    if kind == "case_numbers":
        return [None if null else f"{number + 10_000_000}CF10A" for number, null in zip(rng.permutation(rows), nulls, strict=True)]
    if kind == "free_text":
        words = np.array(["late", "payment", "called", "twice", "no", "answer", "moved", "away", "new", "job", "again"])
        return [" ".join(rng.choice(words, 5)) for _ in range(rows)]
    if kind == "rare_levels":
        return np.where(rng.random(rows) < 0.1, None, rng.choice(["a", "b", "c", "rare1", "rare2"], rows, p=[0.5, 0.3, 0.18, 0.015, 0.005]))
    if kind == "boolean":
        return rng.random(rows) < 0.3
    if kind == "sparse_boolean":
        return np.where(nulls, None, np.where(rng.random(rows) < 0.5, "True", "False"))
    return ["x" * int(length) for length in rng.integers(500, 1500, rows)]  # long_text


@st.composite
def messy_tables(draw) -> pd.DataFrame:
    rows = draw(st.integers(60, 400))
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=10))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    table = {f"{kind}_{index}": column_of(kind, rows, rng) for index, kind in enumerate(kinds)}
    labels = draw(st.sampled_from([(0, 1), ("no", "yes")]))
    target = np.where(rng.random(rows) < rng.uniform(0.1, 0.9), labels[1], labels[0])
    target[:2] = labels  # both classes, always
    return pd.DataFrame({**table, "target": target})


@PROPERTY
@given(messy_tables(), st.sampled_from([0.1, 0.5, 0.9]))
def test_init_contract_always_passes_on_the_table_it_was_inferred_from(generated, max_null_share):
    table = as_read(generated)
    try:
        profile = profile_table(table, "target", max_null_share=max_null_share)
    except DataError as refused:  # init refuses a table it would leave without a feature, and writes nothing
        assert "columns but the target were dropped" in str(refused)
        return
    text = rewrite_params((ROOT / "params.yaml").read_text(), profile, "data/table.csv", None, out=lambda line: None)
    params = parse_params(yaml_round_trip().load(text))
    validation = params.validate.model_copy(update={"max_null_share": max_null_share})
    ingested = apply_personal_rules(table, params.data, origin="table.csv")
    buffer = io.BytesIO()
    ingested.to_parquet(buffer, index=False)  # as ingest hands it to validate
    result = validate_table(pd.read_parquet(buffer), params.data, validation)  # a DataError fails the test
    assert result.report["rows_quarantined"] == 0, result.report["failures_by_rule"]
    assert params.data.drop_columns == list(profile.dropped)


# Personal data: by name, and by value.
PERSONAL_NAMES = ["first", "last", "name", "fname", "lname", "FNAME", "first_name", "FirstName", "LAST NAME", "surname", "forename"]
PERSONAL_NAMES += ["given_name", "middle_name", "full name", "customer_name", "dob", "DOB", "date_of_birth", "birthday", "birth_date"]
PERSONAL_NAMES += ["BirthDate", "address", "street", "home_address", "zip", "postal_code", "phone", "phone_number", "Mobile"]
PERSONAL_NAMES += ["email", "e-mail", "EmailAddress", "ssn", "SSN", "national_id", "passport_no", "nino", "tax_id"]
PERSONAL_NAMES += ["social_security_number", "ip", "ip_address", "client_ip", "IPAddress"]
NOT_PERSONAL_NAMES = ["product_name", "file_name", "age", "last_login", "first_purchase", "city", "state", "country", "mean radius"]
NOT_PERSONAL_NAMES += ["birth_weight", "phonetic_score", "tip", "zipper", "hotel", "ship_date", "AGEP", "SCHL", "RELP", "personal_status"]
NOT_PERSONAL_NAMES += ["c_charge_desc", "days_b_screening_arrest", "juv_fel_count", "decile_score", "nameplate", "lastly", "surnamed"]


@pytest.mark.parametrize("name", PERSONAL_NAMES)
def test_a_personal_name_is_found(name):
    assert personal_name(name) is not None


@pytest.mark.parametrize("name", NOT_PERSONAL_NAMES)
def test_an_ordinary_name_is_not_personal(name):
    assert personal_name(name) is None


def personal_values(kind: str, rows: int, rng: np.random.Generator) -> list[str]:
    numbers = rng.integers(0, 10**9, rows)
    if kind == "email":
        return [f"user{number}@mail{number % 7}.example.org" for number in numbers]
    if kind == "phone":
        formats = ["+1 (555) {a:03d}-{b:04d}", "555-{a:03d}-{b:04d}", "+44 20 7{a:03d} {b:04d}", "0{a:03d} {b:04d} 12"]
        return [rng.choice(formats).format(a=number % 1000, b=number % 10_000) for number in numbers]
    if kind == "ssn":
        return [f"{number % 900 + 100:03d}-{number % 90 + 10:02d}-{number % 9000 + 1000:04d}" for number in numbers]
    if kind == "ip":
        return [f"{number % 223 + 1}.{number % 256}.{number // 7 % 256}.{number // 11 % 256}" for number in numbers]
    if kind == "street":
        streets = ["Main Street", "Oak Ave", "Elm Rd", "Park Lane", "Sunset Blvd", "High St"]
        return [f"{number % 9000 + 1} {rng.choice(streets)}" for number in numbers]
    births = pd.Timestamp("1940-01-01") + pd.to_timedelta(rng.integers(0, 365 * 60, rows), unit="D")  # birth dates
    return list(births.strftime("%Y-%m-%d"))


@PROPERTY
@given(st.sampled_from(["email", "phone", "ssn", "ip", "street", "birth"]), st.integers(50, 300), st.integers(0, 2**32 - 1))
def test_personal_values_are_found_whatever_the_column_is_called(kind, rows, seed):
    rng = np.random.default_rng(seed)
    values = personal_values(kind, rows, rng)
    table = pd.DataFrame({"col_7": np.where(rng.random(rows) < 0.2, None, values)})
    assert list(personal_columns(table)) == ["col_7"], kind


def ordinary_values(kind: str, rows: int, rng: np.random.Generator) -> pd.Series:
    if kind == "german_codes":  # the German credit table's coded attributes
        return pd.Series(rng.choice([f"A{number}" for number in [11, 12, 13, 14, 191, 192, 201, 202, 40, 41, 410]], rows))
    if kind == "categories":
        return pd.Series(rng.choice(["Low", "Medium", "High", "Greater than 45", "25 - 45", "(F3)"], rows))
    if kind == "years":
        return pd.Series(rng.integers(1950, 2030, rows))
    if kind == "year_text":
        return pd.Series(rng.integers(1950, 2030, rows).astype(str))
    if kind == "event_dates":  # a few years of sign-ups or orders, as text
        return pd.Series((pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 365 * 8, rows), unit="D")).strftime("%Y-%m-%d"))
    if kind == "digit_ids":
        return pd.Series([f"{number:09d}" for number in rng.integers(0, 10**9, rows)])
    if kind == "amounts":
        return pd.Series((rng.normal(0, 10**6, rows)).round(2).astype(str))
    if kind == "case_numbers":
        return pd.Series([f"{number}CF10A" for number in rng.integers(10**7, 10**8, rows)])
    return pd.Series(rng.normal(size=rows))  # numbers


@PROPERTY
@given(
    st.sampled_from(["german_codes", "categories", "years", "year_text", "event_dates", "digit_ids", "amounts", "case_numbers", "numbers"]),
    st.sampled_from(["checking_status", "Attribute19", "x", "purpose", "col_3"]),
    st.integers(20, 300),
    st.integers(0, 2**32 - 1),
)
def test_ordinary_values_are_not_personal(kind, name, rows, seed):
    values = ordinary_values(kind, rows, np.random.default_rng(seed))
    assert personal_columns(pd.DataFrame({name: values})) == {}


@pytest.mark.parametrize("name", ["telephone", "own_telephone", "Attribute19"])
def test_a_yes_no_flag_about_a_telephone_is_not_a_phone_number(name):
    """The German credit table's attribute 19: A191 (none) or A192 (yes, registered)."""
    codes = pd.Series(np.random.default_rng(0).choice(["A191", "A192"], 1000))
    assert personal_columns(pd.DataFrame({name: codes})) == {}


def test_the_default_data_and_breast_cancer_have_no_personal_column():
    assert personal_columns(pd.read_parquet(DEFAULT_DATA)) == {}
    assert personal_columns(breast_cancer()) == {}


# TIME must be a time.
def timed_table(rows: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows),
            "score": rng.normal(size=rows),
            "month": np.sort(rng.integers(1, 25, rows)),
            "year": np.sort(rng.integers(2010, 2020, rows)),
            "visit": np.sort(rng.integers(2010, 2020, rows)),
            "when": (pd.Timestamp("2020-01-01") + pd.to_timedelta(np.sort(rng.integers(0, 900, rows)), unit="D")).strftime("%Y-%m-%d"),
            "stamp": pd.Timestamp("2020-01-01") + pd.to_timedelta(np.sort(rng.integers(0, 900, rows)), unit="D"),
            "region": rng.choice(["north", "south"], rows),
            "flag": rng.random(rows) < 0.5,
            "y": np.arange(rows) % 2,
        }
    )


@pytest.mark.parametrize("column", ["month", "year", "visit", "when", "stamp"])
def test_a_time_given_is_taken_when_it_is_one(column):
    profile = profile_table(timed_table(), "y", time_column=column)
    assert profile.data["time_column"] == column


@pytest.mark.parametrize(
    ("column", "why"),
    [
        ("age", "its values run from 18 to 79, which are not years, and its name does not say it counts periods"),
        ("score", "which are not years"),
        ("region", "(row 1) is not a date"),
        ("flag", "it holds yes/no values"),
    ],
)
def test_a_time_given_that_is_not_one_is_refused(column, why):
    with pytest.raises(DataError) as refused:
        profile_table(timed_table(), "y", time_column=column)
    message = str(refused.value)
    assert message.startswith(f"TIME={column!r} is not a time: ") and why in message and "\n" not in message
    assert "TIME takes a column of dates (2013-08-14, datetimes), of years (1800-2200) or of period numbers named like period" in message


def test_an_unparsable_date_in_a_time_given_is_named():
    table = timed_table()
    table.loc[7, "when"] = "2020-13-45"
    with pytest.raises(DataError, match=r"TIME='when' is not a time: its value '2020-13-45' \(row 8\) is not a date"):
        profile_table(table, "y", time_column="when")


def test_make_init_time_age_is_one_line_and_writes_nothing(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_bytes((ROOT / "params.yaml").read_bytes())
    timed_table().to_csv(tmp_path / "table.csv", index=False)
    done = subprocess.run(
        [sys.executable, "-m", "mlpipe.tools.init", "--data", "table.csv", "--target", "y", "--time", "age"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode != 0
    assert done.stderr.startswith("error: init: TIME='age' is not a time: its values run from 18 to 79") and done.stderr.count("\n") == 1
    assert params.read_bytes() == (ROOT / "params.yaml").read_bytes()


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("y", "TIME='y' is the target: give the column that orders rows in time"),
        ("dob", "TIME='dob' looks like personal data (named like a birth date), which is dropped at ingest"),
    ],
)
def test_a_time_given_that_no_stage_could_use_is_refused(column, message):
    table = timed_table().assign(dob=lambda frame: pd.Timestamp("1950-01-01") + pd.to_timedelta(frame["age"] * 200, unit="D"))
    with pytest.raises(DataError, match=re.escape(message)):
        profile_table(table, "y", time_column=column)


@pytest.mark.parametrize(
    ("labels", "given", "expected"),
    [
        ([0.0, 1.0], None, 1.0),  # a CSV target with a missing value is read as floats
        ([0.0, 1.0], "1", 1.0),
        ([0.0, 1.0], "1.0", 1.0),
        ([0.0, 1.0], "0", 0.0),
        ([0, 1], "1", 1),
        ([False, True], "TRUE", True),
    ],
)
def test_a_float_zero_one_target_is_read_as_zero_one(labels, given, expected):
    """Issue 28: a 0.0/1.0 target asked for POSITIVE, then refused POSITIVE=1."""
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"x": rng.normal(size=200), "y": np.array(labels, dtype=object)[rng.integers(0, 2, 200)]})
    table["y"] = table["y"].astype(type(labels[0]))
    profile = profile_table(table, "y", positive=given)
    assert profile.data["positive_label"] == expected and type(profile.data["positive_label"]) is type(expected)
    parse_params(read_params_text(rewrite_params((ROOT / "params.yaml").read_text(), profile, "t.csv", None), "params.yaml"))


@pytest.mark.integration
def test_a_column_name_lightgbm_cannot_store_is_kept_by_init_as_a_feature_and_every_stage_runs(tmp_path):
    """Issue 28: a column named `a:b` passed init and failed at featurize; then init dropped it.
    It is a feature now, under its real name everywhere but inside LightGBM. The stages up to
    evaluate run in process with their dvc.yaml arguments (what DVC makes of such names in
    params.yaml: tests/test_init.py's look-alike keys under `dvc repro`)."""
    import json

    from conftest import make_repo

    rng = np.random.default_rng(0)
    signal = rng.normal(size=600)
    table = pd.DataFrame({"a:b": signal, "x[1]": rng.normal(size=600), "a_b": rng.normal(size=600)})
    table["y"] = (signal + rng.normal(size=600) > 0).astype(int)
    profile = profile_table(table, "y")
    assert not profile.dropped and not any("a:b" in line for line in profile.warnings)
    repo = make_repo(tmp_path / "repo")
    table.to_csv(repo.path / "data" / "colons.csv", index=False)
    repo.run("python", "-m", "mlpipe.tools.init", "--data", "data/colons.csv", "--target", "y")
    for stage in ("ingest", "validate", "split", "featurize", "train", "evaluate"):
        done = repo.stage(stage)
        assert done.returncode == 0, (stage, done.stderr)
    schema = json.loads((repo.path / "models" / "schema.json").read_text())
    assert [feature["name"] for feature in schema["features"]] == ["a:b", "x[1]", "a_b"]
    importance = json.loads((repo.path / "metrics" / "plots" / "feature_importance.json").read_text())
    assert importance[0]["feature"] == "a:b" and {row["feature"] for row in importance} == {"a:b", "x[1]", "a_b"}
    assert json.loads((repo.path / "metrics" / "train" / "metrics.json").read_text())["top_feature"] == "a:b"
