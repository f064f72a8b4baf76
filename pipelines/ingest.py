"""DVC stage `ingest`: fetch the raw table and write it, with where it came from.

    python -m pipelines.ingest

Reads the `ingest` block of `params.yaml`, fetches from the configured source and writes
`data/raw/dataset.parquet` (deterministic bytes: same data, same file) and
`data/raw/metadata.json` (source, rows, columns, content hash, time, duration).
Both are written atomically; a failing source leaves no dataset behind.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from pipelines.config import IngestConfig, load_params
from pipelines.io import file_sha256, write_json, write_parquet
from pipelines.runtime import run_stage
from pipelines.sources import SourceError, describe_source, fetch

logger = logging.getLogger(__name__)

# Relative to the working directory: DVC runs stages from the repository root.
RAW_DATA = Path("data/raw/dataset.parquet")
RAW_METADATA = Path("data/raw/metadata.json")


def ingest(
    config: IngestConfig, data_path: Path = RAW_DATA, metadata_path: Path = RAW_METADATA
) -> dict[str, Any]:
    """Fetch the raw table, write it and its metadata; return the metadata."""
    start = time.perf_counter()
    frame = fetch(config)
    write_raw_parquet(frame, data_path)
    metadata = {
        "source": describe_source(config),
        "rows": len(frame),
        "columns": [str(name) for name in frame.columns],
        "dtypes": {str(name): str(dtype) for name, dtype in frame.dtypes.items()},
        "sha256": file_sha256(data_path),
        "ingested_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - start, 3),
    }
    write_json(metadata, metadata_path)
    logger.info(
        "ingested %d rows x %d columns from %s in %.2f s -> %s (sha256 %s)",
        metadata["rows"],
        len(metadata["columns"]),
        config.source,
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
    run_stage("ingest", lambda: ingest(load_params().ingest))


if __name__ == "__main__":
    main()
