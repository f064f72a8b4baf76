"""Benchmark: the monitor stage on a 100,000-row window, start to finish.

    python benchmarks/bench_monitor.py        # benchmarks/results/monitor.{json,md}

In a temporary project folder: a champion trained on 20,000 synthetic rows the way the
train stage trains it (the repository's `train` params), saved with its reference data
(the training rows and the model's scores on them: enough
for timing) and exported to a BentoML store as v1;
100,000 production rows (`sensor_offset` scenario, so drift is found and the HTML report is
full) scored by it and written by the service's own `PredictionLogger`; 20,000 of them
labelled. `params.yaml` is the repository's with `monitor.window.rows: 100000`.

Then `python -m pipelines.monitor` runs `--repeats` times as a fresh process, timed from
launch to exit (imports, reading the log and labels, Evidently, the HTML report, the MLflow
run in a SQLite store): the first run creates the MLflow database, so it is reported apart.
Target: under 10 s on this machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._measure import machine, write_results

ROOT = Path(__file__).resolve().parents[1]
WINDOW_ROWS, LABELLED_ROWS, TRAIN_ROWS = 100_000, 20_000, 20_000
TARGET_S = 10.0


def build_project(folder: Path) -> None:
    import yaml

    from core.config import SyntheticSourceConfig, load_params, registered_model_name
    from core.model_files import save_model
    from core.paths import REFERENCE_FILE
    from features.contract import load_contract
    from features.synthetic import generate_process_data
    from models.evaluation import predict_probability
    from models.training import SKOPS_TRUSTED_TYPES, fit_model
    from serving.model_store import export_model, use_store
    from serving.prediction_log import PredictionLogger

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"]["contract"] = str(ROOT / raw["data"]["contract"])
    raw["monitor"]["window"]["rows"] = WINDOW_ROWS
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params(folder / "params.yaml")
    contract = load_contract(params.data.contract)

    train = generate_process_data(SyntheticSourceConfig(rows=TRAIN_ROWS, seed=2020))
    model = fit_model(train, contract, params.train, params.data.seed, {})
    model_dir = folder / "artifacts" / "model"
    family = params.train.model
    meta = {"family": family, "features": contract.features, "label": contract.label}
    content = save_model(model, model_dir, meta, SKOPS_TRUSTED_TYPES[family])
    reference = train[[*contract.ids, *contract.features]].copy()
    reference["label"] = train[contract.label]
    reference["probability"] = predict_probability(model, train, contract)
    reference.to_parquet(model_dir / REFERENCE_FILE, index=False)
    store = folder / params.serving.store
    use_store(store)
    name = registered_model_name(params.deploy.registered_model, contract.name)
    export_model(model_dir, name, 1, "bench", content, 0.3, store)
    champion = {"version": 1, "content_sha256": content, "mlflow_run_id": "bench"}
    (folder / "reports" / "deploy").mkdir(parents=True)
    (folder / "reports" / "deploy" / "champion.json").write_text(json.dumps(champion))

    window = generate_process_data(
        SyntheticSourceConfig(rows=WINDOW_ROWS, seed=5, scenario="sensor_offset"),
        first_udi=10_000_001,
    )
    scores = predict_probability(model, window, contract)
    served = window[[*contract.ids, *contract.features]].to_dict(orient="records")
    rows = [
        {
            "request_id": f"bench-{i}",
            "model_version": "v1",
            "probability": float(score),
            "predicted": bool(score >= 0.3),
            "threshold": 0.3,
            **record,
        }
        for i, (record, score) in enumerate(zip(served, scores, strict=True))
    ]
    log_dir = folder / params.serving.prediction_log.directory
    with PredictionLogger(log_dir, queue_size=WINDOW_ROWS, flush_interval_s=1.0) as logger:
        logger.log(rows)
    labels_dir = folder / params.monitor.labels.directory
    labels_dir.mkdir(parents=True)
    truth = [contract.ids[0], *(c.name for c in contract.columns if c.role in ("label", "ignore"))]
    window[truth].head(LABELLED_ROWS).to_parquet(labels_dir / "batch-001.parquet", index=False)


def run_monitor(folder: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LIFECYCLE_"))}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    env["PYTHONPATH"] = str(ROOT)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.monitor"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"monitor failed:\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as tmp:
        folder = Path(tmp)
        build_project(folder)
        first = run_monitor(folder)
        times = [run_monitor(folder) for _ in range(args.repeats)]
        decision = json.loads((folder / "reports" / "monitor" / "decision.json").read_text())
    median = statistics.median(times)
    results = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "window_rows": WINDOW_ROWS,
        "labelled_rows": LABELLED_ROWS,
        "first_run_s": round(first, 2),
        "runs_s": [round(t, 2) for t in times],
        "median_s": round(median, 2),
        "target_s": TARGET_S,
        "met": median < TARGET_S and max(times) < TARGET_S,
        "decision": {k: decision[k] for k in ("retrain", "reasons", "window")},
    }
    table = "\n".join(
        [
            "# Monitor stage on a 100,000-row window",
            "",
            f"Produced by `python benchmarks/bench_monitor.py` on {results['date']} "
            f"({results['machine']['cpus']} CPUs). `python -m pipelines.monitor` as a fresh "
            f"process, launch to exit, on {WINDOW_ROWS:,} logged predictions ({LABELLED_ROWS:,} "
            "labelled) against a 20,000-row reference; MLflow in SQLite.",
            "",
            f"- **Median {median:.2f} s** over {len(times)} runs (all: "
            f"{', '.join(f'{t:.2f}' for t in times)} s); target under {TARGET_S:g} s: "
            f"{'met' if results['met'] else 'NOT met'}.",
            f"- The first run, which also creates the MLflow database: {first:.2f} s.",
            f"- Its verdict: retrain {decision['retrain']}; {decision['reasons'][0]}",
            "",
        ]
    )
    write_results("monitor", results, table)
    print(table)


if __name__ == "__main__":
    main()
