"""The evaluate stage's metrics file, read back as a record: segments gathered, errors named."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.io import write_json
from core.records import RecordError
from core.records.evaluation import read_evaluation, segment_key

POINT = {
    "threshold": 0.3, "goal": "recall", "at_least": 0.9, "recall": 0.91, "precision": 0.2,
    "f1": 0.33, "met": True, "note": "recall >= 0.900 met",
}  # fmt: skip


def test_the_by_blocks_become_segments(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    key = segment_key("Product type")
    write_json(
        {
            "holdout": {"rows": 100, "roc_auc": float("nan")},
            "operating_point": POINT,
            key: {"A": {"rows": 60, "roc_auc": None}},
        },
        path,
    )
    report = read_evaluation(path)
    assert key == "by_product_type"
    assert report.segments == {key: {"A": {"rows": 60, "roc_auc": None}}}
    assert report.operating_point.threshold == 0.3 and report.holdout["rows"] == 100


def test_a_file_without_its_operating_point_names_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    write_json({"holdout": {"rows": 100}}, path)
    with pytest.raises(
        RecordError, match=r"operating_point: Field required; .*\(dvc repro evaluate\) rewrites it"
    ):
        read_evaluation(path)
