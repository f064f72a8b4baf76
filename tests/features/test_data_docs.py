"""Data docs: Great Expectations' HTML pages, written whole and replacing the old ones."""

from __future__ import annotations

import pandas as pd

from features.contract import DataContract
from features.data_docs import write_data_docs
from features.quarantine import check_dataset
from tests.features.conftest import QUARANTINE_ON, with_bad_rows


def test_data_docs_are_written_and_replaced(
    tmp_path, valid_frame: pd.DataFrame, contract: DataContract
) -> None:
    outcome = check_dataset(with_bad_rows(valid_frame), contract, QUARANTINE_ON)
    docs = tmp_path / "docs"
    (docs / "old").mkdir(parents=True)

    index = write_data_docs(outcome.reports, docs)

    assert index == docs / "index.html" and index.is_file()
    assert not (docs / "old").exists()
    pages = sorted(p.relative_to(docs).parts[:3] for p in docs.glob("validations/**/*.html"))
    assert [p[2] for p in pages] == ["after_quarantine", "dataset"]
    assert "'Torque [Nm]' within [0, 200]" in " ".join(
        p.read_text(encoding="utf-8") for p in docs.glob("validations/**/*.html")
    )
    assert not list(tmp_path.glob(".docs.*"))  # no staging folder left behind
