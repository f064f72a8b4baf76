"""NannyML's CBPE on the fixed windows, for checking our own (`monitoring/estimation.py`).

    bash benchmarks/nannyml_env.sh                        # once: builds .venv-nannyml
    .venv-nannyml/bin/python benchmarks/cbpe_nannyml.py   # tests/monitoring/data/cbpe_nannyml.json

Runs in `.venv-nannyml`, not in the project's environment, and imports nothing of ours.
It reads the windows `benchmarks/cbpe_windows.py` wrote: the reference (labels and the
champion's out-of-fold probabilities, uncalibrated) and the windows' served probabilities.
NannyML fits its own calibration on the reference (isotonic, when its check says the
scores need it) and estimates ROC AUC, average precision, precision, recall and F1 at the
operating threshold, one chunk per window. The stored numbers are what the test compares
our estimates with; the realized values (NannyML's, from the windows' labels) and NannyML's
sampling errors are stored beside them for the record.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

# NannyML sends usage statistics to an outside analytics service unless told not to
os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"

import nannyml
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "monitoring" / "data"
WINDOWS_FILE = DATA / "cbpe_windows.parquet"
RESULTS_FILE = DATA / "cbpe_nannyml.json"
METRICS = ["roc_auc", "average_precision", "precision", "recall", "f1"]

logger = logging.getLogger(__name__)


def nannyml_frame(rows: pd.DataFrame, threshold: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "y_true": rows["label"].to_numpy(),
            "y_pred_proba": rows["probability"].to_numpy(),
            "y_pred": (rows["probability"].to_numpy() >= threshold).astype(int),
        }
    )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # one chunk per window is the point here, not the "too few chunks" NannyML warns about
    warnings.filterwarnings("ignore", message="The resulting number of chunks is too low")
    frame = pd.read_parquet(WINDOWS_FILE)
    threshold = float(frame["threshold"].iloc[0])
    windows = [c for c in frame.columns if c not in ("part", "label", "probability", "threshold")]
    reference = nannyml_frame(frame[frame["part"] == "reference"], threshold)
    estimator = nannyml.CBPE(
        problem_type="classification_binary",
        y_pred_proba="y_pred_proba",
        y_pred="y_pred",
        y_true="y_true",
        metrics=METRICS,
        chunk_number=1,
    )
    np.random.seed(0)  # NannyML resamples the reference for its AP sampling error, unseeded
    estimator.fit(reference)
    results: dict[str, object] = {
        "nannyml": nannyml.__version__,
        "threshold": threshold,
        "reference_rows": len(reference),
        "needs_calibration": bool(estimator.needs_calibration),
        "windows": {},
    }
    for name in windows:
        analysis = nannyml_frame(frame[frame[name]], threshold)
        table = estimator.estimate(analysis).to_df()  # the reference's chunk, then the window's
        (row,) = (r for _, r in table.iterrows() if r[("chunk", "period")] == "analysis")
        results["windows"][name] = {
            "rows": len(analysis),
            "positives": int(analysis["y_true"].sum()),
            **{
                metric: {
                    "estimated": float(row[(metric, "value")]),
                    "realized": float(row[(metric, "realized")]),
                    "sampling_error": float(row[(metric, "sampling_error")]),
                }
                for metric in METRICS
            },
        }
        logger.info("%s: %s", name, results["windows"][name])
    RESULTS_FILE.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    logger.info("wrote %s", RESULTS_FILE)


if __name__ == "__main__":
    main()
