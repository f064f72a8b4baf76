"""Permutation importance on the holdout: the feature that decides the label gets the share."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier

from core.config import ConfigError, ImportanceConfig, TrainConfig, parse_params
from core.records import record_json
from core.records.importance import FeatureImportance
from features.contract import parse_contract
from models.importance import ImportanceError, compute_feature_importance
from models.training import fit_model, split_data

TINY = parse_contract(
    {
        "name": "tiny",
        "columns": [
            {"name": "signal", "dtype": "float", "min": 0, "max": 1},
            {"name": "noise", "dtype": "float", "min": 0, "max": 1},
            {"name": "failed", "dtype": "integer", "role": "label", "min": 0, "max": 1},
        ],
    }
)
QUICK = TrainConfig(hist_gradient_boosting={"max_iter": 30})


def tiny_frame(rows: int = 1000, seed: int = 0) -> pd.DataFrame:
    """`failed` is 1 exactly when `signal` exceeds 0.7; `noise` has nothing to do with it."""
    rng = np.random.default_rng(seed)
    signal = rng.uniform(0, 1, rows)
    return pd.DataFrame(
        {"signal": signal, "noise": rng.uniform(0, 1, rows), "failed": (signal > 0.7).astype(int)}
    )


@pytest.fixture(scope="module")
def fitted() -> tuple[object, pd.DataFrame]:
    train, holdout = split_data(tiny_frame(), TINY, holdout_size=0.3, seed=1)
    return fit_model(train, TINY, QUICK, seed=1), holdout


def test_the_deciding_feature_gets_the_share_and_noise_almost_none(fitted) -> None:
    model, holdout = fitted
    importance = compute_feature_importance(model, holdout, TINY, 1, ImportanceConfig())
    shares = importance.shares
    assert list(shares) == ["signal", "noise"]  # contract order
    assert shares["noise"] < 0.02
    assert shares["signal"] > 0.98
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-5)
    signal = importance.features[0]
    assert signal.mean > 0.3 and signal.sd >= 0
    assert importance.computed and not importance.equal_shares
    assert (importance.rows, importance.repeats, importance.scoring) == (
        300,
        10,
        "average_precision",
    )
    assert importance.baseline == pytest.approx(1.0, abs=0.01)
    assert importance.note.endswith("the largest: signal (100%)")


def test_the_record_is_deterministic_json_that_reads_back(fitted) -> None:
    model, holdout = fitted
    config = ImportanceConfig(repeats=3)
    first = compute_feature_importance(model, holdout, TINY, 7, config, scoring="roc_auc")
    again = compute_feature_importance(model, holdout, TINY, 7, config, scoring="roc_auc")
    assert record_json(first) == record_json(again)
    assert FeatureImportance.model_validate_json(record_json(first)) == first
    assert first.scoring == "roc_auc" and first.repeats == 3


def test_a_model_that_uses_no_feature_gives_equal_shares_and_says_so(fitted) -> None:
    _, holdout = fitted
    prior = DummyClassifier(strategy="prior").fit(holdout[TINY.features], holdout["failed"])
    importance = compute_feature_importance(prior, holdout, TINY, 1, ImportanceConfig(repeats=2))
    assert importance.equal_shares and importance.computed
    assert importance.shares == {"signal": 0.5, "noise": 0.5}
    assert importance.note.startswith("no feature's shuffling lowered average_precision")
    assert importance.note.endswith("on 300 holdout rows: equal shares")


def test_disabled_importance_gives_equal_shares_without_computing(fitted) -> None:
    model, holdout = fitted
    importance = compute_feature_importance(
        model, holdout, TINY, 1, ImportanceConfig(enabled=False)
    )
    assert not importance.computed and importance.equal_shares
    assert importance.baseline is None
    assert importance.shares == {"signal": 0.5, "noise": 0.5}
    assert importance.note == (
        "importance not computed (train.importance.enabled is false): equal shares"
    )


def test_a_holdout_with_one_class_is_refused_with_what_to_do(fitted) -> None:
    model, holdout = fitted
    negatives = holdout[holdout["failed"] == 0]
    with pytest.raises(ImportanceError) as info:
        compute_feature_importance(model, negatives, TINY, 1, ImportanceConfig())
    assert str(info.value) == (
        f"feature importance: the {len(negatives)} holdout rows hold one class only; "
        "raise train.holdout_size or add data with both classes"
    )


def test_a_holdout_without_a_feature_is_refused(fitted) -> None:
    model, holdout = fitted
    with pytest.raises(ImportanceError, match=r"the holdout lacks column\(s\) \['noise'\]"):
        compute_feature_importance(
            model, holdout.drop(columns="noise"), TINY, 1, ImportanceConfig()
        )


def test_an_unknown_scoring_is_refused(fitted) -> None:
    model, holdout = fitted
    with pytest.raises(
        ImportanceError, match="unknown scoring 'accuracy_typo'; use a scikit-learn"
    ):
        compute_feature_importance(model, holdout, TINY, 1, ImportanceConfig(), "accuracy_typo")


@pytest.mark.parametrize(
    ("importance", "line"),
    [
        (
            {"repeats": 0},
            "  - train.importance.repeats: Input should be greater than or equal to 1 (got 0)",
        ),
        ({"repeat": 5}, "  - train.importance.repeat: unknown key (did you mean 'repeats'?)"),
        ({"enabled": "sometimes"}, "  - train.importance.enabled: Input should be a valid boolean"),
    ],
)
def test_bad_importance_config_names_the_key(importance: dict, line: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_params({"train": {"importance": importance}})
    assert line in str(info.value).splitlines()[1]
