"""The champion's own quality bounds: a floor its unchanged training period falls below by
chance is lowered to them, so a weak but unchanged champion is not retrained on every window,
while a real loss of quality still breaches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.columns import PROBABILITY, THRESHOLD
from core.config import Params
from core.records.profile import MonitorProfile
from monitoring.assessment import quality_floors
from monitoring.quality import assess_quality
from monitoring.quality_bounds import calibrate_quality

PARAMS = Params()
CONFIG = PARAMS.monitor


def series(rows: int, seed: int, signal: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels of a champion that ranks failures imperfectly (AP about 0.3)."""
    rng = np.random.default_rng(seed)
    risk = rng.beta(0.5, 12, rows)
    labels = (rng.random(rows) < np.clip(risk * 1.5, 0, 1)).astype(np.int64)
    noise = rng.normal(0, 0.08, rows)
    scores = np.clip(signal * risk + noise, 0, 1)
    return labels, scores


def profile_with(bounds) -> MonitorProfile:
    """A profile holding only the quality bounds (the rest is not read by quality_floors)."""
    return MonitorProfile.model_construct(quality=bounds, reference=None)


def test_bounds_sit_below_the_blocks_and_name_their_model():
    labels, scores = series(20_000, 1)
    bounds = calibrate_quality(labels, scores, CONFIG)
    assert bounds.calibrated, bounds.reason
    assert set(bounds.metrics) == {"roc_auc", "average_precision"}
    for sizes in bounds.metrics.values():
        assert [s.block_rows for s in sizes] == sorted(s.block_rows for s in sizes)
        for size in sizes:
            assert 0 < size.bound <= size.lowest <= size.mean < 1
    ap = bounds.metrics["average_precision"]
    assert bounds.bound_at("average_precision", 10) == ap[0].bound  # below: the smallest size
    assert bounds.bound_at("average_precision", 10**6) == ap[-1].bound
    assert bounds.bound_at("f1", 1000) is None
    assert "Student-t" in bounds.tail_model


def test_a_weak_unchanged_champion_is_judged_against_its_own_bound():
    labels, scores = series(20_000, 2)
    profile = profile_with(calibrate_quality(labels, scores, CONFIG))
    floors, source = quality_floors(CONFIG, profile, 1000)
    assert floors["average_precision"] < CONFIG.quality.thresholds["average_precision"]
    assert "average_precision lowered to" in source and "1000 rows" in source
    # fresh windows of the same process: the absolute floor (0.5) would breach every one
    breached = []
    for seed in range(10, 30):
        y, p = series(1000, seed)
        window = pd.DataFrame({"label": y, PROBABILITY: p, THRESHOLD: 0.1})
        at_floor = assess_quality(window, "label", CONFIG, seed=0)
        assert "average_precision" in at_floor.breached  # the pathology the bounds remove
        judged = assess_quality(window, "label", CONFIG, 0, floors, source)
        breached.append(bool(judged.breached))
        assert "lowered to" in judged.reason
    assert sum(breached) <= 1


def test_a_real_loss_of_quality_still_breaches_the_bound():
    labels, scores = series(20_000, 3)
    profile = profile_with(calibrate_quality(labels, scores, CONFIG))
    y, _ = series(5000, 40)
    rng = np.random.default_rng(41)
    useless = rng.random(len(y))  # the champion's ranking gone: AP near the failure rate
    floors, source = quality_floors(CONFIG, profile, len(y))
    window = pd.DataFrame({"label": y, PROBABILITY: useless, THRESHOLD: 0.5})
    judged = assess_quality(window, "label", CONFIG, 0, floors, source)
    assert set(judged.breached) == {"average_precision", "roc_auc"}, judged.reason


def test_the_bounds_only_lower_a_floor():
    labels, scores = series(20_000, 4)
    bounds = calibrate_quality(labels, scores, CONFIG)
    low = CONFIG.model_copy(
        update={
            "quality": CONFIG.quality.model_copy(
                update={"thresholds": {"roc_auc": 0.1, "average_precision": 0.01}}
            )
        }
    )
    assert quality_floors(low, profile_with(bounds), 1000) == (
        {"roc_auc": 0.1, "average_precision": 0.01},
        "monitor.quality.thresholds",
    )


@pytest.mark.parametrize(
    ("rows", "own_bounds", "reason"),
    [
        (400, True, "too few"),
        (20_000, False, "monitor.quality.own_bounds is false"),
    ],
)
def test_no_bounds_says_why_and_leaves_the_floors(rows, own_bounds, reason):
    config = CONFIG.model_copy(
        update={"quality": CONFIG.quality.model_copy(update={"own_bounds": own_bounds})}
    )
    labels, scores = series(rows, 5)
    bounds = calibrate_quality(labels, scores, config)
    assert not bounds.calibrated and reason in bounds.reason
    floors, source = quality_floors(config, profile_with(bounds), 1000)
    assert floors == dict(CONFIG.quality.thresholds) and source == "monitor.quality.thresholds"


def test_blocks_of_one_class_give_no_bounds():
    labels = np.zeros(20_000, dtype=np.int64)
    bounds = calibrate_quality(labels, np.linspace(0, 1, 20_000), CONFIG)
    assert not bounds.calibrated
    assert bounds.reason == "no block of the training period holds both classes"
