"""predict: score the reference (training) period and the current table with the trained model."""

from logging import Logger
from pathlib import Path
from typing import Annotated

from mlpipe.config import Params
from mlpipe.data.privacy import apply_personal_rules
from mlpipe.data.schema import FeatureSchema
from mlpipe.data.sources import normalise_columns, read_batches
from mlpipe.data.validation import validate_rows, worst_rule
from mlpipe.errors import DataError
from mlpipe.harness import describe, log_written, run_stage
from mlpipe.io import read_pipeline_table, read_pipeline_text, write_json, write_parquet
from mlpipe.model.booster import model_from_text
from mlpipe.model.scoring import model_version, score_table
from mlpipe.serving.prediction_log import check_log_files


def run(
    params: Params,
    log: Logger,
    *,
    model: Path,
    model_schema: Path,
    reference: Path,
    out_reference: Path,
    out_current: Path,
    quarantine: Annotated[Path, "current rows that break the data contract, with the rules"],
    quality: Annotated[Path, "the current rows' data-quality metrics (JSON)"],
) -> None:
    schema = FeatureSchema.read(model_schema)
    model_text = read_pipeline_text(model, "model", "train")
    version = model_version(model_text)
    source = params.monitor.current_source
    check_log_files(source, params.serve.log_folder)
    if params.compute.engine == "dask":
        from mlpipe.model.scoring import score_parts

        report = score_parts(
            reference,
            source,
            out_reference,
            out_current,
            quarantine,
            model_text,
            schema,
            params.evaluate.threshold,
            params.data,
            params.validate,
        )
        log.info(
            "model %s; current %s of %s rows from %s scored", version[:12], f"{report['rows_out']:,}", f"{report['rows_in']:,}", source
        )
        if report["rows_quarantined"]:
            log.info("current: %d of %d rows quarantined (most: %s)", report["rows_quarantined"], report["rows_in"], worst_rule(report))
        return log_written(log, out_reference, out_current, quarantine, write_json(report, quality))
    # New rows enter here: the same personal-data rules and row rules as at ingest and validate.
    current = apply_personal_rules(
        normalise_columns(read_batches(source, csv_options=params.data.csv), origin=source), params.data, origin=source
    )
    log.info("read %s from %s", describe(current), source)
    checked = validate_rows(current, params.data, params.validate)
    if len(checked.quarantine):
        log.info("current: %d of %d rows quarantined (most: %s)", len(checked.quarantine), len(current), worst_rule(checked.report))
    if checked.clean.empty:
        raise DataError(
            f"every row of the current table ({source}) breaks the data contract (most: {worst_rule(checked.report)}): "
            "fix the batch or the contract in validate.*"
        )
    booster = model_from_text(model_text, origin=str(model))  # imports LightGBM: after the rows are read and checked
    tables = {"reference": (read_pipeline_table(reference, "the training set", "split"), reference), "current": (checked.clean, source)}
    log.info("model %s; reference %s; current %s from %s", version[:12], describe(tables["reference"][0]), describe(checked.clean), source)
    scored = {}
    for name, (table, origin) in tables.items():
        try:
            scored[name] = score_table(table, booster, schema, params.evaluate.threshold, version)
        except DataError as exc:
            raise DataError(f"{name} table ({origin}): {exc}") from None
        labelled = (scored[name]["predicted_label"] == str(schema.positive_label)).mean()
        log.info(
            "%s: mean probability %.4f, %.1f%% labelled %s", name, scored[name]["probability"].mean(), 100 * labelled, schema.positive_label
        )
    # Both tables are scored before either is written: a bad current table leaves no outputs.
    log_written(
        log,
        write_parquet(scored["reference"], out_reference),
        write_parquet(scored["current"], out_current),
        write_parquet(checked.quarantine, quarantine),
        write_json(checked.report, quality),
    )


if __name__ == "__main__":
    run_stage(run)
