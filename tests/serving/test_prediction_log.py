"""Prediction log: nothing lost on a clean close, never blocking, partitions by hour, readable."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from features.contract import DataContract
from serving.prediction_log import PredictionLogger, prediction_rows, read_prediction_log
from serving.schema import (
    build_answer_models,
    build_record_model,
    example_record,
    served_columns,
)

T0 = dt.datetime(2026, 11, 5, 10, 59, 59, 500_000, tzinfo=dt.UTC)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: dt.datetime = T0) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, moment: dt.datetime) -> None:
        self.now = moment.timestamp()


def _wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def _rows(count: int, prefix: str = "r") -> list[dict[str, object]]:
    return [{"request_id": f"{prefix}{i}", "probability": i / max(count, 1)} for i in range(count)]


def _parts(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).parent.as_posix() for p in directory.rglob("*.jsonl"))


def test_every_row_from_many_threads_is_read_back_after_close(tmp_path: Path) -> None:
    logger = PredictionLogger(tmp_path, queue_size=20_000, flush_interval_s=0.02)
    logger.start()

    def serve(thread: int) -> None:
        for start in range(0, 2500, 50):  # 50 requests of 50 rows, interleaved with the writer
            logger.log(
                [
                    {"request_id": f"t{thread}-{i}", "thread": thread}
                    for i in range(start, start + 50)
                ]
            )

    threads = [threading.Thread(target=serve, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logger.close()

    assert (logger.logged, logger.dropped, logger.write_errors, logger.pending) == (10_000, 0, 0, 0)
    frame = read_prediction_log(tmp_path)
    assert len(frame) == 10_000 and frame["request_id"].is_unique
    assert frame["thread"].value_counts().to_dict() == {0: 2500, 1: 2500, 2: 2500, 3: 2500}
    assert frame["time"].is_monotonic_increasing
    assert str(frame["time"].dtype) == "datetime64[ns, UTC]"


def test_rows_go_to_the_partition_of_their_hour(tmp_path: Path) -> None:
    clock = FakeClock()
    logger = PredictionLogger(tmp_path, queue_size=1000, flush_interval_s=0.02, clock=clock)
    with logger:
        logger.log(_rows(2, "a"))  # 10:59:59.500
        clock.set(T0 + dt.timedelta(seconds=0.5))  # 11:00:00.000 exactly
        logger.log(_rows(3, "b"))
        clock.set(T0 + dt.timedelta(hours=14))  # 00:59:59.500 the next day, in UTC
        logger.log(_rows(1, "c"))
    assert _parts(tmp_path) == [
        "date=2026-11-05/hour=10",
        "date=2026-11-05/hour=11",
        "date=2026-11-06/hour=00",
    ]
    (name,) = {p.name for p in tmp_path.rglob("*.jsonl")}
    assert name.endswith("-20261105T105959500Z.jsonl")  # part-<pid>-<start>
    (hour_10,) = (tmp_path / "date=2026-11-05" / "hour=10").glob("*.jsonl")
    first = json.loads(hour_10.read_text().splitlines()[0])
    assert first["time"] == "2026-11-05T10:59:59.500Z" and next(iter(first)) == "time"
    frame = read_prediction_log(tmp_path)
    assert frame["request_id"].tolist() == ["a0", "a1", "b0", "b1", "b2", "c0"]
    assert frame["time"].iloc[2] == pd.Timestamp("2026-11-05T11:00:00", tz="UTC")


def test_since_and_until_select_a_window_and_skip_other_partitions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(dt.datetime(2026, 11, 5, 8, 30, tzinfo=dt.UTC))
    with PredictionLogger(tmp_path, 1000, 0.02, clock=clock) as logger:
        for hour in (8, 9, 10):
            clock.set(dt.datetime(2026, 11, 5, hour, 30, tzinfo=dt.UTC))
            logger.log(_rows(2, f"h{hour}-"))
    junk = tmp_path / "date=2026-11-05" / "hour=08" / "part-1-junk.jsonl"
    junk.write_text("not json\n")  # read only if the hour-8 partition is not skipped

    with caplog.at_level(logging.WARNING, logger="serving.prediction_log"):
        window = read_prediction_log(
            tmp_path,
            since=dt.datetime(2026, 11, 5, 9, 30, tzinfo=dt.UTC),
            until=dt.datetime(2026, 11, 5, 10, 30),  # naive: UTC
        )
    assert window["request_id"].tolist() == ["h9-0", "h9-1"]
    assert not caplog.records
    assert read_prediction_log(tmp_path, since=T0 + dt.timedelta(days=1)).empty


def test_newest_reads_hours_newest_first_and_stops_when_it_has_enough(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(dt.datetime(2026, 11, 5, 7, 30, tzinfo=dt.UTC))
    with PredictionLogger(tmp_path, 1000, 0.02, clock=clock) as logger:
        for hour in (7, 8, 9, 10):
            clock.set(dt.datetime(2026, 11, 5, hour, 30, tzinfo=dt.UTC))
            logger.log(_rows(2, f"h{hour}-"))
    for hour in ("07", "08"):  # read only if those hours are read, which they need not be
        (tmp_path / "date=2026-11-05" / f"hour={hour}" / "part-1-junk.jsonl").write_text("x\n")

    with caplog.at_level(logging.WARNING, logger="serving.prediction_log"):
        newest = read_prediction_log(tmp_path, newest=3)
    assert newest["request_id"].tolist() == ["h9-1", "h10-0", "h10-1"]
    assert not caplog.records  # hours 7 and 8 were not opened

    with caplog.at_level(logging.WARNING, logger="serving.prediction_log"):
        everything = read_prediction_log(tmp_path, newest=100)
    assert len(everything) == 8  # fewer rows than asked: all of them
    assert any("part-1-junk.jsonl" in record.getMessage() for record in caplog.records)
    until_nine = read_prediction_log(
        tmp_path, until=dt.datetime(2026, 11, 5, 9, tzinfo=dt.UTC), newest=3
    )
    assert until_nine["request_id"].tolist() == ["h7-1", "h8-0", "h8-1"]
    with pytest.raises(ValueError, match="newest must be at least 1 row, got 0"):
        read_prediction_log(tmp_path, newest=0)


def test_a_truncated_last_line_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with PredictionLogger(tmp_path, 1000, 0.02, clock=FakeClock()) as logger:
        logger.log(_rows(3))
    (part,) = tmp_path.rglob("*.jsonl")
    with part.open("ab") as handle:  # a process killed halfway through a line
        handle.write(b'{"time":"2026-11-05T10:59:59.900Z","request_id":"cut","probabi')
    with caplog.at_level(logging.WARNING, logger="serving.prediction_log"):
        frame = read_prediction_log(tmp_path)
    assert frame["request_id"].tolist() == ["r0", "r1", "r2"]
    assert "truncated last line" in caplog.text and part.name in caplog.text


def test_log_never_blocks_and_counts_what_does_not_fit(tmp_path: Path) -> None:
    logger = PredictionLogger(tmp_path, queue_size=100, flush_interval_s=60)  # no writer yet
    started = time.perf_counter()
    logger.log(_rows(150, "big"))
    for i in range(50):
        logger.log([{"request_id": f"one{i}"}])
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5  # nothing waited for room
    assert (logger.pending, logger.dropped) == (100, 100)
    logger.close()
    assert logger.logged == 100 and len(read_prediction_log(tmp_path)) == 100
    logger.log(_rows(5))  # after close: counted, not raised
    assert logger.dropped == 105


def test_an_unwritable_directory_is_survived_and_loses_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "predictions"
    directory.write_text("a file where the folder should be")  # unwritable, even for root
    logger = PredictionLogger(directory, queue_size=1000, flush_interval_s=0.02)
    logger.start()
    logger.log(_rows(10, "early"))
    _wait_for(lambda: logger.write_errors >= 2)  # it failed, and tried again
    logger.log(_rows(10, "during"))  # the caller never sees the error
    assert logger.logged == 0 and logger.pending == 20

    directory.unlink()  # the disk is back
    _wait_for(lambda: logger.logged == 20)
    logger.log(_rows(10, "late"))
    logger.close()
    assert (logger.logged, logger.dropped) == (30, 0)
    frame = read_prediction_log(directory)
    assert sorted(frame["request_id"]) == sorted(
        [f"{p}{i}" for p in ("early", "during", "late") for i in range(10)]
    )


def test_rows_kept_after_failures_count_against_the_bound(tmp_path: Path) -> None:
    directory = tmp_path / "predictions"
    directory.write_text("in the way")
    logger = PredictionLogger(directory, queue_size=100, flush_interval_s=0.02)
    logger.start()
    logger.log(_rows(80))
    _wait_for(lambda: logger.write_errors >= 1)
    logger.log(_rows(50, "more"))
    assert (logger.pending, logger.dropped) == (100, 30)
    started = time.monotonic()
    logger.close(timeout_s=0.3)  # still unwritable: close gives up at the timeout
    assert time.monotonic() - started < 2
    assert (logger.logged, logger.dropped, logger.pending) == (0, 130, 0)


def test_a_row_json_cannot_hold_is_dropped_and_nan_becomes_null(tmp_path: Path) -> None:
    with PredictionLogger(tmp_path, 100, 0.02) as logger:
        logger.log(
            [{"request_id": "bad", "value": object()}, {"request_id": "nan", "p": float("nan")}]
        )
    assert (logger.logged, logger.dropped) == (1, 1)
    (line,) = next(tmp_path.rglob("*.jsonl")).read_text().splitlines()
    assert json.loads(line)["p"] is None


def test_served_predictions_are_logged_by_contract_names(
    tmp_path: Path, contract: DataContract
) -> None:
    record_model = build_record_model(contract)
    record = record_model.model_validate({**example_record(contract), "udi": 12})
    answers = build_answer_models(contract)  # the answer says failure_probability, failure
    single = prediction_rows([record], answers.single.from_probability(0.8, 0.5, "3", "req-1"))
    batch = answers.batch.from_probabilities([0.1, 0.9], 0.5, "3", "req-2")
    with pytest.raises(ValueError):  # a caller's bug: one record for two answers
        prediction_rows([record], batch)
    with PredictionLogger(tmp_path, 100, 0.02) as logger:
        logger.log(single)
        logger.log(prediction_rows([record, record], batch))
    assert (logger.logged, logger.dropped) == (3, 0)
    frame = read_prediction_log(tmp_path, contract=contract)
    served = [c.name for c in served_columns(contract)]
    assert list(frame.columns) == [
        "time",
        "request_id",
        "model_version",
        "probability",  # the log's own names, whatever the answer calls them
        "predicted",
        "threshold",
        *served,
    ]
    assert frame["request_id"].tolist() == ["req-1", "req-2", "req-2"]
    assert frame["predicted"].tolist() == [True, False, True]
    assert frame["probability"].tolist() == [0.8, 0.1, 0.9]
    assert frame["UDI"].tolist() == [12, 12, 12]
    assert frame["Air temperature [K]"].tolist() == [300.0] * 3


def test_an_empty_log_reads_as_an_empty_frame_with_the_columns(
    tmp_path: Path, contract: DataContract
) -> None:
    frame = read_prediction_log(tmp_path / "never-written", contract=contract)
    assert frame.empty
    assert list(frame.columns)[:6] == [
        "time",
        "request_id",
        "model_version",
        "probability",
        "predicted",
        "threshold",
    ]
    assert "Torque [Nm]" in frame.columns and frame["Torque [Nm]"].dtype == "float64"
    assert str(frame["time"].dtype) == "datetime64[ns, UTC]"


def test_a_log_written_under_the_earlier_column_names_reads_with_the_current_ones(
    tmp_path: Path,
) -> None:
    part = tmp_path / "date=2026-11-05" / "hour=10" / "part-1-1.jsonl"
    part.parent.mkdir(parents=True)
    earlier = {"time": "2026-11-05T10:00:00Z", "request_id": "old", "model_version": "1"}
    current = {"time": "2026-11-05T10:00:01Z", "request_id": "new", "model_version": "2"}
    lines = [
        {**earlier, "failure_probability": 0.7, "failure": True, "threshold": 0.5},
        {**current, "probability": 0.2, "predicted": False, "threshold": 0.5},
    ]
    part.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    frame = read_prediction_log(tmp_path)
    assert frame["probability"].tolist() == [0.7, 0.2]
    assert frame["predicted"].tolist() == [True, False]
    assert "failure_probability" not in frame.columns and "failure" not in frame.columns
