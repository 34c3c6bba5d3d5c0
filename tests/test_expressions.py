"""Derived features are a declared grammar: nothing in params.yaml or a schema file can reach Python."""

import json

import numpy as np
import pandas as pd
import pytest

from mlpipe.config import FeaturesParams, parse_params
from mlpipe.errors import ArtifactError, ConfigError, DataError
from mlpipe.expressions import parse_expression
from mlpipe.features import add_derived, build_schema
from mlpipe.schema import FeatureSchema
from test_features import DATA, train_table

TABLE = pd.DataFrame({"a": [1.0, 4.0, 9.0, np.nan], "b": [2, 0, -3, 5], "odd name": [1, 2, 3, 4], "c": ["x", "y", "x", None]})

# The issue's reproductions and their relatives: each one reaches Python in pandas' eval.
HOSTILE = [
    ("AGEP + 0 * @logging.os.system('id > /tmp/pwned')", "not a valid expression"),
    ("@pd.read_csv('/etc/passwd')", "not a valid expression"),
    ("a.__class__.__mro__", "attribute access 'a.__class__.__mro__'"),
    ("__import__('os').system('id')", "the call '__import__('os')"),
    ("open('/etc/passwd')", "the call 'open('/etc/passwd')'"),
    ("a[0]", "indexing 'a[0]'"),
    ("(lambda: 1)()", "lambda"),
    ("a if b else 1", "if-expression"),
    ("log(a, base=2)", "keyword or starred arguments"),
    ("[x for x in a]", "ListComp"),
    ("a @ b", "the operator"),
    ("f'{a}'", "JoinedStr"),
    ("None", "the literal 'None'"),
    ("clip(a, 0)", "clip takes 3 argument(s)"),
    ("(a := 1)", "NamedExpr"),
    ("`odd name`.real", "attribute access '`odd name`.real'"),
]


@pytest.mark.parametrize("text, part", HOSTILE)
def test_anything_outside_the_grammar_is_refused_naming_the_key_and_the_part(text, part, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a command that ran would leave its mark here
    with pytest.raises(ConfigError) as raised:
        parse_expression(text, "features.derived.X")
    message = str(raised.value)
    assert message.startswith("features.derived.X: ") and part in message, message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_params_with_code_in_a_derived_feature_are_refused_at_load():
    raw = {
        "data": {"source": "t.csv", "target": "y", "positive_label": 1},
        "features": {"derived": {"X": "AGEP + 0 * @logging.os.system('id > /tmp/pwned')"}},
    }
    with pytest.raises(ConfigError, match=r"^params.yaml: features.derived.X: .* not a valid expression"):
        parse_params(raw)
    with pytest.raises(ConfigError, match="plain identifier"):
        FeaturesParams(derived={"a b": "a + 1"})


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a ** 2", [1.0, 16.0, 81.0, np.nan]),
        ("log1p(a) * 0 + sqrt(a)", [1.0, 2.0, 3.0, np.nan]),
        ("clip(b, -1, 1)", [1, 0, -1, 1]),
        ("where(b > 0, a, -a)", [1.0, -4.0, -9.0, np.nan]),
        ("(b > 0) & (a < 5)", [True, False, False, False]),
        ("b > 0 and not a > 5", [True, False, False, True]),
        ("0 < b <= 2", [True, False, False, False]),
        ("`odd name` * 10 + abs(b)", [12.0, 20.0, 33.0, 45.0]),
        ("c == 'x'", [True, False, True, False]),
        ("maximum(a, b) - minimum(a, b)", [1.0, 4.0, 12.0, np.nan]),
        ("isnull(a) | (b == 0)", [False, True, False, True]),
    ],
)
def test_the_grammar_computes_what_pandas_would(text, expected):
    values = add_derived(TABLE, {"out": text})["out"]
    np.testing.assert_array_equal(values.to_numpy(dtype=float), np.asarray(expected, dtype=float))


def test_huge_powers_and_divisions_by_zero_give_values_not_hangs():
    values = add_derived(TABLE, {"big": "b * 0 + 9 ** 9 ** 9", "ratio": "a / b"})
    assert np.isinf(values["big"]).all()
    assert np.isinf(values["ratio"].iloc[1])


def test_later_expressions_may_use_earlier_ones_and_errors_name_the_key():
    assert list(add_derived(TABLE, {"d": "b * 2", "e": "d + 1"})["e"]) == [5, 1, -5, 11]
    with pytest.raises(ConfigError, match=r"features.derived.bad: 'missing \* 2' uses column\(s\) \['missing'\]"):
        add_derived(TABLE, {"bad": "missing * 2"})
    with pytest.raises(ConfigError, match="features.derived.k: .* gives one constant"):
        add_derived(TABLE, {"k": "1 + 1"})
    with pytest.raises(ConfigError, match="features.derived.t: cannot evaluate"):
        add_derived(TABLE, {"t": "c - 1"})
    with pytest.raises(ConfigError, match="is 1,001 characters long"):
        parse_expression("a" + " + a" * 250, "features.derived.long")


def test_a_schema_file_carrying_code_is_refused_when_loaded(tmp_path):
    """A model artifact pulled from a remote is data: loading it checks its expressions first."""
    schema = build_schema(train_table(), DATA, FeaturesParams(derived={"age2": "age * 2"}))
    planted = json.loads(schema.to_json())
    planted["derived"]["age2"] = "age + 0 * @pd.read_csv('/etc/passwd')"
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(planted))
    with pytest.raises(ConfigError, match=rf"^{path}: derived.age2: .*not a valid expression"):
        FeatureSchema.read(path)
    planted["derived"]["age2"] = "__import__('os').system('id')"
    with pytest.raises(ConfigError, match="the call"):
        FeatureSchema.from_json(json.dumps(planted))


@pytest.mark.parametrize("text", ["", "{}", "[1, 2]", '{"target": "y"}', '{"derived": ["x"], "features": []}', "not json"])
def test_a_broken_schema_file_is_one_clear_error(text, tmp_path):
    path = tmp_path / "schema.json"
    path.write_text(text)
    with pytest.raises(ArtifactError, match=r"feature schema '.*' is corrupt or truncated \(not a feature schema written by this pipeline"):
        FeatureSchema.read(path)
    with pytest.raises(DataError, match="does not exist"):
        FeatureSchema.read(tmp_path / "absent.json")
