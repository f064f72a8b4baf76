"""Quarantine sets aside only row-level failures and agrees with Great Expectations' counts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from core.config import ValidateConfig
from features.contract import DataContract
from features.expectations import validate_frame
from features.quarantine import check_dataset, quarantine_rows, row_rule_masks
from features.validation import ROW_RULES
from tests.features.conftest import QUARANTINE_ON, ROW_CORRUPTIONS, with_bad_rows

CONFIG = ValidateConfig()  # min_rows 1000, label_rate [0.005, 0.25], unique ids


def test_row_masks_agree_with_great_expectations(
    valid_frame: pd.DataFrame, contract: DataContract
) -> None:
    frame = with_bad_rows(valid_frame)
    frame.loc[20, "Torque [Nm]"] = np.nan  # a null is not also out of range
    report = validate_frame(frame, contract, CONFIG)
    masks = row_rule_masks(frame, contract)

    row_results = [r for r in report.results if r.rule in ROW_RULES]
    assert {(r.rule, r.column) for r in row_results} == set(masks)
    for result in row_results:
        assert result.unexpected_count == masks[(result.rule, result.column)].sum(), result
    assert report.quarantinable


def test_quarantine_rows_splits_only_row_level_failures(
    valid_frame: pd.DataFrame, contract: DataContract
) -> None:
    frame = with_bad_rows(valid_frame)
    before = frame.copy()
    good, bad = quarantine_rows(frame, contract)

    assert sorted(bad.index) == sorted(ROW_CORRUPTIONS)
    assert len(good) + len(bad) == len(frame)
    assert list(good.columns) == list(bad.columns) == list(frame.columns)
    pd.testing.assert_frame_equal(frame, before)  # pure: the input is untouched


def test_quarantine_ignores_missing_columns_and_wrong_types(
    valid_frame: pd.DataFrame, contract: DataContract
) -> None:
    frame = valid_frame.drop(columns=["Type"])
    frame["Torque [Nm]"] = frame["Torque [Nm]"].astype(object)
    frame.loc[0, "Torque [Nm]"] = "abc"
    good, bad = quarantine_rows(frame, contract)
    assert bad.empty and len(good) == len(frame)


def test_few_bad_rows_are_quarantined(valid_frame: pd.DataFrame, contract: DataContract) -> None:
    outcome = check_dataset(with_bad_rows(valid_frame), contract, QUARANTINE_ON)

    assert outcome.success, outcome.message()
    assert sorted(outcome.quarantined.index) == sorted(ROW_CORRUPTIONS)
    assert len(outcome.validated) == len(valid_frame) - len(ROW_CORRUPTIONS)
    assert outcome.after_quarantine is not None and outcome.after_quarantine.success
    assert "quarantined 5 of 2000 rows (0.25%" in outcome.message()
    summary = outcome.summary()
    assert summary["quarantine"]["applied"] is True
    assert summary["rows_quarantined"] == 5 and summary["rows_validated"] == 1995
    assert summary["quarantine"]["reasons"]["'Type' not in ['L', 'M', 'H']"] == 1
    json.dumps(summary, allow_nan=False)


def test_too_many_bad_rows_fail(valid_frame: pd.DataFrame, contract: DataContract) -> None:
    frame = valid_frame.copy()
    frame.loc[frame.index[:150], "Torque [Nm]"] = -1.0  # 7.5 % of the rows
    outcome = check_dataset(frame, contract, QUARANTINE_ON)

    assert not outcome.success and outcome.validated is None
    assert (
        "quarantine refused: 150 of 2000 rows (7.50%) break row-level rules, more than "
        "validate.quarantine.max_share (5.00%)"
    ) in outcome.message()
    assert outcome.summary()["quarantine"]["applied"] is False


def test_missing_column_is_never_quarantined(
    valid_frame: pd.DataFrame, contract: DataContract
) -> None:
    frame = with_bad_rows(valid_frame).drop(columns=["Type"])
    outcome = check_dataset(frame, contract, QUARANTINE_ON)

    assert not outcome.success
    assert "column 'Type': missing" in outcome.message()
    assert "quarantine cannot help" in outcome.message()
    assert outcome.summary()["rows_quarantined"] == 0


def test_quarantine_is_off_by_default(valid_frame: pd.DataFrame, contract: DataContract) -> None:
    outcome = check_dataset(with_bad_rows(valid_frame), contract, CONFIG)
    assert not outcome.success
    assert "quarantine" not in outcome.message()


def test_rows_kept_must_still_pass_the_whole_suite(
    valid_frame: pd.DataFrame, contract: DataContract
) -> None:
    config = ValidateConfig(min_rows=1999, quarantine={"enabled": True, "max_share": 0.05})
    outcome = check_dataset(with_bad_rows(valid_frame), contract, config)

    assert not outcome.success
    assert "the rows kept after quarantine still fail" in outcome.message()
    assert "1995 rows, expected between 1999" in outcome.message()
