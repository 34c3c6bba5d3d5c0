"""Reading tables from where they live: local files, folders of partitions, http(s):// and s3://
URLs, and folders of new batches. Every failure is one line that names the source and the cause.

Apart from `mlpipe.io` (writing), so that a change to how sources are read reruns only the
stages that read sources.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlpipe.errors import DataError, first_line

if TYPE_CHECKING:
    from mlpipe.config import CsvParams, DataParams

log = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
BATCH_COLUMN = "batch"
URL_SCHEMES = ("http", "https", "s3")


def infer_format(source: str | Path, declared: str | None = None) -> str:
    if declared:
        return declared
    suffixes = [s.lower() for s in Path(str(source)).suffixes]
    for suffix in reversed(suffixes):
        if suffix in FORMATS:
            return FORMATS[suffix]
    raise DataError(f"cannot tell the format of '{source}' from its name; set data.format to csv or parquet")


def is_url(source: str | Path) -> bool:
    return "://" in str(source)


def read_table(source: str | Path, fmt: str | None = None, csv_options: CsvParams | None = None, name: str | None = None) -> pd.DataFrame:
    """Read a local CSV (as `csv_options`, data.csv, say: None reads a comma-separated file with a
    header) or Parquet file into a DataFrame; every failure is a one-line DataError naming the
    file as `name` (default: its path)."""
    path = Path(source)
    fmt = infer_format(path, fmt)
    name = name or str(path)
    if not path.exists():
        raise DataError(f"data source '{name}' does not exist; check data.source in params.yaml")
    if path.is_dir():
        raise DataError(f"'{name}' is a directory, not a {fmt} file")
    return _parse(path, fmt, name, csv_options)


def _parse(readable: Path | io.BytesIO, fmt: str, name: str, csv_options: CsvParams | None = None) -> pd.DataFrame:
    if fmt == "csv":
        from mlpipe.config import CsvParams

        csv_options = csv_options or CsvParams()
    try:
        if fmt == "csv":
            header = 0 if csv_options.header else None
            table = pd.read_csv(readable, sep=csv_options.pandas_sep, header=header, low_memory=False, encoding="utf-8")
        else:
            table = _read_flat_parquet(readable, name)
    except UnicodeDecodeError:
        raise DataError(f"'{name}' is not UTF-8 text ({_first_non_utf8(readable)}): re-save it as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"'{name}' is empty: it holds no header and no rows") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"'{name}' is not a well-formed CSV: {first_line(exc)}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read '{name}' as {fmt}: {first_line(exc)}") from None
    if table.empty:
        raise DataError(f"'{name}' has no rows: the pipeline needs data to train on")
    if fmt == "csv":
        if csv_options.header and csv_options.names is None:
            table = _without_repeated_header_copies(table, readable, name, csv_options.pandas_sep)
        if name.lower().endswith(".csv"):
            _check_last_line_complete(readable, table.shape[1], name, csv_options.pandas_sep)
        table = _named(table, csv_options, name)
    return table


def _read_flat_parquet(readable: Path | io.BytesIO, name: str) -> pd.DataFrame:
    """A Parquet file without its nested (list, struct, map) columns, dropped with one warning.

    A model feature holds one value per row: a list-valued column would fail deep in the pipeline
    (pandas cannot hash the arrays it holds), and a scored batch or a served request could never
    supply it. Dropping them here covers every path rows enter from files (ingest, its parts,
    scored batches, `make init`); the service refuses arrays and objects in a request (a 422)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(readable)
    if isinstance(readable, io.BytesIO):
        readable.seek(0)
    nested = {field.name: str(field.type) for field in schema if pa.types.is_nested(field.type)}
    if not nested:
        return pd.read_parquet(readable)
    index = {column for column in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(column, str)}
    flat = [column for column in schema.names if column not in nested and column not in index]
    if not flat:
        raise DataError(
            f"'{name}' holds only nested (list, struct or map) columns {list(nested)}: flatten them in the source, one value per column"
        )
    shown = ", ".join(f"{column} ({kind})" for column, kind in nested.items())
    if shown not in _WARNED:  # once per process, not once per partition file
        _WARNED.add(shown)
        log.warning(
            "%s: dropped nested column(s) %s: a feature holds one value per row; to use them, flatten them in the source (one column per value)",
            name,
            shown,
        )
    return pd.read_parquet(readable, columns=flat)


_WARNED: set[str] = set()


def _named(table: pd.DataFrame, options: CsvParams, name: str) -> pd.DataFrame:
    """The columns named by data.csv.names, or column_1, column_2, ... for a file without a header.
    The count is checked here: given fewer names than fields, pandas would take the first fields
    for the row index, silently."""
    if options.names is not None:
        if len(options.names) != table.shape[1]:
            raise DataError(
                f"'{name}' has {table.shape[1]} columns but data.csv.names gives {len(options.names)} names: "
                "give one name per column, in file order (or check data.csv.sep)"
            )
        return table.set_axis(options.names, axis=1)
    if not options.header:
        return table.set_axis([f"column_{number}" for number in range(1, table.shape[1] + 1)], axis=1)
    return table


def _without_repeated_header_copies(table: pd.DataFrame, readable: Path | io.BytesIO, name: str, sep: str) -> pd.DataFrame:
    """pandas renames a repeated CSV header (`DIS`, `DIS.1`), so the model would silently train on
    whichever copy kept the plain name. Read the header as it is written: a repeated name whose
    columns hold the same values in every row (an export that wrote a column twice) keeps its first
    column, with a warning; copies that differ are refused, with a row where they do."""
    if isinstance(readable, io.BytesIO):
        readable.seek(0)
    header = pd.read_csv(readable, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False, encoding="utf-8").iloc[0].tolist()
    repeated = sorted(column for column, count in Counter(header).items() if count > 1)  # not header.count: quadratic in columns
    if not repeated or len(header) != table.shape[1]:
        return table
    copies = []
    for column in repeated:
        first, *others = [position for position, named in enumerate(header) if named == column]
        for other in others:
            differs = table.iloc[:, first].ne(table.iloc[:, other]) & ~(table.iloc[:, first].isna() & table.iloc[:, other].isna())
            if differs.any():
                row = int(differs.to_numpy().argmax())
                shown = [table.iloc[:, position].tolist()[row] for position in (first, other)]  # Python values, not numpy's
                raise DataError(
                    f"'{name}' has two columns named '{column}' (columns {first + 1} and {other + 1}) that differ "
                    f"(row {row + 1:,}: {shown[0]!r} vs {shown[1]!r}): rename one in the source, "
                    "or name every column with data.csv.names (make init NAMES=a,b,...)"
                )
            copies.append(other)
    log.warning("%s: the header repeats %s with the same values: kept the first column of each", name, ", ".join(map(repr, repeated)))
    kept = [position for position in range(len(header)) if position not in copies]
    return table.iloc[:, kept].set_axis([header[position] for position in kept], axis=1)


def _first_non_utf8(readable: Path | io.BytesIO) -> str:
    """Where the first byte that is not UTF-8 sits (pandas reports offsets within its read chunk)."""
    content = readable.read_bytes() if isinstance(readable, Path) else readable.getvalue()
    try:
        content.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = content.count(b"\n", 0, exc.start) + 1
        return f"line {line}, byte {exc.start}: 0x{content[exc.start]:02x}"
    return "a byte sequence pandas could not decode"


def _check_last_line_complete(readable: Path | io.BytesIO, n_columns: int, name: str, sep: str) -> None:
    """A CSV cut off mid-line (a partial copy or download) parses without complaint: pandas fills
    the missing fields of the last row with nulls. Catch it: a last line without its newline and
    with fewer fields than the header."""
    if isinstance(readable, Path):
        with open(readable, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 65536))
            tail = handle.read()
    else:
        tail = readable.getvalue()[-65536:]
    if not tail or tail.endswith(b"\n"):
        return
    last_line = tail.rsplit(b"\n", 1)[-1].decode("utf-8", errors="replace")
    fields = last_line.split() if sep == r"\s+" else next(csv.reader([last_line], delimiter=sep), [])
    if len(fields) < n_columns:
        raise DataError(
            f"'{name}' looks truncated: its last line has {len(fields)} of {n_columns} fields and no line end "
            "(a partial copy or download?); copy or export it again"
        )


def partition_files(folder: Path, pattern: str | None = None) -> list[Path]:
    """The CSV/Parquet files of a folder (matching `pattern` when given), sorted by path.

    Hidden files and folders are skipped: a writer's temporaries (an upload or a log file not
    yet complete), editors' and tools' files.
    """
    candidates = folder.glob(pattern) if pattern else folder.iterdir()
    files = sorted(p for p in candidates if p.is_file() and p.suffix.lower() in FORMATS)
    inside = folder.resolve()
    for file in files:
        # DVC hashes the folder as the stage's input: a file that resolves elsewhere is not part of it.
        if not file.resolve().is_relative_to(inside):
            raise DataError(
                f"partition '{file}' resolves outside the folder '{folder}' (a link or a pattern that leaves it); "
                "copy the file into the folder instead"
            )
    files = [file for file in files if not any(part.startswith(".") for part in file.relative_to(folder).parts)]
    if not files:
        raise DataError(_no_partitions(folder, pattern))
    return files


def _no_partitions(folder: str | Path, pattern: str | None) -> str:
    matching = f" matching '{pattern}'" if pattern else ""
    return f"folder '{folder}' holds no .csv or .parquet batch files{matching}"


def read_source(
    source: str | Path, fmt: str | None = None, pattern: str | None = None, csv_options: CsvParams | None = None
) -> pd.DataFrame:
    """Read one file, or a folder of partition files (all CSV/Parquet files, or those matching
    `pattern`) concatenated in name order; local, or at an http(s):// or s3:// URL. CSV files are
    read as `csv_options` says (data.csv). Partitions must agree on their columns."""
    if is_url(source):
        named = read_remote(str(source), fmt, pattern, csv_options)
    else:
        path = Path(source)
        if not path.is_dir():
            return read_table(path, fmt, csv_options)
        named = [(str(file), read_table(file, fmt, csv_options)) for file in partition_files(path, pattern)]
    return _concat_partitions(named)


def _concat_partitions(named: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    check_same_columns([name for name, _ in named], [list(table.columns) for _, table in named])
    expected = list(named[0][1].columns)
    return concat_batches([(name, table[expected]) for name, table in named])


def concat_batches(named: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """Tables read from several files ({name: table}, in order) as one, read as one file holding
    all their rows would be: a column that is text in some files and numbers, booleans or dates in
    others is text in all (3 and 3.0 as '3', as categorical levels are), said in one warning.

    Each file's types are its own (Parquet's, or what pandas infers from a CSV's values), so the
    prediction log's requests that sent an id as "A-1" and others that sent 2, or a batch whose
    codes happen to be all digits, give one column two types: pandas would hold both, and the
    Parquet written from it (or any later step) would fail on the mix. The contract's dtypes
    still apply: validation casts the text back row by row, quarantining what does not fit."""
    from mlpipe.data.schema import category_texts, mixed_types_warning, value_kind

    kinds: dict[str, dict[str, str]] = {}  # column -> kind -> first file holding it
    for name, table in named:
        for column in table.columns:
            if not table[column].isna().all():  # an empty column (Arrow's null type) takes any type
                kinds.setdefault(column, {}).setdefault(value_kind(table[column].dtype), name)
    mixed = {column: found for column, found in kinds.items() if len(found) > 1}
    if mixed:
        log.warning(mixed_types_warning(mixed))
        named = [
            (name, table.assign(**{column: category_texts(table[column]) for column in mixed if column in table})) for name, table in named
        ]
    return pd.concat([table for _, table in named], ignore_index=True)


def check_same_columns(names: list[str], columns: list[list[str]]) -> None:
    """Partitions of one table must have the same columns; one line naming the first that does not."""
    expected = set(columns[0])
    for name, found in zip(names[1:], columns[1:], strict=True):
        if set(found) != expected:
            missing, extra = sorted(expected - set(found)), sorted(set(found) - expected)
            raise DataError(f"partition '{name}' does not match '{names[0].rsplit('/', 1)[-1]}': missing columns {missing}, extra {extra}")


def read_remote(
    url: str, fmt: str | None = None, pattern: str | None = None, csv_options: CsvParams | None = None
) -> list[tuple[str, pd.DataFrame]]:
    """Read the file at `url`, or every partition file under it, through fsspec: `(url, table)` pairs."""
    return [(location, read_remote_file(location, fmt, csv_options)) for location in remote_files(url, pattern)]


def remote_files(url: str, pattern: str | None = None) -> list[str]:
    """The URL of the file at `url`, or of every partition file under it (matching `pattern`), in name order.

    Credentials and endpoints come from the environment the way each filesystem reads them
    (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_PROFILE for s3://; ~/.netrc
    or $NETRC for http(s)://), never from params.yaml, which is committed.
    """
    with _remote_errors(url):
        filesystem, root, scheme = _filesystem(url)
        if scheme in ("http", "https") or not filesystem.isdir(root):
            return [url]
        found = filesystem.glob(f"{root.rstrip('/')}/{pattern}") if pattern else filesystem.ls(root, detail=False)
        locations = sorted(p for p in found if PurePosixPath(p).suffix.lower() in FORMATS and not PurePosixPath(p).name.startswith("."))
        if not locations:
            raise DataError(_no_partitions(url, pattern))
        protocol = url[: len(scheme) + 3]
        return [location if location.startswith(protocol) else protocol + location for location in locations]


def read_remote_file(url: str, fmt: str | None = None, csv_options: CsvParams | None = None) -> pd.DataFrame:
    """The one file at `url`, read whole (credentials from the environment, as `remote_files` says)."""
    with _remote_errors(url):
        filesystem, root, _ = _filesystem(url)
        # Whole-object reads: plain HTTP servers need not support the range requests that
        # seeking inside a Parquet file would make.
        content = io.BytesIO(filesystem.cat_file(root))
        return _parse(content, infer_format(PurePosixPath(root), fmt), url, csv_options)


def _filesystem(url: str):
    """(fsspec filesystem, path on it, scheme) for `url`; a scheme other than URL_SCHEMES is one line."""
    scheme = url.split("://", 1)[0].lower()
    if scheme not in URL_SCHEMES:
        raise DataError(
            f"data.source '{url}': the scheme '{scheme}://' is not supported; use a local path, "
            f"{', '.join(s + '://' for s in URL_SCHEMES)}, or read a database through sql_snapshots"
        )
    import fsspec

    # A fresh filesystem per read: fsspec's cached instances would keep an old endpoint,
    # credentials and directory listing in a long-running process (the service, a Dask worker).
    # trust_env: aiohttp then reads a user and password for the host from ~/.netrc (or $NETRC),
    # which is where http(s) credentials go: params.yaml, which names the URL, is committed.
    http_options = {"client_kwargs": {"trust_env": True}} if scheme in ("http", "https") else {}
    filesystem, root = fsspec.core.url_to_fs(url, skip_instance_cache=True, **http_options)
    return filesystem, root, scheme


@contextmanager
def _remote_errors(url: str) -> Iterator[None]:
    """Turn a filesystem's failures into one line that names the source and the cause."""
    try:
        yield
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"data source '{url}' does not exist or the server cannot be reached; check data.source") from None
    except PermissionError as exc:
        raise DataError(
            f"access to '{url}' was denied ({first_line(exc)}): check the credentials in the environment "
            "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE for s3://)"
        ) from None
    except ImportError as exc:
        raise DataError(f"reading '{url}' needs a package that is not installed: {first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - botocore/aiohttp raise their own hierarchies
        if type(exc).__name__ == "NoCredentialsError":
            raise DataError(
                f"no credentials for '{url}': set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment"
            ) from None
        raise DataError(f"cannot read '{url}': {first_line(exc)}") from None


def read_batches(source: str | Path, fmt: str | None = None, csv_options: CsvParams | None = None) -> pd.DataFrame:
    """Read one file, or every CSV/Parquet file in a folder and its subfolders (such as the
    service's date-partitioned prediction log), sorted by path, as one table; CSV files as
    `csv_options` says (data.csv: new batches come as the training source came).

    Rows from a folder carry a `batch` column naming their file (its path inside the folder),
    so a drift or a bad row can be traced to the batch that brought it.
    """
    path = Path(source)
    if not path.is_dir():
        return read_table(path, fmt, csv_options)
    files = partition_files(path, "**/*")
    return concat_batches(
        [(str(file), read_table(file, fmt, csv_options).assign(**{BATCH_COLUMN: file.relative_to(path).as_posix()})) for file in files]
    )


def normalise_columns(table: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Strip column names and turn pandas categoricals into their plain values.

    Categories are re-derived (sorted, from the training period) by the feature step, so
    whatever category order the source file carried must not leak into the model.
    """
    names = [str(column).strip() for column in table.columns]
    if "" in names:
        raise DataError(f"'{origin}' has a column without a name (column {names.index('') + 1}): name it in the source")
    duplicated = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicated:
        raise DataError(f"'{origin}' has duplicate column names after stripping spaces: {duplicated}")
    table = table.set_axis(names, axis=1)
    for column in table.columns:
        if isinstance(table[column].dtype, pd.CategoricalDtype):
            table[column] = table[column].astype(table[column].cat.categories.dtype)
    return table.reset_index(drop=True)


# The ingest step ---------------------------------------------------------------------------


def ingest(data: DataParams, out: Path) -> dict[str, Any]:
    """data.source (a file or a folder of partition files, local or at an http(s):// or s3:// URL)
    as the folder of Parquet parts `out`: each source file read by one task of the stage's executor
    (`mlpipe.engine.parts.map_parts`), its column names normalised and its personal columns
    protected, cut into parts of at most data.partition_rows rows. The files must agree on their
    columns; a column that is text in some files and numbers in others is text in all (as
    `read_source` reads them). Returns {files, rows, columns}.

    The task that reads a file is where the file is read: in this process, or on a cluster's
    worker, which then needs what reading needs (the repository's folder at the same path for a
    local source; for a URL, the network and the credentials in its own environment, as for the
    hashing salt). Only the folder's listing is read here."""
    from mlpipe.engine.parts import map_parts, staged

    source, shown_as = data.source, None
    if is_url(source):
        locations = names = remote_files(source, data.pattern)
    else:
        path = Path(source)
        files = partition_files(path, data.pattern) if path.is_dir() else [path]
        # The task reads a file at its absolute path (a worker's working directory is its own);
        # messages name it as data.source does.
        names, locations, shown_as = (
            [str(file) for file in files],
            [str(file.absolute()) for file in files],
            (str(path.absolute()), str(path)),
        )
    read = functools.partial(read_source_file, fmt=data.format, csv_options=data.csv, shown_as=shown_as)
    with staged(out) as (folder,):
        found = map_parts(
            _ingest_part,
            locations,
            [folder],
            data,
            per_part=[(name,) for name in names],  # each task carries its own file's name, not the list
            read=read,
            chunk_rows=data.partition_rows,
            check=lambda found: check_same_columns(names, [summary["columns"] for summary in found]),
            mixed_as_text=True,  # as `concat_batches` reads the files into one table
            what="ingest",
        )
    return {"files": len(names), "rows": sum(summary["rows"] for summary in found), "columns": found[0]["columns"]}


def read_source_file(location: str, fmt: str | None, csv_options: CsvParams | None, shown_as: tuple[str, str] | None) -> pd.DataFrame:
    """One file of a source, local or at a URL. A local file under the absolute path `shown_as[0]`
    is named in messages under `shown_as[1]`, data.source as the user wrote it."""
    if is_url(location):
        return read_remote_file(location, fmt, csv_options)
    absolute, given = shown_as
    return read_table(location, fmt, csv_options, name=given + location[len(absolute) :])


def _ingest_part(table: pd.DataFrame, index: int, data: DataParams, name: str):
    from mlpipe.data.privacy import apply_personal_rules

    # The hashing salt is read from the environment where the task runs (a local cluster's workers
    # inherit the stage's): the secret never travels in a task.
    table = apply_personal_rules(normalise_columns(table, origin=name), data, origin=name)
    return (table,), {"rows": len(table), "columns": list(table.columns)}
