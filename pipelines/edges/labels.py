"""The labels folder (`monitor.labels.directory`): every batch file, read the one way.

The monitor stage joins them to its window; `lifecycle watch` and `lifecycle rollout` join
them to a rollout's rows (`pipelines.edges.rollout_control`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from core.io import read_table
from monitoring.window import LabelsError

logger = logging.getLogger(__name__)

LABEL_PATTERNS = ("batch-*.parquet", "batch-*.csv")


def read_label_batches(directory: Path) -> list[tuple[str, pd.DataFrame]]:
    """Every labels batch in `directory` as (file name, frame), unreadable files refused."""
    directory = Path(directory)
    if not directory.is_dir():
        logger.info("no labels folder %s (monitor.labels.directory): no labels yet", directory)
        return []
    files = sorted(
        (path for pattern in LABEL_PATTERNS for path in directory.glob(pattern)),
        key=lambda path: path.name,
    )
    batches = []
    for path in files:
        try:
            batches.append((str(path), read_table(path)))
        except (OSError, ValueError) as exc:  # pyarrow's and pandas' parse errors included
            raise LabelsError(f"{path}: unreadable labels file ({exc})") from None
    logger.info("labels: %d batch file(s) in %s", len(batches), directory)
    return batches
