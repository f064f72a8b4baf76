"""`lifecycle watch` copies the replicas' shared prediction log in before each monitor run."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import Params
from features.contract import load_contract
from lifecycle.watch import Watch, WatchError
from serving.prediction_log import PredictionLogger, read_prediction_log
from serving.prediction_log.shared import SharedLogSink
from serving.shared_store import open_shared_store
from tests.serving.server import CONTRACT_PATH

ENV = "LIFECYCLE_SHARED_STORE"


def _watch(tmp_path: Path, to_shared_store: bool) -> Watch:
    params = Params.model_validate(
        {"serving": {"prediction_log": {"to_shared_store": to_shared_store}}}
    )
    return Watch(params=params, contract=load_contract(CONTRACT_PATH), root=tmp_path, history=[])


def test_the_watch_syncs_the_shared_log_into_the_monitors_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    sink = SharedLogSink(open_shared_store(str(shared)), "a")
    with PredictionLogger(tmp_path / "unused", 100, 0.05, sink=sink) as log:
        log.log([{"request_id": "r1", "model_version": "v1"}])
    monkeypatch.setenv(ENV, str(shared))

    _watch(tmp_path, to_shared_store=False)._sync_shared_log()
    assert not (tmp_path / "data" / "predictions").exists()  # the switch is off
    _watch(tmp_path, to_shared_store=True)._sync_shared_log()
    assert list(read_prediction_log(tmp_path / "data" / "predictions")["request_id"]) == ["r1"]


def test_an_unreachable_shared_log_fails_the_iteration_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "down"
    blocker.write_text("not a folder")
    monkeypatch.setenv(ENV, str(blocker / "shared"))
    with pytest.raises(WatchError, match=r"cannot sync the shared prediction log: .*unreachable"):
        _watch(tmp_path, to_shared_store=True)._sync_shared_log()
