"""The `ingest` stage end to end: params.yaml in, Parquet and metadata out."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from core.hashing import file_md5, file_sha256
from core.io import read_json
from pipelines import ingest as stage
from tests.conftest import CONTRACT_PATH
from tests.factories import make_valid_frame
from tests.pipelines.edges.test_sources import (
    CSV,
    EXPECTED,
    FAST_RETRY,
    PROXY_VARS,
    Reply,
    ScriptedServer,
)


def write_params(folder: Path, ingest: dict) -> None:
    (folder / "params.yaml").write_text(yaml.safe_dump({"ingest": ingest}), encoding="utf-8")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding a CSV source and a params.yaml that points at it."""
    (tmp_path / "source.csv").write_bytes(CSV)
    write_params(tmp_path, {"source": "file", "file": {"path": "source.csv"}})
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_main_writes_parquet_and_metadata(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        stage.main()
    data, metadata_path = project / stage.RAW_DATA, project / stage.RAW_METADATA
    pd.testing.assert_frame_equal(pd.read_parquet(data), EXPECTED)
    metadata = read_json(metadata_path)
    assert metadata["source"] == {"source": "file", "path": "source.csv"}
    assert metadata["rows"] == 3
    assert metadata["columns"] == ["udi", "torque", "failure"]
    assert metadata["dtypes"] == {"udi": "int64", "torque": "float64", "failure": "int64"}
    assert metadata["sha256"] == file_sha256(data)
    assert datetime.fromisoformat(metadata["ingested_at"]).utcoffset().total_seconds() == 0
    assert metadata["duration_s"] >= 0
    assert "ingested 3 rows x 3 columns from file" in caplog.text
    assert "stage ingest: succeeded" in caplog.text
    assert not [p.name for p in data.parent.iterdir() if p.name.endswith(".tmp")]


def test_same_data_gives_identical_parquet_bytes(project: Path) -> None:
    stage.main()
    first = (project / stage.RAW_DATA).read_bytes()
    stage.main()
    assert (project / stage.RAW_DATA).read_bytes() == first
    (project / "source.parquet").write_bytes(first)  # and the same rows via another format
    write_params(project, {"source": "file", "file": {"path": "source.parquet"}})
    stage.main()
    assert (project / stage.RAW_DATA).read_bytes() == first


def test_failing_source_exits_non_zero_without_output(tmp_path: Path) -> None:
    write_params(tmp_path, {"source": "file", "file": {"path": "absent.csv"}})
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.ingest"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "stage ingest failed: absent.csv: no such file (ingest.file.path)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / stage.RAW_DATA).exists()
    assert not (tmp_path / stage.RAW_METADATA).exists()


def test_config_error_names_the_key(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_params(project, {"source": "file", "fiel": {"path": "source.csv"}})
    with pytest.raises(SystemExit) as exit_info:
        stage.main()
    assert exit_info.value.code == 2  # bad config: an orchestrator never retries it
    assert "ingest.fiel: unknown key (did you mean 'file'?)" in caplog.text
    assert "Traceback" not in caplog.text


def test_mixed_type_column_is_named(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    with sqlite3.connect(project / "source.db") as connection:  # SQLite types per value
        connection.execute("CREATE TABLE machines (udi INTEGER, type)")
        connection.executemany("INSERT INTO machines VALUES (?, ?)", [(1, "L"), (2, 7)])
    connection.close()
    write_params(
        project,
        {"source": "sql", "sql": {"url": "sqlite:///source.db", "query": "SELECT * FROM machines"}},
    )
    with pytest.raises(SystemExit):
        stage.main()
    assert "column 'type' cannot be written as Parquet: it mixes Python types (int, str)" in (
        caplog.text
    )
    assert not stage.RAW_DATA.exists()
    assert not [p for p in stage.RAW_DATA.parent.iterdir() if p.name.endswith(".tmp")]


def test_truncated_download_writes_nothing(
    project: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    with ScriptedServer() as server:
        url = server.route("/data.csv", Reply(body=CSV[:20], declared_length=len(CSV)))
        write_params(project, {"source": "http", "http": {"url": url, "retry": FAST_RETRY}})
        with pytest.raises(SystemExit):
            stage.main()
    assert server.hits["/data.csv"] == FAST_RETRY["attempts"]
    assert "gave up after 3 attempt(s); last error: incomplete body" in caplog.text
    assert not (project / "data").exists()


# --- feedback batches ------------------------------------------------------------------


@pytest.fixture
def contract_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A source with the contract's columns, and params.yaml naming the project's contract."""
    make_valid_frame(50).to_parquet(tmp_path / "source.parquet", index=False)
    params = {
        "data": {"contract": str(CONTRACT_PATH)},
        "ingest": {"source": "file", "file": {"path": "source.parquet"}},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    (tmp_path / "data" / "feedback").mkdir(parents=True)
    (tmp_path / "data" / "feedback" / "README.md").write_text("labelled batches")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _write_batch(name: str, rows: int, first_udi: int, **columns: object) -> pd.DataFrame:
    frame = make_valid_frame(rows, seed=first_udi)
    frame["UDI"] = range(first_udi, first_udi + rows)
    frame = frame.assign(**columns)
    frame.to_parquet(Path("data/feedback") / name, index=False)
    return frame


def test_feedback_batches_are_appended_in_name_order(
    contract_project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write_batch("batch-20260102T0000.parquet", 20, first_udi=2001)  # written first, newer
    _write_batch("batch-20260101T0000.parquet", 10, first_udi=1001)
    with caplog.at_level(logging.INFO):
        stage.main()
    raw = pd.read_parquet(stage.RAW_DATA)
    assert raw["UDI"].tolist() == [*range(1, 51), *range(1001, 1011), *range(2001, 2021)]
    assert raw.dtypes.to_dict() == make_valid_frame(1).dtypes.to_dict()
    metadata = read_json(stage.RAW_METADATA)
    assert (metadata["rows"], metadata["source_rows"]) == (80, 50)
    batches = Path("data/feedback")
    assert metadata["feedback"] == {
        "directory": "data/feedback",
        "rows": 30,
        "batches": [
            {"name": p.name, "rows": rows, "md5": file_md5(p)}
            for p, rows in (
                (batches / "batch-20260101T0000.parquet", 10),
                (batches / "batch-20260102T0000.parquet", 20),
            )
        ],
    }
    assert (
        "appended 30 rows from 2 feedback batch(es) in data/feedback to 50 rows from the source"
        in caplog.text
    )
    assert "ingested 80 rows x 14 columns from file + 2 feedback batch(es) in" in caplog.text


def test_no_feedback_folder_means_no_feedback(
    contract_project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (contract_project / "data" / "feedback" / "README.md").unlink()
    (contract_project / "data" / "feedback").rmdir()
    with caplog.at_level(logging.INFO):
        stage.main()
    metadata = read_json(stage.RAW_METADATA)
    assert (metadata["rows"], metadata["source_rows"]) == (50, 50)
    assert metadata["feedback"] == {"directory": "data/feedback", "rows": 0, "batches": []}
    assert "no feedback batches in data/feedback" in caplog.text


def test_a_batch_missing_contract_columns_fails_naming_file_and_columns(
    contract_project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write_batch("batch-1.parquet", 5, first_udi=1001)
    frame = make_valid_frame(5).drop(columns=["Machine failure", "Product ID"])
    frame.to_parquet(Path("data/feedback/batch-2.parquet"), index=False)
    with pytest.raises(SystemExit) as exit_info:
        stage.main()
    assert exit_info.value.code == 1
    assert (
        "stage ingest failed: data/feedback/batch-2.parquet: missing column(s) the data "
        "contract 'milling' declares: 'Product ID', 'Machine failure'" in caplog.text
    )
    assert "Traceback" not in caplog.text
    assert not stage.RAW_DATA.exists() and not stage.RAW_METADATA.exists()


def test_extra_batch_columns_are_dropped_with_a_warning(
    contract_project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write_batch("batch-1.parquet", 5, first_udi=1001, probability=0.2, model_version="v3")
    with caplog.at_level(logging.INFO):
        stage.main()
    assert list(pd.read_parquet(stage.RAW_DATA).columns) == list(make_valid_frame(1).columns)
    assert (
        "data/feedback/batch-1.parquet: dropping column(s) the source does not have: "
        "'probability', 'model_version'" in caplog.text
    )
