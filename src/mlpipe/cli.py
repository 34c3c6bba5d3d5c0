"""What every stage entry point shares: logging set-up, timing, and turning user errors into one line.

Logs go to stdout; stderr carries only the one-line error, so a failing stage says what to
fix without a traceback wall. Unexpected exceptions (bugs) still show their traceback.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from mlpipe.errors import PipelineError


def run_stage(name: str, main: Callable[[logging.Logger], None]) -> None:
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    log = logging.getLogger(name)
    started = time.perf_counter()
    try:
        main(log)
    except PipelineError as exc:
        print(f"error: {name}: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"error: {name}: interrupted; nothing was written", file=sys.stderr)
        sys.exit(130)
    log.info("done in %.1fs", time.perf_counter() - started)


def describe(table: pd.DataFrame) -> str:
    return f"{len(table):,} rows x {table.shape[1]} columns"


def log_written(log: logging.Logger, *paths: str | Path) -> None:
    for path in paths:
        log.info("wrote %s (%s)", path, _size(Path(path)))


def _size(path: Path) -> str:
    size = float(path.stat().st_size)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""
