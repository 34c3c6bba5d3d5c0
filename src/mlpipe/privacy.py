"""Personal data handling at ingest, before anything is cached or pushed.

Columns declared in `data.personal_columns` are either dropped or replaced by a salted
SHA-256 of their value. The salt is a secret: it is read from an environment variable named
in params (`data.salt_env`), never from a file in the repository, so the hashes cannot be
reversed by hashing candidate values without it. The same salt gives the same hashes, which
keeps joins, duplicate checks and DVC's cache working across runs.
"""

from __future__ import annotations

import difflib
import hashlib

import pandas as pd

from mlpipe.errors import ConfigError, DataError


def salted_hash(values: pd.Series, salt: str) -> pd.Series:
    """Hex SHA-256 of salt + the value's text; missing values stay missing."""
    salt_bytes = salt.encode("utf-8")
    hashed = [None if pd.isna(value) else hashlib.sha256(salt_bytes + str(value).encode("utf-8")).hexdigest() for value in values]
    return pd.Series(hashed, index=values.index, dtype="object", name=values.name)


def protect_personal_columns(table: pd.DataFrame, rules: dict[str, str], salt: str | None, salt_env: str) -> pd.DataFrame:
    """Drop or hash each column named in `rules` ({column: "drop" | "hash"})."""
    missing = [column for column in rules if column not in table.columns]
    if missing:
        close = difflib.get_close_matches(missing[0], list(map(str, table.columns)), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise DataError(f"data.personal_columns names '{missing[0]}', which is not in the table{hint}")
    hashed = [column for column, action in rules.items() if action == "hash"]
    if hashed and not salt:
        raise ConfigError(f"data.personal_columns hashes {hashed} but the environment variable {salt_env} (data.salt_env) "
                          f"is not set: export a long random secret in it (never commit it)")
    protected = table.drop(columns=[column for column, action in rules.items() if action == "drop"])
    for column in hashed:
        protected[column] = salted_hash(protected[column], salt)
    return protected
