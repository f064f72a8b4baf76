"""Config of the rollout: how a promoted challenger reaches live traffic (`deploy.rollout`).

- `immediate`: the challenger becomes champion at once (the deploy gate is the only judge).
- `shadow`: it gets the registry alias `candidate`; every request is also scored by it,
  after the champion's answer, and both scores go to the prediction log.
- `canary`: as shadow, and `canary.share` of the ids (a stable hash of the row id, else the
  request id) are answered by the candidate.

`lifecycle watch` (and `lifecycle rollout status|promote|abort`) judges the candidate on the
logged traffic with `guards`; when all hold over `min_rows` and `min_duration_s` it becomes
champion, when one breaks it is removed. For `rollback_window_s` after any promotion the
same guards compare the new champion with `previous` (scored in shadow) and roll back on a
breach; 0 switches that off.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from core.config.base import Frozen

RolloutStrategy = Literal["immediate", "shadow", "canary"]


class CanaryConfig(Frozen):
    share: float = Field(0.1, gt=0, lt=1)  # of the ids answered by the candidate


class ShadowConfig(Frozen):
    """Scoring the other model off the request path: queued, batched, never raised."""

    queue_rows: int = Field(10_000, ge=10)  # beyond it, rows are logged unscored (counted)
    max_batch_rows: int = Field(256, ge=1, le=10_000)
    # its own budget: the share of its wall time it may spend scoring (per worker), by its
    # own timings; it rests between calls to stay within it
    max_cpu_share: float = Field(0.25, gt=0, le=1)
    max_lag_s: float = Field(30.0, gt=0)  # a row that waited longer: logged over_budget
    # every n-th batch the answering model is timed on the same rows too (paired_score_ms),
    # so the judge's p99 guard compares like calls; 0: never (the guard then uses the
    # logged times, which compare a batched call with single ones)
    paired_every: int = Field(4, ge=0)


class LabelledGuardConfig(Frozen):
    """Once labels arrive for rows both models scored: the gate's paired bootstrap on them."""

    min_rows: int = Field(200, ge=10)
    min_positives: int = Field(5, ge=1)
    required: bool = False  # true: never promote before this guard could be judged


class GuardsConfig(Frozen):
    """Live guards: the candidate against the champion on the same period of traffic."""

    max_error_rate_increase: float = Field(0.001, ge=0, le=1)  # candidate - champion
    p99_ratio: float = Field(2.0, ge=1)  # candidate p99 <= ratio * champion p99 + slack
    p99_slack_ms: float = Field(25.0, ge=0)
    min_label_agreement: float = Field(0.8, ge=0, le=1)  # same predicted label, share of rows
    max_score_drift: float = Field(0.5, gt=0, le=1)  # Kolmogorov-Smirnov statistic of scores
    labelled: LabelledGuardConfig = LabelledGuardConfig()


class RolloutConfig(Frozen):
    strategy: RolloutStrategy = "immediate"
    canary: CanaryConfig = CanaryConfig()
    shadow: ShadowConfig = ShadowConfig()
    min_rows: int = Field(1000, ge=1)  # rows both models scored before a promotion
    min_duration_s: float = Field(600.0, ge=0)  # and time since the rollout started
    max_duration_s: float = Field(86_400.0, gt=0)  # unjudged by then: aborted
    rollback_window_s: float = Field(0.0, ge=0)  # after a promotion: watched against previous
    guards: GuardsConfig = GuardsConfig()

    @model_validator(mode="after")
    def _durations_in_order(self) -> RolloutConfig:
        if self.max_duration_s <= self.min_duration_s:
            raise ValueError(
                f"deploy.rollout.max_duration_s ({self.max_duration_s}) must exceed "
                f"min_duration_s ({self.min_duration_s})"
            )
        return self
