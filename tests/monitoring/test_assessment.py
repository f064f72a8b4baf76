"""One window judged against a real champion and its monitor profile, as the stage judges it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.config import Params, SyntheticSourceConfig
from features.contract import DataContract
from features.synthetic import generate_process_data
from models.evaluation import predict_probability
from models.training import fit_model, predict_out_of_fold, split_data
from monitoring.assessment import ChampionBasis, assess_window, quality_floors
from monitoring.profile import build_monitor_profile
from monitoring.verdict import decide_window

PARAMS = Params.model_validate(
    {"train": {"cv_folds": 3, "hist_gradient_boosting": {"max_iter": 60}}}
)


@pytest.fixture(scope="module")
def champion(contract: DataContract) -> tuple[object, ChampionBasis]:
    data = generate_process_data(SyntheticSourceConfig(rows=12_000, seed=2020))
    train, holdout = split_data(data, contract, 0.2, 42)
    oof = predict_out_of_fold(train, contract, PARAMS.train, 42, {})
    model = fit_model(train, contract, PARAMS.train, 42, {})
    reference = train[contract.features].copy()
    reference["label"] = train[contract.label].to_numpy()
    reference["probability"] = oof
    profile = build_monitor_profile(model, reference, holdout, contract, PARAMS)
    return model, ChampionBasis("milling-failure:v1", "v1", reference, profile)


def served(model: object, frame: pd.DataFrame, contract: DataContract) -> pd.DataFrame:
    """The rows as the prediction log holds them, with their labels."""
    log = frame[[*contract.ids, *contract.features, contract.label]].copy()
    log["time"] = pd.Timestamp("2026-11-01", tz="UTC") + pd.to_timedelta(
        np.arange(len(log)), unit="s"
    )
    log["model_version"] = "v1"
    log["probability"] = predict_probability(model, frame, contract)
    log["threshold"] = 0.3
    return log


def judge(champion, scenario: str, contract, labelled: bool = True, seed: int = 77, config=None):
    model, basis = champion
    config = config or PARAMS.monitor
    frame = generate_process_data(SyntheticSourceConfig(rows=5000, seed=seed, scenario=scenario))
    log = served(model, frame, contract)
    evidence = assess_window(
        log, log if labelled else log.iloc[:0], basis, contract, config, seed=42
    )
    return evidence, decide_window(evidence, config)


def test_the_profile_travels_every_part_the_monitor_needs(champion):
    _, basis = champion
    profile = basis.profile
    assert profile.drift.calibrated and set(profile.drift.columns) == set(profile.data.columns)
    assert profile.probabilities.method == "isotonic"  # balanced class weights inflate them
    assert abs(sum(profile.importance.shares.values()) - 1) < 1e-6
    assert 0.6 < profile.reference.average_precision < 1


@pytest.mark.parametrize("seed", [77, 78, 79])
def test_fresh_stretches_of_the_published_process_keep_the_champion(champion, contract, seed):
    evidence, decision = judge(champion, "none", contract, seed=seed)
    assert decision.action == "keep", decision.reasons
    assert evidence.data_quality.passed and evidence.drift.drifted_columns == ()
    assert evidence.estimate.trusted and not evidence.quality.breached


def test_a_changed_failure_mechanism_is_drift_until_it_costs_the_floors(champion, contract):
    evidence, decision = judge(champion, "failure_mechanism", contract, seed=77)
    assert decision.action == "drift", decision.reasons  # AP 0.56, AUC 0.90: above the floors
    assert set(evidence.drift.drifted_columns) >= {"Torque [Nm]", "Rotational speed [rpm]"}
    # a stretch where the new mechanism costs the champion its floors (AP 0.43, AUC 0.75)
    evidence, decision = judge(champion, "failure_mechanism", contract, seed=78)
    assert (decision.retrain, decision.decided_by) == (True, "realized_quality"), decision.reasons
    assert evidence.quality.intervals["roc_auc"][1] < 0.85
    # before its labels arrive, the same window is drift (CBPE cannot see a concept change)
    _, before = judge(champion, "failure_mechanism", contract, labelled=False, seed=78)
    assert before.action == "drift" and before.retrain is False


def test_max_drop_raises_the_floors_to_the_champions_own_level(champion, contract):
    config = PARAMS.monitor.model_copy(
        update={"verdict": PARAMS.monitor.verdict.model_copy(update={"max_drop": 0.1})}
    )
    floors, source = quality_floors(config, champion[1].profile)
    level = champion[1].profile.reference.average_precision
    assert floors["average_precision"] == pytest.approx(level - 0.1, abs=1e-6)
    assert "average_precision raised to the champion's own level minus max_drop" in source
    assert quality_floors(PARAMS.monitor, champion[1].profile) == (
        {"roc_auc": 0.85, "average_precision": 0.5},
        "monitor.quality.thresholds",
    )
    _, decision = judge(champion, "failure_mechanism", contract, seed=77, config=config)
    assert (decision.retrain, decision.decided_by) == (True, "realized_quality")


def test_quality_varies_from_period_to_period_on_the_default_process(champion):
    """Why `monitor.verdict.max_drop` is off by default: the champion's own out-of-fold
    average precision over 1,000-row blocks of its training period spans a wide range."""
    from models.evaluation import score_ranking

    reference = champion[1].reference
    y, p = reference["label"].to_numpy(), reference["probability"].to_numpy()
    blocks = [
        score_ranking(y[s : s + 1000], p[s : s + 1000])["average_precision"]
        for s in range(0, len(y) - 999, 500)
    ]
    assert min(blocks) < 0.7 and max(blocks) > 0.95


def test_a_window_too_small_is_not_judged(champion, contract):
    model, basis = champion
    frame = generate_process_data(SyntheticSourceConfig(rows=300, seed=5))
    log = served(model, frame, contract)
    evidence = assess_window(log, log, basis, contract, PARAMS.monitor, seed=42)
    assert evidence.drift is None and evidence.rows == 300
    assert decide_window(evidence, PARAMS.monitor).reasons[0].startswith("not enough traffic")
