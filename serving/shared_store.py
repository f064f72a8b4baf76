"""The shared serving store: published models and the team's champion pointer, over fsspec.

Replicas on other machines share nothing but this store (an `s3://bucket/serving` prefix, or
a folder / `file://` URL that every replica mounts). Its layout:

    <url>/champion.json                         the pointer (keys as the local champion.json)
    <url>/models/<name>/v<N>/model.skops, meta.json, reference + monitor profile files
    <url>/models/<name>/v<N>/published.json     written last: names every file and its sha256
    <url>/predictions/date=.../hour=.../replica=<id>/part-*.jsonl   (the prediction log)

Write order is what makes it safe without transactions: a model's files first, its
`published.json` after them, the pointer last (each of those two written to a temporary key
and moved into place, a single PUT on S3). A reader trusts a model only through its
`published.json` and checks every file's hash after downloading it, so it never serves a
half-published model. The URL comes from the environment variable named by
`serving.shared_store_env`; credentials from the environment too (for S3, `AWS_*`, and
`AWS_ENDPOINT_URL` for an S3-compatible server), never from params.yaml.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from core.clock import utc_now
from core.hashing import file_sha256
from core.model_files import META_FILE, MODEL_FILE
from core.paths import MONITOR_PROFILE_FILE, REFERENCE_FILE
from core.records.rollout import RolloutSlot
from serving.model_store import (
    POINTER_FILE,
    ModelStoreError,
    ServedModel,
    champion_pointer,
    check_pointer,
    export_model,
    has_model,
    stored_model_dir,
    without_rollout,
)

logger = logging.getLogger(__name__)

PUBLISHED_FILE = "published.json"
MODEL_FILES = (MODEL_FILE, META_FILE, REFERENCE_FILE, MONITOR_PROFILE_FILE)
_REQUIRED_FILES = (MODEL_FILE, META_FILE)
_USERINFO = re.compile(r"//[^/@]*@")
# An S3 endpoint that accepts connections but never answers (a stopped or overloaded server)
# made every call wait for botocore's defaults: a 60 s read timeout, 5 attempts, and s3fs's
# own 5 tries on timeouts (S3FileSystem.retries), 25 minutes per call. A replica's start and
# each poll waited that long, so it could not say "not ready"
# (tests/e2e/test_stack_lifecycle.py). These bound one call to s3fs's 5 tries of one 5 s
# read each, about half a minute; the poll tries again anyway.
S3_CLIENT_CONFIG: dict[str, Any] = {
    "connect_timeout": 5,
    "read_timeout": 5,
    "retries": {"max_attempts": 1, "mode": "standard"},  # s3fs retries already
}


class SharedStoreError(ModelStoreError):
    """A shared store that is misconfigured, unreachable or holds something unusable."""


class Published(BaseModel):
    """`published.json`: a model complete in the shared store, and how to check its files."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tag: str
    name: str
    version: int
    run_id: str | None
    content_sha256: str
    threshold: float
    files: dict[str, str]  # file name -> sha256
    published_at: str


# --- pure helpers: URLs and keys ---------------------------------------------------------


def shared_store_url(env_name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The shared store's URL from the variable `env_name`; None when unset or empty."""
    value = (os.environ if environ is None else environ).get(env_name, "").strip()
    return check_url(value, env_name) if value else None


def check_url(url: str, env_name: str = "the shared store URL") -> str:
    """`url` without a trailing slash, when fsspec knows its protocol; else a one-line error."""
    from fsspec.core import split_protocol
    from fsspec.registry import known_implementations

    url = url.strip()
    protocol, path = split_protocol(url)
    url = url.rstrip("/") if path.strip("/") else url
    if protocol is None:
        if not Path(url).is_absolute():
            raise SharedStoreError(
                f"{env_name}={display_url(url)!r} is a relative path: give an absolute folder, "
                "a file:// URL or an s3://bucket/prefix URL"
            )
        return url
    if protocol not in known_implementations:
        raise SharedStoreError(
            f"{env_name}={display_url(url)!r}: unknown protocol {protocol!r}; use s3://bucket/"
            "prefix, file:///absolute/folder or an absolute folder"
        )
    if not path.strip("/"):
        raise SharedStoreError(f"{env_name}={display_url(url)!r} names no bucket or folder")
    return url


def display_url(url: str) -> str:
    """`url` with any `user:password@` removed, for messages and logs."""
    return _USERINFO.sub("//", url)


def join(url: str, *parts: str) -> str:
    """`url/part/part`, with single slashes."""
    return "/".join([url.rstrip("/"), *(part.strip("/") for part in parts)])


def model_prefix(url: str, name: str, version: int) -> str:
    """Where a published model's files live: `<url>/models/<name>/v<N>`."""
    return join(url, "models", name, f"v{int(version)}")


def pointer_url(url: str) -> str:
    """The shared champion pointer: `<url>/champion.json`."""
    return join(url, POINTER_FILE)


def predictions_url(url: str) -> str:
    """The shared prediction log's root: `<url>/predictions`."""
    return join(url, "predictions")


def storage_options(url: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """fsspec options: for S3, bounded timeouts and `endpoint_url` from AWS_ENDPOINT_URL."""
    from fsspec.core import split_protocol

    environ = os.environ if environ is None else environ
    if split_protocol(url)[0] not in ("s3", "s3a"):
        return {}
    options: dict[str, Any] = {"config_kwargs": S3_CLIENT_CONFIG}
    if environ.get("AWS_ENDPOINT_URL"):
        options["endpoint_url"] = environ["AWS_ENDPOINT_URL"]
    return options


def split_tag(tag: str) -> tuple[str, int]:
    """`name:v3` -> ("name", 3)."""
    name, _, label = tag.partition(":")
    if not name or not re.fullmatch(r"v[1-9][0-9]*", label):
        raise SharedStoreError(f"{tag!r} is not a model tag like name:v3")
    return name, int(label[1:])


# --- IO ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SharedStore:
    """An opened shared store: its URL (for messages) and the fsspec file system under it."""

    url: str
    fs: Any  # fsspec.AbstractFileSystem
    root: str  # `url` as a path of `fs`

    def path(self, *parts: str) -> str:
        return join(self.root, *parts)


def open_shared_store(url: str) -> SharedStore:
    """Open the store at `url` (checked); no network call is made yet."""
    from fsspec.core import url_to_fs

    url = check_url(url)
    try:
        fs, root = url_to_fs(url, **storage_options(url))
    except ImportError as exc:
        raise SharedStoreError(
            f"{display_url(url)}: this protocol needs a package that is not installed ({exc}); "
            "install the pinned stack (s3:// needs s3fs, which comes with dvc-s3)"
        ) from None
    except Exception as exc:
        raise SharedStoreError(f"cannot open the shared store {display_url(url)}: {exc}") from None
    return SharedStore(url=url, fs=fs, root=str(root).rstrip("/"))


def read_shared_pointer(
    shared: SharedStore, *, lenient_rollout: bool = False
) -> dict[str, Any] | None:
    """The shared champion pointer, or None before the first one; an error when unreachable.

    With `lenient_rollout`, the rollout block is not checked (`model_store.split_rollout`).
    """
    where = pointer_url(display_url(shared.url))
    data = _read_bytes(shared, shared.path(POINTER_FILE))
    if data is None:
        return None
    try:
        pointer = json.loads(data)
    except ValueError as exc:
        raise SharedStoreError(f"{where}: not valid JSON ({exc})") from None
    try:
        check_pointer(without_rollout(pointer) if lenient_rollout else pointer, where)
        return pointer
    except ModelStoreError as exc:
        raise SharedStoreError(str(exc)) from None


def write_shared_pointer(
    shared: SharedStore,
    served: ServedModel | Published | dict[str, Any],
    rollout: RolloutSlot | None = None,
) -> dict[str, Any]:
    """Point every replica at a published model (and the rollout's, if any); written after
    the models, moved into place."""
    if isinstance(served, Published):
        served = served.model_dump()
    pointer = check_pointer(champion_pointer(served, rollout), pointer_url(display_url(shared.url)))
    tags = [pointer["tag"]] + ([rollout.model.tag] if rollout is not None else [])
    for tag in tags:
        name, version = split_tag(tag)
        if read_published(shared, name, version) is None:
            raise SharedStoreError(
                f"{tag} is not published in {display_url(shared.url)}; publish it "
                "before pointing replicas at it"
            )
    _write_atomically(shared, shared.path(POINTER_FILE), _json_bytes(pointer))
    logger.info("shared champion pointer in %s -> %s", display_url(shared.url), pointer["tag"])
    return pointer


def read_published(shared: SharedStore, name: str, version: int) -> Published | None:
    """The model's `published.json`, or None when it is not (completely) published."""
    key = join(model_prefix(shared.root, name, version), PUBLISHED_FILE)
    data = _read_bytes(shared, key)
    if data is None:
        return None
    try:
        return Published.model_validate_json(data)
    except ValidationError as exc:
        raise SharedStoreError(
            f"{display_url(shared.url)}: {name}:v{version}/{PUBLISHED_FILE} is not a "
            f"publication record ({exc.error_count()} error(s)); delete that model folder and "
            "publish it again"
        ) from None


def publish_model(shared: SharedStore, served: ServedModel, store: Path) -> Published:
    """Copy a stored model from the local store to the shared one; idempotent, never overwrites.

    Its files go first, `published.json` (their hashes) last, so a model is visible only
    once complete. A version already published with this content is returned as it is; one
    published with other content is an error.
    """
    name, version = split_tag(served.tag)
    existing = read_published(shared, name, version)
    if existing is not None:
        if existing.content_sha256 != served.content_sha256:
            raise SharedStoreError(
                f"{served.tag} is already published in {display_url(shared.url)} with content "
                f"sha256 {existing.content_sha256[:12]}, not {served.content_sha256[:12]}; a "
                "published version is never overwritten"
            )
        logger.info("%s is already published in %s", served.tag, display_url(shared.url))
        return existing
    source = stored_model_dir(served.tag, store)
    prefix = model_prefix(shared.root, name, version)
    files: dict[str, str] = {}
    for filename in MODEL_FILES:
        local = source / filename
        if local.is_file():
            _put_file(shared, local, join(prefix, filename))
            files[filename] = file_sha256(local)
    published = Published(
        tag=served.tag,
        name=name,
        version=version,
        run_id=served.run_id,
        content_sha256=served.content_sha256,
        threshold=served.threshold,
        files=files,
        published_at=utc_now().isoformat(timespec="seconds"),
    )
    _write_atomically(
        shared, join(prefix, PUBLISHED_FILE), published.model_dump_json(indent=2).encode()
    )
    logger.info("published %s to %s", served.tag, display_url(shared.url))
    return published


def fetch_model(shared: SharedStore, tag: str, store: Path) -> str:
    """Make `tag` present in the local store, downloading it from the shared store if needed.

    Every file's hash is checked against `published.json`, then the model goes in through
    `model_store.export_model` (which checks the model file against meta.json); loading it
    stays `load_served_model`'s job, with its trusted-types check.
    """
    if has_model(tag, store):
        return tag
    name, version = split_tag(tag)
    published = read_published(shared, name, version)
    if published is None:
        raise SharedStoreError(f"{tag} is not published in {display_url(shared.url)}")
    missing = [name for name in _REQUIRED_FILES if name not in published.files]
    if missing or not set(published.files) <= set(MODEL_FILES):
        raise SharedStoreError(
            f"{tag} in {display_url(shared.url)} lists files {sorted(published.files)}; "
            f"expected {MODEL_FILE} and {META_FILE} (and only the model's own files)"
        )
    scratch = Path(store) / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="shared-fetch-", dir=scratch))
    try:
        prefix = model_prefix(shared.root, name, version)
        for filename, sha256 in published.files.items():
            local = staging / filename
            _get_file(shared, join(prefix, filename), local)
            if file_sha256(local) != sha256:
                raise SharedStoreError(
                    f"{tag}/{filename} in {display_url(shared.url)} does not match its hash in "
                    f"{PUBLISHED_FILE}; refusing it"
                )
        export_model(
            staging,
            name,
            version,
            published.run_id or "",
            published.content_sha256,
            published.threshold,
            Path(store),
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("fetched %s from %s into %s", tag, display_url(shared.url), store)
    return tag


def write_object(shared: SharedStore, key: str, data: bytes) -> None:
    """Write one object under the store (moved into place whole); SharedStoreError if not."""
    _write_atomically(shared, shared.path(key), data)


def list_objects(shared: SharedStore, prefix: str) -> list[str]:
    """Every object under `prefix`, as keys relative to it (none when it does not exist)."""
    base = shared.path(prefix)
    try:
        shared.fs.info(shared.root)  # `find` answers [] for a store it cannot reach
    except FileNotFoundError:
        return []  # nothing published or logged yet
    except Exception as exc:
        raise _unreachable(shared, f"listing {base}", exc) from None
    try:
        found = shared.fs.find(base)
    except FileNotFoundError:
        return []
    except Exception as exc:
        raise _unreachable(shared, f"listing {base}", exc) from None
    return sorted(str(key)[len(base) :].lstrip("/") for key in found)


def download_object(shared: SharedStore, key: str, local: Path) -> None:
    """Copy one object to `local` (written beside it, then renamed)."""
    local.parent.mkdir(parents=True, exist_ok=True)
    partial = local.with_name(f".{local.name}.{uuid.uuid4().hex}.tmp")
    try:
        _get_file(shared, shared.path(key), partial)
        partial.replace(local)
    finally:
        partial.unlink(missing_ok=True)


# --- helpers -------------------------------------------------------------------------------


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def _unreachable(shared: SharedStore, action: str, exc: BaseException) -> SharedStoreError:
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return SharedStoreError(
        f"the shared store {display_url(shared.url)} is unreachable ({action}): {message}"
    )


def _read_bytes(shared: SharedStore, key: str) -> bytes | None:
    """The object's bytes, or None when there is none; unreachable store -> SharedStoreError."""
    try:
        return shared.fs.cat_file(key)
    except FileNotFoundError:
        return None
    except Exception as exc:  # botocore, aiohttp and OS errors: all mean "cannot reach it"
        raise _unreachable(shared, f"reading {key}", exc) from None


def _write_atomically(shared: SharedStore, key: str, data: bytes) -> None:
    """Write to a temporary key beside `key`, then move it there (rename; one copy on S3)."""
    parent = key.rsplit("/", 1)[0]
    temporary = join(parent, f".{key.rsplit('/', 1)[-1]}.{uuid.uuid4().hex}.tmp")
    try:
        shared.fs.makedirs(parent, exist_ok=True)
        shared.fs.pipe_file(temporary, data)
        shared.fs.mv(temporary, key)
    except Exception as exc:
        with contextlib.suppress(Exception):  # best effort: the write already failed
            shared.fs.rm_file(temporary)
        raise _unreachable(shared, f"writing {key}", exc) from None


def _put_file(shared: SharedStore, local: Path, key: str) -> None:
    try:
        shared.fs.makedirs(key.rsplit("/", 1)[0], exist_ok=True)
        shared.fs.put_file(str(local), key)
    except Exception as exc:
        raise _unreachable(shared, f"uploading {key}", exc) from None


def _get_file(shared: SharedStore, key: str, local: Path) -> None:
    try:
        shared.fs.get_file(key, str(local))
    except FileNotFoundError:
        raise SharedStoreError(
            f"{key} is listed in {PUBLISHED_FILE} but missing from {display_url(shared.url)}"
        ) from None
    except Exception as exc:
        raise _unreachable(shared, f"downloading {key}", exc) from None
