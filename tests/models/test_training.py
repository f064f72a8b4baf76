"""Training: preprocessing from the contract, seeded determinism, search, out-of-fold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.config import SearchConfig, SyntheticSourceConfig, TrainConfig
from core.model_files import model_content_hash
from features.contract import DataContract
from features.synthetic import generate_process_data
from models.training import (
    build_pipeline,
    fit_model,
    predict_out_of_fold,
    search_hyperparameters,
    split_data,
)

FAMILIES = ["hist_gradient_boosting", "random_forest", "logistic_regression"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate_process_data(SyntheticSourceConfig(rows=4000, seed=5))


def _small(model: str) -> TrainConfig:
    return TrainConfig(
        model=model,
        cv_folds=3,
        hist_gradient_boosting={"max_iter": 40},
        random_forest={"n_estimators": 20},
    )


def test_split_is_stratified_and_seeded(frame: pd.DataFrame, contract: DataContract) -> None:
    train, holdout = split_data(frame, contract, 0.25, seed=1)
    again, _ = split_data(frame, contract, 0.25, seed=1)
    other, _ = split_data(frame, contract, 0.25, seed=2)
    assert len(holdout) == 1000
    assert abs(holdout[contract.label].mean() - frame[contract.label].mean()) < 0.002
    pd.testing.assert_frame_equal(train, again)
    assert not train["UDI"].equals(other["UDI"])


def test_preprocessing_comes_from_the_contract(contract: DataContract) -> None:
    preprocess = build_pipeline(contract, _small("logistic_regression"), 0).named_steps[
        "preprocess"
    ]
    columns = {name: cols for name, _, cols in preprocess.transformers}
    assert columns == {
        "numeric": contract.numeric_features,
        "categorical": contract.categorical_features,
    }
    encoder = preprocess.transformers[1][1]
    assert encoder.categories == [["L", "M", "H"]]


@pytest.mark.parametrize("model", FAMILIES)
def test_same_data_and_params_give_the_same_model_and_predictions(
    frame: pd.DataFrame, contract: DataContract, model: str
) -> None:
    config = _small(model)
    train, holdout = split_data(frame, contract, 0.2, seed=3)
    first = fit_model(train, contract, config, seed=3)
    second = fit_model(train, contract, config, seed=3)
    np.testing.assert_array_equal(
        first.predict_proba(holdout[contract.features]),
        second.predict_proba(holdout[contract.features]),
    )
    assert model_content_hash(first) == model_content_hash(second)
    np.testing.assert_array_equal(
        predict_out_of_fold(train, contract, config, seed=3),
        predict_out_of_fold(train, contract, config, seed=3),
    )


def test_a_different_seed_gives_a_different_model(frame: pd.DataFrame, contract: DataContract):
    config = _small("random_forest")
    train, _ = split_data(frame, contract, 0.2, seed=3)
    assert model_content_hash(fit_model(train, contract, config, seed=3)) != model_content_hash(
        fit_model(train, contract, config, seed=4)
    )


def test_the_training_frame_is_not_modified(frame: pd.DataFrame, contract: DataContract):
    train, _ = split_data(frame, contract, 0.2, seed=3)
    before = train.copy()
    fit_model(train, contract, _small("hist_gradient_boosting"), seed=3)
    pd.testing.assert_frame_equal(train, before)


def test_out_of_fold_predictions_cover_every_row(frame: pd.DataFrame, contract: DataContract):
    train, _ = split_data(frame, contract, 0.2, seed=3)
    oof = predict_out_of_fold(train, contract, _small("logistic_regression"), seed=3)
    assert oof.shape == (len(train),) and np.all((oof >= 0) & (oof <= 1))


def test_search_stays_in_the_space_and_is_seeded(frame: pd.DataFrame, contract: DataContract):
    space = {"hist_gradient_boosting": {"learning_rate": [0.05, 0.2], "max_leaf_nodes": [7, 15]}}
    config = _small("hist_gradient_boosting").model_copy(
        update={"search": SearchConfig(enabled=True, n_iter=3, cv_folds=2, space=space)}
    )
    train, _ = split_data(frame, contract, 0.2, seed=3)
    result = search_hyperparameters(train, contract, config, seed=3)
    assert result.tried == 3
    assert result.best_params["learning_rate"] in (0.05, 0.2)
    assert result.best_params["max_leaf_nodes"] in (7, 15)
    assert search_hyperparameters(train, contract, config, seed=3) == result


def test_search_without_a_space_for_the_family_says_so(frame: pd.DataFrame, contract):
    config = _small("random_forest").model_copy(
        update={"search": SearchConfig(enabled=True, space={})}
    )
    with pytest.raises(ValueError, match=r"train\.search\.space has no entry for the model"):
        search_hyperparameters(frame, contract, config, seed=0)


def test_overrides_obey_the_params_rules(contract: DataContract) -> None:
    with pytest.raises(ValueError, match="learning_rate"):
        build_pipeline(contract, _small("hist_gradient_boosting"), 0, {"learning_rate": 5.0})


def test_unknown_search_hyperparameter_is_a_config_error() -> None:
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['depth'\]"):
        SearchConfig(space={"random_forest": {"depth": [1, 2]}})
