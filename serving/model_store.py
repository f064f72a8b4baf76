"""The edge between our model files and BentoML's model store, plus the champion pointer.

The store is the project's own BentoML home (`serving.store`, `.bentoml` by default), never
`~/bentoml`. Every function here takes the store path explicitly and opens that store
itself, so nothing depends on which BentoML home the process happens to have. A stored
model is our model directory under tag `<registered model>:v<registry version>`, loaded
without pickle; `champion.json` in the store names the tag the service should serve.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from core.clock import utc_now
from core.hashing import file_sha256
from core.io import read_json, write_json
from core.model_files import META_FILE, MODEL_FILE, load_model
from core.paths import MONITOR_PROFILE_FILE, REFERENCE_FILE
from core.records.rollout import RolloutSlot, SlotModel
from serving.bentoml_patches import create_model, open_model_store, point_bentoml_home

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from serving.bentoml_patches import ModelStore

logger = logging.getLogger(__name__)

POINTER_FILE = "champion.json"
POINTER_KEYS = ("tag", "version", "run_id", "content_sha256", "threshold", "updated_at")
ROLLOUT_KEY = "rollout"  # optional: a rollout in progress (core.records.rollout.RolloutSlot)
_LABEL = re.compile(r"v[1-9][0-9]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ModelStoreError(RuntimeError):
    """A store, model or pointer that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class ServedModel:
    """A model loaded from the store exactly as the service serves it."""

    pipeline: Pipeline
    tag: str  # e.g. "milling-failure:v3"
    version: str  # the registry version as a label, e.g. "v3"
    threshold: float  # the operating threshold: predicted = probability >= threshold
    content_sha256: str
    run_id: str | None
    meta: dict[str, Any]


def use_store(path: Path | str) -> Path:
    """Point BentoML at the project's store in this process and in processes it starts.

    Sets `BENTOML_HOME`, which BentoML reads once, when it first resolves its home; when
    BentoML is already imported, also overrides its home, model store and bento store, so
    the switch holds even after something has opened the default store. Switches BentoML's
    usage tracking off unless the environment says otherwise. Returns the absolute path.
    """
    import sys

    home = Path(path).resolve()
    for part in ("models", "bentos", "envs", "tmp"):
        (home / part).mkdir(parents=True, exist_ok=True)
    os.environ["BENTOML_HOME"] = str(home)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    if "bentoml" in sys.modules:
        point_bentoml_home(home)
    return home


def model_tag(name: str, version: int) -> str:
    """The store tag of a registry version: `milling-failure:v3`."""
    from bentoml import Tag

    if int(version) < 1:
        raise ModelStoreError(f"a registry version is a positive integer, not {version!r}")
    try:
        return str(Tag(name, f"v{int(version)}"))
    except ValueError as exc:
        raise ModelStoreError(
            f"{name!r} cannot name a BentoML model: {exc}; use lowercase letters, digits, "
            "'-', '_' or '.' for deploy.registered_model (or the contract's name)"
        ) from None


def export_model(
    model_dir: Path,
    name: str,
    version: int,
    run_id: str,
    content_sha256: str,
    threshold: float,
    store: Path,
) -> str:
    """Copy a saved model into the store as `name:v<version>` and return the tag.

    The model directory (`model.skops` + `meta.json`, see `core.model_files`) is copied
    verbatim, with the registry version, MLflow run id, content hash and operating threshold
    as labels and metadata.
    Idempotent: a tag that already holds this content hash is returned as it is; a tag that
    holds a different model is an error (tags are never overwritten).
    """
    model_dir, store = Path(model_dir), Path(store)
    meta = _check_model_dir(model_dir, content_sha256)
    if not 0.0 <= float(threshold) <= 1.0:
        raise ModelStoreError(f"threshold must lie between 0 and 1, got {threshold}")
    tag = model_tag(name, version)
    models = _open_store(store)
    existing = _existing(models, tag, store)
    if existing is not None:
        return _same_or_fail(existing, tag, content_sha256, store)

    from bentoml.exceptions import BentoMLException

    labels = {
        "registry_version": str(int(version)),
        "run_id": str(run_id),
        "content_sha256": content_sha256,
        "threshold": repr(float(threshold)),
        "family": str(meta.get("family", "")),
    }
    metadata = {
        "registry_version": int(version),
        "run_id": str(run_id),
        "content_sha256": content_sha256,
        "threshold": float(threshold),
        "trusted_types": list(meta.get("trusted_types", [])),
        "features": list(meta.get("features", [])),
    }
    staging: Path | None = None
    try:
        with create_model(tag, labels, metadata, models) as created:
            staging = Path(created.path)
            for filename in (MODEL_FILE, META_FILE):
                shutil.copy2(model_dir / filename, staging / filename)
            for filename in (REFERENCE_FILE, MONITOR_PROFILE_FILE):  # what the monitor reads
                if (model_dir / filename).is_file():
                    shutil.copy2(model_dir / filename, staging / filename)
    except BentoMLException as exc:
        # another process exported the same tag between our check and our write
        existing = _existing(models, tag, store)
        if existing is None:
            raise ModelStoreError(f"exporting {tag} to {store} failed: {exc}") from exc
        return _same_or_fail(existing, tag, content_sha256, store)
    finally:
        _remove_staging(staging)
    logger.info("exported %s to %s (sha256 %s)", tag, store, content_sha256[:12])
    return tag


def load_served_model(tag: str, store: Path) -> ServedModel:
    """Load `tag` from the store the way the service serves it (trusted types enforced).

    Nothing is pickled: loading goes through `core.model_files.load_model`, which trusts only
    the exact types `meta.json` lists. The service and deploy's pre-promotion check both load
    models with this function.
    """
    store = Path(store)
    models = _open_store(store, create=False)
    stored = _existing(models, tag, store)
    if stored is None:
        raise ModelStoreError(f"{tag} is not in the model store {store / 'models'}")
    labels = dict(stored.info.labels)
    metadata = dict(stored.info.metadata)
    loaded = load_model(Path(stored.path))  # integrity hash and exact trusted types
    content = loaded.meta.get("content_sha256")
    if content != labels.get("content_sha256"):
        raise ModelStoreError(
            f"{tag}: meta.json content hash {str(content)[:12]} does not match the store "
            f"label {labels.get('content_sha256', '-')[:12]}; refusing to serve it"
        )
    try:
        threshold = float(metadata["threshold"])
    except (KeyError, TypeError, ValueError):
        raise ModelStoreError(f"{tag}: no operating threshold in its metadata") from None
    return ServedModel(
        pipeline=loaded.pipeline,
        tag=str(stored.tag),
        version=str(stored.tag.version),
        threshold=threshold,
        content_sha256=str(content),
        run_id=labels.get("run_id") or None,
        meta=loaded.meta,
    )


def reference_path(tag: str, store: Path) -> Path:
    """The stored model's reference data (its training split and out-of-fold scores)."""
    return _monitor_file(tag, store, REFERENCE_FILE, "their reference data")


def monitor_profile_path(tag: str, store: Path) -> Path:
    """The stored model's monitor profile (drift thresholds, calibration, importance)."""
    return _monitor_file(tag, store, MONITOR_PROFILE_FILE, "a monitor profile")


def _monitor_file(tag: str, store: Path, filename: str, what: str) -> Path:
    store = Path(store)
    stored = _existing(_open_store(store, create=False), tag, store)
    if stored is None:
        raise ModelStoreError(f"{tag} is not in the model store {store / 'models'}")
    path = Path(stored.path) / filename
    if not path.is_file():
        raise ModelStoreError(
            f"{tag} in {store / 'models'} has no {filename} (exported before models kept "
            f"{what}); run dvc repro --force train to train and deploy again"
        )
    return path


def slot_model(served: ServedModel) -> SlotModel:
    """A loaded model as a rollout block names it."""
    return SlotModel(
        tag=served.tag,
        version=served.version,
        run_id=served.run_id,
        content_sha256=served.content_sha256,
        threshold=served.threshold,
    )


def pointer_rollout(pointer: dict[str, Any] | None) -> RolloutSlot | None:
    """The rollout a checked pointer carries, or None."""
    block = (pointer or {}).get(ROLLOUT_KEY)
    return None if block is None else RolloutSlot.model_validate(block)


def champion_pointer(
    served: ServedModel | dict[str, Any], rollout: RolloutSlot | None = None
) -> dict[str, Any]:
    """The pointer naming `served` (and the rollout in progress, if any), stamped now.

    The local and shared pointers both have this shape. A pointer passed as `served` keeps
    its model and loses its rollout block unless `rollout` is given again.
    """
    if isinstance(served, ServedModel):
        pointer = {
            "tag": served.tag,
            "version": served.version,
            "run_id": served.run_id,
            "content_sha256": served.content_sha256,
            "threshold": served.threshold,
        }
    else:
        pointer = {key: served.get(key) for key in POINTER_KEYS if key != "updated_at"}
        if isinstance(pointer["version"], int):  # a registry version number: its label
            pointer["version"] = f"v{pointer['version']}"
    pointer["updated_at"] = utc_now().isoformat(timespec="seconds")  # +00:00, to the second
    if rollout is not None:
        pointer[ROLLOUT_KEY] = rollout.model_dump(mode="json")
    return pointer


def check_pointer(pointer: Any, where: Path | str) -> dict[str, Any]:
    """`pointer` when it has every key, a `name:vN` tag and a usable threshold; else an error."""
    _check_pointer(pointer, where)
    return pointer


def write_champion_pointer(
    store: Path, served: ServedModel | dict[str, Any], rollout: RolloutSlot | None = None
) -> dict[str, Any]:
    """Name the model the service should serve; atomic, so readers see old or new, not half.

    The service polls this pointer and swaps models when it changes. `rollout` names the
    other model of a rollout in progress (None: the champion alone).
    """
    pointer = champion_pointer(served, rollout)
    _check_pointer(pointer, Path(store) / POINTER_FILE)
    write_json(pointer, Path(store) / POINTER_FILE)
    logger.info("champion pointer in %s -> %s", store, pointer["tag"])
    return pointer


def stored_model_dir(tag: str, store: Path) -> Path:
    """The folder of `tag` in the store (its model.skops, meta.json and monitor files)."""
    store = Path(store)
    stored = _existing(_open_store(store, create=False), tag, store)
    if stored is None:
        raise ModelStoreError(f"{tag} is not in the model store {store / 'models'}")
    return Path(stored.path)


def has_model(tag: str, store: Path) -> bool:
    """True when the store holds exactly `tag` (no prefix match)."""
    models = Path(store) / "models"
    return models.is_dir() and _existing(open_model_store(models), tag, Path(store)) is not None


def read_champion_pointer(store: Path, *, lenient_rollout: bool = False) -> dict[str, Any] | None:
    """The champion pointer, or None before the first one is written.

    With `lenient_rollout`, only the champion's keys are checked: the rollout block comes
    back unchecked, for `split_rollout` (the service serves the champion whatever the block).
    """
    path = Path(store) / POINTER_FILE
    try:
        pointer = read_json(path)
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise ModelStoreError(f"{path}: not valid JSON ({exc})") from None
    _check_pointer(without_rollout(pointer) if lenient_rollout else pointer, path)
    return pointer


def without_rollout(pointer: Any) -> Any:
    """The pointer without its rollout block (anything but a dict is returned as is)."""
    if not isinstance(pointer, dict):
        return pointer
    return {key: value for key, value in pointer.items() if key != ROLLOUT_KEY}


def split_rollout(
    pointer: dict[str, Any], where: Path | str
) -> tuple[RolloutSlot | None, str | None]:
    """A pointer's rollout block, checked: (the slot, None), (None, None) without one, or
    (None, the one-line error) when the block is unusable."""
    if pointer.get(ROLLOUT_KEY) is None:
        return None, None
    try:
        _check_pointer(pointer, where)
    except ModelStoreError as exc:
        return None, str(exc)
    return pointer_rollout(pointer), None


# --- helpers ---------------------------------------------------------------------------


def _open_store(store: Path, *, create: bool = True) -> ModelStore:
    """BentoML's model store under `store`, opened explicitly (no global BentoML home)."""
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")  # before BentoML reads it
    models = Path(store) / "models"
    if create:
        models.mkdir(parents=True, exist_ok=True)
    elif not models.is_dir():
        raise ModelStoreError(
            f"no model store at {store} (serving.store): run `dvc repro` to deploy a model"
        )
    return open_model_store(models)


def _existing(models: ModelStore, tag: str, store: Path) -> Any | None:
    """The stored model with exactly this tag, or None.

    Not `ModelStore.get`: for a version it does not find, `get` falls back to a prefix
    match, so asking for `v1` can return `v12`.
    """
    from bentoml import Tag
    from bentoml.exceptions import BentoMLException

    wanted = Tag.from_taglike(tag)
    if wanted.version is None or wanted.version == "latest":
        raise ModelStoreError(f"{tag}: give an exact version, e.g. name:v3")
    try:
        found = models.list(wanted)
    except BentoMLException as exc:  # a folder without a readable model.yaml
        raise ModelStoreError(
            f"{tag} in {Path(store) / 'models'} is incomplete or damaged ({exc}); delete that "
            "folder and export it again"
        ) from None
    return found[0] if found else None


def _same_or_fail(existing: Any, tag: str, content_sha256: str, store: Path) -> str:
    held = existing.info.labels.get("content_sha256")
    if held != content_sha256:
        raise ModelStoreError(
            f"{tag} is already in {store} with content sha256 {str(held)[:12]}, not "
            f"{content_sha256[:12]}; a tag is never overwritten"
        )
    logger.info("%s is already in %s; not exporting it again", tag, store)
    return str(existing.tag)


def _check_model_dir(model_dir: Path, content_sha256: str) -> dict[str, Any]:
    """meta.json of a complete model directory whose hashes match what the caller says."""
    if not _SHA256.fullmatch(str(content_sha256)):
        raise ModelStoreError(f"not a sha256 hex digest: {content_sha256!r}")
    model_path, meta_path = model_dir / MODEL_FILE, model_dir / META_FILE
    if not model_path.is_file() or not meta_path.is_file():
        raise ModelStoreError(f"{model_dir}: expected {MODEL_FILE} and {META_FILE}")
    meta = read_json(meta_path)
    if meta.get("content_sha256") != content_sha256:
        raise ModelStoreError(
            f"{model_dir} holds the model with content sha256 "
            f"{str(meta.get('content_sha256'))[:12]}, not {content_sha256[:12]}"
        )
    if file_sha256(model_path) != meta.get("sha256"):
        raise ModelStoreError(f"{model_path}: file does not match the hash in {META_FILE}")
    return meta


def _check_pointer(pointer: Any, path: Path | str) -> None:
    if not isinstance(pointer, dict):
        raise ModelStoreError(f"{path}: expected a JSON object")
    missing = [key for key in POINTER_KEYS if key not in pointer]
    if missing:
        raise ModelStoreError(f"{path}: missing {', '.join(missing)}")
    tag = str(pointer["tag"])
    name, _, label = tag.partition(":")
    if not name or not _LABEL.fullmatch(label) or pointer["version"] != label:
        raise ModelStoreError(
            f"{path}: tag {tag!r} and version {pointer['version']!r} must look like "
            "'name:v3' and 'v3'"
        )
    if not _SHA256.fullmatch(str(pointer["content_sha256"])):
        raise ModelStoreError(f"{path}: content_sha256 is not a sha256 hex digest")
    try:
        threshold = float(pointer["threshold"])
    except (TypeError, ValueError):
        raise ModelStoreError(f"{path}: threshold must be a number") from None
    if not 0.0 <= threshold <= 1.0:
        raise ModelStoreError(f"{path}: threshold must lie between 0 and 1")
    if pointer.get(ROLLOUT_KEY) is not None:
        try:
            slot = RolloutSlot.model_validate(pointer[ROLLOUT_KEY])
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ModelStoreError(
                f"{path}: rollout.{where}: {first['msg']}; end the rollout with "
                "`lifecycle rollout abort` or deploy again"
            ) from None
        if slot.model.tag == tag:
            raise ModelStoreError(f"{path}: the rollout's model is the champion itself ({tag})")


def _remove_staging(staging: Path | None) -> None:
    """`bentoml.models.create` stages the model in a temp folder and never removes it."""
    if staging is None:
        return
    temp_root = Path(tempfile.gettempdir()).resolve()
    staging = staging.resolve()
    if staging.parent == temp_root and staging.name.startswith("bentoml-model-"):
        shutil.rmtree(staging, ignore_errors=True)
