"""The validate stage end to end in a temporary project folder: outputs on success, on
quarantine and on failure (non-zero exit, readable message, no validated dataset)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest
import yaml

from core.paths import DATA_DOCS_DIR, QUARANTINE, RAW_DATA, VALIDATED_DATA, VALIDATION_SUMMARY
from features.data_docs import SUMMARY_PAGE
from pipelines import validate as stage
from tests.conftest import CONTRACT_PATH
from tests.factories import make_valid_frame


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with params.yaml pointing at the project's contract."""
    monkeypatch.chdir(tmp_path)
    _write_params(quarantine=False)
    return tmp_path


def _write_params(quarantine: bool) -> None:
    params = {
        "data": {"contract": str(CONTRACT_PATH)},
        "validate": {"quarantine": {"enabled": quarantine, "max_share": 0.05}},
    }
    Path("params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")


def _write_raw(frame: pd.DataFrame) -> None:
    RAW_DATA.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(RAW_DATA, index=False)


def _run_failing(caplog: pytest.LogCaptureFixture) -> str:
    with caplog.at_level(logging.INFO), pytest.raises(SystemExit) as exit_info:
        stage.main()
    assert exit_info.value.code == 1
    return caplog.text


def test_valid_data_passes_and_writes_every_output(project: Path) -> None:
    frame = make_valid_frame()
    _write_raw(frame)

    stage.main()

    pd.testing.assert_frame_equal(pd.read_parquet(VALIDATED_DATA), frame)
    quarantine = pd.read_parquet(QUARANTINE)
    assert quarantine.empty and list(quarantine.columns) == list(frame.columns)
    assert (DATA_DOCS_DIR / "index.html").is_file()
    first = VALIDATION_SUMMARY.read_bytes()
    summary = json.loads(first)
    assert summary["success"] is True
    assert summary["rows"] == summary["rows_validated"] == 2000
    assert summary["rows_quarantined"] == 0

    stage.main()  # the metric is deterministic: a second run writes the same bytes
    assert VALIDATION_SUMMARY.read_bytes() == first


def test_failure_exits_non_zero_and_writes_no_validated_data(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write_raw(make_valid_frame().drop(columns=["Torque [Nm]"]))
    VALIDATED_DATA.parent.mkdir(parents=True)
    VALIDATED_DATA.write_bytes(b"stale output of an earlier run")

    log = _run_failing(caplog)

    assert "stage validate failed: data contract 'milling': 1 of 65 expectations failed" in log
    assert "column 'Torque [Nm]': missing (the data contract requires it)" in log
    assert "Traceback" not in log
    assert not VALIDATED_DATA.exists()
    assert not QUARANTINE.exists()
    summary = json.loads(VALIDATION_SUMMARY.read_text(encoding="utf-8"))
    assert summary["success"] is False and summary["rows_validated"] == 0
    assert (DATA_DOCS_DIR / "index.html").is_file()  # the report is there to read
    assert f"(details: {DATA_DOCS_DIR / SUMMARY_PAGE})" in log  # the page that reads offline
    assert (DATA_DOCS_DIR / SUMMARY_PAGE).is_file()


def test_quarantine_sets_bad_rows_aside(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write_params(quarantine=True)
    frame = make_valid_frame()
    frame.loc[[5, 6, 7], "Torque [Nm]"] = -2.0
    _write_raw(frame)

    with caplog.at_level(logging.INFO):
        stage.main()

    assert len(pd.read_parquet(VALIDATED_DATA)) == 1997
    quarantined = pd.read_parquet(QUARANTINE)
    assert quarantined["UDI"].tolist() == [6, 7, 8]
    assert "quarantined 3 of 2000 rows" in caplog.text
    assert "'Torque [Nm]' out of range [0, 200]: 3" in caplog.text
    summary = json.loads(VALIDATION_SUMMARY.read_text(encoding="utf-8"))
    assert summary["quarantine"]["applied"] is True
    assert summary["rows_quarantined"] == 3


def test_quarantine_over_the_limit_fails(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write_params(quarantine=True)
    frame = make_valid_frame()
    frame.loc[frame.index[:200], "Type"] = "X"
    _write_raw(frame)

    log = _run_failing(caplog)

    assert "quarantine refused: 200 of 2000 rows (10.00%)" in log
    assert not VALIDATED_DATA.exists() and not QUARANTINE.exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "data/raw/dataset.parquet: not found (run the ingest stage first)"),
        (b"", "data/raw/dataset.parquet: the file is empty (0 bytes)"),
        (b"not parquet", "data/raw/dataset.parquet: cannot be read as Parquet"),
    ],
)
def test_absent_empty_or_damaged_file_fails_clearly(
    content: bytes | None, expected: str, project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if content is not None:
        RAW_DATA.parent.mkdir(parents=True)
        RAW_DATA.write_bytes(content)

    log = _run_failing(caplog)

    assert expected in log and "Traceback" not in log
    assert json.loads(VALIDATION_SUMMARY.read_text(encoding="utf-8"))["success"] is False
    assert not VALIDATED_DATA.exists()


def test_empty_table_fails_clearly(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write_raw(make_valid_frame().iloc[0:0])
    log = _run_failing(caplog)
    assert "dataset: 0 rows (empty), expected between 1000 and 5000000" in log
