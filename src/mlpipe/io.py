"""Writing outputs atomically.

Every writer goes through `atomic_path`: the bytes land in a temporary file beside the
target and are renamed into place only when complete, so a crash or a kill never leaves a
half-written file for DVC to cache. A stage's outputs are put in place together, at the end
of its `output_transaction`, so a failure leaves none of them changed.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlpipe.errors import ArtifactError, DataError, OutputError, first_line

if TYPE_CHECKING:
    import pyarrow as pa


def _temporary_name(target: Path, pid: int) -> Path:
    return target.with_name(f".{target.name}.{pid}.tmp")


def _remove_stale_temporaries(target: Path) -> None:
    """Delete what writers of `target` that were killed (SIGKILL, power loss) left behind.

    The writer's pid is in the name, so a temporary whose process still runs is left alone.
    """
    for stale in [*target.parent.glob(f".{target.name}.*.tmp"), *target.parent.glob(f".{target.name}.*.old")]:
        if _left_by_dead_writer(stale.name[len(target.name) + 2 : -len(".tmp")]):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


def remove_stale_temporaries(folder: Path) -> int:
    """Delete the temporary files that killed writers left anywhere under `folder`; how many.

    For writers that name every file anew (the prediction log): they never claim the same
    target again, so `atomic_path`'s own clean-up, beside the target, never reaches them."""
    stale = [path for path in folder.rglob(".*.tmp") if path.is_file() and _left_by_dead_writer(path.name.rsplit(".", 2)[-2])]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def _left_by_dead_writer(pid: str) -> bool:
    return pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A killed writer whose parent died too waits as a zombie until something reaps it (in a
    container that may be never): it writes nothing more, so its temporaries are stale."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _claim_temporary(target: str | Path) -> tuple[Path, Path]:
    """(target, this process's temporary beside it), after clearing what killed writers left."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(target)
    return target, _temporary_name(target, os.getpid())


# The outputs of the running stage that wait to be put in place together (see `output_transaction`):
# (temporary, target) pairs, and what to do once they are in place. None outside a transaction.
_staged: list[tuple[Path, Path]] | None = None
_after_commit: list[Callable[[], None]] = []


@contextmanager
def output_transaction(before_commit: Callable[[], None] = lambda: None) -> Iterator[None]:
    """Write a stage's outputs all or nothing.

    Inside the block every `atomic_path` / `atomic_dir` write stays in its temporary. When the
    block ends, `before_commit` runs (a last check, such as params not changed under the stage),
    then every output is renamed into place, then the `after_commit` callbacks run. If the
    block, a write or the check fails, no output is touched and the temporaries are removed.
    """
    global _staged
    _staged, _after_commit[:] = [], []
    try:
        yield
        before_commit()
        for temporary, target in _staged:
            _put_in_place(temporary, target)
        for callback in _after_commit:
            callback()
    finally:
        for temporary, _ in _staged:
            _remove(temporary)
        _staged, _after_commit[:] = None, []


def after_commit(callback: Callable[[], None]) -> None:
    """Run `callback` once the outputs are in place: at the end of the open transaction, or now."""
    if _staged is None:
        callback()
    else:
        _after_commit.append(callback)


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only on success (at the end
    of the open `output_transaction`, if there is one)."""
    with _output_errors(target):
        target, temporary = _claim_temporary(target)
    with _output_errors(target), _removed_unless_staged(temporary):
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        _stage_or_put_in_place(temporary, target)


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield an empty folder beside `target`; swap it in for `target` only on success."""
    with _output_errors(target):
        target, staging = _claim_temporary(target)
    shutil.rmtree(staging, ignore_errors=True)
    with _output_errors(target), _removed_unless_staged(staging):
        staging.mkdir()
        yield staging
        _stage_or_put_in_place(staging, target)


def _stage_or_put_in_place(temporary: Path, target: Path) -> None:
    if _staged is None:
        _put_in_place(temporary, target)
    else:
        _staged.append((temporary, target))


def _put_in_place(temporary: Path, target: Path) -> None:
    with _output_errors(target):
        if temporary.is_dir() and target.exists():
            retired = target.with_name(f".{target.name}.{os.getpid()}.old")
            os.replace(target, retired)
            os.replace(temporary, target)
            shutil.rmtree(retired)
        else:
            os.replace(temporary, target)


@contextmanager
def _removed_unless_staged(temporary: Path) -> Iterator[None]:
    try:
        yield
    finally:
        if not any(temporary == staged for staged, _ in _staged or []):
            _remove(temporary)


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


@contextmanager
def _output_errors(target: Path) -> Iterator[None]:
    """A full disk, a file-size limit, a read-only or forbidden folder: one line naming the output."""
    try:
        yield
    except OSError as exc:
        # pyarrow's errors carry the errno only in their text: "... Detail: [errno 27] File too large"
        number = exc.errno or int(next(iter(re.findall(r"\[errno (\d+)\]", str(exc))), 0))
        raise OutputError(
            f"cannot write '{target}': {os.strerror(number) if number else first_line(exc)}; "
            "free disk space, fix the folder's permissions or raise the file-size limit (ulimit -f)"
        ) from None


def write_parquet(table: pd.DataFrame, target: str | Path) -> Path:
    with atomic_path(target) as temporary:
        table.to_parquet(temporary, index=False, compression="snappy")
    return Path(target)


def write_parquet_table(table: pa.Table, target: str | Path) -> Path:
    """An Arrow table as Parquet, as `write_parquet` writes a DataFrame."""
    import pyarrow.parquet as pq

    with atomic_path(target) as temporary:
        pq.write_table(table, temporary, compression="snappy")
    return Path(target)


def write_text(text: str, target: str | Path) -> Path:
    with atomic_path(target) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(target)


def write_texts(texts: dict[str, str], folder: str | Path) -> Path:
    """A folder holding exactly these files ({name: text}), swapped in whole: files of an
    earlier run that this one does not write (a window since removed, say) do not linger."""
    with atomic_dir(folder) as staging:
        for name, text in texts.items():
            (staging / name).write_text(text, encoding="utf-8")
    return Path(folder)


def write_json(payload: Any, target: str | Path) -> Path:
    return write_text(json.dumps(rounded(payload), indent=2, allow_nan=False) + "\n", target)


def read_pipeline_text(path: str | Path, what: str, stage: str) -> str:
    """The text of a file `stage` writes; a one-line `DataError` naming it when it is missing or unreadable."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{what} '{path}' does not exist: run `dvc repro {stage}` (or `dvc pull`) first") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {what} '{path}': {first_line(exc)}") from None


def read_pipeline_json(path: str | Path, what: str, stage: str, keys: tuple[str, ...] = ()) -> Any:
    """The JSON object of a file `stage` writes, with at least `keys`: a `DataError` when it is
    missing, an `ArtifactError` (its own exit status, never read as a verdict) when it is truncated,
    not JSON or not the object the stage writes."""
    path = Path(path)
    try:
        payload = json.loads(path.read_bytes())
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        problem = first_line(exc)
    except OSError:  # missing or unreadable: its one-line DataError
        return json.loads(read_pipeline_text(path, what, stage))
    else:
        lacking = [key for key in keys if key not in payload] if isinstance(payload, dict) else list(keys)
        if not lacking:
            return payload
        problem = f"no {', '.join(map(repr, lacking))} in it"
    raise corrupt_artifact(what, path, stage, problem)


def read_pipeline_table(path: str | Path, what: str, stage: str) -> pd.DataFrame:
    """The Parquet table (a file, or a folder of parts) that `stage` writes: a `DataError` when it
    is missing, an `ArtifactError` when it is truncated or corrupt."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what} '{path}' does not exist: run `dvc repro {stage}` (or `dvc pull`) first")
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise corrupt_artifact(what, path, stage, first_line(exc)) from None


def corrupt_artifact(what: str, path: str | Path, stage: str, problem: str) -> ArtifactError:
    """The one line for a file the pipeline wrote that no longer reads: rebuilding it is the fix
    (DVC sees the changed output and reruns `stage`, or restores it from its run cache)."""
    return ArtifactError(f"{what} '{path}' is corrupt or truncated ({problem}): rebuild it with `{f'dvc repro {stage}'.strip()}`")


def rounded(value: Any, digits: int = 6) -> Any:
    """Round floats so metrics diffs show meaningful digits; NaN/inf become null."""
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): rounded(item, digits) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(item, digits) for item in value]
    if hasattr(value, "item"):  # numpy scalar
        return rounded(value.item(), digits)
    return value
