"""The Makefile passes what a user types as arguments to the `mlpipe` command, never as shell code."""

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.integration

# A column name a real table may hold, with every character a shell or make treats specially.
ODD = 'net "gain" $HOME; `id` $(shell echo x) 50%'


def small_table(target: str) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    age = rng.integers(18, 80, 400)
    return pd.DataFrame(
        {"age": age, "region": rng.choice(["north", "south"], 400), target: (age + rng.normal(0, 15, 400) > 50).astype(int)}
    )


def test_make_init_passes_values_as_arguments_never_as_shell_code(fresh_repo, tmp_path):
    """`make init TARGET='a"; touch x; "'` ran the `touch`: the value was pasted into the recipe's shell line."""
    small_table(ODD).to_csv(fresh_repo.path / "data" / "people.csv", index=False)
    marker = tmp_path / "x"

    injected = fresh_repo.make("init", "DATA=data/people.csv", f'TARGET=a"; touch {marker}; "', check=False)
    assert not marker.exists(), "a make variable ran as shell code"
    assert injected.returncode == 2
    own = [line for line in injected.stderr.splitlines() if not line.startswith("make: ***")]
    assert len(own) == 1 and own[0].startswith("error: init: ") and f"touch {marker}" in own[0], injected.stderr

    fresh_repo.make("init", "DATA=data/people.csv", f"TARGET={ODD}", "POSITIVE=1")
    assert fresh_repo.params()["data"]["target"] == ODD


def test_make_init_reads_a_headerless_space_separated_file_with_sep_header_and_names(fresh_repo):
    table = small_table("outcome")
    lines = [" ".join(map(str, row)) for row in table.itertuples(index=False)]
    (fresh_repo.path / "data" / "plain.txt").write_text("\n".join(lines) + "\n")
    fresh_repo.make("init", "DATA=data/plain.txt", "SEP=whitespace", "HEADER=0", "NAMES=age,region,outcome", "TARGET=outcome")
    data = fresh_repo.params()["data"]
    assert data["target"] == "outcome" and data["csv"] == {"sep": "whitespace", "header": False, "names": ["age", "region", "outcome"]}


def test_make_init_on_a_file_whose_name_does_not_say_its_format_takes_the_format_it_advises(fresh_repo):
    """Issue 28: `make init DATA=/etc/passwd` advised data.format, which make init cannot set."""
    small_table("outcome").to_csv(fresh_repo.path / "data" / "people.export", index=False)
    refused = fresh_repo.make("init", "DATA=data/people.export", "TARGET=outcome", check=False)
    own = [line for line in refused.stderr.splitlines() if not line.startswith("make: ***")]
    assert refused.returncode == 2 and len(own) == 1 and "pass FORMAT=csv or FORMAT=parquet" in own[0], refused.stderr
    fresh_repo.make("init", "DATA=data/people.export", "TARGET=outcome", "FORMAT=csv")
    assert fresh_repo.params()["data"]["format"] == "csv"
