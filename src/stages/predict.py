"""predict: score the reference (training) period and the current table with the trained model."""

from logging import Logger
from pathlib import Path
from typing import Annotated

from mlpipe.config import Params
from mlpipe.data.schema import FeatureSchema
from mlpipe.data.validation import worst_rule
from mlpipe.harness import log_written, run_stage
from mlpipe.io import read_pipeline_text, write_json
from mlpipe.model.calibration import Calibration
from mlpipe.model.scoring import model_version, predict
from mlpipe.serving.prediction_log import check_log_files


def run(
    params: Params,
    log: Logger,
    *,
    model: Path,
    model_schema: Path,
    calibration: Annotated[Path, "the model's calibration and decision threshold (models/calibration.json)"],
    reference: Path,
    out_reference: Path,
    out_current: Path,
    quarantine: Annotated[Path, "current rows that break the data contract, with the rules"],
    quality: Annotated[Path, "the current rows' data-quality metrics (JSON)"],
) -> None:
    schema = FeatureSchema.read(model_schema)
    model_text = read_pipeline_text(model, "model", "train")
    calibrated = Calibration.read(calibration)
    source = params.monitor.current_source
    check_log_files(source, params.serve.log_folder)
    log.info(
        "model %s (%s): scoring the reference %s and the current rows of %s",
        model_version(model_text)[:12],
        calibrated.describe(with_slice=False),
        reference,
        source,
    )
    explain_top_k = params.explain.top_k if params.explain.batch else 0
    if explain_top_k:
        log.info("current: each row's top %d contributions (TreeSHAP, explain.batch) beside its probability", explain_top_k)
    done = predict(
        reference,
        source,
        out_reference,
        out_current,
        quarantine,
        (model_text, str(model)),
        schema,
        calibrated,
        params.data,
        params.validate,
        explain_top_k,
    )
    report = done.quality
    log.info("current: %s of %s rows from %s scored", f"{report['rows_out']:,}", f"{report['rows_in']:,}", source)
    if report["rows_quarantined"]:
        log.info("current: %d of %d rows quarantined (most: %s)", report["rows_quarantined"], report["rows_in"], worst_rule(report))
    for name, scores in (("reference", done.reference), ("current", done.current)):
        log.info("%s: %s", name, scores.describe(schema))
    log_written(log, out_reference, out_current, quarantine, write_json(report, quality))


if __name__ == "__main__":
    run_stage(run)
