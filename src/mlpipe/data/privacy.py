"""Personal data handling on every path by which rows enter the pipeline, before anything is
cached or pushed: `ingest`, new batches scored by `predict`, SQL snapshots (and the service).

Columns declared in `data.personal_columns` are either dropped or replaced by a salted
SHA-256 of their value. The salt is a secret: it is read from an environment variable named
in params (`data.salt_env`), never from a file in the repository, so the hashes cannot be
reversed by hashing candidate values without it. The same salt gives the same hashes, which
keeps joins, duplicate checks and DVC's cache working across runs and across entry paths.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
import re
from collections.abc import Mapping

import pandas as pd

from mlpipe.config import DataParams
from mlpipe.errors import ConfigError, DataError

log = logging.getLogger(__name__)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def salted_hash(values: pd.Series, salt: str) -> pd.Series:
    """Hex SHA-256 of salt + the value's text; missing values stay missing."""
    salt_bytes = salt.encode("utf-8")
    hashed = [None if pd.isna(value) else hashlib.sha256(salt_bytes + str(value).encode("utf-8")).hexdigest() for value in values]
    return pd.Series(hashed, index=values.index, dtype="object", name=values.name)


def is_hashed(values: pd.Series) -> bool:
    """Whether every present value already is a SHA-256 hex digest (rows that came through an
    earlier entry path, such as a snapshot read again by ingest): hashing again would change
    the identifiers without protecting anything more."""
    present = values.dropna()
    return not present.empty and bool(present.map(lambda value: isinstance(value, str) and bool(_SHA256_HEX.fullmatch(value))).all())


def require_salt(hashed: list[str], salt: str | None, salt_env: str) -> None:
    """Columns to hash need the salt: a one-line `ConfigError` naming its variable otherwise."""
    if hashed and not salt:
        raise ConfigError(
            f"data.personal_columns hashes {hashed} but the environment variable {salt_env} (data.salt_env) "
            f"is not set: export a long random secret in it (never commit it)"
        )


def protect_personal_columns(
    table: pd.DataFrame, rules: Mapping[str, str], salt: str | None, salt_env: str, origin: str = "the table", near_misses: bool = True
) -> pd.DataFrame:
    """Drop or hash each column named in `rules` ({column: "drop" | "hash"}) that `table` holds.

    A declared column may be absent (a batch or a snapshot that does not carry it, or one an
    earlier entry path dropped). With `near_misses`, an undeclared column whose name is close to
    an absent declared one is refused: that is a misspelt rule, and the data it should protect
    would pass in clear. A declared column is no near miss of another (`first_name` present,
    `last_name` absent). The service's requests skip the check: their contract refuses every
    undeclared field before a row is logged, and a request need not carry every declared one.
    """
    present = {column: action for column, action in rules.items() if column in table.columns}
    undeclared = [str(name) for name in table.columns if name not in rules]
    for column in rules.keys() - present.keys() if near_misses else ():
        close = difflib.get_close_matches(column, undeclared, n=1)
        if close:
            raise DataError(
                f"data.personal_columns names '{column}', which is not in {origin}; did you mean '{close[0]}'? "
                "Fix the name so that the column is protected"
            )
    hashed = [column for column, action in present.items() if action == "hash" and not is_hashed(table[column])]
    require_salt(hashed, salt, salt_env)
    protected = table.drop(columns=[column for column, action in present.items() if action == "drop"])
    for column in hashed:
        protected[column] = salted_hash(protected[column], salt)
    return protected


def apply_personal_rules(
    table: pd.DataFrame, data: DataParams, origin: str, environ: Mapping[str, str] = os.environ, near_misses: bool = True
) -> pd.DataFrame:
    """`data.personal_columns` applied to rows entering from `origin`; logs what was done to each
    column. `near_misses`: as `protect_personal_columns`."""
    if not data.personal_columns:
        return table
    protected = protect_personal_columns(table, data.personal_columns, environ.get(data.salt_env), data.salt_env, origin, near_misses)
    done = []
    for column, action in data.personal_columns.items():
        if column not in table.columns:
            done.append(f"{column} absent")
        elif action == "drop":
            done.append(f"{column} dropped")
        else:
            done.append(f"{column} salted-hashed" if not table[column].equals(protected[column]) else f"{column} already hashed")
    log.info("personal data from %s: %s", origin, ", ".join(done))
    return protected
