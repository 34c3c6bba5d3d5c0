"""Faults: a stage killed with SIGKILL in the middle of writing its output."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import DEFAULT_DATA, ROOT, tool_env

pytestmark = pytest.mark.integration


def cache_files(repo) -> set[Path]:
    return {path for path in (repo.path / ".dvc" / "cache").rglob("*") if path.is_file()}


def kill_while_writing(repo, watched: Path, timeout: float = 120) -> None:
    """Start `dvc repro`, SIGKILL its whole process group the moment a temporary output file
    appears in `watched` (the stage is then inside its write), and wait for it to die."""
    env = {**tool_env(), "PYTHONPATH": str(repo.path / "src")}
    process = subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=repo.path, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if watched.is_dir() and any(name.endswith(".tmp") for name in os.listdir(watched)):
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
                return
            if process.poll() is not None:
                pytest.fail("dvc repro finished before the stage started writing: nothing was interrupted")
            time.sleep(0.002)
        pytest.fail("no temporary output file appeared")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def test_sigkill_mid_write_loses_nothing_and_the_next_repro_recovers(repo):
    # The full default table makes the ingest write long enough to be caught in the act.
    shutil.copyfile(DEFAULT_DATA, repo.path / "data" / "employment_ma.parquet")
    cached_before = cache_files(repo)
    kill_while_writing(repo, repo.path / "data" / "raw")

    output = repo.path / "data" / "raw" / "dataset.parquet"
    assert not output.exists(), "a half-written output reached its final name"
    assert cached_before <= cache_files(repo), "a kill must never remove anything from the cache"

    # Recovery of the interrupted stage (downstream stages would only retrain on the bigger table).
    assert repo.dvc("repro", "ingest").stages_run == ["ingest"]
    assert "up to date" in repo.dvc("status", "ingest").stdout
    leftovers = [path for path in (repo.path / "data").rglob("*.tmp")]
    assert leftovers == [], leftovers
    # The same bytes as an uninterrupted run on the same data: the committed pipeline's hash.
    committed = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]["ingest"]["outs"][0]
    assert repo.lock()["stages"]["ingest"]["outs"][0]["md5"] == committed["md5"]
