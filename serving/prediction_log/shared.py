"""The prediction log in the shared store: one object per flush, by hour and replica.

S3 has no append, so each batch the writer flushes becomes its own object:
`<shared>/predictions/date=YYYY-MM-DD/hour=HH/replica=<id>/part-<pid>-<start>-<seq>.jsonl`.
Objects are never changed after they are written, which is what makes `sync_shared_log`
simple: it copies the objects the local folder lacks into `serving.prediction_log.directory`
(the monitor stage's DVC dependency, which a remote prefix cannot be), with the same
`date=/hour=/replica=` layout the reader reads. `lifecycle watch` syncs before each run.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path

from core.config import ServingConfig
from serving.model_store import ModelStoreError
from serving.shared_store import (
    SharedStore,
    SharedStoreError,
    download_object,
    list_objects,
    open_shared_store,
    write_object,
)

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions"
_REPLICA = re.compile(r"[A-Za-z0-9._-]{1,64}")
_OBJECT = re.compile(r"date=[0-9-]{10}/hour=[0-9]{2}/replica=[A-Za-z0-9._-]+/part-[^/]+\.jsonl")


def replica_id(env_name: str, port: int, environ: Mapping[str, str] | None = None) -> str:
    """This replica's name in the log: `$<env_name>`, else `<hostname>-<port>`."""
    environ = os.environ if environ is None else environ
    value = environ.get(env_name, "").strip()
    if not value:
        value = f"{socket.gethostname().split('.')[0]}-{port}"
        value = re.sub(r"[^A-Za-z0-9._-]", "-", value)[:64]
    elif not _REPLICA.fullmatch(value):
        raise ModelStoreError(
            f"{env_name}={value[:80]!r}: a replica id is 1-64 letters, digits, '.', '_' or '-'"
        )
    return value


class SharedLogSink:
    """`PredictionLogger`'s sink for the shared store: every write is a new object."""

    def __init__(self, shared: SharedStore, replica: str) -> None:
        self.shared = shared
        self.replica = replica
        self._sequence = itertools.count(1)

    def part(self, moment: dt.datetime, started: str) -> str:
        return (
            f"{PREDICTIONS}/date={moment:%Y-%m-%d}/hour={moment:%H}/replica={self.replica}/"
            f"part-{os.getpid()}-{started}"
        )

    def write(self, part: str, payload: bytes) -> None:
        key = f"{part}-{next(self._sequence):06d}.jsonl"  # a retry is a new object, not a rewrite
        try:
            write_object(self.shared, key, payload)
        except SharedStoreError as exc:  # the logger keeps the rows and retries
            raise OSError(str(exc)) from None

    def __str__(self) -> str:
        return f"{self.shared.url}/{PREDICTIONS}"


def sync_shared_log(shared: SharedStore, directory: Path) -> int:
    """Copy every shared log object the local folder lacks; how many were copied."""
    copied = 0
    for key in list_objects(shared, PREDICTIONS):
        if not _OBJECT.fullmatch(key):
            continue  # temporary keys of writes in progress, and anything else
        local = Path(directory) / key
        if local.exists():
            continue
        download_object(shared, f"{PREDICTIONS}/{key}", local)
        copied += 1
    if copied:
        logger.info("prediction log: %d new object(s) from the shared store", copied)
    return copied


def shared_log_sink(
    config: ServingConfig, shared_url: str | None, environ: Mapping[str, str] | None = None
) -> SharedLogSink | None:
    """The sink `serving.prediction_log.to_shared_store` asks for; None: local files."""
    if not config.prediction_log.to_shared_store:
        return None
    if shared_url is None:
        logger.warning(
            "serving.prediction_log.to_shared_store is true but $%s is not set: the log goes to %s",
            config.shared_store_env,
            config.prediction_log.directory,
        )
        return None
    replica = replica_id(config.replica_id_env, config.port, environ)
    return SharedLogSink(open_shared_store(shared_url), replica)
