"""Throw-away copies of this repository and reading `dvc repro` logs: shared by the tests and the
benchmarks, so that both copy the same files and read stage logs the same way."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

# DVC's line when it starts a stage, and the harness's last line of a stage (see mlpipe.harness).
RUNNING_LINE = re.compile(r"^Running stage '(?P<stage>[^']+)':", re.M)
DONE_LINE = re.compile(r"^\d\d:\d\d:\d\d (?P<stage>\S+): done in (?P<seconds>[\d.]+)s\s*$", re.M)
IDENTITY = {
    "GIT_AUTHOR_NAME": "mlpipe",
    "GIT_AUTHOR_EMAIL": "mlpipe@example.invalid",
    "GIT_COMMITTER_NAME": "mlpipe",
    "GIT_COMMITTER_EMAIL": "mlpipe@example.invalid",
}


def stages_run(log: str) -> list[str]:
    """The stages a `dvc repro` (or `dvc queue logs`) output says it ran, in order."""
    return RUNNING_LINE.findall(log)


def stage_seconds(log: str) -> dict[str, float]:
    """Each stage's own time, from its `done in` line."""
    return {match["stage"]: float(match["seconds"]) for match in DONE_LINE.finditer(log)}


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=_git_env()).stdout


def _git_env() -> dict[str, str]:
    return {**os.environ, **IDENTITY}


def declared_outputs(dvc_yaml: Path) -> list[tuple[str, bool]]:
    """(path, whether DVC caches it) of every output dvc.yaml declares, but those with `${...}` in
    their path (foreach stages, paths from params)."""
    stages = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")).get("stages", {})
    outputs = []
    for stage in stages.values():
        for key in ("outs", "metrics", "plots"):
            for entry in stage.get(key, []) or []:
                path, options = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
                if "${" not in path:
                    outputs.append((path.rstrip("/"), bool((options or {}).get("cache", True))))
    return outputs


def cached_outputs(dvc_yaml: Path) -> list[str]:
    """Paths of the outputs DVC caches (and so refuses to see tracked by git)."""
    return [path for path, cached in declared_outputs(dvc_yaml) if cached]


def snapshot_repository(source: Path, target: Path, *, keep_lock: bool = True) -> dict:
    """Copy the files a fresh clone of `source` would have, taken from its working tree (so
    uncommitted edits come along), into `target`; `git init` and commit them there.

    Git-tracked files that are cached DVC outputs are left out (and reported): DVC refuses to
    write an output git already tracks. Without `keep_lock`, dvc.lock is left out too, so that
    the first `dvc repro` runs every stage.
    """
    tracked = set(git("ls-files", "-z", "--cached", cwd=source).split("\0")) - {""}
    untracked = set(git("ls-files", "-z", "--others", "--exclude-standard", cwd=source).split("\0")) - {""}
    outputs = cached_outputs(source / "dvc.yaml")

    def is_output(path: str) -> bool:
        return any(path == out or path.startswith(out + "/") for out in outputs)

    excluded, copied = [], 0
    for path in sorted(tracked | untracked):
        if is_output(path) or (path == "dvc.lock" and not keep_lock):
            if path in tracked and is_output(path):
                excluded.append(path)
            continue
        origin = source / path
        if not origin.is_file():  # deleted in the working tree, or a submodule
            continue
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, target / path)
        copied += 1
    git("init", "-q", "-b", "main", cwd=target)
    git("add", "-A", cwd=target)
    git("-c", "commit.gpgsign=false", "commit", "-q", "-m", "snapshot of the project", cwd=target)
    return {
        "head": git("rev-parse", "HEAD", cwd=source).strip(),
        "uncommitted_changes": [line for line in git("status", "--porcelain", cwd=source).splitlines() if line],
        "files_copied": copied,
        "git_tracked_dvc_outputs_left_out": excluded,
    }
