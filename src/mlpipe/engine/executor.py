"""The executor: what runs a step's task on every part of a table. In this process for
`compute.engine: local`, on a Dask cluster's workers for `compute.engine: dask`; the task, the
parts, the files it writes and the merge of its summaries are the same code either way
(`mlpipe.engine.parts.map_parts`), so both engines write the same bytes.

The stage harness picks the executor from params.compute before a stage starts
(`executor_for`); library code asks for `current()`. No stage names the engine. A cluster is
started (or reached) only when a stage first needs it, so a stage that maps nothing pays nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from mlpipe.config import ComputeParams
from mlpipe.errors import DataError, PipelineError, first_line

if TYPE_CHECKING:
    from distributed import Client


class InProcess:
    """Runs every task here, one after another, in part order: the one-executor case."""

    cluster = None

    def run(self, task: Callable[..., Any], calls: Sequence[tuple], what: str) -> Iterator[tuple[int, Any]]:
        """(index, task(*calls[index])) as each finishes. A task's exception is passed on as is:
        a `PipelineError` is the user's one line, anything else a bug with its traceback."""
        for index, args in enumerate(calls):
            yield index, task(*args)

    def close(self) -> None:
        pass


class OnCluster:
    """Runs the tasks on a Dask cluster's workers (`mlpipe.engine.cluster.dask_client`), started or
    reached on first use and closed with the stage."""

    def __init__(self, settings: ComputeParams) -> None:
        self._settings = settings
        self._client: Client | None = None
        self._stack = contextlib.ExitStack()

    @property
    def cluster(self) -> Client:
        """The connected client (lightgbm.dask trains through it)."""
        if self._client is None:
            from mlpipe.engine.cluster import dask_client

            self._client = self._stack.enter_context(dask_client(self._settings))
        return self._client

    def run(self, task: Callable[..., Any], calls: Sequence[tuple], what: str) -> Iterator[tuple[int, Any]]:
        """(index, result) in the order the workers finish. A task's `PipelineError` is passed on;
        any other failure on a worker (a lost worker, memory) is one line naming the step."""
        from distributed import as_completed

        futures = [self.cluster.submit(task, *args, pure=False) for args in calls]
        index_of = {future.key: index for index, future in enumerate(futures)}
        for future in as_completed(futures):
            try:
                yield index_of[future.key], future.result()
            except PipelineError:
                raise
            except Exception as exc:  # noqa: BLE001 - a worker's failure, with its own exception type
                raise DataError(f"a Dask worker failed on {what} ({type(exc).__name__}: {first_line(exc)}); see docs/scaling.md") from None

    def close(self) -> None:
        self._stack.close()


Executor = InProcess | OnCluster

_current: ContextVar[Executor] = ContextVar("mlpipe_executor", default=InProcess())  # noqa: B039 - stateless


@contextlib.contextmanager
def executor_for(settings: ComputeParams) -> Iterator[Executor]:
    """The executor `settings` asks for, current for the block; its cluster, if one started, is
    closed on the way out."""
    executor = OnCluster(settings) if settings.engine == "dask" else InProcess()
    token = _current.set(executor)
    try:
        yield executor
    finally:
        _current.reset(token)
        executor.close()


def current() -> Executor:
    """The executor of the running stage (in process when none was set: a test, a notebook)."""
    return _current.get()
