"""The AI4I 2020 milling process as published: its columns, its parameters, its regime.

The published generation rules of AI4I 2020, with the gaps in them filled by fits to the real
file (each stated where it is used, in `features.synthetic`). `Regime` gathers every
parameter a drift scenario may change (`features.drift_scenarios`); its defaults are the
published process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

UDI, PRODUCT_ID, TYPE = "UDI", "Product ID", "Type"
AIR, PROCESS = "Air temperature [K]", "Process temperature [K]"
SPEED, TORQUE, WEAR = "Rotational speed [rpm]", "Torque [Nm]", "Tool wear [min]"
FAILURE = "Machine failure"
FAILURE_MODES: Final = ("TWF", "HDF", "PWF", "OSF", "RNF")

# --- the published process, calibrated on the real file -----------------------------------

# Type L/M/H in shares 60/30/10 %; the Product ID is the type letter and a serial number.
TYPES: Final = ("L", "M", "H")
TYPE_SHARES: Final = (0.6, 0.3, 0.1)
WEAR_PER_PROCESS_MIN: Final = (2, 3, 5)  # L, M, H
SERIAL_BASES: Final = (47_180, 14_860, 29_414)  # as in the real file: UDI 1 is M14860

AIR_MEAN_K, AIR_SD_K = 300.0, 2.0
PROCESS_GAP_K, PROCESS_WALK_SD_K = 10.0, 1.0
PROCESS_WALK_AIR_CORRELATION = -0.7
# Time constants (rows), fitted on the real file (see features.synthetic): the air walk,
# the smoothing through which the process walk follows it, and the process walk's own part.
AIR_WALK_ROWS = 2500
COUPLING_SMOOTHING_ROWS = 960
PROCESS_WALK_ROWS = 500

TORQUE_MEAN_NM, TORQUE_SD_NM = 40.0, 10.0
SPEED_BASE_RPM = 1000.0  # least squares: residual means within ±4 rpm in every torque decile
SPEED_POWER_RPM_NM = 20_000.0
TOP_SPEED_RPM = 2860.0
SPEED_NOISE_RPM = 50.0
NOISE_TRUNCATION_SD = 4.0  # so speed and temperatures provably stay within the contract

TOOL_LIFE_MIN: Final = (200, 240)
TWF_SHARE = 0.39  # 46 of the real file's 119 tool replacements are failures
HDF_GAP_K, HDF_SPEED_RPM = 8.6, 1380.0
PWF_POWER_W: Final = (3500.0, 9000.0)
OSF_LIMITS_MIN_NM: Final = (11_000.0, 12_000.0, 13_000.0)  # L, M, H
RNF_PROBABILITY = 0.001  # random failures, independent of the inputs


@dataclass(frozen=True)
class Regime:
    """Every parameter a scenario may change; the defaults are the published process.

    `drift_scenarios.regime_per_row` turns each field into an array with one value per row
    (a leading axis of `rows`), which is how the generator and the rules read them.
    """

    type_shares: tuple[float, ...] = TYPE_SHARES
    sensor_offset_k: float = 0.0
    process_gap_k: float = PROCESS_GAP_K
    torque_mean_nm: float = TORQUE_MEAN_NM
    tool_life_min: tuple[int, int] = TOOL_LIFE_MIN
    twf_share: float = TWF_SHARE
    hdf_gap_k: float = HDF_GAP_K
    hdf_speed_rpm: float = HDF_SPEED_RPM
    pwf_power_w: tuple[float, float] = PWF_POWER_W
    osf_limits_min_nm: tuple[float, ...] = OSF_LIMITS_MIN_NM
