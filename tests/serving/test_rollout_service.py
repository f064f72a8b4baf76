"""A rollout in the one BentoML service over real HTTP: shadow, canary, failing, slow models.

One `lifecycle serve` (one worker) for the module, switched between rollouts by rewriting the
champion pointer with a rollout block and calling `/admin/reload`; then it is stopped in the
middle of a canary (its shadow drains into the log) and started again, and resumes it. Four
real models: v1 the champion, v2 a different gradient-boosting model, v3 a logistic regression
whose one-hot encoder never saw product type H and refuses it (`handle_unknown="error"`),
v4 a large random forest (slow). Every request must be answered (0 failed requests); the
module's order matters.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from core.clock import format_time, utc_now
from core.columns import (
    MODEL_VERSION,
    PAIRED_SCORE_MS,
    REQUEST_ID,
    ROLLOUT_ID,
    SCORE_MS,
    SHADOW_ERROR,
    SHADOW_PROBABILITY,
    SHADOW_SCORE_MS,
    SHADOW_VERSION,
)
from core.config import DeployConfig
from core.records.rollout import RolloutSlot
from features.contract import load_contract
from models.rollout import judge_rollout
from serving.model_store import (
    POINTER_FILE,
    export_model,
    load_served_model,
    read_champion_pointer,
    slot_model,
    write_champion_pointer,
)
from serving.prediction_log import read_prediction_log
from serving.rollout import canary_bucket
from tests.serving.server import (
    CONTRACT_PATH,
    MODEL_NAME,
    RunningServer,
    TinyModel,
    raising_model,
    request_rows,
    serve,
    slow_model,
    train_tiny_model,
    write_project,
)

pytestmark = pytest.mark.slow

CONTRACT = load_contract(CONTRACT_PATH)
SHARE = 0.3
CANARY_ROWS = 2000


@dataclass
class Rollout:
    root: Path
    store: Path
    predictions: Path
    models: dict[str, TinyModel]
    tags: dict[str, str]
    answered: int = 0  # rows answered with 200
    failed: list[str] = field(default_factory=list)  # any other answer
    server: RunningServer | None = None

    def slot(self, version: str, kind: str, share: float = 0.0, rollout_id: str = "") -> Any:
        served = load_served_model(self.tags[version], self.store)
        return RolloutSlot(
            id=rollout_id or f"{kind}-{version}",
            kind=kind,
            model=slot_model(served),
            share=share,
            started_at=format_time(utc_now()),
        )

    def point(self, slot: RolloutSlot | None) -> None:
        write_champion_pointer(self.store, load_served_model(self.tags["v1"], self.store), slot)


THRESHOLDS = {"v1": 0.5, "v2": 0.4, "v3": 0.5, "v4": 0.5}


@pytest.fixture(scope="module")
def rollout(tmp_path_factory: pytest.TempPathFactory) -> Rollout:
    root = tmp_path_factory.mktemp("rollout")
    store = root / "store"
    models = {
        "v1": train_tiny_model(root / "m1", max_iter=30),
        "v2": train_tiny_model(root / "m2", max_iter=5),
        "v3": raising_model(root / "m3"),
        "v4": slow_model(root / "m4"),
    }
    tags = {
        version: export_model(
            model.directory,
            MODEL_NAME,
            int(version[1:]),
            f"run-{version}",
            model.content_sha256,
            THRESHOLDS[version],
            store,
        )
        for version, model in models.items()
    }
    load_served_model(tags["v3"], store)  # the refusing encoder passes the trusted-types load
    write_champion_pointer(store, load_served_model(tags["v1"], store))
    write_project(
        root,
        {
            "store": "store",
            "reload_poll_s": 0.5,
            "workers": 1,
            "threads": 4,
            "batching": {"enabled": True, "max_batch_size": 16, "max_latency_ms": 5},
            "max_batch_rows": CANARY_ROWS,
            "max_body_bytes": 4_000_000,
            "prediction_log": {"directory": "predictions", "flush_interval_s": 0.2},
        },
    )
    params = root / "params.yaml"
    params.write_text(
        params.read_text(encoding="utf-8")
        + "deploy:\n  rollout:\n    shadow:\n      queue_rows: 20000\n      max_batch_rows: 64\n",
        encoding="utf-8",
    )
    return Rollout(root, store, root / "predictions", models, tags)


@pytest.fixture(scope="module")
def client(rollout: Rollout) -> Iterator[httpx.Client]:
    with serve(rollout.root) as running:
        rollout.server = running
        with httpx.Client(base_url=running.url, timeout=30) as http:
            yield http


def _records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(rows.to_json(orient="records"))


def _expected(rollout: Rollout, version: str, rows: pd.DataFrame) -> list[float]:
    return rollout.models[version].pipeline.predict_proba(rows[CONTRACT.features])[:, 1].tolist()


def _post(http: httpx.Client, rollout: Rollout, path: str, body: Any, **kw: Any) -> Any:
    answer = http.post(path, json=body, **kw)
    if answer.status_code != 200:
        rollout.failed.append(f"{path} {answer.status_code}: {answer.text[:200]}")
        raise AssertionError(rollout.failed[-1])
    body_out = answer.json()
    rollout.answered += len(body_out["predictions"]) if "predictions" in body_out else 1
    return body_out


def _batch(http: httpx.Client, rollout: Rollout, rows: pd.DataFrame) -> Any:
    return _post(http, rollout, "/predict_batch", {"records": _records(rows)})


def _switch(http: httpx.Client, rollout: Rollout, slot: RolloutSlot | None) -> dict[str, Any]:
    rollout.point(slot)
    answer = http.post("/admin/reload")
    assert answer.status_code == 200, answer.text
    return answer.json()


def _log_rows(rollout: Rollout, rollout_id: str | None, rows: int, timeout_s: float = 20) -> Any:
    """The logged rows of one rollout (None: the rows without one), once `rows` are there."""
    deadline = time.monotonic() + timeout_s
    while True:
        frame = read_prediction_log(rollout.predictions)
        if ROLLOUT_ID not in frame.columns:
            frame[ROLLOUT_ID] = None
        mine = (
            frame[frame[ROLLOUT_ID].isna()]
            if rollout_id is None
            else frame[frame[ROLLOUT_ID] == rollout_id]
        )
        if len(mine) >= rows or time.monotonic() > deadline:
            return mine.reset_index(drop=True)
        time.sleep(0.2)


def _metric(http: httpx.Client, name: str, **labels: str) -> float:
    text = http.get("/metrics").text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "_total{") and not line.startswith(name + "{"):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _latencies(http: httpx.Client, rollout: Rollout, records: list[dict[str, Any]]) -> list[float]:
    times = []
    for record in records:
        start = time.perf_counter()
        _post(http, rollout, "/predict", record)
        times.append((time.perf_counter() - start) * 1000)
    return times


# --- the champion alone ------------------------------------------------------------------


def test_without_a_rollout_rows_are_logged_as_before_with_their_scoring_time(
    client: httpx.Client, rollout: Rollout
) -> None:
    ready = client.get("/readyz").json()
    assert ready["rollout"] is None and ready["model"] == rollout.tags["v1"]
    records = _records(request_rows(40, seed=21))
    _latencies(client, rollout, records)
    logged = _log_rows(rollout, None, 40)
    assert len(logged) == 40
    assert (logged[MODEL_VERSION] == "v1").all() and (logged[SCORE_MS] >= 0).all()
    assert logged[SHADOW_VERSION].isna().all() if SHADOW_VERSION in logged else True


# --- shadow ------------------------------------------------------------------------------


def test_shadow_answers_are_the_champions_and_the_log_holds_both_scores(
    client: httpx.Client, rollout: Rollout
) -> None:
    result = _switch(client, rollout, rollout.slot("v2", "shadow"))
    assert result["rollout"] == {"id": "shadow-v2", "kind": "shadow", "version": "v2", "share": 0}
    assert client.get("/readyz").json()["rollout"]["version"] == "v2"
    rows = request_rows(300, seed=5)
    body = _batch(client, rollout, rows)
    singles = [_post(client, rollout, "/predict", r) for r in _records(rows.iloc[:30])]

    champion = _expected(rollout, "v1", rows)
    probability = CONTRACT.probability_field
    assert [p[probability] for p in body["predictions"]] == pytest.approx(champion, abs=1e-12)
    assert {p["model_version"] for p in body["predictions"]} == {"v1"}
    assert body["model_version"] == "v1"
    assert [s[probability] for s in singles] == pytest.approx(champion[:30], abs=1e-12)
    assert {s["model_version"] for s in singles} == {"v1"}

    logged = _log_rows(rollout, "shadow-v2", 330)
    assert len(logged) == 330
    assert (logged[MODEL_VERSION] == "v1").all() and (logged[SHADOW_VERSION] == "v2").all()
    assert logged[SHADOW_ERROR].isna().all()
    batch_rows = logged[logged[REQUEST_ID] == logged[REQUEST_ID].value_counts().idxmax()]
    by_udi = batch_rows.set_index("UDI")
    shadow = dict(zip(rows["UDI"], _expected(rollout, "v2", rows), strict=True))
    assert [by_udi.loc[u, SHADOW_PROBABILITY] for u in rows["UDI"]] == pytest.approx(
        [shadow[u] for u in rows["UDI"]], abs=1e-12
    )
    assert (logged[SHADOW_SCORE_MS] > 0).all()
    assert _metric(client, "lifecycle_shadow_rows", model_version="v2", outcome="scored") == 330


# --- canary ------------------------------------------------------------------------------


def test_canary_answers_its_share_of_ids_and_keeps_one_id_on_one_model(
    client: httpx.Client, rollout: Rollout
) -> None:
    result = _switch(client, rollout, rollout.slot("v2", "canary", share=SHARE))
    assert result["rollout"]["kind"] == "canary" and result["rollout"]["share"] == SHARE
    rows = request_rows(CANARY_ROWS, seed=9)
    rows["UDI"] = range(100_000, 100_000 + CANARY_ROWS)  # distinct ids
    body = _batch(client, rollout, rows)
    versions = [p["model_version"] for p in body["predictions"]]
    share = versions.count("v2") / CANARY_ROWS
    # binomial: 4 standard deviations of a share of 2000 ids (about +-0.041 at 0.3)
    tolerance = 4 * math.sqrt(SHARE * (1 - SHARE) / CANARY_ROWS)
    assert abs(share - SHARE) < tolerance, (share, tolerance)
    routed = [canary_bucket(str(udi)) < SHARE for udi in rows["UDI"]]
    assert versions == ["v2" if r else "v1" for r in routed]  # exactly the stable hash
    probability = CONTRACT.probability_field
    expected = [
        b if r else a
        for a, b, r in zip(
            _expected(rollout, "v1", rows), _expected(rollout, "v2", rows), routed, strict=True
        )
    ]
    assert [p[probability] for p in body["predictions"]] == pytest.approx(expected, abs=1e-12)
    assert body["model_version"] == "v1"  # the champion's, at the top

    one = _records(rows.iloc[:1])[0]
    one_to_candidate = next(
        r for r, go in zip(_records(rows.iloc[:200]), routed, strict=False) if go
    )
    seen = {_post(client, rollout, "/predict", one)["model_version"] for _ in range(15)}
    seen_c = {
        _post(client, rollout, "/predict", one_to_candidate)["model_version"] for _ in range(15)
    }
    assert seen == {"v2" if routed[0] else "v1"} and seen_c == {"v2"}

    logged = _log_rows(rollout, "canary-v2", CANARY_ROWS + 30)
    answered_by_candidate = logged[logged[MODEL_VERSION] == "v2"]
    assert (answered_by_candidate[SHADOW_VERSION] == "v1").all()  # the champion in shadow
    assert (logged[logged[MODEL_VERSION] == "v1"][SHADOW_VERSION] == "v2").all()
    assert logged[SHADOW_PROBABILITY].notna().all()


# --- a candidate that raises on some rows ------------------------------------------------


def test_a_candidate_that_raises_fails_no_request_and_its_errors_are_counted(
    client: httpx.Client, rollout: Rollout
) -> None:
    _switch(client, rollout, rollout.slot("v3", "canary", share=0.5))
    rows = request_rows(400, seed=13)
    rows["UDI"] = range(200_000, 200_400)
    refused = rows["Type"] == "H"
    assert 20 < refused.sum() < 380
    body = _batch(client, rollout, rows)  # H rows make the candidate's call raise
    assert {p["model_version"] for p in body["predictions"]} == {"v1"}  # the champion took over
    h_routed = next(
        r
        for r, udi in zip(_records(rows), rows["UDI"], strict=True)
        if r["Type"] == "H" and canary_bucket(str(udi)) < 0.5
    )
    single = _post(client, rollout, "/predict", h_routed)
    assert single["model_version"] == "v1"

    # each failing call is retried one row at a time, within the shadow's CPU share (0.25):
    # 400 rows of retries take it tens of seconds to log on 2 busy cores
    logged = _log_rows(rollout, "canary-v3", 401, timeout_s=90)
    assert len(logged) == 401
    h_rows = logged["Type"] == "H"
    assert (logged[SHADOW_VERSION] == "v3").all()  # the candidate answered none of them
    # on a loaded machine those retries can outrun max_lag_s (30 s): the rows still waiting
    # then are logged with neither score nor error, and counted over_budget; no other row
    # may lose its score, and most must be scored
    over = logged[SHADOW_PROBABILITY].isna() & logged[SHADOW_ERROR].isna()
    assert int(over.sum()) == _metric(
        client, "lifecycle_shadow_rows", model_version="v3", outcome="over_budget"
    )
    assert over.sum() < len(logged) / 2, int(over.sum())
    failed, fine = logged[h_rows & ~over], logged[~h_rows & ~over]
    assert len(failed) > 0 and len(fine) > 0
    assert failed[SHADOW_ERROR].str.startswith("ValueError: Found unknown").all()
    assert failed[SHADOW_PROBABILITY].isna().all()
    assert fine[SHADOW_ERROR].isna().all()  # one row at a time: only H failed
    assert fine[SHADOW_PROBABILITY].notna().all()
    errors = _metric(client, "lifecycle_shadow_rows", model_version="v3", outcome="error")
    assert errors == len(failed)
    assert _metric(client, "lifecycle_canary_fallback_rows", model_version="v3") >= 1


# --- a slow candidate --------------------------------------------------------------------


def test_a_slow_candidate_in_shadow_does_not_slow_the_answers(
    client: httpx.Client, rollout: Rollout
) -> None:
    """The bound: the median /predict latency with the forest in shadow is within 1.5 x the
    champion alone's + 2 ms, both measured in the same test, interleaved in three rounds (so
    a change of load on the machine hits both alike). Why so loose: with 3 pytest workers on
    2 cores, the medians of back-to-back windows of the same service differ by up to ~30 %.
    What it catches: a shadow that takes the CPU from the answers (without a budget it was
    measured at 3.9 x: 28.4 ms against 7.35 ms); with `max_cpu_share` 0.25 it measured
    0.70-0.88 x on a loaded machine."""
    slow = rollout.slot("v4", "shadow")
    records = _records(request_rows(150, seed=17))
    alone: list[float] = []
    with_slow: list[float] = []
    for start in range(0, 150, 50):
        _switch(client, rollout, None)
        alone += _latencies(client, rollout, records[start : start + 50])[5:]
        _switch(client, rollout, slow)
        with_slow += _latencies(client, rollout, records[start : start + 50])[5:]
        _log_rows(rollout, "shadow-v4", start + 50)  # its shadow done before the next round
    assert statistics.median(with_slow) <= 1.5 * statistics.median(alone) + 2, (
        statistics.median(with_slow),
        statistics.median(alone),
    )
    logged = _log_rows(rollout, "shadow-v4", 150)
    assert len(logged) == 150
    # within its budget the shadow still scored every row of this traffic
    assert logged[SHADOW_PROBABILITY].notna().all()
    assert _metric(client, "lifecycle_shadow_rows", model_version="v4", outcome="over_budget") == 0
    # and it is slow: by CPU time in this process (wall time on a loaded machine is mostly
    # waiting, alike for both models), well above the champion on the same rows
    frame = request_rows(50, seed=17)[CONTRACT.features]
    assert _cpu_ms(rollout.models["v4"], frame) > 3 * _cpu_ms(rollout.models["v1"], frame)
    # the service's paired timing saw it too (load narrows the logged ratio: 1.4 x beside two
    # busy loops at the thread's nice 19, 2.7 x in CI, about 10 x on a quiet machine)
    paired = logged[logged[PAIRED_SCORE_MS].notna()]
    assert len(paired) > 0 and (paired[PAIRED_SCORE_MS] > 0).all()
    assert paired[SHADOW_SCORE_MS].median() > paired[PAIRED_SCORE_MS].median()


def _cpu_ms(model: TinyModel, frame: pd.DataFrame) -> float:
    """The median CPU time of this thread in one scoring call of `frame`, of five."""
    times = []
    for _ in range(5):
        start = time.thread_time()
        model.pipeline.predict_proba(frame)
        times.append((time.thread_time() - start) * 1000)
    return statistics.median(times)


def test_the_judge_aborts_the_slow_candidate_on_what_its_shadow_logged(
    client: httpx.Client, rollout: Rollout
) -> None:
    """The budget leaves the judge enough rows: the rows logged in shadow-v4 (the test above
    and the single requests here), judged with paired timing, break the p99 guard. At the
    default ratio (2 x) with a 5 ms slack, not the default 25 ms: the slack is for models
    that answer in a few ms, and under `pytest -n 3` on 2 cores the champion's own paired
    p99 reaches 30 ms, where 2 x + 25 ms let a forest 2.8 times slower pass (measured in
    CI: 83.8 ms against 29.6 ms)."""
    slot = rollout.slot("v4", "shadow")
    _switch(client, rollout, slot)
    _latencies(client, rollout, _records(request_rows(150, seed=31)))
    logged = _log_rows(rollout, "shadow-v4", 300)
    config = DeployConfig.model_validate({"rollout": {"guards": {"p99_slack_ms": 5}}})
    verdict = judge_rollout(logged, None, slot, "v1", config, utc_now())
    latency = next(g for g in verdict.guards if g.name == "p99_score_ms")
    assert latency.holds is False, latency.detail
    assert "paired" in latency.detail and verdict.outcome == "abort"
    assert next(g for g in verdict.guards if g.name == "error_rate").holds is True


# --- rollouts the service cannot serve ---------------------------------------------------


def test_a_bad_rollout_block_leaves_the_champion_serving_with_a_one_line_reason(
    client: httpx.Client, rollout: Rollout
) -> None:
    rollout.point(None)
    pointer = read_champion_pointer(rollout.store)
    assert pointer is not None
    pointer["rollout"] = {**rollout.slot("v2", "canary", 0.1).model_dump(mode="json"), "share": 1.5}
    (rollout.store / POINTER_FILE).write_text(json.dumps(pointer), encoding="utf-8")
    result = client.post("/admin/reload").json()
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["rollout"] is None
    reason = ready.json()["rollout_error"]
    assert "rollout.share" in reason and "\n" not in reason, reason
    assert result["rollout_error"] == reason
    assert _post(client, rollout, "/predict", _records(request_rows(1))[0])["model_version"] == "v1"
    assert reason in (rollout.server.tail(200) if rollout.server else "")


def test_a_rollout_model_missing_from_the_store_is_retried_until_it_loads(
    client: httpx.Client, rollout: Rollout
) -> None:
    missing = rollout.slot("v2", "shadow").model.model_copy(
        update={"tag": f"{MODEL_NAME}:v9", "version": "v9"}
    )
    slot = rollout.slot("v2", "shadow", rollout_id="shadow-v9").model_copy(
        update={"model": missing}
    )
    failed_before = _metric(client, "lifecycle_model_reloads", outcome="rollout_failed")
    result = _switch(client, rollout, slot)
    assert result["rollout"] is None and "v9" in result["rollout_error"]
    assert _metric(client, "lifecycle_model_reloads", outcome="rollout_failed") > failed_before
    assert client.get("/readyz").status_code == 200
    v2 = rollout.models["v2"]
    export_model(v2.directory, MODEL_NAME, 9, "run-v9", v2.content_sha256, 0.4, rollout.store)
    deadline = time.monotonic() + 10  # the watcher's next poll (0.5 s) loads it
    while client.get("/readyz").json()["rollout"] is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.get("/readyz").json()["rollout"] == {
        "id": "shadow-v9",
        "kind": "shadow",
        "version": "v9",
        "share": 0,
    }


# --- a restart in the middle of a rollout --------------------------------------------------


def test_a_restart_drains_the_shadow_and_resumes_the_rollout(
    client: httpx.Client, rollout: Rollout
) -> None:
    _switch(client, rollout, rollout.slot("v4", "shadow", rollout_id="shadow-restart"))
    rows = request_rows(600, seed=23)
    for start in range(0, 600, 100):  # queue rows for the slow shadow, then stop at once
        _batch(client, rollout, rows.iloc[start : start + 100])
    canary = rollout.slot("v2", "canary", share=SHARE, rollout_id="canary-resumed")
    rollout.point(canary)  # written while the service is down: read at start
    assert rollout.server is not None
    assert rollout.server.stop() == 0
    logged = _log_rows(rollout, "shadow-restart", 600, timeout_s=1)
    assert len(logged) == 600  # nothing lost: scored, or logged unscored at shutdown
    assert (logged[SHADOW_VERSION] == "v4").all()
    everything = read_prediction_log(rollout.predictions)
    assert len(everything) == rollout.answered and not rollout.failed

    with serve(rollout.root) as again, httpx.Client(base_url=again.url, timeout=30) as http:
        ready = http.get("/readyz").json()
        assert ready["rollout"] == {
            "id": "canary-resumed",
            "kind": "canary",
            "version": "v2",
            "share": SHARE,
        }
        body = _batch(http, rollout, rows.iloc[:200])
        routed = [canary_bucket(str(u)) < SHARE for u in rows["UDI"].iloc[:200]]
        assert [p["model_version"] for p in body["predictions"]] == [
            "v2" if r else "v1" for r in routed
        ]
