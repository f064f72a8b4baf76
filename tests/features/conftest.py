"""Shared data for the validation tests: a valid frame, its report, and rows that break
row-level rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.config import ValidateConfig
from features.contract import DataContract
from features.expectations import validate_frame
from features.validation import ValidationReport
from tests.factories import make_valid_frame

QUARANTINE_ON = ValidateConfig(quarantine={"enabled": True, "max_share": 0.05})


@pytest.fixture(scope="module")
def valid_frame() -> pd.DataFrame:
    return make_valid_frame()


@pytest.fixture(scope="module")
def valid_report(valid_frame: pd.DataFrame, contract: DataContract) -> ValidationReport:
    return validate_frame(valid_frame, contract, ValidateConfig())


# Rows 10..14 break row-level rules; row 12 breaks two.
ROW_CORRUPTIONS = {
    10: ("Torque [Nm]", -3.0),
    11: ("Type", "Q"),
    12: ("Product ID", "bad id"),
    13: ("Air temperature [K]", np.nan),
    14: ("Tool wear [min]", 9999.0),
}


def with_bad_rows(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for row, (column, value) in ROW_CORRUPTIONS.items():
        frame.loc[row, column] = value
    frame.loc[12, "Rotational speed [rpm]"] = np.nan
    return frame
