"""`make init`: a table the project has never seen, profiled into params.yaml, then the whole pipeline.

The end-to-end runs are what a new user does: `make init DATA=... TARGET=...` then `dvc repro`,
in a throw-away git+DVC copy of the project, on three tables unlike the default one.
"""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT, make_repo
from mlpipe.config import InitParams, parse_params, read_params_file, read_params_text
from mlpipe.errors import EXIT_USAGE, DataError
from mlpipe.tools.init import leak_rule, rewrite_params
from mlpipe.tools.profiling import profile_table


def breast_cancer() -> pd.DataFrame:
    """scikit-learn's breast-cancer table (shipped with the package): no time column, text labels."""
    from sklearn.datasets import load_breast_cancer

    table = load_breast_cancer(as_frame=True).frame
    return table.assign(diagnosis=table.pop("target").map({0: "malignant", 1: "benign"}))


def orders(rows: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Customers over two years: a date column, a text id, a category and a yes/no target."""
    rng = np.random.default_rng(seed)
    spend = rng.gamma(2.0, 50.0, rows).round(2)
    visits = rng.poisson(4, rows)
    region = rng.choice(["north", "south", "east", "west"], rows)
    score = -1.0 + 0.015 * spend - 0.3 * visits + np.where(region == "north", 0.8, 0.0) + rng.normal(0, 1, rows)
    return pd.DataFrame(
        {
            "customer_id": [f"C{number:06d}" for number in rng.permutation(rows)],
            "order_date": pd.Timestamp("2022-01-01") + pd.to_timedelta(np.sort(rng.integers(0, 730, rows)), unit="D"),
            "spend": spend,
            "visits": visits,
            "region": region,
            "churned": np.where(score > 0, "yes", "no"),
        }
    )


def contacts(rows: int = 2000, seed: int = 1) -> pd.DataFrame:
    """Sign-ups with an e-mail address and a name beside the features."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows)
    income = rng.normal(40_000, 12_000, rows).round(0)
    plan = rng.choice(["basic", "plus", "pro"], rows)
    bought = (0.04 * (age - 45) + (income - 40_000) / 10_000 + np.where(plan == "pro", 1.0, 0.0) + rng.normal(0, 1, rows)) > 0
    return pd.DataFrame(
        {
            "email": [f"person{number}@example.com" for number in range(rows)],
            "full_name": [f"Person Number{number}" for number in range(rows)],
            "age": age,
            "income": income,
            "plan": plan,
            "bought": bought.astype(int),
        }
    )


def init(repo, *args: str, check: bool = True):
    return repo.run("python", "-m", "mlpipe.tools.init", *args, check=check)


def test_personal_values_are_found_by_their_look_as_well_as_their_name():
    table = contacts().rename(columns={"email": "contact", "full_name": "who"})
    table["reach"] = [f"+44 20 7946 {number:04d}" for number in range(len(table))]
    profile = profile_table(table, "bought")
    assert profile.data["personal_columns"] == {"contact": "drop", "reach": "drop"}
    assert "who" in profile.data["drop_columns"], "a free-text column with a distinct value per row is not a category"


def test_a_year_column_gives_one_window_per_test_year():
    years = np.repeat(np.arange(2010, 2022), 100)
    table = pd.DataFrame({"year": years, "x": np.arange(len(years)) % 7, "y": np.arange(len(years)) % 2})
    profile = profile_table(table, "y")
    assert profile.split == {"strategy": "time", "train_until": 2018, "test_from": 2019}
    assert profile.windows == {
        "2019": {"start": 2019, "end": 2019},
        "2020": {"start": 2020, "end": 2020},
        "2021": {"start": 2021, "end": 2021},
        "all": {},
    }
    assert profile.contract["year"] == {"dtype": "int64", "min": 2004, "nullable": False}, "the time column has no upper bound"


def test_a_positive_label_that_cannot_be_told_is_asked_for():
    table = breast_cancer()
    with pytest.raises(DataError, match=r"cannot tell which value of 'diagnosis' is the positive class \(values: 'benign', 'malignant'\)"):
        profile_table(table, "diagnosis")
    profile = profile_table(table, "diagnosis", ask=lambda question: "malignant")
    assert profile.data["positive_label"] == "malignant"


@pytest.mark.parametrize(
    ("make_input", "args", "fragments"),
    [
        (None, ["--data", "data/no_such.csv", "--target", "y"], ["DATA='data/no_such.csv' does not exist"]),
        (
            lambda: contacts(),
            ["--target", "bougth"],
            ["TARGET='bougth' is not a column of the table", "did you mean 'bought'?", "columns: email, full_name, age"],
        ),
        (
            lambda: contacts().assign(bought=np.arange(2000) % 3),
            ["--target", "bought"],
            ["target 'bought' has 3 distinct value(s) (0, 1, 2)", "binary target"],
        ),
        (lambda: contacts().head(0), ["--target", "bought"], ["no rows"]),
        (lambda: contacts(), ["--target", "bought", "--positive", "maybe"], ["POSITIVE='maybe' is not a value of 'bought'"]),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, make_input, args, fragments):
    params = tmp_path / "params.yaml"
    params.write_bytes((ROOT / "params.yaml").read_bytes())
    if make_input is not None:
        make_input().to_csv(tmp_path / "table.csv", index=False)
        args = ["--data", "table.csv", *args]
    done = subprocess.run(
        [sys.executable, "-m", "mlpipe.tools.init", *args], cwd=tmp_path, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    assert done.returncode == EXIT_USAGE  # it was 1, the status of a gate's finding
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: init: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert params.read_bytes() == (ROOT / "params.yaml").read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["params.yaml", *(["table.csv"] if make_input else [])])


def test_uncommitted_edits_to_params_are_kept_unless_forced(tmp_path):
    repo = make_repo(tmp_path / "repo")
    contacts().to_csv(repo.path / "data" / "contacts.csv", index=False)
    repo.set_params(train={"learning_rate": 0.1})
    edited = (repo.path / "params.yaml").read_text()
    refused = init(repo, "--data", "data/contacts.csv", "--target", "bought", check=False)
    assert refused.returncode == EXIT_USAGE
    assert "params.yaml has uncommitted edits: commit them, or pass FORCE=1" in refused.stderr
    assert (repo.path / "params.yaml").read_text() == edited
    init(repo, "--data", "data/contacts.csv", "--target", "bought", "--force")
    assert repo.params()["data"]["target"] == "bought"


def test_every_other_section_and_its_comments_are_kept(tmp_path):
    repo = make_repo(tmp_path / "repo")
    contacts().to_csv(repo.path / "data" / "contacts.csv", index=False)
    before = (repo.path / "params.yaml").read_text()
    init(repo, "--data", "data/contacts.csv", "--target", "bought")
    after = (repo.path / "params.yaml").read_text()
    comments = [line.strip() for line in before.splitlines() if line.strip().startswith("#")]
    assert [line for line in comments if line not in after] == []
    for section in ("train", "tune", "evaluate", "monitor", "review", "features", "sql_snapshots"):
        assert yaml.safe_load(after)[section] == yaml.safe_load(before)[section], section

    def block(text: str, start: str, end: str) -> str:
        return text[text.index(start) : text.index(end)]

    assert block(after, "\ntrain:", "\nevaluate:") == block(before, "\ntrain:", "\nevaluate:"), "untouched sections stay byte for byte"


def test_make_init_passes_its_variables_to_the_command_as_arguments(tmp_path):
    """The exact arguments `mlpipe init` gets from `make init`: a stub in place of the venv's
    `mlpipe` prints them (tests/test_makefile.py runs the real one on a real table)."""
    import json

    stub = tmp_path / "mlpipe"
    stub.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    stub.chmod(0o755)
    variables = [
        "DATA=my data.csv",
        'TARGET=a "b" $c; `d`',
        "POSITIVE=yes",
        "TIME=day",
        "FORMAT=csv",
        "SEP=;",
        "HEADER=0",
        "NAMES=x,y",
        "FORCE=1",
    ]
    done = subprocess.run(["make", "-s", "init", f"BIN={tmp_path}", *variables], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == [
        "init",
        "--data=my data.csv",
        '--target=a "b" $c; `d`',
        "--positive=yes",
        "--time=day",
        "--format=csv",
        "--sep=;",
        "--names=x,y",
        "--no-header",
        "--force",
    ]
    done = subprocess.run(["make", "-s", "init", f"BIN={tmp_path}", "DATA=t.csv", "TARGET=y"], cwd=ROOT, capture_output=True, text=True)
    assert json.loads(done.stdout) == ["init", "--data=t.csv", "--target=y"]


# -- the leakage guard -----------------------------------------------------------------------------


def test_init_drops_every_post_outcome_column_of_the_messy_table_and_no_honest_one():
    """Issue 27: columns recorded after the outcome gave a test ROC-AUC of 0.999 with no warning."""
    from messy_table import HONEST, LEAKS, TARGET, messy_people_table

    table = messy_people_table()
    profile = profile_table(table, TARGET)
    features = set(table.columns) - set(profile.dropped) - set(profile.data["id_columns"]) - set(profile.data["personal_columns"])
    assert features & set(LEAKS) == set(), "a post-outcome column is a feature"
    assert set(HONEST) <= features, f"an honest column was dropped: {set(HONEST) - features}"
    without_guard = profile_table(table, TARGET, leak_rule=InitParams(max_feature_auc=1, suspect_feature_auc=1, min_settled_share=1))
    by_the_guard = {column for column, why in profile.dropped.items() if why.startswith("leak?")}
    assert by_the_guard == set(LEAKS) - set(without_guard.dropped), "the guard drops exactly the leaks the roles keep"
    leak_lines = [line for line in profile.warnings if line.startswith("drop '")]
    assert len(leak_lines) == len(by_the_guard) and all("keep it only if it is known at prediction time" in line for line in leak_lines)
    assert "drop 'is_recid': alone it predicts two_year_recid with ROC-AUC 0.97" in "\n".join(leak_lines)


def test_init_keeps_every_feature_of_the_breast_cancer_table():
    """Honest single columns up to ROC-AUC 0.98 on the training rows, in a continuum: none is a leak."""
    profile = profile_table(breast_cancer(), "diagnosis", positive="malignant")
    assert profile.dropped == {} and not [line for line in profile.warnings if line.startswith("drop '")]


def test_the_reason_for_each_dropped_column_is_a_comment_beside_it():
    from messy_table import TARGET, messy_people_table
    from mlpipe.config import parse_params
    from mlpipe.tools.init import rewrite_params

    profile = profile_table(messy_people_table(1000), TARGET)
    text = rewrite_params((ROOT / "params.yaml").read_text(), profile, "data/people.csv", None)
    assert "    - is_recid               # leak? alone it predicts two_year_recid with ROC-AUC 0.9" in text
    assert "    - violent_recid          # all null" in text
    loaded = yaml.safe_load(text)
    assert loaded["data"]["drop_columns"] == list(profile.dropped)
    parse_params(loaded)
    assert rewrite_params(text, profile, "data/people.csv", None) == text, "init run twice writes the same file"


# -- sensitive columns: proposed as fairness groups -----------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("sex", "sex"), ("Gender", "sex"), ("SEX", "sex"), ("race", "race"), ("ethnicity", "race"), ("RAC1P", "race"),
        ("age", "age"), ("AGEP", "age"), ("age_cat", "age"), ("SeniorCitizen", "age"), ("religion", "religion"),
        ("disability_status", "disability"), ("DIS", "disability"), ("marital_status", "marital_status"), ("MAR", "marital_status"),
        ("nationality", "citizenship"), ("citizenship", "citizenship"), ("CIT", "citizenship"),
        # not protected attributes, though the letters are there
        ("page_views", None), ("percentage", None), ("usage", None), ("trace_id", None), ("stage", None), ("discount", None),
        ("dis", None), ("mar_spend", None), ("name", None), ("email", None), ("ssn", None),
    ],
)  # fmt: skip
def test_a_sensitive_column_is_told_by_its_name(name, kind):
    from mlpipe.tools.profiling import sensitive_kind

    assert sensitive_kind(name) == kind


def test_init_proposes_the_messy_tables_protected_attributes_and_no_identifier():
    """sex, race and age (in bands) and the age category become fairness groups; the names and the
    birth date, personal data dropped at ingest, do not; and the params written pass the check."""
    from messy_table import PERSONAL, TARGET, messy_people_table

    profile = profile_table(messy_people_table(1000), TARGET)
    assert profile.fairness == {
        "sex": {"column": "sex"},
        "age": {"column": "age", "bins": [18, 25, 35, 45, 55, 65, 75]},
        "age_cat": {"column": "age_cat"},
        "race": {"column": "race"},
    }
    assert not {spec["column"] for spec in profile.fairness.values()} & {*PERSONAL, "id"}
    line = next(line for line in profile.decisions if line.startswith("fairness.groups:"))
    assert line.startswith("fairness.groups: proposed sex (sex), age (age, in age bands), age_cat (age_cat), race (race)")
    assert line.endswith("a sensitive column can stay out of the features (list it in data.drop_columns) and still be reported")
    notes = []
    text = rewrite_params((ROOT / "params.yaml").read_text(), profile, "data/people.csv", None, out=notes.append)
    written = parse_params(read_params_text(text, "params.yaml"))
    assert {name: spec.model_dump(exclude_defaults=True) for name, spec in written.fairness.groups.items()} == profile.fairness
    # The default data's card statements are not this table's: emptied, and said so.
    assert written.card.intended_use is None and written.card.limitations == [] and written.card.name is None
    assert any(
        note.startswith("  card: name, dataset, intended use, out-of-scope uses, limitations, licence and owners emptied") for note in notes
    )
    assert rewrite_params(text, profile, "data/people.csv", None) == text, "init run twice writes the same file"


def test_a_table_without_protected_attributes_gets_no_group_and_a_line_saying_so():
    profile = profile_table(breast_cancer(), "diagnosis", positive="malignant")
    assert profile.fairness == {}
    assert any(line.startswith("fairness.groups: none proposed (no column named like sex, gender, race") for line in profile.decisions)
    text = rewrite_params((ROOT / "params.yaml").read_text(), profile, "data/breast_cancer.csv", None, out=lambda line: None)
    assert parse_params(read_params_text(text, "params.yaml")).fairness.groups == {}  # the default data's SEX, RAC1P, AGEP are gone


def test_a_birth_date_without_an_age_column_is_named_as_the_age_group_init_cannot_make():
    table = contacts().drop(columns=["age"]).assign(birth_date=[f"{1940 + n % 60}-0{1 + n % 9}-1{n % 10}" for n in range(2000)])
    profile = profile_table(table, "bought")
    assert "birth_date" in profile.data["personal_columns"] and profile.fairness == {}
    assert "fairness.groups: 'birth_date' holds birth dates, dropped at ingest as personal data, so no age group" in "\n".join(
        profile.decisions
    )


# -- what init writes reads back the same through both readers of params.yaml ----------------------

# Names YAML 1.1 (PyYAML, the stages' reader) or 1.2 (ruamel, DVC's) reads as something other than text.
YAML_LOOKALIKES = ["on", "off", "yes", "no", "y", "n", "null", "~", "1e3", "0x1f", "1_000", ".inf", "2024-01-01", "a:b", "- x", "? q", "#h"]


def _written_with(name: str) -> str:
    """params.yaml with `name` where init writes column names: a mapping key (validate.columns),
    a value inside it, and an item of the block list of dropped columns."""
    from mlpipe.tools.init import _replace_mapping, _section, _with_reasons, yaml_round_trip

    yaml_rt = yaml_round_trip()
    document = yaml_rt.load("data:\n  source: t.csv  # a comment\nvalidate:\n  columns: {}\n")
    _replace_mapping(_section(document, "validate"), "columns", {name: {"dtype": "str", "values": [name]}})
    _section(document, "data")["drop_columns"] = _with_reasons([name], {name: "why"})
    out = io.StringIO()
    yaml_rt.dump(document, out)
    return out.getvalue()


def _check_reads_back(name: str) -> None:
    from ruamel.yaml import YAML

    from mlpipe.config import read_params_text

    text = _written_with(name)
    for read in (read_params_text(text, "params.yaml"), YAML(typ="safe").load(text)):
        assert read["validate"]["columns"] == {name: {"dtype": "str", "values": [name]}}
        assert read["data"]["drop_columns"] == [name]


@pytest.mark.parametrize("name", YAML_LOOKALIKES)
def test_column_names_yaml_reads_as_other_things_are_quoted_as_keys_and_values(name):
    _check_reads_back(name)


@settings(max_examples=300, deadline=None)
@given(name=st.text(min_size=1, max_size=20))
def test_any_column_name_reads_back_identical_through_both_readers(name):
    _check_reads_back(name)


@pytest.mark.integration
def test_init_on_a_table_with_yaml_lookalike_column_names_writes_params_every_stage_reads(tmp_path):
    """Issue 28: `on`, `yes`... written unquoted as keys were True to every stage."""
    rng = np.random.default_rng(0)
    table = pd.DataFrame({name: rng.normal(size=400) for name in YAML_LOOKALIKES}).assign(target=rng.integers(0, 2, 400))
    repo = make_repo(tmp_path / "repo")
    table.to_csv(repo.path / "data" / "lookalikes.csv", index=False)
    init(repo, "--data", "data/lookalikes.csv", "--target", "target")
    assert list(repo.params()["validate"]["columns"]) == [*YAML_LOOKALIKES, "target"]
    repo.run("dvc", "repro", "validate")


def test_a_file_whose_name_does_not_say_its_format_gets_the_option_init_takes(tmp_path):
    """Issue 28: `make init DATA=/etc/passwd` advised setting data.format, which init cannot pass."""
    repo = make_repo(tmp_path / "repo")
    contacts(500).to_csv(repo.path / "data" / "contacts.data", index=False)
    refused = init(repo, "--data", "data/contacts.data", "--target", "bought", check=False)
    assert refused.returncode == EXIT_USAGE
    assert refused.stderr.strip() == (
        "error: init: cannot tell the format of 'data/contacts.data' from its name: pass FORMAT=csv or FORMAT=parquet (--format)"
    )
    init(repo, "--data", "data/contacts.data", "--target", "bought", "--format", "csv")  # what make init FORMAT=csv passes
    assert repo.params()["data"]["format"] == "csv"


def _words_table(rows: int = 500, columns: int = 6, seed: int = 3) -> pd.DataFrame:
    """Free text only: every cell a few random words (no category, no number), and a 0/1 target."""
    rng = np.random.default_rng(seed)
    words = np.array([f"w{number}" for number in range(400)])
    text = {f"note_{index}": [" ".join(rng.choice(words, 4)) for _ in range(rows)] for index in range(columns)}
    return pd.DataFrame({**text, "ref_id": [f"R{number:05d}" for number in range(rows)], "y": np.arange(rows) % 2})


def _run_init(tmp_path, table: pd.DataFrame, *args: str):
    table.to_csv(tmp_path / "table.csv", index=False)
    return subprocess.run(
        [sys.executable, "-m", "mlpipe.tools.init", "--data", "table.csv", *args, "--force"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def test_a_params_file_naming_a_key_twice_is_one_line_and_written_over_by_nothing(tmp_path):
    """Init stopped with ruamel's DuplicateKeyError traceback (exit 1)."""
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text().replace("init:\n", "init:\n  keep_columns: []\n", 1))
    before = params.read_bytes()
    refused = _run_init(tmp_path, _words_table(), "--target", "y")
    assert refused.returncode == EXIT_USAGE
    assert refused.stderr.count("\n") == 1 and "the key 'keep_columns' appears twice in one mapping: keep one" in refused.stderr
    assert params.read_bytes() == before


def test_a_table_whose_every_column_is_dropped_is_refused_in_one_line_and_the_fix_works(tmp_path):
    """Init used to write params.yaml for it and featurize then stopped with 'no feature columns left'."""
    params = tmp_path / "params.yaml"
    params.write_bytes((ROOT / "params.yaml").read_bytes())
    refused = _run_init(tmp_path, _words_table(), "--target", "y")
    assert refused.returncode == EXIT_USAGE
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: init: all 7 columns but the target were dropped (6 free text, 1 ids)"), lines
    assert "init.keep_columns (keep_columns: [note_0]" in lines[0] and "FORCE=1" in lines[0]
    assert params.read_bytes() == (ROOT / "params.yaml").read_bytes()
    # the fix the line gives: init.keep_columns in params.yaml, then init again
    params.write_text(params.read_text().replace("keep_columns: []", "keep_columns: [note_0]", 1))
    # init reads init.keep_columns from there (leak_rule); dvc add of an untracked table is no part of this
    profile = profile_table(_words_table(), "y", leak_rule=leak_rule(read_params_file(params), params))
    assert "note_0" not in profile.data["drop_columns"] and "note_0" in profile.data["categorical_columns"]
    written = rewrite_params(params.read_text(), profile, "table.csv", None, out=lambda line: None)
    parse_params(read_params_text(written, "params.yaml"), origin="params.yaml")


@pytest.mark.parametrize(
    ("table", "fragment"),
    [
        (
            pd.DataFrame({"a": [1] * 300, "b": [None] * 300, "y": np.arange(300) % 2}),
            "(1 empty or constant, 1 empty or constant)",
        ),
        (
            pd.DataFrame({"answer": np.arange(600) % 2, "y": np.arange(600) % 2}),
            "(1 leaks): a model needs at least one feature: list those known at prediction time in params.yaml's init.keep_columns (keep_columns: [answer]",
        ),
    ],
    ids=["constant-and-empty", "only-a-leak"],
)
def test_no_feature_left_after_the_drops_or_the_leakage_guard_is_refused(table, fragment):
    with pytest.raises(DataError) as refused:
        profile_table(table, "y")
    assert "columns but the target were dropped" in str(refused.value)
    assert "\n" not in str(refused.value)
    if fragment.startswith("(1 empty"):
        assert "(2 empty or constant): a model needs at least one feature; none of them varies" in str(refused.value)
    else:
        assert fragment in str(refused.value)
        kept = profile_table(table, "y", leak_rule=InitParams(keep_columns=["answer"]))
        assert kept.data["drop_columns"] == []
