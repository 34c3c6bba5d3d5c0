"""card: the model card beside the model, models/card.md for people and models/card.json for tools."""

from logging import Logger
from pathlib import Path
from typing import Annotated

from mlpipe.config import Params
from mlpipe.harness import log_written, run_stage
from mlpipe.io import write_text
from mlpipe.model import card


def run(
    params: Params,
    log: Logger,
    *,
    model: Path,
    model_schema: Path,
    raw: Annotated[Path, "the ingested table, whose content hash the card gives"],
    train: Annotated[Path, "the training rows, whose time column gives the training window"],
    train_record: Annotated[Path, "the train stage's DVCLive folder (its params.yaml and metrics.json)"],
    evaluation: Path,
    drift: Path,
    fairness: Annotated[Path, "the group metrics; when absent the card says they were not measured"],
    calibration: Annotated[Path, "the calibration and threshold; when absent the card says there is none"],
    markdown: Path,
    json: Path,
) -> None:
    inputs = card.read_inputs(
        params,
        model=model,
        model_schema=model_schema,
        raw=raw,
        train=train,
        train_record=train_record,
        evaluation=evaluation,
        drift=drift,
        fairness=fairness,
        calibration=calibration,
    )
    built = card.build_card(inputs, params)
    log.info(
        "model %s: %d features, %d evaluation period(s)",
        built["model_details"]["version"],
        len(inputs.schema.features),
        len(inputs.evaluation.get("by_period", {})),
    )
    log_written(log, write_text(card.render_markdown(built), markdown), write_text(card.card_json(built), json))


if __name__ == "__main__":
    run_stage(run)
