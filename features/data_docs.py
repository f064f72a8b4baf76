"""Great Expectations data docs: the HTML pages of validation reports, for a person to read."""

from __future__ import annotations

import copy
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from features.validation import ValidationReport


def write_data_docs(reports: Iterable[ValidationReport], directory: Path | str) -> Path:
    """Render Great Expectations data docs (HTML) of validation reports into `directory`.

    GE's own site builder runs in a fresh ephemeral context with one filesystem site. It
    builds into a temporary folder beside `directory`, which then replaces `directory`, so
    `directory/index.html` is never half-written. The pages load styles from public CDNs:
    offline they are plain but complete.
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
        context.build_data_docs(site_names=["validate"])
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory / "index.html"
