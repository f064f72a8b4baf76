"""Atomic writes: a writer that fails leaves the old file and no temporary behind."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from core.io import read_table, table_format, write_atomic, write_json, write_parquet


def test_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "metrics.json"
    write_json({"auc": 0.9}, target)

    def broken(tmp: Path) -> None:
        tmp.write_text('{"auc": 0.')  # half written, then the writer dies
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        write_atomic(target, broken)
    assert target.read_text() == '{\n  "auc": 0.9\n}\n'
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]


def test_outputs_honour_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = write_json({}, tmp_path / "a.json")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_parquet_bytes_are_deterministic(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    first = write_parquet(frame, tmp_path / "1.parquet").read_bytes()
    second = write_parquet(frame, tmp_path / "2.parquet").read_bytes()
    assert first == second
    pd.testing.assert_frame_equal(read_table(tmp_path / "1.parquet"), frame)


def test_unknown_suffix_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"cannot tell the format from suffix '\.xlsx'"):
        table_format("data.xlsx")
