"""Benchmark: train plus evaluate at 10k, 100k and 1M synthetic rows.

    python benchmarks/bench_train.py           # writes benchmarks/results/train.{json,md}

What the train and evaluate stages compute, without MLflow logging or file IO: the split,
the out-of-fold predictions (train.cv_folds folds), the final fit, the operating threshold,
and the holdout metrics. Each size runs in a fresh process: time is the median of repeats,
memory the process's peak RSS. Targets on the 2-core machine: 100k rows in under a minute,
1M rows in under 4 GB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._measure import (
    child_report,
    machine,
    peak_rss_mib,
    run_child,
    time_repeats,
    write_results,
)

ROOT = Path(__file__).resolve().parents[1]
SIZES = {10_000: 3, 100_000: 3, 1_000_000: 1}  # rows: repeats
TARGET_S_100K = 60.0
TARGET_MIB_1M = 4096.0


def _child(rows: int, repeats: int) -> None:
    import pipelines  # noqa: F401  (telemetry off before the libraries load)
    from core.config import SyntheticSourceConfig, load_params
    from features.contract import load_contract
    from features.synthetic import generate_process_data
    from models.evaluation import choose_threshold, predict_probability, score_predictions
    from models.training import fit_model, predict_out_of_fold, split_data

    params = load_params(ROOT / "params.yaml")
    contract = load_contract(ROOT / params.data.contract)
    frame = generate_process_data(SyntheticSourceConfig(rows=rows, seed=7))
    seed, config = params.data.seed, params.train
    phases: dict[str, float] = {}

    def train_and_evaluate() -> None:
        start = time.perf_counter()
        train, holdout = split_data(frame, contract, config.holdout_size, seed)
        oof = predict_out_of_fold(train, contract, config, seed)
        phases["out_of_fold_s"] = time.perf_counter() - start
        model = fit_model(train, contract, config, seed)
        phases["fit_s"] = time.perf_counter() - start - phases["out_of_fold_s"]
        y = train[contract.label].to_numpy()
        point = choose_threshold(y, oof, params.evaluate.operating_point)
        proba = predict_probability(model, holdout, contract)
        phases["holdout_average_precision"] = score_predictions(
            holdout[contract.label].to_numpy(), proba, point.threshold
        )["average_precision"]

    baseline = peak_rss_mib()
    times = time_repeats(train_and_evaluate, repeats)
    child_report(
        times,
        baseline,
        rows=rows,
        model=config.model,
        cv_folds=config.cv_folds,
        **{k: round(v, 4) for k, v in phases.items()},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("ROWS", "REPEATS"))
    args = parser.parse_args()
    if args.child:
        _child(int(args.child[0]), int(args.child[1]))
        return
    rows = []
    for size, repeats in SIZES.items():
        result = run_child(Path(__file__), str(size), str(repeats))
        rows.append(result)
        print(
            f"{size:>9,d} rows: median {result['median_s']:.1f} s, "
            f"peak RSS {result['peak_rss_mib']:.0f} MiB",
            flush=True,
        )
    by_rows = {r["rows"]: r for r in rows}
    verdict = {
        "100k_under_60_s": by_rows[100_000]["median_s"] < TARGET_S_100K,
        "1M_under_4_GB": by_rows[1_000_000]["peak_rss_mib"] < TARGET_MIB_1M,
    }
    results = {
        "benchmark": "train plus evaluate (split, out-of-fold CV, fit, threshold, holdout)",
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "targets": {"100k_seconds": TARGET_S_100K, "1M_peak_rss_mib": TARGET_MIB_1M},
        "verdict": verdict,
        "results": rows,
    }
    lines = [
        "# Train + evaluate benchmark",
        "",
        f"Measured {results['measured_at']} on {machine()['cpus']} CPUs; model "
        f"`{rows[0]['model']}`, {rows[0]['cv_folds']}-fold out-of-fold predictions plus the "
        "final fit; each size in a fresh process.",
        "",
        "| rows | repeats | median s | out-of-fold s | final fit s | peak RSS MiB | holdout AP |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['rows']:,} | {r['repeats']} | {r['median_s']:.2f} | {r['out_of_fold_s']:.2f} | "
            f"{r['fit_s']:.2f} | {r['peak_rss_mib']:.0f} | {r['holdout_average_precision']:.3f} |"
        )
    lines += [
        "",
        f"Targets: 100k rows under {TARGET_S_100K:.0f} s: "
        f"{'met' if verdict['100k_under_60_s'] else 'NOT met'}; 1M rows under 4 GB: "
        f"{'met' if verdict['1M_under_4_GB'] else 'NOT met'}.",
    ]
    write_results("train", results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
