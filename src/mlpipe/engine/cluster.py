"""The Dask cluster a stage runs on with `compute.engine: dask`: one started on this machine for
the stage's duration (`compute.scheduler: local`), or a running one at an address.

Dask and distributed are imported here, when a stage asks for a client, never by the stages of
the local engine.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from mlpipe.config import ComputeParams
from mlpipe.errors import DataError

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)


def _ordered_client() -> type[Client]:
    from distributed import Client

    class OrderedClient(Client):
        """A client whose `who_has` answers in the order it was asked. lightgbm.dask ranks its
        machines in the order of that answer, and each rank builds some features' bins from the
        rows it holds: in the scheduler's order (which varies), the same rows and seed gave a
        different model from run to run.

        No parameter of lightgbm.dask fixes the ranks: with `machines=` it still hands each host's
        listed ports to that host's workers in `who_has`'s order, so workers sharing a machine (a
        LocalCluster, several workers per host) swap ranks. This overrides a public method and
        keeps its contract (each key -> its workers); if lightgbm.dask stopped ranking by it,
        tests/test_dask_engine.py's same-model-every-run test would fail."""

        def who_has(self, futures=None, **kwargs):
            found = super().who_has(futures, **kwargs)
            if futures is None:
                return found
            asked = [future.key for future in (futures if isinstance(futures, list | tuple) else [futures])]
            return type(found)({key: found[key] for key in asked if key in found})

    return OrderedClient


@contextlib.contextmanager
def dask_client(settings: ComputeParams) -> Iterator[Client]:
    """A connected client; the local cluster, if one was started, is closed on the way out."""
    from distributed import LocalCluster

    Client = _ordered_client()  # noqa: N806  (a class)

    # The scheduler of a local cluster runs in the stage's process: its INFO lines would bury the
    # stage's own. A task's failure reaches the stage as one line (`mlpipe.engine.parts.map_parts`).
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if settings.scheduler == "local":
        with LocalCluster(
            n_workers=settings.workers,
            threads_per_worker=settings.threads_per_worker,
            memory_limit=settings.memory_limit,
            processes=True,
            dashboard_address=None,
            # No dashboard; the scheduler's HTTP endpoints on any free port, not on 8787, which two
            # clusters on one machine (parallel stages, experiments) would both ask for.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.CRITICAL,
        ) as cluster, Client(cluster) as client:  # fmt: skip
            log.info(
                "local Dask cluster: %d worker processes x %d thread(s), %s each",
                settings.workers,
                settings.threads_per_worker,
                settings.memory_limit,
            )
            yield client
        return
    try:
        client = Client(settings.scheduler, timeout=f"{settings.connect_timeout_seconds}s")
    except (OSError, TimeoutError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"cannot reach the Dask scheduler at {settings.scheduler} within {settings.connect_timeout_seconds:g} s "
            f"(compute.scheduler): {reason[:200]}; start it, or set compute.scheduler: local"
        ) from None
    with client:
        workers = client.scheduler_info()["workers"]
        log.info("Dask scheduler %s: %d worker(s)", settings.scheduler, len(workers))
        yield client
