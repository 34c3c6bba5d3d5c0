"""bench/make_data.py: scale data that is reproducible to the byte, keeps each period's share,
jitters only the continuous features (inside the real range), and meets the data contract."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import DEFAULT_DATA, ROOT
from mlpipe.config import load_params
from mlpipe.data.validation import validate_table

spec = importlib.util.spec_from_file_location("make_data", ROOT / "bench" / "make_data.py")
make_data = importlib.util.module_from_spec(spec)
sys.modules["make_data"] = make_data  # noqa: TID251 - the importlib docs' recipe for a module loaded from a file
spec.loader.exec_module(make_data)

PARAMS = load_params(ROOT / "params.yaml")


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    return pd.read_parquet(DEFAULT_DATA)


def test_the_same_arguments_give_the_same_bytes(tmp_path):
    arguments = ["--sizes", "5000", "12_000", "--rows-per-part", "4000", "--params", str(ROOT / "params.yaml")]
    assert make_data.main([*arguments, "--out", str(tmp_path / "a")]) == 0
    assert make_data.main([*arguments, "--out", str(tmp_path / "b")]) == 0
    written = sorted(path.relative_to(tmp_path / "a") for path in (tmp_path / "a").rglob("*.parquet"))
    assert [str(path) for path in written] == ["12000/part-00000.parquet", "12000/part-00001.parquet", "12000/part-00002.parquet",
                                               "5000/part-00000.parquet", "5000/part-00001.parquet"]  # fmt: skip
    assert all((tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes() for path in written)
    assert make_data.main([*arguments, "--out", str(tmp_path / "c"), "--seed", "1"]) == 0
    assert (tmp_path / "c" / written[0]).read_bytes() != (tmp_path / "a" / written[0]).read_bytes()
    parts = pd.concat(map(pd.read_parquet, sorted((tmp_path / "a" / "12000").glob("*.parquet"))), ignore_index=True)
    assert len(parts) == 12_000 and parts["id"].tolist() == list(range(12_000))


def test_periods_keep_their_share_and_only_continuous_features_move(real):
    table, jittered = make_data.make_size(real, PARAMS, 100_000, seed=0, min_distinct=10)
    assert jittered == ["AGEP", "SCHL"]  # codes (SEX, DIS, ...), categoricals, id, year and the target stay as they are
    shares = real["year"].value_counts(normalize=True).sort_index() * 100_000
    assert (table["year"].value_counts().sort_index() - shares).abs().max() < 1
    for column in real.columns.drop(["id", *jittered]):
        assert set(table[column].unique()) <= set(real[column].unique()), column
    for column in jittered:
        assert table[column].between(real[column].min(), real[column].max()).all()
        assert table[column].dtype == real[column].dtype
    unjittered = make_data.resample(real, 100_000, np.random.default_rng([0, 100_000]), "year", ["id"])
    moved = table["AGEP"].astype(int) - unjittered["AGEP"].astype(int)
    assert set(moved.unique()) <= {-1, 0, 1} and 0.6 < (moved != 0).mean() < 0.7  # one step in three is 0


def test_the_scaled_table_meets_the_data_contract(real):
    table, _ = make_data.make_size(real, PARAMS, 50_000, seed=3, min_distinct=10)
    result = validate_table(table, PARAMS.data, PARAMS.validate)
    assert len(result.quarantine) == 0 and len(result.clean) == 50_000


def test_bad_arguments_are_one_line(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text().replace("source: data/employment_ma.parquet", "source: data/missing.parquet"))
    assert make_data.main(["--sizes", "100", "--out", str(tmp_path / "out"), "--params", str(params)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: make_data: ") and "missing.parquet" in lines[0]
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        make_data.main(["--sizes", "lots"])
    assert "'lots' is not a size: give 100k, 1m, 5m, 10m or a number of rows" in capsys.readouterr().err
