"""Production traffic for the monitor's tests: prediction-log rows and the files they live in.

`write_prediction_log` writes the layout `serving.prediction_log` documents and reads
(`date=YYYY-MM-DD/hour=HH/part-<pid>-<start>.jsonl`, one JSON object a line), so the monitor
reads real files through the real reader.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import DataContract

T0 = pd.Timestamp("2026-11-05T08:00:00", tz="UTC")


def make_log(
    frame: pd.DataFrame,
    contract: DataContract,
    *,
    probability: np.ndarray | None = None,
    version: str = "v1",
    threshold: float = 0.5,
    start: pd.Timestamp = T0,
    step_s: float = 1.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Log rows for `frame` (ids and features by contract names), one every `step_s` seconds."""
    rows = len(frame)
    if probability is None:
        probability = np.random.default_rng(seed).beta(0.5, 8.0, rows)
    served = [*contract.ids, *contract.features]
    log = pd.DataFrame(
        {
            "time": start + pd.to_timedelta(np.arange(rows) * step_s, unit="s"),
            "request_id": [f"req-{seed}-{i}" for i in range(rows)],
            "model_version": version,
            "probability": np.asarray(probability, dtype=float),
            "predicted": np.asarray(probability) >= threshold,
            "threshold": threshold,
        }
    )
    for name in served:
        log[name] = frame[name].to_numpy()
    return log


def write_prediction_log(log: pd.DataFrame, directory: Path, part: str = "part-1-x") -> int:
    """Write log rows as hourly JSON-lines partitions; returns the number of files written."""
    directory = Path(directory)
    times = pd.to_datetime(log["time"], utc=True)
    records = log.drop(columns="time").to_dict(orient="records")
    lines: dict[Path, list[str]] = {}
    for moment, record in zip(times, records, strict=True):
        stamp = moment.to_pydatetime().astimezone(dt.UTC)
        text = stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        path = directory / f"date={stamp:%Y-%m-%d}" / f"hour={stamp:%H}" / f"{part}.jsonl"
        row = {"time": text, **{k: _plain(v) for k, v in record.items()}}
        lines.setdefault(path, []).append(json.dumps(row, separators=(",", ":")))
    for path, text in lines.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write("\n".join(text) + "\n")
    return len(lines)


def labels_for(frame: pd.DataFrame, contract: DataContract, columns: list[str] | None = None):
    """A labels batch for `frame`: the join key, the label and the failure modes."""
    ignored = [c.name for c in contract.columns if c.role == "ignore"]
    return frame[columns or ["UDI", contract.label, *ignored]].copy()


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value
