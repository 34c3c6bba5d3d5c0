"""Shared fixtures: small real data, and throw-away git+DVC copies of this repository."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import importlib.util
import io
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlpipe.tools.workspace import snapshot_repository, stages_run

# One test worker per core: OpenMP threads (LightGBM's) that spin while they wait would burn the
# other worker's time. Passive waiting changes no result (docs/experiments.md). Set before any
# OpenMP runtime is loaded, for the stages run in this process and the processes it starts.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / "data" / "employment_ma.parquet"
SAMPLE_ROWS_PER_YEAR = 1500


BUILT_REPOSITORIES = {"built_repo", "built_repo_without_reports", "repo", "repo_with_reports", "stage_repo"}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: the marker added here counts
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need no built repository first; in each half the integration tests (the long
    ones) first; otherwise their usual order. A test that needs a built repository is an
    integration test whatever its file says (it waits for a whole pipeline run), so `make
    test-fast` (`-m "not integration"`) leaves it out.

    xdist's worksteal scheduler hands each worker a contiguous share of this list: one worker
    starts on the tests that need the built repository and builds it (a whole pipeline run),
    while the other works through the tests that do not, instead of waiting for it. Long tests
    first leave short ones for the end, which an idle worker can take over (steal): the run
    does not end waiting on one long test.
    """
    for item in items:
        if BUILT_REPOSITORIES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
    items.sort(
        key=lambda item: (
            bool(BUILT_REPOSITORIES & set(getattr(item, "fixturenames", ()))),
            item.get_closest_marker("integration") is None,
        )
    )


# The venv the tests run in: its `python`, `dvc` and `mlpipe` are the ones commands find first on PATH.
VENV = Path(sys.prefix)


def tool_env() -> dict[str, str]:
    """The environment commands need: this venv's `bin` first on PATH (as the Makefile puts it), a
    git identity, no telemetry."""
    env = dict(os.environ)
    # A user's Python caches compiled modules: each copy's stage processes then compile the
    # project's library once, not in every process (set on some machines, this cost the suite
    # about 0.1 s of CPU per stage process).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # `make test` runs pytest under make: a `make` a test starts must behave as a user's top-level
    # one (its messages say `make:`, not `make[1]:`; no flags inherited from the outer make).
    for name in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES"):
        env.pop(name, None)
    env["PATH"] = os.pathsep.join([str(VENV / "bin"), env.get("PATH", "")])
    env.update(
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="pipeline tests",
        GIT_AUTHOR_EMAIL="tests@example.invalid",
        GIT_COMMITTER_NAME="pipeline tests",
        GIT_COMMITTER_EMAIL="tests@example.invalid",
    )
    return env


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    stage: str | None = None  # the stage that ran, for `Repo.stage` runs
    changed: list[str] | None = None  # files the run created, changed or removed (`Repo.stage` runs)

    @property
    def stages_run(self) -> list[str]:
        """Stages DVC reports as executed ("Running stage 'x'"), in order."""
        return stages_run(self.stdout)


class Repo:
    """A temporary git+DVC copy of the project, driven through real commands."""

    def __init__(self, path: Path):
        self.path = path

    def copy(self, destination: Path) -> Repo:
        """A private copy (git history and DVC cache included), free to modify."""
        shutil.copytree(self.path, destination, symlinks=True)
        return Repo(destination)

    def run(self, *args: str, check: bool = True) -> Run:
        # PYTHONPATH makes the stages import this copy's library, not the one installed from the checkout.
        env = {**tool_env(), "PYTHONPATH": str(self.path / "src")}
        done = subprocess.run(args, cwd=self.path, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        result = Run(done.returncode, done.stdout, done.stderr)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}")
        return result

    def dvc(self, *args: str, check: bool = True) -> Run:
        """`python -m dvc ...`: the `python` first on the command's PATH (see `tool_env`)."""
        return self.run("python", "-m", "dvc", *args, check=check)

    def make(self, target: str, *variables: str, check: bool = True) -> Run:
        """`make <target>` as a user runs it, with this test run's venv as its `VENV`, never rebuilt:
        `-o` takes its stamp as up to date (a copy's requirements files are newer than the venv)."""
        return self.run("make", "-o", str(VENV / ".installed-from-requirements"), target, *variables, f"VENV={VENV}", check=check)

    def command(self, stage: str) -> list[str]:
        """The stage's arguments as dvc.yaml gives them (after `python src/stages/<stage>.py`)."""
        spec = yaml.safe_load((self.path / "dvc.yaml").read_text())["stages"][stage]
        words = shlex.split(spec["cmd"])
        return words[words.index(f"src/stages/{stage}.py") + 1 :]

    def path_of(self, stage: str, option: str) -> Path:
        """The file dvc.yaml passes to the stage's `--<option>`: tests name outputs by role, not by path."""
        words = self.command(stage)
        return self.path / words[words.index(f"--{option}") + 1]

    def stage(self, name: str, *args: str) -> Run:
        """Run one stage on this copy as DVC would (the arguments of its dvc.yaml command unless
        given, working directory, exit status, stdout and stderr), without raising on failure.

        In this process, through the harness's `execute`: the stage's logic and its one-line
        errors are what is tested, and a new interpreter per call would cost seconds of imports.
        The drift stage forks report workers when it draws HTML reports, which a test process with
        threads must not do: then it runs as its own process.
        """
        args = args or tuple(self.command(name))
        files = self.files()
        if name in STAGES_WITH_WORKERS and self.draws_reports(args):
            done = self.run("python", f"src/stages/{name}.py", *args, check=False)
        else:
            done = run_in_process(self.path, name, args)
        after = self.files()
        done.stage, done.changed = name, sorted(path for path in files.keys() | after.keys() if files.get(path) != after.get(path))
        return done

    def draws_reports(self, args: tuple[str, ...]) -> bool:
        """Whether the params file the stage arguments name (params.yaml unless given) asks for HTML drift reports."""
        params = self.path / (args[args.index("--params") + 1] if "--params" in args else "params.yaml")
        try:
            return (yaml.safe_load(params.read_text()) or {}).get("drift", {}).get("report_windows") != []
        except (OSError, yaml.YAMLError, AttributeError):  # the stage itself will name what is wrong
            return True

    def files(self) -> dict[str, tuple[int, int]]:
        """Every file of the copy outside .git, .dvc and Python's bytecode caches, with its size and modification time."""
        return {
            path.relative_to(self.path).as_posix(): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in self.path.rglob("*")
            if path.is_file() and not {".git", ".dvc", "__pycache__"} & set(path.relative_to(self.path).parts)
        }

    def params(self) -> dict:
        return yaml.safe_load((self.path / "params.yaml").read_text())

    def set_params(self, **sections: dict) -> None:
        """Update keys inside params.yaml sections, e.g. set_params(train={"learning_rate": 0.1})."""
        params = self.params()
        for section, values in sections.items():
            params.setdefault(section, {}).update(values)
        (self.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def lock(self) -> dict:
        return yaml.safe_load((self.path / "dvc.lock").read_text())

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "-m", message)


STAGES_WITH_WORKERS = {"drift"}


@functools.cache
def stage_function(name: str):
    """The `run` function of src/stages/<name>.py (stage scripts are files, not a package)."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "src" / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run


def run_in_process(folder: Path, name: str, args: Sequence[str]) -> Run:
    """Run stage `name` with `args` in this process, through the harness's `execute`, in `folder`
    (its working directory), capturing its exit status, stdout and stderr."""
    from mlpipe.harness import execute

    stdout, stderr, before = io.StringIO(), io.StringIO(), Path.cwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = execute(stage_function(name), list(args))
    finally:
        os.chdir(before)
    return Run(code, stdout.getvalue(), stderr.getvalue())


def make_repo(destination: Path, data: pd.DataFrame | None = None) -> Repo:
    """Copy the project (its working tree, as a fresh clone would have it) into `destination`, without
    dvc.lock, replace the default data by `data`, and commit."""
    destination.mkdir(parents=True, exist_ok=True)
    snapshot_repository(ROOT, destination, keep_lock=False)
    repo = Repo(destination)
    if data is not None:
        data.to_parquet(destination / "data" / "employment_ma.parquet", index=False)
        repo.commit("the test's sample as the default data")
    return repo


def employment_sample(rows_per_year: int = SAMPLE_ROWS_PER_YEAR, seed: int = 0) -> pd.DataFrame:
    table = pd.read_parquet(DEFAULT_DATA)
    return table.groupby("year", group_keys=False).sample(n=rows_per_year, random_state=seed).sort_values("id").reset_index(drop=True)


@pytest.fixture(scope="session")
def sample() -> pd.DataFrame:
    return employment_sample()


def shared_build(tmp_path_factory, name: str, build) -> tuple[Repo, Run]:
    """A repository built once per test run, not once per xdist worker: the first worker to need
    it runs `build(folder) -> run` under a lock in the run's shared temporary folder; the
    others wait and use it (a build is a pipeline run, the longest set-up of the suite)."""
    import fcntl

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # one folder per run, for every worker
    folder, log = shared / name, shared / f"{name}-run.json"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not log.exists():
            run = build(folder / "repo")
            log.write_text(json.dumps(vars(run)))
    return Repo(folder / "repo"), Run(**json.loads(log.read_text()))


@pytest.fixture(scope="session")
def built_repo(tmp_path_factory, sample) -> Repo:
    """A copy of the project on the sample after one full `dvc repro` with the default params
    (HTML drift reports included), committed. Copy it, don't modify it."""

    def build(path: Path) -> Run:
        repo = make_repo(path, sample)
        first = repo.dvc("repro")
        repo.commit("first repro")
        return first

    repo, repo.first_run = shared_build(tmp_path_factory, "built", build)
    return repo


@pytest.fixture(scope="session")
def built_repo_without_reports(tmp_path_factory, built_repo) -> Repo:
    """`built_repo` with `drift.report_windows: []`, reproduced (only drift reruns) and committed.

    Most tests rerun the drift stage to prove which stages a change reruns or how a fault ends;
    without HTML reports it skips Evidently's import and drawing (about 15 of its 17 seconds on
    the sample). The reports themselves are proven on `built_repo` (forced-repro hashes, the
    output scan, the fault tests of the report workers) and in tests/test_drift.py.
    """

    def build(path: Path) -> Run:
        repo = built_repo.copy(path)
        repo.set_params(drift={"report_windows": []})
        run = repo.dvc("repro")
        repo.commit("no HTML drift reports")
        return run

    return shared_build(tmp_path_factory, "built-without-reports", build)[0]


@pytest.fixture
def repo(built_repo_without_reports, tmp_path) -> Repo:
    """A private copy of the built repository without HTML drift reports (with its DVC cache), free to modify."""
    return built_repo_without_reports.copy(tmp_path / "repo")


@pytest.fixture
def repo_with_reports(built_repo, tmp_path) -> Repo:
    """A private copy of `built_repo`, HTML drift reports included, free to modify."""
    return built_repo.copy(tmp_path / "repo")


@pytest.fixture
def fresh_repo(tmp_path, sample) -> Repo:
    """A copy of the project on the sample that has never been reproduced."""
    return make_repo(tmp_path / "repo", sample)


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class S3Server:
    """A real S3 API server on loopback (moto's ThreadedMotoServer, as dvc-s3's own tests use)."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )

    def reject_all_credentials(self) -> None:
        """From now on every request must be signed by a key the server's IAM knows; none is."""
        from moto import settings

        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0


@pytest.fixture
def s3_server(monkeypatch):
    """The server, with test credentials in this process's environment (which the dvc and stage
    subprocesses inherit): credentials never touch a file."""
    from moto import settings
    from moto.server import ThreadedMotoServer

    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    port = unused_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # moto keeps its buckets in this process, not in the server: start each test from none, or an
    # earlier test's objects would already be "on the remote".
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST")).close()
    no_auth = settings.INITIAL_NO_AUTH_ACTION_COUNT
    try:
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = no_auth
        server.stop()


class _StaticFilesWithETag(http.server.SimpleHTTPRequestHandler):
    """Serves a folder like nginx does for static files: with an ETag, which DVC records."""

    def end_headers(self):
        path = Path(self.translate_path(self.path))
        if path.is_file():
            self.send_header("ETag", f'"{hashlib.md5(path.read_bytes()).hexdigest()}"')
        super().end_headers()

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serving_folder(handler: type[http.server.SimpleHTTPRequestHandler], folder: Path) -> Iterator[int]:
    """A real HTTP server on loopback serving `folder` with `handler`, for the block; yields its port."""
    folder.mkdir(exist_ok=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_server(tmp_path):
    """(base URL, served folder): a real HTTP server on loopback."""
    with serving_folder(_StaticFilesWithETag, tmp_path / "www") as port:
        yield f"http://127.0.0.1:{port}", tmp_path / "www"
