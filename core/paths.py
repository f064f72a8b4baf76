"""The lifecycle's file layout: every path a stage writes and another reads, in one place.

Paths are relative to the project root (the working directory under `dvc repro`), and each
must match `dvc.yaml`. Folders the user configures (sources, the prediction log, labels,
feedback, the serving store) are in `params.yaml` instead.
"""

from __future__ import annotations

from pathlib import Path

# The model's reference data: its training split (contract feature columns), the label
# ("label") and its out-of-fold probability ("probability"). The train stage writes
# it beside the model; the serving store keeps it with the model; the monitor compares
# production traffic with the champion's copy.
REFERENCE_FILE = "validation_predictions.parquet"
# What the monitor measured on the same data when the model was trained: drift thresholds,
# probability calibration, feature importance, the training data's profile.
MONITOR_PROFILE_FILE = "monitor_profile.json"

DVC_FILE = Path("dvc.yaml")  # the stages, in order, and each one's deps
DVC_LOCK = Path("dvc.lock")  # what DVC recorded of each stage's last run
LEDGER = Path(".lifecycle/ledger.jsonl")  # every attempt of every stage, appended

# ingest
RAW_DATA = Path("data/raw/dataset.parquet")
RAW_METADATA = Path("data/raw/metadata.json")
# validate
VALIDATED_DATA = Path("data/validated/dataset.parquet")
QUARANTINE = Path("data/validated/quarantine.parquet")
VALIDATION_SUMMARY = Path("reports/validate/summary.json")
DATA_DOCS_DIR = Path("reports/validate/data_docs")
# train
TRAIN_SPLIT = Path("data/split/train.parquet")
HOLDOUT_SPLIT = Path("data/split/holdout.parquet")
MODEL_DIR = Path("artifacts/model")
VALIDATION_PREDICTIONS = MODEL_DIR / REFERENCE_FILE  # out-of-fold scores: the reference data
MONITOR_PROFILE = MODEL_DIR / MONITOR_PROFILE_FILE
TRAIN_METRICS = Path("reports/train/metrics.json")
# evaluate
EVALUATION = Path("reports/evaluate/metrics.json")
PLOTS_DIR = Path("reports/evaluate/plots")
# the page template `dvc plots show` fills (.dvc/config: plots.html_template), written by
# `make install` (lifecycle.plots_page): Vega inlined, so the page renders offline
PLOTS_TEMPLATE = Path(".dvc/plots_template.html")
# deploy
DEPLOY_DECISION = Path("reports/deploy/decision.json")
CHAMPION = Path("reports/deploy/champion.json")  # which model serves: monitor depends on it
ALIAS_HISTORY = Path("reports/deploy/alias_history.jsonl")  # every alias move, appended
ROLLOUT_HISTORY = Path("reports/deploy/rollout_history.jsonl")  # every rollout verdict, appended
MODEL_CARD = Path("reports/deploy/model_card.md")  # the champion's card, and its page
MODEL_CARD_HTML = Path("reports/deploy/model_card.html")
BENTOFILE = Path("serving/bentofile.yaml")
# monitor
MONITOR_DIR = Path("reports/monitor")
DRIFT_REPORT = MONITOR_DIR / "drift.html"
MONITOR_METRICS = MONITOR_DIR / "metrics.json"
MONITOR_DECISION = MONITOR_DIR / "decision.json"
LABELLED_WINDOW = Path("data/monitor/window_labelled.parquet")  # watch turns it into feedback
