"""DVC remotes for real: the committed default (a local folder) and S3 through a real S3 API
server on loopback (moto's ThreadedMotoServer, as dvc-s3's own tests use)."""

import shutil
from pathlib import Path

import pytest
import yaml

from conftest import unused_port

pytestmark = pytest.mark.integration


def cached_outputs(repo) -> list[Path]:
    """Workspace paths of every output DVC caches (the ones a pull must bring back); outputs
    declared `cache: false` live in git instead."""
    in_git = set()
    for stage in yaml.safe_load((repo.path / "dvc.yaml").read_text())["stages"].values():
        for key in ("outs", "metrics", "plots"):
            for entry in stage.get(key, []) or []:
                if isinstance(entry, dict):
                    name, options = next(iter(entry.items()))
                    if options and options.get("cache") is False:
                        in_git.add(name)
    return [
        repo.path / out["path"] for stage in repo.lock()["stages"].values() for out in stage.get("outs", []) if out["path"] not in in_git
    ]


def wipe_cache_and_outputs(repo) -> list[Path]:
    outputs = cached_outputs(repo)
    for path in outputs:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    shutil.rmtree(repo.path / ".dvc" / "cache")
    return outputs


def assert_restored(repo, outputs: list[Path], digests: dict[Path, bytes]) -> None:
    """Every output back, byte for byte, and DVC agrees: every stage up to date, so a `dvc repro`
    would run none (the status also sees an output its run-cache could restore without running)."""
    assert all(path.exists() for path in outputs)
    assert {path: _digest(path) for path in outputs} == digests
    assert "Data and pipelines are up to date" in repo.dvc("status").stdout


def _digest(path: Path) -> bytes:
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    return b"".join(file.read_bytes() for file in files if file.is_file())


def test_default_local_remote_round_trip(repo):
    # Read through `dvc config`: `dvc remote list` cuts long URLs to the terminal's width.
    config = dict(line.split("=", 1) for line in repo.dvc("config", "--list", "--project").stdout.splitlines())
    assert config["core.remote"] == "local"
    remote = (repo.path / ".dvc" / config["remote.local.url"]).resolve()
    assert not remote.is_relative_to(repo.path), "the default remote must live outside the work tree"

    repo.make("push")
    assert any(remote.rglob("*")), "make push wrote nothing to the remote"
    outputs = cached_outputs(repo)
    digests = {path: _digest(path) for path in outputs}
    wipe_cache_and_outputs(repo)
    repo.make("pull")
    assert_restored(repo, outputs, digests)


def test_push_to_s3_wipe_everything_pull_back_after_the_remote_was_down_or_rejected_credentials(repo, s3_server):
    """A push, then every failure of the remote: a failed push or pull is one DVC error line and a
    non-zero exit; the local cache and the objects already on the remote are untouched, and the
    next pull restores everything the push sent (one copy for both: each DVC command is a process)."""
    s3_server.client().create_bucket(Bucket="pipeline-cache")
    repo.dvc("remote", "add", "s3", "s3://pipeline-cache/project")
    repo.dvc("remote", "modify", "s3", "endpointurl", s3_server.endpoint)
    assert "testing" not in (repo.path / ".dvc" / "config").read_text()
    pushed = repo.dvc("push", "-r", "s3")
    assert "pushed" in pushed.stdout
    on_remote = {o["Key"]: o["ETag"] for o in s3_server.client().list_objects_v2(Bucket="pipeline-cache")["Contents"]}
    cache = repo.path / ".dvc" / "cache"
    cached = {path: path.read_bytes() for path in cache.rglob("*") if path.is_file()}

    s3_server.reject_all_credentials()
    rejected = repo.dvc("push", "-r", "s3", check=False)
    assert rejected.returncode != 0 and "Traceback" not in rejected.stdout + rejected.stderr
    assert "Forbidden" in rejected.stderr or "denied" in rejected.stderr.lower()
    assert {path: path.read_bytes() for path in cache.rglob("*") if path.is_file()} == cached
    outputs = cached_outputs(repo)
    digests = {path: _digest(path) for path in outputs}
    wipe_cache_and_outputs(repo)
    assert "Data and pipelines are up to date" not in repo.dvc("status").stdout
    refused = repo.dvc("pull", "-r", "s3", check=False)
    assert refused.returncode != 0 and "Traceback" not in refused.stdout + refused.stderr

    repo.dvc("remote", "modify", "s3", "endpointurl", f"http://127.0.0.1:{unused_port()}")
    down = repo.dvc("pull", "-r", "s3", check=False)
    assert down.returncode != 0 and "Traceback" not in down.stdout + down.stderr
    assert "Could not connect to the endpoint URL" in down.stderr

    from moto import settings

    settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
    repo.dvc("remote", "modify", "s3", "endpointurl", s3_server.endpoint)
    assert {o["Key"]: o["ETag"] for o in s3_server.client().list_objects_v2(Bucket="pipeline-cache")["Contents"]} == on_remote
    repo.dvc("pull", "-r", "s3")
    assert_restored(repo, outputs, digests)
    restored = {path: path.read_bytes() for path in cache.rglob("*") if path.is_file()}
    assert restored and all(cached[path] == content for path, content in restored.items())
