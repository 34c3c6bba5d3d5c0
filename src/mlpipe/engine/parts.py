"""Tables as folders of Parquet parts, and a step mapped over them: every data stage works part
by part, with the stage's executor (`mlpipe.engine.executor`): in this process for
`compute.engine: local`, on a Dask cluster's workers for `compute.engine: dask`.

Each part goes through the same pandas functions (`quarantine_rows`, `split_masks`,
`feature_table`, `score_table`...). What needs the whole table is decided in the stage's process
from small summaries the parts send back and that merge exactly: row and null counts, the
target's values, the ids that repeat, each categorical column's level counts, and the one or two
columns a split needs. No table is gathered in one process.

The task that reads a part also writes its output parts, under the names of the part it read,
into the staging folders of `mlpipe.io.atomic_dir`: a failed stage leaves no output, and the
folders DVC hashes hold the same files, to the byte, on every run with the same inputs, under
either engine and any number of workers. On a cluster the workers must therefore see the
repository's folder (a cluster on this machine, or a shared disk).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlpipe.engine.executor import current
from mlpipe.errors import DataError, first_line
from mlpipe.io import atomic_dir, corrupt_artifact, read_pipeline_table

log = logging.getLogger(__name__)

Outputs = tuple[pd.DataFrame, ...]


def part_files(path: str | Path) -> list[Path]:
    """The Parquet parts of a folder in name order (the order of the rows); a file is its only part."""
    path = Path(path)
    if not path.is_dir():
        if not path.exists():
            raise DataError(f"'{path}' does not exist: run the stage that writes it (dvc repro) first")
        return [path]
    parts = sorted(file for file in path.glob("*.parquet") if not file.name.startswith("."))
    if not parts:
        raise DataError(f"folder '{path}' holds no Parquet parts: run the stage that writes it (dvc repro) first")
    return parts


def parts_checked(path: str | Path, what: str, stage: str) -> list[Path]:
    """The parts of the table `stage` writes at `path`, each one's footer read here: a missing table
    is a `DataError` naming the stage to run, a part cut short (a killed copy, a partial `dvc
    pull`) an `ArtifactError` naming it and the stage that rebuilds it, before any task starts."""
    if not Path(path).exists():
        raise DataError(f"{what} '{path}' does not exist: run `dvc repro {stage}` (or `dvc pull`) first")
    parts = part_files(path)
    for part in parts:
        try:
            pq.read_metadata(part)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise corrupt_artifact(what, part, stage, first_line(exc)) from None
    return parts


def part_rows(parts: Sequence[Path]) -> list[int]:
    """Rows per part, from the Parquet footers."""
    return [pq.read_metadata(part).num_rows for part in parts]


def describe_parts(parts: Sequence[Path]) -> str:
    """'1,500 rows in 2 parts', for a stage's log."""
    return f"{sum(part_rows(parts)):,} rows in {len(parts)} parts"


def read_columns(parts: Sequence[Path], columns: list[str]) -> pd.DataFrame:
    """A few columns of every part, in order, as one table (small: a split's target and time)."""
    return pd.concat([pq.read_table(part, columns=columns).to_pandas() for part in parts], ignore_index=True)


def sample_part(parts: Sequence[Path], rows: int = 1000) -> pd.DataFrame:
    """The first rows of the first part: the columns and their dtypes, with real values."""
    return pq.ParquetFile(parts[0]).read_row_group(0).to_pandas().head(rows) if part_rows(parts[:1])[0] else pd.read_parquet(parts[0])


@contextlib.contextmanager
def staged(*targets: str | Path) -> Iterator[list[Path]]:
    """Empty staging folders for `targets`, swapped in together when the block succeeds."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_dir(target)) for target in targets]


def summaries(task: Callable[..., Any], parts: Sequence[Path], *args: Any, what: str = "parts") -> list[Any]:
    """`task(part table, part index, *args)` on every part with the stage's executor, in part order; nothing is written."""
    return map_parts(lambda table, index, *rest: ((), task(table, index, *rest)), parts, [], *args, what=what)


def map_parts(
    task: Callable[..., tuple[Outputs, Any]],
    parts: Sequence[Path | str],
    outputs: Sequence[Path],
    *args: Any,
    per_part: Sequence[tuple] | None = None,
    read: Callable[[str], pd.DataFrame] | None = None,
    chunk_rows: int | None = None,
    check: Callable[[list[Any]], None] = lambda summaries: None,
    mixed_as_text: bool = False,
    origins: Sequence[str] | None = None,
    what: str = "parts",
) -> list[Any]:
    """Run `task(part table, part index, *args, *per_part[index]) -> (output tables, summary)` on
    every part, with the stage's executor (in this process, or on the cluster's workers).

    Output table k of a part is written as `outputs[k]/<the part's name>` (or, with `chunk_rows`,
    as `part-<index>-<chunk>.parquet` pieces of at most that many rows); the summaries come back
    in part order. `check(summaries)` runs next (a whole-table rule that may still fail the stage),
    then each output folder's parts are given one schema (`unify_parts`; with `mixed_as_text`, a
    column that is text in some parts and not in others becomes text, as `concat_batches` reads
    files that disagree; its warning names each part by `origins[index]`, such as its source file,
    when given). Logs progress as the parts finish. A task's `PipelineError` is passed on.
    `read` reads a part (default: a part an earlier stage wrote, corrupt or truncated -> `ArtifactError`).
    """
    # Absolute paths: a worker's working directory is its own, not the stage's (on a real
    # cluster the repository is mounted at the same path on every machine, docs/scaling.md).
    # A URL (a source ingest's tasks read) is the same everywhere.
    written_to = [str(Path(folder).absolute()) for folder in outputs]
    calls = [
        (
            task,
            read,
            part if "://" in str(part) else str(Path(part).absolute()),
            index,
            written_to,
            (*args, *(per_part[index] if per_part else ())),
            chunk_rows,
        )
        for index, part in enumerate(parts)
    ]
    started, results, step = time.perf_counter(), {}, max(1, len(calls) // 10) if len(calls) >= 20 else len(calls)
    for done, (index, result) in enumerate(current().run(_run_part, calls, what), start=1):
        results[index] = result
        if done % step == 0 and done < len(calls):
            log.info("%s: %d of %d parts done in %.1f s", what, done, len(calls), time.perf_counter() - started)
    ordered = [results[index] for index in range(len(calls))]
    # The parts' own time, beside the wall time: bench/scale.py reads it to tell the work that
    # more workers share from the work that stays in the stage's process.
    work = sum(summary[1] for _, summary in ordered)
    log.info("%s: %d parts in %.2f s (%.2f s of work in the parts)", what, len(calls), time.perf_counter() - started, work)
    check([summary for _, (summary, _seconds) in ordered])
    for position, folder in enumerate(outputs):
        written = [piece for pieces, _ in ordered for piece in pieces[position]]
        if not any(rows for _, rows, _ in written):
            # No part had rows: one empty part keeps the columns, so that the folder reads as a table.
            pq.write_table(written[0][2].empty_table(), Path(folder) / written[0][0], compression="snappy")
        named = (
            {Path(folder) / name: origins[index] for index, (pieces, _) in enumerate(ordered) for name, _, _ in pieces[position]}
            if origins
            else {}
        )
        unify_parts(folder, {Path(folder) / name: schema for name, rows, schema in written if rows}, mixed_as_text, named)
    return [summary for _, (summary, _seconds) in ordered]


def read_written_part(part: str) -> pd.DataFrame:
    """A part an earlier stage wrote; one that no longer reads is corrupt (its own exit status):
    `dvc repro` sees the changed output and rebuilds it."""
    return read_pipeline_table(part, "part", "")


def _run_part(task, read, part: str, index: int, outputs: list[str], args: tuple, chunk_rows: int | None) -> tuple[list, Any]:
    """Returns, per output, (name, rows, schema) of each piece; empty pieces are not written."""
    started = time.perf_counter()
    tables, summary = task(read(part) if read else read_written_part(part), index, *args)
    written = []
    for table, folder in zip(tables, outputs, strict=True):
        if chunk_rows is None:
            pieces = {Path(part).name: table}
        else:
            starts = range(0, max(len(table), 1), chunk_rows)
            pieces = {f"part-{index:05d}-{chunk:04d}.parquet": table.iloc[start : start + chunk_rows] for chunk, start in enumerate(starts)}
        found = []
        for name, piece in pieces.items():
            if len(piece):
                piece.to_parquet(Path(folder) / name, index=False, compression="snappy")
            found.append((name, len(piece), pa.Schema.from_pandas(piece, preserve_index=False)))
        written.append(found)
    return written, (summary, time.perf_counter() - started)


def unify_parts(folder: Path, schemas: dict[Path, pa.Schema], mixed_as_text: bool = False, named: dict[Path, str] | None = None) -> None:
    """Give every part of `folder` ({part's path: its schema}) the same schema, so that the folder
    reads as one table.

    Parts differ when one part's column is all missing (Arrow's null type) or integer where
    another's has missing values (float), or when one lacks a column (a batch without the label):
    those parts are rewritten cast to the common schema, a lacking column as missing values.
    Types that do not cast (text in one part, numbers in another) are one line naming the column,
    or, with `mixed_as_text`, text in every part (the warning names a part as `named` does, or by its name).
    """
    if len({schema.remove_metadata() for schema in schemas.values()}) <= 1:
        return
    if mixed_as_text:
        schemas = _mixed_columns_as_text(schemas, named or {})
    try:  # the first part's pandas metadata is kept: it describes the table
        common = pa.unify_schemas(list(schemas.values()), promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(
            f"the parts of '{folder}' disagree on a column's type ({first_line(exc)}): make it one type in every source file"
        ) from None
    for part, schema in schemas.items():
        if schema.remove_metadata() != common.remove_metadata():
            table = pq.read_table(part)
            for field in common:  # a column other parts have (predict's batches may differ): missing here, as pd.concat fills it
                if field.name not in table.column_names:
                    table = table.append_column(field.name, pa.nulls(len(table), field.type))
            try:
                table = table.select(common.names).cast(common)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError) as exc:
                raise DataError(f"part '{part.name}' of '{folder}' cannot take the others' column types: {first_line(exc)}") from None
            pq.write_table(table, part, compression="snappy")


def _mixed_columns_as_text(schemas: dict[Path, pa.Schema], named: dict[Path, str]) -> dict[Path, pa.Schema]:
    """The parts with each column that is text in some and numbers, booleans or dates in others
    rewritten as text (`mlpipe.data.sources.concat_batches`' rule, one warning); their new schemas."""
    from mlpipe.data.schema import category_texts, mixed_types_warning

    kinds: dict[str, dict[str, str]] = {}  # column -> kind -> first part holding it
    for part, schema in schemas.items():
        for field in schema:
            if not pa.types.is_null(field.type):  # an empty column takes any type
                kinds.setdefault(field.name, {}).setdefault(_kind(field.type), named.get(part, part.name))
    mixed = {column: found for column, found in kinds.items() if len(found) > 1}
    if not mixed:
        return schemas
    log.warning(mixed_types_warning(mixed))
    rewritten = dict(schemas)
    for part, schema in schemas.items():
        columns = [column for column in mixed if column in schema.names and _kind(schema.field(column).type) != "text"]
        if columns:
            table = pd.read_parquet(part)
            table = table.assign(**{column: category_texts(table[column]) for column in columns})
            table.to_parquet(part, index=False, compression="snappy")
            rewritten[part] = pa.Schema.from_pandas(table, preserve_index=False)
    return rewritten


def _kind(arrow: pa.DataType) -> str:
    """`mlpipe.data.schema.value_kind` of an Arrow type (a dictionary's: its values')."""
    from mlpipe.data.schema import value_kind

    return value_kind((arrow.value_type if pa.types.is_dictionary(arrow) else arrow).to_pandas_dtype())


def concat_counts(counts: Sequence[pd.Series]) -> pd.Series:
    """Counts per value from several parts, summed (the values in sorted order)."""
    present = [found for found in counts if len(found)]
    if not present:
        return pd.Series(dtype="int64")
    return pd.concat(present).groupby(level=0, sort=True).sum()


def merged_counts(summaries: Sequence[dict[str, pd.Series]]) -> dict[str, pd.Series]:
    """{name: counts} from every part, summed per name."""
    names = list(summaries[0]) if summaries else []
    return {name: concat_counts([summary[name] for summary in summaries]) for name in names}


def offsets(rows: Sequence[int]) -> np.ndarray:
    """Where each part starts in the whole table."""
    return np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)


def repeated_positions(keys: Sequence[np.ndarray]) -> np.ndarray:
    """Positions in the whole table (the parts' `keys` one after another) of every row whose key
    an earlier row already has: each repeat after the first, as the local engine's unique rule."""
    every = np.concatenate(keys) if keys else np.array([], dtype=np.uint64)
    _, first = np.unique(every, return_index=True)
    repeated = np.ones(len(every), dtype=bool)
    repeated[first] = False
    return np.flatnonzero(repeated)


def row_keys(table: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """A 64-bit hash of each row's id columns: what the repeat check compares across parts."""
    return pd.util.hash_pandas_object(table[columns], index=False).to_numpy()


def read_part_columns(part: str | Path, columns: list[str], what: str, stage: str) -> pd.DataFrame:
    """Some columns of one part an earlier stage wrote (corrupt or truncated -> `ArtifactError`)."""
    try:
        return pq.read_table(part, columns=columns).to_pandas()
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise corrupt_artifact(what, part, stage, first_line(exc)) from None


def run_in_order(task: Callable[..., Any], calls: Sequence[tuple], what: str) -> list[Any]:
    """`task(*call)` for every call with the stage's executor, the results in the calls' order
    (a step that reads its parts itself: training, evaluation's two passes)."""
    results = dict(current().run(task, calls, what))
    return [results[index] for index in range(len(calls))]
