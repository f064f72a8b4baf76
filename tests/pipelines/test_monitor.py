"""The `monitor` stage end to end in a temporary project folder (no DVC, no network)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines import monitor
from tests.conftest import CONTRACT_PATH

SAMPLE_ROWS = 1500


def make_split(rows: int, seed: int, shift_sd: float = 0.0) -> pd.DataFrame:
    """A split shaped like the milling data; `shift_sd` moves three numeric features."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "UDI": np.arange(1, rows + 1),
            "Type": rng.choice(["L", "M", "H"], size=rows, p=[0.6, 0.3, 0.1]),
            "Air temperature [K]": rng.normal(300 + 2 * shift_sd, 2, rows),
            "Process temperature [K]": rng.normal(310 + 1.5 * shift_sd, 1.5, rows),
            "Rotational speed [rpm]": rng.normal(1540, 180, rows),
            "Torque [Nm]": rng.normal(40 + 10 * shift_sd, 10, rows),
            "Tool wear [min]": rng.uniform(0, 250, rows),
            "Machine failure": (rng.random(rows) < 0.03).astype(int),
        }
    )


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with params.yaml and both splits; the holdout has drifted."""
    params = {
        "data": {"contract": str(CONTRACT_PATH), "seed": 42},
        "monitor": {"drift_share": 0.5, "sample_rows": SAMPLE_ROWS},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monitor.REFERENCE_PATH.parent.mkdir(parents=True)
    make_split(4000, seed=1).to_parquet(monitor.REFERENCE_PATH, index=False)
    make_split(2000, seed=2, shift_sd=3.0).to_parquet(monitor.CURRENT_PATH, index=False)
    return tmp_path


def test_stage_writes_report_metrics_and_decision(project: Path, caplog):
    caplog.set_level(logging.INFO)
    monitor.main()

    html = monitor.HTML_PATH.read_text(encoding="utf-8")
    assert html.lstrip().startswith("<!DOCTYPE html>") and "Torque [Nm]" in html
    metrics = json.loads(monitor.METRICS_PATH.read_text(encoding="utf-8"))
    assert metrics["dataset_drift"] is True
    assert metrics["drifted_columns"] == [
        "Air temperature [K]",
        "Process temperature [K]",
        "Torque [Nm]",
    ]
    assert metrics["reference_rows"] == metrics["current_rows"] == SAMPLE_ROWS  # sampled
    decision = json.loads(monitor.DECISION_PATH.read_text(encoding="utf-8"))
    assert decision["retrain"] is True
    assert "Torque [Nm]" in decision["reasons"][0]
    assert sorted(p.name for p in monitor.REPORT_DIR.iterdir()) == [
        "decision.json",
        "drift.html",
        "metrics.json",
    ]  # no temporary files left behind

    log = caplog.text
    assert "1500 current rows (of 2000) with 1500 reference rows (of 4000)" in log
    assert "drifted columns: 3 of 6" in log and "decision: retrain" in log
    assert "drift detection: done in" in log


def test_stage_output_is_deterministic(project: Path):
    monitor.main()
    first = monitor.METRICS_PATH.read_bytes(), monitor.DECISION_PATH.read_bytes()
    monitor.main()
    assert (monitor.METRICS_PATH.read_bytes(), monitor.DECISION_PATH.read_bytes()) == first


def test_current_window_missing_a_feature_fails_naming_it(project: Path, caplog):
    make_split(2000, seed=2).drop(columns="Torque [Nm]").to_parquet(
        monitor.CURRENT_PATH, index=False
    )
    with pytest.raises(SystemExit) as exit_info:
        monitor.main()
    assert exit_info.value.code == 1
    assert "current window is missing feature column(s) ['Torque [Nm]']" in caplog.text
    assert "Traceback" not in caplog.text
    assert not monitor.REPORT_DIR.exists()


def test_absent_split_fails_naming_the_file(project: Path, caplog):
    monitor.CURRENT_PATH.unlink()
    with pytest.raises(SystemExit):
        monitor.main()
    assert "data/split/holdout.parquet: not found" in caplog.text
