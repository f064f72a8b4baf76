"""Drift between the champion's reference data and the current window: features and predictions.

The column mapping comes from the data contract: its numeric features are compared as numerical
columns, its other features as categorical; ids, the label and ignored columns are left out, so a
current window without labels (production traffic) works. Evidently picks each column's test and
gives the verdict. Prediction drift compares the served probabilities with the
reference's out-of-fold probabilities in the same report, so the HTML shows both. With a
`DriftCalibration` (measured on the champion's training period, `monitoring.calibration`),
each calibrated column gets its fixed method and calibrated threshold instead of Evidently's
size-dependent defaults; Evidently still computes the scores and gives the verdicts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.core.report import Snapshot  # what `Report.run` returns (aliased `evidently.Run`)
from evidently.metrics import ValueDrift
from evidently.presets import DataDriftPreset

from core.columns import PROBABILITY
from core.config import MonitorConfig
from core.records.drift_calibration import DriftCalibration
from features.contract import DataContract
from monitoring.calibration import applicable_columns, applicable_prediction
from monitoring.stattests import DISPLAY_NAMES

ColumnKind = Literal["numerical", "categorical"]

# Type tags in `Snapshot.dict()` (Evidently 0.7 serialisation of metric configs).
_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
_DRIFTED_COLUMNS_COUNT = "evidently:metric_v2:DriftedColumnsCount"
_FAIL = "FAIL"  # a failed drift test means "drift detected"
_DECIMALS = 6  # rounding of floats in the JSON summary, so equal results give equal bytes
PREDICTION_COLUMN = PROBABILITY  # the scores' column in the report, as in the prediction log


class DriftInputError(ValueError):
    """A window that cannot be compared; the message names the window and the columns."""


@dataclass(frozen=True)
class ColumnDrift:
    """The drift verdict for one feature column.

    Evidently chooses the test from the column type and the sample size (up to 1,000 rows:
    K-S or chi-square p-values, drift when the p-value is *below* the threshold; above: normed
    Wasserstein or Jensen-Shannon distances, drift when the distance *reaches* the threshold).
    `drifted` is Evidently's own verdict, not re-derived from the score here. A calibrated
    column has a fixed distance and its threshold from the champion's training period.
    """

    name: str
    kind: ColumnKind
    method: str  # Evidently's stattest name, e.g. "Wasserstein distance (normed)"
    score: float  # a distance or a p-value, depending on `method`
    threshold: float
    drifted: bool
    calibrated: bool = False  # threshold from the DriftCalibration, not Evidently's default


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
    prediction: PredictionDrift | None = None  # None: no scores were compared
    calibration: DriftCalibration | None = None  # the one applied, if any

    @property
    def drifted_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.drifted)


@dataclass(frozen=True)
class PredictionDrift:
    """The drift verdict for the served probabilities, and how many scores each side had."""

    method: str
    score: float
    threshold: float
    drifted: bool
    reference_rows: int
    current_rows: int
    calibrated: bool = False  # threshold from the DriftCalibration


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
    *,
    reference_scores: pd.Series | None = None,
    current_scores: pd.Series | None = None,
    calibration: DriftCalibration | None = None,
) -> DriftResult:
    """Compare the contract's feature columns of `current` against `reference` with Evidently.

    Thresholds: `config.num_threshold` and `config.cat_threshold` per column kind,
    `config.per_column_threshold` per contract feature (null or absent: Evidently's default
    for the test it picks), `config.prediction_drift_threshold` for the scores (one more
    Evidently `ValueDrift` in the same report).
    With both `reference_scores` and `current_scores` (the model's probabilities), their drift is
    judged too. Each is aligned to its frame by index: a row without a score (absent or NaN),
    such as one another model version served, is left out of that comparison only.
    With `calibration` (calibrated), each feature it covers gets its method and the threshold
    for the window's row count, replacing `num_threshold`/`cat_threshold`; an explicit
    `per_column_threshold` (with Evidently's default method) or `prediction_drift_threshold`
    keeps precedence over the calibrated one.
    """
    features = contract.features
    _check_window(reference, "reference", features)
    _check_window(current, "current", features)
    _check_thresholds(config, features)
    kinds: dict[str, ColumnKind] = {
        name: "numerical" if contract.by_name[name].is_numeric else "categorical"
        for name in features
    }
    reference_data, current_data = reference[features], current[features]
    calibrated = applicable_columns(calibration, features, config)
    thresholds = {
        **{
            name: column.threshold_at(int(current_data[name].notna().sum()))
            for name, column in calibrated.items()
        },
        **config.per_column_threshold,
    }
    metrics: list[Any] = [
        DataDriftPreset(
            columns=features,
            drift_share=config.drift_share,
            num_threshold=config.num_threshold,
            cat_threshold=config.cat_threshold,
            per_column_method={name: c.method for name, c in calibrated.items()} or None,
            per_column_threshold=thresholds or None,
        )
    ]
    ref_scores = _scores(reference_scores, reference)
    cur_scores = _scores(current_scores, current)
    scored = bool(
        ref_scores is not None
        and cur_scores is not None
        and ref_scores.notna().any()
        and cur_scores.notna().any()
    )
    numerical = list(contract.numeric_features)
    if scored:
        if PREDICTION_COLUMN in features:
            raise DriftInputError(
                f"a contract feature is named '{PREDICTION_COLUMN}', the report's score column"
            )
        reference_data = reference_data.assign(**{PREDICTION_COLUMN: ref_scores})
        current_data = current_data.assign(**{PREDICTION_COLUMN: cur_scores})
        numerical.append(PREDICTION_COLUMN)
        scored_rows = int(current_data[PREDICTION_COLUMN].notna().sum())
        metrics.append(_prediction_metric(calibration, config, scored_rows))
    definition = DataDefinition(
        numerical_columns=numerical, categorical_columns=contract.categorical_features
    )
    report = Report(metrics, include_tests=True)  # the tests carry Evidently's drift verdicts
    snapshot = report.run(
        Dataset.from_pandas(current_data, data_definition=definition),
        Dataset.from_pandas(reference_data, data_definition=definition),
    )
    if calibration is not None and not (calibration.calibrated and config.calibration.enabled):
        calibration = None
    result = _read_snapshot(
        snapshot,
        kinds,
        drift_share=config.drift_share,
        calibration=calibration,
        reference_rows=len(reference),
        current_rows=len(current),
        calibrated=set(calibrated),
    )
    if not scored:
        return result
    prediction = _prediction_drift(
        snapshot,
        reference_rows=int(reference_data[PREDICTION_COLUMN].notna().sum()),
        current_rows=int(current_data[PREDICTION_COLUMN].notna().sum()),
        calibrated=metrics[-1].method is not None,
    )
    return dataclasses.replace(result, prediction=prediction)


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
        "prediction": _prediction_summary(result.prediction),
        "calibration": _calibration_summary(result),
    }


def describe_drift(result: DriftResult, config: MonitorConfig) -> str:
    """The feature-drift verdict as one sentence naming the share, the param and the columns."""
    if result.dataset_drift:
        verdict, side = "dataset drift", "at or above"
    else:
        verdict, side = "no dataset drift", "below"
    named = f": {', '.join(result.drifted_columns)}" if result.drifted_columns else ""
    return (
        f"{verdict}: {result.drifted_count} of {len(result.columns)} feature columns drifted "
        f"({result.drifted_share:.0%}, {side} monitor.drift_share {config.drift_share:.0%}){named}"
    )


def describe_prediction_drift(result: DriftResult, config: MonitorConfig) -> str:
    """The prediction-drift verdict as one sentence naming the test, score and threshold."""
    prediction = result.prediction
    if prediction is None:
        return "prediction drift not judged: the window has no served probabilities to compare"
    if prediction.calibrated:
        source = "calibrated on the champion's training period"
    elif config.prediction_drift_threshold is not None:
        source = "monitor.prediction_drift_threshold"
    else:
        source = "Evidently's default; monitor.prediction_drift_threshold is null"
    verdict = "prediction drift" if prediction.drifted else "no prediction drift"
    return (
        f"{verdict}: {prediction.method} {prediction.score:.4g} on {prediction.current_rows} "
        f"served probabilities against {prediction.reference_rows} reference ones "
        f"(threshold {prediction.threshold:.4g}, {source})"
    )


def _check_window(frame: pd.DataFrame, window: str, features: list[str]) -> None:
    missing = [name for name in features if name not in frame.columns]
    if missing:
        raise DriftInputError(
            f"{window} window is missing feature column(s) {missing} named in the data contract"
        )
    if frame.empty:
        raise DriftInputError(f"{window} window has no rows")


def _check_thresholds(config: MonitorConfig, features: list[str]) -> None:
    unknown = sorted(set(config.per_column_threshold) - set(features))
    if unknown:
        raise DriftInputError(
            f"monitor.per_column_threshold names {unknown}, which are not features of the data "
            f"contract (features: {features})"
        )


def _prediction_metric(
    calibration: DriftCalibration | None, config: MonitorConfig, current_rows: int
) -> ValueDrift:
    """The scores' drift metric: explicit threshold, else calibrated, else Evidently's."""
    prediction = applicable_prediction(calibration, config)
    if prediction is None:
        return ValueDrift(column=PREDICTION_COLUMN, threshold=config.prediction_drift_threshold)
    return ValueDrift(
        column=PREDICTION_COLUMN,
        method=prediction.method,
        threshold=prediction.threshold_at(current_rows),
    )


def _method_name(method: str) -> str:
    """Evidently's display name for a method given by its registered name."""
    return DISPLAY_NAMES.get(method, method)  # checked against Evidently's in test_stattests


def _calibration_summary(result: DriftResult) -> dict[str, Any] | None:
    calibration = result.calibration
    if calibration is None:
        return None
    return {
        "false_alarm_rate": calibration.false_alarm_rate,
        "block_rows": list(calibration.block_rows),
        "columns": [c.name for c in result.columns if c.calibrated],
        "prediction": bool(result.prediction and result.prediction.calibrated),
    }


def _scores(scores: pd.Series | None, frame: pd.DataFrame) -> pd.Series | None:
    """Scores aligned to `frame` by index, as floats (NaN where a row has none)."""
    if scores is None:
        return None
    return pd.to_numeric(scores, errors="coerce").astype(float).reindex(frame.index)


def _prediction_drift(
    snapshot: Snapshot, *, reference_rows: int, current_rows: int, calibrated: bool
) -> PredictionDrift:
    """The score column's `ValueDrift` outside the preset: its metric value and its test."""
    exported = snapshot.dict()
    metric = next(
        (
            m
            for m in exported["metrics"]
            if m.get("config", {}).get("type") == _VALUE_DRIFT
            and m["config"].get("column") == PREDICTION_COLUMN
        ),
        None,
    )
    test = next(
        (
            t
            for t in exported["tests"]
            if t["metric_config"]["params"].get("type") == _VALUE_DRIFT
            and t["metric_config"]["params"].get("column") == PREDICTION_COLUMN
        ),
        None,
    )
    if metric is None or test is None:
        raise RuntimeError("Evidently's snapshot lacks the prediction drift result")
    return PredictionDrift(
        method=_method_name(str(metric["config"]["method"])),
        score=float(metric["value"]),
        threshold=float(metric["config"]["threshold"]),
        drifted=test["status"] == _FAIL,
        reference_rows=reference_rows,
        current_rows=current_rows,
        calibrated=calibrated,
    )


def _prediction_summary(prediction: PredictionDrift | None) -> dict[str, Any] | None:
    if prediction is None:
        return None
    return {
        "method": prediction.method,
        "score": _round(prediction.score),
        "threshold": _round(prediction.threshold),
        "drifted": prediction.drifted,
        "reference_rows": prediction.reference_rows,
        "current_rows": prediction.current_rows,
    }


def _read_snapshot(
    snapshot: Snapshot,
    kinds: dict[str, ColumnKind],
    *,
    drift_share: float,
    calibration: DriftCalibration | None,
    reference_rows: int,
    current_rows: int,
    calibrated: set[str],
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
            method=_method_name(str(values[name]["method"])),
            score=float(values[name]["score"]),
            threshold=float(values[name]["threshold"]),
            drifted=failed[name],
            calibrated=name in calibrated,
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
        calibration=calibration,
    )


def _round(value: float) -> float | None:
    """Round for stable JSON; NaN or infinity (not valid JSON) becomes null."""
    return round(float(value), _DECIMALS) if math.isfinite(value) else None
