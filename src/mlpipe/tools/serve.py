"""`make serve`: the prediction service on the model `dvc.yaml` declares as an artifact.

    python -m mlpipe.tools.serve --host 127.0.0.1 --port 8000 \\
        --evaluation metrics/evaluation.json --training-params metrics/train/params.yaml [--card models/card.json]

Serves the artifact of type `model` in dvc.yaml (or `--artifact NAME`) with the feature schema
its meta.schema names, under uvicorn. With `--stage prod` (or `--version v1.2.0`) it serves the
version GTO's git tags assign to that stage instead: its files, fetched at its commit from the DVC
cache or remote into a temporary folder that lives as long as the service (docs/serving.md).
Refuses to start, in one line, when the files are missing, unreadable or do not belong together,
or when personal columns are to be hashed without a salt.
The API key, when used, comes from the environment variable serve.api_key_env names.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from mlpipe.config import load_params
from mlpipe.errors import EXIT_OK, ConfigError, PipelineError, exit_status
from mlpipe.serving.release import Release, artifact_files


def model_artifact(dvc_yaml: Path, name: str | None) -> tuple[Path, Path, Path]:
    """(model, feature schema, calibration) paths of the named artifact, or of the one artifact of type model."""
    _, files = artifact_files(yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")), name, str(dvc_yaml))
    return Path(files.model), Path(files.schema), Path(files.calibration)


@dataclass(frozen=True)
class ServedFiles:
    """The files a service reads, and the release they were fetched from (None: the workspace's)."""

    model: Path
    schema: Path
    calibration: Path
    evaluation: Path
    training_params: Path
    card: Path
    release: Release | None = None

    def to_json(self) -> str:
        paths = {field.name: str(getattr(self, field.name)) for field in fields(self) if field.name != "release"}
        return json.dumps({**paths, "release": self.describe()})

    @classmethod
    def from_json(cls, text: str) -> ServedFiles:
        found = json.loads(text)
        release = found.pop("release")
        return cls(**{name: Path(path) for name, path in found.items()}, release=None if release is None else Release(**release))

    def describe(self) -> dict[str, Any] | None:
        """What /metadata says of the release (artifact, version, stage, commit); None for the workspace's files."""
        return None if self.release is None else asdict(self.release)


def served_files(args: argparse.Namespace, folder: Path) -> ServedFiles:
    """The workspace's files; with --stage or --version, the release's, fetched into `folder`
    once (the workers of a multi-process service are handed these paths). Raises `PipelineError`."""
    if args.stage is None and args.version is None:
        return ServedFiles(*model_artifact(args.dvc_yaml, args.artifact), args.evaluation, args.training_params, args.card)
    from mlpipe.serving.release import fetch, resolve

    name, _ = artifact_files(yaml.safe_load(args.dvc_yaml.read_text(encoding="utf-8")), args.artifact, str(args.dvc_yaml))
    repo = args.dvc_yaml.resolve().parent
    release = resolve(repo, name, stage=args.stage, version=args.version)
    extras = (args.evaluation, args.training_params, args.card)
    found = fetch(release, repo, folder, dvc_yaml=args.dvc_yaml.name, optional=[path.as_posix() for path in extras])
    return ServedFiles(Path(found.model), Path(found.schema), Path(found.calibration), *(folder / path for path in extras), release)


def training_metadata(evaluation: Path, training_params: Path, card: Path) -> dict[str, Any]:
    """What /metadata shows beside the model: the LightGBM params it was trained with, its test
    metrics and its model card (card.json whole, or null when the card stage has not run: the
    service starts without it, as it does without the other two)."""
    from mlpipe.io import read_pipeline_json
    from mlpipe.model.tracking import read_training_params

    metadata: dict[str, Any] = {}
    if training_params.exists():
        metadata["training_params"] = read_training_params(training_params)
    if evaluation.exists():
        metadata["test_metrics"] = read_pipeline_json(evaluation, "the evaluation metrics", "evaluate", keys=("test",))["test"]
    metadata["card"] = read_pipeline_json(card, "the model card", "card", keys=("format", "model_details")) if card.exists() else None
    return metadata


# How the workers of a multi-process service learn their command line and the files main chose
# (they start as new processes; a release is fetched once, by main).
WORKER_ARGV = "MLPIPE_SERVE_ARGV"
WORKER_FILES = "MLPIPE_SERVE_FILES"


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--dvc-yaml", type=Path, default=Path("dvc.yaml"))
    parser.add_argument("--artifact", help="the artifact to serve (default: the one of type model)")
    parser.add_argument("--evaluation", type=Path, required=True, help="the evaluate stage's metrics (test metrics for /metadata)")
    parser.add_argument("--training-params", type=Path, required=True, help="the LightGBM params train used (for /metadata)")
    parser.add_argument("--card", type=Path, default=Path("models/card.json"), help="the model card's JSON (for /metadata)")
    release = parser.add_mutually_exclusive_group()
    release.add_argument("--stage", help="serve the version GTO's tags assign to this stage (e.g. prod), fetched at its commit")
    release.add_argument("--version", help="serve this registered version (e.g. v0.0.2), fetched at its commit")
    return parser


def _setup() -> None:
    # OpenMP threads that spin between LightGBM calls would take the core the event loop needs:
    # they sleep instead (set before LightGBM loads its OpenMP runtime; it changes no result).
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def model_loader(files: ServedFiles, params) -> tuple[Callable[[], Any], Callable[[], tuple]]:
    """Everything that can refuse to start, checked: (the model loader, what the watch reads of
    the model files). Raises `PipelineError`."""
    from mlpipe.data.privacy import require_salt
    from mlpipe.serving.scorer import files_state, load_served_model

    # Checked now: a request carrying such a column could not be logged safely later.
    hashed = [column for column, action in params.data.personal_columns.items() if action == "hash"]
    require_salt(hashed, os.environ.get(params.data.salt_env), params.data.salt_env)
    # Checked now: a service that cannot describe its model does not start.
    training_metadata(files.evaluation, files.training_params, files.card)

    def load():
        """The model files, what /metadata says of them and the calibration (the threshold with it),
        read afresh on every (re)load: a reload describes and labels with the new model's, not the first one's."""
        metadata = {**training_metadata(files.evaluation, files.training_params, files.card), "release": files.describe()}
        return load_served_model(files.model, files.schema, metadata, files.calibration)

    watched = (files.model, files.schema, files.calibration, files.evaluation, files.training_params, files.card)
    return load, (lambda: files_state(*watched))


def service_log(params, **options: Any):
    """The prediction log serve.* describes (None without serve.log_folder), under the
    personal-data rules; `options` for tests (`background`, `clock`)."""
    from mlpipe.data.privacy import apply_personal_rules
    from mlpipe.serving.prediction_log import PredictionLog

    if not params.serve.log_folder:
        return None
    return PredictionLog(
        params.serve.log_folder,
        params.serve.log_rows_per_file,
        params.serve.log_flush_seconds,
        # Not near misses: the request contract refuses every undeclared field, and a request need
        # not carry every declared one (an absent `last_name` is no misspelt `first_name`).
        protect=(lambda table: apply_personal_rules(table, params.data, origin="the service's requests", near_misses=False))
        if params.data.personal_columns
        else None,
        max_buffered_rows=params.serve.log_max_buffered_rows,
        max_age_days=params.serve.log_max_age_days,
        max_bytes=params.serve.log_max_bytes,
        **options,
    )


def api_key(params) -> str | None:
    """The API key from the environment variable serve.api_key_env names; None when it is unset.
    Set but empty is refused (what `"$(cat /run/secrets/key)"` gives when the file is missing: it
    must not turn authentication off), and so is a key of anything but visible ASCII (HTTP headers
    carry bytes: a space, a newline or an accented letter could never be matched as sent)."""
    name = params.serve.api_key_env
    key = os.environ.get(name)
    if key is None:
        return None
    if not key:
        raise ConfigError(f"{name} (serve.api_key_env) is set but empty: put the key in it, or unset it to serve without one")
    if not all("!" <= character <= "~" for character in key):
        raise ConfigError(
            f"{name} (serve.api_key_env) holds a space, a control character or non-ASCII text, which an HTTP header cannot "
            "carry as sent: use visible ASCII only, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    return key


def exposed_without_key(host: str) -> bool:
    """Whether a service on `host` answers beyond this machine (anything but a loopback address)."""
    import ipaddress

    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return True


def service_app(params, load: Callable[[], Any], watch: Callable[[], tuple]):
    """The app of one service process, its model loaded. Raises `PipelineError`."""
    from mlpipe.serving.app import create_app

    return create_app(load, params, api_key=api_key(params), prediction_log=service_log(params), watch=watch)


def worker_app():
    """The app factory each process of a multi-process service calls (uvicorn's `factory=True`)."""
    _setup()
    args = parser().parse_args(json.loads(os.environ[WORKER_ARGV]))
    try:  # checked by `main` a moment ago; the files may have changed since
        params = load_params(args.params)
        load, watch = model_loader(ServedFiles.from_json(os.environ[WORKER_FILES]), params)
        return service_app(params, load, watch)
    except PipelineError as exc:
        print(f"error: serve: worker {os.getpid()}: {exc}", file=sys.stderr)
        sys.exit(exit_status(exc))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    _setup()
    # A release's files live here while the service runs (empty when it serves the workspace's).
    with tempfile.TemporaryDirectory(prefix="mlpipe-release-") as fetched:
        return serve(args, argv, Path(fetched))


def serve(args: argparse.Namespace, argv: list[str], fetched: Path) -> int:
    try:
        params = load_params(args.params)
        key = api_key(params)
        workers = params.serve.workers
        files = served_files(args, fetched)
        load, watch = model_loader(files, params)
        if workers == 1:
            app = service_app(params, load, watch)
            version = app.state.loaded.model.version
        else:  # each worker builds its own app: check here that it can, before any starts
            version = load().version
    except PipelineError as exc:
        print(f"error: serve: {exc}", file=sys.stderr)
        return exit_status(exc)
    import uvicorn

    if key is None and exposed_without_key(args.host):
        print(
            f"warning: serve: listening on {args.host} without an API key: anyone who can reach this port can score and read "
            f"/metadata; set {params.serve.api_key_env} (see docs/security.md)",
            file=sys.stderr,
        )
    release = files.release
    logging.getLogger("mlpipe.serving.app").info(
        "serving %s (model %s) on http://%s:%d, %d worker process(es); API key %s; prediction log %s",
        files.model
        if release is None
        else f"{release.artifact} {release.version} ({f'stage {release.stage}, ' if release.stage else ''}commit {release.rev[:7]})",
        version[:12],
        args.host,
        args.port,
        workers,
        f"required ({params.serve.api_key_env})" if key else f"off (set {params.serve.api_key_env} to require one)",
        params.serve.log_folder or "off",
    )
    if workers == 1:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        return EXIT_OK
    with tempfile.TemporaryDirectory(prefix="mlpipe-metrics-") as shared:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared  # every worker's metrics in files there, added up by /metrics
        os.environ[WORKER_ARGV] = json.dumps(argv)
        os.environ[WORKER_FILES] = files.to_json()
        uvicorn.run("mlpipe.tools.serve:worker_app", factory=True, workers=workers, host=args.host, port=args.port, log_level="warning")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
