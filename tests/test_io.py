"""Reading sources and atomic writing."""

import json
import os

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpipe.config import CsvParams
from mlpipe.data.sources import infer_format, normalise_columns, partition_files, read_table
from mlpipe.errors import DataError
from mlpipe.io import atomic_path, write_json, write_parquet


def test_format_is_inferred_from_suffix_or_taken_as_declared(tmp_path):
    assert infer_format("a/b.csv") == "csv"
    assert infer_format("a/b.PARQUET") == "parquet"
    assert infer_format("a/b.csv.gz") == "csv"
    assert infer_format("a/b.dat", "parquet") == "parquet"
    with pytest.raises(DataError, match="data.format"):
        infer_format("a/b.dat")


def test_reads_csv_and_parquet_alike(tmp_path):
    table = pd.DataFrame({"x": [1, 2], "label": ["a", "b"]})
    table.to_csv(tmp_path / "t.csv", index=False)
    table.to_parquet(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.csv"), table)
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.parquet"), table)


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("missing.csv", None, "does not exist"),
        ("empty.csv", b"", "is empty"),
        ("header.csv", b"a,b\n", "has no rows"),
        ("latin1.csv", "name,y\nJos\xe9,1\n".encode("latin-1"), "not UTF-8"),
        ("ragged.csv", b"a,b\n1,2\n3,4,5,6\n", "not a well-formed CSV"),
        ("truncated.csv", b"a,b,c\n1,2,3\n4,5", "looks truncated: its last line has 2 of 3 fields"),
        ("corrupt.parquet", b"PAR1garbagePAR1", "cannot read"),
        ("truncated.parquet", None, "cannot read"),
    ],
)
def test_unreadable_sources_raise_one_line_data_errors(tmp_path, name, content, fragment):
    path = tmp_path / name
    if name == "truncated.parquet":
        pd.DataFrame({"x": range(1000)}).to_parquet(path)
        path.write_bytes(path.read_bytes()[:200])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as caught:
        read_table(path)
    assert fragment in str(caught.value)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_csv_without_a_final_line_end_is_fine_when_its_last_row_is_whole(tmp_path):
    (tmp_path / "t.csv").write_bytes(b"a,b,c\n1,2,3\n4,5,6")
    assert read_table(tmp_path / "t.csv").shape == (2, 3)
    (tmp_path / "q.csv").write_bytes(b'a,b\n1,"x,y"\n2,"z"')  # quoted commas are one field
    assert read_table(tmp_path / "q.csv").shape == (2, 2)


def test_a_repeated_csv_header_with_different_values_is_an_error_not_a_renamed_column(tmp_path):
    (tmp_path / "dup.csv").write_text("id,DIS,AGE,DIS\n1,0,30,0\n2,1,40,0\n")
    with pytest.raises(DataError, match=r"'.*dup.csv' has two columns named 'DIS' \(columns 2 and 4\) that differ \(row 2: 1 vs 0\)"):
        read_table(tmp_path / "dup.csv")
    (tmp_path / "fine.csv").write_text("id,DIS.1,DIS\n1,0,1\n")  # a name that merely looks mangled is fine
    assert list(read_table(tmp_path / "fine.csv").columns) == ["id", "DIS.1", "DIS"]


def test_the_fix_for_a_repeated_header_works(tmp_path):
    (tmp_path / "dup.csv").write_text("id,DIS,AGE,DIS\n1,0,30,0\n2,1,40,0\n")
    named = read_table(tmp_path / "dup.csv", csv_options=CsvParams(names=["id", "DIS", "AGE", "DIS_2"]))
    assert list(named.columns) == ["id", "DIS", "AGE", "DIS_2"] and named["DIS_2"].tolist() == [0, 0]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.one_of(st.none(), st.integers(-5, 5), st.sampled_from(["a", "b"])), min_size=1, max_size=20))
def test_a_column_written_twice_under_one_name_is_read_once(tmp_path_factory, values, caplog):
    """Real exports write a column twice (a public table repeats `decile_score` and `priors_count`):
    identical copies, empty cells included, keep the first, with a warning."""
    caplog.clear()
    path = tmp_path_factory.mktemp("dup") / "twice.csv"
    pd.DataFrame([[index, value, value, index] for index, value in enumerate(values)], columns=["id", "x", "x", "y"]).to_csv(
        path, index=False
    )
    table = read_table(path)
    assert list(table.columns) == ["id", "x", "y"] and len(table) == len(values)
    assert "repeats 'x' with the same values" in caplog.text


def test_directory_source_is_rejected(tmp_path):
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(DataError, match="is a directory"):
        read_table(tmp_path / "d.csv")


def test_normalise_strips_names_and_uncategorises():
    table = pd.DataFrame({" a ": pd.Categorical(["x", "y"]), "b": [1, 2]})
    out = normalise_columns(table, "t")
    assert list(out.columns) == ["a", "b"]
    assert out["a"].dtype == object
    with pytest.raises(DataError, match="duplicate column names"):
        normalise_columns(pd.DataFrame([[1, 2]], columns=["a", "a "]), "t")


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "out" / "table.parquet"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_atomic_write_replaces_the_previous_version_whole(tmp_path):
    target = tmp_path / "t.parquet"
    write_parquet(pd.DataFrame({"x": [1]}), target)
    write_parquet(pd.DataFrame({"x": [1, 2, 3]}), target)
    assert len(pd.read_parquet(target)) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_json_is_rounded_and_nan_becomes_null(tmp_path):
    import numpy as np

    write_json({"a": 0.123456789, "b": float("nan"), "c": np.float32(0.5), "d": [np.int64(3)]}, tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 0.123457, "b": None, "c": 0.5, "d": [3]}


def test_a_folder_of_batches_reads_as_one_table_tagged_by_file(tmp_path):
    from mlpipe.data.sources import read_batches

    folder = tmp_path / "incoming"
    folder.mkdir()
    pd.DataFrame({"x": [1, 2]}).to_csv(folder / "b-01.csv", index=False)
    pd.DataFrame({"x": [3]}).to_parquet(folder / "b-02.parquet")
    (folder / ".partial.csv").write_text("x\n9\n")  # hidden files (uploads in progress) are skipped
    (folder / "notes.txt").write_text("not data")
    (folder / "date=2026-11-30").mkdir()  # a date-partitioned log: subfolders are read too, in path order
    pd.DataFrame({"x": [4]}).to_parquet(folder / "date=2026-11-30" / "part-1.parquet")
    (folder / ".checkpoints").mkdir()  # hidden folders are not
    pd.DataFrame({"x": [8]}).to_csv(folder / ".checkpoints" / "b-01.csv", index=False)
    table = read_batches(folder)
    assert list(table["x"]) == [1, 2, 3, 4]
    assert list(table["batch"]) == ["b-01.csv", "b-01.csv", "b-02.parquet", "date=2026-11-30/part-1.parquet"]
    assert "batch" not in read_batches(folder / "b-01.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no .csv or .parquet batch files"):
        read_batches(tmp_path / "empty")


def test_temporaries_of_killed_writers_are_removed_but_live_ones_kept(tmp_path):
    import subprocess

    from mlpipe.io import write_text

    dead = subprocess.Popen(["true"])  # its pid no longer runs once waited for
    dead.wait()
    stale = tmp_path / f".out.txt.{dead.pid}.tmp"
    stale.write_text("half")
    stale_dir = tmp_path / f".out.txt.{dead.pid}.old"
    stale_dir.mkdir()
    live = tmp_path / f".out.txt.{os.getppid()}.tmp"
    live.write_text("someone else is writing")
    write_text("whole", tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_text() == "whole"
    assert not stale.exists() and not stale_dir.exists()
    assert live.exists()


def test_folder_source_concatenates_partitions_in_name_order(tmp_path):
    from mlpipe.data.sources import read_source

    pd.DataFrame({"a": [3], "b": ["z"]}).to_parquet(tmp_path / "part-2.parquet")
    pd.DataFrame({"b": ["x", "y"], "a": [1, 2]}).to_csv(tmp_path / "part-1.csv", index=False)
    (tmp_path / "notes.txt").write_text("ignored")
    table = read_source(tmp_path)
    assert table.to_dict("list") == {"b": ["x", "y", "z"], "a": [1, 2, 3]}
    assert read_source(tmp_path, pattern="*.parquet").to_dict("list") == {"a": [3], "b": ["z"]}


def test_partitions_that_disagree_on_columns_are_an_error(tmp_path):
    from mlpipe.data.sources import read_source

    pd.DataFrame({"a": [1], "b": [2]}).to_csv(tmp_path / "p1.csv", index=False)
    pd.DataFrame({"a": [1], "c": [2]}).to_csv(tmp_path / "p2.csv", index=False)
    with pytest.raises(DataError, match=r"partition '.*p2.csv' does not match 'p1.csv': missing columns \['b'\], extra \['c'\]"):
        read_source(tmp_path)
    with pytest.raises(DataError, match="holds no .csv or .parquet batch files matching 'x-\\*'"):
        read_source(tmp_path, pattern="x-*")


def test_a_partition_that_resolves_outside_its_folder_is_refused(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    pd.DataFrame({"a": [1]}).to_csv(folder / "part-1.csv", index=False)
    pd.DataFrame({"a": [2]}).to_csv(tmp_path / "secret.csv", index=False)
    assert len(partition_files(folder)) == 1
    with pytest.raises(DataError, match="resolves outside the folder"):
        partition_files(folder, "../*.csv")
    (folder / "part-2.csv").symlink_to(tmp_path / "secret.csv")
    with pytest.raises(DataError, match="part-2.csv' resolves outside the folder"):
        partition_files(folder)


@pytest.mark.parametrize("source", ["batches", "batches/", "./batches"])
def test_ingest_names_a_bad_source_file_as_data_source_does(tmp_path, monkeypatch, source):
    """The task reads a file at its absolute path (a worker's working directory is its own); the
    line names it under data.source as written, and nothing is written."""
    from mlpipe.config import DataParams
    from mlpipe.data.sources import ingest

    monkeypatch.chdir(tmp_path)
    (tmp_path / "batches").mkdir()
    pd.DataFrame({"x": [1, 2], "y": [0, 1]}).to_csv(tmp_path / "batches" / "a.csv", index=False)
    (tmp_path / "batches" / "b.csv").write_bytes(b"x,y\n1,\xff\n")
    with pytest.raises(DataError, match=r"^'batches/b.csv' is not UTF-8 text \(line 2, byte 6: 0xff\): re-save it as UTF-8$"):
        ingest(DataParams(source=source, target="y", positive_label=1), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()
