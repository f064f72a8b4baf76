"""The validation report: a deterministic, JSON-ready summary of immutable results."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from core.config import ValidateConfig
from features.contract import DataContract
from features.expectations import validate_frame
from features.validation import ValidationReport

CONFIG = ValidateConfig()  # min_rows 1000, label_rate [0.005, 0.25], unique ids


def test_summary_is_plain_json_and_deterministic(
    valid_frame: pd.DataFrame, valid_report: ValidationReport, contract: DataContract
) -> None:
    again = validate_frame(valid_frame, contract, CONFIG)
    text = json.dumps(valid_report.summary(), sort_keys=True, allow_nan=False)
    assert text == json.dumps(again.summary(), sort_keys=True, allow_nan=False)
    summary = valid_report.summary()
    assert summary["success"] is True
    assert summary["rows"] == 2000
    assert summary["expectations"] == len(summary["results"]) == 65
    first = summary["results"][1]
    assert set(first) >= {
        "expectation",
        "column",
        "success",
        "unexpected_count",
        "unexpected_percent",
        "examples",
    }
    assert "time" not in text and "run_id" not in text


def test_results_are_immutable(valid_report: ValidationReport) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        valid_report.results[0].success = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        valid_report.results[0].kwargs["column"] = "other"  # type: ignore[index]
