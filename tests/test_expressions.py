"""Derived features are a declared grammar: nothing in params.yaml or a schema file can reach Python."""

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpipe.config import FeaturesParams, parse_params
from mlpipe.data.expressions import parse_expression
from mlpipe.data.features import add_derived, build_schema
from mlpipe.data.schema import FeatureSchema
from mlpipe.errors import ArtifactError, ConfigError, DataError
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


# Deep and long expressions under the length limit: each shape nests once per unit.
_SHAPES = {
    "sum": lambda n: "a" + "+a" * n,
    "minus": lambda n: "-" * n + "a",
    "not": lambda n: "not " * n + "a",
    "parentheses": lambda n: "(" * n + "a" + ")" * n,
    "power": lambda n: "a" + "**a" * n,
    "calls": lambda n: "abs(" * n + "a" + ")" * n,
    "where": lambda n: "where(a>0," * n + "a" + ",a)" * n,
}


def _units_that_fit(shape: str) -> int:
    return max(n for n in range(1000) if len(_SHAPES[shape](n)) <= 1000)


@settings(max_examples=150, deadline=None)
@given(shape=st.sampled_from(sorted(_SHAPES)), fill=st.floats(min_value=0, max_value=1))
def test_deep_expressions_parse_and_evaluate_or_give_one_line_never_recursion_error(shape, fill):
    text = _SHAPES[shape](int(fill * _units_that_fit(shape)))
    try:
        values = parse_expression(text, "features.derived.deep").evaluate(TABLE)
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("features.derived.deep: ") and "\n" not in message, message
        return
    assert len(values) == len(TABLE)


@pytest.mark.parametrize("text", ["1" + "+1" * 499, "-" * 996 + "1", "a" + " + a" * 101])
def test_the_issue_deep_expressions_are_refused_at_parse_naming_the_key_and_the_limit(text):
    with pytest.raises(ConfigError, match=r"^features.derived.deep: the expression nests more than 100 levels deep"):
        parse_expression(text, "features.derived.deep")


def test_a_deep_expression_in_a_schema_file_is_refused_when_loaded():
    schema = build_schema(train_table(), DATA, FeaturesParams(derived={"age2": "age * 2"}))
    planted = json.loads(schema.to_json())
    planted["derived"]["age2"] = "-" * 996 + "age"
    with pytest.raises(ConfigError, match="derived.age2: the expression nests more than 100 levels deep"):
        FeatureSchema.from_json(json.dumps(planted))


@pytest.mark.parametrize("name", ["__column_0__", "__column_1__", "___column_0__"])
def test_the_backtick_placeholder_cannot_collide_with_a_column_or_a_bare_name(name):
    """Backticked names are swapped for placeholders while parsing; a column or bare identifier
    spelled like one must still mean itself."""
    table = pd.DataFrame({name: [10.0, 20.0], "odd name": [1.0, 2.0], "__column_5__": [100.0, 200.0]})
    for text in (f"{name} + `odd name`", f"`odd name` + {name}", f"`{name}` + `odd name`"):
        expression = parse_expression(text, "features.derived.x")
        assert list(expression.evaluate(table)) == [11.0, 22.0], text
        assert sorted(expression.columns) == sorted([name, "odd name"])
    expression = parse_expression("`odd name` + `a b` + __column_5__", "features.derived.x")
    assert sorted(expression.columns) == ["__column_5__", "a b", "odd name"]


def test_make_replay_where_takes_the_same_bound():
    """`make replay WHERE=` goes through the same parse: one line naming --where, no RecursionError."""
    from mlpipe.config import Params, parse_params
    from mlpipe.tools.replay import rows_to_replay

    params: Params = parse_params(
        {"data": {"source": "t.csv", "target": "y", "positive_label": 1}, "monitor": {"current_source": "data/new"}}
    )
    with pytest.raises(ConfigError, match=r"^--where: the expression nests more than 100 levels deep"):
        rows_to_replay(TABLE, params, "-" * 990 + "a > 0")
    assert len(rows_to_replay(TABLE, params, "-" * 50 + "a > 0")[0]) == 3  # an even count of signs: a > 0
