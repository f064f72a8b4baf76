"""The deploy decision as a record: rows to compare on, the verdict, the infra check."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.config import DeployConfig, SyntheticSourceConfig
from core.records import record_json
from core.records.deploy import Challenger, ChampionRecord, DeployDecision, InfraCheck
from features.contract import DataContract
from features.synthetic import generate_process_data
from models.promotion import (
    compare_with_champion,
    decide_deployment,
    promotion_evidence,
    record_infra_check,
    rows_in_reference,
    rows_unseen_by_champion,
)

NAME = "milling-failure"
CONFIG = DeployConfig()
GOOD = {"roc_auc": 0.93, "average_precision": 0.801, "f1": 0.7, "threshold": 0.4}


def _rows(rows: int, seed: int, first_udi: int = 1) -> pd.DataFrame:
    return generate_process_data(SyntheticSourceConfig(rows=rows, seed=seed), first_udi=first_udi)


def _challenger(holdout: dict | None = None, sha: str = "a" * 64) -> Challenger:
    return Challenger(
        family="random_forest", content_sha256=sha, mlflow_run_id="run", holdout=holdout or GOOD
    )


def test_rows_in_reference_match_ids_and_features(contract: DataContract) -> None:
    reference = _rows(100, seed=1)
    other_source = _rows(30, seed=2)  # the same UDIs 1..30, other measurements
    frame = pd.concat([reference.iloc[10:20], other_source], ignore_index=True)
    found = rows_in_reference(frame, reference, contract)
    assert found.tolist() == [True] * 10 + [False] * 30


def test_rows_in_reference_ignore_columns_outside_ids_and_features(
    contract: DataContract,
) -> None:
    reference = _rows(20, seed=1)
    kept = reference[[*contract.ids, *contract.features]].assign(probability=0.5)
    assert rows_in_reference(reference, kept, contract).all()


def test_rows_unseen_by_champion_leave_out_its_training_rows(contract: DataContract) -> None:
    holdout = _rows(400, seed=1)
    unseen = rows_unseen_by_champion(holdout, holdout.iloc[:100], contract)
    assert unseen is not None and unseen.tolist() == [False] * 100 + [True] * 300
    assert rows_unseen_by_champion(holdout, holdout, contract) is None  # no row left


def test_without_a_champion_the_thresholds_decide_and_the_record_is_plain_json() -> None:
    decision = decide_deployment(NAME, _challenger(), None, None, CONFIG)
    assert decision.promote is True
    assert decision.reasons[-1] == "no champion yet: the absolute thresholds decide"
    assert [check.name for check in decision.checks] == ["min_roc_auc", "min_average_precision"]
    data = json.loads(record_json(decision))
    assert data["champion_before"] is None and data["comparison"] is None
    assert data["checks"][0] == {
        "name": "min_roc_auc",
        "value": 0.93,
        "bound": 0.85,
        "passed": True,
    }
    assert DeployDecision.model_validate_json(record_json(decision)) == decision


def test_the_champion_itself_is_not_promoted_again() -> None:
    champion = ChampionRecord(version=3, content_sha256="a" * 64, mlflow_run_id="run")
    decision = decide_deployment(NAME, _challenger(), champion, None, CONFIG)
    assert (decision.promote, decision.checks) == (False, ())
    assert decision.reasons == [f"this model (sha256 {'a' * 12}) is already champion v3"]


def _probability(scores: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-scores))


def test_a_champion_is_judged_on_the_rows_it_did_not_train_on() -> None:
    y = (np.random.default_rng(0).random(1000) < 0.2).astype(int)
    challenger = _probability(3.0 * y + np.random.default_rng(1).normal(size=len(y)))
    champion = _probability(2.0 * y + np.random.default_rng(2).normal(size=len(y)))
    unseen = np.arange(len(y)) >= 200
    evidence = compare_with_champion(y, challenger, champion, 0.5, unseen, None, CONFIG, seed=0)
    assert evidence.rows.rows == 800 and evidence.rows.champion_training_rows_left_out == 200
    assert evidence.holdout["rows"] == 1000  # the champion's metrics are on the whole holdout
    before = ChampionRecord(version=1, content_sha256="b" * 64)
    decision = decide_deployment(NAME, _challenger(), before, evidence, CONFIG)
    assert decision.promote is True, decision.reasons
    assert decision.comparison is not None and decision.comparison.ci_low > 0
    assert decision.champion_holdout == evidence.holdout
    assert [check.name for check in decision.checks][-1] == "non_inferior_average_precision"
    with pytest.raises(ValueError, match="goes with the champion"):
        decide_deployment(NAME, _challenger(), before, None, CONFIG)
    everything = compare_with_champion(y, challenger, champion, 0.5, None, None, CONFIG, seed=0)
    assert (everything.rows.rows, everything.rows.champion_training_rows_left_out) == (1000, None)


def _infra(passed: bool) -> InfraCheck:
    return InfraCheck(
        tag=f"{NAME}:v2",
        rows=200,
        p50_ms=1.0,
        p99_ms=2.0,
        max_ms=3.0,
        budget_ms=100.0,
        rejected_rows=0,
        mismatched_rows=0 if passed else 5,
        passed=passed,
        message="fine" if passed else "5 rows differ",
    )


def test_a_failed_infra_check_withdraws_the_promotion() -> None:
    decision = decide_deployment(NAME, _challenger(), None, None, CONFIG)
    reasons = list(decision.reasons)
    passed = record_infra_check(decision, 2, True, _infra(True), f"{NAME}:v2")
    failed = record_infra_check(decision, 2, False, _infra(False), None)
    assert passed.promote and passed.reasons[-1] == "infra check passed: fine"
    assert (passed.registered_version, passed.version_created, passed.bento) == (
        2,
        True,
        f"{NAME}:v2",
    )
    assert not failed.promote
    assert failed.reasons[-1] == "infra check failed, nothing moved: 5 rows differ"
    assert decision.reasons == reasons and decision.promote  # the input is not changed
    evidence = promotion_evidence(passed)
    assert sorted(evidence) == [
        "challenger",
        "checks",
        "comparison",
        "comparison_rows",
        "reasons",
        "recent_window",
    ]
    assert evidence["reasons"][-1] == "infra check passed: fine"
