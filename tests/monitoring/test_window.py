"""The window and the labels joined to it, on tiny in-memory frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.contract import DataContract, parse_contract
from monitoring.window import (
    LabelsError,
    check_labels,
    combine_labels,
    describe_window,
    join_key,
    label_window,
    labelled_table,
    scores_to_compare,
    select_window,
)
from tests.factories import make_valid_frame
from tests.monitoring.traffic import T0, make_log

LABEL = "Machine failure"
MODES = ["TWF", "HDF", "PWF", "OSF", "RNF"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_valid_frame(rows=40, seed=1)


@pytest.fixture(scope="module")
def log(frame: pd.DataFrame, contract: DataContract) -> pd.DataFrame:
    return make_log(frame, contract)  # UDI 1..40, one row a second from T0


def labels(frame: pd.DataFrame, udis: list[int], columns: list[str] | None = None) -> pd.DataFrame:
    rows = frame.set_index("UDI").loc[udis].reset_index()
    return rows[columns or ["UDI", LABEL, *MODES]]


# --- the window ---------------------------------------------------------------------------


def test_labels_join_on_the_contract_s_row_id(contract: DataContract):
    assert contract.row_id == "UDI"
    assert join_key(contract) == "UDI"
    raw = contract.model_dump(mode="json")
    raw["columns"] = [c for c in raw["columns"] if c["name"] != "UDI"]
    for column in raw["columns"]:
        if column["name"] == "Product ID":
            column["unique"] = True
    assert join_key(parse_contract(raw)) == "Product ID"  # the first unique id, whatever type
    for column in raw["columns"]:
        column["unique"] = False
    with pytest.raises(LabelsError) as error:
        join_key(parse_contract(raw))  # an id that is not unique cannot carry labels
    assert str(error.value) == (
        "the data contract 'milling' declares no unique id column (role id, unique: true) "
        "to join labels on"
    )


def test_labels_join_on_a_text_row_id(frame: pd.DataFrame, contract: DataContract):
    raw = contract.model_dump(mode="json")
    raw["columns"] = [c for c in raw["columns"] if c["name"] != "UDI"]
    for column in raw["columns"]:
        if column["name"] == "Product ID":
            column["unique"] = True
    by_text = parse_contract(raw)
    served = frame.iloc[:4].drop(columns=["UDI", LABEL, *MODES])
    served = served.assign(**{"Product ID": ["L1", "M2", None, "H4"]})
    window = served.assign(time=pd.date_range(T0, periods=4, freq="s"))
    labels = combine_labels(
        [("batch-1.csv", pd.DataFrame({"Product ID": ["H4", "L1", "X9"], LABEL: [1, 0, 1]}))],
        by_text,
    )
    labelled = label_window(window, labels, by_text)
    assert labelled["Product ID"].tolist() == ["L1", "H4"]  # no id, no label: left out
    assert labelled[LABEL].tolist() == [0, 1]
    with pytest.raises(LabelsError) as error:
        check_labels(pd.DataFrame({"Product ID": ["L1", None], LABEL: [0, 1]}), "b.csv", by_text)
    assert str(error.value) == "b.csv: column 'Product ID' must hold an id in every row"


def test_window_is_the_newest_rows_in_time_order(log: pd.DataFrame):
    shuffled = log.sample(frac=1.0, random_state=3)
    window = select_window(shuffled, 10)
    assert window["UDI"].tolist() == list(range(31, 41))
    assert window.index.tolist() == list(range(10))
    assert len(select_window(log, 1000)) == 40
    assert select_window(log.iloc[:0], 10).empty
    with pytest.raises(ValueError, match="at least 1 row"):
        select_window(log, 0)


def test_window_description(log: pd.DataFrame):
    mixed = log.assign(model_version=["v1"] * 30 + ["v2"] * 10)
    assert describe_window(mixed) == {
        "rows": 40,
        "first_time": "2026-11-05T08:00:00+00:00",
        "last_time": "2026-11-05T08:00:39+00:00",
        "model_versions": {"v1": 30, "v2": 10},
    }
    assert describe_window(log.iloc[:0]) == {
        "rows": 0,
        "first_time": None,
        "last_time": None,
        "model_versions": {},
    }


def test_scores_are_the_champions_rows_or_else_all_rows(log: pd.DataFrame):
    mixed = log.assign(model_version=["v1"] * 30 + ["v2"] * 10)
    assert scores_to_compare(mixed, "v2").index.tolist() == list(range(30, 40))
    assert scores_to_compare(mixed, "v3").index.tolist() == list(range(40))


# --- labels -------------------------------------------------------------------------------


def test_newest_labels_file_wins(frame: pd.DataFrame, contract: DataContract):
    old = labels(frame, [1, 2, 3]).assign(**{LABEL: 0})
    new = labels(frame, [2, 3, 4]).assign(**{LABEL: 1})
    combined = combine_labels([("batch-2.parquet", new), ("batch-1.parquet", old)], contract)
    assert combined["UDI"].tolist() == [1, 2, 3, 4]
    assert combined[LABEL].tolist() == [0, 1, 1, 1]
    assert list(combined.columns) == ["UDI", LABEL, *MODES]


def test_labels_keep_only_non_served_contract_columns(frame: pd.DataFrame, contract):
    batch = frame.iloc[:3].assign(extra="x", **{"UDI": [1.0, 2.0, 3.0]})
    checked = check_labels(batch, "batch-1.csv", contract)
    assert list(checked.columns) == ["UDI", LABEL, *MODES]
    assert checked["UDI"].dtype == np.int64 and checked["UDI"].tolist() == [1, 2, 3]


def test_labels_file_without_id_or_label_is_named(frame: pd.DataFrame, contract):
    with pytest.raises(LabelsError) as error:
        check_labels(frame[["TWF"]], "data/labels/batch-7.parquet", contract)
    assert str(error.value) == (
        "data/labels/batch-7.parquet: labels file lacks column(s) ['UDI', 'Machine failure']; "
        "a batch needs the contract's id column 'UDI' and its label 'Machine failure'"
    )


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("UDI", [1, 2.5, 3], "batch-1.csv: column 'UDI' must hold a whole-number id in every row"),
        ("UDI", [1, None, 3], "batch-1.csv: column 'UDI' must hold a whole-number id in every row"),
        (
            LABEL,
            [0, 2, 1],
            "batch-1.csv: label column 'Machine failure' must hold 0 or 1; 1 row(s) do not",
        ),
        (
            LABEL,
            ["yes", None, 1],
            "batch-1.csv: label column 'Machine failure' must hold 0 or 1; 2 row(s) do not",
        ),
    ],
)
def test_bad_label_values_are_refused(frame, contract, column, values, message):
    batch = labels(frame, [1, 2, 3]).assign(**{column: values})
    with pytest.raises(LabelsError) as error:
        combine_labels([("batch-1.csv", batch)], contract)
    assert str(error.value) == message


def test_latest_prediction_of_an_id_is_joined(log, frame, contract):
    again = log.iloc[[4]].assign(time=T0 + pd.Timedelta(minutes=5), probability=0.99)
    window = pd.concat([log, again], ignore_index=True)
    joined = label_window(
        window, combine_labels([("b", labels(frame, [5, 6]))], contract), contract
    )
    assert joined["UDI"].tolist() == [6, 5]  # in time order; UDI 5 at its later time
    assert joined.loc[joined["UDI"] == 5, "probability"].item() == 0.99
    assert joined[LABEL].tolist() == frame.set_index("UDI").loc[[6, 5], LABEL].tolist()


def test_rows_without_an_id_or_a_label_are_left_out(log, frame, contract):
    window = log.assign(UDI=log["UDI"].astype(float).where(log["UDI"] != 2))
    joined = label_window(
        window, combine_labels([("b", labels(frame, [1, 2, 3]))], contract), contract
    )
    assert joined["UDI"].tolist() == [1, 3]
    assert log["UDI"].tolist() == list(range(1, 41))  # the input is unchanged


def test_labelled_table_follows_the_contract(log, frame, contract):
    joined = label_window(log, combine_labels([("b", labels(frame, [1, 2]))], contract), contract)
    table, missing = labelled_table(joined, contract)
    assert list(table.columns) == contract.column_names and missing == []
    expected = frame.iloc[:2][contract.column_names].reset_index(drop=True)
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)
    assert table["UDI"].dtype == np.int64 and table[LABEL].dtype == np.int64


def test_labelled_table_names_required_columns_the_labels_lack(log, frame, contract):
    only = labels(frame, [1, 2], ["UDI", LABEL])
    full = labels(frame, [3], ["UDI", LABEL, "TWF"])
    combined = combine_labels([("batch-1", only), ("batch-2", full)], contract)
    table, missing = labelled_table(label_window(log, combined, contract), contract)
    assert missing == MODES  # TWF: only some rows have it; the others: none
    assert list(table.columns) == [*contract.ids, *contract.features, LABEL, "TWF"]
    assert table["TWF"].dtype == "Int64" and table["TWF"].isna().tolist() == [True, True, False]


def test_empty_labelled_table_has_every_column(log, contract):
    table, missing = labelled_table(
        label_window(log, combine_labels([], contract), contract), contract
    )
    assert table.empty and list(table.columns) == contract.column_names and missing == []
