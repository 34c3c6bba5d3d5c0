"""Feature schema: learned on training data, applied identically everywhere."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpipe.config import DataParams, FeaturesParams
from mlpipe.data.features import Contents, build_schema, feature_table, make_features, unseen_levels
from mlpipe.data.schema import OTHER_LEVEL, FeatureSchema, category_strings
from mlpipe.errors import ConfigError, DataError

DATA = DataParams(source="t", target="y", positive_label="yes", time_column="t", id_columns=["id"], drop_columns=["junk"])


def train_table():
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "t": [1, 1, 2, 2],
            "junk": [9, 9, 9, 9],
            "age": [20.0, 30.0, np.nan, 50.0],
            "city": ["b", "a", "a", None],
            "flag": [True, False, True, True],
            "y": ["yes", "no", "no", "yes"],
        }
    )


def test_schema_excludes_target_ids_time_and_dropped_columns_and_infers_categoricals():
    schema = build_schema(train_table(), DATA, FeaturesParams())
    assert schema.feature_names == ["age", "city", "flag"]
    assert schema.categorical_names == ["city", "flag"]
    assert schema.features[1].categories == ("a", "b")
    assert schema.features[2].categories == ("False", "True")
    assert (schema.positive_label, schema.negative_label) == ("yes", "no")
    assert schema.meta_columns == ["id", "t"]


def test_declared_categoricals_override_inference():
    data = DataParams(**{**DATA.model_dump(), "categorical_columns": ["age"]})
    schema = build_schema(train_table().drop(columns=["city"]), data, FeaturesParams())
    assert schema.categorical_names == ["age"]
    assert schema.features[0].categories == ("20", "30", "50")


def test_text_column_declared_numeric_is_an_error():
    data = DataParams(**{**DATA.model_dump(), "categorical_columns": []})
    with pytest.raises(DataError, match="column 'city' holds text"):
        build_schema(train_table(), data, FeaturesParams())


def test_schema_round_trips_through_json():
    schema = build_schema(train_table(), DATA, FeaturesParams(derived={"age2": "age * 2"}))
    assert FeatureSchema.from_json(schema.to_json()) == schema


def test_unseen_levels_become_missing_or_other():
    schema = build_schema(train_table(), DATA, FeaturesParams())
    scoring = pd.DataFrame({"age": [1.0], "city": ["zzz"], "flag": [True]})
    assert unseen_levels(scoring, schema) == {"city": 1}
    assert pd.isna(make_features(scoring, schema)["city"].iloc[0])

    many = pd.DataFrame({"city": list("aaabbc"), "y": ["yes", "no"] * 3})
    capped = build_schema(many, DataParams(source="t", target="y", positive_label="yes"), FeaturesParams(max_categories=2))
    assert capped.features[0].categories == ("a", OTHER_LEVEL)
    encoded = make_features(pd.DataFrame({"city": ["a", "b", "never", None]}), capped)["city"]
    assert list(encoded.astype(object)) == ["a", OTHER_LEVEL, OTHER_LEVEL, np.nan]


def test_make_features_is_identical_for_equivalent_inputs():
    schema = build_schema(train_table(), DATA, FeaturesParams())
    rows = train_table().drop(columns=["y"])
    reordered = rows[["flag", "city", "age", "id"]].copy()
    pd.testing.assert_frame_equal(make_features(rows, schema), make_features(reordered, schema))


def test_categories_unify_numbers_and_text():
    assert list(category_strings(pd.Series([3, 3.0, "3", None], dtype=object)).astype(object)) == ["3", "3", "3", np.nan]
    assert list(category_strings(pd.Series([1.5, 2.0])).astype(object)) == ["1.5", "2"]


def test_missing_input_column_and_non_numeric_values_are_clear_errors():
    schema = build_schema(train_table(), DATA, FeaturesParams())
    with pytest.raises(DataError, match=r"missing feature column\(s\) \['city'\]"):
        make_features(pd.DataFrame({"age": [1.0], "flag": [True]}), schema)
    with pytest.raises(DataError, match="feature 'age' must be numeric but row .* holds 'old'"):
        make_features(pd.DataFrame({"age": ["old"], "city": ["a"], "flag": [True]}), schema)


def test_derived_features_are_computed_and_validated():
    schema = build_schema(train_table(), DATA, FeaturesParams(derived={"age_sq": "age ** 2", "older": "age > 25"}))
    assert schema.feature_names[-2:] == ["age_sq", "older"]
    assert "age_sq" not in schema.input_columns
    features = make_features(train_table(), schema)
    assert features["age_sq"].iloc[1] == 900.0
    with pytest.raises(ConfigError, match=r"features.derived.bad: 'nope \+ 1' uses column\(s\) \['nope'\]"):
        build_schema(train_table(), DATA, FeaturesParams(derived={"bad": "nope + 1"}))
    with pytest.raises(ConfigError, match="must give a number or a boolean"):
        build_schema(train_table(), DATA, FeaturesParams(derived={"txt": "city + city"}))


def test_feature_table_encodes_target_and_keeps_meta_columns():
    schema = build_schema(train_table(), DATA, FeaturesParams())
    out = feature_table(train_table(), schema)
    assert list(out.columns) == ["age", "city", "flag", "y", "id", "t"]
    assert list(out["y"]) == [1, 0, 0, 1]


@pytest.mark.parametrize("name", ["a,b", "a:b", "[x]", "a\nb", "a\rb", "a\x01b", 'say "hi"', "a b é <i>"])
def test_a_column_name_lightgbm_cannot_store_is_a_feature_under_its_real_name(name):
    """Issue 28: such a name is changed only where LightGBM is given it (`model.lightgbm_names`)."""
    table = train_table().assign(**{name: [1.0, 2.0, 3.0, 4.0]})
    schema = build_schema(table, DATA, FeaturesParams())
    assert name in schema.feature_names and name in feature_table(table, schema).columns


def dead_columns_table():
    table = train_table()
    return table.assign(
        empty=np.nan,
        empty_text=pd.Series([None] * 4, dtype=object),
        infinite=[np.inf, -np.inf, np.nan, np.inf],
        kind="Risk of Recidivism",
        version=3,
        sometimes=["x", None, "x", "x"],  # one value and missing rows: whether it is there can inform
    )


def test_columns_without_a_usable_value_or_with_one_value_are_dropped_with_a_line_each(caplog):
    """An all-null column, one of only infinities and a constant column teach the model nothing (and
    an all-null one made drift recommend retraining on a random split): featurize drops them with a
    warning each and records them in the schema, which train, predict and the service read."""
    with caplog.at_level("WARNING", logger="mlpipe.data.features"):
        schema = build_schema(dead_columns_table(), DATA, FeaturesParams())
    assert schema.feature_names == ["age", "city", "flag", "sometimes"]
    assert schema.dropped == {
        "empty": "no usable value in the training rows (all missing or not finite)",
        "empty_text": "no usable value in the training rows (all missing or not finite)",
        "infinite": "no usable value in the training rows (all missing or not finite)",
        "kind": "the same value ('Risk of Recidivism') in every training row",
        "version": "the same value (3.0) in every training row",
    }
    assert [record.getMessage() for record in caplog.records] == [f"feature {name} dropped: {why}" for name, why in schema.dropped.items()]
    assert FeatureSchema.from_json(schema.to_json()) == schema
    assert "empty" not in schema.input_columns  # a caller (the service, a batch) need not send it
    features = make_features(train_table().assign(sometimes="x"), schema)
    assert list(features.columns) == schema.feature_names


def test_a_table_whose_every_feature_is_empty_or_constant_is_one_clear_error():
    table = train_table()[["id", "t", "y"]].assign(empty=np.nan, kind="a")
    with pytest.raises(
        DataError, match=r"^no usable feature: every feature column is empty or constant in the training rows \(empty, kind\)"
    ):
        build_schema(table, DATA, FeaturesParams())


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.sampled_from([0.0, 1.0, np.inf, -np.inf, np.nan])), min_size=1, max_size=12),
    cuts=st.lists(st.integers(0, 12), max_size=3),
    categorical=st.booleans(),
)
def test_contents_merged_over_parts_decide_as_the_whole_column(values, cuts, categorical):
    """The dask engine decides from the parts' merged contents: the same drops as the local engine."""
    column = pd.Series(values, dtype=object if categorical else float)
    bounds = [0, *sorted(min(cut, len(column)) for cut in cuts), len(column)]
    parts = [Contents.of(column.iloc[start:end], categorical) for start, end in zip(bounds, bounds[1:], strict=False)]
    assert Contents.merge(parts).useless() == Contents.of(column, categorical).useless()


def test_params_that_drop_every_column_stop_featurize_in_one_line_with_the_fix_and_the_fix_works():
    """A hand-written data.drop_columns naming every column (init refuses such a table itself)."""
    data = DATA.model_copy(update={"drop_columns": ["junk", "age", "city", "flag"]})
    with pytest.raises(ConfigError) as stopped:
        build_schema(train_table(), data, FeaturesParams())
    assert "\n" not in str(stopped.value) and "take a column known at prediction time out of data.drop_columns" in str(stopped.value)
    kept = build_schema(train_table(), data.model_copy(update={"drop_columns": ["junk", "city", "flag"]}), FeaturesParams())
    assert kept.feature_names == ["age"]
