"""Deploy's data for the gate: the recent window, read from the feedback folder.

The registry, the serving store and the whole stage run in tests/e2e.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import DeployConfig, SyntheticSourceConfig
from features.contract import DataContract
from features.synthetic import generate_process_data
from pipelines import deploy


def _rows(rows: int, seed: int, first_udi: int = 1, scenario: str = "none") -> pd.DataFrame:
    config = SyntheticSourceConfig(rows=rows, seed=seed, scenario=scenario)
    return generate_process_data(config, first_udi=first_udi)


def _feedback(folder: Path, *batches: tuple[str, pd.DataFrame]) -> Path:
    folder.mkdir()
    for name, frame in batches:
        frame.to_parquet(folder / name, index=False)
    return folder


def _scores(y: np.ndarray, signal: float, seed: int) -> np.ndarray:
    return signal * y + np.random.default_rng(seed).normal(size=len(y))


def test_the_recent_window_is_the_newest_batchs_holdout_rows(
    tmp_path: Path, contract: DataContract, caplog: pytest.LogCaptureFixture
) -> None:
    older = _rows(400, seed=3, first_udi=1_000_001)
    newest = _rows(600, seed=4, first_udi=2_000_001, scenario="failure_mechanism")
    folder = _feedback(
        tmp_path / "feedback",
        ("batch-20260102.parquet", newest),
        ("batch-20260101.parquet", older),
    )
    holdout = pd.concat([_rows(500, seed=5), older.iloc[:100], newest.iloc[:300]])
    y = holdout[contract.label].to_numpy()
    challenger, champion = _scores(y, 3.0, seed=1), _scores(y, 1.0, seed=2)

    with caplog.at_level(logging.INFO):
        window = deploy._recent_window(
            folder, contract, holdout, challenger, champion, DeployConfig()
        )

    assert window is not None
    assert (window.batch, window.rows) == ("batch-20260102.parquet", 300)
    assert window.positives == int(newest[contract.label].iloc[:300].sum())
    assert window.judged and window.passed and window.delta > 0
    assert (
        f"recent window: 300 holdout rows ({window.positives} positives) from "
        f"{folder / 'batch-20260102.parquet'}" in caplog.text
    )


def test_without_feedback_the_recent_window_does_not_apply(
    tmp_path: Path, contract: DataContract, caplog: pytest.LogCaptureFixture
) -> None:
    holdout = _rows(200, seed=5)
    scores = np.zeros(len(holdout))
    with caplog.at_level(logging.INFO):
        window = deploy._recent_window(
            tmp_path / "absent", contract, holdout, scores, scores, DeployConfig()
        )
    assert window is None
    assert (
        f"no feedback batches in {tmp_path / 'absent'}: the recent-window check does not apply"
        in caplog.text
    )


def test_bentoml_build_finds_the_pinned_uv_without_path_or_download(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the venv's bin off PATH (as when DVC runs a stage from elsewhere), the installed
    uv package is found: BentoML runs `python -m uv` and installs nothing."""
    from bentoml._internal.configuration import get_uv_command

    monkeypatch.setenv("PATH", "/nonexistent")
    assert deploy.uv_for_bentoml().endswith(" -m uv")
    get_uv_command.cache_clear()
    try:
        assert get_uv_command()[1:] == ["-m", "uv"]  # BentoML's own lookup agrees
    finally:
        get_uv_command.cache_clear()


def test_a_missing_uv_stops_the_build_instead_of_downloading_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_version = deploy.importlib.metadata.version

    def version(name: str) -> str:
        if name == "uv":
            raise deploy.importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(deploy.importlib.metadata, "version", version)
    with pytest.raises(deploy.BentoBuildError, match=r"bentoml build needs uv, and would pip-inst"):
        deploy.uv_for_bentoml()
