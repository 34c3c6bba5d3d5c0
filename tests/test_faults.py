"""Faults: broken source files and a stage killed with SIGKILL in the middle of writing its output.
Each must fail loudly, lose nothing, and leave a workspace the next `dvc repro` recovers from.
(S3 down or rejecting credentials and SQL errors: test_sources.py and test_remotes.py.)"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import DEFAULT_DATA, ROOT, tool_env
from mlpipe.errors import EXIT_CORRUPT, EXIT_FINDING, EXIT_OK
from mlpipe.tools import command

pytestmark = pytest.mark.integration


def cache_files(repo) -> set[Path]:
    return {path for path in (repo.path / ".dvc" / "cache").rglob("*") if path.is_file()}


def kill_while_writing(repo, watched: Path, timeout: float = 120) -> None:
    """Start `dvc repro`, SIGKILL its whole process group the moment a temporary output file
    appears in `watched` (the stage is then inside its write), and wait for it to die."""
    env = {**tool_env(), "PYTHONPATH": str(repo.path / "src")}
    process = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=repo.path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
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


def outputs_digest(repo) -> dict[str, str]:
    """Every output DVC recorded, path -> md5 (what an uninterrupted run produced)."""
    return {out["path"]: out["md5"] for stage in repo.lock()["stages"].values() for out in stage.get("outs", [])}


def corrupt_parquet(path: Path, sample) -> None:
    path.with_suffix(".parquet").write_bytes(sample.to_parquet(index=False)[:-100] + b"garbage" * 10)


def truncated_csv(path: Path, sample) -> None:
    text = sample.to_csv(index=False)
    path.with_suffix(".csv").write_text(text[: text.rindex("\n", 0, len(text) - 1) + 12])  # cut inside the last row


def non_utf8_csv(path: Path, sample) -> None:
    text = sample.to_csv(index=False).replace("AGEP", "\u00c2GEP", 1)
    path.with_suffix(".csv").write_bytes(text.encode("latin-1"))


def point_at_broken_source(repo, sample, fault) -> None:
    broken = repo.path / "data" / "broken"
    fault(broken, sample)
    repo.set_params(data={"source": str(next(broken.parent.glob("broken.*")).relative_to(repo.path))})


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (corrupt_parquet, r"cannot read 'data/broken.parquet' as parquet: "),
        (truncated_csv, r"'data/broken.csv' looks truncated: its last line has [0-9]+ of 19 fields and no line end"),
        (non_utf8_csv, r"'data/broken.csv' is not UTF-8 text \(line 1, byte 8: 0xc2\): re-save it as UTF-8"),
    ],
)
def test_a_broken_source_fails_in_one_line_and_writes_nothing(repo, sample, fault, message):
    """The stage as DVC runs it (its dvc.yaml arguments), in process: what DVC adds to a failing
    stage is the same for every cause, and is proven once below."""
    point_at_broken_source(repo, sample, fault)
    failed = repo.stage("ingest")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert len(failed.stderr.splitlines()) == 1 and re.search(rf"^error: ingest: .*{message}", failed.stderr), failed.stderr
    assert failed.changed == [], f"a failed stage changed {failed.changed}"


def test_a_broken_source_under_dvc_repro_stops_there_and_the_next_repro_recovers(repo, sample):
    before, cached_before = outputs_digest(repo), cache_files(repo)
    good_source = repo.params()["data"]["source"]
    point_at_broken_source(repo, sample, corrupt_parquet)

    failed = repo.dvc("repro", check=False)
    assert failed.returncode != 0
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: ingest: cannot read 'data/broken.parquet' as parquet: "), failed.stderr
    assert "Traceback" not in failed.stdout + failed.stderr
    assert failed.stages_run == ["ingest"], "nothing after the failed stage may run"
    assert cached_before <= cache_files(repo), "a failure must never remove anything from the cache"
    assert not list((repo.path / "data").rglob("*.tmp"))

    repo.set_params(data={"source": good_source})
    recovered = repo.dvc("repro")
    assert set(recovered.stages_run) <= {"ingest"}, "only the stage whose output DVC removed may run again"
    assert outputs_digest(repo) == before
    assert "Data and pipelines are up to date" in repo.dvc("status").stdout


def test_params_changed_while_train_runs_fail_it_and_dvc_records_nothing(repo):
    """The issue's reproduction: before the fix, dvc.lock recorded 0.2 for a model trained with 0.06."""
    model = repo.path / "models" / "model.txt"
    model_before, lock_before = model.read_bytes(), (repo.path / "dvc.lock").read_text()
    repo.set_params(train={"learning_rate": 0.06, "n_estimators": 3000, "early_stopping_rounds": 0, "validation_fraction": 0})
    env = {**tool_env(), "PYTHONPATH": str(repo.path / "src")}
    process = subprocess.Popen(
        ["python", "-m", "dvc", "repro", "train"],
        cwd=repo.path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in process.stdout:  # the stage logs as it goes; it has read its params once it starts training
            if "train: training on" in line:
                break
        params = repo.path / "params.yaml"
        params.write_text(params.read_text().replace("learning_rate: 0.06", "learning_rate: 0.2"))
        stdout, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode != 0
    assert "error: train: params changed while the stage ran (params.yaml: train.learning_rate 0.06 -> 0.2)" in stderr
    # DVC removes a stage's outputs before running it; the failed run put no new model in their place.
    assert not model.exists() and (repo.path / "dvc.lock").read_text() == lock_before
    assert [path for path in repo.path.rglob("*.tmp") if ".git" not in path.parts] == []
    repo.dvc("checkout", "models/model.txt")
    assert model.read_bytes() == model_before
    assert repo.dvc("repro", "train").stages_run == ["train"]  # DVC knows the model is stale
    assert "learning_rate: 0.2" in (repo.path / "metrics" / "train" / "params.yaml").read_text()


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:  # field 4 of /proc/<pid>/stat: the parent's pid
            found.append(int(stat.parent.name))
    return found


def test_report_workers_die_with_a_killed_drift_stage_and_release_its_output(repo_with_reports):
    """kill -9 of the drift stage alone (what the OOM killer does): before the fix its forked report
    workers lived on, holding stdout/stderr, so a caller reading the output to its end hung."""
    env = {**tool_env(), "PYTHONPATH": str(repo_with_reports.path / "src")}
    stage = subprocess.Popen(
        [sys.executable, "src/stages/drift.py", *repo_with_reports.command("drift")],
        cwd=repo_with_reports.path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not workers and time.monotonic() < deadline and stage.poll() is None:
            workers = children_of(stage.pid)
            time.sleep(0.01)
        assert workers, "the stage never started its report workers"
        os.kill(stage.pid, signal.SIGKILL)
        stage.communicate(timeout=30)  # returns once every holder of the pipes has closed them
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid)]
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stage.kill()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0]
    except (OSError, IndexError):
        return "zombie"


def stage_outputs(repo, stage: str) -> dict[str, bytes]:
    """Every file of a stage's outputs (folders walked), path -> bytes."""
    files = {}
    for out in repo.lock()["stages"][stage]["outs"]:
        path = repo.path / out["path"]
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file():
                files[file.relative_to(repo.path).as_posix()] = file.read_bytes()
    return files


def test_a_failing_stage_keeps_its_last_good_outputs_under_make_repro_and_dvc_checkout_restores_them_under_dvc_repro(repo, tmp_path):
    """DVC deletes a stage's outputs before running it. `make repro` puts them back when the stage
    fails; after a plain `dvc repro` they are gone until `dvc checkout` (cached ones) and `git
    checkout` (metrics files git keeps) restore them, as docs/troubleshooting.md says."""
    before = stage_outputs(repo, "validate")
    assert "metrics/data_quality.json" in before and any(path.startswith("data/validated/") for path in before)
    plain = repo.copy(tmp_path / "plain")
    for copy in (repo, plain):
        copy.set_params(validate={"rows": {"min": 10**9, "max": None}})

    failed = repo.make("repro", check=False)
    assert failed.returncode == 2 and failed.stages_run == ["validate"], failed.stdout + failed.stderr
    own = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
    assert own[0].startswith("error: validate: ") and own[-1].startswith("error: repro: `dvc repro` failed"), failed.stderr
    assert "metrics/data_quality.json" in own[-1] and "data/validated/dataset.parquet" in own[-1], own[-1]
    assert stage_outputs(repo, "validate") == before, "make repro must leave the last good outputs byte for byte"
    assert repo.run("git", "status", "--porcelain", "--", "metrics").stdout == ""

    failed = plain.dvc("repro", check=False)
    assert failed.returncode != 0 and failed.stages_run == ["validate"]
    assert not (plain.path / "metrics" / "data_quality.json").exists()
    assert " D metrics/data_quality.json" in plain.run("git", "status", "--porcelain").stdout
    assert not list((plain.path / "data" / "validated").rglob("*.parquet"))
    plain.dvc("checkout")
    plain.run("git", "checkout", "--", "metrics/data_quality.json")
    assert stage_outputs(plain, "validate") == before


def test_a_truncated_drift_verdict_is_refused_in_one_line_and_the_fix_it_names_works(repo, capsys):
    """A truncated metrics/drift.json made `python -m mlpipe.monitor.retrain` print a traceback and exit 1
    ("retrain"). Now it is exit 3 (through make: 2) and one line whose fix, `dvc repro drift`, works.
    The command runs in process (its own process is tests/test_tools.py's), `make monitor` as a user runs it."""
    verdict = repo.path / "metrics" / "drift.json"
    good = verdict.read_bytes()
    verdict.write_bytes(good[: len(good) // 2])
    assert command.main(["monitor", str(verdict)]) == EXIT_CORRUPT
    refused = capsys.readouterr()
    assert refused.out == "" and refused.err.splitlines() == [refused.err.strip()] and "rebuild it with `dvc repro drift`" in refused.err
    through_make = repo.make("monitor", check=False)
    assert through_make.returncode == 2 and "error: monitor: the drift verdict 'metrics/drift.json' is corrupt" in through_make.stderr

    assert repo.dvc("repro", "drift").stages_run == ["drift"]
    assert verdict.read_bytes() == good
    assert command.main(["monitor", str(verdict)]) in (EXIT_OK, EXIT_FINDING)  # a verdict again
