"""Build, split, search and fit a scikit-learn Pipeline whose preprocessing comes from the contract.

The fitted preprocessing is part of the saved model, so serving cannot skew from training.
Everything is seeded: the same data and params give the same model and predictions.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import RandomizedSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from core.config import FAMILY_CONFIGS, TrainConfig
from features.contract import DataContract

logger = logging.getLogger(__name__)

# The exact non-default types skops must trust to load each model family: nothing more.
SKOPS_TRUSTED_TYPES: dict[str, list[str]] = {
    "hist_gradient_boosting": ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"],
    "random_forest": ["sklearn.tree._tree.Tree"],
    "logistic_regression": [],
}
_ESTIMATORS: dict[str, type[ClassifierMixin]] = {
    "hist_gradient_boosting": HistGradientBoostingClassifier,
    "random_forest": RandomForestClassifier,
    "logistic_regression": LogisticRegression,
}


@dataclass(frozen=True)
class SearchResult:
    """What a randomized search chose, and how each setting scored in cross-validation."""

    best_params: dict[str, Any]
    best_score: float
    scoring: str
    tried: int


def split_data(
    frame: pd.DataFrame, contract: DataContract, holdout_size: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stratified train/holdout split, fixed by seed; each part keeps the source's row order.

    The row order is time order: the monitor's drift calibration measures how contiguous
    blocks of the training period vary (`monitoring.calibration`).
    """
    train, holdout = train_test_split(
        frame, test_size=holdout_size, random_state=seed, stratify=frame[contract.label]
    )
    return train.sort_index().reset_index(drop=True), holdout.sort_index().reset_index(drop=True)


def family_params(config: TrainConfig) -> dict[str, Any]:
    """The hyperparameters of the chosen family, as params.yaml gives them."""
    return getattr(config, config.model).model_dump()


def build_pipeline(
    contract: DataContract, config: TrainConfig, seed: int, overrides: dict[str, Any] | None = None
) -> Pipeline:
    """Preprocessing from the contract (scaled numbers, one-hot categories) plus the estimator.

    Monotonic constraints declared in the contract go to the tree families; logistic
    regression has no such option (its coefficient signs are not constrained).
    """
    numeric, categorical = contract.numeric_features, contract.categorical_features
    encoder = OneHotEncoder(
        categories=[list(contract.by_name[name].categories or ()) for name in categorical],
        handle_unknown="ignore",
        sparse_output=False,
    )
    preprocess = ColumnTransformer(
        [("numeric", StandardScaler(), numeric), ("categorical", encoder, categorical)],
        remainder="drop",
        verbose_feature_names_out=False,
    )
    params = {**family_params(config), **(overrides or {})}
    FAMILY_CONFIGS[config.model].model_validate(params)  # overrides obey params.yaml's rules
    params["random_state"] = seed
    if config.model == "random_forest":
        params["n_jobs"] = 1
    if config.model != "logistic_regression" and contract.monotonic_constraints:
        encoded = sum(len(contract.by_name[name].categories or ()) for name in categorical)
        params["monotonic_cst"] = [
            contract.monotonic_constraints.get(name, 0) for name in numeric
        ] + [0] * encoded
    estimator = _ESTIMATORS[config.model](**params)
    return Pipeline([("preprocess", preprocess), ("model", estimator)])


def feature_frame(frame: pd.DataFrame, contract: DataContract) -> pd.DataFrame:
    """The model's inputs: the contract's feature columns, in contract order."""
    return frame[contract.features]


def search_hyperparameters(
    train: pd.DataFrame, contract: DataContract, config: TrainConfig, seed: int
) -> SearchResult:
    """Randomized search with stratified CV over `train.search.space` of the chosen family."""
    search = config.search
    space = {f"model__{k}": v for k, v in search.space.get(config.model, {}).items()}
    if not space:
        raise ValueError(f"train.search.space has no entry for the model '{config.model}'")
    searcher = RandomizedSearchCV(
        build_pipeline(contract, config, seed),
        space,
        n_iter=search.n_iter,
        scoring="average_precision",
        cv=StratifiedKFold(search.cv_folds, shuffle=True, random_state=seed),
        random_state=seed,
        n_jobs=1,
        refit=False,
    )
    searcher.fit(feature_frame(train, contract), train[contract.label].to_numpy())
    best = {k.removeprefix("model__"): v for k, v in searcher.best_params_.items()}
    logger.info(
        "search tried %d settings: best CV average precision %.4f with %s",
        len(searcher.cv_results_["params"]),
        searcher.best_score_,
        best,
    )
    return SearchResult(
        best_params=best,
        best_score=float(searcher.best_score_),
        scoring="average_precision",
        tried=len(searcher.cv_results_["params"]),
    )


def predict_out_of_fold(
    train: pd.DataFrame,
    contract: DataContract,
    config: TrainConfig,
    seed: int,
    overrides: dict[str, Any] | None = None,
) -> np.ndarray:
    """Out-of-fold probabilities on the training split: honest validation predictions.

    What `cross_val_predict` computes, fold by fold so a long run logs its progress.
    """
    features, labels = feature_frame(train, contract), train[contract.label].to_numpy()
    folds = StratifiedKFold(config.cv_folds, shuffle=True, random_state=seed)
    oof = np.empty(len(train), dtype=float)
    for number, (fit_rows, held_rows) in enumerate(folds.split(features, labels), start=1):
        start = time.perf_counter()
        pipeline = build_pipeline(contract, config, seed, overrides)
        pipeline.fit(features.iloc[fit_rows], labels[fit_rows])
        oof[held_rows] = pipeline.predict_proba(features.iloc[held_rows])[:, 1]
        logger.info(
            "fold %d of %d: fitted on %d rows in %.2f s",
            number,
            config.cv_folds,
            len(fit_rows),
            time.perf_counter() - start,
        )
    return oof


def fit_model(
    train: pd.DataFrame,
    contract: DataContract,
    config: TrainConfig,
    seed: int,
    overrides: dict[str, Any] | None = None,
) -> Pipeline:
    """Fit a fresh pipeline on the whole training split."""
    pipeline = build_pipeline(contract, config, seed, overrides)
    logger.info(
        "fitting %s on %d rows x %d features", config.model, len(train), len(contract.features)
    )
    pipeline.fit(feature_frame(train, contract), train[contract.label].to_numpy())
    return pipeline
