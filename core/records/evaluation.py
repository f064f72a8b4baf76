"""What the evaluate stage measured on the holdout (`reports/evaluate/metrics.json`).

The file keeps the shape `dvc metrics` reads: `holdout`, `operating_point` and one
`by_<column>` block per categorical feature (named by `segment_key`). The
deploy stage reads it through `read_evaluation`, which gathers the `by_` blocks into
`segments`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import model_validator

from core.paths import EVALUATION
from core.records import Record, read_record
from core.records.deploy import Metrics

WRITER = "the evaluate stage (dvc repro evaluate)"
SEGMENT_PREFIX = "by_"


class OperatingPointRecord(Record):
    """The label threshold chosen on out-of-fold predictions, and what it achieved there."""

    threshold: float
    goal: str
    at_least: float | None
    recall: float
    precision: float
    f1: float
    met: bool
    note: str


class EvaluationReport(Record):
    holdout: Metrics
    operating_point: OperatingPointRecord
    segments: dict[str, dict[str, Metrics]] = {}  # noqa: RUF012  "by_<column>" -> value -> metrics

    @model_validator(mode="before")
    @classmethod
    def _gather_segments(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or "segments" in raw:
            return raw
        keys = [key for key in raw if str(key).startswith(SEGMENT_PREFIX)]
        return {
            **{key: value for key, value in raw.items() if key not in keys},
            "segments": {key: raw[key] for key in keys},
        }


def segment_key(column: str) -> str:
    """The file's key for the metrics by `column`'s values: 'Product type' -> 'by_product_type'."""
    return SEGMENT_PREFIX + column.lower().replace(" ", "_")


def read_evaluation(path: Path = EVALUATION) -> EvaluationReport:
    return read_record(path, EvaluationReport, writer=WRITER)
