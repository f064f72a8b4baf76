"""The ingestion edges: fetch the raw table from the source named in `params.yaml`.

`fetch` returns a frame from a synthetic generator, a local CSV/Parquet file, a CSV/Parquet
URL (retried with exponential backoff on transient failures only) or a SQL query
(`pipelines.edges.sql_source`). Every failure a user can fix is a `SourceError` whose
message names the source and the problem (`pipelines.edges.source_messages`); a
`TransientSourceError` is retried by the ingest stage as a whole (`retry` in params.yaml).
`describe_source` gives where the data came from, with passwords and tokens removed.
"""

from __future__ import annotations

import email.utils
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from tenacity.wait import wait_base

from core.clock import as_utc, utc_now
from core.config import HttpSourceConfig, IngestConfig, RetryConfig
from core.io import TABLE_SUFFIXES
from pipelines.edges.source_messages import (
    SourceError,
    TransientSourceError,
    first_line,
    redact_http_url,
    redact_sql_url,
    source_url,
)

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
PROGRESS_EVERY_S = 5.0
CHUNK_BYTES = 1 << 16


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
        from pipelines.edges.sql_source import query_sql  # SQLAlchemy: only this source

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
            **_described_url(config.http.url, config.http.url_env, redact_http_url),
            "format": config.http.format,
        }
    return {
        "source": "sql",
        **_described_url(config.sql.url, config.sql.url_env, redact_sql_url),
        "query": config.sql.query,
    }


def _described_url(
    url: str | None, url_env: str | None, redact: Callable[[str], str]
) -> dict[str, str]:
    """The URL for the metadata, redacted; with url_env, the variable's name beside it."""
    if url_env is None:
        return {"url": redact(url or "")}
    return {"url_env": url_env, "url": redact(os.environ.get(url_env, "").strip())}


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
        raise SourceError(f"{origin}: cannot be parsed as {fmt}: {first_line(exc)}") from None
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
    raw = source_url(config.url, config.url_env, "ingest.http")
    where = f"the variable {config.url_env} (ingest.http.url_env)" if config.url_env else None
    url, shown = _check_http_url(raw, where or "ingest.http.url"), redact_http_url(raw)
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
        text = first_line(exc)
        kind = "incomplete body" if "message body" in text else "protocol error"
        raise TransientSourceError(f"{kind}: {text}") from None
    except httpx.TransportError as exc:  # connection refused or reset, DNS, ...
        raise TransientSourceError(f"{type(exc).__name__}: {first_line(exc)}") from None
    except httpx.DecodingError as exc:
        raise TransientSourceError(f"corrupt body: {first_line(exc)}") from None
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
    return max(0.0, (as_utc(when) - utc_now()).total_seconds())


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


def _check_http_url(raw: str, where: str) -> httpx.URL:
    """The parsed URL; `where` names its origin (the key, or the variable) in the error."""
    try:
        url = httpx.URL(raw)
    except httpx.InvalidURL as exc:
        raise SourceError(f"{where} is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise SourceError(
            f"{where} must be an http:// or https:// URL with a host, got '{redact_http_url(raw)}'"
        )
    return url
