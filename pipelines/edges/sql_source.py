"""The SQL source: run the configured query through SQLAlchemy.

A database that is locked, busy or unreachable raises `TransientSourceError` (the ingest
stage retries it); a wrong query, table, password or URL raises `SourceError`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import sqlalchemy
import sqlalchemy.exc

from core.config import SqlSourceConfig
from pipelines.edges.source_messages import (
    SourceError,
    TransientSourceError,
    first_line,
    redact_sql_url,
    shorten,
    source_url,
)

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


def query_sql(config: SqlSourceConfig) -> pd.DataFrame:
    """Run the configured query through SQLAlchemy; the engine is always disposed."""
    assert config.query is not None  # IngestConfig checks this
    raw = source_url(config.url, config.url_env, "ingest.sql")
    url = _parse_sql_url(raw)
    shown = redact_sql_url(raw)
    try:
        engine = sqlalchemy.create_engine(url)
    except sqlalchemy.exc.NoSuchModuleError:
        raise SourceError(f"{shown}: unknown database dialect '{url.drivername}'") from None
    except ImportError as exc:
        raise SourceError(
            f"{shown}: the database driver for '{url.drivername}' is not installed ({exc})"
        ) from None
    except (sqlalchemy.exc.ArgumentError, TypeError) as exc:
        raise SourceError(f"{shown}: unusable database URL: {first_line(exc)}") from None
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
                    f"{shorten(config.query)})"
                ) from None
    finally:
        engine.dispose()
    if frame.empty:
        raise SourceError(f"{shown}: the query returned no rows ({shorten(config.query)})")
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
    return first_line(original if original is not None else exc)
