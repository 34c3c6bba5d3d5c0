"""featurize: learn the feature schema on the training set and apply it to training and test sets."""

from logging import Logger
from pathlib import Path

from mlpipe.config import Params
from mlpipe.data.features import featurize
from mlpipe.harness import log_written, run_stage
from mlpipe.io import write_text


def run(params: Params, log: Logger, *, train: Path, test: Path, train_out: Path, test_out: Path, schema: Path) -> None:
    learned, unseen = featurize(train, test, train_out, test_out, params.data, params.features)
    log.info("%d features (%d categorical): %s", len(learned.features), len(learned.categorical_names), ", ".join(learned.feature_names))
    for column, rows in unseen.items():
        log.info("test column %s: %d rows carry a level unseen in training", column, rows)
    log_written(log, train_out, test_out, write_text(learned.to_json(), schema))


if __name__ == "__main__":
    run_stage(run)
