"""What a table's own params should say, read off the table: the decisions behind `make init`.

`profile_table` looks at a DataFrame and returns the data-specific params sections (data,
the validate contract, split, drift windows) with one human-readable reason per decision.
It reads and writes nothing; `mlpipe.tools.init` does the file work around it.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlpipe.config import InitParams
from mlpipe.data.times import time_values
from mlpipe.errors import DataError
from mlpipe.tools.leakage import leak_guard

# Value pairs whose positive member is plain from the words themselves (compared lower-cased).
OBVIOUS_POSITIVE = {
    frozenset({"0", "1"}): "1",
    frozenset({"false", "true"}): "true",
    frozenset({"no", "yes"}): "yes",
    frozenset({"n", "y"}): "y",
    frozenset({"f", "t"}): "t",
    frozenset({"negative", "positive"}): "positive",
}
TIME_NAME = re.compile(r"(^|[_\s-])(date|time|year|period|month|week|quarter|day|timestamp|datetime|dt|t|step)($|[_\s-])", re.IGNORECASE)
ID_NAME = re.compile(r"(^|[_\s-])(id|key|uuid|guid)$|^id([_\s-]|$)", re.IGNORECASE)
EMAIL_VALUE = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
# A phone number is written with a separator or a leading +: bare digit strings are ids or codes far more often.
PHONE_VALUE = re.compile(r"(?=.*[\s().+-])\+?[\d\s().-]{7,20}")
SSN_VALUE = re.compile(r"\d{3}-\d{2}-\d{4}")
NUMBER_VALUE = re.compile(r"[-+]?\d*\.?\d+([eE][-+]?\d+)?")  # an amount stored as text is no phone number
STREET_VALUE = re.compile(
    r"\d+[A-Za-z]?,?\s+(\S+\s+)*(street|st|avenue|ave|road|rd|lane|ln|drive|dr|boulevard|blvd|court|ct|way|place|pl|terrace"
    r"|close|crescent|square|sq|highway|hwy|parkway|pkwy|strasse|straße|str|rue|calle)\b.*",
    re.IGNORECASE,
)
DATE_VALUE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}.*|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")
# Codes such as case numbers (13011352CM10A): letters and digits together, no spaces.
CODE_VALUE = re.compile(r"(?=.*[A-Za-z])(?=.*\d)[A-Za-z0-9][A-Za-z0-9_./:-]*")
YEAR_RANGE = (1800, 2200)
MAX_DRIFT_WINDOWS = 6
PERIOD_CHOICES = ("Y", "Q", "M", "W", "D")  # coarsest first: the first giving enough periods wins
MIN_PERIODS = 4
FREE_TEXT_SHARE = 0.5  # a text column with more distinct values than this share of its values is not a category
MIN_ID_VALUES = 50  # fewer distinct values than this can be a category, however many rows hold one
SAMPLE = 1000  # values looked at to tell what a column holds
MOSTLY = 0.5  # share of a sample that must look like a kind of personal data
BIRTH_SPREAD_YEARS = 15  # dates whose middle half spans this many years are birth dates, not events
NULL_HEADROOM = 0.05  # a per-column null limit: today's share plus this, rounded up to a multiple of it


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
    dropped: dict[str, str] = field(default_factory=dict)  # column -> why it is not a feature (data.drop_columns)
    fairness: dict[str, dict[str, Any]] = field(default_factory=dict)  # fairness.groups: report name -> {column, bins?}


def profile_table(
    table: pd.DataFrame,
    target: str,
    positive: str | None = None,
    time_column: str | None = None,
    ask=None,
    max_null_share: float = 0.5,
    max_text_length: int = 1000,
    leak_rule: InitParams | None = None,
) -> Profile:
    """Infer the data-specific params of `table`. `positive` and `time_column` override the inference;
    `ask(question) -> answer` is called when the positive label cannot be told (None: an error).
    `max_null_share` and `max_text_length` are the table-wide limits of the params being rewritten:
    a column beyond them gets its own limit in the contract, so that the contract passes on `table`.
    `leak_rule` (init.*) drops the features that give the target away (`mlpipe.tools.leakage`)."""
    if table.empty or table.shape[1] == 0:
        raise DataError("the table has no rows: point DATA at a table with data")
    decisions: list[str] = []
    warnings: list[str] = []
    _require_column(table, target, "TARGET")
    labels = _binary_labels(table[target])
    positive_label = _positive_label(table[target].name, labels, positive, ask, decisions)

    if time_column is not None:
        _require_column(table, time_column, "TIME")
        if time_column == target:
            raise DataError(f"TIME={time_column!r} is the target: give the column that orders rows in time")
    personal = personal_columns(table.drop(columns=[target]))
    if time_column in personal:
        raise DataError(
            f"TIME={time_column!r} looks like personal data ({personal[time_column]}), which is dropped at ingest: "
            "give the column that orders rows in time"
        )
    for column, why in personal.items():
        warnings.append(
            f"column '{column}' looks personal ({why}): data.personal_columns drops it at ingest; "
            f"change it to hash (a salted SHA-256, salt in $MLPIPE_PII_SALT) to keep it as a key"
        )
    usable = table.drop(columns=[target, *personal])

    chosen_time = _time_column(usable, time_column, decisions)
    others = usable.drop(columns=[chosen_time] if chosen_time else [])
    rule = leak_rule or InitParams()
    # init.keep_columns overrides init's guesses (id, free text, code, date as text, leak), never a
    # column with one value or a datetime, which no model feature can use (featurize drops or refuses them)
    kept_by_user = {column for column in rule.keep_columns if column in others.columns and _keepable(others[column])}
    ids = [column for column in id_columns(others) if column not in kept_by_user]
    if ids:
        decisions.append(f"id columns: {', '.join(ids)} (unique in every row; checked for duplicates, never a feature)")
    dropped: dict[str, str] = {}
    for column in others.columns.drop(ids):
        why = drop_reason(others[column])
        if why is not None and column in kept_by_user:
            decisions.append(f"keep '{column}' (init.keep_columns) though it looks like {why}")
        elif why is not None:
            dropped[column] = why
            decisions.append(f"drop '{column}': {why}")
    features = [column for column in others.columns if column not in ids and column not in dropped]
    categorical = [column for column in features if _is_text(others[column]) or pd.api.types.is_bool_dtype(others[column])]

    split, windows, period = _split_and_windows(table, target, chosen_time, decisions)
    leaks = leak_guard(table, target, positive_label, features, split, chosen_time, rule)
    for leak in leaks:
        dropped[leak.column] = leak.reason
        warnings.append(leak.warning)
    if len(leaks) == len(features):
        raise DataError(_no_feature_left(others, personal, chosen_time, ids, dropped, {leak.column for leak in leaks}))
    decisions.append(
        f"leak guard: {len(features)} candidate features scored alone against '{target}' on the training rows, "
        f"{len(leaks)} dropped{' (a warning each, below)' if leaks else ''}"
    )
    categorical = [column for column in categorical if column not in dropped]
    decisions.append(f"categorical columns: {', '.join(categorical) if categorical else 'none'} (text and boolean columns)")
    kept = table.drop(columns=list(personal))
    contract = inferred_contract(kept, target, labels, chosen_time, ids)
    rows_min = max(1, len(table) // 2)
    decisions.append(
        f"contract: dtype and widened ranges for {len(contract)} columns (pandera's schema inference); "
        f"validate.rows.min {rows_min:,} (half of today's {len(table):,} rows, so a truncated file fails)"
    )
    # data.drop_columns are exempt from validate's null, length and finite rules: only the rest need limits of their own.
    decisions.extend(_own_limits(kept.drop(columns=list(dropped)), contract, max_null_share, max_text_length))
    fairness = sensitive_groups(table.drop(columns=[target, *personal, *([chosen_time] if chosen_time else []), *ids]))
    decisions.extend(_sensitive_decisions(fairness, personal, dropped))
    data = {
        "target": target,
        "positive_label": positive_label,
        "time_column": chosen_time,
        "id_columns": ids,
        "drop_columns": list(dropped),
        "categorical_columns": categorical,
        "personal_columns": {column: "drop" for column in personal},
    }
    return Profile(data, contract, rows_min, split, windows, [str(c) for c in kept.columns], period, decisions, warnings, dropped, fairness)


# Protected attributes a fairness report groups people by, by the words of a column's name (the key:
# a word, or the name's words run together) or, for the ACS PUMS codes, by the exact name. Each
# kind is also the report name of the first column of that kind. Direct identifiers (names,
# contact details, national ids, birth dates) are personal columns: dropped at ingest, never groups.
SENSITIVE_WORDS = {"sex": "sex", "gender": "sex", "race": "race", "ethnicity": "race", "ethnic": "race", "hispanic": "race"}
SENSITIVE_WORDS |= {"age": "age", "agep": "age", "senior": "age", "religion": "religion", "religious": "religion"}
SENSITIVE_WORDS |= {"disability": "disability", "disabilities": "disability", "handicap": "disability"}
SENSITIVE_WORDS |= {"marital": "marital_status", "maritalstatus": "marital_status", "married": "marital_status"}
SENSITIVE_WORDS |= {"nationality": "citizenship", "citizenship": "citizenship", "citizen": "citizenship", "nativity": "citizenship"}
ACS_CODES = {"SEX": "sex", "RAC1P": "race", "RAC2P": "race", "RAC3P": "race", "HISP": "race", "AGEP": "age", "DIS": "disability"}
ACS_CODES |= {"MAR": "marital_status", "CIT": "citizenship", "NATIVITY": "citizenship"}
AGE_BANDS = [18, 25, 35, 45, 55, 65, 75]  # a numeric age is reported in these bands (fairness.groups.<name>.bins)
MAX_GROUP_VALUES = 50  # a sensitive column of more values than this is no set of groups (free text, say): not proposed


def sensitive_kind(name: str) -> str | None:
    """The protected attribute a column name says it holds (sex, race, age, ...), or None."""
    if name in ACS_CODES:
        return ACS_CODES[name]
    words = _name_words(name)
    # `senior` first: SeniorCitizen is an age flag, not citizenship
    for word in sorted(words, key=lambda word: word != "senior"):
        if word in SENSITIVE_WORDS:
            return SENSITIVE_WORDS[word]
    return SENSITIVE_WORDS.get("".join(words))


def sensitive_groups(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """fairness.groups for the columns of `table` (the target, personal, time and id columns left out)
    that hold a protected attribute: a numeric age in `AGE_BANDS`, any other one value by value
    when it has 2 to `MAX_GROUP_VALUES` values. Named by the kind, then by the column."""
    groups: dict[str, dict[str, Any]] = {}
    for column in table.columns:
        kind = sensitive_kind(str(column))
        values = table[column]
        distinct = values.nunique()
        if kind is None or distinct < 2:
            continue
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if kind == "age" and numeric and distinct > len(AGE_BANDS) + 1:
            entry: dict[str, Any] = {"column": str(column), "bins": AGE_BANDS}
        elif distinct <= MAX_GROUP_VALUES:
            entry = {"column": str(column)}
        else:
            continue
        name = kind if kind not in groups else re.sub(r"[^A-Za-z0-9_-]+", "_", str(column)).strip("_") or "group"
        while name in groups:  # a column named like a kind already taken
            name += "_"
        groups[name] = entry
    return groups


def _sensitive_decisions(groups: dict[str, dict[str, Any]], personal: dict[str, str], dropped: dict[str, str]) -> list[str]:
    """init's lines on the sensitive columns it proposes (and on a birth date it cannot)."""
    if not groups:
        lines = [
            "fairness.groups: none proposed (no column named like sex, gender, race, ethnicity, age, religion, disability, "
            "marital status or citizenship): add one entry per sensitive column to report the metrics per group"
        ]
    else:
        shown = [
            f"{name} ({spec['column']}{', in age bands' if 'bins' in spec else ''}"
            f"{', not a feature: ' + dropped[spec['column']] if spec['column'] in dropped else ''})"
            for name, spec in groups.items()
        ]
        lines = [
            f"fairness.groups: proposed {', '.join(shown)} for the report by group; a sensitive column can stay out of the "
            "features (list it in data.drop_columns) and still be reported"
        ]
    if not any(kind == "age" for kind in map(sensitive_kind, (spec["column"] for spec in groups.values()))):
        births = [column for column, why in personal.items() if "birth" in why]
        if births:
            lines.append(
                f"fairness.groups: '{births[0]}' holds birth dates, dropped at ingest as personal data, so no age group: "
                "add an age column to the source to report by age"
            )
    return lines


def _keepable(values: pd.Series) -> bool:
    """Whether a column could be a model feature if the user says so: it varies and is no datetime."""
    return values.nunique() > 1 and not pd.api.types.is_datetime64_any_dtype(values)


def _drop_kind(why: str) -> str:
    """The kind of a drop reason, as the refusal below counts them."""
    for prefix, kind in (("free text", "free text"), ("a date", "dates"), ("ids", "ids"), ("id-like", "ids"), ("case numbers", "ids")):
        if why.startswith(prefix):
            return kind
    return "empty or constant"


def _no_feature_left(
    others: pd.DataFrame, personal: dict[str, str], time: str | None, ids: list[str], dropped: dict[str, str], leaks: set[str]
) -> str:
    """Init's one-line refusal of a table none of whose columns would be a feature (featurize would
    stop on the params written): how many went for each reason, and the fix that keeps one."""
    kinds = [*(["personal data"] * len(personal)), *(["the time column"] if time else []), *(["ids"] * len(ids))]
    kinds += ["leaks" if column in leaks else _drop_kind(why) for column, why in dropped.items()]
    counted = ", ".join(
        f"{count} {kind}" for kind, count in sorted(pd.Series(kinds).value_counts().items(), key=lambda kv: (-kv[1], kv[0]))
    )
    keepable = [str(column) for column in others.columns if _keepable(others[column])]
    head = f"all {len(kinds)} columns but the target were dropped ({counted}): a model needs at least one feature"
    if not keepable:
        return f"{head}; none of them varies and can be one: point DATA at a table with a numeric or category column"
    return (
        f"{head}: list those known at prediction time in params.yaml's init.keep_columns (keep_columns: [{keepable[0]}]; "
        f"candidates: {', '.join(keepable[:5])}{', ...' if len(keepable) > 5 else ''}) and run make init again with FORCE=1"
    )


def drop_reason(values: pd.Series) -> str | None:
    """Why a column (not the target, the time column or an id column) is no model feature, or None
    when it is one: no information (all null, one value), a date, or an identifier or free text
    (a distinct value in nearly every row teaches a model nothing about new rows)."""
    present = values.dropna()
    if present.empty:
        return "all null"
    distinct = present.nunique()
    if distinct == 1:
        value = _plain(present.iloc[0])
        return f"constant ({value!r})" if len(present) == len(values) else f"one value ({value!r}) where not null"
    if pd.api.types.is_datetime64_any_dtype(values):
        return "a date"
    if not _is_text(values):
        if pd.api.types.is_numeric_dtype(values) and ID_NAME.search(str(values.name)) and distinct == len(present) >= MIN_ID_VALUES:
            return "ids: unique per row"
        return None
    if _date_sample(values) is not None:
        return "a date stored as text"
    if distinct < MIN_ID_VALUES or distinct <= FREE_TEXT_SHARE * len(present):
        return None
    sample = present.astype(str).head(SAMPLE)
    counted = f"{distinct:,} distinct values in {len(present):,} rows"
    if distinct >= 0.9 * len(present) and sample.str.fullmatch(CODE_VALUE).mean() >= 0.95:
        return "case numbers: unique per row" if distinct == len(present) else f"case numbers: {counted}"
    if sample.str.contains(r"\s").any():
        return f"free text ({counted})"
    return "ids: unique per row" if distinct == len(present) else f"id-like codes ({counted})"


def _is_text(values: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)


def _date_sample(values: pd.Series) -> pd.Series | None:
    """The first non-null values as dates when the column holds dates (datetimes, or text nearly all
    written as dates, such as 2013-08-14 06:03:42); None otherwise."""
    present = values.dropna().head(SAMPLE)
    if present.empty:
        return None
    if pd.api.types.is_datetime64_any_dtype(values):
        return present
    if not _is_text(values):
        return None
    text = present.astype(str)
    if _share(text, lambda distinct: distinct.str.fullmatch(DATE_VALUE)) < 0.95:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        parsed = pd.to_datetime(text, errors="coerce", format="mixed")
    return parsed.dropna() if parsed.notna().mean() >= 0.95 else None


def _own_limits(table: pd.DataFrame, contract: dict[str, dict[str, Any]], max_null_share: float, max_text_length: int) -> list[str]:
    """Give each column beyond a table-wide limit its own limit in `contract` (in place), so that the
    contract passes on the table it was inferred from; one decision line per column."""
    lines = []
    for column, share in table.isna().mean().items():
        if share > max_null_share:
            limit = min(1.0, math.ceil(round((share + NULL_HEADROOM) / NULL_HEADROOM, 6)) * NULL_HEADROOM)
            contract.setdefault(str(column), {})["max_null_share"] = round(limit, 2)
            lines.append(
                f"'{column}' is {share:.1%} null, above validate.max_null_share={max_null_share}: "
                f"validate.columns.{column}.max_null_share {round(limit, 2)}"
            )
    for column in table.columns:
        values = table[column]
        if _is_text(values):
            longest = int(values.dropna().astype(str).str.len().max() or 0) if values.notna().any() else 0
            if longest > max_text_length:
                contract.setdefault(str(column), {})["max_length"] = longest
                lines.append(
                    f"'{column}' holds text of {longest:,} characters, above validate.max_text_length={max_text_length}: "
                    f"validate.columns.{column}.max_length {longest}"
                )
        elif pd.api.types.is_float_dtype(values) and np.isinf(values.to_numpy(dtype=float, na_value=np.nan)).any():
            contract.setdefault(str(column), {})["finite"] = False
            lines.append(f"'{column}' holds infinite values: finite: false (check whether they mean missing)")
    return lines


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


def _spelled(label: Any) -> str:
    """A label as a person would type it, lower-cased: a float target read from a CSV holds 0.0 and
    1.0, which POSITIVE=1 and the obvious 0/1 pair mean."""
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label).lower()


def _positive_label(target: str, labels: list[Any], positive: str | None, ask, decisions: list[str]) -> Any:
    shown = ", ".join(repr(label) for label in labels)
    if positive is not None:
        for label in labels:
            if str(positive).lower() in (str(label).lower(), _spelled(label)):
                decisions.append(f"positive label: {label!r} (given)")
                return label
        raise DataError(f"POSITIVE={positive!r} is not a value of '{target}' (values: {shown})")
    obvious = OBVIOUS_POSITIVE.get(frozenset(_spelled(label) for label in labels))
    if obvious is not None:
        label = next(label for label in labels if _spelled(label) == obvious)
        decisions.append(f"positive label: {label!r} (of {shown})")
        return label
    if ask is None:
        raise DataError(f"cannot tell which value of '{target}' is the positive class (values: {shown}): pass POSITIVE=<value>")
    return _positive_label(target, labels, ask(f"which value of '{target}' is the positive class ({shown})? "), None, decisions)


def personal_columns(table: pd.DataFrame) -> dict[str, str]:
    """Columns that look like personal data, with why: by name (name parts, birth dates, contact
    details, national ids, IP addresses), or by values, most of a sample being e-mail addresses,
    phone numbers, SSN-like or IP addresses, street addresses, or birth dates. A column holding at
    most two values is a flag about such a datum (own_telephone: A191/A192), not the datum."""
    found = {}
    for column in table.columns:
        values = table[column]
        if values.nunique() <= 2:
            continue
        kind = personal_name(str(column))
        why = f"named like {kind}" if kind else _personal_values(values)
        if why:
            found[column] = why
    return found


NAME_PARTS = {"surname", "forename", "fname", "lname", "firstname", "lastname", "fullname", "givenname", "middlename", "maidenname"}
NAME_PARTS |= {"username", "nickname"}
NAME_OWNERS = {"first", "last", "full", "sur", "given", "family", "middle", "maiden", "fore", "user", "nick", "legal", "birth"}
NAME_OWNERS |= {"customer", "patient", "person", "client", "contact", "father", "mother", "spouse", "employee", "applicant", "member"}
NAME_OWNERS |= {"student", "owner", "holder"}
BIRTH_WORDS = {"dob", "yob", "birthday", "birthdate", "birthdates", "dateofbirth", "birthplace"}
PHONE_WORDS = {"phone", "phones", "telephone", "tel", "mobile", "fax", "cellphone", "phonenumber", "msisdn"}
ADDRESS_WORDS = {"address", "addresses", "addr", "street", "streetaddress", "zip", "zipcode", "postcode", "postalcode"}
IP_WORDS = {"ipv4", "ipv6", "ipaddress", "ipaddr"}


def _name_words(name: str) -> list[str]:
    """A column name's words, lower-cased: `firstName`, `First Name`, `first_name` -> first, name."""
    spaced = re.sub(r"([a-z])([A-Z])|([A-Z])([A-Z][a-z])", r"\1\3 \2\4", name)
    return re.findall(r"[a-z]+|\d+", spaced.lower())


def personal_name(name: str) -> str | None:
    """The kind of personal datum a column name says it holds, or None. Bare `first`, `last` and
    `name` count; `name` with another word only when that word is a person's (`product_name` is not)."""
    words = _name_words(name)
    present = set(words)
    joined = "_".join(words)
    if "".join(words) in {"first", "last", "name", *NAME_PARTS} or present & NAME_PARTS or ("name" in present and present & NAME_OWNERS):
        return "a person's name"
    if (
        present & BIRTH_WORDS
        or "date_of_birth" in joined
        or ("birth" in present and (len(words) == 1 or present & {"date", "day", "dt", "year", "place", "of"}))
    ):
        return "a birth date"
    if re.search(r"(^|_)e_?mail", joined):
        return "an e-mail address"
    if present & PHONE_WORDS:
        return "a phone number"
    if present & IP_WORDS or words[-1:] == ["ip"] or ("ip" in present and present & {"address", "addr"}):
        return "an IP address"
    if present & ADDRESS_WORDS or {"postal", "code"} <= present:
        return "an address"
    if (
        present & {"ssn", "passport", "nino", "nationalid", "taxid"}
        or ("national" in present and present & {"id", "number", "no", "insurance", "identity"})
        or ("tax" in present and present & {"id", "number", "no"})
        or {"social", "security"} <= present
        or (present & {"driver", "drivers", "driving"} and present & {"license", "licence"})
    ):
        return "a national id"
    return None


def _personal_values(values: pd.Series) -> str | None:
    """The kind of personal data most of a sample of `values` is, or None."""
    dates = _date_sample(values)
    if dates is not None:
        q1, q3 = dates.quantile(0.25), dates.quantile(0.75)
        spread = (q3 - q1).days / 365.25
        # People's birth dates spread over decades; dates of events (sign-ups, orders) over a few years.
        if spread >= BIRTH_SPREAD_YEARS and (dates.max() - dates.min()).days / 365.25 <= 120:
            return f"birth dates (the middle half spans {spread:.0f} years)"
        return None
    if not _is_text(values):
        return None
    sample = values.dropna().astype(str).str.strip().head(SAMPLE)
    if sample.empty:
        return None
    mostly = lambda looks: _share(sample, looks) > MOSTLY  # noqa: E731
    if mostly(lambda text: text.str.fullmatch(EMAIL_VALUE)):
        return "e-mail addresses"
    if mostly(lambda text: text.str.fullmatch(SSN_VALUE)):
        return "SSN-like numbers"
    if mostly(_ip_addresses):
        return "IP addresses"
    if mostly(lambda text: text.str.fullmatch(STREET_VALUE)):
        return "street addresses"
    if mostly(_phone_numbers):
        return "phone numbers"
    return None


def _share(text: pd.Series, looks) -> float:
    """The share of `text` for which `looks` (a test of a Series of text, giving booleans) holds,
    testing each distinct value once: `init` runs these tests on every column of the table, most of
    them a few values repeated (500 rows x 5,000 columns took a minute testing every row)."""
    if text.empty:
        return 0.0
    counts = text.value_counts(sort=False)
    found = looks(counts.index.to_series(index=range(len(counts)))).to_numpy(dtype=bool)
    return int(counts.to_numpy()[found].sum()) / len(text)


def _ip_addresses(text: pd.Series) -> pd.Series:
    found = text.str.contains(r"[.:]").to_numpy(dtype=bool)  # IPv4 addresses hold dots, IPv6 ones colons: parse only those
    found[found] = [_is_ip_address(value) for value in text[found]]
    return pd.Series(found, index=text.index)


def _phone_numbers(text: pd.Series) -> pd.Series:
    phone_like = text.str.fullmatch(PHONE_VALUE) & text.str.count(r"\d").ge(7)
    return phone_like & ~text.str.fullmatch(DATE_VALUE) & ~text.str.fullmatch(NUMBER_VALUE)


def _is_ip_address(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


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
        if is_text and _date_sample(values) is not None:
            continue  # dates stored as text, unique per row (timestamps), are dates
        if len(values) > 1 and values.notna().all() and values.is_unique:
            ids.append(column)
    return ids


def _looks_like_codes(values: pd.Series) -> bool:
    return _share(values.dropna().astype(str).head(1000), lambda text: text.str.contains(r"\s")) == 0


def _parses_as_times(values: pd.Series) -> bool:
    try:
        time_values(values)
    except DataError:
        return False
    return True


def _is_time_candidate(values: pd.Series) -> bool:
    """Whether a column could order the rows in time without being asked for: complete, more than one
    value, and dates (datetimes or text dates, whatever the name) or years in a column named like a time."""
    if values.isna().any() or values.nunique() < 2:
        return False
    if pd.api.types.is_datetime64_any_dtype(values):
        return True
    if pd.api.types.is_integer_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return bool(TIME_NAME.search(str(values.name))) and bool(values.between(*YEAR_RANGE).all())
    return _is_text(values) and _date_sample(values) is not None and _parses_as_times(values)


def _check_given_time(values: pd.Series) -> None:
    """A column given as TIME must be a time: dates (datetimes, or text pandas reads as dates), whole
    years, or numbers in a column whose name says it counts periods (month, week, t, ...). Anything
    else would split rows on a value that does not order them in time (TIME=age: "train until 66")."""
    name = values.name
    if values.isna().any():
        raise DataError(f"TIME column '{name}' has missing values: every row needs a time for a time split")
    accepted = (
        f"TIME takes a column of dates (2013-08-14, datetimes), of years ({YEAR_RANGE[0]}-{YEAR_RANGE[1]}) or of "
        "period numbers named like period, month, week, quarter, day or t"
    )
    if pd.api.types.is_bool_dtype(values):
        raise DataError(f"TIME={name!r} is not a time: it holds yes/no values; {accepted}")
    if pd.api.types.is_datetime64_any_dtype(values):
        return
    if pd.api.types.is_numeric_dtype(values):
        whole_years = bool((values == values.round()).all() and values.between(*YEAR_RANGE).all())
        if not whole_years and not TIME_NAME.search(str(name)):
            raise DataError(
                f"TIME={name!r} is not a time: its values run from {_plain(values.min())} to {_plain(values.max())}, "
                f"which are not years, and its name does not say it counts periods; {accepted}"
            )
        return
    if not _parses_as_times(values):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            parsed = pd.to_datetime(values.astype(str), errors="coerce", format="mixed")
        failed = parsed.isna().to_numpy().nonzero()[0]
        row = failed[0] if len(failed) else 0
        raise DataError(f"TIME={name!r} is not a time: its value {values.iloc[row]!r} (row {row + 1}) is not a date; {accepted}")


def _time_column(table: pd.DataFrame, given: str | None, decisions: list[str]) -> str | None:
    if given is not None:
        _check_given_time(table[given])
        decisions.append(f"time column: '{given}' (given)")
        return given
    candidates = [column for column in table.columns if _is_time_candidate(table[column])]
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
