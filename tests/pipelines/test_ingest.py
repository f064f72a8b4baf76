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

from pipelines import ingest as stage
from pipelines.io import file_sha256, read_json
from tests.pipelines.test_sources import (
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
    assert exit_info.value.code == 1
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
