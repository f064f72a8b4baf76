"""The MLflow Model Registry edge: register models by content hash, move aliases, roll back.

Registry stages are deprecated; aliases say what serves. `champion` is the serving version,
`previous` the one it replaced. A promotion moves `previous` to the old champion and
`champion` to the new version. A rollback swaps the two aliases, so a second rollback
rolls forward again to the version the first one left.

Every alias move is recorded three ways: tags on the versions involved (`champion_since`,
`promotion_evidence`; `previous_since`, `demotion_evidence`), one JSON line appended to a
history file the caller names, and a log line.

Talking to a tracking server: by default MLflow retries a failed HTTP request 7 times with
exponential backoff (minutes) and waits up to 120 s for each answer. Calls made here use
`HTTP_LIMITS` instead: 2 retries, backoff factor 1, a 10 s timeout, so a refused connection
fails in about 3 s. A variable already set in the environment wins. The limits are set only
for the duration of each call, which is why this module is not meant for use from several
threads at once. Unreachable servers, timeouts and 5xx answers raise
`RegistryUnavailableError`, naming the tracking URI (credentials removed).

Two writers at once are not safe: MLflow has no transactions over aliases and no unique
tags, so concurrent promotions can interleave and concurrent registrations of the same hash
can create two versions (`find_version` then returns the oldest and logs a warning).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

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
    from sklearn.pipeline import Pipeline

logger = logging.getLogger(__name__)

CHAMPION = "champion"
PREVIOUS = "previous"
SHA256_TAG = "model_sha256"
DEFAULT_HISTORY = Path("reports/deploy/alias_history.jsonl")
# MLflow 3.17 accepts 100,000 characters in a model-version tag, but servers that predate
# its `bda7b8c39065` migration store them as VARCHAR(5000). The full record is in the history.
TAG_VALUE_LIMIT = 5000

_SHA256 = re.compile(r"[0-9a-f]{64}")
_LOGGED_MODEL_URI = re.compile(r"models:/(m-[0-9a-f]+)/?")


class RegistryError(RuntimeError):
    """A registry operation that cannot be done; the message is meant for the user."""


class RegistryUnavailableError(RegistryError):
    """The tracking server could not be reached, timed out or failed: worth retrying later."""


@dataclass(frozen=True)
class ChampionInfo:
    """The model version an alias points to."""

    name: str
    alias: str
    version: int
    run_id: str | None
    sha256: str | None
    source: str
    tags: dict[str, str]  # every tag of the version (model_sha256, promotion_evidence, ...)


@dataclass(frozen=True)
class AliasMove:
    """One move of the `champion` alias: what it pointed to before and after, and why."""

    time: str  # UTC, ISO 8601
    action: Literal["promote", "rollback"]
    model: str
    from_version: int | None  # champion before the move
    to_version: int  # champion after the move
    from_sha256: str | None
    to_sha256: str | None
    previous_version: int | None  # `previous` after the move
    changed: bool
    evidence: dict[str, Any]

    def describe(self) -> str:
        """The move in one readable line."""
        if not self.changed:
            return f"{self.model}: v{self.to_version} is already the champion; nothing moved"
        before = (
            f"v{self.from_version} (sha256 {_short(self.from_sha256)})"
            if self.from_version is not None
            else "none"
        )
        after = f"v{self.to_version} (sha256 {_short(self.to_sha256)})"
        prior = f"v{self.previous_version}" if self.previous_version is not None else "none"
        again = "; roll back again to return to it" if self.action == "rollback" else ""
        return f"{self.action} {self.model}: champion {before} -> {after}; previous {prior}{again}"

    def record(self) -> dict[str, Any]:
        return asdict(self)


def find_version(name: str, sha256: str) -> ModelVersion | None:
    """The version of `name` registered with this content hash, or None."""
    _check_sha256(sha256)
    if not _store_exists(tracking_uri()):
        return None  # nothing is registered before the store exists; do not create it here
    with _registry_call(f"finding {name!r} sha256 {_short(sha256)}"):
        return _find_version(_client(), name, sha256)


def register(
    name: str,
    model_uri: str,
    run_id: str | None,
    sha256: str,
    tags: Mapping[str, Any] | None = None,
) -> tuple[ModelVersion, bool]:
    """Register a logged model under `name`, once per content hash.

    Returns the version and whether it was created: the same `sha256` again returns the
    existing version and creates nothing.
    """
    _check_sha256(sha256)
    with _registry_call(f"registering {model_uri} as {name!r}"):
        client = _client()
        _ensure_registered_model(client, name)
        existing = _find_version(client, name, sha256)
        if existing is not None:
            logger.info(
                "%s sha256 %s is already version %s; not registering it again",
                name,
                _short(sha256),
                existing.version,
            )
            return existing, False
        logged = _LOGGED_MODEL_URI.fullmatch(model_uri)
        version = client.create_model_version(
            name=name,
            source=model_uri,
            run_id=run_id,
            tags={**{key: str(value) for key, value in (tags or {}).items()}, SHA256_TAG: sha256},
            model_id=logged.group(1) if logged else None,
        )
    logger.info("registered %s as %s version %s", model_uri, name, version.version)
    return version, True


def champion(name: str) -> ChampionInfo | None:
    """The version aliased `champion`; None before the first promotion.

    Also None when `name` is not registered yet (or the store does not exist): the first
    deployment has no champion. Call `require_model` first to treat that as an error.
    """
    return _aliased(name, CHAMPION)


def previous(name: str) -> ChampionInfo | None:
    """The version aliased `previous`: where a rollback would go. None like `champion`."""
    return _aliased(name, PREVIOUS)


def require_model(name: str) -> None:
    """Raise a `RegistryError` naming the known models unless `name` is registered."""
    with _registry_call(f"looking up {name!r}"):
        _aliases(_client(create=False), name)


def promote(
    name: str, version: int | str, evidence: Mapping[str, Any], *, history: Path | str
) -> AliasMove:
    """Make `version` the champion; the old champion becomes `previous`.

    Promoting the current champion changes and records nothing (`AliasMove.changed` is False).
    """
    with _registry_call(f"promoting {name!r} version {version}"):
        client = _client(create=False)
        aliases = _aliases(client, name)
        target = _model_version(client, name, version)
        current = aliases.get(CHAMPION)
        old = _model_version(client, name, current) if current is not None else None
        changed = current != int(target.version)
        move = AliasMove(
            time=_now(),
            action="promote",
            model=name,
            from_version=current,
            to_version=int(target.version),
            from_sha256=_version_sha256(old),
            to_sha256=_version_sha256(target),
            previous_version=current if changed and current is not None else aliases.get(PREVIOUS),
            changed=changed,
            evidence=dict(evidence),
        )
        if not changed:
            logger.info("%s", move.describe())
            return move
        # `previous` first: if the second call fails, the old champion still serves and
        # running the promotion again completes it
        if current is not None:
            client.set_registered_model_alias(name, PREVIOUS, str(current))
        client.set_registered_model_alias(name, CHAMPION, str(target.version))
        _record(client, move, Path(history))
    return move


def rollback(name: str, evidence: Mapping[str, Any], *, history: Path | str) -> AliasMove:
    """Swap `champion` and `previous`: the previous version serves again.

    The old champion becomes `previous`, so a second rollback rolls forward again.
    Raises `RegistryError` when there is no `previous` version.
    """
    with _registry_call(f"rolling back {name!r}"):
        client = _client(create=False)
        aliases = _aliases(client, name)
        current, prior = aliases.get(CHAMPION), aliases.get(PREVIOUS)
        if prior is None:
            held = f"champion is v{current}" if current is not None else "there is no champion"
            raise RegistryError(
                f"{name!r} has no {PREVIOUS!r} version to roll back to ({held}); nothing changed"
            )
        if current is None:
            raise RegistryError(f"{name!r} has no champion to roll back from; nothing changed")
        if prior == current:
            raise RegistryError(
                f"{name!r}: {CHAMPION!r} and {PREVIOUS!r} are both v{current}; nothing changed"
            )
        old, target = _model_version(client, name, current), _model_version(client, name, prior)
        move = AliasMove(
            time=_now(),
            action="rollback",
            model=name,
            from_version=current,
            to_version=prior,
            from_sha256=_version_sha256(old),
            to_sha256=_version_sha256(target),
            previous_version=current,
            changed=True,
            evidence=dict(evidence),
        )
        # `champion` first: if the second call fails, the rollback target already serves
        client.set_registered_model_alias(name, CHAMPION, str(prior))
        client.set_registered_model_alias(name, PREVIOUS, str(current))
        _record(client, move, Path(history))
    return move


def load_champion_model(name: str, trusted_types: Iterable[str] | None = None) -> Pipeline:
    """Load the champion's scikit-learn pipeline.

    MLflow 3.17 loads a skops model trusting the types listed in the model's own MLmodel
    file, so whoever wrote the model chooses what it may load. Here the model file's
    non-default types must also be in `trusted_types` (default: every list in
    `models.training.SKOPS_TRUSTED_TYPES`), or loading is refused. The alias is resolved once,
    so a promotion during the download cannot mix two versions.
    """
    import mlflow
    import skops.io as sio
    from mlflow.models import Model

    if trusted_types is None:
        from models.training import SKOPS_TRUSTED_TYPES

        trusted_types = chain.from_iterable(SKOPS_TRUSTED_TYPES.values())
    allowed = set(trusted_types)
    info = champion(name)
    if info is None:
        raise RegistryError(f"{name!r} has no champion to load")
    uri = tracking_uri()
    with (
        _registry_call(f"loading {name!r} version {info.version}"),
        tempfile.TemporaryDirectory(prefix="champion-") as tmp,
    ):
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{info.version}",
                dst_path=tmp,
                tracking_uri=uri,
                registry_uri=uri,
            )
        )
        flavor = Model.load(str(local)).flavors.get("sklearn") or {}
        if flavor.get("serialization_format") != "skops":
            raise RegistryError(
                f"{name!r} v{info.version} is not a skops-serialised scikit-learn model; "
                "refusing to load it"
            )
        model_file = (local / flavor["pickled_model"]).resolve()
        if not model_file.is_relative_to(local.resolve()):
            raise RegistryError(f"{name!r} v{info.version}: model file outside the model folder")
        unexpected = sorted(set(sio.get_untrusted_types(file=model_file)) - allowed)
        if unexpected:
            raise RegistryError(
                f"{name!r} v{info.version} holds types that are not trusted: {unexpected}"
            )
        model = mlflow.sklearn.load_model(str(local))
    logger.info("loaded %s champion v%s (sha256 %s)", name, info.version, _short(info.sha256))
    return model


# --- helpers ---------------------------------------------------------------------------


def _client(*, create: bool = True) -> MlflowClient:
    """A client for the configured store; with `create=False` a missing SQLite file is an error."""
    from mlflow import MlflowClient

    uri = tracking_uri()
    if not create and not _store_exists(uri):
        raise RegistryError(
            f"no MLflow store at {redact_uri(uri)}: register a model first (run the pipeline), "
            "run from the project root, or set MLFLOW_TRACKING_URI"
        )
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _store_exists(uri: str) -> bool:
    """False only for a SQLite store whose file does not exist (MLflow would create it)."""
    if not uri.startswith("sqlite:"):
        return True
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    return not database or database == ":memory:" or Path(database).exists()


@contextlib.contextmanager
def _registry_call(what: str) -> Iterator[None]:
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


def _check_sha256(sha256: str) -> None:
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise RegistryError(f"not a sha256 hex digest (64 lowercase hex characters): {sha256!r}")


def _find_version(client: MlflowClient, name: str, sha256: str) -> ModelVersion | None:
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
            _short(sha256),
            ", ".join(str(version.version) for version in found),
        )
    return found[0] if found else None


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
        logger.info("created registered model %s", name)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise


def _aliases(client: MlflowClient, name: str, *, required: bool = True) -> dict[str, int]:
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


def _model_version(client: MlflowClient, name: str, version: int | str) -> ModelVersion:
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


def _aliased(name: str, alias: str) -> ChampionInfo | None:
    if not _store_exists(tracking_uri()):
        return None  # and do not create the store by asking
    with _registry_call(f"reading alias {alias!r} of {name!r}"):
        client = _client()
        version = _aliases(client, name, required=False).get(alias)
        if version is None:
            return None
        found = _model_version(client, name, version)
    return ChampionInfo(
        name=name,
        alias=alias,
        version=int(found.version),
        run_id=found.run_id or None,
        sha256=_version_sha256(found),
        source=found.source,
        tags=dict(found.tags or {}),
    )


def _version_sha256(version: ModelVersion | None) -> str | None:
    return (version.tags or {}).get(SHA256_TAG) if version is not None else None


def _record(client: MlflowClient, move: AliasMove, history: Path) -> None:
    """Record a move: history line first (the full record), then log, then version tags."""
    record = move.record()
    line = json.dumps(record, sort_keys=True, default=_jsonable, ensure_ascii=False) + "\n"
    try:
        _append_line(history, line)
    except OSError as exc:
        logger.error("alias moved but %s was not written (%s); the record: %s", history, exc, line)
        raise RegistryError(f"alias moved, but the history file {history} failed: {exc}") from exc
    logger.info("%s", move.describe())
    logger.info("evidence recorded in %s and on the version tags", history)
    logger.debug("evidence for %s of %s: %s", move.action, move.model, line.strip())
    evidence = _tag_json(record)
    client.set_model_version_tag(move.model, str(move.to_version), "champion_since", move.time)
    client.set_model_version_tag(move.model, str(move.to_version), "promotion_evidence", evidence)
    if move.from_version is not None:
        version = str(move.from_version)
        client.set_model_version_tag(move.model, version, "previous_since", move.time)
        client.set_model_version_tag(move.model, version, "demotion_evidence", evidence)


def _append_line(path: Path, line: str) -> None:
    """Append a full line in one write, then fsync: concurrent appenders never interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = line.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        written = os.write(fd, data)
        if written != len(data):  # never seen on a local file system; do not leave half a line
            raise OSError(f"short write to {path}: {written} of {len(data)} bytes")
        os.fsync(fd)
    finally:
        os.close(fd)


def _tag_json(record: dict[str, Any]) -> str:
    """The record as JSON within TAG_VALUE_LIMIT; when too long, a valid JSON summary."""
    text = json.dumps(record, sort_keys=True, default=_jsonable, ensure_ascii=False)
    if len(text) <= TAG_VALUE_LIMIT:
        return text
    summary = {key: value for key, value in record.items() if key != "evidence"}
    summary["evidence_truncated"] = "full evidence in the alias history file"
    evidence = json.dumps(record.get("evidence"), sort_keys=True, default=_jsonable)
    keep = TAG_VALUE_LIMIT
    while True:  # the preview is escaped again inside the summary: shrink until it fits
        summary["evidence_preview"] = evidence[:keep]
        text = json.dumps(summary, sort_keys=True, default=_jsonable, ensure_ascii=False)
        if len(text) <= TAG_VALUE_LIMIT:
            return text
        keep = max(0, keep - (len(text) - TAG_VALUE_LIMIT) - 8)


def _jsonable(value: Any) -> Any:
    """numpy values as numbers and lists; anything else JSON cannot hold as its string."""
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else str(value)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _short(sha256: str | None) -> str:
    return sha256[:12] if sha256 else "-"
