"""The pipeline under `dvc repro` on a Dask cluster started as a user starts one on their machines:
a `dask scheduler` process and two `dask worker` processes from the venv's `dask` command, each
in its own working directory, reached at `compute.scheduler: tcp://127.0.0.1:<port>`
(docs/scaling.md, "Pointing it at a real cluster"). tests/test_dask_engine.py runs on
`LocalCluster`s started inside the test process instead."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from conftest import Repo, tool_env

DASK = Path(sys.executable).parent / "dask"  # the venv's command, as on a user's machines
WORKERS = 2
START_TIMEOUT_S = 60


def _start(command: list[str], folder: Path, env: dict[str, str]) -> subprocess.Popen:
    """One cluster process in its own session (and process group: a worker's nanny and the worker
    it starts are stopped together), its output in a log file of `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "log.txt", "w") as log:
        return subprocess.Popen(
            command, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM to each process group (workers first, then the scheduler), SIGKILL to whatever is
    left after 15 s: no process of the cluster outlives the test."""
    tree = []
    for process in processes:
        try:
            tree += [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    for process in processes:
        with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
            os.killpg(process.pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(tree, timeout=15)
    for process in alive:
        with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=5)
    for process in processes:
        process.wait(timeout=5)


@pytest.fixture
def real_cluster(repo: Repo, tmp_path: Path) -> Iterator[str]:
    """The address of a running `dask scheduler` with two `dask worker`s (one single-thread
    process, 1 GiB each) attached; they import `mlpipe` from the repository copy (its src/ on
    PYTHONPATH, what `pip install -e .` gives a user's workers)."""
    from distributed import Client

    env = {**tool_env(), "PYTHONPATH": str(repo.path / "src")}
    scheduler_file = tmp_path / "cluster" / "scheduler.json"
    processes: list[subprocess.Popen] = []
    try:
        # Port 0 and --scheduler-file: a free port, no race with other tests. --idle-timeout and
        # --death-timeout end the cluster on their own should the test process be killed outright.
        processes.append(
            _start(
                [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--idle-timeout", "600"]
                + ["--scheduler-file", str(scheduler_file)],
                tmp_path / "cluster",
                env,
            )
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not scheduler_file.exists():
            assert processes[0].poll() is None, (tmp_path / "cluster" / "log.txt").read_text()
            assert time.monotonic() < deadline, "the scheduler wrote no scheduler file"
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        for number in range(WORKERS):
            processes.append(
                _start(
                    [str(DASK), "worker", address, "--nworkers", "1", "--nthreads", "1", "--memory-limit", "1GiB"]
                    + ["--no-dashboard", "--death-timeout", "60", "--name", f"worker-{number}"],
                    tmp_path / f"worker-{number}",
                    env,
                )
            )
        with Client(address, timeout=f"{START_TIMEOUT_S}s") as client:
            client.wait_for_workers(WORKERS, timeout=START_TIMEOUT_S)
        yield address
    finally:
        _stop(processes[::-1])


ALL_STAGES = ["ingest", "validate", "split", "featurize", "train", "evaluate", "fairness", "predict", "drift", "card"]


def quality_and_verdicts(repo: Repo) -> tuple[float, dict[str, dict[str, bool]]]:
    """The test ROC-AUC, and every feature's drifted or not in every drift window."""
    evaluation, drift = (json.loads((repo.path / "metrics" / f"{name}.json").read_text()) for name in ("evaluation", "drift"))
    verdicts = {window: {column: found["drifted"] for column, found in w["columns"].items()} for window, w in drift["windows"].items()}
    return evaluation["test"]["roc_auc"], verdicts


def output_hashes(repo: Repo) -> dict[str, str]:
    return {out["path"]: out["md5"] for stage in repo.lock()["stages"].values() for out in stage.get("outs", [])}


DATA_STAGES = ["ingest", "validate", "split", "featurize"]


@pytest.mark.integration
def test_the_pipeline_on_a_cluster_of_dask_scheduler_and_dask_worker_processes(repo, real_cluster):
    """Switching the engine reruns train and what follows only; the model is as good as the local
    engine's (test ROC-AUC within 0.005, the same drift verdict for every feature); the stages up to
    train forced to run on the cluster write the data stages' outputs to the byte as the local
    engine did, and the model as the switch's run did, so nothing after train reruns."""
    repo.set_params(data={"partition_rows": 2000}, train={"n_estimators": 300})  # many parts per worker
    assert repo.dvc("repro").stages_run == ALL_STAGES  # the local engine
    rows = json.loads((repo.path / "metrics" / "data_quality.json").read_text())["rows_in"]
    assert len(list((repo.path / "data" / "validated" / "dataset.parquet").glob("*.parquet"))) == -(-rows // 2000) > 1
    local_auc, local_verdicts = quality_and_verdicts(repo)
    local = output_hashes(repo)

    repo.set_params(compute={"engine": "dask", "scheduler": real_cluster})
    run = repo.dvc("repro")
    assert run.stages_run == ["train", "evaluate", "fairness", "predict", "drift", "card"], run.stdout
    assert f"Dask scheduler {real_cluster}: {WORKERS} worker(s)" in run.stdout  # train ran on this cluster
    auc, verdicts = quality_and_verdicts(repo)
    assert abs(auc - local_auc) <= 0.005
    assert verdicts == local_verdicts
    switched = output_hashes(repo)

    # Forced up to train: the stages after it read only its outputs, so with those the same bytes
    # nothing after it may rerun (their bytes on either engine: tests/test_dask_engine.py).
    run = repo.dvc("repro", "-f", "train")
    assert run.stages_run == [*DATA_STAGES, "train"], run.stdout
    forced = output_hashes(repo)
    data_outputs = {out["path"] for stage in DATA_STAGES for out in repo.lock()["stages"][stage]["outs"]}
    assert {path: forced[path] for path in data_outputs} == {path: local[path] for path in data_outputs}
    assert forced == switched
    assert repo.dvc("repro").stages_run == []
