"""Stage `validate`: check the raw dataset against the data contract before anything trusts it.

    python -m pipelines.validate

Runs the Great Expectations suite derived from the contract (`data.contract`) and the
`validate` block of `params.yaml` on `data/raw/dataset.parquet`. On success the rows that
passed go on to `data/validated/`; on failure it exits non-zero with one line per failed
rule, and no validated dataset is left behind.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd

from core.config import load_params
from core.io import write_json, write_parquet
from core.paths import (
    DATA_DOCS_DIR,
    QUARANTINE,
    RAW_DATA,
    VALIDATED_DATA,
    VALIDATION_SUMMARY,
)
from features.contract import load_contract
from features.data_docs import SUMMARY_PAGE, write_data_docs
from features.quarantine import check_dataset
from features.validation import DataValidationError
from pipelines.edges.runtime import run_stage, timed

logger = logging.getLogger(__name__)


def read_raw(path: Path) -> pd.DataFrame:
    """Read the raw dataset; an absent, empty or unreadable file is a validation failure."""
    if not path.exists():
        raise DataValidationError(f"{path}: not found (run the ingest stage first)")
    if path.stat().st_size == 0:
        raise DataValidationError(f"{path}: the file is empty (0 bytes)")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataValidationError(f"{path}: cannot be read as Parquet: {exc}") from None


def discard_outputs() -> None:
    """Remove outputs of an earlier run that a failed validation must not leave behind."""
    for stale in (VALIDATED_DATA, QUARANTINE):
        stale.unlink(missing_ok=True)


def validate() -> None:
    """Validate the raw dataset and write the stage's outputs.

    - `reports/validate/summary.json`: the DVC metric (deterministic), always;
    - `reports/validate/data_docs/`: GE's data docs (`index.html`) and `summary.html`, a page
      of every validation's status and counts that renders offline, always;
    - on success only, `data/validated/dataset.parquet` (the rows that passed) and
      `data/validated/quarantine.parquet` (rows set aside by `validate.quarantine`; no rows
      when none were).

    On failure, raises with one line per failed rule and leaves no validated dataset behind
    (a stale one from an earlier run is removed).
    """
    params = load_params()
    contract = load_contract(params.data.contract)
    try:
        frame = read_raw(RAW_DATA)
    except DataValidationError as exc:
        discard_outputs()
        shutil.rmtree(DATA_DOCS_DIR, ignore_errors=True)
        write_json({"success": False, "rows": 0, "problem": str(exc)}, VALIDATION_SUMMARY)
        raise
    with timed(f"validating {len(frame)} rows against contract '{contract.name}'"):
        outcome = check_dataset(frame, contract, params.validate_)
    write_json(outcome.summary(), VALIDATION_SUMMARY)
    with timed("writing data docs"):
        write_data_docs(outcome.reports, DATA_DOCS_DIR)
    report = DATA_DOCS_DIR / SUMMARY_PAGE
    logger.info(
        "data docs: %s (Great Expectations' index: %s)", report, report.with_name("index.html")
    )

    if not outcome.success:
        discard_outputs()
        raise DataValidationError(f"{outcome.message()}\n(details: {report})")

    write_parquet(outcome.quarantined, QUARANTINE)
    write_parquet(outcome.validated, VALIDATED_DATA)
    if len(outcome.quarantined):
        logger.warning("%s", outcome.message())
        logger.warning("quarantined rows written to %s", QUARANTINE)
    logger.info("%d rows passed validation -> %s", len(outcome.validated), VALIDATED_DATA)


def main() -> None:
    # GE logs its own set-up at INFO (one module sets its logger's level itself): keep the
    # stage's log about the data.
    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.WARNING)
    run_stage("validate", validate)


if __name__ == "__main__":
    main()
