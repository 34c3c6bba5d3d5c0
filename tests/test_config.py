"""params.yaml parsing: defaults, and errors that name the offending key."""

import pytest
import yaml
from pydantic import ValidationError

from conftest import ROOT
from mlpipe.config import load_params, parse_params, read_params_file
from mlpipe.errors import ConfigError

MINIMAL = {"data": {"source": "t.csv", "target": "y", "positive_label": 1}, "monitor": {"current_source": "new.csv"}}


def with_section(**sections):
    return {**MINIMAL, **sections}


def test_shipped_params_file_is_valid():
    params = load_params("params.yaml")
    assert params.data.target == "employed"
    assert params.split.strategy == "time"
    assert params.train.seed == params.split.seed == 42


def test_shipped_values_of_general_sections_are_the_code_defaults():
    """One source of truth: params.yaml shows the defaults of every section that is not about the
    default table, so a key removed from the file keeps its value."""
    shipped, defaults = load_params("params.yaml"), parse_params(MINIMAL)
    for section in ("features", "train", "tune", "evaluate"):
        assert getattr(shipped, section) == getattr(defaults, section), section
    assert shipped.drift.model_copy(update={"windows": defaults.drift.windows}) == defaults.drift
    assert shipped.validate.model_copy(update={"rows": defaults.validate.rows, "columns": {}}) == defaults.validate


def test_a_split_section_without_strategy_splits_like_no_section():
    assert parse_params(with_section(split={"test_size": 0.3})).split.strategy == parse_params(MINIMAL).split.strategy == "random"


def test_minimal_params_take_documented_defaults():
    params = parse_params(MINIMAL)
    assert params.split.strategy == "random"
    assert params.train.early_stopping_rounds == 50
    assert params.calibration.method == "sigmoid" and params.calibration.threshold.objective == "f1"
    assert params.data.categorical_columns is None


@pytest.mark.parametrize(
    ("raw", "fragments"),
    [
        (with_section(train={"learning_rate": -0.1}), ["train.learning_rate", "greater than 0", "-0.1"]),
        (with_section(train={"num_leaves": 1}), ["train.num_leaves"]),
        (with_section(split={"strategy": "temporal"}), ["split.strategy", "'time' or 'random'"]),
        (with_section(split={"strategy": "time"}), ["split.train_until"]),
        (with_section(train={"learning_rat": 0.1}), ["unknown key 'train.learning_rat'"]),
        (with_section(evaluate={"threshold": 1.5}), ["evaluate.threshold' is gone", "calibration.threshold.value: 1.5"]),
        (
            with_section(calibration={"threshold": {"objective": "precision"}}),
            ["calibration.threshold.target: objective precision needs a target"],
        ),
        (
            with_section(calibration={"fraction": 0}),
            ["calibration.fraction: 0 holds out no slice", "method: none and threshold.objective: fixed"],
        ),
        (with_section(trian={"seed": 1}), ["unknown section 'trian'", "did you mean 'train'"]),
        ({"data": {"source": "t.csv", "target": "y"}}, ["missing required key 'data.positive_label'"]),
        (with_section(train={"early_stopping_rounds": 10, "validation_fraction": 0}), ["train.validation_fraction"]),
        (["not", "a", "mapping"], ["expected a mapping"]),
        # Drift windows that could only fail after training fail in the params check every stage runs.
        (
            with_section(drift={"windows": {"2016": {"start": 2016, "end": 2016}}}),
            ["drift.windows.2016 has start/end but data.time_column is null", "all: {}"],
        ),
        (
            with_section(data={**MINIMAL["data"], "time_column": "year"}, drift={"windows": {"late": {"start": 2018, "end": 2016}}}),
            ["drift.windows.late: start 2018 comes after end 2016", "swap them"],
        ),
        (
            with_section(
                data={**MINIMAL["data"], "time_column": "year"},
                split={"strategy": "time", "train_until": 2015},
                drift={"windows": {"old": {"start": 2014, "end": 2015}}},
            ),
            ["drift.windows.old ends at 2015, inside the training period (split.train_until 2015)"],
        ),
        (
            with_section(
                data={**MINIMAL["data"], "time_column": "day"},
                split={"strategy": "time", "train_until": "2020-06-30"},
                drift={"windows": {"q3": {"start": 2020, "end": 2021}}},
            ),
            ["drift.windows.q3.end 2021 and split.train_until '2020-06-30' are not the same kind of time"],
        ),
        (
            with_section(data={**MINIMAL["data"], "time_column": "day"}, drift={"windows": {"q3": {"start": "soon"}}}),
            ["drift.windows.q3.start 'soon' is neither a number nor a date"],
        ),
        (
            with_section(drift={"windows": {"all": {}}, "report_windows": ["al"]}),
            ["drift.report_windows names ['al'], which drift.windows does not have (it has ['all'])"],
        ),
    ],
)
def test_invalid_values_name_the_key(raw, fragments):
    with pytest.raises(ConfigError) as caught:
        parse_params(raw)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_date_windows_after_the_training_period_pass_the_check():
    params = parse_params(
        with_section(
            data={**MINIMAL["data"], "time_column": "day"},
            split={"strategy": "time", "train_until": "2020-06-30"},
            drift={"windows": {"q3": {"start": "2020-07-01", "end": "2020-09-30"}, "all": {}}},
        )
    )
    assert list(params.drift.windows) == ["q3", "all"]


def test_params_reference_and_key_comments_are_generated_from_the_models():
    from mlpipe.tools import params_doc

    assert params_doc.main(["--check", "--output", str(ROOT / "docs" / "params.md"), "--params", str(ROOT / "params.yaml")]) == 0
    reference = (ROOT / "docs" / "params.md").read_text()
    assert "| `train.min_child_samples` | integer, ≥ 1 | `100` | minimum rows per leaf |" in reference
    assert "### `validate.columns.<name>`" in reference


def test_unrelated_top_level_sections_are_allowed():
    params = parse_params(with_section(notes={"owner": "data team"}, mlflow={"uri": "x"}))
    assert params.data.source == "t.csv"


def test_missing_and_malformed_params_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    broken = tmp_path / "params.yaml"
    broken.write_text("data:\n  source: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_params(broken)


def test_a_key_named_twice_is_refused_where_pyyaml_kept_the_last(tmp_path):
    """PyYAML kept the last value of a repeated key while DVC's reader refuses the file: the stages
    and dvc.lock would disagree on it. A merge key's values may still be overridden."""
    repeated = tmp_path / "params.yaml"
    repeated.write_text("data:\n  target: a\n  source: t.csv\n  target: b\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line 4: the key 'target' appears twice in one mapping: keep one"):
        load_params(repeated)
    merged = tmp_path / "merged.yaml"
    merged.write_text("defaults: &d {x: 1, y: 2}\nother:\n  <<: *d\n  y: 3\n")
    assert read_params_file(merged)["other"] == {"x": 1, "y": 3}


def test_params_are_immutable():
    params = parse_params(MINIMAL)
    with pytest.raises(ValidationError, match="frozen"):
        params.train.learning_rate = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("train", "num_leaves", True, "train.num_leaves: expected a number, got True"),
        ("validate", "max_bad_row_share", False, "validate.max_bad_row_share: expected a number, got False"),
        ("drift", "num_threshold", True, "drift.num_threshold: expected a number, got True"),
        ("evaluate", "period", "H", "evaluate.period: Input should be 'Y', 'Q', 'M', 'W' or 'D' (got 'H')"),
        ("data", "id_columns", ["employed"], "column 'employed' is both data.target and data.id_columns"),
        ("data", "id_columns", ["year"], "column 'year' is both data.time_column and data.id_columns"),
        ("data", "categorical_columns", ["id", "MAR"], "column 'id' is both data.id_columns and data.categorical_columns"),
        ("data", "pattern", "../*.csv", "data.pattern: '../*.csv' must match files inside data.source"),
        ("data", "pattern", "/etc/*", "data.pattern: '/etc/*' must match files inside data.source"),
    ],
)
def test_malformed_values_the_check_used_to_let_through(section, key, value, message):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw[section][key] = value
    with pytest.raises(ConfigError) as raised:
        parse_params(raw)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_yaml_exponents_without_a_dot_still_read_as_numbers():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text().replace("learning_rate: 0.05", "learning_rate: 1e-3"))
    assert raw["train"]["learning_rate"] == "1e-3"  # PyYAML's reading
    assert parse_params(raw).train.learning_rate == 0.001


def test_the_part_size_under_compute_names_its_new_place_and_moving_it_there_works():
    """compute.partition_rows moved to data.partition_rows (it shapes the tables under either engine)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    rows = raw["data"].pop("partition_rows")
    old = {**raw, "compute": {**raw["compute"], "partition_rows": rows}}
    with pytest.raises(ConfigError, match=r"^params.yaml: 'compute.partition_rows' is now 'data.partition_rows': move it there$"):
        parse_params(old)
    moved = {**old, "compute": raw["compute"], "data": {**raw["data"], "partition_rows": rows}}
    assert parse_params(moved).data.partition_rows == rows
