"""The MLflow Model Registry edge: register models by content hash, move aliases, roll back.

Registry stages are deprecated; aliases say what serves: `champion` is the serving version,
`previous` the one it replaced, and during a rollout (`deploy.rollout`) `candidate` the one
being judged on live traffic beside the champion. Every move is recorded
(`pipelines.edges.alias_history`) in the history file the caller names. Calls are bounded by
`mlflow_connection.bounded_http_retries` (a refused connection fails in about 3 s); an
unreachable server, a timeout or a 5xx answer raises `RegistryUnavailableError`, naming the
tracking URI (credentials removed). One writer at a time (see `register` and `promote`).
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from core.clock import now_text
from pipelines.edges import registry_client as calls
from pipelines.edges.alias_history import AliasMove, append_move, short_sha256, tag_move
from pipelines.edges.mlflow_connection import tracking_uri
from pipelines.edges.registry_client import SHA256_TAG, RegistryError
from pipelines.edges.registry_client import (  # the errors every call here raises
    RegistryUnavailableError as RegistryUnavailableError,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from sklearn.pipeline import Pipeline

logger = logging.getLogger(__name__)

CHAMPION = "champion"
PREVIOUS = "previous"
CANDIDATE = "candidate"
_LOGGED_MODEL_URI = re.compile(r"models:/(m-[0-9a-f]+)/?")


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


def find_version(name: str, sha256: str) -> ModelVersion | None:
    """The version of `name` registered with this content hash, or None."""
    calls.check_sha256(sha256)
    if not calls.store_exists(tracking_uri()):
        return None  # nothing is registered before the store exists; do not create it here
    with calls.registry_call(f"finding {name!r} sha256 {short_sha256(sha256)}"):
        return calls.lookup_version(calls.open_client(), name, sha256)


def register(
    name: str,
    model_uri: str,
    run_id: str | None,
    sha256: str,
    tags: Mapping[str, Any] | None = None,
) -> tuple[ModelVersion, bool]:
    """Register a logged model under `name`, once per content hash.

    Returns the version and whether it was created: the same `sha256` again returns the
    existing version and creates nothing. Not safe for two writers at once: MLflow has no
    unique tags, so concurrent registrations of the same hash can create two versions
    (`find_version` then returns the oldest, with a warning).
    """
    calls.check_sha256(sha256)
    with calls.registry_call(f"registering {model_uri} as {name!r}"):
        client = calls.open_client()
        calls.ensure_registered_model(client, name)
        existing = calls.lookup_version(client, name, sha256)
        if existing is not None:
            logger.info(
                "%s sha256 %s is already version %s; not registering it again",
                name,
                short_sha256(sha256),
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
    with calls.registry_call(f"looking up {name!r}"):
        calls.read_aliases(calls.open_client(create=False), name)


def tag_version(name: str, version: int, key: str, value: str) -> bool:
    """Set a tag on a registered version; False, and nothing set, when it is not registered."""
    from mlflow.exceptions import MlflowException

    with calls.registry_call(f"tagging {name!r} v{version}"):
        try:
            calls.open_client().set_model_version_tag(name, str(version), key, value)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return False
            raise
    return True


def promote(
    name: str, version: int | str, evidence: Mapping[str, Any], *, history: Path | str
) -> AliasMove:
    """Make `version` the champion; the old champion becomes `previous`.

    Promoting the current champion changes and records nothing (`AliasMove.changed` is False).
    Not safe for two writers at once: MLflow has no transactions over aliases, so concurrent
    promotions can interleave.
    """
    with calls.registry_call(f"promoting {name!r} version {version}"):
        client = calls.open_client(create=False)
        aliases = calls.read_aliases(client, name)
        target = calls.get_ready_version(client, name, version)
        current = aliases.get(CHAMPION)
        old = calls.get_ready_version(client, name, current) if current is not None else None
        changed = current != int(target.version)
        move = AliasMove(
            time=now_text(),
            action="promote",
            model=name,
            from_version=current,
            to_version=int(target.version),
            from_sha256=calls.version_sha256(old),
            to_sha256=calls.version_sha256(target),
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
    with calls.registry_call(f"rolling back {name!r}"):
        client = calls.open_client(create=False)
        aliases = calls.read_aliases(client, name)
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
        old, target = (
            calls.get_ready_version(client, name, current),
            calls.get_ready_version(client, name, prior),
        )
        move = AliasMove(
            time=now_text(),
            action="rollback",
            model=name,
            from_version=current,
            to_version=prior,
            from_sha256=calls.version_sha256(old),
            to_sha256=calls.version_sha256(target),
            previous_version=current,
            changed=True,
            evidence=dict(evidence),
        )
        # `champion` first: if the second call fails, the rollback target already serves
        client.set_registered_model_alias(name, CHAMPION, str(prior))
        client.set_registered_model_alias(name, PREVIOUS, str(current))
        _record(client, move, Path(history))
    return move


def candidate(name: str) -> ChampionInfo | None:
    """The version aliased `candidate`: a rollout in progress. None like `champion`."""
    return _aliased(name, CANDIDATE)


def set_candidate(
    name: str, version: int | str, evidence: Mapping[str, Any], *, history: Path | str
) -> AliasMove:
    """Alias `version` `candidate`: it starts a rollout; `champion` and `previous` stay.

    A rollout needs a champion to compare with, and the candidate must be another version.
    Setting the same candidate again changes and records nothing; another candidate is
    replaced (the evidence names it).
    """
    with calls.registry_call(f"setting {name!r} version {version} as candidate"):
        client = calls.open_client(create=False)
        aliases = calls.read_aliases(client, name)
        target = calls.get_ready_version(client, name, version)
        current, held = aliases.get(CHAMPION), aliases.get(CANDIDATE)
        if current is None:
            raise RegistryError(
                f"{name!r} has no champion to roll v{target.version} out beside; promote it "
                "instead (deploy.rollout.strategy: immediate); nothing changed"
            )
        if current == int(target.version):
            raise RegistryError(
                f"{name!r} v{current} is the champion; it cannot be its own candidate"
            )
        champion_version = calls.get_ready_version(client, name, current)
        changed = held != int(target.version)
        replaced = {"replaced_candidate": held} if changed and held is not None else {}
        move = _candidate_move(
            "candidate", name, aliases, champion_version, changed, {**evidence, **replaced}
        )
        move = replace(move, candidate_version=int(target.version))
        if not changed:
            logger.info("%s", move.describe())
            return move
        client.set_registered_model_alias(name, CANDIDATE, str(target.version))
        _record(client, move, Path(history))
    return move


def promote_candidate(
    name: str, version: int | str, evidence: Mapping[str, Any], *, history: Path | str
) -> AliasMove:
    """End a rollout well: champion <- the candidate `version`, previous <- the old champion,
    `candidate` removed.

    In that order: if a call fails, the old champion still serves (or the new one already
    does) and running it again completes the promotion. A promotion already complete changes
    and records nothing; a `version` that is neither the candidate nor the champion is an
    error.
    """
    version = int(version)
    with calls.registry_call(f"promoting {name!r} candidate v{version}"):
        client = calls.open_client(create=False)
        aliases = calls.read_aliases(client, name)
        current, held = aliases.get(CHAMPION), aliases.get(CANDIDATE)
        if held != version and current != version:
            raise RegistryError(
                f"{name!r} v{version} is not the candidate (candidate: "
                f"{_label(held)}, champion: {_label(current)}); nothing changed"
            )
        target = calls.get_ready_version(client, name, version)
        interrupted = current == version  # champion moved, candidate not yet removed
        old_version = aliases.get(PREVIOUS) if interrupted else current
        old = calls.get_ready_version(client, name, old_version) if old_version else None
        move = AliasMove(
            time=now_text(),
            action="promote",
            model=name,
            from_version=old_version,
            to_version=version,
            from_sha256=calls.version_sha256(old),
            to_sha256=calls.version_sha256(target),
            previous_version=old_version,
            changed=held == version,
            evidence=dict(evidence),
            candidate_version=version,
        )
        if not move.changed:
            logger.info("%s", move.describe())
            return move
        if not interrupted:
            if current is not None:
                client.set_registered_model_alias(name, PREVIOUS, str(current))
            client.set_registered_model_alias(name, CHAMPION, str(version))
        client.delete_registered_model_alias(name, CANDIDATE)
        _record(client, move, Path(history))
    return move


def abort_candidate(
    name: str, version: int | str, evidence: Mapping[str, Any], *, history: Path | str
) -> AliasMove:
    """End a rollout badly: remove the `candidate` alias from `version`; nothing else moves.

    When `version` is no longer the candidate (aborted already, or replaced), nothing
    changes and nothing is recorded.
    """
    version = int(version)
    with calls.registry_call(f"aborting {name!r} candidate v{version}"):
        client = calls.open_client(create=False)
        aliases = calls.read_aliases(client, name)
        current = aliases.get(CHAMPION)
        champion_version = calls.get_ready_version(client, name, current) if current else None
        changed = aliases.get(CANDIDATE) == version
        move = _candidate_move("abort", name, aliases, champion_version, changed, evidence)
        move = replace(move, candidate_version=version)
        if not changed:
            logger.info("%s", move.describe())
            return move
        client.delete_registered_model_alias(name, CANDIDATE)
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
        calls.registry_call(f"loading {name!r} version {info.version}"),
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
    logger.info("loaded %s champion v%s (sha256 %s)", name, info.version, short_sha256(info.sha256))
    return model


# --- helpers ---------------------------------------------------------------------------


def _aliased(name: str, alias: str) -> ChampionInfo | None:
    if not calls.store_exists(tracking_uri()):
        return None  # and do not create the store by asking
    with calls.registry_call(f"reading alias {alias!r} of {name!r}"):
        client = calls.open_client()
        version = calls.read_aliases(client, name, required=False).get(alias)
        if version is None:
            return None
        found = calls.get_ready_version(client, name, version)
    return ChampionInfo(
        name=name,
        alias=alias,
        version=int(found.version),
        run_id=found.run_id or None,
        sha256=calls.version_sha256(found),
        source=found.source,
        tags=dict(found.tags or {}),
    )


def _candidate_move(
    action: Literal["candidate", "abort"],
    name: str,
    aliases: dict[str, int],
    champion: ModelVersion | None,
    changed: bool,
    evidence: Mapping[str, Any],
) -> AliasMove:
    """A move of the `candidate` alias: the champion is the same before and after."""
    current = aliases.get(CHAMPION)
    sha256 = calls.version_sha256(champion)
    return AliasMove(
        time=now_text(),
        action=action,
        model=name,
        from_version=current,
        to_version=current if current is not None else 0,
        from_sha256=sha256,
        to_sha256=sha256,
        previous_version=aliases.get(PREVIOUS),
        changed=changed,
        evidence=dict(evidence),
    )


def _label(version: int | None) -> str:
    return f"v{version}" if version is not None else "none"


def _record(client: MlflowClient, move: AliasMove, history: Path) -> None:
    """Record a move: history line first (the full record), then log, then version tags."""
    try:
        append_move(move, history)
    except OSError as exc:
        raise RegistryError(f"alias moved, but the history file {history} failed: {exc}") from exc
    tag_move(client, move)
