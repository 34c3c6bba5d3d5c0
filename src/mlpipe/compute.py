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


@contextlib.contextmanager
def dask_client(settings: ComputeParams) -> Iterator[Client]:
    """A connected client; the local cluster, if one was started, is closed on the way out."""
    from distributed import Client, LocalCluster

    if settings.scheduler == "local":
        with LocalCluster(
            n_workers=settings.workers,
            threads_per_worker=settings.threads_per_worker,
            memory_limit=settings.memory_limit,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.WARNING,
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
