"""Model versions in git: which commit a GTO stage or version tag names, and the files the service
needs from that commit.

GTO keeps the registry in git tags (`classifier@v0.0.2` registers a version, `classifier#prod#3`
assigns it to a stage): there is no server. `resolve` reads the tags through `gto.api`;
`fetch` copies the artifact's files as that commit's dvc.yaml declares them (model, meta.schema,
meta.calibration) out of the DVC cache, else the DVC remote, else git, through `dvc.api`'s
file system, without touching the workspace. `mlpipe serve --stage prod` serves them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from mlpipe.errors import ConfigError, DataError, first_line


@dataclass(frozen=True)
class Release:
    """One registered version of an artifact: `stage` is the stage it was resolved through (None
    when asked for by version) and `rev` the full sha of the commit the version tag names."""

    artifact: str
    version: str
    stage: str | None
    rev: str


@dataclass(frozen=True)
class ArtifactFiles:
    """The files of a model artifact, as its dvc.yaml names them (relative to the repository)."""

    model: str
    schema: str
    calibration: str


def artifact_files(document: Any, name: str | None, origin: str) -> tuple[str, ArtifactFiles]:
    """(name, files) of the artifact `name` under `artifacts:` in a parsed dvc.yaml, or of its one
    artifact of type model when `name` is None. Raises `ConfigError` naming `origin`."""
    artifacts = (document if isinstance(document, dict) else {}).get("artifacts") or {}
    models = {key: spec for key, spec in artifacts.items() if name == key or (name is None and (spec or {}).get("type") == "model")}
    if len(models) != 1:
        wanted = f"an artifact named {name!r}" if name else "exactly one artifact of type model"
        raise ConfigError(f"{origin} needs {wanted} under artifacts: (it has {sorted(artifacts)}); see docs/serving.md")
    ((key, spec),) = models.items()
    meta = (spec or {}).get("meta") or {}
    for field, names in (("schema", "feature schema (models/schema.json)"), ("calibration", "calibration (models/calibration.json)")):
        if not meta.get(field):
            raise ConfigError(f"{origin}: artifacts.{key}.meta.{field} must name the model's {names}")
    return key, ArtifactFiles(str(spec["path"]), str(meta["schema"]), str(meta["calibration"]))


ASSIGN = "gto assign {artifact} --version vX.Y.Z --stage {stage}"


def resolve(repo: Path, artifact: str, *, stage: str | None = None, version: str | None = None) -> Release:
    """The version of `artifact` that git tags in `repo` assign to `stage`, or the registered
    `version`. Raises `ConfigError` (one line, with the command that fixes it)."""
    import gto.api
    from gto.exceptions import GTOException
    from scmrepo.exceptions import SCMError

    asked = f"--stage {stage}" if stage is not None else f"--version {version}"
    try:
        registered = gto.api.show(repo)
        if artifact not in registered:
            known = ", ".join(sorted(registered)) or "none"
            raise ConfigError(
                f"{asked}: artifact {artifact!r} has no registered version in {repo}'s git tags (artifacts with versions: {known}); "
                f"pass --artifact with one of those, or register this one: `gto register {artifact}` (then push the tag it prints: `git push origin <tag>`)"
            )
        # Each version's commit, and which version each stage holds as `gto show` says it: the
        # version of the stage's latest assignment (`find_versions_in_stage` orders by version
        # number instead, so a rollback to a lower version would not be served).
        versions = {row["version"]: row["commit_hexsha"] for row in gto.api.show(repo, artifact)}
        stages = registered[artifact]["stage"]
        if stage is not None:
            if stage not in stages:
                held = ", ".join(f"{name} ({assigned})" for name, assigned in sorted(stages.items())) or "none"
                raise ConfigError(
                    f"--stage {stage}: no version of {artifact} is assigned to stage {stage!r} (its stages: {held}); assign one: "
                    f"`{ASSIGN.format(artifact=artifact, stage=stage)}` (`gto show {artifact}` lists the versions), then push the tag it prints: `git push origin <tag>`"
                )
            version = stages[stage]
        elif version not in versions:
            raise ConfigError(
                f"--version {version}: {artifact} has no registered version {version!r} (it has {', '.join(sorted(versions))}); "
                f"pass one of those, or register it on a commit that has no version yet: `gto register {artifact} <commit> --version {version}`"
            )
        return Release(artifact, version, stage, versions[version])
    except SCMError:  # GTO reads git tags: a folder that is no git repository has none
        raise ConfigError(
            f"{asked}: {repo} is not a git repository, so it has no GTO tags: run serve in a clone of the project, "
            "or serve the workspace's files without --stage/--version"
        ) from None
    except GTOException as exc:
        raise ConfigError(f"{asked}: GTO cannot read the tags of {repo}: {first_line(exc)}") from None


def fetch(release: Release, repo: Path, folder: Path, *, dvc_yaml: str, optional: Iterable[str]) -> ArtifactFiles:
    """Copy the release's model, feature schema and calibration, as `dvc_yaml` at its commit names
    them, and each `optional` file that commit holds, into `folder` under their paths in the
    repository; the artifact's files there. Raises `ConfigError`/`DataError` (one line)."""
    from dvc.api import DVCFileSystem

    # At the release's commit, not the workspace: a later commit may have moved or renamed the files.
    files = DVCFileSystem(str(repo), rev=release.rev)
    where = f"{release.artifact} {release.version} (commit {release.rev[:7]})"
    declared = yaml.safe_load(files.read_text(dvc_yaml)) if files.exists(dvc_yaml) else {}
    _, needed = artifact_files(declared, release.artifact, f"{dvc_yaml} of {where}")
    for path in vars(needed).values():
        _copy(files, path, folder, where, required=True)
    for path in optional:
        _copy(files, path, folder, where, required=False)
    return ArtifactFiles(**{role: str(folder / path) for role, path in vars(needed).items()})


def _copy(files: Any, path: str, folder: Path, where: str, *, required: bool) -> None:
    from dvc.exceptions import DvcException

    inside = PurePosixPath(path)
    if inside.is_absolute() or ".." in inside.parts:
        raise ConfigError(f"{path}: the files of {where} are named by their paths inside the repository, e.g. metrics/evaluation.json")
    if not files.exists(inside.as_posix()):
        if not required:
            return  # the service starts without it, as it does from the workspace
        raise DataError(
            f"{where} has no {path}: its dvc.yaml names it but that commit tracks it neither in git nor as a DVC output; "
            "register a commit that holds it (`dvc repro`, then commit dvc.lock)"
        )
    target = folder / inside
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        files.get_file(inside.as_posix(), str(target))
    except (OSError, DvcException) as exc:
        raise DataError(
            f"{path} of {where} is in neither this clone's DVC cache nor its DVC remote ({first_line(exc)}): in the clone that "
            "trained it run `dvc push --all-tags` (pushes every tagged version's files), then start again"
        ) from None
