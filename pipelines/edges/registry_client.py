"""The registry's MLflow calls: a client for the configured store, errors that name the
tracking URI, and lookups of versions and aliases (used by `pipelines.edges.registry`).

Calls run inside `registry_call`, which bounds MLflow's HTTP retries
(`mlflow_connection.bounded_http_retries`) and turns its errors into `RegistryError`s.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.edges.alias_history import short_sha256
from pipelines.edges.mlflow_connection import (
    bounded_http_retries,
    redact_uri,
    redacted_tracking_uri,
    tracking_uri,
    unavailable_reason,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

logger = logging.getLogger(__name__)

SHA256_TAG = "model_sha256"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class RegistryError(RuntimeError):
    """A registry operation that cannot be done; the message is meant for the user."""


class RegistryUnavailableError(RegistryError):
    """The tracking server could not be reached, timed out or failed: worth retrying later."""


def open_client(*, create: bool = True) -> MlflowClient:
    """A client for the configured store; with `create=False` a missing SQLite file is an error."""
    from mlflow import MlflowClient

    uri = tracking_uri()
    if not create and not store_exists(uri):
        raise RegistryError(
            f"no MLflow store at {redact_uri(uri)}: register a model first (run the pipeline), "
            "run from the project root, or set MLFLOW_TRACKING_URI"
        )
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def store_exists(uri: str) -> bool:
    """False only for a SQLite store whose file does not exist (MLflow would create it)."""
    if not uri.startswith("sqlite:"):
        return True
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    return not database or database == ":memory:" or Path(database).exists()


@contextlib.contextmanager
def registry_call(what: str) -> Iterator[None]:
    """Bound MLflow's HTTP retries, and turn its errors into `RegistryError`s naming the URI."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import OperationalError

    uri = redacted_tracking_uri()
    try:
        with bounded_http_retries():
            yield
    except MlflowException as exc:
        reason = unavailable_reason(exc)
        if reason is not None:
            raise RegistryUnavailableError(
                f"{what}: the MLflow tracking server at {uri} is unavailable ({reason})"
            ) from exc
        raise RegistryError(f"{what} failed (tracking URI {uri}): {exc.message}") from exc
    except OperationalError as exc:  # a SQLite store that is locked or cannot be opened
        raise RegistryUnavailableError(
            f"{what}: the MLflow store at {uri} failed: {exc.orig or exc}"
        ) from exc


def check_sha256(sha256: str) -> None:
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise RegistryError(f"not a sha256 hex digest (64 lowercase hex characters): {sha256!r}")


def lookup_version(client: MlflowClient, name: str, sha256: str) -> ModelVersion | None:
    # filter on the hash only (hex, safe to quote) and match the name here: MLflow's filter
    # grammar has no escape that works for every registered-model name
    found = [
        version
        for version in client.search_model_versions(f"tags.{SHA256_TAG} = '{sha256}'")
        if version.name == name
    ]
    found.sort(key=lambda version: int(version.version))
    if len(found) > 1:
        logger.warning(
            "%s has %d versions with sha256 %s (%s); using the oldest",
            name,
            len(found),
            short_sha256(sha256),
            ", ".join(str(version.version) for version in found),
        )
    return found[0] if found else None


def ensure_registered_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
        logger.info("created registered model %s", name)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise


def read_aliases(client: MlflowClient, name: str, *, required: bool = True) -> dict[str, int]:
    """The model's aliases (versions as int: SQLite stores give ints, REST gives strings).

    An unknown model name is a `RegistryError` listing known names, or no aliases when
    not `required`.
    """
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        if not required:
            return {}
        known = sorted(found.name for found in client.search_registered_models(max_results=20))
        raise RegistryError(
            f"no registered model named {name!r} at {redacted_tracking_uri()}"
            f" (known: {', '.join(known) or 'none'})"
        ) from None
    return {alias: int(version) for alias, version in (model.aliases or {}).items()}


def get_ready_version(client: MlflowClient, name: str, version: int | str) -> ModelVersion:
    from mlflow.exceptions import MlflowException

    if not str(version).isdigit():
        raise RegistryError(f"a model version is a positive integer, not {version!r}")
    try:
        found = client.get_model_version(name, str(int(version)))
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise RegistryError(f"{name!r} has no version {version}") from None
    if found.status != "READY":
        raise RegistryError(f"{name!r} version {version} is {found.status}, not READY")
    return found


def version_sha256(version: ModelVersion | None) -> str | None:
    return (version.tags or {}).get(SHA256_TAG) if version is not None else None
