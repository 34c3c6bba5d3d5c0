"""Property-based: malformed tables and params never end in a traceback.

Hypothesis generates hostile tables (odd column names, infinities, huge and empty text, mixed
types, constant or three-valued targets, tiny tables) and hostile params (any leaf replaced by a
value of another type). Each goes through the library exactly as the stages chain it, in process.
The property: every stage either succeeds, keeping every row (scored or quarantined), or raises
a `PipelineError` whose message is one line, which `run_stage` prints as `error: <stage>: ...`
with a non-zero exit. Any other exception is a traceback a user would see, and fails the test.
Examples are derandomized, so a run is repeatable; a failure prints the table that caused it.
"""

import copy
import csv
import io

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from mlpipe.config import parse_params
from mlpipe.data.features import build_schema, feature_table
from mlpipe.data.privacy import apply_personal_rules
from mlpipe.data.schema import FeatureSchema
from mlpipe.data.sources import normalise_columns, read_table
from mlpipe.data.split import split_table
from mlpipe.data.validation import validate_rows, validate_table
from mlpipe.errors import PipelineError
from mlpipe.model.booster import model_from_text, model_to_text
from mlpipe.model.calibration import Calibration
from mlpipe.model.evaluation import evaluate_scores
from mlpipe.model.scoring import score_table
from mlpipe.model.training import train_model
from mlpipe.monitor.drift import monitored_columns, window_drift
from mlpipe.monitor.retrain import retrain_verdict

PROPERTY = settings(
    max_examples=int(__import__("os").environ.get("EXAMPLES", 100)),
    deadline=None,
    derandomize=not __import__("os").environ.get("EXAMPLES"),
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
DEFAULT_PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())

names = st.one_of(
    st.sampled_from(["x", "city", "DIS", "DIS.1", " x", "<b>", "é", "a b", "0", "", "a,b", "y "]),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=8),
)
cells = st.one_of(
    st.none(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.sampled_from(["", "z" * 3000, "</script>", "1e400", "nan", "True"]),
    st.booleans(),
)


# Years, dates as text (one unparseable), and missing times: the split's cutoffs are 2015 / "2015-12-31".
TIMES = [[2015, 2016, 2017, None], [2015, 2016], ["2015-03-01", "2016-07-01", "2017-01-31"], ["2015-03-01", "2016-07-01", "later"]]


@st.composite
def hostile_tables(draw) -> tuple[pd.DataFrame, dict]:
    """(table, data params): a target that may be binary or not, a time column, and odd extra columns."""
    rows = draw(st.sampled_from([0, 1, 3, 8, 40, 60, 90, 150]))
    targets = draw(st.sampled_from([["a", "b"], ["yes", "no"], [0, 1], [True, False], [0.0, 1.0, None], ["a"], ["a", "b", "c"]]))
    table = pd.DataFrame(
        {
            "y": draw(st.lists(st.sampled_from(targets), min_size=rows, max_size=rows)),
            "when": draw(st.lists(st.sampled_from(draw(st.sampled_from(TIMES))), min_size=rows, max_size=rows)),
            "id": range(rows),
            "signal": np.linspace(0, 1, rows),
        }
    )
    for name in draw(st.lists(names, max_size=3)):
        table[name] = draw(st.lists(cells, min_size=rows, max_size=rows))
    data = {
        "source": "t.csv",
        "target": "y",
        "positive_label": targets[0] if targets[0] is not None else "a",
        "time_column": draw(st.sampled_from(["when", None])),
        "id_columns": ["id"],
        "categorical_columns": None,
        "train_until": 2015 if pd.api.types.is_numeric_dtype(table["when"]) else "2015-12-31",
    }
    return table, data


def one_line(error: PipelineError) -> None:
    message = str(error)
    assert message and "\n" not in message and "Traceback" not in message, message


def through_the_pipeline(table: pd.DataFrame, raw_params: dict) -> None:
    """The stages' library calls, in their order, on one table: ingest .. drift."""
    params = parse_params(raw_params)
    table = normalise_columns(table, "t.csv")
    table = apply_personal_rules(table, params.data, "t.csv", environ={"MLPIPE_PII_SALT": "s"})
    validated = validate_table(table, params.data, params.validate)
    assert len(validated.clean) + len(validated.quarantine) == len(table)
    train, test = split_table(validated.clean, params.split, params.data.time_column, params.data.target)
    schema = build_schema(train, params.data, params.features)
    schema = FeatureSchema.from_json(schema.to_json())
    train_features, test_features = feature_table(train, schema), feature_table(test, schema)
    trained = train_model(train_features[schema.feature_names], train_features[schema.target], params.train)
    booster = model_from_text(model_to_text(trained.booster))
    proba = booster.predict(test_features[schema.feature_names])
    times = test_features[schema.time_column] if schema.time_column else None
    evaluate_scores(test_features[schema.target].to_numpy(), proba, times, params.evaluate)
    current = validate_rows(test, params.data, params.validate)
    if current.clean.empty:
        return
    reference = score_table(train, booster, schema, Calibration(), "v")
    scored = score_table(current.clean, booster, schema, Calibration(), "v")
    windows = {"all": window_drift(reference, scored, monitored_columns(schema, scored), params.drift)}
    retrain_verdict(windows, 0.8, params.drift.max_auc_drop, params.drift.max_estimated_auc_drop)


def small_params(data: dict) -> dict:
    raw = copy.deepcopy(DEFAULT_PARAMS)
    data = dict(data)
    until = data.pop("train_until", 2015)
    raw["data"] = data
    raw["validate"] = {"max_bad_row_share": 0.5, "rows": {"min": None}}
    raw["split"] = (
        {"strategy": "time", "train_until": until} if data["time_column"] else {"strategy": "random", "test_size": 0.3, "seed": 1}
    )
    raw["train"].update(n_estimators=20, min_child_samples=2)
    raw["drift"]["windows"] = {"all": {}}
    return raw


OUTCOMES: dict[str, int] = {}


@PROPERTY
@given(hostile_tables())
def test_a_hostile_table_ends_in_success_or_one_line(case):
    table, data = case
    try:
        through_the_pipeline(table, small_params(data))
        OUTCOMES["ran"] = OUTCOMES.get("ran", 0) + 1
    except PipelineError as error:
        one_line(error)
        OUTCOMES[type(error).__name__] = OUTCOMES.get(type(error).__name__, 0) + 1


def test_the_hostile_tables_reach_every_stage_often_enough():
    """Guards the property against going vacuous (every example refused by an early check)."""
    if not OUTCOMES:
        pytest.skip("counts the examples of test_a_hostile_table_ends_in_success_or_one_line: run the whole file")
    assert OUTCOMES.get("ran", 0) >= 5 and OUTCOMES.get("DataError", 0) >= 5, OUTCOMES


@PROPERTY
@given(hostile_tables())
def test_a_hostile_table_written_as_csv_reads_back_or_fails_in_one_line(case):
    table, _ = case
    buffer = io.StringIO()
    table.to_csv(buffer, index=False, quoting=csv.QUOTE_NONNUMERIC)  # text quoted: a '\r' in a cell stays in its row
    try:
        read = read_table_from_text(buffer.getvalue())
    except PipelineError as error:
        one_line(error)
    else:
        assert len(read) == len(table)


def read_table_from_text(text: str) -> pd.DataFrame:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.csv"
        path.write_text(text, encoding="utf-8")
        return read_table(path)


def leaves(tree, path=()):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from leaves(value, (*path, key))
    else:
        yield path


wrong_values = st.one_of(
    st.booleans(),
    st.none(),
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@PROPERTY
@given(st.data())
def test_any_params_leaf_replaced_by_a_wrong_value_is_accepted_or_named_in_one_line(data):
    raw = copy.deepcopy(DEFAULT_PARAMS)
    paths = list(leaves(raw))
    for path in data.draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3)):
        node = raw
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = data.draw(wrong_values)
    try:
        parse_params(raw)
    except PipelineError as error:
        one_line(error)
        assert str(error).startswith("params.yaml: ")


@pytest.mark.parametrize("rows", [0, 1, 2, 5, 12])
def test_tiny_tables_are_one_line_errors_or_run(rows):
    rng = np.random.default_rng(rows)
    table = pd.DataFrame(
        {
            "y": ["a", "b"] * (rows // 2) + ["a"] * (rows % 2),
            "x": rng.normal(size=rows),
            "id": range(rows),
            "when": [2015] * (rows - rows // 3) + [2016] * (rows // 3),
        }
    )
    try:
        through_the_pipeline(
            table,
            small_params(
                {
                    "source": "t.csv",
                    "target": "y",
                    "positive_label": "a",
                    "time_column": "when",
                    "id_columns": ["id"],
                    "categorical_columns": None,
                }
            ),
        )
    except PipelineError as error:
        one_line(error)
