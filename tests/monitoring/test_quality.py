"""The champion's quality on labelled window rows, against the floors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.config import MonitorConfig
from monitoring.quality import assess_quality

LABEL = "Machine failure"
CONFIG = MonitorConfig(
    labels={"min_rows": 20},
    quality={"thresholds": {"roc_auc": 0.85, "average_precision": 0.5}},
)


def labelled(y: list[int], proba: list[float], threshold: float | list[float] = 0.5):
    return pd.DataFrame(
        {LABEL: y, "probability": proba, "threshold": threshold, "UDI": range(len(y))}
    )


def separable(rows: int = 40, positives: int = 4) -> pd.DataFrame:
    """Positives score 0.9, negatives 0.1: perfect ranking."""
    y = [1] * positives + [0] * (rows - positives)
    return labelled(y, [0.9 if label else 0.1 for label in y])


def test_good_champion_holds_its_floors():
    result = assess_quality(separable(), LABEL, CONFIG)
    assert result.judged and result.breached == ()
    assert (result.rows, result.positives, result.threshold) == (40, 4, 0.5)
    assert result.roc_auc == 1.0 and result.average_precision == 1.0
    assert result.precision == 1.0 and result.recall == 1.0
    assert result.reason == (
        "quality holds on 40 labelled rows served by the champion (4 failures): "
        "average_precision 1.000 (95% interval 1.000-1.000) >= 0.500; "
        "roc_auc 1.000 (95% interval 1.000-1.000) >= 0.850 (monitor.quality.thresholds)"
    )


def test_a_metric_below_its_floor_is_a_breach():
    rng = np.random.default_rng(0)
    y = [1] * 5 + [0] * 35
    frame = labelled(y, rng.random(40).tolist())  # random scores: no ranking skill
    result = assess_quality(frame, LABEL, CONFIG)
    assert result.judged
    assert result.breached == ("average_precision", "roc_auc")
    auc, ap = result.roc_auc, result.average_precision
    (ap_low, ap_high), (auc_low, auc_high) = (
        result.intervals["average_precision"],
        result.intervals["roc_auc"],
    )
    assert ap_high < 0.5 and auc_high < 0.85
    assert result.reason == (
        "quality below its floor on 40 labelled rows served by the champion (5 failures): "
        f"average_precision {ap:.3f} (95% interval {ap_low:.3f}-{ap_high:.3f}) < 0.500; "
        f"roc_auc {auc:.3f} (95% interval {auc_low:.3f}-{auc_high:.3f}) < 0.850 "
        "(monitor.quality.thresholds); breached: average_precision, roc_auc"
    )


def noisy_window(rows: int = 1000, seed: int = 3) -> pd.DataFrame:
    """A champion whose true average precision is near the floor, on a 1,000-row window."""
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.03).astype(int)
    proba = np.clip(0.25 * y + rng.normal(0.2, 0.12, rows), 0, 1)
    return labelled(y.tolist(), proba.tolist())


def test_a_point_value_below_the_floor_within_its_noise_is_no_breach():
    frame = noisy_window()
    floor = {"average_precision": 0.0}
    measured = assess_quality(frame, LABEL, MonitorConfig(quality={"thresholds": floor}))
    ap = measured.average_precision
    low, high = measured.intervals["average_precision"]
    assert low < ap < high and high - low > 0.1  # about 30 failures: a wide interval
    floor = {"average_precision": round((ap + high) / 2, 3)}  # above the value, inside the noise
    result = assess_quality(frame, LABEL, MonitorConfig(quality={"thresholds": floor}))
    assert result.breached == () and result.judged
    assert "(95% interval" in result.reason and result.reason.startswith("quality holds")
    point = MonitorConfig(quality={"thresholds": floor, "confidence": None})
    assert assess_quality(frame, LABEL, point).breached == ("average_precision",)


def test_the_intervals_depend_only_on_the_rows_and_the_seed():
    frame = noisy_window()
    first = assess_quality(frame, LABEL, CONFIG, seed=7)
    assert assess_quality(frame, LABEL, CONFIG, seed=7) == first
    assert assess_quality(frame, LABEL, CONFIG, seed=8).intervals != first.intervals


def test_bad_interval_settings_are_refused_in_one_line():
    with pytest.raises(ValueError, match="confidence") as info:
        MonitorConfig(quality={"confidence": 1.5})
    assert "less than 1" in str(info.value)


def test_floors_name_threshold_metrics_too():
    config = MonitorConfig(labels={"min_rows": 20}, quality={"thresholds": {"recall": 0.9}})
    frame = separable()
    frame["threshold"] = 0.95  # every row served above the scores: nothing flagged
    result = assess_quality(frame, LABEL, config)
    assert result.recall == 0.0 and result.breached == ("recall",)


def test_each_row_is_judged_at_its_own_logged_threshold():
    frame = labelled([1, 1, 0, 0] * 10, [0.6, 0.4, 0.3, 0.1] * 10, [0.5, 0.3, 0.5, 0.5] * 10)
    result = assess_quality(frame, LABEL, CONFIG)
    assert result.recall == 1.0  # 0.4 >= its own 0.3
    assert result.threshold is None  # no single operating threshold to report


def test_too_few_labelled_rows_are_not_judged():
    result = assess_quality(separable(rows=12, positives=2), LABEL, CONFIG)
    assert not result.judged and result.breached == ()
    assert result.reason == (
        "quality not judged: 12 labelled row(s) served by the champion, fewer than "
        "monitor.labels.min_rows (20)"
    )


@pytest.mark.parametrize(("positives", "only"), [(0, "non-failures"), (30, "failures")])
def test_one_class_is_not_judged(positives: int, only: str):
    result = assess_quality(separable(rows=30, positives=positives), LABEL, CONFIG)
    assert not result.judged
    assert result.roc_auc is None
    assert result.reason == (
        f"quality not judged: the 30 labelled rows served by the champion hold only {only}, "
        "so ranking metrics are undefined"
    )


def test_no_rows_and_the_summary_is_json_ready():
    result = assess_quality(separable().iloc[:0], LABEL, CONFIG)
    summary = result.model_dump(mode="json")
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary
    assert summary["rows"] == 0 and summary["roc_auc"] is None and summary["judged"] is False
    assert summary["floors"] == {"average_precision": 0.5, "roc_auc": 0.85}


def test_the_reason_says_where_the_floors_come_from():
    floors = {"roc_auc": 0.9, "average_precision": 0.95}  # the champion's level minus max_drop
    source = "monitor.quality.thresholds; roc_auc raised to the champion's own level minus max_drop"
    result = assess_quality(separable(), LABEL, CONFIG, floors=floors, source=source)
    assert result.floors == floors
    assert result.reason.endswith(f"({source})")
    plain = assess_quality(separable(), LABEL, CONFIG)
    assert plain.reason.endswith("(monitor.quality.thresholds)")
