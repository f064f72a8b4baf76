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
    served = served_by(window, champion.label)
    floors, _ = quality_floors(config, profile, len(served))
    estimate, breaches = _estimate(served, profile, config, floors, seed)
    judged = served_by(labelled, champion.label)
    floors, source = quality_floors(config, profile, len(judged))
    quality = assess_quality(judged, contract.label, config, seed, floors, source)
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


def quality_floors(
    config: MonitorConfig, profile: MonitorProfile | None, rows: int | None = None
) -> tuple[dict[str, float], str]:
    """The floors that judge `rows` rows of the champion, and where they come from.

    `monitor.quality.thresholds`, lowered to the champion's own bound for that many rows
    (`monitor.quality.own_bounds`) where that is lower: a floor its unchanged training period
    falls below by chance is no evidence of change. Then raised to the champion's own level
    minus `monitor.verdict.max_drop`, when that is set and higher: a sensitivity asked for.
    """
    floors = dict(config.quality.thresholds)
    sources = ["monitor.quality.thresholds"]
    bounds = profile.quality if profile is not None else None
    if bounds is not None and rows is not None and config.quality.own_bounds:
        for name in floors:
            bound = bounds.bound_at(name, rows)
            if bound is not None and bound < floors[name]:
                floors[name] = bound
                sources.append(
                    f"{name} lowered to {bound:.3f}, the champion's own bound for {rows} rows "
                    f"(its training period falls below it by chance at "
                    f"{bounds.false_alarm_rate:.0%} of windows; monitor.quality.own_bounds)"
                )
    drop = config.verdict.max_drop
    if drop is not None and profile is not None:
        for name in floors:
            level = getattr(profile.reference, name, None)
            if level is not None and level - drop > floors[name]:
                floors[name] = round(level - drop, 6)
                sources.append(f"{name} raised to the champion's own level minus max_drop")
    return floors, "; ".join(sources)


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
