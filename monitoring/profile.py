"""The champion's monitor profile, built at training time from its own data.

Pure: the train stage calls `build_monitor_profile` with the training split (in the source's
row order, which is time order), the holdout and the fitted model, and writes the record
beside the model. Each part comes from the module that uses it at monitor time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.columns import REFERENCE_LABEL, REFERENCE_PROBABILITY
from core.config import Params
from core.records.profile import MonitorProfile, ReferenceQuality
from features.contract import DataContract
from models.evaluation import score_ranking
from models.importance import compute_feature_importance
from models.probability_calibration import fit_probability_calibration
from monitoring.calibration import calibrate_drift
from monitoring.data_quality import profile_training_data
from monitoring.quality_bounds import calibrate_quality


def build_monitor_profile(
    model: Any,
    reference: pd.DataFrame,
    holdout: pd.DataFrame,
    contract: DataContract,
    params: Params,
) -> MonitorProfile:
    """`reference`: the training split's features, `label` and out-of-fold `probability`, in
    time order (what `pipelines.train.reference_data` keeps); `holdout`: contract columns."""
    seed = params.data.seed
    labels = reference[REFERENCE_LABEL].to_numpy(dtype=np.int64)
    scores = reference[REFERENCE_PROBABILITY].to_numpy(dtype=float)
    ranking = score_ranking(labels, scores) if 0 < labels.sum() < len(labels) else {}
    return MonitorProfile(
        drift=calibrate_drift(reference, contract, params.monitor),
        probabilities=fit_probability_calibration(labels, scores, params.monitor.estimation, seed),
        importance=compute_feature_importance(
            model,
            holdout,
            contract,
            seed,
            params.train.importance,
            scoring=params.deploy.primary_metric,
        ),
        data=profile_training_data(reference, contract),
        reference=ReferenceQuality(
            rows=len(labels),
            positives=int(labels.sum()),
            roc_auc=ranking.get("roc_auc"),
            average_precision=ranking.get("average_precision"),
        ),
        quality=calibrate_quality(labels, scores, params.monitor),
    )
