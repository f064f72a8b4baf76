"""DVC stage `ingest`: fetch the raw table and write it, with where it came from.

    python -m pipelines.ingest

Reads the `ingest` block of `params.yaml`, fetches from the configured source, appends the
labelled feedback batches (`ingest.feedback.directory`, each with the data contract's
columns) and writes `data/raw/dataset.parquet` (deterministic bytes: same data, same file)
and `data/raw/metadata.json` (source, rows from the source and from each feedback batch,
columns, content hash, time, duration). Both are written atomically; a failing source or
batch leaves no dataset behind.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from core.clock import now_text
from core.config import IngestConfig, load_params
from core.hashing import file_sha256
from core.io import write_json, write_parquet
from core.paths import RAW_DATA, RAW_METADATA
from features.contract import load_contract
from pipelines.edges.feedback import append_feedback, list_batches, read_batch
from pipelines.edges.runtime import run_stage
from pipelines.edges.sources import SourceError, describe_source, fetch

logger = logging.getLogger(__name__)


def ingest(
    config: IngestConfig,
    contract_path: Path,
    data_path: Path = RAW_DATA,
    metadata_path: Path = RAW_METADATA,
) -> dict[str, Any]:
    """Fetch the raw table, append the feedback batches, write it and its metadata.

    The contract is read only when there are batches: each must hold its columns.
    Returns the metadata.
    """
    start = time.perf_counter()
    frame = fetch(config)
    source_rows = len(frame)
    batches = [read_batch(path) for path in list_batches(config.feedback.directory)]
    if batches:
        frame = append_feedback(frame, batches, load_contract(contract_path))
        logger.info(
            "appended %d rows from %d feedback batch(es) in %s to %d rows from the source",
            len(frame) - source_rows,
            len(batches),
            config.feedback.directory,
            source_rows,
        )
    else:
        logger.info("no feedback batches in %s", config.feedback.directory)
    write_raw_parquet(frame, data_path)
    metadata = {
        "source": describe_source(config),
        "source_rows": source_rows,
        "feedback": {
            "directory": config.feedback.directory.as_posix(),
            "rows": len(frame) - source_rows,
            "batches": [batch.describe() for batch in batches],
        },
        "rows": len(frame),
        "columns": [str(name) for name in frame.columns],
        "dtypes": {str(name): str(dtype) for name, dtype in frame.dtypes.items()},
        "sha256": file_sha256(data_path),
        "ingested_at": now_text(),
        "duration_s": round(time.perf_counter() - start, 3),
    }
    write_json(metadata, metadata_path)
    logger.info(
        "ingested %d rows x %d columns from %s in %.2f s -> %s (sha256 %s)",
        metadata["rows"],
        len(metadata["columns"]),
        f"{config.source} + {len(batches)} feedback batch(es)" if batches else config.source,
        metadata["duration_s"],
        data_path,
        metadata["sha256"][:12],
    )
    return metadata


def write_raw_parquet(frame: pd.DataFrame, target: Path) -> None:
    """Write the frame as Parquet; a column Parquet cannot hold is a SourceError naming it."""
    duplicated = sorted({str(name) for name in frame.columns[frame.columns.duplicated()]})
    if duplicated:
        raise SourceError(f"the source gives duplicate column names: {', '.join(duplicated)}")
    try:
        write_parquet(frame, target)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise SourceError(_describe_unwritable(frame, exc)) from None


def _describe_unwritable(frame: pd.DataFrame, exc: Exception) -> str:
    """Find the first column pyarrow rejects and say what it holds."""
    for position, name in enumerate(frame.columns):
        column = frame.iloc[:, [position]]
        try:
            pa.Table.from_pandas(column, preserve_index=False)
        except (pa.ArrowException, ValueError, TypeError):
            kinds = sorted({type(value).__name__ for value in column.iloc[:, 0].dropna()})
            holds = (
                f"it mixes Python types ({', '.join(kinds)})"
                if len(kinds) > 1
                else f"it holds {', '.join(kinds) or 'untyped'} values"
            )
            return (
                f"column '{name}' cannot be written as Parquet: {holds}; "
                "clean it at the source or cast it in the query"
            )
    return f"the fetched table cannot be written as Parquet: {exc}"


def main() -> None:
    def body() -> None:
        params = load_params()
        ingest(params.ingest, params.data.contract)

    run_stage("ingest", body)


if __name__ == "__main__":
    main()
