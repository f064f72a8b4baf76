"""The judge of a rollout: two models on the same logged traffic, one verdict.

A pure function (`judge_rollout`): the prediction-log rows of one rollout, their labels (if
any arrived), the rollout's slot and config in, a `RolloutVerdict` out. No IO; the edge
(`pipelines.edges.rollout_control`) reads the log and applies the verdict.

Roles. The model being judged is the candidate (kinds `shadow`, `canary`: `slot.model`)
against the champion; for kind `watch` the judged model is the new champion, against
`previous` (`slot.model`): the same guards with the roles reversed. Each logged row names
the model that answered (`model_version`, its score, `score_ms`) and the other one
(`shadow_version`, its score, `shadow_error`, `shadow_score_ms`); a row whose shadow columns
are all null was not scored and is left out. A model failed on a row when it was the shadow
and `shadow_error` is set (a canary's failing candidate is answered for by the champion).

Guards (each a `GuardResult`, `holds` None while it cannot be judged):
- error rate: judged minus reference, over the rows both were tried on;
- p99 of scoring time: judged p99 <= `p99_ratio` * reference p99 + `p99_slack_ms`, on like
  calls: the rows with `paired_score_ms` (the answering model timed on the shadow's own
  batch, or a canary's two calls of one request), each model's time on the same rows. A
  log without that column (an older service) is compared as logged (`score_ms` against
  `shadow_score_ms`: a batched shadow call against single requests), and says so; so is
  one when `deploy.rollout.shadow.paired_every` is 0 (no pairing);
- label agreement: the share of rows both scored where their labels (each at its own
  threshold) agree;
- score drift: the two-sample Kolmogorov-Smirnov statistic of their scores;
- labelled quality: the gate's paired bootstrap (judged minus reference, on
  `deploy.primary_metric`) over the labelled rows both scored; holds when the CI's lower
  bound is >= -`deploy.tolerance`.
The latency, agreement and drift guards wait for `min(MIN_GUARD_ROWS, min_rows)` rows both
scored; the error guard is judged from the first row (one failure in a few rows is a breach
at the defaults: a failing candidate leaves at once).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from core.clock import format_time, parse_time
from core.columns import (
    MODEL_VERSION,
    PAIRED_SCORE_MS,
    PREDICTED,
    PROBABILITY,
    ROLLOUT_ID,
    SCORE_MS,
    SHADOW_ERROR,
    SHADOW_PREDICTED,
    SHADOW_PROBABILITY,
    SHADOW_SCORE_MS,
    SHADOW_VERSION,
    TIME,
)
from core.config import DeployConfig
from core.records.rollout import GuardResult, Outcome, RolloutSlot, RolloutVerdict
from models.bootstrap import paired_bootstrap

MIN_GUARD_ROWS = 50  # rows both scored before latency, agreement and drift are judged
REQUIRED_COLUMNS = (
    TIME,
    MODEL_VERSION,
    PROBABILITY,
    PREDICTED,
    SCORE_MS,
    ROLLOUT_ID,
    SHADOW_VERSION,
    SHADOW_PROBABILITY,
    SHADOW_PREDICTED,
    SHADOW_ERROR,
    SHADOW_SCORE_MS,
)


class RolloutInputError(ValueError):
    """Rows or a slot the judge cannot use; the message says what is wrong."""


@dataclass(frozen=True)
class Scored:
    """The rollout's rows from the judged model's side and the reference's, aligned."""

    tried: int  # rows both models were tried on (scored, or failed)
    judged_errors: int
    reference_errors: int
    judged_proba: np.ndarray  # rows both scored
    reference_proba: np.ndarray
    judged_label: np.ndarray
    reference_label: np.ndarray
    judged_ms: np.ndarray  # each model's call times on like calls (or as logged)
    reference_ms: np.ndarray
    paired: bool  # the times are paired (the log has paired_score_ms), not as logged
    labels: np.ndarray  # per row both scored: the label, NaN when none arrived
    until: dt.datetime | None  # the newest row's time


def version_number(label: str | int) -> int:
    """`v4` (or 4) -> 4."""
    text = str(label)
    number = text[1:] if text.startswith("v") else text
    if not number.isdigit() or int(number) < 1:
        raise RolloutInputError(f"{label!r} is not a model version like v4")
    return int(number)


def roles(slot: RolloutSlot, champion_version: str | int) -> tuple[str, str]:
    """(judged, reference) version labels: the candidate against the champion, or for kind
    `watch` the champion against previous."""
    champion = f"v{version_number(champion_version)}"
    other = f"v{version_number(slot.model.version)}"
    if champion == other:
        raise RolloutInputError(
            f"rollout {slot.id}: its model {other} is the champion itself; nothing to compare"
        )
    return (champion, other) if slot.kind == "watch" else (other, champion)


def split_scores(
    rows: pd.DataFrame,
    labels: pd.Series | None,
    judged: str,
    reference: str,
    paired: bool = True,
) -> Scored:
    """Each model's scores, errors and times on the rollout's rows (see the module doc).

    `paired`: compare times on like calls (`paired_score_ms`) when the log has that column;
    False (`deploy.rollout.shadow.paired_every` 0) compares them as logged.
    """
    missing = [name for name in REQUIRED_COLUMNS if name not in rows.columns]
    if missing:
        raise RolloutInputError(
            f"the prediction log lacks the rollout column(s) {missing}: it was written by a "
            "service without rollout support; restart the service from this version"
        )
    answered = rows[MODEL_VERSION].astype(str)
    shadow = rows[SHADOW_VERSION].astype(str)
    pair = ((answered == judged) & (shadow == reference)) | (
        (answered == reference) & (shadow == judged)
    )
    failed = rows[SHADOW_ERROR].notna()
    scored = rows[SHADOW_PROBABILITY].notna() & ~failed
    tried = pair & (scored | failed)
    judged_shadow = shadow == judged
    both = tried & scored
    frame = rows[both]
    judged_is_shadow = judged_shadow[both].to_numpy()

    def side(answer: str, other: str, shadow_side: np.ndarray) -> np.ndarray:
        return np.where(shadow_side, frame[other].to_numpy(), frame[answer].to_numpy())

    judged_proba = side(PROBABILITY, SHADOW_PROBABILITY, judged_is_shadow).astype(float)
    reference_proba = side(PROBABILITY, SHADOW_PROBABILITY, ~judged_is_shadow).astype(float)
    judged_label = side(PREDICTED, SHADOW_PREDICTED, judged_is_shadow).astype(bool)
    reference_label = side(PREDICTED, SHADOW_PREDICTED, ~judged_is_shadow).astype(bool)
    paired = paired and PAIRED_SCORE_MS in frame.columns
    answer_ms = PAIRED_SCORE_MS if paired else SCORE_MS
    judged_ms = pd.to_numeric(
        pd.Series(side(answer_ms, SHADOW_SCORE_MS, judged_is_shadow)), errors="coerce"
    )
    reference_ms = pd.to_numeric(
        pd.Series(side(answer_ms, SHADOW_SCORE_MS, ~judged_is_shadow)), errors="coerce"
    )
    if paired:  # like calls only: rows where both times are there
        timed = judged_ms.notna() & reference_ms.notna()
        judged_ms, reference_ms = judged_ms[timed], reference_ms[timed]
    if labels is None:
        label_values = np.full(len(frame), np.nan)
    else:
        label_values = pd.to_numeric(labels.reindex(frame.index), errors="coerce").to_numpy(float)
    times = pd.to_datetime(rows.loc[tried, TIME], utc=True, errors="coerce").dropna()
    return Scored(
        tried=int(tried.sum()),
        judged_errors=int((tried & failed & judged_shadow).sum()),
        reference_errors=int((tried & failed & (shadow == reference)).sum()),
        judged_proba=judged_proba,
        reference_proba=reference_proba,
        judged_label=judged_label,
        reference_label=reference_label,
        judged_ms=judged_ms.dropna().to_numpy(float),
        reference_ms=reference_ms.dropna().to_numpy(float),
        paired=paired,
        labels=label_values,
        until=times.max().to_pydatetime() if len(times) else None,
    )


def judge_rollout(
    rows: pd.DataFrame,
    labels: pd.Series | None,
    slot: RolloutSlot,
    champion_version: str | int,
    deploy: DeployConfig,
    now: dt.datetime,
    seed: int = 0,
) -> RolloutVerdict:
    """One judgement of the rollout `slot` on its logged rows (see the module doc).

    `rows`: prediction-log rows (core.columns' names); rows of other rollouts are ignored.
    `labels`: the label of each row (same index; NaN where none arrived), or None.
    `deploy`: its `rollout` block gives the guards and durations; its `primary_metric`,
    `tolerance` and `bootstrap` the labelled guard. Outcomes: any breach -> abort (watch:
    rollback); every judgeable guard holding over `min_rows` and `min_duration_s` (and the
    labelled guard judged, if required) -> promote (watch: keep, once `rollback_window_s`
    has passed); past `max_duration_s` -> abort (watch: keep); else continue.
    """
    config = deploy.rollout
    judged, reference = roles(slot, champion_version)
    started = parse_time(slot.started_at)
    if started is None:
        raise RolloutInputError(f"rollout {slot.id}: started_at {slot.started_at!r} is not a time")
    mine = rows[rows[ROLLOUT_ID].astype(str) == slot.id] if ROLLOUT_ID in rows.columns else rows
    scores = split_scores(mine, labels, judged, reference, config.shadow.paired_every > 0)
    enough = min(MIN_GUARD_ROWS, config.min_rows)
    both = len(scores.judged_proba)
    guards = [
        _error_guard(scores, deploy),
        _latency_guard(scores, deploy, enough),
        _agreement_guard(scores, deploy, enough),
        _drift_guard(scores, deploy, enough),
        _labelled_guard(scores, deploy, seed),
    ]
    elapsed = max(0.0, (now - started).total_seconds())
    outcome, reasons = _decide(slot, guards, both, elapsed, deploy)
    until = scores.until or started
    return RolloutVerdict(
        rollout_id=slot.id,
        kind=slot.kind,
        model=slot.model.tag.partition(":")[0],
        champion_version=version_number(champion_version),
        other_version=version_number(slot.model.version),
        judged_at=format_time(now),
        since=format_time(started),
        until=format_time(until),
        rows=both,
        labelled_rows=int(np.isfinite(scores.labels).sum()),
        elapsed_s=round(elapsed, 3),
        guards=guards,
        outcome=outcome,
        reasons=[*(guard.detail for guard in guards), *reasons],
    )


# --- the guards -----------------------------------------------------------------------


def _error_guard(scores: Scored, deploy: DeployConfig) -> GuardResult:
    limit = deploy.rollout.guards.max_error_rate_increase
    if scores.tried == 0:
        return GuardResult(
            name="error_rate",
            value=None,
            limit=limit,
            holds=None,
            detail="error rate: no row scored by both models yet",
        )
    judged = scores.judged_errors / scores.tried
    reference = scores.reference_errors / scores.tried
    increase = judged - reference
    holds = increase <= limit
    return GuardResult(
        name="error_rate",
        value=round(increase, 6),
        limit=limit,
        holds=holds,
        detail=(
            f"error rate: {scores.judged_errors} of {scores.tried} rows failed "
            f"({judged:.2%}) against {reference:.2%}, an increase of {increase:.2%} "
            f"{'within' if holds else 'beyond'} {limit:.2%}"
        ),
    )


def _latency_guard(scores: Scored, deploy: DeployConfig, enough: int) -> GuardResult:
    guards = deploy.rollout.guards
    timed = min(len(scores.judged_ms), len(scores.reference_ms))
    how = "paired" if scores.paired else "as logged"
    if timed < enough:
        return _pending(
            "p99_score_ms", None, f"p99 of scoring time ({how}): {timed} timed rows of {enough}"
        )
    judged = float(np.percentile(scores.judged_ms, 99))
    reference = float(np.percentile(scores.reference_ms, 99))
    limit = guards.p99_ratio * reference + guards.p99_slack_ms
    holds = judged <= limit
    return GuardResult(
        name="p99_score_ms",
        value=round(judged, 3),
        limit=round(limit, 3),
        holds=holds,
        detail=(
            f"p99 of scoring time ({how}, {timed} rows): {judged:.1f} ms against "
            f"{reference:.1f} ms, "
            f"{'within' if holds else 'beyond'} the limit {limit:.1f} ms "
            f"({guards.p99_ratio:g} x + {guards.p99_slack_ms:g} ms)"
        ),
    )


def _agreement_guard(scores: Scored, deploy: DeployConfig, enough: int) -> GuardResult:
    limit = deploy.rollout.guards.min_label_agreement
    both = len(scores.judged_label)
    if both < enough:
        return _pending("label_agreement", limit, f"label agreement: {both} rows of {enough}")
    agreement = float((scores.judged_label == scores.reference_label).mean())
    holds = agreement >= limit
    return GuardResult(
        name="label_agreement",
        value=round(agreement, 6),
        limit=limit,
        holds=holds,
        detail=(
            f"label agreement at each model's threshold: {agreement:.1%} of {both} rows, "
            f"{'at or above' if holds else 'below'} {limit:.1%}"
        ),
    )


def _drift_guard(scores: Scored, deploy: DeployConfig, enough: int) -> GuardResult:
    limit = deploy.rollout.guards.max_score_drift
    both = len(scores.judged_proba)
    if both < enough:
        return _pending("score_drift", limit, f"score drift: {both} rows of {enough}")
    statistic = float(
        ks_2samp(scores.judged_proba, scores.reference_proba, method="asymp").statistic
    )
    holds = statistic <= limit
    return GuardResult(
        name="score_drift",
        value=round(statistic, 6),
        limit=limit,
        holds=holds,
        detail=(
            f"score drift (Kolmogorov-Smirnov statistic) {statistic:.3f} over {both} rows, "
            f"{'within' if holds else 'beyond'} {limit:.3f}"
        ),
    )


def _labelled_guard(scores: Scored, deploy: DeployConfig, seed: int) -> GuardResult:
    config = deploy.rollout.guards.labelled
    metric, bound = deploy.primary_metric, -deploy.tolerance
    name = f"labelled_{metric}"
    known = np.isfinite(scores.labels)
    y = scores.labels[known].astype(int)
    rows, positives = len(y), int(y.sum())
    if rows < config.min_rows or positives < config.min_positives or positives == rows:
        return _pending(
            name,
            bound,
            f"labelled {metric}: {rows} labelled rows / {positives} positives, need "
            f"{config.min_rows} / {config.min_positives} and a negative",
        )
    comparison = paired_bootstrap(
        y,
        scores.judged_proba[known],
        scores.reference_proba[known],
        metric,
        resamples=deploy.bootstrap.resamples,
        confidence=deploy.bootstrap.confidence,
        seed=seed,
    )
    holds = comparison.ci_low >= bound
    return GuardResult(
        name=name,
        value=round(comparison.ci_low, 6),
        limit=bound,
        holds=holds,
        detail=(
            f"labelled {metric} on {rows} rows: {comparison.challenger:.3f} against "
            f"{comparison.champion:.3f}; the {comparison.confidence:.0%} CI of the difference "
            f"[{comparison.ci_low:.3f}, {comparison.ci_high:.3f}] "
            f"{'stays at or above' if holds else 'reaches below'} {bound:.3f} (tolerance)"
        ),
    )


def _pending(name: str, limit: float | None, detail: str) -> GuardResult:
    return GuardResult(name=name, value=None, limit=limit, holds=None, detail=f"{detail}: pending")


# --- the outcome ----------------------------------------------------------------------


def _decide(
    slot: RolloutSlot, guards: list[GuardResult], rows: int, elapsed: float, deploy: DeployConfig
) -> tuple[Outcome, list[str]]:
    config = deploy.rollout
    watch = slot.kind == "watch"
    broken = [guard.name for guard in guards if guard.holds is False]
    if broken:
        what = "the new champion is rolled back" if watch else "the candidate is removed"
        return ("rollback" if watch else "abort"), [f"breached {', '.join(broken)}: {what}"]
    if watch:
        if elapsed >= config.rollback_window_s:
            return "keep", [
                f"no guard breached in the rollback window ({config.rollback_window_s:g} s, "
                f"{rows} rows both scored): the champion stays, previous leaves the service"
            ]
        return "continue", [
            f"watching: {elapsed:.0f} s of the {config.rollback_window_s:g} s rollback window"
        ]
    labelled = guards[-1]
    waiting = []
    if rows < config.min_rows:
        waiting.append(f"{rows} of {config.min_rows} rows both scored")
    if elapsed < config.min_duration_s:
        waiting.append(f"{elapsed:.0f} s of {config.min_duration_s:g} s")
    # every live-traffic guard must have been judged: a p99 with too few timed (paired) rows
    # is not a p99 that held
    unjudged = [guard.name for guard in guards[:-1] if guard.holds is None]
    if unjudged:
        waiting.append(f"not judged yet: {', '.join(unjudged)}")
    if config.guards.labelled.required and labelled.holds is None:
        waiting.append("the labelled guard is required and not judged yet")
    if not waiting:
        return "promote", [
            f"every judged guard holds over {rows} rows and {elapsed:.0f} s: the candidate "
            "becomes champion"
        ]
    if elapsed > config.max_duration_s:
        return "abort", [
            f"not promotable after {elapsed:.0f} s (deploy.rollout.max_duration_s "
            f"{config.max_duration_s:g}): {'; '.join(waiting)}"
        ]
    return "continue", [f"waiting: {'; '.join(waiting)}"]
