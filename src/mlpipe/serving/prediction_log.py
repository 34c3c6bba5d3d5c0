"""The prediction log: what a service served, as date-partitioned Parquet that the batch
`predict` stage reads as a folder of batches (monitor.current_source), so drift is measured
on real traffic.

    <folder>/date=2026-11-30/part-081502-4711-000001.parquet    (UTC time of the first row, pid, sequence)

Records are buffered as they come (no table per request) and written as a new file, after the
personal-data rules, when `rows_per_file` are waiting, when the oldest has waited
`flush_seconds`, and on close. Each file is written under a hidden temporary name
and renamed into place (mlpipe.io), so a crash loses at most the rows still buffered and never
leaves a half-written file; readers skip hidden files, and the writer removes the temporaries
killed writers left. A writer that cannot write keeps at most `max_buffered_rows` rows, dropping
the oldest (counted). After writing, files past the retention limits are removed, oldest first.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlpipe.data.schema import category_label
from mlpipe.errors import ArtifactError, OutputError, PipelineError, first_line
from mlpipe.io import remove_stale_temporaries, write_parquet_table

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

SERVED_AT = "served_at"
# The log's own files: date=<day>/part-<time of the first row>-<pid>-<sequence>.parquet
_LOG_FILE = re.compile(r"date=(\d{4}-\d{2}-\d{2})/part-(\d{6})-\d+-\d+\.parquet")


class PredictionLog:
    def __init__(
        self,
        folder: str | Path,
        rows_per_file: int,
        flush_seconds: float,
        protect: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        background: bool = True,
        max_buffered_rows: int = 100_000,
        max_age_days: float | None = None,
        max_bytes: int | None = None,
        tidy_seconds: float = 60.0,
    ):
        """`protect`, when given, runs on every table (as pandas) before it is written: the
        personal-data rules; without, the table goes from the records to the file in Arrow. With
        `background`, a thread writes full and due files; without, `append` writes a full file
        itself and only `flush` and `close` write the rest (deterministic, for tests).

        At most `max_buffered_rows` (at least a file's) wait in memory; when the writer cannot
        keep up or cannot write, the oldest are dropped and `on_dropped(rows)` is called (the
        service counts them in /metrics). At most every `tidy_seconds`, after a write, the files
        whose first row is older than `max_age_days`, then the oldest past `max_bytes` in all,
        are removed (never those just written), with the temporaries killed writers left."""
        self.folder = Path(folder)
        self.rows_per_file = rows_per_file
        self.flush_seconds = flush_seconds
        self.max_buffered_rows = max(max_buffered_rows, rows_per_file)
        self.max_age_days, self.max_bytes, self.tidy_seconds = max_age_days, max_bytes, tidy_seconds
        self.dropped_rows = 0
        self.on_dropped: Callable[[int], None] = lambda rows: None
        self._tidied: float | None = None
        self._protect = protect
        self._clock = clock
        self._lock = threading.Lock()  # guards the buffer: held for an append, never for a write
        self._writing = threading.Lock()  # one flush at a time, so files are written in order
        self._buffer: list[_Served] = []
        self._buffered_rows = 0
        self._in_flight = 0  # rows a flush took and has not yet written
        self._unwritten: list[pa.Table] = []  # protected parts a failed write left
        self._oldest: float | None = None
        self._sequence = itertools.count(1)
        self._closed = threading.Event()
        self._full = threading.Event()
        self._flusher = threading.Thread(target=self._flush_when_due, name="prediction-log", daemon=True) if background else None
        if self._flusher is not None:
            self._flusher.start()

    def append(self, records: list[dict[str, Any]], outputs: Mapping[str, Any] | None = None) -> None:
        """Queue served records (the fields each was sent with; not changed afterwards: the
        buffer holds them as they are) and what was served for them: `outputs` maps a column to
        one value per record (an array) or one for all of them. The rows are stamped with the
        time they were served (UTC). The request pays nothing more: the writer makes the table
        (Arrow, from the records themselves: a fifth of the cost of JSON lines read back)."""
        served = _Served(records, dict(outputs or {}), self._clock().isoformat(timespec="microseconds"))
        with self._lock:
            self._buffer.append(served)
            self._buffered_rows += served.rows
            self._oldest = self._oldest or time.monotonic()
            dropped = self._drop_oldest()
            full = self._buffered_rows >= self.rows_per_file
        if dropped:
            self._count_dropped(dropped)
        if full and self._flusher is not None:
            self._full.set()  # the flusher thread writes it: the caller (a request) does not wait
        elif full:
            self.flush()

    def flush(self) -> list[Path]:
        """Write what is buffered now: one file per day it spans, each at most rows_per_file rows.
        When a write fails (a full disk), the rows not yet written are kept for the next try."""
        with self._writing:
            with self._lock:
                served, self._buffer, self._buffered_rows, self._oldest = self._buffer, [], 0, None
                frames, self._unwritten = self._unwritten, []
                # Rows being written count against max_buffered_rows until they are in a file: a
                # kill loses at most that many, however far the writer is behind the traffic.
                self._in_flight = sum(chunk.rows for chunk in served) + sum(table.num_rows for table in frames)
            if served:
                try:
                    table = _table(served)
                    if self._protect is not None:
                        table = pa.Table.from_pandas(self._protect(table.to_pandas()), preserve_index=False)
                    frames.append(table)
                except Exception:
                    with self._lock:  # nothing is lost: back in front of what was appended since
                        self._buffer[:0], self._unwritten, self._in_flight = served, frames + self._unwritten, 0
                        self._buffered_rows += sum(chunk.rows for chunk in served)
                        self._oldest = self._oldest or time.monotonic()
                    raise
            if not frames:
                return []
            table = pa.concat_tables(frames, promote_options="permissive") if len(frames) > 1 else frames[0]
            parts = [
                (day, rows.slice(start, self.rows_per_file))
                for day, rows in _by_day(table)
                for start in range(0, rows.num_rows, self.rows_per_file)
            ]
            written: list[Path] = []
            for index, (day, part) in enumerate(parts):
                name = f"part-{part[SERVED_AT][0].as_py()[11:19].replace(':', '')}-{os.getpid()}-{next(self._sequence):06d}.parquet"
                try:
                    written.append(write_parquet_table(part, self.folder / f"date={day}" / name))
                except OutputError:
                    with self._lock:
                        self._unwritten, self._in_flight = [rows for _, rows in parts[index:]], 0
                        self._oldest = self._oldest or time.monotonic()  # due again after flush_seconds
                    raise
                with self._lock:
                    self._in_flight -= part.num_rows
            self._tidy(written)
            return written

    def close(self) -> None:
        """Stop the flusher and write what is left; rows that cannot be written are dropped with
        one line (the service is stopping: nothing would try again)."""
        self._closed.set()
        self._full.set()
        if self._flusher is not None:
            self._flusher.join()
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 - any failure: said in one line, never a traceback at shutdown
            with self._lock:
                lost = self._buffered_rows + sum(table.num_rows for table in self._unwritten)
                self._buffer, self._buffered_rows, self._unwritten = [], 0, []
            self._count_dropped(lost)
            log.error("prediction log: %d row(s) not written at shutdown: %s", lost, _reason(exc))

    def _drop_oldest(self) -> int:
        """With the lock held: the oldest rows past `max_buffered_rows` dropped (those a failed
        write left first); how many."""
        excess = self._in_flight + self._buffered_rows + sum(table.num_rows for table in self._unwritten) - self.max_buffered_rows
        dropped = 0
        while excess > dropped and self._unwritten:
            cut = min(excess - dropped, self._unwritten[0].num_rows)
            self._unwritten[0] = self._unwritten[0].slice(cut)
            self._unwritten = [table for table in self._unwritten if table.num_rows]
            dropped += cut
        while excess > dropped and self._buffer:
            cut = min(excess - dropped, self._buffer[0].rows)
            self._buffer[0] = self._buffer[0].without_first(cut)
            self._buffer = [chunk for chunk in self._buffer if chunk.rows]
            self._buffered_rows -= cut
            dropped += cut
        return dropped

    def _count_dropped(self, rows: int) -> None:
        self.dropped_rows += rows
        self.on_dropped(rows)

    def _tidy(self, written: list[Path]) -> None:
        """Retention, after a write: see `__init__`. Several processes may tidy one folder: a
        file another removed first is skipped."""
        now = time.monotonic()
        if self._tidied is not None and now - self._tidied < self.tidy_seconds:
            return
        self._tidied = now
        remove_stale_temporaries(self.folder)
        if self.max_age_days is None and self.max_bytes is None:
            return
        files = []  # (time of the first row, size, path), oldest first; other files are not the log's
        for path in self.folder.glob("date=*/part-*.parquet"):
            named = _LOG_FILE.fullmatch(path.relative_to(self.folder).as_posix())
            with contextlib.suppress(FileNotFoundError):
                if named and path not in written:
                    first = dt.datetime.strptime(named[1] + named[2], "%Y-%m-%d%H%M%S").replace(tzinfo=dt.UTC)
                    files.append((first, path.stat().st_size, path))
        files.sort()
        expired = 0
        if self.max_age_days is not None:
            cutoff = self._clock() - dt.timedelta(days=self.max_age_days)
            expired = sum(1 for first, _, _ in files if first < cutoff)
        removed = files[:expired]
        if self.max_bytes is not None:
            total = sum(size for _, size, _ in files[expired:]) + sum(path.stat().st_size for path in written if path.exists())
            for entry in files[expired:]:
                if total <= self.max_bytes:
                    break
                removed.append(entry)
                total -= entry[1]
        for _, _, path in removed:
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # the day's folder, once empty (another process may write there now)
                path.parent.rmdir()
        if removed:
            log.info(
                "prediction log: removed %d file(s) (%s bytes), the oldest served %s: past serve.log_max_age_days (%s) or serve.log_max_bytes (%s)",
                len(removed),
                f"{sum(size for _, size, _ in removed):,}",
                removed[0][0].isoformat(),
                self.max_age_days,
                self.max_bytes,
            )

    def _flush_when_due(self) -> None:
        while not self._closed.is_set():
            full = self._full.wait(min(self.flush_seconds, 1.0) / 2)
            self._full.clear()
            with self._lock:
                due = full or (self._oldest is not None and time.monotonic() - self._oldest >= self.flush_seconds)
            if due:
                try:
                    self.flush()
                except Exception as exc:  # noqa: BLE001 - kept buffered (a dead writer thread would log nothing more)
                    # One line per attempt; retried every flush_seconds; past max_buffered_rows the oldest go.
                    with self._lock:
                        held = self._buffered_rows + sum(table.num_rows for table in self._unwritten)
                    log.error(
                        "prediction log: cannot write (%s); %d row(s) held, %d dropped so far (serve.log_max_buffered_rows %d)",
                        _reason(exc),
                        held,
                        self.dropped_rows,
                        self.max_buffered_rows,
                    )


@dataclass(frozen=True)
class _Served:
    """One append: its records, what was served for them and when."""

    records: list[dict[str, Any]]
    outputs: dict[str, Any]
    served_at: str

    @property
    def rows(self) -> int:
        return len(self.records)

    def without_first(self, rows: int) -> _Served:
        outputs = {name: part[rows:] if np.ndim(part) else part for name, part in self.outputs.items()}
        return _Served(self.records[rows:], outputs, self.served_at)


def _reason(exc: Exception) -> str:
    """A failure as one line: the pipeline's own errors say it all; others with their type."""
    return first_line(exc) if isinstance(exc, PipelineError) else f"{type(exc).__name__}: {first_line(exc)}"


def _table(served: list[_Served]) -> pa.Table:
    """The buffered appends as one table: every field any record was sent with (absent: null),
    then the outputs and the time served."""
    records = [record for chunk in served for record in chunk.records]
    try:
        table = _records_table(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # a field sent as text and as numbers or booleans
        names = list(dict.fromkeys(itertools.chain.from_iterable(records)))
        table = pa.table({name: _column(list(map(dict.get, records, itertools.repeat(name)))) for name in names})
    sizes = [chunk.rows for chunk in served]
    for name in dict.fromkeys(name for chunk in served for name in chunk.outputs):
        parts = [chunk.outputs.get(name) for chunk in served]
        values = np.concatenate(
            [np.asarray(part) if np.ndim(part) else np.full(size, part) for part, size in zip(parts, sizes, strict=True)]
        )
        table = table.append_column(name, pa.array(values))
    return table.append_column(SERVED_AT, pa.array(np.repeat(np.array([chunk.served_at for chunk in served], dtype=object), sizes)))


def _records_table(records: list[dict[str, Any]]) -> pa.Table:
    """The records as a table typed by Arrow (numbers as int64 or float64, text as text), with a
    column for every field any record has, in order of first appearance. Arrow takes the names
    from the first record alone: when others have more, a first row naming them all leads, and
    is cut off."""
    names = list(dict.fromkeys(itertools.chain.from_iterable(records)))
    if not records or names == list(records[0]):
        return pa.Table.from_pylist(records)
    return pa.Table.from_pylist([dict.fromkeys(names), *records]).slice(1)


def _column(values: list[Any]) -> pa.Array:
    """A field's values, typed by Arrow. A text field that requests sent as numbers too is
    logged as text, as the categorical levels they are (3 and '3' are both '3'): one Parquet
    column holds one type."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if value is None else category_label(value) for value in values])


def _by_day(table: pa.Table) -> list[tuple[str, pa.Table]]:
    """The table's rows per UTC day they were served (in order: appends come in time order)."""
    served_at = table[SERVED_AT]
    first, last = served_at[0].as_py()[:10], served_at[-1].as_py()[:10]
    if first == last:
        return [(first, table)]
    days = pc.utf8_slice_codeunits(served_at, 0, 10)
    return [(day, table.filter(pc.equal(days, day))) for day in sorted(pc.unique(days).to_pylist())]


def check_log_files(source: str, log_folder: str | None) -> None:
    """When `source` (monitor.current_source) is the prediction log or a folder in it, every
    Parquet file there must be whole: an `ArtifactError` naming the first that is not.

    The log writes each file under a hidden name and renames it into place, so a truncated file
    was damaged afterwards (a disk error, a partial copy or sync). It cannot be rebuilt, and
    monitoring without it, silently, would judge drift on part of the traffic: the stage stops and
    says which file to move out. Reading the footers (the Parquet metadata) finds a cut file
    without reading the rows."""
    import pyarrow.parquet as pq

    from mlpipe.data.sources import is_url, partition_files

    if (
        not log_folder
        or is_url(source)
        or not Path(source).is_dir()
        or not Path(source).resolve().is_relative_to(Path(log_folder).resolve())
    ):
        return
    for file in partition_files(Path(source), "**/*"):
        if file.suffix.lower() != ".parquet":
            continue
        try:
            pq.read_metadata(file)
        except (OSError, ValueError) as exc:
            raise ArtifactError(
                f"prediction log file '{file}' is corrupt or truncated ({first_line(exc)}): the service writes each file "
                f"whole, so it was damaged afterwards; move it out of '{source}' to monitor the rest (or restore it from a backup)"
            ) from None
