"""Data docs: Great Expectations' HTML pages, written whole and replacing the old ones."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import pandas as pd
import pytest

from features.contract import DataContract
from features.data_docs import SUMMARY_PAGE, ValidationPage, render_summary_page, write_data_docs
from features.quarantine import check_dataset
from features.validation import ExpectationResult, ValidationReport
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


# a <script src=...> or <link href=...> that reaches the network
EXTERNAL = re.compile(r"<(?:script|link)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//", re.I)


def test_the_summary_page_lists_every_validation_and_needs_no_network(
    tmp_path, valid_frame: pd.DataFrame, contract: DataContract
) -> None:
    outcome = check_dataset(with_bad_rows(valid_frame), contract, QUARANTINE_ON)
    docs = tmp_path / "docs"

    write_data_docs(outcome.reports, docs)

    page = (docs / SUMMARY_PAGE).read_text(encoding="utf-8")
    assert not EXTERNAL.search(page)
    assert "<script" not in page and "@import" not in page and "url(" not in page
    assert EXTERNAL.search((docs / "index.html").read_text(encoding="utf-8"))  # GE's index: CDN
    body = page.split("<tbody>")[1].split("</tbody>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    linked = {re.search(r'href="([^"]+)"', row).group(1) for row in rows}
    on_disk = {p.relative_to(docs).as_posix() for p in docs.glob("validations/**/*.html")}
    assert linked == on_disk and len(rows) == len(outcome.reports) == 2
    for report, row in zip(outcome.reports, rows, strict=True):
        cells = re.findall(r"<td>(.*?)</td>", row, re.S)
        name = report._raw.meta["run_id"].run_name
        assert f">{name}</a>" in cells[0]
        assert ("passed" if report.success else "failed") in cells[1]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", cells[2])
        assert cells[3:8] == [
            str(report.rows),
            str(len(report.results)),
            str(sum(r.success for r in report.results)),
            str(len(report.failures)),
            str(sum(r.skipped is not None for r in report.results)),
        ]
        assert cells[8] == f'<a href="expectations/{contract.name}.html">{contract.name}</a>'
    failed = next(r for r in outcome.reports if not r.success)
    for failure in failed.failures:
        assert f"<li>{html.escape(failure.describe(), quote=False)}</li>" in page


def test_the_summary_page_escapes_names_and_refuses_nothing_to_show() -> None:
    result = ExpectationResult(
        expectation="expect_column_to_exist",
        rule="exists",
        scope="column",
        column="<b>",
        success=False,
        kwargs={"column": "<b>"},
    )
    report = ValidationReport(contract="a&b", rows=3, results=(result,))
    page = ValidationPage(
        report=report,
        name="run <1>",
        run_time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        page="validations/a&b/run <1>/x.html",
        suite_page="expectations/a&b.html",
    )

    text = render_summary_page([page])

    assert "<b>" not in text and "column '&lt;b&gt;': missing" in text
    assert '<a href="validations/a%26b/run%20%3C1%3E/x.html">run &lt;1&gt;</a>' in text
    assert "<td>2026-01-02 03:04:05 UTC</td>" in text and "a&amp;b" in text
    with pytest.raises(ValueError, match="no validation results to summarize"):
        render_summary_page([])
