"""`mlpipe repro` (what `make repro` runs): `dvc repro`, and when a stage fails, its last good outputs put back.

    mlpipe repro [dvc repro options and targets]

DVC deletes a stage's outputs before it runs the stage, so after a failure they are gone: the
metrics files git tracks show as deleted and the cached folders are empty. The stages write
nothing when they fail, so whatever is missing afterwards is what DVC removed. This puts it back:
the outputs DVC caches with `dvc checkout` (the versions dvc.lock still records, since it is only
updated when a stage succeeds), the metrics and plot files it does not cache (`cache: false`)
from a copy taken before the run. dvc.lock still records the stage as it last succeeded, so the
next `dvc repro` runs it again.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from mlpipe.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from mlpipe.tools.workspace import declared_outputs


def copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True)
    else:
        shutil.copy2(source, target)


def restore_missing(outputs: list[tuple[str, bool]], saved: Path) -> list[str]:
    """Put back each of `outputs` (path, cached: those that were there before the run) that is
    missing now; the paths that were put back."""
    missing = [(path, cached) for path, cached in outputs if not Path(path).exists()]
    for path, cached in missing:
        if not cached and (saved / path).exists():
            copy(saved / path, Path(path))
    checkout = [path for path, cached in missing if cached]
    if checkout:  # an output no successful run recorded yet cannot come back: it stays missing
        subprocess.run([sys.executable, "-m", "dvc", "checkout", *checkout], capture_output=True, text=True)
    return [path for path, _ in missing if Path(path).exists()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dvc_args", nargs=argparse.REMAINDER, help="passed to `dvc repro` (targets, --force, ...)")
    args = parser.parse_args(argv)
    try:
        outputs = [(path, cached) for path, cached in declared_outputs(Path("dvc.yaml")) if Path(path).exists()]
    except (OSError, yaml.YAMLError, AttributeError):  # no dvc.yaml, or a broken one: `dvc repro` says what is wrong
        outputs = []
    with tempfile.TemporaryDirectory(prefix="mlpipe-repro-") as folder:
        saved = Path(folder)
        for path, cached in outputs:
            if not cached:
                copy(Path(path), saved / path)
        try:
            code = subprocess.run([sys.executable, "-m", "dvc", "repro", *args.dvc_args]).returncode
        except KeyboardInterrupt:
            code = EXIT_INTERRUPTED
        if code == 0:
            return EXIT_OK
        restored = restore_missing(outputs, saved)
    kept = f"put back the last good outputs DVC had removed: {', '.join(restored)}" if restored else "no output was removed"
    print(
        f"error: repro: `dvc repro` failed (its error is above); {kept}. dvc.lock is unchanged for the failed stage, "
        "so the next `make repro` runs it again",
        file=sys.stderr,
    )
    return EXIT_INTERRUPTED if code == EXIT_INTERRUPTED else EXIT_USAGE
