"""Permutation importance of the fitted model on its holdout: which features the model uses.

Computed once at training time and stored with the model, so the monitor can tell drift on a
feature the model relies on from drift on one it hardly uses. Each feature's values are
shuffled `train.importance.repeats` times and the fall of the deploy's primary metric is
measured; the positive falls, normalised, are the feature's share.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.inspection import permutation_importance
from sklearn.metrics import get_scorer
from threadpoolctl import threadpool_limits

from core.config import ImportanceConfig
from core.records.importance import FeatureImportance, FeatureShare
from features.contract import DataContract
from models.training import feature_frame

logger = logging.getLogger(__name__)

_DECIMALS = 6  # the record is small JSON that travels with the model: equal runs, equal bytes


class ImportanceError(ValueError):
    """A holdout on which importance cannot be measured; the message says what to do."""


def compute_feature_importance(
    model: BaseEstimator,
    holdout: pd.DataFrame,
    contract: DataContract,
    seed: int,
    config: ImportanceConfig,
    scoring: str = "average_precision",
) -> FeatureImportance:
    """Each contract feature's mean and sd fall of `scoring` when shuffled, and its share.

    `model` is the fitted pipeline (it takes the contract's feature columns); `scoring` is a
    scikit-learn scorer name, the deploy's primary metric. Shares count negative falls as 0;
    when no fall is positive, every feature gets an equal share and the record says so.
    """
    features = contract.features
    if not config.enabled:
        note = "importance not computed (train.importance.enabled is false): equal shares"
        return _not_computed(features, scoring, len(holdout), config.repeats, seed, note)
    inputs, labels = _inputs(holdout, contract)
    scorer = _scorer(scoring)
    start = time.perf_counter()
    baseline = float(scorer(model, inputs, labels))
    # Many small predictions: OpenMP threads per call cost more than they give, and on a
    # busy machine far more (20,000 default rows: 2.4 s on one thread, 17 s on two, with load)
    with threadpool_limits(limits=1):
        result = permutation_importance(
            model,
            inputs,
            labels,
            scoring=scoring,
            n_repeats=config.repeats,
            random_state=seed,
            n_jobs=1,
        )
    means = np.asarray(result.importances_mean, dtype=float)
    sds = np.asarray(result.importances_std, dtype=float)
    logger.info(
        "permutation importance: %d features x %d repeats on %d holdout rows in %.2f s",
        len(features),
        config.repeats,
        len(holdout),
        time.perf_counter() - start,
    )
    positive = np.clip(means, 0.0, None)
    total = float(positive.sum())
    if total <= 0:
        note = (
            f"no feature's shuffling lowered {scoring} (baseline {baseline:.3f}) on "
            f"{len(holdout)} holdout rows: equal shares"
        )
        shares = np.full(len(features), 1.0 / len(features))
    else:
        shares = positive / total
        top = int(np.argmax(shares))
        note = (
            f"share of the fall in {scoring} (baseline {baseline:.3f}) when each feature is "
            f"shuffled, {config.repeats} repeats on {len(holdout)} holdout rows; the largest: "
            f"{features[top]} ({shares[top]:.0%})"
        )
    return FeatureImportance(
        computed=True,
        scoring=scoring,
        baseline=round(baseline, _DECIMALS),
        rows=len(holdout),
        repeats=config.repeats,
        seed=seed,
        equal_shares=total <= 0,
        features=tuple(
            FeatureShare(
                name=name,
                mean=round(float(mean), _DECIMALS),
                sd=round(float(sd), _DECIMALS),
                share=round(float(share), _DECIMALS),
            )
            for name, mean, sd, share in zip(features, means, sds, shares, strict=True)
        ),
        note=note,
    )


def _inputs(holdout: pd.DataFrame, contract: DataContract) -> tuple[pd.DataFrame, np.ndarray]:
    """The holdout's features and labels, refused with a message when they cannot be scored."""
    missing = [name for name in [*contract.features, contract.label] if name not in holdout]
    if missing:
        raise ImportanceError(
            f"feature importance: the holdout lacks column(s) {missing} of the contract "
            f"'{contract.name}'; pass the holdout split as models.training.split_data returns it"
        )
    labels = holdout[contract.label].to_numpy()
    if len(np.unique(labels)) < 2:
        raise ImportanceError(
            f"feature importance: the {len(holdout)} holdout rows hold one class only; "
            "raise train.holdout_size or add data with both classes"
        )
    return feature_frame(holdout, contract), labels


def _scorer(scoring: str) -> Callable[..., float]:
    try:
        return get_scorer(scoring)
    except ValueError:
        raise ImportanceError(
            f"feature importance: unknown scoring '{scoring}'; use a scikit-learn scorer name "
            "such as average_precision or roc_auc"
        ) from None


def _not_computed(
    features: list[str], scoring: str, rows: int, repeats: int, seed: int, note: str
) -> FeatureImportance:
    share = round(1.0 / len(features), _DECIMALS)
    return FeatureImportance(
        computed=False,
        scoring=scoring,
        baseline=None,
        rows=rows,
        repeats=repeats,
        seed=seed,
        equal_shares=True,
        features=tuple(FeatureShare(name=n, mean=0.0, sd=0.0, share=share) for n in features),
        note=note,
    )
