"""Drafting a contract from a sample: inferred dtypes, ranges, roles, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import DataContract
from features.drafting import DraftError, draft_contract, looks_like_id_name


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
    contract = draft_contract(sample, label="churned", name="churn").contract
    cols = contract.by_name
    assert contract.label == "churned"
    assert cols["customer_id"].role == "id" and cols["customer_id"].unique
    assert cols["plan"].dtype == "categorical" and cols["plan"].categories == ("basic", "pro")
    assert cols["monthly_spend"].dtype == "float" and cols["monthly_spend"].nullable
    assert cols["monthly_spend"].min == 0.0  # a non-negative column stays non-negative
    assert cols["seats"].dtype == "integer"
    assert cols["seats"].min <= 1 and cols["seats"].max >= 49
    assert cols["note"].role == "id" and cols["note"].unique  # distinct text: never a feature
    assert contract.features == ["plan", "monthly_spend", "seats"]


def test_ignore_keeps_a_leaky_column_out_of_the_features() -> None:
    sample = _sample().assign(refund_issued=lambda f: f["churned"])
    contract = draft_contract(sample, "churned", "churn", ignore=("refund_issued",)).contract
    assert contract.by_name["refund_issued"].role == "ignore"
    assert "refund_issued" not in contract.features


def test_draft_of_the_real_file_matches_our_contract(
    contract: DataContract, real_ai4i_path: Path
) -> None:
    real = pd.read_csv(real_ai4i_path)
    modes = ("TWF", "HDF", "PWF", "OSF", "RNF")
    drafted = draft_contract(real, label="Machine failure", name="ai4i", ignore=modes).contract
    assert drafted.features == contract.features
    assert drafted.ids == contract.ids
    assert drafted.categorical_features == ["Type"]


@pytest.mark.parametrize(
    ("label", "frame", "message"),
    [
        ("missing", _sample(), "label column 'missing' is not in the sample"),
        ("plan", _sample(), "label column 'plan' must hold only 0 and 1"),
        ("churned", _sample().iloc[0:0], "the sample has no rows"),
        (
            "churned",
            _sample()[["customer_id", "note", "churned"]],
            r"no column of the sample can be a model input: customer_id \(id\), note \(id\)$",
        ),
    ],
)
def test_bad_samples_say_why(label: str, frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(DraftError, match=message):
        draft_contract(frame, label=label, name="churn")


def test_ignore_of_unknown_column() -> None:
    with pytest.raises(DraftError, match=r"--ignore names columns not in the sample: \['nope'\]"):
        draft_contract(_sample(), label="churned", name="churn", ignore=("nope",))


def test_each_drafted_column_takes_its_first_value_as_example() -> None:
    sample = _sample()
    sample.loc[0, "monthly_spend"] = np.nan  # the first non-null value is the example
    contract = draft_contract(sample, label="churned", name="churn").contract
    cols = contract.by_name
    assert cols["customer_id"].example == 0 and isinstance(cols["customer_id"].example, int)
    assert cols["plan"].example == sample.loc[0, "plan"]
    assert cols["monthly_spend"].example == pytest.approx(sample.loc[1, "monthly_spend"])
    assert cols["seats"].example == int(sample.loc[0, "seats"])
    assert cols["note"].example == "free text 0"
    assert cols["churned"].example == int(sample.loc[0, "churned"])


# --- ids from the values, not only the name ---------------------------------------------


def _breast_cancer_with_case_no() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame.insert(0, "case_no", np.arange(1, len(frame) + 1))
    return frame


def test_a_row_counter_is_an_id_with_its_reason_and_the_measurements_stay_features() -> None:
    frame = _breast_cancer_with_case_no()
    draft = draft_contract(frame, label="target", name="breast-cancer")
    case_no = draft.contract.by_name["case_no"]
    assert (case_no.role, case_no.unique, case_no.dtype) == ("id", True, "integer")
    assert draft.contract.row_id == "case_no"
    assert draft.contract.features == [c for c in frame.columns if c not in ("case_no", "target")]
    (note,) = draft.notes
    assert note.column == "case_no" and not note.warning
    assert note.text == "id (unique): its 569 distinct whole numbers fill 1..569 (a row counter)"
    assert "a row counter" in case_no.description


def test_a_counter_is_found_by_its_values_under_any_name_and_in_any_order() -> None:
    rng = np.random.default_rng(3)
    counter = rng.permutation(np.arange(101, 131))  # shuffled, 30 rows
    sampled = np.arange(5, 155, 5)  # every 5th row of a counter
    gappy = np.delete(np.arange(1, 33), [4, 17])  # 30 of 1..32
    frame = pd.DataFrame(
        {"row": counter, "seq": sampled, "n": gappy, "x": rng.normal(size=30), "y": [0, 1] * 15}
    )
    draft = draft_contract(frame, label="y", name="t")
    assert draft.contract.ids == ["row", "seq", "n"]
    assert all(draft.contract.by_name[c].unique for c in ("row", "seq", "n"))
    texts = {note.column: note.text for note in draft.notes}
    assert texts["seq"].endswith("step by 5 from 5 to 150 (a row counter, every 5 rows)")
    assert texts["n"].endswith("fill all but 2 of 1..32 (a row counter)")
    assert draft.warnings == []


def test_distinct_whole_measurements_in_a_small_sample_stay_features_with_a_warning() -> None:
    torque = [23, 31, 35, 38, 40, 41, 44, 47, 52, 55, 39, 28, 61, 45, 33, 50, 36, 42, 58, 26]
    wear = [0, 3, 5, 7, 9, 11, 14, 16, 18, 21, 24, 29, 34, 37, 40, 42, 44, 47, 50, 55]  # rises
    frame = pd.DataFrame({"torque": torque, "wear": wear, "y": [0, 1] * 10})
    draft = draft_contract(frame, label="y", name="t")
    assert draft.contract.features == ["torque", "wear"] and draft.contract.ids == []
    assert [note.column for note in draft.warnings] == ["torque", "wear"]
    assert "20 values are distinct whole numbers, but no counter" in draft.warnings[0].text
    assert draft.contract.by_name["torque"].description.startswith("Review: ")


def test_distinct_strings_are_an_id_once_the_sample_can_tell() -> None:
    codes = [f"P{i:04d}" for i in rng_order(12)]
    frame = pd.DataFrame({"code": codes, "x": np.arange(12.0) / 3, "y": [0, 1] * 6})
    draft = draft_contract(frame, label="y", name="t")
    assert draft.contract.by_name["code"].role == "id" and draft.contract.row_id == "code"
    assert (
        draft.notes[0].text == "id (unique): its 12 values are distinct strings (a code or a key)"
    )

    few = draft_contract(frame.head(4), label="y", name="t")  # 4 distinct cities or 4 codes?
    assert few.contract.by_name["code"].dtype == "categorical"
    assert few.warnings[0].column == "code" and "too few rows" in few.warnings[0].text


def rng_order(rows: int) -> list[int]:
    return np.random.default_rng(1).permutation(rows).tolist()


def test_a_column_named_like_an_id_is_never_a_silent_feature() -> None:
    frame = pd.DataFrame(
        {
            "store_id": [1, 2, 1, 3, 2, 1],  # repeats: a group, maybe a feature
            "Product ID": ["A", "B", "A", "B", "A", "B"],
            "x": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
            "y": [0, 1, 0, 1, 0, 1],
        }
    )
    draft = draft_contract(frame, label="y", name="t")
    assert draft.contract.features == ["store_id", "Product ID", "x"]
    assert [note.column for note in draft.warnings] == ["store_id", "Product ID"]
    assert all("its name looks like an id" in note.text for note in draft.warnings)


def test_an_id_with_nulls_is_drafted_an_id_but_not_unique_with_a_warning() -> None:
    frame = pd.DataFrame({"case_no": [*range(1, 12), None], "x": np.arange(12.5, 0.5, -1.0)})
    frame["y"] = [0, 1] * 6
    draft = draft_contract(frame, label="y", name="t")
    column = draft.contract.by_name["case_no"]
    assert (column.role, column.unique, column.nullable) == ("id", False, True)
    assert draft.contract.row_id is None
    assert draft.warnings[0].text.startswith("id, not unique: ")
    assert "a row id needs a value in every row" in draft.warnings[0].text


def test_floats_the_label_and_ignored_columns_are_never_ids() -> None:
    rows = 40
    frame = pd.DataFrame(
        {
            "ratio": np.linspace(0.1, 4.0, rows),  # distinct floats
            "seq": np.arange(rows),
            "y": [0, 1] * (rows // 2),
        }
    )
    draft = draft_contract(frame, label="y", name="t", ignore=("seq",))
    assert draft.contract.ids == [] and draft.contract.by_name["seq"].role == "ignore"
    assert draft.contract.features == ["ratio"] and draft.notes == ()


@pytest.mark.parametrize(
    ("name", "looks"),
    [
        ("UDI", True),
        ("Product ID", True),
        ("customer_id", True),
        ("customerId", True),
        ("ProductID", True),
        ("case_no", True),
        ("Patient Nr", True),
        ("uuid", True),
        ("smoker yes/no", False),
        ("no", False),
        ("idle_time", False),
        ("Torque [Nm]", False),
        ("mean radius", False),
    ],
)
def test_id_names(name: str, looks: bool) -> None:
    assert looks_like_id_name(name) is looks


def test_the_ai4i_sample_keeps_its_ids_and_its_features(
    contract: DataContract, real_ai4i_path: Path
) -> None:
    real = pd.read_csv(real_ai4i_path)
    modes = ("TWF", "HDF", "PWF", "OSF", "RNF")
    for sample in (real, real.head(40)):  # the head: tool wear rises by irregular steps
        draft = draft_contract(sample, label="Machine failure", name="ai4i", ignore=modes)
        assert draft.contract.ids == ["UDI", "Product ID"] == contract.ids
        assert draft.contract.row_id == "UDI"
        assert draft.contract.features == contract.features
        warned = {note.column for note in draft.warnings}
        assert warned <= {"Rotational speed [rpm]", "Tool wear [min]"}  # distinct in 40 rows
    assert draft_contract(real, "Machine failure", "ai4i", modes).warnings == []
