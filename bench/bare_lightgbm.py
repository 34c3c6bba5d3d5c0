"""The floor for bench/pipeline_overhead.py: the pipeline's model in one plain script.

Reads the Parquet or CSV file, splits it as params.yaml says (by time: train <= split.train_until,
test >= split.test_from; or stratified random with split.test_size and split.seed), casts
data.categorical_columns and text columns to pandas categories and fits the LightGBM the `train` stage
fits: the same settings (`mlpipe.model.booster.lightgbm_params`), early stopping on the same
stratified validation slice (`mlpipe.data.sampling.stratified_mask`), then a refit on every training
row with the chosen number of trees. Prints the test ROC-AUC and a JSON line of timings.

No validation, no quarantine, no intermediate files, no plots; it only evaluates the
validation set during early stopping (the pipeline also logs the training loss for its
learning-curve plot).

    python bench/bare_lightgbm.py --data data/employment_ma.parquet --params params.yaml
"""

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402

import lightgbm as lgb  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from mlpipe.config import load_params  # noqa: E402
from mlpipe.data.sampling import stratified_mask  # noqa: E402
from mlpipe.model.booster import lightgbm_params  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="Parquet or CSV file (the pipeline's data.source)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    timings = {"imports": time.perf_counter() - STARTED}

    params = load_params(args.params)
    data, split, train = params.data, params.split, params.train
    clock = time.perf_counter()
    table = pd.read_csv(args.data) if args.data.endswith(".csv") else pd.read_parquet(args.data)
    excluded = {data.target, data.time_column, *data.id_columns, *data.drop_columns}
    features = [column for column in table.columns if column not in excluded]
    for column in features:
        if column in (data.categorical_columns or []) or table[column].dtype == object:
            table[column] = table[column].astype("category")
    target = (table[data.target].astype(str) == str(data.positive_label)).astype("int8")
    if split.strategy == "time":
        is_train = table[data.time_column] <= split.train_until
        is_test = table[data.time_column] > split.train_until if split.test_from is None else table[data.time_column] >= split.test_from
    else:
        is_test = pd.Series(stratified_mask(target if split.stratify else None, len(table), split.test_size, split.seed))
        is_train = ~is_test
    x_train, y_train = table.loc[is_train, features].reset_index(drop=True), target[is_train].reset_index(drop=True)
    x_test, y_test = table.loc[is_test, features], target[is_test]
    timings["read_and_split"] = time.perf_counter() - clock

    clock = time.perf_counter()
    settings = lightgbm_params(train)
    is_valid = stratified_mask(y_train, len(y_train), train.validation_fraction, train.seed)
    fit_set = lgb.Dataset(x_train[~is_valid], y_train[~is_valid], categorical_feature="auto")
    valid_set = fit_set.create_valid(x_train[is_valid], y_train[is_valid])
    stopping = [lgb.early_stopping(train.early_stopping_rounds, verbose=False)] if train.early_stopping_rounds else []
    booster = lgb.train(settings, fit_set, num_boost_round=train.n_estimators, valid_sets=[valid_set], callbacks=stopping)
    n_trees = booster.best_iteration or booster.current_iteration()
    timings["early_stopping"] = time.perf_counter() - clock

    clock = time.perf_counter()
    booster = lgb.train(settings, lgb.Dataset(x_train, y_train, categorical_feature="auto"), num_boost_round=n_trees)
    timings["refit"] = time.perf_counter() - clock

    clock = time.perf_counter()
    auc = roc_auc_score(y_test, booster.predict(x_test))
    timings["predict_and_score"] = time.perf_counter() - clock
    timings["total_in_process"] = time.perf_counter() - STARTED

    print(f"train {len(x_train):,} rows, test {len(x_test):,} rows, {n_trees} trees, test ROC-AUC {auc:.4f}")
    summary = {"train_rows": len(x_train), "test_rows": len(x_test), "n_trees": n_trees, "roc_auc": auc}
    print("BARE_RESULT " + json.dumps({**summary, "timings": {k: round(v, 3) for k, v in timings.items()}}))


if __name__ == "__main__":
    main()
