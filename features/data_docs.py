"""Great Expectations data docs: the HTML pages of validation reports, for a person to read.

GE's index lists its results with bootstrap-table and jQuery from public CDNs: offline it
shows no table. So beside it goes `summary.html`, a page of our own with no script and no
external style, that links every validation page with its status, date and counts.
"""

from __future__ import annotations

import copy
import html
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from features.validation import ValidationReport

SUMMARY_PAGE = "summary.html"  # in the data docs folder, beside GE's index.html


@dataclass(frozen=True)
class ValidationPage:
    """One validation as the summary lists it: its report, when it ran, its GE pages."""

    report: ValidationReport
    name: str  # GE's run name: "dataset", "after_quarantine"
    run_time: datetime
    page: str  # GE's page of this validation, relative to the data docs folder
    suite_page: str  # GE's page of the expectation suite


def write_data_docs(reports: Iterable[ValidationReport], directory: Path | str) -> Path:
    """Render Great Expectations data docs (HTML) of validation reports into `directory`.

    GE's own site builder runs in a fresh ephemeral context with one filesystem site. It
    builds into a temporary folder beside `directory`, which then replaces `directory`, so
    `directory/index.html` is never half-written. GE's pages load styles from public CDNs:
    offline they are plain but complete, except the index's table; `directory/summary.html`
    (`render_summary_page`) lists the same results and needs no network.
    """
    import great_expectations as gx  # only when called: it takes seconds to import
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    from features.expectations import ephemeral_context

    directory = Path(directory).resolve()  # GE's filesystem store wants an absolute path
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        context = ephemeral_context()
        for site in list(context.list_data_docs_sites()):
            context.delete_data_docs_site(site)  # the default site builds in /tmp
        context.add_data_docs_site(
            "validate",
            {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(staging),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        suites: set[str] = set()
        pages: list[ValidationPage] = []
        for report in reports:
            raw = report._raw
            if raw.suite_name not in suites:
                suites.add(raw.suite_name)
                context.suites.add(
                    gx.ExpectationSuite(
                        name=raw.suite_name,
                        expectations=[copy.copy(e) for e in report._suite.expectations],
                    )
                )
            key = ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=raw.suite_name),
                run_id=raw.meta["run_id"],
                batch_identifier=raw.meta["run_id"].run_name,
            )
            context.validation_results_store.set(key, raw)
            pages.append(
                ValidationPage(
                    report=report,
                    name=raw.meta["run_id"].run_name,
                    run_time=raw.meta["run_id"].run_time,
                    page="/".join(("validations", *key.to_tuple())) + ".html",
                    suite_page=f"expectations/{raw.suite_name}.html",
                )
            )
        context.build_data_docs(site_names=["validate"])
        for page in pages:
            if not (staging / page.page).is_file():  # GE's layout is ours to link, so check it
                raise RuntimeError(f"Great Expectations wrote no page {page.page} to link to")
        (staging / SUMMARY_PAGE).write_text(render_summary_page(pages), encoding="utf-8")
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory / "index.html"


def _href(relative: str) -> str:
    return html.escape(quote(relative), quote=True)


def _text(text: str) -> str:
    return html.escape(text, quote=False)


def _row(page: ValidationPage) -> str:
    report = page.report
    results = report.results
    skipped = sum(r.skipped is not None for r in results)
    status = "passed" if report.success else "failed"
    cells = [
        f'<a href="{_href(page.page)}">{_text(page.name)}</a>',
        f'<span class="{status}">{status}</span>',
        page.run_time.strftime("%Y-%m-%d %H:%M:%S %Z").strip(),
        str(report.rows),
        str(len(results)),
        str(sum(r.success for r in results)),
        str(len(report.failures)),
        str(skipped),
        f'<a href="{_href(page.suite_page)}">{_text(report.contract)}</a>',
    ]
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _failures(page: ValidationPage) -> str:
    if not page.report.failures:
        return ""
    items = "".join(f"<li>{_text(r.describe())}</li>" for r in page.report.failures)
    return f"<h2>{_text(page.name)}: what failed</h2><ul>{items}</ul>"


def render_summary_page(pages: Sequence[ValidationPage]) -> str:
    """A self-contained HTML page: one row per validation, linking GE's page of it.

    No script and no external style or font, so it reads the same with no network.
    """
    if not pages:
        raise ValueError("no validation results to summarize")
    contracts = sorted({p.report.contract for p in pages})
    title = f"Validation results: data contract {', '.join(contracts)}"
    header = "".join(
        f"<th>{h}</th>"
        for h in (
            "Validation",
            "Status",
            "Run time",
            "Rows",
            "Expectations",
            "Passed",
            "Failed",
            "Skipped",
            "Suite",
        )
    )
    rows = "\n".join(_row(p) for p in pages)
    failures = "\n".join(_failures(p) for p in pages)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{_text(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.8em; text-align: left; }}
th {{ background: #f3f3f3; }}
.passed {{ color: #1a7f37; font-weight: bold; }}
.failed {{ color: #c62828; font-weight: bold; }}
</style>
</head>
<body>
<h1>{_text(title)}</h1>
<p>Every validation of this run; each name opens Great Expectations' page of it.
Great Expectations' own <a href="index.html">index</a> needs the internet to show its table.</p>
<table id="validations">
<thead><tr>{header}</tr></thead>
<tbody>
{rows}
</tbody>
</table>
{failures}
</body>
</html>
"""
