"""The ingestion edges against real parts: a local HTTP server, a SQLite file, real files."""

from __future__ import annotations

import io
import logging
import shutil
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from core.config import IngestConfig
from pipelines.edges.sources import (
    SourceError,
    TransientSourceError,
    _retry_after_s,
    describe_source,
    fetch,
)

CSV = b"udi,torque,failure\n1,40.5,0\n2,38.1,1\n3,41.0,0\n"
EXPECTED = pd.DataFrame({"udi": [1, 2, 3], "torque": [40.5, 38.1, 41.0], "failure": [0, 1, 0]})
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
FAST_RETRY = {"attempts": 3, "backoff_initial_s": 0.01, "backoff_max_s": 0.05, "jitter_s": 0.01}


# --- a real HTTP server -----------------------------------------------------------------


@dataclass
class Reply:
    """One scripted answer. `declared_length` lies about Content-Length when set."""

    status: int = 200
    body: bytes = CSV
    headers: dict[str, str] = field(default_factory=dict)
    declared_length: int | None = None
    delay_s: float = 0.0


class ScriptedServer:
    """Serves scripted replies per path (the last reply repeats) and counts requests."""

    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda *args: None  # type: ignore[method-assign]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def route(self, path: str, *replies: Reply) -> str:
        self.routes[path] = list(replies)
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{path}"

    def _next_reply(self, path: str) -> Reply | None:
        with self._lock:
            self.hits[path] += 1
            replies = self.routes.get(path)
            return replies[min(self.hits[path], len(replies)) - 1] if replies else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                reply = server._next_reply(self.path.split("?")[0]) or Reply(404, b"no route")
                time.sleep(reply.delay_s)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                length = reply.declared_length or len(reply.body)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(reply.body)  # HTTP/1.0: the connection closes after this

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedServer]:
    for name in PROXY_VARS:  # loopback must not go through a proxy
        monkeypatch.delenv(name, raising=False)
    with ScriptedServer() as running:
        yield running


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Route tempfile into a folder we can inspect, to prove downloads are cleaned up."""
    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def http_config(url: str, **http: Any) -> IngestConfig:
    return IngestConfig.model_validate(
        {"source": "http", "http": {"url": url, "retry": FAST_RETRY, **http}}
    )


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


# --- http -------------------------------------------------------------------------------


def test_http_retries_503_then_succeeds(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = server.route("/data.csv", Reply(503, b"busy"), Reply(503, b"busy"), Reply())
    with caplog.at_level(logging.WARNING, logger="pipelines.edges.sources"):
        frame = fetch(http_config(url))
    pd.testing.assert_frame_equal(frame, EXPECTED)
    assert server.hits["/data.csv"] == 3
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == 2
    assert "attempt 1 of 3 failed: HTTP 503" in retries[0]
    assert "attempt 2 of 3" in retries[1]


def test_http_404_fails_at_once(server: ScriptedServer) -> None:
    url = server.route("/missing.csv", Reply(404, b"nope"))
    with pytest.raises(SourceError) as error:
        fetch(http_config(url))
    assert "HTTP 404" in str(error.value)
    assert url in str(error.value)
    assert "not retried" in str(error.value)
    assert server.hits["/missing.csv"] == 1


def test_http_429_honours_retry_after(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = server.route("/data.csv", Reply(429, b"slow down", {"Retry-After": "1"}), Reply())
    retry = {**FAST_RETRY, "backoff_max_s": 5}
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="pipelines.edges.sources"):
        frame = fetch(http_config(url, retry=retry))
    assert time.perf_counter() - start >= 0.9  # waited as asked, not the 0.01 s backoff
    pd.testing.assert_frame_equal(frame, EXPECTED)
    assert server.hits["/data.csv"] == 2
    assert "retrying in 1.00 s (as Retry-After asked)" in caplog.text


def test_http_retry_after_is_capped_by_backoff_max(server: ScriptedServer) -> None:
    url = server.route("/data.csv", Reply(429, b"", {"Retry-After": "3600"}), Reply())
    start = time.perf_counter()
    fetch(http_config(url))  # backoff_max_s is 0.05
    assert time.perf_counter() - start < 2
    assert server.hits["/data.csv"] == 2


def test_http_truncated_body_fails_after_all_attempts(
    server: ScriptedServer, private_tmp: Path
) -> None:
    url = server.route("/data.csv", Reply(body=CSV[:20], declared_length=len(CSV)))
    with pytest.raises(SourceError) as error:
        fetch(http_config(url))
    message = str(error.value)
    assert f"GET {url}: gave up after 3 attempt(s)" in message
    assert "last error: incomplete body:" in message
    assert f"received 20 bytes, expected {len(CSV)}" in message
    assert server.hits["/data.csv"] == 3
    assert list(private_tmp.iterdir()) == []  # the partial download is gone


def test_http_read_timeout_is_retried(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = server.route("/data.csv", Reply(delay_s=0.6), Reply())
    with caplog.at_level(logging.WARNING, logger="pipelines.edges.sources"):
        frame = fetch(http_config(url, read_timeout_s=0.2))
    pd.testing.assert_frame_equal(frame, EXPECTED)
    assert server.hits["/data.csv"] == 2
    assert "attempt 1 of 3 failed: read timed out (no data for 0.2 s)" in caplog.text


def test_http_always_500_gives_up_after_attempts(server: ScriptedServer) -> None:
    url = server.route("/data.csv", Reply(500, b"boom"))
    with pytest.raises(SourceError, match=r"gave up after 3 attempt\(s\); last error: HTTP 500"):
        fetch(http_config(url))
    assert server.hits["/data.csv"] == 3


def test_http_connection_refused_is_retried_then_reported() -> None:
    with ScriptedServer() as stopped:
        url = stopped.route("/data.csv", Reply())
    with pytest.raises(SourceError, match=r"gave up after 3 attempt.*ConnectError"):
        fetch(http_config(url))


def test_http_parquet_by_suffix_and_by_content_type(server: ScriptedServer) -> None:
    body = parquet_bytes(EXPECTED)
    by_suffix = server.route("/data.parquet", Reply(body=body))
    by_type = server.route(
        "/export", Reply(body=body, headers={"Content-Type": "application/vnd.apache.parquet"})
    )
    pd.testing.assert_frame_equal(fetch(http_config(by_suffix)), EXPECTED)
    pd.testing.assert_frame_equal(fetch(http_config(by_type)), EXPECTED)


def test_http_unknown_format_asks_for_config(server: ScriptedServer) -> None:
    url = server.route("/export", Reply(headers={"Content-Type": "application/octet-stream"}))
    with pytest.raises(SourceError, match=r"set ingest\.http\.format to csv or parquet"):
        fetch(http_config(url))
    assert server.hits["/export"] == 1
    pd.testing.assert_frame_equal(fetch(http_config(url, format="csv")), EXPECTED)


def test_http_rejects_non_http_url() -> None:
    with pytest.raises(SourceError, match="must be an http:// or https:// URL"):
        fetch(http_config("ftp://example.com/data.csv"))


def test_http_garbage_body_is_a_parse_error(server: ScriptedServer) -> None:
    url = server.route("/data.parquet", Reply(body=b"not parquet at all"))
    with pytest.raises(SourceError, match="cannot be parsed as parquet"):
        fetch(http_config(url))
    assert server.hits["/data.parquet"] == 1


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), ("-3", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("soon", None), (None, None)],
)
def test_retry_after_header_forms(header: str | None, seconds: float | None) -> None:
    assert _retry_after_s(header) == seconds


# --- sql --------------------------------------------------------------------------------


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    path = tmp_path / "source.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE machines (udi INTEGER, torque REAL, failure INTEGER)")
        connection.executemany(
            "INSERT INTO machines VALUES (?, ?, ?)", [(1, 40.5, 0), (2, 38.1, 1), (3, 41.0, 0)]
        )
    connection.close()
    return path


def sql_config(database: Path, query: str) -> IngestConfig:
    return IngestConfig.model_validate(
        {"source": "sql", "sql": {"url": f"sqlite:///{database}", "query": query}}
    )


def sql_config_url(url: str, query: str) -> IngestConfig:
    return IngestConfig.model_validate({"source": "sql", "sql": {"url": url, "query": query}})


def test_sql_reads_query(sqlite_db: Path) -> None:
    frame = fetch(sql_config(sqlite_db, "SELECT * FROM machines ORDER BY udi"))
    pd.testing.assert_frame_equal(frame, EXPECTED)


def test_sql_missing_table_is_clear(sqlite_db: Path) -> None:
    with pytest.raises(SourceError) as error:
        fetch(sql_config(sqlite_db, "SELECT * FROM no_such_table"))
    assert "query failed: no such table: no_such_table" in str(error.value)


def test_sql_zero_rows_is_clear(sqlite_db: Path) -> None:
    with pytest.raises(SourceError, match="the query returned no rows"):
        fetch(sql_config(sqlite_db, "SELECT * FROM machines WHERE udi > 100"))


def test_sql_missing_database_file_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "absent.db"
    with pytest.raises(SourceError, match="no SQLite database file at"):
        fetch(sql_config(missing, "SELECT 1"))
    assert not missing.exists()


def test_sql_bad_url_does_not_echo_it() -> None:
    config = IngestConfig.model_validate(
        {"source": "sql", "sql": {"url": "not a url with s3cret", "query": "SELECT 1"}}
    )
    with pytest.raises(SourceError, match="is not a SQLAlchemy URL") as error:
        fetch(config)
    assert "s3cret" not in str(error.value)


# --- file -------------------------------------------------------------------------------


def file_config(path: Path) -> IngestConfig:
    return IngestConfig.model_validate({"source": "file", "file": {"path": str(path)}})


def test_file_reads_csv_and_parquet(tmp_path: Path) -> None:
    csv_path, parquet_path = tmp_path / "data.csv", tmp_path / "data.parquet"
    csv_path.write_bytes(CSV)
    parquet_path.write_bytes(parquet_bytes(EXPECTED))
    pd.testing.assert_frame_equal(fetch(file_config(csv_path)), EXPECTED)
    pd.testing.assert_frame_equal(fetch(file_config(parquet_path)), EXPECTED)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("absent.csv", None, "absent.csv: no such file (ingest.file.path)"),
        ("data.xlsx", b"x", "data.xlsx: unknown file type '.xlsx'; expected one of .csv, "),
        ("empty.csv", b"", "empty.csv: empty (0 bytes)"),
        ("empty.parquet", b"", "empty.parquet: empty (0 bytes)"),
        ("header.csv", b"udi,torque,failure\n", "header.csv: a header but no rows"),
        ("blank.csv", b"\n\n", "blank.csv: empty (no header and no rows)"),
        ("binary.csv", b"\x89PNG\r\n\x1a\n\x00\xff", "binary.csv: not a text CSV file"),
        ("ragged.csv", b"a,b\n1,2\n3,4,5,6\n", "ragged.csv: cannot be parsed as csv: Error"),
        ("junk.parquet", b"garbage bytes", "junk.parquet: cannot be parsed as parquet:"),
    ],
)
def test_file_errors_are_clear(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SourceError) as error:
        fetch(file_config(path))
    assert message in str(error.value)


# --- synthetic and describe_source --------------------------------------------------------


def test_synthetic_source_calls_the_generator() -> None:
    config = IngestConfig.model_validate({"source": "synthetic", "synthetic": {"rows": 200}})
    frame = fetch(config)
    assert len(frame) == 200


def test_describe_source_never_shows_secrets(tmp_path: Path) -> None:
    http = describe_source(http_config("https://bob:hunter2@example.com/d.csv?day=1&token=abc"))
    assert http == {
        "source": "http",
        "url": "https://example.com/d.csv?day=1&token=REDACTED",
        "format": "auto",
    }
    sql = describe_source(
        IngestConfig.model_validate(
            {"source": "sql", "sql": {"url": "postgresql://bob:hunter2@db/prod", "query": "Q"}}
        )
    )
    assert sql == {"source": "sql", "url": "postgresql://bob:***@db/prod", "query": "Q"}
    synthetic = describe_source(IngestConfig())
    assert synthetic == {
        "source": "synthetic",
        "rows": 20000,
        "seed": 2020,
        "scenario": "none",
        "ramp_rows": 0,
        "daily_cycle_k": 0.0,
        "rows_per_day": 550,
    }
    assert describe_source(file_config(tmp_path / "x.csv"))["path"] == str(tmp_path / "x.csv")


# --- sql: a locked database is transient, and the ingest stage retries it ------------------


def lock_exclusively(database: Path) -> sqlite3.Connection:
    """Another connection holding an exclusive transaction: readers get 'database is locked'."""
    holder = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def release(holder: sqlite3.Connection) -> None:
    holder.execute("ROLLBACK")
    holder.close()


def test_sql_locked_database_is_transient(sqlite_db: Path) -> None:
    url = f"sqlite:///{sqlite_db}?timeout=0.1"  # SQLite waits 0.1 s for the lock, not 5 s
    holder = lock_exclusively(sqlite_db)
    try:
        with pytest.raises(TransientSourceError) as error:
            fetch(sql_config_url(url, "SELECT * FROM machines"))
    finally:
        release(holder)
    assert str(error.value) == (
        f"{url}: query failed: database is locked (ingest.sql.query: SELECT * FROM machines)"
    )


def test_sql_errors_in_the_query_are_not_transient(sqlite_db: Path) -> None:
    with pytest.raises(SourceError) as error:
        fetch(sql_config(sqlite_db, "SELEC * FROM machines"))
    assert type(error.value) is SourceError
    assert 'query failed: near "SELEC": syntax error' in str(error.value)


def test_ingest_retries_a_locked_database_until_it_is_free(
    sqlite_db: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The real ingest stage, in-process: attempts fail while another connection holds the
    lock, the stage retries (`retry` in params.yaml), and succeeds once it is released."""
    import json

    import yaml

    from core.paths import RAW_DATA
    from pipelines import ingest

    url = f"sqlite:///{sqlite_db}?timeout=0.1"
    params = {
        "ingest": {"source": "sql", "sql": {"url": url, "query": "SELECT * FROM machines"}},
        "retry": {
            "default": {"attempts": 5, "backoff_initial_s": 0.3, "backoff_max_s": 2, "jitter_s": 0}
        },
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copy(Path(__file__).resolve().parents[3] / "dvc.yaml", tmp_path / "dvc.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIFECYCLE_RUN_ID", "locked-source")
    holder = lock_exclusively(sqlite_db)
    timer = threading.Timer(0.6, release, args=(holder,))
    timer.start()
    try:
        ingest.main()
    finally:
        timer.join()
    pd.testing.assert_frame_equal(pd.read_parquet(RAW_DATA), EXPECTED)
    ledger = [json.loads(line) for line in Path(".lifecycle/ledger.jsonl").read_text().splitlines()]
    finished = [record for record in ledger if record["event"] == "finished"]
    assert len(finished) >= 2
    assert [r["status"] for r in finished] == ["failed"] * (len(finished) - 1) + ["succeeded"]
    locked = f"{url}: query failed: database is locked (ingest.sql.query: SELECT * FROM machines)"
    assert finished[0]["error"] == {"class": "TransientSourceError", "message": locked}
    assert (
        f"stage ingest: attempt 1 of 5 failed (TransientSourceError: {locked}); retrying in 0.3 s"
        in caplog.messages
    )
