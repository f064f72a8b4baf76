"""The prediction log in a shared store (a local folder): objects per flush, sync, reading."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core.config import ServingConfig
from serving.model_store import ModelStoreError
from serving.prediction_log import PredictionLogger, read_prediction_log
from serving.prediction_log.shared import (
    SharedLogSink,
    replica_id,
    shared_log_sink,
    sync_shared_log,
)
from serving.shared_store import open_shared_store

ROWS = [{"request_id": "r1", "model_version": "v1", "probability": 0.2, "predicted": False}]


def _objects(root: Path) -> list[Path]:
    return sorted((root / "predictions").rglob("*.jsonl"))


def _logger(shared_root: Path, replica: str, tmp_path: Path) -> PredictionLogger:
    sink = SharedLogSink(open_shared_store(str(shared_root)), replica)
    return PredictionLogger(tmp_path / f"unused-{replica}", 1000, 0.05, sink=sink)


def test_each_flush_is_one_object_under_its_hour_and_replica(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    with _logger(shared, "replica-a", tmp_path) as log:
        log.log(ROWS)
        deadline = time.monotonic() + 5
        while log.logged < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        log.log(ROWS * 2)
    objects = _objects(shared)

    assert len(objects) == 2 and log.logged == 3 and log.dropped == 0
    relative = objects[0].relative_to(shared / "predictions").parts
    assert relative[0].startswith("date=") and relative[1].startswith("hour=")
    assert relative[2] == "replica=replica-a" and relative[3].endswith("-000001.jsonl")
    assert not (tmp_path / "unused-replica-a").exists()  # nothing written locally


def test_an_unreachable_store_keeps_the_rows_and_writes_them_when_it_returns(
    tmp_path: Path,
) -> None:
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.write_text("down")  # the store is unreachable: every path below it fails
    log = _logger(link, "r", tmp_path)
    log.start()
    log.log(ROWS)
    deadline = time.monotonic() + 5
    while log.write_errors < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert log.pending == 1 and log.logged == 0
    link.unlink()
    link.symlink_to(real, target_is_directory=True)
    log.close(5)

    assert log.logged == 1 and log.dropped == 0
    assert len(_objects(real)) == 1


def test_sync_copies_every_replicas_objects_once_and_the_reader_reads_them(
    tmp_path: Path,
) -> None:
    shared, local = tmp_path / "shared", tmp_path / "data" / "predictions"
    for replica, request in (("a", "ra"), ("b", "rb")):
        with _logger(shared, replica, tmp_path) as log:
            log.log([{**ROWS[0], "request_id": request}])
    (shared / "predictions" / ".part.tmp").write_text("a write in progress")

    store = open_shared_store(str(shared))
    assert sync_shared_log(store, local) == 2
    assert sync_shared_log(store, local) == 0
    frame = read_prediction_log(local)
    assert sorted(frame["request_id"]) == ["ra", "rb"]


def test_the_replica_id_comes_from_the_environment_or_the_host() -> None:
    assert replica_id("RID", 3000, {"RID": "eu-1"}) == "eu-1"
    assert replica_id("RID", 3001, {}).endswith("-3001")
    with pytest.raises(ModelStoreError, match="RID='a b/c': a replica id is"):
        replica_id("RID", 3000, {"RID": "a b/c"})


def test_the_shared_log_needs_the_switch_and_a_store(tmp_path: Path) -> None:
    on = ServingConfig(prediction_log={"to_shared_store": True})
    assert shared_log_sink(ServingConfig(), str(tmp_path)) is None
    assert shared_log_sink(on, None) is None
    sink = shared_log_sink(on, str(tmp_path), {"LIFECYCLE_REPLICA_ID": "x"})
    assert isinstance(sink, SharedLogSink) and sink.replica == "x"
