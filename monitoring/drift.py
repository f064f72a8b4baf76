"""Data drift between a reference window and a current window, and a first retrain policy.

The column mapping comes from the data contract: its numeric features are compared as numerical
columns, its other features as categorical; ids, the label and ignored columns are left out, so a
current window without labels (production traffic) works. Evidently chooses the test per column
from the column type and the sample size (up to 1,000 rows: K-S or chi-square p-values, drift when
the p-value is *below* the threshold; above: normed Wasserstein or Jensen-Shannon distances, drift
when the distance *reaches* the threshold), so every per-column result carries its method and
threshold, and "drifted" is Evidently's own verdict, not re-derived from the score here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.core.report import Snapshot  # what `Report.run` returns (aliased `evidently.Run`)
from evidently.presets import DataDriftPreset

from features.contract import DataContract
from pipelines.config import MonitorConfig

ColumnKind = Literal["numerical", "categorical"]

# Type tags in `Snapshot.dict()` (Evidently 0.7 serialisation of metric configs).
_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
_DRIFTED_COLUMNS_COUNT = "evidently:metric_v2:DriftedColumnsCount"
_FAIL = "FAIL"  # a failed drift test means "drift detected"
_DECIMALS = 6  # rounding of floats in the JSON summary, so equal results give equal bytes


class DriftInputError(ValueError):
    """A window that cannot be compared; the message names the window and the columns."""


@dataclass(frozen=True)
class ColumnDrift:
    """The drift verdict for one feature column."""

    name: str
    kind: ColumnKind
    method: str  # Evidently's stattest name, e.g. "Wasserstein distance (normed)"
    score: float  # a distance or a p-value, depending on `method`
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    """The outcome of one comparison; `snapshot` is the Evidently run behind it (for the HTML)."""

    dataset_drift: bool
    drift_share: float  # the configured share of drifted columns that means dataset drift
    drifted_share: float
    drifted_count: int
    columns: tuple[ColumnDrift, ...]
    reference_rows: int
    current_rows: int
    snapshot: Snapshot = field(repr=False, compare=False)

    @property
    def drifted_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.drifted)


@dataclass(frozen=True)
class RetrainDecision:
    """Whether to retrain, and why, in sentences a person reads in the stage log."""

    retrain: bool
    reasons: tuple[str, ...]


def sample_window(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """Cap a window at `max_rows` rows so drift detection costs the same on any window size.

    A window of at most `max_rows` rows is returned unchanged (the same object). A larger one is
    sampled uniformly without replacement with `numpy.random.default_rng(seed)`; the kept rows
    stay in their original order and keep their index, so equal inputs give equal samples.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    if len(frame) <= max_rows:
        return frame
    positions = np.random.default_rng(seed).choice(len(frame), size=max_rows, replace=False)
    return frame.iloc[np.sort(positions)]


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    contract: DataContract,
    config: MonitorConfig,
) -> DriftResult:
    """Compare the contract's feature columns of `current` against `reference` with Evidently."""
    features = contract.features
    _check_window(reference, "reference", features)
    _check_window(current, "current", features)
    kinds: dict[str, ColumnKind] = {
        name: "numerical" if contract.by_name[name].is_numeric else "categorical"
        for name in features
    }
    definition = DataDefinition(
        numerical_columns=contract.numeric_features,
        categorical_columns=contract.categorical_features,
    )
    report = Report(
        [DataDriftPreset(columns=features, drift_share=config.drift_share)],
        include_tests=True,  # the per-column tests carry Evidently's drift verdicts
    )
    snapshot = report.run(
        Dataset.from_pandas(current[features], data_definition=definition),
        Dataset.from_pandas(reference[features], data_definition=definition),
    )
    return _read_snapshot(
        snapshot,
        kinds,
        drift_share=config.drift_share,
        reference_rows=len(reference),
        current_rows=len(current),
    )


def drift_summary(result: DriftResult) -> dict[str, Any]:
    """The result as a JSON-ready DVC metric: deterministic, floats rounded, no timestamps."""
    return {
        "dataset_drift": result.dataset_drift,
        "drift_share": _round(result.drift_share),
        "drifted_share": _round(result.drifted_share),
        "drifted_count": result.drifted_count,
        "column_count": len(result.columns),
        "drifted_columns": list(result.drifted_columns),
        "reference_rows": result.reference_rows,
        "current_rows": result.current_rows,
        "columns": {
            c.name: {
                "kind": c.kind,
                "method": c.method,
                "score": _round(c.score),
                "threshold": _round(c.threshold),
                "drifted": c.drifted,
            }
            for c in result.columns
        },
    }


def decide_retrain(result: DriftResult, config: MonitorConfig) -> RetrainDecision:
    """First policy: retrain when the dataset drifts (drifted share reaches `drift_share`)."""
    if result.dataset_drift:
        verdict, side = "dataset drift", "at or above"
    else:
        verdict, side = "no dataset drift", "below"
    named = f": {', '.join(result.drifted_columns)}" if result.drifted_columns else ""
    reason = (
        f"{verdict}: {result.drifted_count} of {len(result.columns)} feature columns drifted "
        f"({result.drifted_share:.0%}, {side} monitor.drift_share {config.drift_share:.0%}){named}"
    )
    return RetrainDecision(retrain=result.dataset_drift, reasons=(reason,))


def _check_window(frame: pd.DataFrame, window: str, features: list[str]) -> None:
    missing = [name for name in features if name not in frame.columns]
    if missing:
        raise DriftInputError(
            f"{window} window is missing feature column(s) {missing} named in the data contract"
        )
    if frame.empty:
        raise DriftInputError(f"{window} window has no rows")


def _read_snapshot(
    snapshot: Snapshot,
    kinds: dict[str, ColumnKind],
    *,
    drift_share: float,
    reference_rows: int,
    current_rows: int,
) -> DriftResult:
    """Pull the verdicts out of `Snapshot.dict()` (metrics: values; tests: pass or fail)."""
    exported = snapshot.dict()
    values: dict[str, dict[str, Any]] = {}
    count: dict[str, float] | None = None
    for metric in exported["metrics"]:
        config = metric.get("config", {})
        if config.get("type") == _VALUE_DRIFT:
            values[config["column"]] = {**config, "score": metric["value"]}
        elif config.get("type") == _DRIFTED_COLUMNS_COUNT:
            count = metric["value"]
    failed: dict[str, bool] = {}
    dataset_drift: bool | None = None
    for test in exported["tests"]:
        params = test["metric_config"]["params"]
        if params.get("type") == _VALUE_DRIFT:
            failed[params["column"]] = test["status"] == _FAIL
        elif params.get("type") == _DRIFTED_COLUMNS_COUNT:
            dataset_drift = test["status"] == _FAIL
    absent = [name for name in kinds if name not in values or name not in failed]
    if count is None or dataset_drift is None or absent:
        raise RuntimeError(f"Evidently's snapshot lacks drift results (columns: {absent})")
    columns = tuple(
        ColumnDrift(
            name=name,
            kind=kind,
            method=str(values[name]["method"]),
            score=float(values[name]["score"]),
            threshold=float(values[name]["threshold"]),
            drifted=failed[name],
        )
        for name, kind in kinds.items()
    )
    return DriftResult(
        dataset_drift=dataset_drift,
        drift_share=drift_share,
        drifted_share=float(count["share"]),
        drifted_count=round(count["count"]),
        columns=columns,
        reference_rows=reference_rows,
        current_rows=current_rows,
        snapshot=snapshot,
    )


def _round(value: float) -> float | None:
    """Round for stable JSON; NaN or infinity (not valid JSON) becomes null."""
    return round(float(value), _DECIMALS) if math.isfinite(value) else None
