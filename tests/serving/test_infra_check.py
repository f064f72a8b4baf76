"""The pre-promotion infra check: the service's request path, answers compared, latency budget."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.config import SyntheticSourceConfig, TrainConfig
from core.model_files import save_model
from features.contract import DataContract
from features.synthetic import generate_process_data
from models.evaluation import predict_probability
from models.training import SKOPS_TRUSTED_TYPES, fit_model
from serving.infra_check import replay_rows
from serving.model_store import ServedModel, export_model, load_served_model


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, contract: DataContract) -> ServedModel:
    root = tmp_path_factory.mktemp("infra")
    frame = generate_process_data(SyntheticSourceConfig(rows=2000, seed=1))
    config = TrainConfig(model="hist_gradient_boosting", hist_gradient_boosting={"max_iter": 20})
    model = fit_model(frame, contract, config, seed=0)
    content = save_model(
        model,
        root / "model",
        {"family": config.model, "features": contract.features},
        SKOPS_TRUSTED_TYPES[config.model],
    )
    tag = export_model(root / "model", "milling-failure", 1, "run", content, 0.3, root / "store")
    return load_served_model(tag, root / "store")


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return generate_process_data(SyntheticSourceConfig(rows=50, seed=2))


def test_a_good_candidate_passes(served: ServedModel, rows: pd.DataFrame, contract) -> None:
    expected = predict_probability(served.pipeline, rows, contract)
    report = replay_rows(served, rows, contract, budget_ms=1000, expected=expected)
    assert report.passed, report.message
    assert report.rows == 50 and report.rejected_rows == 0 and report.mismatched_rows == 0
    assert "50 single-row requests answered correctly" in report.message


def test_over_budget_fails_with_the_numbers(served: ServedModel, rows: pd.DataFrame, contract):
    expected = predict_probability(served.pipeline, rows, contract)
    report = replay_rows(served, rows, contract, budget_ms=1e-6, expected=expected)
    assert not report.passed
    assert "exceeds the budget 1e-06 ms" in report.message


def test_answers_that_differ_fail(served: ServedModel, rows: pd.DataFrame, contract) -> None:
    wrong = np.zeros(len(rows))
    report = replay_rows(served, rows, contract, budget_ms=1000, expected=wrong)
    assert not report.passed
    assert "answers differ from the model's in-process predictions" in report.message


def test_rows_the_request_model_rejects_fail(served: ServedModel, rows: pd.DataFrame, contract):
    bad = rows.assign(**{"Type": "X"})
    expected = np.zeros(len(rows))
    report = replay_rows(served, bad, contract, budget_ms=1000, expected=expected)
    assert not report.passed and report.rejected_rows == 50
    assert "50 of 50 sample rows were rejected by the request model" in report.message
