"""fairness: the model's metrics per group of people on the test rows (fairlearn's MetricFrame), the
demographic-parity and equalised-odds differences, plot data and a PNG figure."""

from logging import Logger
from pathlib import Path
from typing import Annotated

from mlpipe.config import Params
from mlpipe.data.schema import FeatureSchema
from mlpipe.engine.parts import describe_parts, parts_checked
from mlpipe.harness import log_written, run_stage
from mlpipe.io import read_pipeline_text, write_json
from mlpipe.model import fairness, plots
from mlpipe.model.calibration import Calibration


def run(
    params: Params,
    log: Logger,
    *,
    model: Path,
    model_schema: Path,
    calibration: Annotated[Path, "the model's calibration and decision threshold (models/calibration.json)"],
    test: Annotated[Path, "the split's test rows (every column, sensitive ones included)"],
    metrics: Path,
    plot: Path,
    figure: Path,
) -> None:
    schema = FeatureSchema.read(model_schema)
    parts = parts_checked(test, "the test rows", "split")
    groups = params.fairness.groups
    log.info(
        "%s of %s; sensitive attributes: %s",
        describe_parts(parts),
        test,
        ", ".join(f"{n} ({g.column})" for n, g in groups.items()) or "none",
    )
    model_text = read_pipeline_text(model, "model", "train")
    report, rows = fairness.assess(parts, model_text, schema, Calibration.read(calibration), params.fairness, str(test))
    for name, found in report["sensitive"].items():
        compared = sum(entry["in_differences"] for entry in found["groups"].values())
        log.info(
            "%s: %d groups (%d compared); demographic parity difference %s, equalised odds difference %s",
            name,
            len(found["groups"]),
            compared,
            _fmt(found["demographic_parity_difference"]),
            _fmt(found["equalized_odds_difference"]),
        )
    log_written(log, write_json(report, metrics), write_json(rows, plot), plots.save_figure(plots.fairness_figure(rows), figure))


def _fmt(value):
    return "n/a (fewer than two groups to compare)" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    run_stage(run)
