"""Drift thresholds calibrated on the natural variation of the champion's training period.

Production traffic arrives in time order, and a plant's readings wander (the AI4I air
temperature is one random walk): a window of consecutive rows differs from a reference drawn
over a whole period even when nothing went wrong, so Evidently's default thresholds flag
nearly every window. Here contiguous blocks of the training data, in time order, are scored
against the rest of it, with the stattest Evidently runs at monitor time and a method
fixed per column kind (numeric: normed Wasserstein, categorical: Jensen-Shannon), so a
threshold keeps its units at every window size. The scores are Evidently's, computed in
`monitoring.stattests`, so training never imports Evidently (seconds of import time).
Tail model: the log scores of each block size are taken as normal, their spread pooled over
the sizes; a column's threshold is the one-sided Student-t prediction bound for one new
window at `false_alarm_rate / columns` (Bonferroni over the features and the probability),
counting only disjoint blocks as independent, and never below the largest null score seen.
An empirical 1 - alpha/m quantile would need hundreds of blocks; a training period holds a
few dozen. The result travels with the model as a
`DriftCalibration` record.
"""

from __future__ import annotations

import html
import logging
import math

import numpy as np
import pandas as pd
from scipy import special, stats

from core.columns import REFERENCE_PROBABILITY
from core.config import MonitorConfig
from core.records.drift_calibration import ColumnCalibration, DriftCalibration, NullScores
from features.contract import DataContract
from monitoring.stattests import DISPLAY_NAMES, METHODS, Kind, drift_score

logger = logging.getLogger(__name__)

TAIL_MODEL = (
    "normal on log scores, spread pooled over block sizes; one-sided Student-t prediction "
    "bound on disjoint blocks; at least the largest null score"
)
_QUANTILES = (0.5, 0.9)
_LOG_FLOOR = 1e-9  # a zero score (identical blocks) is taken as this before the log


class CalibrationError(ValueError):
    """Reference data that cannot be calibrated on; the message names what is missing."""


def calibrate_drift(
    reference: pd.DataFrame, contract: DataContract, config: MonitorConfig
) -> DriftCalibration:
    """Per-column drift thresholds from blocks of `reference` (the training split, in time
    order) scored against the rest, for window sizes from `window.min_rows` to `window.rows`.

    The out-of-fold `probability` column, when present, is calibrated too (prediction drift).
    A training period too short for `calibration.min_blocks` disjoint blocks of a size drops
    that size; too short for any, a smaller block (at least `min_block_rows`) stands in for
    all sizes, and shorter still the record says `calibrated` False and why.
    """
    settings = config.calibration
    features = contract.features
    missing = [name for name in features if name not in reference.columns]
    if missing:
        raise CalibrationError(
            f"the training data lacks feature column(s) {missing} named in the data contract"
        )
    kinds = {
        name: "numerical" if contract.by_name[name].is_numeric else "categorical"
        for name in features
    }
    has_scores = REFERENCE_PROBABILITY in reference.columns
    if has_scores:
        kinds[REFERENCE_PROBABILITY] = "numerical"
    else:
        logger.warning(
            "the training data has no '%s' column: prediction drift stays uncalibrated",
            REFERENCE_PROBABILITY,
        )
    tests = len(kinds)
    column_alpha = settings.false_alarm_rate / tests
    rows = len(reference)
    sizes, reason = choose_block_sizes(rows, config)
    if not settings.enabled:
        sizes, reason = [], "monitor.calibration.enabled is false: Evidently's defaults apply"
    calibrated = {
        name: column
        for name, kind in kinds.items()
        if sizes
        and (column := _calibrate_column(reference[name], kind, sizes, config, column_alpha))
    }
    prediction = calibrated.pop(REFERENCE_PROBABILITY, None)
    if sizes:
        logger.info(
            "drift calibrated on %d training rows, blocks of %s rows: %s",
            rows,
            ", ".join(str(size) for size in sizes),
            reason,
        )
    else:
        logger.warning("drift calibration skipped: %s", reason)
    return DriftCalibration(
        calibrated=bool(sizes),
        reason=reason,
        false_alarm_rate=settings.false_alarm_rate,
        tests=tests,
        column_alpha=column_alpha,
        tail_model=TAIL_MODEL,
        training_rows=rows,
        block_rows=tuple(sizes),
        columns=calibrated,
        prediction=prediction,
    )


def applicable_columns(
    calibration: DriftCalibration | None, features: list[str], config: MonitorConfig
) -> dict[str, ColumnCalibration]:
    """The features whose calibrated method and threshold apply at monitor time: none when
    the record is absent, uncalibrated or `monitor.calibration.enabled` is false; a feature
    with an explicit `monitor.per_column_threshold` keeps that (and Evidently's method)."""
    if calibration is None:
        return {}
    if not config.calibration.enabled:
        logger.info("drift calibration ignored: monitor.calibration.enabled is false")
        return {}
    if not calibration.calibrated:
        logger.warning("drift thresholds are Evidently's defaults: %s", calibration.reason)
        return {}
    uncovered = [name for name in features if name not in calibration.columns]
    if uncovered:
        logger.warning(
            "the drift calibration does not cover feature(s) %s: Evidently's defaults apply "
            "to them; retrain to calibrate them",
            uncovered,
        )
    return {
        name: calibration.columns[name]
        for name in features
        if name in calibration.columns and name not in config.per_column_threshold
    }


def applicable_prediction(
    calibration: DriftCalibration | None, config: MonitorConfig
) -> ColumnCalibration | None:
    """The scores' calibration, unless absent, off, or `prediction_drift_threshold` is set."""
    if calibration is None or not calibration.calibrated or not config.calibration.enabled:
        return None
    if config.prediction_drift_threshold is not None:
        return None
    return calibration.prediction


def score_block(block: pd.Series, rest: pd.Series, kind: Kind, method: str | None = None) -> float:
    """Evidently's drift score of `block` (as the current data) against `rest` (reference),
    NaN and infinities dropped as Evidently drops them; `method` defaults to the kind's."""
    return drift_score(_clean(rest), _clean(block), kind, method or METHODS[kind])


def render_calibration(calibration: DriftCalibration) -> str:
    """A small HTML section for the drift report: each column's method, threshold per block
    size and null distribution, the false-alarm rate and how the thresholds were made."""
    head = (
        f"<h2>Drift thresholds calibrated on the training period</h2>"
        f"<p>{html.escape(calibration.reason)}</p>"
        f"<p>False-alarm rate per window {calibration.false_alarm_rate:g}, shared by "
        f"{calibration.tests} columns (each {calibration.column_alpha:.4g}); "
        f"{html.escape(calibration.tail_model)}; {calibration.training_rows} training rows.</p>"
    )
    if not calibration.calibrated:
        return head
    rows = [
        "<tr><th>column</th><th>method</th><th>block rows</th><th>blocks</th>"
        "<th>null median</th><th>null 90 %</th><th>null max</th><th>threshold</th></tr>"
    ]
    named = dict(calibration.columns)
    if calibration.prediction is not None:
        named["served probability (prediction drift)"] = calibration.prediction
    for name, column in named.items():
        display = DISPLAY_NAMES[METHODS[column.kind]]
        for size in column.sizes:
            rows.append(
                f"<tr><td>{html.escape(name)}</td><td>{html.escape(display)}</td>"
                f"<td>{size.block_rows}</td><td>{size.blocks}</td>"
                f"<td>{size.quantiles['0.5']:.4g}</td><td>{size.quantiles['0.9']:.4g}</td>"
                f"<td>{size.quantiles['max']:.4g}</td><td>{size.threshold:.4g}</td></tr>"
            )
    return head + "<table>" + "".join(rows) + "</table>"


def choose_block_sizes(rows: int, config: MonitorConfig) -> tuple[list[int], str]:
    """The block sizes the training period can hold, and a sentence saying so."""
    settings, window = config.calibration, config.window
    wanted = sorted(
        {round(size) for size in np.geomspace(window.min_rows, window.rows, settings.block_sizes)}
    )
    sizes = [size for size in wanted if rows // size >= settings.min_blocks]
    need = f"{settings.min_blocks} disjoint blocks (monitor.calibration.min_blocks)"
    if sizes == wanted:
        return sizes, f"blocks of {_join(sizes)} rows, each size fitting {need}"
    if sizes:
        dropped = [size for size in wanted if size not in sizes]
        return sizes, (
            f"blocks of {_join(sizes)} rows; {_join(dropped)} rows skipped: {rows} training rows "
            f"hold fewer than {need}, so larger windows use the threshold of {sizes[-1]} rows"
        )
    fallback = rows // settings.min_blocks
    if fallback >= settings.min_block_rows:
        return [fallback], (
            f"{rows} training rows hold fewer than {need} of monitor.window.min_rows "
            f"({window.min_rows}); blocks of {fallback} rows stand in for every window size "
            "(smaller blocks vary more, so the thresholds err high)"
        )
    return [], (
        f"{rows} training rows are too few: {need} of at least monitor.calibration."
        f"min_block_rows ({settings.min_block_rows}) rows do not fit; Evidently's default "
        "tests and thresholds apply; train on a longer period to calibrate"
    )


def _calibrate_column(
    values: pd.Series, kind: str, sizes: list[int], config: MonitorConfig, alpha: float
) -> ColumnCalibration | None:
    """Null scores per block size, and each size's threshold from the pooled tail model;
    None (logged) when the column's non-null values hold no two blocks of any size."""
    values = _clean(values).reset_index(drop=True)
    rows = len(values)
    sizes = [size for size in sizes if rows // size >= 2]
    if not sizes:
        logger.warning(
            "drift calibration skips column '%s': %d non-null values hold no two blocks; "
            "Evidently's default applies to it",
            values.name,
            rows,
        )
        return None
    scores = {size: _block_scores(values, kind, size, config) for size in sizes}
    logs = {size: np.log(np.maximum(found, _LOG_FLOOR)) for size, found in scores.items()}
    sd, bounds = pooled_prediction_bounds(logs, rows, 1.0 - alpha)
    summaries = []
    for size in sizes:
        found = scores[size]
        summaries.append(
            NullScores(
                block_rows=size,
                blocks=len(found),
                disjoint_blocks=rows // size,
                quantiles={
                    **{f"{q:g}": float(np.quantile(found, q)) for q in _QUANTILES},
                    "max": float(found.max()),
                },
                log_mean=float(logs[size].mean()),
                log_sd=sd,
                threshold=max(math.exp(bounds[size]), float(found.max()), _LOG_FLOOR),
            )
        )
    return ColumnCalibration(kind=kind, method=METHODS[kind], sizes=tuple(summaries))


def pooled_prediction_bounds(
    samples: dict[int, np.ndarray], rows: int, tail: float
) -> tuple[float, dict[int, float]]:
    """The tail model shared by the drift thresholds and the quality bounds: per block size,
    the one-sided Student-t prediction bound at probability `tail` for one new window, the
    samples (transformed block values of a period of `rows` rows) taken as normal around
    each size's mean with their spread pooled over the sizes, counting only disjoint blocks
    as independent. Returns the pooled standard deviation and each size's bound."""
    independent = {size: max(rows // size, 2) for size in samples}  # disjoint blocks
    freedom = sum(independent[size] - 1 for size in samples)
    variance = sum((independent[size] - 1) * _variance(samples[size]) for size in samples)
    variance /= freedom
    quantile = float(stats.t.ppf(tail, freedom))
    bounds = {
        size: float(found.mean()) + quantile * math.sqrt(variance * (1.0 + 1.0 / independent[size]))
        for size, found in samples.items()
    }
    return math.sqrt(variance), bounds


def _block_scores(values: pd.Series, kind: str, size: int, config: MonitorConfig) -> np.ndarray:
    """The drift scores of sliding blocks of `size` rows, each against the rest."""
    starts = block_starts(len(values), size, config)
    if kind == "numerical":
        return _wasserstein_scores(values.to_numpy(dtype=float), starts, size)
    return _jensenshannon_scores(values, starts, size)


def block_starts(rows: int, size: int, config: MonitorConfig) -> np.ndarray:
    """Where the sliding blocks of `size` rows start: every `step_share` of a block, at most
    `max_blocks` of them (evenly spread)."""
    settings = config.calibration
    step = max(1, round(size * settings.step_share))
    starts = np.arange(0, rows - size + 1, step)
    if len(starts) > settings.max_blocks:
        starts = np.unique(np.linspace(0, rows - size, settings.max_blocks).round().astype(int))
    return starts


def _variance(logs: np.ndarray) -> float:
    return float(logs.var(ddof=1)) if len(logs) > 1 else 0.0


def _wasserstein_scores(values: np.ndarray, starts: np.ndarray, size: int) -> np.ndarray:
    """Evidently's normed Wasserstein distance of each block against the rest, all at once.

    With F the empirical CDFs, F_all = (b F_block + (n - b) F_rest) / n, so
    W1(block, rest) = n / (n - b) * W1(block, all): one sort of the column serves every block.
    The norm is the rest's standard deviation (at least 0.001), as Evidently's.
    """
    rows = len(values)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    gaps = np.diff(ordered)  # the CDFs are flat between sorted values
    cdf_all = np.arange(1, rows) / rows
    scores = np.empty(len(starts))
    for i, start in enumerate(starts):  # one block at a time: memory stays O(rows)
        member = (order >= start) & (order < start + size)
        cdf_block = np.cumsum(member)[:-1] / size
        distance = np.abs(cdf_block - cdf_all) @ gaps * rows / (rows - size)
        norm = np.std(np.concatenate([values[:start], values[start + size :]]))
        scores[i] = distance / max(float(norm), 0.001)
    return scores


def _jensenshannon_scores(values: pd.Series, starts: np.ndarray, size: int) -> np.ndarray:
    """Evidently's Jensen-Shannon distance (natural log) of each block's category shares
    against the rest's, from counts per category."""
    codes, _ = pd.factorize(values)
    categories = int(codes.max()) + 1
    block = np.stack(
        [np.bincount(codes[start : start + size], minlength=categories) for start in starts]
    ).astype(float)
    rest = np.bincount(codes, minlength=categories)[None, :] - block
    p = rest / rest.sum(axis=1, keepdims=True)
    q = block / block.sum(axis=1, keepdims=True)
    m = (p + q) / 2
    divergence = (special.rel_entr(p, m).sum(axis=1) + special.rel_entr(q, m).sum(axis=1)) / 2
    return np.sqrt(np.maximum(divergence, 0.0))


def _clean(values: pd.Series) -> pd.Series:
    return values.replace([-np.inf, np.inf], np.nan).dropna()


def _join(sizes: list[int]) -> str:
    return ", ".join(str(size) for size in sizes)
