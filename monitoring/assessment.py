"""One window judged against its champion: every signal's evidence, from frames in memory.

The monitor stage reads the files and calls `assess_window`; the drift benchmark calls the
same function on its windows, so what it measures is what the stage decides. Pure; Evidently
and scikit-learn are imported only when a window is judged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.columns import PROBABILITY, REFERENCE_PROBABILITY, THRESHOLD
from core.config import MonitorConfig
from core.records.profile import MonitorProfile
from features.contract import DataContract
from monitoring.verdict import WindowEvidence
from monitoring.window import labels_unjoinable, scores_to_compare, served_by


@dataclass(frozen=True)
class ChampionBasis:
    """What the monitor holds of the champion: its names, reference data and profile."""

    tag: str  # e.g. "milling-failure:v3"
    label: str  # how the prediction log names it: "v3"
    reference: pd.DataFrame  # training split: features, `label`, out-of-fold `probability`
    profile: MonitorProfile | None  # None: trained before models kept one


def assess_window(
    window: pd.DataFrame,
    labelled: pd.DataFrame,
    champion: ChampionBasis,
    contract: DataContract,
    config: MonitorConfig,
    seed: int,
) -> WindowEvidence:
    """Every signal on `window` (logged rows, any version) and its `labelled` rows.

    Data quality on every row of the window; drift of the features (all rows) and of the
    champion's scores; the estimated quality (CBPE) on the rows the champion served; the
    realized quality on those of them that have labels.
    """
    from monitoring.drift import detect_drift, sample_window
    from monitoring.quality import assess_quality

    profile = champion.profile
    unjoinable = labels_unjoinable(contract)
    if len(window) < config.window.min_rows:
        return WindowEvidence(
            champion.tag, len(window), len(labelled), labels_unjoinable=unjoinable
        )
    data_quality = None
    if profile is not None:
        from monitoring.data_quality import assess_data_quality

        data_quality = assess_data_quality(
            window[contract.features], profile.data, contract, config.data_quality
        )
    reference = sample_window(champion.reference, config.sample_rows, seed)
    current = sample_window(window, config.sample_rows, seed)
    drift = detect_drift(
        reference,
        current,
        contract,
        config,
        reference_scores=reference[REFERENCE_PROBABILITY],
        current_scores=scores_to_compare(current, champion.label),
        calibration=profile.drift if profile is not None else None,
    )
    floors = quality_floors(config, profile)
    estimate, breaches = _estimate(served_by(window, champion.label), profile, config, floors, seed)
    quality = assess_quality(
        served_by(labelled, champion.label), contract.label, config, seed, floors
    )
    return WindowEvidence(
        champion=champion.tag,
        rows=len(window),
        labelled_rows=len(labelled),
        labels_unjoinable=unjoinable,
        drift=drift,
        quality=quality,
        estimate=estimate,
        estimated_breaches=breaches,
        data_quality=data_quality,
        importance=profile.importance.shares if profile is not None else None,
    )


def quality_floors(config: MonitorConfig, profile: MonitorProfile | None) -> dict[str, float]:
    """`monitor.quality.thresholds`, raised to the champion's own level minus
    `monitor.verdict.max_drop` where that is higher."""
    floors = dict(config.quality.thresholds)
    drop = config.verdict.max_drop
    if drop is None or profile is None:
        return floors
    for name in floors:
        level = getattr(profile.reference, name, None)
        if level is not None:
            floors[name] = max(floors[name], round(level - drop, 6))
    return floors


def _estimate(
    served: pd.DataFrame,
    profile: MonitorProfile | None,
    config: MonitorConfig,
    floors: dict[str, float],
    seed: int,
):
    if profile is None or not config.estimation.enabled or len(served) < config.window.min_rows:
        return None, ()
    from monitoring.estimation import estimate_performance, find_estimated_breaches

    thresholds = served[THRESHOLD].to_numpy(dtype=float)
    estimate = estimate_performance(
        served[PROBABILITY].to_numpy(dtype=float),
        float(np.median(thresholds)),  # one operating threshold per champion version
        profile.probabilities,
        config.estimation,
        seed,
    )
    return estimate, find_estimated_breaches(estimate, floors)
