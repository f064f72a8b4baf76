"""`url_env`: the sql and http sources read their URL (with credentials) from a variable.

Mutually exclusive with `url`; an unset variable is named in the error; the secret never
reaches an error message or the metadata.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.config import ConfigError, IngestConfig
from core.config.params import parse_params
from pipelines.edges.sources import SourceError, describe_source, fetch
from tests.mlflow_server import free_port
from tests.pipelines.edges.test_sources import (  # noqa: F401 (fixtures)
    EXPECTED,
    FAST_RETRY,
    Reply,
    ScriptedServer,
    server,
    sqlite_db,
)


def _ingest(source: str, block: dict) -> IngestConfig:
    return IngestConfig.model_validate({"source": source, source: block})


def test_sql_reads_the_url_from_its_variable(
    sqlite_db: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCE_DB_URL", f"sqlite:///{sqlite_db}")
    config = _ingest("sql", {"url_env": "SOURCE_DB_URL", "query": "SELECT * FROM machines"})
    pd.testing.assert_frame_equal(fetch(config), EXPECTED)
    assert describe_source(config)["url_env"] == "SOURCE_DB_URL"


def test_http_reads_the_url_from_its_variable_and_keeps_the_secret_out_of_the_metadata(
    server: ScriptedServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = server.route("/data.csv", Reply()).replace("http://", "http://reader:s3cret@")
    monkeypatch.setenv("SOURCE_HTTP_URL", f"{url}?token=t0ken")
    config = _ingest("http", {"url_env": "SOURCE_HTTP_URL", "retry": FAST_RETRY})
    pd.testing.assert_frame_equal(fetch(config), EXPECTED)
    described = describe_source(config)
    assert described["url_env"] == "SOURCE_HTTP_URL"
    assert "s3cret" not in str(described) and "t0ken" not in str(described)


@pytest.mark.parametrize("source", ["sql", "http"])
def test_an_unset_variable_is_named(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_SOURCE_URL", raising=False)
    config = _ingest(source, {"url_env": "NO_SUCH_SOURCE_URL", "query": "SELECT 1"}
                     if source == "sql" else {"url_env": "NO_SUCH_SOURCE_URL"})  # fmt: skip
    with pytest.raises(SourceError) as error:
        fetch(config)
    assert str(error.value) == (
        f"ingest.{source}.url_env names the environment variable NO_SUCH_SOURCE_URL, which is "
        "unset or empty: export NO_SUCH_SOURCE_URL=<the URL with its credentials>"
    )


def test_a_failed_connection_does_not_show_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()  # nobody listens: connection refused
    monkeypatch.setenv("SOURCE_DB_URL", f"postgresql+psycopg2://reader:s3cret@127.0.0.1:{port}/db")
    config = _ingest("sql", {"url_env": "SOURCE_DB_URL", "query": "SELECT 1"})
    with pytest.raises(SourceError) as error:
        fetch(config)
    assert "cannot connect" in str(error.value) and "s3cret" not in str(error.value)
    assert f"reader:***@127.0.0.1:{port}/db" in str(error.value)


@pytest.mark.parametrize("source", ["sql", "http"])
def test_url_and_url_env_together_are_refused(source: str) -> None:
    params = {"ingest": {"source": source, source: {"url": "x://y", "url_env": "SOURCE_URL"}}}
    with pytest.raises(ConfigError, match="set url or url_env, not both"):
        parse_params(params)


def test_url_env_must_be_a_variable_name() -> None:
    params = {"ingest": {"source": "sql", "sql": {"url_env": "postgresql://u:p@h/db"}}}
    with pytest.raises(ConfigError, match="url_env must be an environment variable's name"):
        parse_params(params)


def test_a_chosen_source_needs_url_or_url_env() -> None:
    with pytest.raises(ConfigError, match=r"needs ingest.http.url \(or url_env\) to be set"):
        parse_params({"ingest": {"source": "http"}})


def test_a_variable_holding_no_http_url_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_HTTP_URL", "ftp://user:s3cret@example.com/data.csv")
    with pytest.raises(SourceError) as error:
        fetch(_ingest("http", {"url_env": "SOURCE_HTTP_URL"}))
    message = str(error.value)
    assert message.startswith("the variable SOURCE_HTTP_URL (ingest.http.url_env) must be an http")
    assert "s3cret" not in message
