"""featurize: learn the feature schema on the training set and apply it to training and test sets."""

from logging import Logger
from pathlib import Path

from mlpipe.config import Params
from mlpipe.data.features import build_schema, feature_table, unseen_levels
from mlpipe.harness import describe, log_written, run_stage
from mlpipe.io import read_pipeline_table, write_parquet, write_text


def run(params: Params, log: Logger, *, train: Path, test: Path, train_out: Path, test_out: Path, schema: Path) -> None:
    if params.compute.engine == "dask":
        from mlpipe.data.features import featurize_parts

        learned, unseen = featurize_parts(train, test, train_out, test_out, params.data, params.features)
        written = [train_out, test_out]
    else:
        training, testing = (read_pipeline_table(path, f"the {name} set", "split") for path, name in ((train, "training"), (test, "test")))
        log.info("read training %s, test %s", describe(training), describe(testing))
        learned = build_schema(training, params.data, params.features)
        unseen = unseen_levels(testing, learned)
        written = [write_parquet(feature_table(training, learned), train_out), write_parquet(feature_table(testing, learned), test_out)]
    log.info("%d features (%d categorical): %s", len(learned.features), len(learned.categorical_names), ", ".join(learned.feature_names))
    for column, rows in unseen.items():
        log.info("test column %s: %d rows carry a level unseen in training", column, rows)
    log_written(log, *written, write_text(learned.to_json(), schema))


if __name__ == "__main__":
    run_stage(run)
