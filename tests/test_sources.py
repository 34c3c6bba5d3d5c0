"""Sources outside the repository: s3:// and http(s):// URLs (DVC records their ETag as an external
dependency) and SQL databases (a snapshot stage that runs on every repro and is content-hashed),
against real servers on loopback."""

import hashlib
import sqlite3

import pandas as pd
import pytest

from conftest import ROOT, employment_sample, unused_port
from mlpipe.data.sources import read_source
from mlpipe.data.sql import read_query
from mlpipe.errors import DataError

pytestmark = pytest.mark.integration

DOWNSTREAM = ["validate", "split", "featurize", "train", "evaluate", "fairness", "predict", "drift", "card"]


def table_bytes(folder) -> dict[str, bytes]:
    """A table of parts: each part's name and bytes."""
    return {part.name: part.read_bytes() for part in sorted(folder.glob("*.parquet"))}


def lock_dep(repo, stage: str, path: str) -> dict:
    return next(dep for dep in repo.lock()["stages"][stage]["deps"] if dep["path"] == path)


def changed_stages(repo) -> list[str]:
    """Stage names `dvc status` reports as changed."""
    return [line.rstrip(":") for line in repo.dvc("status").stdout.splitlines() if line and not line.startswith(("\t", " "))]


# -- s3:// ---------------------------------------------------------------------------------------


@pytest.fixture
def bucket(s3_server, sample, monkeypatch):
    """A bucket holding the sample as one Parquet object and as two yearly CSV partitions; the
    endpoint reaches the stages through AWS_ENDPOINT_URL, as it would for MinIO."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    client = s3_server.client()
    client.create_bucket(Bucket="lake")
    client.put_object(Bucket="lake", Key="employment.parquet", Body=sample.to_parquet(index=False))
    for year, rows in sample.groupby("year"):
        client.put_object(Bucket="lake", Key=f"partitions/year={year}.csv", Body=rows.to_csv(index=False).encode())
    client.put_object(Bucket="lake", Key="partitions/README.txt", Body=b"not a partition")
    return client


def test_read_s3_file_folder_and_glob(bucket, sample):
    assert read_source("s3://lake/employment.parquet").equals(sample)
    whole = read_source("s3://lake/partitions/")
    pd.testing.assert_frame_equal(whole, sample.sort_values(["year"], kind="stable").reset_index(drop=True), check_dtype=False)
    assert set(read_source("s3://lake/partitions", pattern="year=2017*").year) == {2017}


@pytest.mark.cluster
def test_ingest_reads_an_s3_folder_into_the_same_parts_here_and_on_a_cluster(bucket, tmp_path):
    """Each object is read by a task: in this process, or by a worker with the credentials and
    endpoint in its own environment (a local cluster's workers inherit this process's)."""
    from mlpipe.config import ComputeParams, load_params
    from mlpipe.data.sources import ingest, normalise_columns
    from mlpipe.engine.executor import executor_for

    data = load_params(ROOT / "params.yaml").data.model_copy(update={"source": "s3://lake/partitions/", "partition_rows": 1000})
    found = ingest(data, tmp_path / "here")
    assert found["files"] == 4 and found["rows"] == len(read_source(data.source))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "here"), normalise_columns(read_source(data.source), data.source))
    with executor_for(ComputeParams(engine="dask", workers=1, memory_limit="1GiB")):
        ingest(data, tmp_path / "cluster")
    assert table_bytes(tmp_path / "cluster") == table_bytes(tmp_path / "here")


def test_s3_errors_are_one_line_naming_source_and_cause(bucket, s3_server, monkeypatch):
    with pytest.raises(DataError, match=r"'s3://lake/missing.parquet' does not exist"):
        read_source("s3://lake/missing.parquet")
    with pytest.raises(DataError, match=r"folder 's3://lake/partitions' holds no .csv or .parquet batch files matching 'x\*'"):
        read_source("s3://lake/partitions", pattern="x*")
    s3_server.reject_all_credentials()
    with pytest.raises(DataError, match=r"access to 's3://lake/employment.parquet' was denied .*check the credentials"):
        read_source("s3://lake/employment.parquet")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{unused_port()}")
    with pytest.raises(DataError, match=r"cannot read 's3://lake/employment.parquet': Could not connect to the endpoint URL"):
        read_source("s3://lake/employment.parquet")


def test_s3_source_is_an_external_dependency_tracked_by_etag(repo, bucket, sample):
    """Switching to the same rows on S3 reruns ingest only; a changed object is seen by its ETag."""
    repo.set_params(data={"source": "s3://lake/employment.parquet"})
    # The card names data.source, so it alone follows ingest; identical rows leave every data stage alone.
    assert repo.dvc("repro").stages_run == ["ingest", "card"], "identical rows must leave every later stage alone"
    recorded = lock_dep(repo, "ingest", "s3://lake/employment.parquet")
    assert recorded["etag"] and recorded["size"] > 0
    assert repo.dvc("repro").stages_run == []

    bucket.put_object(Bucket="lake", Key="employment.parquet", Body=sample[sample.year < 2018].to_parquet(index=False))
    assert changed_stages(repo) == ["ingest"]
    assert repo.dvc("repro", "ingest").stages_run == ["ingest"]
    assert lock_dep(repo, "ingest", "s3://lake/employment.parquet")["etag"] != recorded["etag"]
    assert changed_stages(repo)[0] == "validate"


def test_ingest_from_s3_that_is_down_or_rejects_credentials(repo, bucket, s3_server, monkeypatch):
    """Each fault: one line naming the source and the cause, non-zero exit, nothing half-written;
    the next repro after the fault is fixed gives the uninterrupted outputs."""
    repo.set_params(data={"source": "s3://lake/employment.parquet"})
    raw = repo.path / "data" / "raw" / "dataset.parquet"
    expected = table_bytes(raw)

    s3_server.reject_all_credentials()
    denied = repo.stage("ingest", "--out", "data/raw/dataset.parquet")
    assert denied.returncode == 1
    assert denied.stderr.strip().splitlines() == [denied.stderr.strip()]
    assert "access to 's3://lake/employment.parquet' was denied" in denied.stderr
    failed = repo.dvc("repro", check=False)
    assert failed.returncode != 0 and "Traceback" not in failed.stdout + failed.stderr
    # DVC checks the external dependency's ETag before any stage runs; its own line names the stage.
    assert (
        failed.stderr.strip() == "ERROR: failed to reproduce 'ingest': Forbidden: An error occurred (403) "
        "when calling the HeadObject operation: Forbidden"
    )

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{unused_port()}")
    down = repo.stage("ingest", "--out", "data/raw/dataset.parquet")
    assert down.returncode == 1
    assert "cannot read 's3://lake/employment.parquet': Could not connect to the endpoint URL" in down.stderr
    assert table_bytes(raw) == expected and not list(raw.parent.glob(".*.tmp"))

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    from moto import settings

    settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
    assert repo.dvc("repro").stages_run == ["ingest", "card"]  # the card names the new data.source
    assert table_bytes(raw) == expected


# -- http(s):// ----------------------------------------------------------------------------------


def test_http_source_read_and_tracked(repo, http_server, sample):
    base, folder = http_server
    sample.to_csv(folder / "employment.csv", index=False)
    url = f"{base}/employment.csv"
    pd.testing.assert_frame_equal(read_source(url), sample, check_dtype=False)
    with pytest.raises(DataError, match=r"'http://127.0.0.1:\d+/missing.csv' does not exist"):
        read_source(f"{base}/missing.csv")

    def served_etag() -> str:  # what the server sends (see conftest's handler): the file's md5, quoted
        return hashlib.md5((folder / "employment.csv").read_bytes()).hexdigest()

    def recorded() -> list[str]:  # what dvc.lock keeps for the URL (the ETag among its fields)
        return [str(value).strip('"') for value in lock_dep(repo, "ingest", url).values()]

    repo.set_params(data={"source": url})
    assert repo.dvc("repro", "ingest").stages_run == ["ingest"]
    first = served_etag()
    assert first in recorded()
    assert repo.dvc("repro", "ingest").stages_run == []
    sample[sample.year < 2018].to_csv(folder / "employment.csv", index=False)
    assert changed_stages(repo)[0] == "ingest"
    assert repo.dvc("repro", "ingest").stages_run == ["ingest"]
    assert served_etag() in recorded() and first not in recorded()


# -- SQL -----------------------------------------------------------------------------------------


def write_table(database, table: pd.DataFrame, name: str = "employment") -> None:
    with sqlite3.connect(database) as connection:
        table.to_sql(name, connection, index=False, if_exists="replace")


def test_read_query_orders_rows_and_reports_errors(tmp_path, sample):
    database = tmp_path / "app.db"
    write_table(database, sample.sample(frac=1, random_state=3))
    url = f"sqlite:///{database}"
    by_id = read_query(url, table="employment", order_by=["id"])
    assert by_id["id"].is_monotonic_increasing and len(by_id) == len(sample)
    pd.testing.assert_frame_equal(by_id, sample, check_dtype=False)
    assert read_query(url, query="SELECT * FROM employment").equals(read_query(url, table="employment"))
    adults = read_query(url, query="SELECT id, AGEP FROM employment WHERE AGEP >= 18", order_by=["id"])
    assert list(adults.columns) == ["id", "AGEP"] and adults.AGEP.min() >= 18

    with pytest.raises(DataError, match=r"the query on 'sqlite:///.*app.db' failed: no such column: AGE"):
        read_query(url, query="SELECT AGE FROM employment")
    with pytest.raises(DataError, match=r"failed: no such table: employmnt"):
        read_query(url, table="employmnt")
    with pytest.raises(DataError, match=r"returned no rows"):
        read_query(url, query="SELECT * FROM employment WHERE 1 = 0")
    with pytest.raises(DataError, match=r"SQLite database file '.*nowhere.db' does not exist"):
        read_query(f"sqlite:///{tmp_path}/nowhere.db", table="employment")
    assert not (tmp_path / "nowhere.db").exists()
    with pytest.raises(DataError, match=r"order_by columns \['ID'\] are not in the result"):
        read_query(url, table="employment", order_by=["ID"])
    with pytest.raises(DataError, match=r"No module named 'psycopg'; install psycopg") as caught:
        read_query("postgresql+psycopg://analyst@db.invalid/sales", table="t", password="x")
    assert "'postgresql+psycopg://analyst:***@db.invalid/sales'" in str(caught.value), "the password is never shown"


def test_sql_snapshot_stage_reruns_downstream_only_when_rows_change(repo, sample):
    """The snapshot runs on every repro; DVC hashes its rows, so a reordered table changes nothing,
    new rows rerun ingest and what follows, and a query error is one line that loses nothing."""
    write_table(repo.path / "data" / "app.db", sample.sample(frac=1, random_state=5))
    snapshot = {"url": "sqlite:///data/app.db", "table": "employment", "order_by": ["id"]}
    repo.set_params(sql_snapshots={"app": snapshot}, data={"source": "data/snapshots/app.parquet"})
    first = repo.dvc("repro", "ingest")
    assert first.stages_run == ["snapshot@app", "ingest"]
    assert repo.dvc("repro", "ingest").stages_run == ["snapshot@app"]

    write_table(repo.path / "data" / "app.db", sample.sample(frac=1, random_state=6))  # same rows, new physical order
    assert repo.dvc("repro", "ingest").stages_run == ["snapshot@app"]

    raw = table_bytes(repo.path / "data" / "raw" / "dataset.parquet")
    repo.set_params(sql_snapshots={"app": {**snapshot, "table": None, "query": "SELECT AGE FROM employment"}})
    failed = repo.dvc("repro", "ingest", check=False)
    assert failed.returncode != 0
    assert "error: snapshot: the query on 'sqlite:///data/app.db' failed: no such column: AGE" in failed.stderr
    assert "Traceback" not in failed.stdout + failed.stderr
    assert table_bytes(repo.path / "data" / "raw" / "dataset.parquet") == raw

    repo.set_params(sql_snapshots={"app": snapshot})
    extra = employment_sample(rows_per_year=20, seed=9).assign(id=lambda t: t.id + 10_000_000)
    with sqlite3.connect(repo.path / "data" / "app.db") as connection:
        extra.to_sql("employment", connection, index=False, if_exists="append")
    assert repo.dvc("repro", "ingest").stages_run == ["snapshot@app", "ingest"]
    assert pd.read_parquet(repo.path / "data" / "raw" / "dataset.parquet").shape[0] == len(sample) + len(extra)
    changed = changed_stages(repo)  # the snapshot is listed as "always changed"
    assert "ingest" not in changed and "validate" in changed


def test_an_http_csv_is_read_with_data_csv(http_server):
    """A semicolon file without a header at a URL: the same options as a local file."""
    from mlpipe.config import CsvParams

    base, folder = http_server
    (folder / "people.csv").write_text("66;Female;0\n54;Male;1\n")
    table = read_source(f"{base}/people.csv", csv_options=CsvParams(sep=";", header=False, names=["age", "sex", "label"]))
    assert table.to_dict("list") == {"age": [66, 54], "sex": ["Female", "Male"], "label": [0, 1]}
    with pytest.raises(DataError, match=r"people.csv' has 3 columns but data.csv.names gives 2 names"):
        read_source(f"{base}/people.csv", csv_options=CsvParams(sep=";", header=False, names=["age", "sex"]))
