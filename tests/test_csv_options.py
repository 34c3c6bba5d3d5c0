"""Reading real CSV files: a separator, a file without a header, column names (data.csv and
`make init SEP=... HEADER=0 NAMES=...`), on every path rows enter: init, ingest, new batches."""

from __future__ import annotations

import logging
import shutil

import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT, stage_function
from mlpipe.config import CsvParams, load_params
from mlpipe.data.sources import read_batches, read_source, read_table
from mlpipe.errors import ConfigError, DataError

NAMES = ["age", "priors", "sex", "score", "reoffended"]
# Each person once with either outcome: no column alone tells the outcome, so init's leakage guard keeps them all.
PEOPLE = [(66, 3, "Female", 2), (54, 1, "Male", 8), (47, 0, "Male", 8), (23, 7, "Male", 9)]
ROWS = [(*person, outcome) for outcome in (0, 1) for person in PEOPLE] * 15


def space_aligned(path, rows=ROWS) -> None:
    """A text file as old tools write it: columns aligned with runs of spaces, no header line."""
    path.write_text("".join("  ".join(f"{value:>6}" for value in row) + "\n" for row in rows))


def expected(rows=ROWS) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=NAMES)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A folder with the project's params.yaml, as init sees a repository (`dvc add` recorded, not run)."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    import mlpipe.tools.init as init_module

    added = []
    monkeypatch.setattr(init_module, "dvc", lambda *args, cwd: added.append(args))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def run_init(project, capsys):
    """`python -m mlpipe.tools.init ARGS` in process: (exit status, stdout, stderr)."""
    from mlpipe.tools.init import main

    def run(*args: str) -> tuple[int, str, str]:
        status = main(list(args))
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


def test_a_space_aligned_file_without_a_header_through_init_and_the_ingest_stage(project):
    from mlpipe.tools.init import main

    space_aligned(project / "people.txt")
    assert main(["--data", "people.txt", "--target", "reoffended", "--sep", "whitespace", "--no-header", "--names", ",".join(NAMES)]) == 0
    data = yaml.safe_load((project / "params.yaml").read_text())["data"]
    assert data["csv"] == {"sep": "whitespace", "header": False, "names": NAMES}
    assert data["format"] == "csv", "a CSV option for a .txt file says its format"

    # The ingest stage reads it with the params init wrote.
    stage_function("ingest")(load_params("params.yaml"), logging.getLogger("ingest"), out=project / "raw.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(project / "raw.parquet"), expected())


def test_without_names_the_columns_of_a_headerless_file_are_numbered(tmp_path):
    space_aligned(tmp_path / "people.txt")
    table = read_table(tmp_path / "people.txt", "csv", CsvParams(sep="whitespace", header=False))
    assert list(table.columns) == ["column_1", "column_2", "column_3", "column_4", "column_5"] and len(table) == len(ROWS)


def test_a_semicolon_file_without_a_final_line_end_is_read_not_called_truncated(tmp_path):
    """The truncation check counts the last line's fields with the file's own separator."""
    path = tmp_path / "people.csv"
    expected().to_csv(path, sep=";", index=False)
    path.write_text(path.read_text().rstrip("\n"))
    pd.testing.assert_frame_equal(read_source(path, csv_options=CsvParams(sep=";")), expected())
    path.write_text(path.read_text() + "\n61;2")
    with pytest.raises(DataError, match="looks truncated: its last line has 2 of 5 fields"):
        read_source(path, csv_options=CsvParams(sep=";"))


def test_names_that_do_not_match_the_columns_are_one_line_naming_both_counts(project, run_init):
    space_aligned(project / "people.txt")
    status, out, err = run_init("--data", "people.txt", "--target", "age", "--sep", "whitespace", "--no-header", "--names", "age,priors")
    assert status != 0 and err.count("\n") == 1 and "Traceback" not in err
    assert (
        err
        == "error: init: 'people.txt' has 5 columns but data.csv.names gives 2 names: give one name per column, in file order (or check data.csv.sep)\n"
    )
    # The fix the message gives works.
    status, _, err = run_init(
        "--data", "people.txt", "--target", "reoffended", "--sep", "whitespace", "--no-header", "--names", ",".join(NAMES)
    )
    assert status == 0, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--sep", ";;"],
            "error: init: data.csv.sep: ';;' is not a separator: give one character such as ',' or ';', or tab, or whitespace",
        ),
        (["--sep", "\\t"], "error: init: data.csv.sep: '\\\\t' is not a separator"),
        (["--names", "a,b,a,c,d"], "error: init: data.csv.names: ['a'] named twice: a column name is given once"),
    ],
)
def test_bad_csv_options_are_one_line_and_write_nothing(project, run_init, args, message):
    expected().to_csv(project / "people.csv", index=False)
    before = (project / "params.yaml").read_text()
    status, _, err = run_init("--data", "people.csv", "--target", "reoffended", *args)
    assert status != 0 and err.startswith(message) and err.count("\n") == 1
    assert (project / "params.yaml").read_text() == before


@settings(max_examples=25, deadline=None)
@given(sep=st.sampled_from([",", ";", "|", ".", "*", "+", "?", "$", "^", "tab"]))
def test_a_separator_is_read_as_the_character_it_is_never_as_a_pattern(tmp_path_factory, sep):
    """pandas reads a separator longer than one character as a regular expression: data.csv.sep
    is one character (or a word this project maps), so `.` or `|` mean themselves."""
    path = tmp_path_factory.mktemp("sep") / "t.csv"
    table = pd.DataFrame({"a": [1, 2], "b": ["x y", "z"], "c": [0.5, 1.5]})
    table.to_csv(path, sep="\t" if sep == "tab" else sep, index=False)
    pd.testing.assert_frame_equal(read_table(path, csv_options=CsvParams(sep=sep)), table)


def test_new_batches_are_read_as_the_source_is(tmp_path):
    """predict reads monitor.current_source with data.csv: a folder of headerless batches."""
    folder = tmp_path / "batches"
    folder.mkdir()
    space_aligned(folder / "2024-01.csv", ROWS[:4])
    space_aligned(folder / "2024-02.csv", ROWS[4:8])
    batches = read_batches(folder, csv_options=CsvParams(sep="whitespace", header=False, names=NAMES))
    assert list(batches.columns) == [*NAMES, "batch"] and len(batches) == 8
    assert batches["batch"].tolist() == ["2024-01.csv"] * 4 + ["2024-02.csv"] * 4


def test_the_csv_params_are_checked_where_params_yaml_is():
    from mlpipe.config import parse_params, read_params_file

    raw = read_params_file(ROOT / "params.yaml")
    raw["data"]["csv"] = {"sep": "ab"}
    with pytest.raises(ConfigError, match=r"data.csv.sep: 'ab' is not a separator"):
        parse_params(raw)
    raw["data"]["csv"] = {"names": []}
    with pytest.raises(ConfigError, match=r"data.csv.names: give one non-empty name per column"):
        parse_params(raw)


def test_a_csv_cut_into_parts_reads_back_with_the_dtypes_of_the_whole_file(tmp_path):
    """Ingest cuts a file into parts of data.partition_rows rows: a column empty in one part (Arrow's
    null type there), numbers with a gap in one part only, booleans with a gap, text, dates as text
    and a column empty throughout read back as the whole file written as one Parquet file did."""
    from mlpipe.data.sources import ingest, normalise_columns

    rows = 2500
    gap = lambda value, start, end: [("" if start <= number < end else value(number)) for number in range(rows)]  # noqa: E731
    pd.DataFrame(
        {
            "n": gap(lambda number: number, 2000, 2500),
            "s": gap(lambda number: f"t{number % 7}", 0, 1000),
            "b": gap(lambda number: "true" if number % 3 else "false", 1200, 1300),
            "d": [f"2020-01-{1 + number % 28:02d}" for number in range(rows)],
            "e": [""] * rows,
            "y": [number % 2 for number in range(rows)],
        }
    ).to_csv(tmp_path / "table.csv", index=False)
    data = load_params(ROOT / "params.yaml").data.model_copy(update={"source": str(tmp_path / "table.csv"), "partition_rows": 1000})
    assert ingest(data, tmp_path / "raw")["rows"] == rows and len(list((tmp_path / "raw").glob("*.parquet"))) == 3
    normalise_columns(read_source(tmp_path / "table.csv"), "t").to_parquet(tmp_path / "whole.parquet", index=False)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "raw"), pd.read_parquet(tmp_path / "whole.parquet"))
    assert pd.read_parquet(tmp_path / "raw").dtypes.astype(str).to_dict() == {
        "n": "float64",
        "s": "object",
        "b": "object",
        "d": "object",
        "e": "float64",
        "y": "int64",
    }
