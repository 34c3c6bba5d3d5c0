"""Snapshots of SQL data: the rows a query (or a whole table) returns, in an order that depends
only on the data, read through SQLAlchemy.

DVC cannot hash the inside of a database, so a snapshot is re-read on every `dvc repro` and
DVC hashes the result: byte-identical snapshots (same rows, same order) leave everything
downstream untouched. Sorting is what makes that hold, because SQL promises no row order
without ORDER BY.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlpipe.credentials import parse_url, redact_url, scrub
from mlpipe.errors import DataError, first_line

# The drivers this project pins or documents, named in the hint when one is missing.
DRIVER_PACKAGES = {"postgresql": "psycopg[binary]", "mysql": "pymysql", "mssql": "pyodbc"}


def read_query(
    url: str, *, query: str | None = None, table: str | None = None, password: str | None = None, order_by: list[str] | None = None
) -> pd.DataFrame:
    """Run `query` (or read all of `table`) on the database at the SQLAlchemy `url`; rows come back
    sorted by `order_by`, or by every column when it is not given."""
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_errors

    try:
        address = parse_url(url)
    except ValueError as exc:
        raise DataError(f"the database URL {exc}") from None
    if password is not None:
        address = address.set(password=password)
    shown = redact_url(address)
    _check_sqlite_file(address)
    try:
        engine = sa.create_engine(address)
    except (sa_errors.NoSuchModuleError, ImportError) as exc:
        package = DRIVER_PACKAGES.get(address.get_backend_name(), "the database driver")
        raise DataError(f"cannot open '{shown}': {scrub(first_line(exc), password)}; install {package}") from None
    statement = sa.text(query) if query is not None else sa.select(sa.text("*")).select_from(sa.table(table))
    try:
        with engine.connect() as connection:
            result = pd.read_sql_query(statement, connection)
    except sa_errors.DBAPIError as exc:
        raise DataError(f"the query on '{shown}' failed: {scrub(first_line(exc.orig), password)}") from None
    except sa_errors.SQLAlchemyError as exc:
        raise DataError(f"the query on '{shown}' failed: {scrub(first_line(exc), password)}") from None
    finally:
        engine.dispose()
    if result.empty:
        raise DataError(f"the query on '{shown}' returned no rows: the pipeline needs data to train on")
    return stable_order(result, order_by, origin=shown)


def stable_order(table: pd.DataFrame, order_by: list[str] | None = None, origin: str = "the snapshot") -> pd.DataFrame:
    """Rows sorted by `order_by` (then by every other column, to break ties) with a fresh index."""
    missing = [column for column in order_by or [] if column not in table.columns]
    if missing:
        raise DataError(f"order_by columns {missing} are not in the result of '{origin}'; it has {list(table.columns)[:12]}")
    keys = list(order_by or []) + [column for column in table.columns if column not in (order_by or [])]
    try:
        return table.sort_values(keys, kind="stable", na_position="last").reset_index(drop=True)
    except TypeError:
        # A column mixing types (text and numbers) cannot be compared; order by its text instead.
        return table.sort_values(keys, kind="stable", na_position="last", key=lambda column: column.astype(str)).reset_index(drop=True)


def _check_sqlite_file(address) -> None:
    # SQLite would silently create an empty database at a misspelt path.
    database = address.database
    if address.get_backend_name() == "sqlite" and database and database != ":memory:" and not Path(database).exists():
        raise DataError(f"SQLite database file '{database}' does not exist; check the url (sqlite:///relative/path.db)")
