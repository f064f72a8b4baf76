"""The rollout judge on synthetic prediction-log rows: each guard holding, breaking and
pending, each outcome, and inputs it refuses."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from core.config import DeployConfig
from core.config.rollout import RolloutConfig
from core.records.rollout import RolloutSlot, SlotModel
from models.rollout import RolloutInputError, judge_rollout

START = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
SHA = "a" * 64


def slot(kind: str = "shadow", version: str = "v5") -> RolloutSlot:
    return RolloutSlot(
        id="r-1",
        kind=kind,
        model=SlotModel(tag=f"m:{version}", version=version, content_sha256=SHA, threshold=0.5),
        share=0.2 if kind == "canary" else 0.0,
        started_at="2026-12-01T12:00:00.000Z",
    )


def deploy(**rollout: object) -> DeployConfig:
    base = {"min_rows": 100, "min_duration_s": 60.0, "max_duration_s": 3600.0}
    return DeployConfig(rollout=RolloutConfig.model_validate({**base, **rollout}))


def log_rows(
    n: int = 200,
    *,
    answer: str = "v4",
    shadow: str = "v5",
    shift: float = 0.0,
    errors: int = 0,
    shadow_ms: float = 2.0,
    paired_ms: float | None = 2.0,
    unscored: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """`n` rows answered by `answer`, scored in shadow by `shadow` (its scores moved by
    `shift`); the first `errors` shadow calls failed; `unscored` more rows were not scored.
    `paired_ms`: the answering model's time on the shadow's batch (None: no such column,
    the log of a service before paired timing)."""
    rng = np.random.default_rng(seed)
    proba = rng.uniform(0, 1, n)
    other = np.clip(proba + shift + rng.normal(0, 0.01, n), 0, 1)
    frame = pd.DataFrame(
        {
            "time": [START + dt.timedelta(seconds=i) for i in range(n)],
            "request_id": [f"q{i}" for i in range(n)],
            "model_version": answer,
            "probability": proba,
            "predicted": proba >= 0.5,
            "threshold": 0.5,
            "score_ms": 2.0,
            "rollout_id": "r-1",
            "shadow_version": shadow,
            "shadow_probability": other,
            "shadow_predicted": other >= 0.5,
            "shadow_threshold": 0.5,
            "shadow_error": None,
            "shadow_score_ms": shadow_ms,
        }
    )
    if paired_ms is not None:
        frame["paired_score_ms"] = paired_ms
    for column in ("shadow_error", "shadow_predicted", "shadow_probability", "shadow_score_ms"):
        frame[column] = frame[column].astype(object)
    failed = frame.index < errors
    frame.loc[failed, ["shadow_probability", "shadow_predicted", "shadow_score_ms"]] = None
    frame.loc[failed, "shadow_error"] = "ValueError: boom"
    if unscored:
        extra = frame.iloc[:unscored].copy()
        extra[["shadow_probability", "shadow_predicted", "shadow_error", "shadow_score_ms"]] = None
        frame = pd.concat([frame, extra.astype(frame.dtypes.to_dict())], ignore_index=True)
    return frame


def labels_for(rows: pd.DataFrame, quality: str = "same", seed: int = 1) -> pd.Series:
    """Labels the answering model ranks well; `worse`: the shadow's scores are noise."""
    rng = np.random.default_rng(seed)
    return pd.Series((rows["probability"] + rng.normal(0, 0.15, len(rows)) > 0.5).astype(int))


def guard(verdict, name: str):
    return next(g for g in verdict.guards if g.name == name)


NOW = START + dt.timedelta(minutes=10)


def test_a_good_candidate_over_enough_rows_and_time_is_promoted() -> None:
    rows = log_rows()
    verdict = judge_rollout(rows, labels_for(rows), slot(), "v4", deploy(), NOW)
    assert verdict.outcome == "promote"
    assert verdict.rows == 200 and verdict.labelled_rows == 200
    assert all(g.holds for g in verdict.guards), verdict.reasons
    assert (verdict.champion_version, verdict.other_version, verdict.model) == (4, 5, "m")
    assert verdict.until == "2026-12-01T12:03:19.000Z"
    assert len(verdict.reasons) == len(verdict.guards) + 1


def test_failing_shadow_calls_breach_the_error_guard_at_once() -> None:
    rows = log_rows(n=10, errors=1)
    verdict = judge_rollout(rows, None, slot(), "v4", deploy(), START + dt.timedelta(seconds=5))
    error = guard(verdict, "error_rate")
    assert error.holds is False and error.value == pytest.approx(0.1)
    assert verdict.outcome == "abort"
    assert "breached error_rate" in verdict.reasons[-1]
    assert "1 of 10 rows failed" in error.detail


def test_rows_not_scored_are_left_out() -> None:
    rows = log_rows(n=100, unscored=30)
    verdict = judge_rollout(rows, None, slot(), "v4", deploy(), NOW)
    assert verdict.rows == 100
    assert guard(verdict, "error_rate").holds is True


def test_a_guard_not_judged_yet_blocks_the_promotion_and_says_which() -> None:
    """Rows and time enough, every judged guard holding, but no paired timing yet (a shadow
    that has paired none of its batches): no promotion; past max_duration_s, an abort that
    names the guard."""
    rows = log_rows(paired_ms=None).assign(paired_score_ms=np.nan)
    verdict = judge_rollout(rows, None, slot(), "v4", deploy(), NOW)
    assert guard(verdict, "p99_score_ms").holds is None
    assert verdict.outcome == "continue", verdict.reasons
    assert verdict.reasons[-1] == "waiting: not judged yet: p99_score_ms"
    late = judge_rollout(rows, None, slot(), "v4", deploy(), START + dt.timedelta(hours=2))
    assert late.outcome == "abort" and "not judged yet: p99_score_ms" in late.reasons[-1]


def test_a_slow_candidate_breaches_the_latency_guard() -> None:
    verdict = judge_rollout(log_rows(shadow_ms=40.0), None, slot(), "v4", deploy(), NOW)
    latency = guard(verdict, "p99_score_ms")
    assert latency.holds is False and latency.value == 40.0 and latency.limit == 29.0
    assert verdict.outcome == "abort"


def test_the_latency_guard_compares_like_calls_of_the_two_models() -> None:
    # the shadow scores batches (30 ms a call) while the champion answered single requests
    # (score_ms 2 ms); timed on the same batches, the champion takes 30 ms too: equal models
    equal = judge_rollout(
        log_rows(shadow_ms=30.0, paired_ms=30.0), None, slot(), "v4", deploy(), NOW
    )
    latency = guard(equal, "p99_score_ms")
    assert latency.holds is True and latency.limit == 85.0, latency.detail
    assert "paired, 200 rows" in latency.detail and equal.outcome == "promote"
    # the same times compared as logged (a log without pairing) would abort it: 30 > 2 x 2 + 25
    logged = judge_rollout(
        log_rows(shadow_ms=30.0, paired_ms=None), None, slot(), "v4", deploy(), NOW
    )
    assert guard(logged, "p99_score_ms").holds is False
    assert "as logged" in guard(logged, "p99_score_ms").detail
    # a candidate 3 x slower than the champion on the same batches breaks it
    slow = judge_rollout(
        log_rows(shadow_ms=90.0, paired_ms=30.0), None, slot(), "v4", deploy(), NOW
    )
    assert guard(slow, "p99_score_ms").holds is False and slow.outcome == "abort"


def test_only_paired_rows_time_the_latency_guard_unless_pairing_is_off() -> None:
    rows = log_rows(shadow_ms=30.0)
    rows["paired_score_ms"] = rows["paired_score_ms"].astype(object)
    rows.loc[40:, "paired_score_ms"] = None  # 40 rows paired: fewer than the 50 it needs
    latency = guard(judge_rollout(rows, None, slot(), "v4", deploy(), NOW), "p99_score_ms")
    assert latency.holds is None and "(paired): 40 timed rows of 50" in latency.detail
    off = deploy(shadow={"paired_every": 0})
    unpaired = guard(judge_rollout(rows, None, slot(), "v4", off, NOW), "p99_score_ms")
    assert unpaired.holds is False and "as logged" in unpaired.detail  # 30 > 2 x 2 + 25


def test_disagreeing_and_drifted_scores_breach_their_guards() -> None:
    verdict = judge_rollout(log_rows(shift=0.45), None, slot(), "v4", deploy(), NOW)
    assert guard(verdict, "label_agreement").holds is False
    assert guard(verdict, "score_drift").holds is False
    assert verdict.outcome == "abort"


def test_a_candidate_worse_on_labelled_rows_is_aborted() -> None:
    rows = log_rows(n=400)
    rng = np.random.default_rng(3)
    labels = labels_for(rows)
    # the candidate's scores keep their distribution and mostly their labels, but rank the
    # labelled rows worse: shuffle them within each predicted class
    shadow = rows["shadow_probability"].to_numpy().copy()
    for high in (True, False):
        where = np.flatnonzero((shadow >= 0.5) == high)
        shadow[where] = rng.permutation(shadow[where])
    rows["shadow_probability"] = shadow
    verdict = judge_rollout(
        rows, labels, slot(), "v4", deploy(guards={"min_label_agreement": 0.5}), NOW
    )
    labelled = guard(verdict, "labelled_average_precision")
    assert labelled.holds is False and labelled.value < -0.01
    assert guard(verdict, "label_agreement").holds is True
    assert verdict.outcome == "abort"


def test_guards_wait_for_rows_and_labels() -> None:
    rows = log_rows(n=20)
    verdict = judge_rollout(rows, labels_for(rows), slot(), "v4", deploy(), NOW)
    pending = {g.name for g in verdict.guards if g.holds is None}
    assert pending == {
        "p99_score_ms",
        "label_agreement",
        "score_drift",
        "labelled_average_precision",
    }
    assert guard(verdict, "error_rate").holds is True
    assert verdict.outcome == "continue"
    assert "20 of 100 rows both scored" in verdict.reasons[-1]
    empty = judge_rollout(rows.iloc[0:0], None, slot(), "v4", deploy(), NOW)
    assert guard(empty, "error_rate").holds is None and empty.outcome == "continue"


def test_too_early_continues_and_too_late_aborts() -> None:
    rows = log_rows()
    early = judge_rollout(rows, None, slot(), "v4", deploy(), START + dt.timedelta(seconds=30))
    assert early.outcome == "continue" and "30 s of 60 s" in early.reasons[-1]
    thin = log_rows(n=60)
    late = judge_rollout(thin, None, slot(), "v4", deploy(), START + dt.timedelta(hours=2))
    assert late.outcome == "abort" and "max_duration_s" in late.reasons[-1]


def test_a_required_labelled_guard_blocks_the_promotion() -> None:
    config = deploy(guards={"labelled": {"required": True}})
    verdict = judge_rollout(log_rows(), None, slot(), "v4", config, NOW)
    assert verdict.outcome == "continue"
    assert "labelled guard is required" in verdict.reasons[-1]


def test_canary_rows_count_both_directions_and_the_champions_errors() -> None:
    champion_answered = log_rows(n=150, answer="v4", shadow="v5", seed=1)
    candidate_answered = log_rows(n=50, answer="v5", shadow="v4", errors=1, seed=2)
    rows = pd.concat([champion_answered, candidate_answered], ignore_index=True)
    verdict = judge_rollout(rows, None, slot("canary"), "v4", deploy(), NOW)
    error = guard(verdict, "error_rate")
    # the one failure is the champion's (it was the shadow): the candidate's rate is lower
    assert error.holds is True and error.value == pytest.approx(-1 / 200)
    assert verdict.rows == 199 and verdict.outcome == "promote"


def test_watch_judges_the_champion_against_previous() -> None:
    # the champion v5 answers, previous v4 scores in shadow; v5's calls are slow
    rows = log_rows(answer="v5", shadow="v4", paired_ms=80.0)
    watch = deploy(rollback_window_s=300.0)
    verdict = judge_rollout(rows, None, slot("watch", "v4"), "v5", watch, NOW)
    assert verdict.outcome == "rollback"
    assert (verdict.champion_version, verdict.other_version) == (5, 4)
    calm = log_rows(answer="v5", shadow="v4")
    kept = judge_rollout(calm, None, slot("watch", "v4"), "v5", watch, NOW)
    assert kept.outcome == "keep"
    soon = judge_rollout(calm, None, slot("watch", "v4"), "v5", watch, START)
    assert soon.outcome == "continue"


def test_rows_of_other_rollouts_and_models_are_ignored() -> None:
    rows = log_rows(n=100)
    other = log_rows(n=100, errors=50)
    other["rollout_id"] = "r-0"
    stray = log_rows(n=10, answer="v3", errors=10)
    verdict = judge_rollout(pd.concat([rows, other, stray]), None, slot(), "v4", deploy(), NOW)
    assert verdict.rows == 100 and guard(verdict, "error_rate").holds is True


def test_inputs_it_cannot_judge_are_refused_in_one_line() -> None:
    with pytest.raises(RolloutInputError, match="lacks the rollout column"):
        judge_rollout(log_rows().drop(columns=["shadow_error"]), None, slot(), "v4", deploy(), NOW)
    with pytest.raises(RolloutInputError, match="is the champion itself"):
        judge_rollout(log_rows(), None, slot(), "v5", deploy(), NOW)
    with pytest.raises(RolloutInputError, match="not a model version"):
        judge_rollout(log_rows(), None, slot(), "four", deploy(), NOW)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"min_duration_s": 600, "max_duration_s": 60}, "must exceed min_duration_s"),
        ({"guards": {"p99_ratio": 0.5}}, "greater than or equal to 1"),
        ({"guards": {"max_score_drift": 0}}, "greater than 0"),
        ({"guards": {"labelled": {"min_rows": 1}}}, "greater than or equal to 10"),
        ({"strategy": "blue-green"}, "'immediate', 'shadow' or 'canary'"),
        ({"canary": {"share": 1.0}}, "less than 1"),
        (
            {"shadow": {"max_cpu_share": 0}},
            "shadow.max_cpu_share\n  Input should be greater than 0",
        ),
        ({"shadow": {"max_cpu_share": 1.5}}, "less than or equal to 1"),
        ({"shadow": {"max_lag_s": 0}}, "shadow.max_lag_s"),
        ({"shadow": {"paired_every": -1}}, "shadow.paired_every"),
    ],
)
def test_bad_rollout_config_is_refused_with_its_message(block: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RolloutConfig.model_validate(block)
