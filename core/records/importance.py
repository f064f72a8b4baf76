"""The champion's feature importance: permutation importance on its holdout, at training time.

`models.importance.compute_feature_importance` builds it; the train stage writes it beside the
model (`artifacts/model/`), it travels with the champion to the monitor, and the monitor's
verdict weights each feature's drift by its `share`.
"""

from __future__ import annotations

from pydantic import Field

from core.records import Record


class FeatureShare(Record):
    """One feature: how much the score falls when its values are shuffled, over the repeats."""

    name: str
    mean: float  # mean decrease of the score (negative: shuffling did not hurt)
    sd: float  # standard deviation of the decrease over the repeats
    share: float = Field(ge=0, le=1)  # the positive decreases, normalised to sum to 1


class FeatureImportance(Record):
    """Every feature's importance, in contract order, and how it was measured."""

    computed: bool  # false: train.importance.enabled was false, and the shares are equal
    scoring: str  # the metric the decreases are measured in (deploy.primary_metric)
    baseline: float | None  # the model's score on the unshuffled holdout
    rows: int  # holdout rows
    repeats: int
    seed: int
    equal_shares: bool  # true when no feature's decrease was positive (or not computed)
    features: tuple[FeatureShare, ...]
    note: str  # one sentence: what the shares mean, or why they are equal

    @property
    def shares(self) -> dict[str, float]:
        """Feature name -> share of the importance."""
        return {feature.name: feature.share for feature in self.features}
