"""Build, split and fit: a scikit-learn Pipeline whose preprocessing derives from the contract.

The fitted preprocessing is part of the saved model, so serving cannot skew from training.
"""

from __future__ import annotations

import logging

import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from features.contract import DataContract
from pipelines.config import TrainConfig

logger = logging.getLogger(__name__)

# The exact non-default types skops must trust to load each model family: nothing more.
SKOPS_TRUSTED_TYPES: dict[str, list[str]] = {
    "hist_gradient_boosting": ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"],
    "random_forest": ["sklearn.tree._tree.Tree"],
    "logistic_regression": [],
}


def split_data(
    frame: pd.DataFrame, contract: DataContract, holdout_size: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stratified train/holdout split, fixed by seed."""
    train, holdout = train_test_split(
        frame,
        test_size=holdout_size,
        random_state=seed,
        stratify=frame[contract.label],
    )
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def build_estimator(config: TrainConfig, seed: int) -> ClassifierMixin:
    """The estimator family and hyperparameters named in `train` of params.yaml."""
    if config.model == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(
            **config.hist_gradient_boosting.model_dump(), random_state=seed
        )
    if config.model == "random_forest":
        return RandomForestClassifier(
            **config.random_forest.model_dump(), random_state=seed, n_jobs=1
        )
    return LogisticRegression(**config.logistic_regression.model_dump(), random_state=seed)


def build_pipeline(contract: DataContract, config: TrainConfig, seed: int) -> Pipeline:
    """Preprocessing from the contract (scaled numbers, one-hot categories) plus the estimator."""
    categorical = contract.categorical_features
    encoder = OneHotEncoder(
        categories=[list(contract.by_name[name].categories or ()) for name in categorical],
        handle_unknown="ignore",
        sparse_output=False,
    )
    preprocess = ColumnTransformer(
        [
            ("numeric", StandardScaler(), contract.numeric_features),
            ("categorical", encoder, categorical),
        ],
        remainder="drop",
        verbose_feature_names_out=False,
    )
    return Pipeline([("preprocess", preprocess), ("model", build_estimator(config, seed))])


def feature_frame(frame: pd.DataFrame, contract: DataContract) -> pd.DataFrame:
    """The model's inputs: the contract's feature columns, in contract order."""
    return frame[contract.features]


def fit_model(
    train: pd.DataFrame, contract: DataContract, config: TrainConfig, seed: int
) -> Pipeline:
    """Fit a fresh pipeline on the training split."""
    pipeline = build_pipeline(contract, config, seed)
    logger.info(
        "fitting %s on %d rows x %d features", config.model, len(train), len(contract.features)
    )
    pipeline.fit(feature_frame(train, contract), train[contract.label].to_numpy())
    return pipeline
