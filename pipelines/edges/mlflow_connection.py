"""Where MLflow is and whether it answers: one rule for tracking, the registry and `watch`.

The tracking URI comes from `MLFLOW_TRACKING_URI` (default `sqlite:///mlflow.db` in the
project root). By default MLflow retries a failed HTTP request 7 times with exponential
backoff (minutes) and waits up to 120 s for each answer; `HTTP_LIMITS` (2 retries, backoff
factor 1, a 10 s timeout) makes a refused connection fail in about 3 s. A variable already
set in the environment wins.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def is_remote(uri: str) -> bool:
    return uri.startswith(("http:", "https:"))


def redact_uri(uri: str) -> str:
    """The URI without credentials, fit for messages and logs."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def redacted_tracking_uri() -> str:
    return redact_uri(tracking_uri())


def limit_http_retries() -> list[str]:
    """Set the `HTTP_LIMITS` variables that are not set yet; returns the names it set."""
    added = [name for name in HTTP_LIMITS if name not in os.environ]
    for name in added:
        os.environ[name] = HTTP_LIMITS[name]
    return added


@contextlib.contextmanager
def bounded_http_retries() -> Iterator[None]:
    """`HTTP_LIMITS` for the duration of the block (not meant for several threads at once)."""
    added = limit_http_retries()
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def unavailable_reason(exc: BaseException) -> str | None:
    """Why the tracking server could not be reached (refused, timed out, retries exhausted,
    5xx from a remote server), or None when `exc` is some other failure."""
    if "mlflow" not in sys.modules:  # then no MLflow call raised it
        return None
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        message = str(exc.message)
        if message.startswith("API request to") and "was successful" not in message:
            # refused, timed out, retries exhausted, non-JSON 5xx
            return http_failure_reason(message)
        if is_remote(tracking_uri()) and exc.get_http_status_code() >= 500:
            return f"HTTP {exc.get_http_status_code()}: {_shorten(message)}"
        return None
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return http_failure_reason(str(exc))  # artifact uploads may raise requests' own errors
    return None


def http_failure_reason(message: str) -> str:
    """The useful part of MLflow's long HTTP error message."""
    if "Connection refused" in message:
        return "connection refused"
    if match := re.search(r"too many (\d{3}) error responses", message):
        retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "?")
        return f"HTTP {match.group(1)} after {retries} retries"
    if match := re.search(r"failed with error code (\d{3})", message):
        return f"HTTP {match.group(1)}"
    if "timed out" in message.lower() or "timeout" in message.lower():
        return f"timed out after {os.environ.get('MLFLOW_HTTP_REQUEST_TIMEOUT', '?')} s"
    if "Name or service not known" in message or "nodename nor servname" in message:
        return "unknown host"
    return _shorten(message)


def _shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
