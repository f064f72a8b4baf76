"""The feedback folder: listing batches, reading them and aligning them to the source."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from features.contract import DataContract, parse_contract
from pipelines.edges.feedback import (
    FeedbackBatch,
    FeedbackError,
    align_batch,
    append_feedback,
    list_batches,
    read_batch,
    read_ids,
    row_id_column,
)
from tests.factories import make_valid_frame


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
