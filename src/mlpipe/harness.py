"""The stage harness: what every stage entry point shares. A stage is a typed function; this
module builds its command line, sets up logging and timing, picks the executor its parts run on
(`params.compute`), writes its outputs all together, and turns user errors into one line.

Logs go to stdout; stderr carries only the one-line error, so a failing stage says what to
fix without a traceback wall. Unexpected exceptions (bugs) still show their traceback.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import sys
import time
import typing
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from mlpipe.config import changes_since_read, load_params
from mlpipe.credentials import mask_credentials
from mlpipe.engine.executor import executor_for
from mlpipe.engine.parts import part_files, part_rows
from mlpipe.errors import EXIT_CORRUPT, ArtifactError, ConfigError, PipelineError
from mlpipe.io import after_commit, output_transaction


def run_stage(stage: Callable[..., None]) -> None:
    """The entry point of a stage script: `run_stage(run)` under `if __name__ == "__main__"`.

    Builds the command line from `run`'s signature (see `execute`), runs it and exits: 0 on
    success, 1 with one line on stderr on a user error, 3 (EXIT_CORRUPT) with one line when a file
    an earlier stage wrote is corrupt or truncated, 130 when interrupted.
    """
    _exit(execute(stage, sys.argv[1:]))


def execute(stage: Callable[..., None], argv: list[str]) -> int:
    """Run a stage function `run(params, log, *, name: Path, ...)` with options parsed from `argv`.

    Each keyword-only parameter becomes a required option (`model_schema` -> `--model-schema`) of
    its annotated type, with the help text of `Annotated[Path, "help"]`; `--params` names the params
    file (default params.yaml), loaded and checked before the stage starts. The stage's outputs are
    put in place together at its end, and only if params.yaml did not change meanwhile. Returns
    the exit status; tests call this in process.
    """
    name = Path(inspect.getfile(stage)).stem
    arguments = vars(_parser(stage, name).parse_args(argv))
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S", force=True)
    # A reader that stops reading (`dvc repro | head`) must not turn each later log line into a
    # traceback on stderr, where the stage's one-line error goes; the stage itself carries on.
    logging.raiseExceptions = False
    log = logging.getLogger(name)
    started = time.perf_counter()
    try:
        with output_transaction(before_commit=params_unchanged):
            params = load_params(arguments.pop("params"), fresh=True)
            with executor_for(params.compute):  # the one place that picks where the parts run
                stage(params, log, **arguments)
    except PipelineError as exc:
        print(f"error: {name}: {mask_credentials(str(exc))}", file=sys.stderr)
        # A corrupt file an earlier stage wrote has its own status: rebuild it, nothing to fix by hand.
        return EXIT_CORRUPT if isinstance(exc, ArtifactError) else 1
    except KeyboardInterrupt:
        print(f"error: {name}: interrupted; nothing was written", file=sys.stderr)
        return 130
    log.info("done in %.1fs", time.perf_counter() - started)
    return 0


def _parser(stage: Callable[..., None], name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"src/stages/{name}.py", description=inspect.getdoc(inspect.getmodule(stage)))
    parser.add_argument("--params", default="params.yaml", type=Path, help="the params file (default: params.yaml)")
    hints = typing.get_type_hints(stage, include_extras=True)
    for parameter in inspect.signature(stage).parameters.values():
        if parameter.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        kind, *notes = typing.get_args(hints[parameter.name]) or (hints[parameter.name],)
        parser.add_argument(
            f"--{parameter.name.replace('_', '-')}", dest=parameter.name, type=kind, required=True, help=notes[0] if notes else None
        )
    return parser


def params_unchanged() -> None:
    """Refuse to write when params.yaml changed while the stage ran: DVC would record the new
    values for outputs made with the old ones, and the next `dvc repro` would skip the stage."""
    changes = changes_since_read()
    if changes:
        shown = "; ".join(changes[:3]) + (f"; and {len(changes) - 3} more" if len(changes) > 3 else "")
        raise ConfigError(
            f"params changed while the stage ran ({shown}); nothing was written: run it again "
            "(queue experiments with `dvc exp run --queue` to edit params while others run)"
        )


def _exit(code: int) -> None:
    """Leave without interpreter teardown.

    Every output is already written, synced and renamed into place. Skipping teardown saves
    time in each stage and avoids native thread pools (Arrow, OpenMP) racing the C++ static
    destructors at exit, which under load can abort a finished stage ("terminate called
    without an active exception").
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def describe(table: pd.DataFrame) -> str:
    return f"{len(table):,} rows x {table.shape[1]} columns"


def log_written(log: logging.Logger, *paths: str | Path) -> None:
    """Log each output with its size, and its row count when it is a table, once it is in place."""

    def report() -> None:
        for path in map(Path, paths):
            rows = f"{sum(part_rows(part_files(path))):,} rows, " if path.suffix == ".parquet" else ""
            log.info("wrote %s (%s%s)", path, rows, _size(path))

    after_commit(report)


def _size(path: Path) -> str:
    if path.is_dir():
        files = [file for file in path.rglob("*") if file.is_file()]
        return f"{_bytes(sum(file.stat().st_size for file in files))} in {len(files)} files"
    return _bytes(path.stat().st_size)


def _bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""
