"""Model behaviour, in the style of Made With ML: invariance, directional, minimum functionality.

The model is the default pipeline (params.yaml's `train` block) fitted on synthetic data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from core.config import SyntheticSourceConfig, load_params
from features.contract import DataContract
from features.synthetic import generate_process_data
from models.evaluation import predict_probability
from models.training import fit_model, split_data
from tests.conftest import ROOT

PARAMS = load_params(ROOT / "params.yaml")


@pytest.fixture(scope="module")
def model(contract: DataContract) -> Pipeline:
    frame = generate_process_data(SyntheticSourceConfig(rows=20_000, seed=11))
    train, _ = split_data(frame, contract, PARAMS.train.holdout_size, PARAMS.data.seed)
    return fit_model(train, contract, PARAMS.train, PARAMS.data.seed)


def _rows(**columns: object) -> pd.DataFrame:
    """Process rows: nominal values unless given; lists make several rows."""
    nominal = {
        "UDI": 1,
        "Product ID": "L47181",
        "Type": "L",
        "Air temperature [K]": 300.0,
        "Process temperature [K]": 310.0,
        "Rotational speed [rpm]": 1500.0,
        "Torque [Nm]": 40.0,
        "Tool wear [min]": 50.0,
    }
    length = max((len(v) for v in columns.values() if isinstance(v, list)), default=1)
    return pd.DataFrame({k: columns.get(k, v) for k, v in nominal.items()}, index=range(length))


# --- invariance -----------------------------------------------------------------------------


def test_product_id_and_udi_do_not_change_predictions(model: Pipeline, contract: DataContract):
    frame = generate_process_data(SyntheticSourceConfig(rows=500, seed=3))
    renamed = frame.assign(**{"Product ID": "H99999", "UDI": frame["UDI"] + 10_000})
    np.testing.assert_array_equal(
        predict_probability(model, frame, contract),
        predict_probability(model, renamed, contract),
    )


def test_column_order_does_not_change_predictions(model: Pipeline, contract: DataContract):
    frame = generate_process_data(SyntheticSourceConfig(rows=500, seed=4))
    shuffled = frame[list(reversed(frame.columns))]
    np.testing.assert_array_equal(
        model.predict_proba(frame[contract.features]), model.predict_proba(shuffled)
    )


# --- directional ----------------------------------------------------------------------------


@pytest.mark.parametrize("product", ["L", "M", "H"])
@pytest.mark.parametrize("torque", [55.0, 60.0, 65.0])
def test_more_tool_wear_at_high_torque_never_lowers_failure_probability(
    model: Pipeline, contract: DataContract, product: str, torque: float
):
    wear = list(np.arange(0.0, 260.0, 5.0))
    rows = _rows(
        **{
            "Type": product,
            "Torque [Nm]": torque,
            "Tool wear [min]": wear,
            "Rotational speed [rpm]": 1350.0,
        }
    )
    proba = predict_probability(model, rows, contract)
    drops = np.flatnonzero(np.diff(proba) < 0)
    assert drops.size == 0, f"probability falls as wear grows at wear {[wear[i] for i in drops]}"
    assert proba[-1] > proba[0]  # and it does rise into the overstrain region


# --- minimum functionality ------------------------------------------------------------------

CLEAR_FAILURES = {
    # tool wear x torque = 230 x 62 = 14,260 min·Nm, above 11,000 for L
    "overstrain": {"Tool wear [min]": 230.0, "Torque [Nm]": 62.0, "Rotational speed [rpm]": 1350.0},
    # power = 70 Nm x 1300 rpm x 2π/60 = 9,530 W, above 9,000 W
    "power_high": {"Torque [Nm]": 70.0, "Rotational speed [rpm]": 1300.0},
    # power = 8 Nm x 2800 rpm x 2π/60 = 2,346 W, below 3,500 W
    "power_low": {"Torque [Nm]": 8.0, "Rotational speed [rpm]": 2800.0},
    # air-process gap 7.6 K < 8.6 K and speed 1,300 rpm < 1,380 rpm
    "heat_dissipation": {
        "Air temperature [K]": 302.0,
        "Process temperature [K]": 309.6,
        "Rotational speed [rpm]": 1300.0,
        "Torque [Nm]": 55.0,
    },
}


@pytest.mark.parametrize("case", sorted(CLEAR_FAILURES))
def test_clear_failure_cases_are_caught(model: Pipeline, contract: DataContract, case: str):
    proba = predict_probability(model, _rows(**CLEAR_FAILURES[case]), contract)[0]
    assert proba >= 0.5, f"{case}: failure probability {proba:.3f}"


def test_nominal_processes_are_not_failures(model: Pipeline, contract: DataContract):
    rows = _rows(**{"Tool wear [min]": [10.0, 60.0, 120.0], "Torque [Nm]": [35.0, 40.0, 45.0]})
    proba = predict_probability(model, rows, contract)
    assert (proba < 0.5).all(), proba
