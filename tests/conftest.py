"""Shared fixtures: the project's contract and the real AI4I 2020 file (when present)."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.contract import DataContract, load_contract

pytest_plugins = ["tests.mlflow_server"]  # the real `mlflow server` fixture

ROOT = Path(__file__).resolve().parents[1]
CONTRACT_PATH = ROOT / "features" / "contracts" / "milling.yaml"
REAL_AI4I = ROOT.parent / "shared" / "datasets" / "ai4i2020.csv"


@pytest.fixture(scope="session")
def contract() -> DataContract:
    return load_contract(CONTRACT_PATH)


@pytest.fixture(scope="session")
def real_ai4i_path() -> Path:
    if not REAL_AI4I.exists():
        pytest.skip(f"real AI4I 2020 data not found at {REAL_AI4I} (../shared is absent)")
    return REAL_AI4I
