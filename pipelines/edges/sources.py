"""The ingestion edges: fetch the raw table from the source named in `params.yaml`.

`fetch` returns a frame from a synthetic generator, a local CSV/Parquet file, a CSV/Parquet
URL (retried with exponential backoff on transient failures only) or a SQL query. Every
failure a user can fix is a `SourceError` whose message names the source and the problem.
A SQL database that is locked, busy or unreachable raises `TransientSourceError`; the
ingest stage retries it as a whole (`retry` in params.yaml, see `pipelines.edges.runtime`).
`describe_source` gives where the data came from, with passwords and tokens removed.
"""

from __future__ import annotations

import email.utils
import logging
import re
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import sqlalchemy
import sqlalchemy.exc
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from tenacity.wait import wait_base

from core.config import (
    HttpSourceConfig,
    IngestConfig,
    RetryConfig,
    SqlSourceConfig,
)
from core.io import TABLE_SUFFIXES

logger = logging.getLogger(__name__)

# Media types (Content-Type without parameters) that tell the format of an HTTP body.
CONTENT_TYPES = {
    "text/csv": "csv",
    "application/csv": "csv",
    "text/x-csv": "csv",
    "text/plain": "csv",
    "application/vnd.apache.parquet": "parquet",
    "application/parquet": "parquet",
    "application/x-parquet": "parquet",
}
# Query-string keys (in HTTP and SQL URLs) whose values are redacted in metadata and logs.
SECRET_KEYS = re.compile(r"pass|pwd|secret|token|key|sig|auth|cred|session|connect", re.I)
REDACTED = "REDACTED"
# SQL errors: a busy or vanished database is transient; a refused login or a missing
# database is not, even when the driver reports it while connecting.
SQL_BUSY = re.compile(
    r"database is locked|database table is locked|database is busy|disk I/O error|"
    r"server closed the connection|connection (?:refused|reset|timed out)|"
    r"could not connect|can't connect|timeout expired|lost connection|gone away|"
    r"too many connections",
    re.I,
)
SQL_PERMANENT = re.compile(
    r"authenticat|password|access denied|does not exist|unknown database", re.I
)
PROGRESS_EVERY_S = 5.0
CHUNK_BYTES = 1 << 16


class SourceError(Exception):
    """A source that cannot be read; the message is meant for the user."""


class TransientSourceError(SourceError):
    """A failure that may go away on its own (network, timeout, 5xx, 429, a locked or
    unreachable database): worth a retry."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def fetch(config: IngestConfig) -> pd.DataFrame:
    """Read the raw table from the configured source; never returns an empty frame."""
    start = time.perf_counter()
    if config.source == "synthetic":
        from features.synthetic import generate_process_data  # only this source needs it

        frame = generate_process_data(config.synthetic)
    elif config.source == "file":
        assert config.file.path is not None  # guaranteed by IngestConfig's validator
        frame = read_file(config.file.path)
    elif config.source == "http":
        frame = download_table(config.http)
    else:
        frame = query_sql(config.sql)
    if frame.empty:
        raise SourceError(f"source '{config.source}' gave no rows")
    logger.info(
        "fetched %d rows x %d columns from %s in %.2f s",
        len(frame),
        frame.shape[1],
        config.source,
        time.perf_counter() - start,
    )
    return frame


def describe_source(config: IngestConfig) -> dict[str, Any]:
    """Where the data came from, for the metadata file: no passwords, no tokens."""
    if config.source == "synthetic":
        return {"source": "synthetic", **config.synthetic.model_dump()}
    if config.source == "file":
        return {"source": "file", "path": str(config.file.path)}
    if config.source == "http":
        return {
            "source": "http",
            "url": redact_http_url(config.http.url or ""),
            "format": config.http.format,
        }
    return {
        "source": "sql",
        "url": redact_sql_url(config.sql.url or ""),
        "query": config.sql.query,
    }


# --- file -----------------------------------------------------------------------------


def read_file(path: Path) -> pd.DataFrame:
    """Read a local CSV or Parquet file, the format from its suffix."""
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        known = ", ".join(sorted(TABLE_SUFFIXES))
        raise SourceError(f"{path}: unknown file type '{suffix}'; expected one of {known}")
    if not path.exists():
        raise SourceError(f"{path}: no such file (ingest.file.path)")
    if not path.is_file():
        raise SourceError(f"{path}: not a file (ingest.file.path)")
    return _parse_table(path, TABLE_SUFFIXES[suffix], str(path))


def _parse_table(path: Path, fmt: str, origin: str) -> pd.DataFrame:
    """Parse a complete CSV or Parquet file; `origin` names it in error messages."""
    if path.stat().st_size == 0:
        raise SourceError(f"{origin}: empty (0 bytes)")
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(path, engine="pyarrow")
        else:
            frame = pd.read_csv(path, low_memory=False)
    except pd.errors.EmptyDataError:
        raise SourceError(f"{origin}: empty (no header and no rows)") from None
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{origin}: not a text CSV file (not valid UTF-8: {exc.reason} at byte {exc.start})"
        ) from None
    except (pd.errors.ParserError, pa.ArrowException, ValueError, OSError) as exc:
        raise SourceError(f"{origin}: cannot be parsed as {fmt}: {_first_line(exc)}") from None
    if frame.empty:
        what = "a header but no rows" if frame.shape[1] else "no rows"
        raise SourceError(f"{origin}: {what}")
    return frame


# --- http -----------------------------------------------------------------------------


def download_table(config: HttpSourceConfig) -> pd.DataFrame:
    """Download a CSV or Parquet URL to a temporary file, retrying transient failures.

    The body is parsed only once it is complete; the temporary file is always removed,
    so a partial download can never become an output.
    """
    assert config.url is not None  # guaranteed by IngestConfig's validator
    url, shown = _check_http_url(config.url), redact_http_url(config.url)
    attempts = config.retry.attempts
    timeout = httpx.Timeout(
        connect=config.connect_timeout_s,
        read=config.read_timeout_s,
        write=config.read_timeout_s,
        pool=config.connect_timeout_s,
    )
    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=_BackoffOrRetryAfter(config.retry),
        retry=retry_if_exception_type(TransientSourceError),
        before_sleep=lambda state: _log_retry(state, shown, attempts),
        reraise=True,
    )
    headers = {"User-Agent": "mlops-lifecycle-template/ingest"}
    with (
        tempfile.TemporaryDirectory(prefix="ingest-") as tmp,
        httpx.Client(timeout=timeout, follow_redirects=True, headers=headers) as client,
    ):
        body = Path(tmp) / "body"
        try:
            fmt = retrying(_download_once, client, url, shown, config.format, body)
        except TransientSourceError as exc:
            raise SourceError(
                f"GET {shown}: gave up after {attempts} attempt(s); last error: {exc}"
            ) from None
        return _parse_table(body, fmt, shown)


def _download_once(client: httpx.Client, url: httpx.URL, shown: str, fmt: str, target: Path) -> str:
    """One GET streamed to `target`; returns the body's format. Raises on any failure."""
    start = time.perf_counter()
    try:
        with client.stream("GET", url) as response:
            status = response.status_code
            if status == 429 or status >= 500:
                raise TransientSourceError(
                    f"HTTP {status} {response.reason_phrase}".rstrip(),
                    retry_after_s=_retry_after_s(response.headers.get("Retry-After")),
                )
            if status >= 300:
                raise SourceError(
                    f"GET {shown}: HTTP {status} {response.reason_phrase}; not retried "
                    "(only 429, 5xx, timeouts and network errors are)"
                )
            if fmt == "auto":
                content_type = response.headers.get("Content-Type", "")
                fmt = _format_from(response.url, content_type, shown)  # after redirects
            total = response.headers.get("Content-Length", "?")
            last_report = time.perf_counter()
            with open(target, "wb") as handle:
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    handle.write(chunk)
                    if time.perf_counter() - last_report >= PROGRESS_EVERY_S:  # long downloads
                        last_report = time.perf_counter()
                        logger.info("GET %s: %d of %s bytes so far", shown, handle.tell(), total)
            _check_complete(response)
    except httpx.ReadTimeout:
        raise TransientSourceError(
            f"read timed out (no data for {client.timeout.read} s)"
        ) from None
    except httpx.ConnectTimeout:
        raise TransientSourceError(
            f"connect timed out (no connection within {client.timeout.connect} s)"
        ) from None
    except httpx.TimeoutException as exc:
        raise TransientSourceError(f"timed out ({type(exc).__name__})") from None
    except httpx.RemoteProtocolError as exc:  # h11 checks the body against Content-Length
        text = _first_line(exc)
        kind = "incomplete body" if "message body" in text else "protocol error"
        raise TransientSourceError(f"{kind}: {text}") from None
    except httpx.TransportError as exc:  # connection refused or reset, DNS, ...
        raise TransientSourceError(f"{type(exc).__name__}: {_first_line(exc)}") from None
    except httpx.DecodingError as exc:
        raise TransientSourceError(f"corrupt body: {_first_line(exc)}") from None
    except httpx.TooManyRedirects:
        raise SourceError(f"GET {shown}: too many redirects") from None
    logger.info(
        "GET %s: %d bytes in %.2f s", shown, target.stat().st_size, time.perf_counter() - start
    )
    return fmt


def _check_complete(response: httpx.Response) -> None:
    """Fail when fewer bytes arrived than Content-Length announced."""
    declared = response.headers.get("Content-Length")
    if declared is None or not declared.isdigit():
        return
    received = response.num_bytes_downloaded  # bytes on the wire, as Content-Length counts
    if received < int(declared):
        raise TransientSourceError(f"incomplete body: received {received} of {declared} bytes")


def _format_from(url: httpx.URL, content_type: str, shown: str) -> str:
    """'csv' or 'parquet' from the URL path's suffix, else from the Content-Type."""
    suffix = PurePosixPath(url.path).suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return TABLE_SUFFIXES[suffix]
    media_type = content_type.split(";")[0].strip().lower()
    if media_type in CONTENT_TYPES:
        return CONTENT_TYPES[media_type]
    raise SourceError(
        f"GET {shown}: cannot tell the format from the URL path or Content-Type "
        f"'{media_type or 'none'}'; set ingest.http.format to csv or parquet"
    )


def _retry_after_s(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class _BackoffOrRetryAfter(wait_base):
    """Exponential backoff capped at backoff_max_s plus random jitter; a server's
    Retry-After, when given, replaces it (still capped at backoff_max_s)."""

    def __init__(self, retry: RetryConfig) -> None:
        self._max_s = retry.backoff_max_s
        self._backoff = wait_exponential(
            multiplier=retry.backoff_initial_s, max=retry.backoff_max_s
        ) + wait_random(0, retry.jitter_s)

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, TransientSourceError) and error.retry_after_s is not None:
            return min(error.retry_after_s, self._max_s)
        return self._backoff(retry_state)


def _log_retry(state: RetryCallState, shown: str, attempts: int) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    wait_s = state.next_action.sleep if state.next_action is not None else 0.0
    hint = (
        " (as Retry-After asked)"
        if isinstance(error, TransientSourceError) and error.retry_after_s is not None
        else ""
    )
    logger.warning(
        "GET %s: attempt %d of %d failed: %s; retrying in %.2f s%s",
        shown,
        state.attempt_number,
        attempts,
        error,
        wait_s,
        hint,
    )


def _check_http_url(raw: str) -> httpx.URL:
    try:
        url = httpx.URL(raw)
    except httpx.InvalidURL as exc:
        raise SourceError(f"ingest.http.url is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise SourceError(
            f"ingest.http.url must be an http:// or https:// URL with a host, "
            f"got '{redact_http_url(raw)}'"
        )
    return url


def redact_http_url(raw: str) -> str:
    """The URL without user:password@, fragment, or values of secret-looking query keys."""
    try:
        url = httpx.URL(raw)
    except httpx.InvalidURL:
        return REDACTED
    params = [
        (key, REDACTED if SECRET_KEYS.search(key) else value)
        for key, value in url.params.multi_items()
    ]
    return str(url.copy_with(userinfo=b"", fragment=None, params=params or None))


# --- sql ------------------------------------------------------------------------------


def query_sql(config: SqlSourceConfig) -> pd.DataFrame:
    """Run the configured query through SQLAlchemy; the engine is always disposed."""
    assert config.url is not None and config.query is not None  # IngestConfig checks this
    url = _parse_sql_url(config.url)
    shown = redact_sql_url(config.url)
    try:
        engine = sqlalchemy.create_engine(url)
    except sqlalchemy.exc.NoSuchModuleError:
        raise SourceError(f"{shown}: unknown database dialect '{url.drivername}'") from None
    except ImportError as exc:
        raise SourceError(
            f"{shown}: the database driver for '{url.drivername}' is not installed ({exc})"
        ) from None
    except (sqlalchemy.exc.ArgumentError, TypeError) as exc:
        raise SourceError(f"{shown}: unusable database URL: {_first_line(exc)}") from None
    try:
        try:
            connection = engine.connect()
        except sqlalchemy.exc.SQLAlchemyError as exc:
            error = TransientSourceError if _sql_transient(exc) else SourceError
            raise error(f"{shown}: cannot connect: {_sql_reason(exc)}") from None
        with connection:
            try:
                frame = pd.read_sql_query(config.query, connection)
            except (sqlalchemy.exc.SQLAlchemyError, pd.errors.DatabaseError) as exc:
                error = TransientSourceError if _sql_transient(exc) else SourceError
                raise error(
                    f"{shown}: query failed: {_sql_reason(exc)} (ingest.sql.query: "
                    f"{_shorten(config.query)})"
                ) from None
    finally:
        engine.dispose()
    if frame.empty:
        raise SourceError(f"{shown}: the query returned no rows ({_shorten(config.query)})")
    return frame


def _parse_sql_url(raw: str) -> sqlalchemy.URL:
    try:
        url = sqlalchemy.make_url(raw)
    except sqlalchemy.exc.ArgumentError:
        # The raw string may hold a password: do not repeat it.
        raise SourceError(
            "ingest.sql.url is not a SQLAlchemy URL (expected e.g. sqlite:///data/source.db "
            "or postgresql://user@host/db)"
        ) from None
    database = url.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file:")
    if url.get_backend_name() == "sqlite" and not in_memory and not Path(database).is_file():
        # SQLite would silently create an empty database here.
        raise SourceError(f"{redact_sql_url(raw)}: no SQLite database file at {database}")
    return url


def redact_sql_url(raw: str) -> str:
    """The SQLAlchemy URL with its password shown as *** and secret-looking query values
    redacted."""
    try:
        url = sqlalchemy.make_url(raw)
    except sqlalchemy.exc.ArgumentError:
        return REDACTED
    query = {
        key: (REDACTED if SECRET_KEYS.search(key) else value) for key, value in url.query.items()
    }
    return url.set(query=query).render_as_string(hide_password=True)


def _sql_transient(exc: Exception) -> bool:
    """A database that is busy, locked or unreachable (worth a retry: the stage retries
    `TransientSourceError`), as opposed to a wrong query, table, password or URL."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True  # the dialect recognised a dropped connection
    if not isinstance(exc, sqlalchemy.exc.OperationalError):
        return False
    reason = _sql_reason(exc)
    return bool(SQL_BUSY.search(reason)) and not SQL_PERMANENT.search(reason)


def _sql_reason(exc: Exception) -> str:
    original = getattr(exc, "orig", None)
    return _first_line(original if original is not None else exc)


# --- helpers --------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _shorten(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
