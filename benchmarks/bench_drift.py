"""Benchmark: how well the monitor's drift detection separates drifted from clean windows.

    python benchmarks/bench_drift.py              # benchmarks/results/drift.{json,md}
    python benchmarks/bench_drift.py --seeds 3    # a quick look (same files)

One champion is trained the way the train stage trains it (the repository's `params.yaml`,
20,000 synthetic rows of the published process, seed 2020); its reference is what the
train stage keeps: the training split with its out-of-fold failure probabilities. Then, for
every drift scenario of the generator and `--seeds` seeds each (20), a production window of
`monitor.window.rows` rows is drawn with a seed the champion never saw, scored by the
champion, and judged by `monitoring.drift.detect_drift` at the default thresholds of
`params.yaml` (feature drift: Evidently's per-column tests and `monitor.drift_share`;
prediction drift: the served probabilities against the out-of-fold ones). Windows of the
published process ("none") with `--clean-seeds` fresh seeds (40) give the false-alarm rate.

A window counts as detected when the monitor sees dataset drift or prediction drift:
exactly the drift part of the monitor's verdict (labels and quality come on top).
Targets: detection at least 95 %, false alarms at most 5 %. The same is repeated at the
smallest window the monitor judges (`monitor.window.min_rows`), and at 500 rows, below
it, to show why the minimum is where it is.

The time from the first drifted request to the new champion answering is measured by
`benchmarks/bench_loop.py` (a real server, `lifecycle simulate` and `lifecycle watch`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._measure import machine, write_results

ROOT = Path(__file__).resolve().parents[1]
DRIFT_SCENARIOS = ("sensor_offset", "product_mix", "tool_change_policy", "failure_mechanism")
TRAIN_ROWS, TRAIN_SEED = 20_000, 2020
WINDOW_SEED_BASE = 10_000  # window seeds 10_000 + i: never the champion's training seed
TARGET_DETECTION, TARGET_FALSE_ALARMS = 0.95, 0.05
SMALL_WINDOW_ROWS = 500  # below the default monitor.window.min_rows: shows why it is 1,000


def champion_reference(params: Any, contract: Any) -> tuple[Any, Any]:
    """The champion (trained as the train stage does) and its reference frame."""
    import pandas as pd

    from core.config import SyntheticSourceConfig
    from features.synthetic import generate_process_data
    from models.training import fit_model, predict_out_of_fold, split_data

    data = generate_process_data(SyntheticSourceConfig(rows=TRAIN_ROWS, seed=TRAIN_SEED))
    seed = params.data.seed
    train, _ = split_data(data, contract, params.train.holdout_size, seed)
    oof = predict_out_of_fold(train, contract, params.train, seed, {})
    model = fit_model(train, contract, params.train, seed, {})
    reference = train[contract.features].copy()
    reference["probability"] = pd.Series(oof, index=train.index)
    return model, reference


def judge(
    model: Any, reference: Any, contract: Any, config: Any, scenario: str, seed: int, rows: int
) -> dict[str, Any]:
    import pandas as pd

    from core.config import SyntheticSourceConfig
    from features.synthetic import generate_process_data
    from models.evaluation import predict_failure_probability
    from monitoring.drift import detect_drift, sample_window

    window = generate_process_data(SyntheticSourceConfig(rows=rows, seed=seed, scenario=scenario))
    scores = pd.Series(predict_failure_probability(model, window, contract), index=window.index)
    start = time.perf_counter()
    sampled = sample_window(reference, config.sample_rows, seed)
    result = detect_drift(
        sampled,
        window,
        contract,
        config,
        reference_scores=sampled["probability"],
        current_scores=scores,
    )
    seconds = time.perf_counter() - start
    prediction = result.prediction.drifted if result.prediction is not None else False
    return {
        "scenario": scenario,
        "seed": seed,
        "rows": rows,
        "dataset_drift": result.dataset_drift,
        "drifted_columns": list(result.drifted_columns),
        "prediction_drift": prediction,
        "detected": bool(result.dataset_drift or prediction),
        "seconds": round(seconds, 3),
    }


def rates(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        by.setdefault((row["scenario"], row["rows"]), []).append(row)
    return {
        f"{scenario}@{size}": {
            "windows": len(group),
            "detected": sum(r["detected"] for r in group),
            "rate": round(sum(r["detected"] for r in group) / len(group), 4),
            "feature_drift": sum(r["dataset_drift"] for r in group),
            "prediction_drift": sum(r["prediction_drift"] for r in group),
            "median_s": round(statistics.median(r["seconds"] for r in group), 3),
        }
        for (scenario, size), group in by.items()
    }


def verdict(rows: list[dict[str, Any]], size: int) -> dict[str, Any]:
    drifted = [r for r in rows if r["rows"] == size and r["scenario"] != "none"]
    clean = [r for r in rows if r["rows"] == size and r["scenario"] == "none"]
    detection = sum(r["detected"] for r in drifted) / len(drifted)
    false_alarms = sum(r["detected"] for r in clean) / len(clean)
    return {
        "window_rows": size,
        "detection_rate": round(detection, 4),
        "false_alarm_rate": round(false_alarms, 4),
        "drifted_windows": len(drifted),
        "clean_windows": len(clean),
        "met": detection >= TARGET_DETECTION and false_alarms <= TARGET_FALSE_ALARMS,
    }


def table(results: dict[str, Any]) -> str:
    lines = [
        "# Drift detection: drifted windows vs windows of the published process",
        "",
        f"Produced by `python benchmarks/bench_drift.py` on {results['date']} "
        f"({results['machine']['cpus']} CPUs). One champion trained as the train stage does "
        f"({TRAIN_ROWS:,} rows, seed {TRAIN_SEED}); {results['seeds']} fresh seeds per drift "
        f"scenario, {results['clean_seeds']} for the published process; default thresholds "
        "of params.yaml. Detected = dataset drift (Evidently, `monitor.drift_share`) or "
        "prediction drift.",
        "",
    ]
    for v in results["verdicts"]:
        lines.append(
            f"- **{v['window_rows']:,}-row windows**: detection "
            f"{v['detection_rate']:.1%} of {v['drifted_windows']} drifted windows (target >= "
            f"{TARGET_DETECTION:.0%}), false alarms {v['false_alarm_rate']:.1%} of "
            f"{v['clean_windows']} clean windows (target <= {TARGET_FALSE_ALARMS:.0%}): "
            + (
                f"{'met' if v['met'] else 'NOT met'}"
                if v["window_rows"] != SMALL_WINDOW_ROWS
                else f"{'met' if v['met'] else 'not met'}, but below the default "
                "`monitor.window.min_rows` (1,000): the monitor gives no verdict on such a window"
            )
        )
    lines += [
        "",
        "| scenario | window rows | windows | detected | rate | feature drift | "
        "prediction drift | median s per window |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, r in results["rates"].items():
        scenario, size = key.split("@")
        lines.append(
            f"| {scenario} | {int(size):,} | {r['windows']} | {r['detected']} | {r['rate']:.1%} "
            f"| {r['feature_drift']} | {r['prediction_drift']} | {r['median_s']} |"
        )
    columns: dict[str, dict[str, int]] = {}
    for row in results["windows"]:
        for name in row["drifted_columns"]:
            columns.setdefault(row["scenario"], {}).setdefault(name, 0)
            columns[row["scenario"]][name] += 1
    lines += ["", "Columns flagged, by scenario (all window sizes):", ""]
    for scenario, counts in columns.items():
        named = ", ".join(f"{k} ({v})" for k, v in sorted(counts.items(), key=lambda x: -x[1]))
        lines.append(f"- {scenario}: {named}")
    return "\n".join(lines) + "\n"


def main() -> None:
    import datetime as dt
    import logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds per drift scenario")
    parser.add_argument(
        "--clean-seeds", type=int, default=40, help="seeds of the published process (none)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from core.config import load_params
    from features.contract import load_contract

    params = load_params(ROOT / "params.yaml")
    contract = load_contract(ROOT / params.data.contract)
    config = params.monitor
    model, reference = champion_reference(params, contract)
    sizes = tuple(dict.fromkeys((config.window.rows, config.window.min_rows, SMALL_WINDOW_ROWS)))
    rows = []
    for size in sizes:
        for scenario in ("none", *DRIFT_SCENARIOS):
            for i in range(args.clean_seeds if scenario == "none" else args.seeds):
                row = judge(
                    model, reference, contract, config, scenario, WINDOW_SEED_BASE + i, size
                )
                rows.append(row)
                print(
                    f"{scenario:>20} rows={size:>6} seed={row['seed']} "
                    f"detected={row['detected']} {row['drifted_columns']} "
                    f"prediction={row['prediction_drift']}",
                    flush=True,
                )
    results = {
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "seeds": args.seeds,
        "clean_seeds": args.clean_seeds,
        "verdicts": [verdict(rows, size) for size in sizes],
        "rates": rates(rows),
        "windows": rows,
    }
    write_results("drift", results, table(results))
    print(table(results))


if __name__ == "__main__":
    main()
