"""Drafting a contract from a sample: inferred dtypes, ranges, roles, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import DataContract
from features.drafting import DraftError, draft_contract


def _sample(rows: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "customer_id": np.arange(rows),
            "plan": rng.choice(["basic", "pro"], rows),
            "monthly_spend": rng.gamma(2.0, 30.0, rows),
            "seats": rng.integers(1, 50, rows),
            "note": [f"free text {i}" for i in range(rows)],
            "churned": rng.integers(0, 2, rows),
        }
    )


def test_draft_infers_roles_dtypes_and_ranges() -> None:
    sample = _sample()
    sample.loc[3, "monthly_spend"] = np.nan
    contract = draft_contract(sample, label="churned", name="churn")
    cols = contract.by_name
    assert contract.label == "churned"
    assert cols["customer_id"].role == "id" and cols["customer_id"].unique
    assert cols["plan"].dtype == "categorical" and cols["plan"].categories == ("basic", "pro")
    assert cols["monthly_spend"].dtype == "float" and cols["monthly_spend"].nullable
    assert cols["monthly_spend"].min == 0.0  # a non-negative column stays non-negative
    assert cols["seats"].dtype == "integer"
    assert cols["seats"].min <= 1 and cols["seats"].max >= 49
    assert cols["note"].role == "id"  # unique text: an identifier, never a feature
    assert contract.features == ["plan", "monthly_spend", "seats"]


def test_ignore_keeps_a_leaky_column_out_of_the_features() -> None:
    sample = _sample().assign(refund_issued=lambda f: f["churned"])
    contract = draft_contract(sample, label="churned", ignore=("refund_issued",))
    assert contract.by_name["refund_issued"].role == "ignore"
    assert "refund_issued" not in contract.features


def test_draft_of_the_real_file_matches_our_contract(
    contract: DataContract, real_ai4i_path: Path
) -> None:
    real = pd.read_csv(real_ai4i_path)
    modes = ("TWF", "HDF", "PWF", "OSF", "RNF")
    drafted = draft_contract(real, label="Machine failure", ignore=modes)
    assert drafted.features == contract.features
    assert drafted.ids == contract.ids
    assert drafted.categorical_features == ["Type"]


@pytest.mark.parametrize(
    ("label", "frame", "message"),
    [
        ("missing", _sample(), "label column 'missing' is not in the sample"),
        ("plan", _sample(), "label column 'plan' must hold only 0 and 1"),
        ("churned", _sample().iloc[0:0], "the sample has no rows"),
    ],
)
def test_bad_samples_say_why(label: str, frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(DraftError, match=message):
        draft_contract(frame, label=label)


def test_ignore_of_unknown_column() -> None:
    with pytest.raises(DraftError, match=r"--ignore names columns not in the sample: \['nope'\]"):
        draft_contract(_sample(), label="churned", ignore=("nope",))


def test_each_drafted_column_takes_its_first_value_as_example() -> None:
    sample = _sample()
    sample.loc[0, "monthly_spend"] = np.nan  # the first non-null value is the example
    contract = draft_contract(sample, label="churned")
    cols = contract.by_name
    assert cols["customer_id"].example == 0 and isinstance(cols["customer_id"].example, int)
    assert cols["plan"].example == sample.loc[0, "plan"]
    assert cols["monthly_spend"].example == pytest.approx(sample.loc[1, "monthly_spend"])
    assert cols["seats"].example == int(sample.loc[0, "seats"])
    assert cols["note"].example == "free text 0"
    assert cols["churned"].example == int(sample.loc[0, "churned"])
