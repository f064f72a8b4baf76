"""The shadow scorer and canary routing in process, with real models: bounds, errors, shutdown,
its CPU budget and its paired timing."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from core.columns import (
    MODEL_VERSION,
    PAIRED_SCORE_MS,
    ROLLOUT_COLUMNS,
    SHADOW_ERROR,
    SHADOW_PROBABILITY,
    SHADOW_SCORE_MS,
    SHADOW_VERSION,
)
from core.records.rollout import RolloutSlot, SlotModel
from features.contract import load_contract
from serving.model_store import ServedModel
from serving.rollout import (
    ServedPair,
    canary_bucket,
    log_row,
    routing_key,
    same_slot,
    score_rows,
)
from serving.schema import build_record_model
from serving.shadow import ERROR_CHARS, ShadowRow, ShadowScorer, describe_error
from tests.serving.server import (
    CONTRACT_PATH,
    TinyModel,
    raising_model,
    request_rows,
    slow_model,
    train_tiny_model,
)

CONTRACT = load_contract(CONTRACT_PATH)
RECORD = build_record_model(CONTRACT)
SHA = "0" * 64


def _served(model: TinyModel, version: str, threshold: float = 0.5) -> ServedModel:
    return ServedModel(model.pipeline, f"m:{version}", version, threshold, SHA, None, {})


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ServedModel]:
    root = tmp_path_factory.mktemp("shadow")
    return {
        "v1": _served(train_tiny_model(root / "m1", max_iter=10, rows=1500), "v1"),
        "v3": _served(raising_model(root / "m3"), "v3"),
        "v4": _served(slow_model(root / "m4"), "v4"),  # a 300-tree forest: tens of ms a call
    }


def _records(rows: int, seed: int = 3) -> list[Any]:
    frame = request_rows(rows, seed=seed)
    frame["UDI"] = range(1, rows + 1)
    return [RECORD.model_validate(r) for r in frame.to_dict(orient="records")]


def _slot(kind: str, share: float = 0.0, rollout_id: str = "r1") -> RolloutSlot:
    model = SlotModel(tag="m:v3", version="v3", content_sha256=SHA, threshold=0.5)
    return RolloutSlot(id=rollout_id, kind=kind, model=model, share=share, started_at="t")


def _counter() -> Any:
    return Counter("rows", "rows", ["model_version", "outcome"], registry=CollectorRegistry())


def _count(counter: Any, version: str, outcome: str) -> float:
    return counter.labels(model_version=version, outcome=outcome)._value.get()


class Log:
    """Collects what the scorer passes to the prediction log."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, rows: list[dict[str, Any]]) -> None:
        with self.lock:
            self.rows.extend(rows)


def _shadow_rows(pair: ServedPair, records: list[Any]) -> list[ShadowRow]:
    answers = score_rows(pair, [(r, "req") for r in records], CONTRACT)
    return [
        ShadowRow(log_row(r, "req", a), r, a.shadow, a.model)
        for r, a in zip(records, answers, strict=True)
        if a.shadow is not None
    ]


def _wait(condition: Any, timeout_s: float = 60) -> None:
    """Until `condition()`; generous, since the thread runs at nice 19: beside two busy loops
    on 2 cores it took over 10 s for 100 rows of row-at-a-time retries."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.01)


# --- routing -------------------------------------------------------------------------------


def test_the_canary_bucket_is_stable_and_spreads_ids_evenly() -> None:
    assert canary_bucket("42") == canary_bucket("42")
    buckets = [canary_bucket(str(i)) for i in range(20_000)]
    assert all(0 <= b < 1 for b in buckets)
    assert abs(sum(b < 0.1 for b in buckets) / 20_000 - 0.1) < 0.01


def test_rows_are_routed_by_their_row_id_else_the_request_id() -> None:
    with_id, without = _records(2)[0], RECORD.model_validate({**_records(1)[0].model_dump()})
    without = without.model_copy(update={"udi": None})
    assert routing_key(with_id, "req-1", CONTRACT) == "1"
    assert routing_key(without, "req-1", CONTRACT) == "req-1"


def test_a_rollout_changes_with_its_id_kind_model_or_share_not_its_start_time() -> None:
    assert same_slot(_slot("shadow"), _slot("shadow").model_copy(update={"started_at": "u"}))
    assert not same_slot(_slot("canary", 0.1), _slot("canary", 0.2))
    assert not same_slot(_slot("shadow"), _slot("canary", 0.1))
    assert not same_slot(_slot("shadow"), None) and same_slot(None, None)


def test_a_canary_candidate_that_raises_leaves_its_rows_to_the_champion(
    models: dict[str, ServedModel],
) -> None:
    records = [r for r in _records(200) if r.type == "H"][:20]
    pair = ServedPair(models["v1"], _slot("canary", 0.5), models["v3"])
    fallbacks = Counter("fb", "fb", ["model_version"], registry=CollectorRegistry())
    answers = score_rows(pair, [(r, "req") for r in records], CONTRACT, fallbacks)
    routed = sum(canary_bucket(str(r.udi)) < 0.5 for r in records)
    assert routed > 0
    assert {a.model.version for a in answers} == {"v1"}
    assert {a.shadow.version for a in answers if a.shadow} == {"v3"}
    assert fallbacks.labels(model_version="v3")._value.get() == routed


def test_without_a_loaded_rollout_model_nothing_goes_to_the_shadow(
    models: dict[str, ServedModel],
) -> None:
    records = _records(3)
    for pair in (ServedPair(models["v1"]), ServedPair(models["v1"], _slot("shadow"), None)):
        answers = score_rows(pair, [(r, "req") for r in records], CONTRACT)
        assert all(a.shadow is None and a.rollout_id is None for a in answers)
        assert not set(ROLLOUT_COLUMNS) & set(log_row(records[0], "req", answers[0]))


# --- the shadow scorer -------------------------------------------------------------------


def test_each_failing_row_gets_its_own_error_and_the_others_their_score(
    models: dict[str, ServedModel],
) -> None:
    log, counted = Log(), _counter()
    scorer = ShadowScorer(CONTRACT, log, queue_rows=1000, max_batch_rows=16, counted=counted)
    scorer.start()
    records = _records(100)
    scorer.submit(_shadow_rows(ServedPair(models["v1"], _slot("shadow"), models["v3"]), records))
    _wait(lambda: len(log.rows) == 100)
    scorer.close(5)
    failing = [row for row in log.rows if row["Type"] == "H"]
    assert failing and all(row[SHADOW_ERROR].startswith("ValueError: ") for row in failing)
    assert all(row[SHADOW_PROBABILITY] is None for row in failing)
    fine = [row for row in log.rows if row["Type"] != "H"]
    assert all(row[SHADOW_ERROR] is None and 0 <= row[SHADOW_PROBABILITY] <= 1 for row in fine)
    assert all(row[SHADOW_SCORE_MS] > 0 for row in fine)
    assert all(row[MODEL_VERSION] == "v1" and row[SHADOW_VERSION] == "v3" for row in log.rows)
    assert _count(counted, "v3", "error") == len(failing)
    assert _count(counted, "v3", "scored") == len(fine)


def test_a_full_queue_logs_the_rows_at_once_unscored(models: dict[str, ServedModel]) -> None:
    log, counted = Log(), _counter()
    scorer = ShadowScorer(CONTRACT, log, queue_rows=10, max_batch_rows=4, counted=counted)
    # not started: nothing leaves the queue, so the 11th row on finds it full
    rows = _shadow_rows(ServedPair(models["v1"], _slot("shadow"), models["v1"]), _records(25))
    scorer.submit(rows)
    assert len(log.rows) == 15 and scorer.queued == 10
    assert all(r[SHADOW_VERSION] == "v1" and r[SHADOW_PROBABILITY] is None for r in log.rows)
    assert _count(counted, "v1", "unscored") == 15
    scorer.start()
    scorer.close(5)  # drains the ten it holds
    assert len(log.rows) == 25 and _count(counted, "v1", "scored") == 10


def test_shutdown_logs_what_it_cannot_score_in_time_unscored(
    models: dict[str, ServedModel],
) -> None:
    slow = models["v4"]
    log, counted = Log(), _counter()
    scorer = ShadowScorer(CONTRACT, log, queue_rows=5000, max_batch_rows=1, counted=counted)
    scorer.start()
    scorer.submit(_shadow_rows(ServedPair(models["v1"], _slot("shadow"), slow), _records(400)))
    scorer.close(0.2)  # a few rows of the slow model fit in 0.2 s; hundreds do not
    assert len(log.rows) == 400  # nothing lost
    unscored = _count(counted, "v4", "unscored")
    assert unscored > 100 and unscored + _count(counted, "v4", "scored") == 400
    scorer.submit(_shadow_rows(ServedPair(models["v1"], _slot("shadow"), slow), _records(3)))
    assert len(log.rows) == 403  # after close: logged at once, unscored


class _Hung:
    """A real pipeline whose calls wait for `release` first: a shadow model that hangs."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline, self.release, self.entered = pipeline, threading.Event(), threading.Event()

    def predict_proba(self, frame: Any) -> Any:
        self.entered.set()
        self.release.wait(30)
        return self.pipeline.predict_proba(frame)


def test_shutdown_during_a_hung_call_logs_its_rows_once_unscored(
    models: dict[str, ServedModel],
) -> None:
    hung = _Hung(models["v1"].pipeline)
    stuck = ServedModel(hung, "m:v5", "v5", 0.5, SHA, None, {})  # type: ignore[arg-type]
    log, counted = Log(), _counter()
    scorer = ShadowScorer(CONTRACT, log, queue_rows=100, max_batch_rows=8, counted=counted)
    scorer.start()
    scorer.submit(_shadow_rows(ServedPair(models["v1"], _slot("shadow"), stuck), _records(20)))
    assert hung.entered.wait(10)  # 8 rows in the call, 12 queued
    scorer.close(0.1)  # the call outlives the join: close logs its rows too
    assert len(log.rows) == 20 and _count(counted, "v5", "unscored") == 20
    assert all(r[SHADOW_PROBABILITY] is None and r[SHADOW_ERROR] is None for r in log.rows)
    hung.release.set()  # the call ends after all: its result is dropped, not logged again
    _wait(lambda: scorer._thread is not None and not scorer._thread.is_alive())
    assert len(log.rows) == 20 and _count(counted, "v5", "scored") == 0
    assert all(r[SHADOW_PROBABILITY] is None for r in log.rows)  # logged rows left as logged


def test_an_error_text_is_one_line_of_at_most_200_characters() -> None:
    text = describe_error(ValueError("bad\n" + "x" * 500))
    assert text.startswith("ValueError: bad x") and "\n" not in text
    assert len(text) == ERROR_CHARS


# --- its own budget ------------------------------------------------------------------------


def _busy_share(models: dict[str, ServedModel], share: float, seconds: float) -> float:
    """The scorer's share of time in calls over `seconds` of a backlog of slow rows (one per
    call). Its latest call is left out when the share is capped: that call may not have had
    its rest yet, and on a loaded machine one call can take as long as all the others (a
    descheduled thread), so leaving out an average call was not enough (0.47 seen in CI)."""
    log = Log()
    scorer = ShadowScorer(
        CONTRACT, log, queue_rows=5000, max_batch_rows=1, max_cpu_share=share, max_lag_s=60
    )
    pair = ServedPair(models["v1"], _slot("shadow"), models["v4"])
    scorer.submit(_shadow_rows(pair, _records(2000)))  # more than it can score in `seconds`
    began = time.perf_counter()
    scorer.start()
    time.sleep(seconds)
    # a loaded machine makes each call slower (3 calls in 2 s seen in CI; at nice 19 beside
    # four busy loops on 2 cores, 2 calls in 20 s): measure over at least 3 calls
    deadline = began + 30 * seconds
    while scorer.scored < 3 and time.perf_counter() < deadline:
        time.sleep(0.05)
    # in this order: busy_s, then the latest call (it is set first), then the clock
    busy = scorer.busy_s
    unrested = scorer.last_busy_s if share < 1 else 0.0
    calls, elapsed = scorer.scored, time.perf_counter() - began
    scorer.close(0)
    assert calls >= 3 and len(log.rows) == 2000  # it scored; nothing was lost
    return (busy - unrested) / elapsed


def test_the_shadow_spends_at_most_its_cpu_share_scoring(models: dict[str, ServedModel]) -> None:
    # busy time is the scorer's own wall time in calls (descheduled time counts too: a busy
    # machine gets a slower shadow, not slower answers); 0.05 for the timer's slack
    assert _busy_share(models, 0.25, 2.0) <= 0.25 + 0.05
    # without a budget the same backlog keeps it busy most of the time, well above the cap,
    # so the check above can fail (0.63-0.73 beside two busy loops on 2 cores: a thread at
    # nice 19 also waits between calls, and the call in progress is not counted)
    assert _busy_share(models, 1.0, 2.0) >= 0.5


def test_rows_beyond_the_budget_are_logged_unscored_as_over_budget(
    models: dict[str, ServedModel],
) -> None:
    log, counted = Log(), _counter()
    scorer = ShadowScorer(
        CONTRACT, log, 5000, max_batch_rows=1, counted=counted, max_cpu_share=0.2, max_lag_s=0.3
    )
    scorer.start()
    scorer.submit(
        _shadow_rows(ServedPair(models["v1"], _slot("shadow"), models["v4"]), _records(300))
    )
    _wait(lambda: len(log.rows) == 300)  # within its share it scores a few; the rest wait > 0.3 s
    scorer.close(1)
    over, scored = _count(counted, "v4", "over_budget"), _count(counted, "v4", "scored")
    assert over > 200 and scored >= 1 and over + scored == 300
    assert scorer.over_budget == over and scorer.unscored == 0
    late = [row for row in log.rows if row[SHADOW_PROBABILITY] is None]
    assert len(late) == over and all(r[SHADOW_VERSION] == "v4" for r in late)
    assert all(r[SHADOW_ERROR] is None for r in late)  # not a failure of the model: the judge
    # leaves such rows out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_the_shadow_thread_runs_at_the_lowest_priority(models: dict[str, ServedModel]) -> None:
    scorer = ShadowScorer(CONTRACT, Log(), queue_rows=100, max_batch_rows=4)
    scorer.start()
    try:
        thread = scorer._thread
        assert thread is not None and thread.native_id is not None
        _wait(lambda: os.getpriority(os.PRIO_PROCESS, thread.native_id) == 19, 2)
    finally:
        scorer.close(1)


def test_a_bad_budget_is_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"max_cpu_share must be in \(0, 1\] \(got 0\)"):
        ShadowScorer(CONTRACT, Log(), queue_rows=10, max_batch_rows=1, max_cpu_share=0)


# --- paired timing -------------------------------------------------------------------------


def test_every_nth_batch_times_the_answering_model_on_the_same_rows(
    models: dict[str, ServedModel],
) -> None:
    log = Log()
    scorer = ShadowScorer(CONTRACT, log, queue_rows=1000, max_batch_rows=10, paired_every=2)
    pair = ServedPair(models["v1"], _slot("shadow"), models["v4"])
    scorer.submit(_shadow_rows(pair, _records(40)))  # queued before the start: 4 batches of 10
    scorer.start()
    _wait(lambda: len(log.rows) == 40)
    scorer.close(1)
    paired = [row for row in log.rows if row[PAIRED_SCORE_MS] is not None]
    assert len(paired) == 20  # batches 2 and 4
    assert len({row[PAIRED_SCORE_MS] for row in paired}) <= 2  # one time per batch
    assert all(row[PAIRED_SCORE_MS] > 0 and row[SHADOW_SCORE_MS] > 0 for row in paired)
