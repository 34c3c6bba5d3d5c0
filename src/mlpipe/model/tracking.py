"""The training record in DVCLive's layout, so `dvc exp show` and `dvc plots` read it as is.

    <dir>/params.yaml                          the LightGBM parameters actually used
    <dir>/metrics.json                         summary: rows, trees chosen, validation loss, ...
    <dir>/plots/metrics/training/logloss.tsv   the training curve, one row per boosting round
    <dir>/plots/metrics/validation/logloss.tsv

The folder is written whole to a staging folder and swapped into place, so a crash leaves
the previous record untouched. Steps are set explicitly rather than with `next_step()`,
which rewrites every file each round; values are rounded like every other metric here.
"""

from __future__ import annotations

import csv
import functools
import io
from pathlib import Path
from typing import Any

from mlpipe.errors import first_line
from mlpipe.io import atomic_dir, corrupt_artifact, rounded

CURVES = {"training": "train_logloss", "validation": "validation_logloss"}


def write_training_record(directory: str | Path, params: dict[str, Any], curve: list[dict[str, Any]], summary: dict[str, Any]) -> Path:
    with atomic_dir(directory) as staging:
        with _record_writer()(dir=str(staging), save_dvc_exp=False, dvcyaml=None, report=None) as live:
            live.log_params(rounded(params))
            for point in curve:
                live.step = point["iteration"]
                for name, column in CURVES.items():
                    live.log_metric(f"{name}/logloss", rounded(point[column]))
            live.summary.update(rounded(summary))
        (staging / "plots" / "metrics").mkdir(parents=True, exist_ok=True)  # exists even without a curve
    return Path(directory)


@functools.cache
def _record_writer() -> type:
    """DVCLive's `Live` without its repository discovery, imported on first use.

    On start `Live` opens the DVC repository (half a second: DVC's import and a `Repo()`) to
    name the experiment it would save, to find a stage that overlaps its own dvc.yaml and to
    `git add` its folder inside `dvc exp run`. This record saves no experiment and writes no
    dvc.yaml, its folder is a staging copy, and DVC itself tracks it as a stage output, so
    none of that applies. Should a later DVCLive rename the hook, `Live` discovers as before:
    slower, with the same files.
    """
    from dvclive import Live

    class RecordOnly(Live):
        def _init_dvc(self) -> None:
            pass

    return RecordOnly


def read_training_params(path: str | Path) -> dict[str, Any]:
    """The LightGBM parameters the record holds (<dir>/params.yaml): a `DataError` when the file is
    missing, an `ArtifactError` when it is cut short or not a mapping."""
    import yaml

    from mlpipe.io import read_pipeline_text

    try:
        params = yaml.safe_load(read_pipeline_text(path, "the training params", "train"))
    except yaml.YAMLError as exc:
        raise corrupt_artifact("the training params", path, "train", first_line(exc)) from None
    if not isinstance(params, dict):
        raise corrupt_artifact("the training params", path, "train", "not a mapping of parameters")
    return params


def read_training_curve(directory: str | Path) -> list[dict[str, Any]]:
    """The curve back as records ({iteration, train_logloss, validation_logloss}), [] when none was logged."""
    columns: dict[str, dict[int, float]] = {}
    for name, column in CURVES.items():
        path = Path(directory) / "plots" / "metrics" / name / "logloss.tsv"
        if not path.exists():
            return []
        columns[column] = _logged_values(path)
    steps = sorted(columns["train_logloss"])
    if any(set(values) != set(steps) for values in columns.values()):
        raise corrupt_artifact("training curve", Path(directory) / "plots" / "metrics", "train", "its curves log different steps")
    return [{"iteration": step, **{column: values[step] for column, values in columns.items()}} for step in steps]


def _logged_values(path: Path) -> dict[int, float]:
    """{step: logloss} of one DVCLive curve file; an `ArtifactError` when it is cut short or garbled
    (every line DVCLive writes ends with a line end)."""
    try:
        text = path.read_bytes().decode("utf-8")
        if not text.endswith("\n"):
            raise ValueError("its last line has no line end")
        return {int(row["step"]): float(row["logloss"]) for row in csv.DictReader(io.StringIO(text), delimiter="\t")}
    except (KeyError, TypeError, ValueError) as exc:  # a missing column, a cut row (None), text that is not a number
        raise corrupt_artifact("training curve", path, "train", first_line(exc)) from None
