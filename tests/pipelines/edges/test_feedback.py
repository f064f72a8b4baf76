"""The feedback folder: listing batches, reading them and aligning them to the source."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pandas as pd
import pytest

from core.hashing import file_md5
from features.contract import DataContract, parse_contract
from pipelines.edges.feedback import (
    FeedbackBatch,
    FeedbackError,
    align_batch,
    append_feedback,
    batch_file_name,
    list_batches,
    read_batch,
    read_ids,
    row_id_column,
    select_feedback_rows,
    write_feedback_batch,
)
from tests.factories import make_valid_frame

STARTED = dt.datetime(2026, 11, 25, 6, 37, 0, 123000, tzinfo=dt.UTC)


def _batch(rows: int = 5, first_udi: int = 1001, seed: int = 1) -> pd.DataFrame:
    frame = make_valid_frame(rows, seed=seed)
    frame["UDI"] = range(first_udi, first_udi + rows)
    return frame


def test_batches_are_listed_by_name_and_other_files_ignored(tmp_path: Path) -> None:
    for name in ("batch-20260102.parquet", "batch-20260101.parquet", "README.md", "x.parquet"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "batch-folder.parquet").mkdir()
    assert [p.name for p in list_batches(tmp_path)] == [
        "batch-20260101.parquet",
        "batch-20260102.parquet",
    ]


def test_an_absent_folder_holds_no_feedback(tmp_path: Path) -> None:
    assert list_batches(tmp_path / "absent") == []


def test_a_file_where_the_folder_should_be_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "feedback").write_text("not a folder")
    with pytest.raises(FeedbackError) as error:
        list_batches(tmp_path / "feedback")
    assert str(error.value) == f"{tmp_path / 'feedback'}: not a folder (ingest.feedback.directory)"


def test_read_batch_hashes_and_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "batch-1.parquet"
    _batch().to_parquet(path, index=False)
    batch = read_batch(path)
    assert batch.name == "batch-1.parquet" and len(batch.frame) == 5
    assert batch.describe() == {"name": "batch-1.parquet", "rows": 5, "md5": batch.md5}
    assert len(batch.md5) == 32
    pd.testing.assert_series_equal(read_ids(path, "UDI"), batch.frame["UDI"])


def test_a_damaged_batch_is_named(tmp_path: Path) -> None:
    path = tmp_path / "batch-1.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(FeedbackError, match=r"batch-1\.parquet: cannot be read as Parquet: "):
        read_batch(path)


def test_a_batch_missing_contract_columns_names_file_and_columns(contract: DataContract) -> None:
    batch = _batch().drop(columns=["Torque [Nm]", "TWF"])
    with pytest.raises(FeedbackError) as error:
        align_batch(batch, make_valid_frame(10), contract, "data/feedback/batch-1.parquet")
    assert str(error.value) == (
        "data/feedback/batch-1.parquet: missing column(s) the data contract 'milling' "
        "declares: 'Torque [Nm]', 'TWF'"
    )


def test_extra_columns_are_dropped_with_a_warning(
    contract: DataContract, caplog: pytest.LogCaptureFixture
) -> None:
    source = make_valid_frame(10)
    batch = _batch().assign(served_at="2026-01-01", probability=0.3)
    with caplog.at_level(logging.WARNING):
        aligned = align_batch(batch, source, contract, "batch-1.parquet")
    assert list(aligned.columns) == list(source.columns)
    assert (
        "batch-1.parquet: dropping column(s) the source does not have: 'served_at', "
        "'probability'" in caplog.text
    )


def test_columns_follow_the_source_order_and_dtypes(contract: DataContract) -> None:
    source = make_valid_frame(10)
    batch = _batch()[list(reversed(source.columns))]
    batch["UDI"] = batch["UDI"].astype("float64")  # e.g. written by a tool that widens ints
    batch["Tool wear [min]"] = batch["Tool wear [min]"].astype("int64")
    batch["Machine failure"] = batch["Machine failure"].astype("int32")
    aligned = align_batch(batch, source, contract, "batch-1.parquet")
    assert list(aligned.columns) == list(source.columns)
    assert aligned.dtypes.to_dict() == source.dtypes.to_dict()
    assert aligned["UDI"].tolist() == list(range(1001, 1006))


def test_a_value_that_cannot_take_the_source_dtype_is_named(contract: DataContract) -> None:
    batch = _batch()
    batch["Torque [Nm]"] = ["40.1", "n/a", "39", "41", "42"]
    with pytest.raises(FeedbackError) as error:
        align_batch(batch, make_valid_frame(10), contract, "batch-1.parquet")
    assert str(error.value).startswith(
        "batch-1.parquet: column 'Torque [Nm]' holds object values that cannot be cast to the "
        "source's float64: "
    )


def test_source_columns_outside_the_contract_are_left_empty_in_batch_rows(
    contract: DataContract, caplog: pytest.LogCaptureFixture
) -> None:
    source = make_valid_frame(3).assign(site="plant-1")
    with caplog.at_level(logging.WARNING):
        combined = append_feedback(
            source, [FeedbackBatch(Path("batch-1.parquet"), "0" * 32, _batch(2))], contract
        )
    assert combined["site"].tolist()[:3] == ["plant-1"] * 3
    assert combined["site"].isna().tolist()[3:] == [True, True]
    assert "batch-1.parquet: no column(s) 'site'; left empty in its rows" in caplog.text


def test_append_keeps_the_source_first_then_batches_in_order(contract: DataContract) -> None:
    source = make_valid_frame(3)
    batches = [
        FeedbackBatch(Path("batch-a.parquet"), "0" * 32, _batch(2, first_udi=100)),
        FeedbackBatch(Path("batch-b.parquet"), "1" * 32, _batch(2, first_udi=200)),
    ]
    combined = append_feedback(source, batches, contract)
    assert combined["UDI"].tolist() == [1, 2, 3, 100, 101, 200, 201]
    assert combined.index.tolist() == list(range(7))
    assert append_feedback(source, [], contract) is source


def test_inputs_are_not_changed(contract: DataContract) -> None:
    source, batch = make_valid_frame(3), _batch(2)[list(reversed(make_valid_frame(1).columns))]
    before = source.copy(), batch.copy()
    append_feedback(source, [FeedbackBatch(Path("batch-1.parquet"), "0" * 32, batch)], contract)
    pd.testing.assert_frame_equal(source, before[0])
    pd.testing.assert_frame_equal(batch, before[1])


def test_rows_are_matched_by_the_unique_id(contract: DataContract) -> None:
    assert row_id_column(contract) == "UDI"
    no_unique_id = parse_contract(
        {
            "name": "plain",
            "columns": [
                {"name": "id", "dtype": "integer", "role": "id"},
                {"name": "x", "dtype": "float"},
                {"name": "y", "dtype": "integer", "role": "label"},
            ],
        }
    )
    with pytest.raises(FeedbackError) as error:
        row_id_column(no_unique_id)
    assert str(error.value) == (
        "the data contract 'plain' declares no unique id column (role id, unique: true), "
        "so holdout rows cannot be matched to feedback batches"
    )


# --- writing a window's new labelled rows as a batch (lifecycle watch) -------------------


def _window(ids: list[int]) -> pd.DataFrame:
    frame = make_valid_frame(rows=len(ids), seed=1)
    frame["UDI"] = ids
    return frame


def test_feedback_rows_leave_out_known_repeated_and_unlabelled_ids(
    contract: DataContract,
) -> None:
    window = _window([10, 11, 12, 12, 13, 14])
    window.loc[5, "Machine failure"] = None  # id 14: no label yet
    window["request_id"] = "r"  # a log column: not a contract column

    rows, counts = select_feedback_rows(window, {11}, contract)

    assert rows["UDI"].tolist() == [10, 12, 13]
    assert rows.loc[1].equals(window.loc[3, contract.column_names].rename(1))  # the newest 12
    assert list(rows.columns) == contract.column_names
    assert counts == {"dropped_unlabelled": 1, "dropped_duplicate": 1, "dropped_known": 1}


def test_a_window_without_every_contract_column_is_refused(contract: DataContract) -> None:
    window = _window([1, 2]).drop(columns=["TWF", "OSF"])

    with pytest.raises(FeedbackError) as caught:
        select_feedback_rows(window, set(), contract)

    assert str(caught.value) == (
        "data/monitor/window_labelled.parquet lacks contract column(s) ['TWF', 'OSF']; a "
        "feedback batch needs every column of the contract (are the label batches complete? "
        "see monitor.labels.directory)"
    )


def test_a_window_with_gaps_in_required_columns_is_refused(contract: DataContract) -> None:
    window = _window([1, 2, 3]).astype({"HDF": "float64"})
    window.loc[[0, 2], "HDF"] = None  # the labels of two rows lacked the failure modes
    window.loc[1, "Product ID"] = None  # ids are optional in requests: not a gap

    with pytest.raises(FeedbackError) as caught:
        select_feedback_rows(window, set(), contract)

    assert str(caught.value) == (
        "data/monitor/window_labelled.parquet has labelled rows without a value in required "
        "column(s) 'HDF' (2 rows); a feedback batch needs them all (are the label batches "
        "complete? see monitor.labels.directory)"
    )


def test_the_contract_needs_a_unique_row_id(contract: DataContract) -> None:
    raw = contract.model_dump()
    raw["columns"] = [{**column, "unique": False} for column in raw["columns"]]
    no_unique_id = DataContract.model_validate(raw)

    with pytest.raises(FeedbackError) as caught:
        select_feedback_rows(_window([1]), set(), no_unique_id)

    assert "declares no unique id column (role id, unique: true)" in str(caught.value)


def test_the_input_window_is_not_changed(contract: DataContract) -> None:
    window = _window([1, 1, 2])
    before = window.copy()

    select_feedback_rows(window, {2}, contract)

    pd.testing.assert_frame_equal(window, before)


def test_a_feedback_batch_holds_only_new_rows(tmp_path: Path, contract: DataContract) -> None:
    feedback = tmp_path / "feedback"
    feedback.mkdir()
    (feedback / "README.md").write_text("not a batch")
    _window([1, 2, 3]).to_parquet(feedback / "batch-20261124T000000000Z.parquet", index=False)
    window_path = tmp_path / "window_labelled.parquet"
    _window([2, 3, 4, 5]).to_parquet(window_path, index=False)

    batch, counts = write_feedback_batch(window_path, feedback, contract, STARTED)

    assert batch is not None
    assert batch.path == feedback / "batch-20261125T063700123Z.parquet"
    assert (batch.rows, batch.dropped_known, counts["dropped_known"]) == (2, 2, 2)
    assert batch.md5 == file_md5(batch.path)
    written = pd.read_parquet(batch.path)
    assert written["UDI"].tolist() == [4, 5]
    assert list(written.columns) == contract.column_names
    assert sorted(p.name for p in feedback.iterdir()) == [
        "README.md",
        "batch-20261124T000000000Z.parquet",
        "batch-20261125T063700123Z.parquet",
    ]  # no temporary file left behind


def test_no_batch_when_every_row_is_known(tmp_path: Path, contract: DataContract) -> None:
    feedback = tmp_path / "feedback"
    feedback.mkdir()
    _window([1, 2]).to_parquet(feedback / "batch-a.parquet", index=False)
    window_path = tmp_path / "window.parquet"
    _window([2, 1]).to_parquet(window_path, index=False)

    batch, counts = write_feedback_batch(window_path, feedback, contract, STARTED)

    assert batch is None
    assert counts["dropped_known"] == 2
    assert sorted(p.name for p in feedback.iterdir()) == ["batch-a.parquet"]


def test_a_missing_window_file_is_named(tmp_path: Path, contract: DataContract) -> None:
    with pytest.raises(FeedbackError) as caught:
        write_feedback_batch(tmp_path / "nope.parquet", tmp_path, contract, STARTED)

    assert str(caught.value) == (
        f"{tmp_path / 'nope.parquet'}: not found; the monitor stage writes the window's "
        "labelled rows there"
    )


def test_batch_file_names_sort_by_time() -> None:
    later = STARTED + dt.timedelta(milliseconds=1)
    assert batch_file_name(STARTED) == "batch-20261125T063700123Z.parquet"
    assert (
        batch_file_name(later, "sensor_offset") == "batch-20261125T063700124Z-sensor_offset.parquet"
    )
    assert batch_file_name(STARTED) < batch_file_name(later)
