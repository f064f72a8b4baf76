"""The champion/challenger gate: the recent-window check and the promotion rule.

The recent window applies when labelled feedback joined the training data and there is a
champion: the holdout rows from the newest feedback batch are production data neither model
trained on, from the process as it is now. There the challenger must beat the champion by
more than a margin; with too few such rows or positives it cannot be judged, and is not
promoted. The paired bootstrap the rule reads is in `models.bootstrap`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.config import DeployConfig, RankingMetric, RecentWindowConfig
from core.records.deploy import Comparison, GateCheck, RecentWindow
from models.bootstrap import check_scores, observed_metrics


@dataclass(frozen=True)
class PromotionDecision:
    """Whether the challenger replaces the champion, with a sentence for every check."""

    promote: bool
    reasons: tuple[str, ...]
    checks: tuple[GateCheck, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe values (numbers rounded to 6 places, as the records write them)."""
        return {
            "promote": self.promote,
            "reasons": list(self.reasons),
            "checks": [check.model_dump(mode="json") for check in self.checks],
        }


# --- the recent window ----------------------------------------------------------------


def compare_recent_window(
    batch: str,
    y_true: np.ndarray,
    challenger_proba: np.ndarray,
    champion_proba: np.ndarray,
    metric: RankingMetric,
    config: RecentWindowConfig,
) -> RecentWindow:
    """Score both models on the recent window's rows and judge challenger - champion > margin.

    The rows are the holdout rows of the newest feedback batch `batch`. Fewer than
    `config.min_rows` rows, fewer than `config.min_positives` positives, or no negatives:
    the window cannot be judged and the check fails.
    """
    y = np.asarray(y_true).ravel()
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"y_true must hold only 0 and 1, got {np.unique(y)[:5].tolist()}")
    y = y.astype(np.int64)
    models = [
        check_scores(challenger_proba, y, "challenger"),
        check_scores(champion_proba, y, "champion"),
    ]
    rows, positives = len(y), int(y.sum())
    both_classes = 0 < positives < rows
    challenger = champion = delta = None
    if both_classes:
        observed = observed_metrics(y, models, metric)
        challenger, champion = float(observed[0]), float(observed[1])
        delta = challenger - champion
    judged = both_classes and rows >= config.min_rows and positives >= config.min_positives
    return RecentWindow(
        batch=batch,
        rows=rows,
        positives=positives,
        metric=metric,
        challenger=challenger,
        champion=champion,
        delta=delta,
        margin=config.margin,
        min_rows=config.min_rows,
        min_positives=config.min_positives,
        judged=judged,
        passed=judged and delta is not None and delta > config.margin,
    )


def describe_recent_window(window: RecentWindow) -> str:
    """One sentence for the decision's reasons."""
    where = f"the newest feedback batch ({window.batch})"
    if not window.judged:
        return (
            f"recent window cannot be judged: {window.rows} rows / {window.positives} positives "
            f"of {where} in the holdout, need at least {window.min_rows} rows, "
            f"{window.min_positives} positives and one negative"
        )
    verdict = "exceeds" if window.passed else "does not exceed"
    return (
        f"recent window, {window.rows} rows / {window.positives} positives of {where} in the "
        f"holdout: challenger {window.metric} {_fmt(window.challenger)} vs champion "
        f"{_fmt(window.champion)}, difference {_fmt(window.delta)} {verdict} the margin "
        f"{_fmt(window.margin)}"
    )


# --- the promotion rule ---------------------------------------------------------------


def decide_promotion(
    challenger: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    comparison: Comparison | None,
    config: DeployConfig,
    recent_window: RecentWindow | None = None,
) -> PromotionDecision:
    """Promote when every absolute threshold passes and, with a champion, the challenger is
    not worse on the primary metric beyond the tolerance and, when a recent window applies,
    beats the champion there by more than the margin.

    `challenger` and `champion` are holdout metrics (as `score_predictions` returns). The
    champion comparison is a non-inferiority test: the lower bound of the CI of
    (challenger - champion) must be >= -tolerance. With no champion, the thresholds decide.
    `recent_window` is None when the check does not apply (no feedback, or no champion); it
    then adds neither a check nor a reason.
    """
    checks: list[GateCheck] = []
    reasons: list[str] = []
    for metric, minimum in config.thresholds.items():
        check, reason = _threshold_check(metric, challenger.get(metric), minimum)
        checks.append(check)
        reasons.append(reason)

    if champion is None:
        if comparison is not None:
            raise ValueError("a bootstrap comparison was given but there is no champion")
        reasons.append("no champion yet: the absolute thresholds decide")
    else:
        if comparison is None:
            raise ValueError("a champion needs a bootstrap comparison to be judged against")
        if comparison.metric != config.primary_metric:
            raise ValueError(
                f"the comparison is on {comparison.metric} but the gate's primary metric is "
                f"{config.primary_metric}"
            )
        check, reason = _non_inferiority_check(comparison, config.tolerance)
        checks.append(check)
        reasons.append(reason)

    if recent_window is not None:
        if champion is None:
            raise ValueError("a recent-window comparison was given but there is no champion")
        if recent_window.metric != config.primary_metric:
            raise ValueError(
                f"the recent window is judged on {recent_window.metric} but the gate's "
                f"primary metric is {config.primary_metric}"
            )
        checks.append(
            GateCheck(
                name=f"recent_window_{recent_window.metric}",
                passed=recent_window.passed,
                value=_finite_or_none(recent_window.delta),
                bound=recent_window.margin,
            )
        )
        reasons.append(describe_recent_window(recent_window))

    return PromotionDecision(
        promote=all(check.passed for check in checks),
        reasons=tuple(reasons),
        checks=tuple(checks),
    )


def _threshold_check(metric: str, value: Any, minimum: float) -> tuple[GateCheck, str]:
    number = _finite_or_none(value)
    name = f"min_{metric}"
    if number is None:
        reason = (
            f"{metric} is not available for the challenger (got {value!r}), "
            f"so the threshold {_fmt(minimum)} is not met"
        )
        return GateCheck(name=name, passed=False, value=number, bound=minimum), reason
    passed = number >= minimum
    verdict = "meets" if passed else "is below"
    return GateCheck(name=name, passed=passed, value=number, bound=minimum), (
        f"{metric} {_fmt(number)} {verdict} the threshold {_fmt(minimum)}"
    )


def _non_inferiority_check(comparison: Comparison, tolerance: float) -> tuple[GateCheck, str]:
    bound = 0.0 - tolerance
    passed = comparison.ci_low >= bound
    if passed:
        verdict = "stays at or above"
    elif comparison.ci_high < bound:
        verdict = "falls below"
    else:
        verdict = "reaches below"
    reason = (
        f"challenger {comparison.metric} {_fmt(comparison.challenger)} vs champion "
        f"{_fmt(comparison.champion)}: the {_percent(comparison.confidence)} CI of the "
        f"difference [{_fmt(comparison.ci_low)}, {_fmt(comparison.ci_high)}] {verdict} "
        f"{_fmt(bound)} (tolerance)"
    )
    check = GateCheck(
        name=f"non_inferior_{comparison.metric}",
        passed=passed,
        value=_finite_or_none(comparison.ci_low),
        bound=bound,
    )
    return check, reason


def _fmt(value: float | None) -> str:
    """Three decimals, without the '-0.000' a tiny negative rounding error would print."""
    if value is None:
        return "n/a"
    text = f"{value:.3f}"
    return "0.000" if text == "-0.000" else text


def _percent(share: float) -> str:
    return f"{share * 100:g}%"


def _finite_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
