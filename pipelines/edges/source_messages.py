"""What a data source says when it fails: its errors, and messages without its secrets.

`SourceError` is a failure the user can fix; `TransientSourceError` one that may go away on
its own (the ingest stage retries it). URLs in messages, logs and metadata go through
`redact_http_url` / `redact_sql_url`: no passwords, no tokens.
"""

from __future__ import annotations

import os
import re

import httpx

# Query-string keys (in HTTP and SQL URLs) whose values are redacted in metadata and logs.
SECRET_KEYS = re.compile(r"pass|pwd|secret|token|key|sig|auth|cred|session|connect", re.I)
REDACTED = "REDACTED"


class SourceError(Exception):
    """A source that cannot be read; the message is meant for the user."""


class TransientSourceError(SourceError):
    """A failure that may go away on its own (network, timeout, 5xx, 429, a locked or
    unreachable database): worth a retry."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


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


def redact_sql_url(raw: str) -> str:
    """The SQLAlchemy URL with its password shown as *** and secret-looking query values
    redacted."""
    import sqlalchemy  # 0.2 s: only for an sql source
    import sqlalchemy.exc

    try:
        url = sqlalchemy.make_url(raw)
    except sqlalchemy.exc.ArgumentError:
        return REDACTED
    query = {
        key: (REDACTED if SECRET_KEYS.search(key) else value) for key, value in url.query.items()
    }
    return url.set(query=query).render_as_string(hide_password=True)


def first_line(exc: BaseException) -> str:
    """The error's first line (its class name when it has no message), for a one-line message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def shorten(text: str, limit: int = 120) -> str:
    """The text on one line, cut to `limit` characters (a long query in a message)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def source_url(url: str | None, url_env: str | None, key: str) -> str:
    """The source's URL: `url` from params.yaml, or the value of the variable `url_env` names.

    `key` is the config block (ingest.sql, ingest.http) the message names. The value is never
    put in the message: only the variable's name.
    """
    if url_env is None:
        assert url is not None  # IngestConfig's validator requires one of the two
        return url
    value = os.environ.get(url_env, "").strip()
    if not value:
        raise SourceError(
            f"{key}.url_env names the environment variable {url_env}, which is unset or empty: "
            f"export {url_env}=<the URL with its credentials>"
        )
    return value
