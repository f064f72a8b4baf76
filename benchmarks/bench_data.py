"""Benchmark: synthetic generation and the validation gate at 10k, 100k and 1M rows.

    python benchmarks/bench_data.py            # writes benchmarks/results/data.{json,md}

Each (task, size) runs in a fresh process; time is the median of repeats, memory the
process's peak RSS (and the RSS just before the task, so the task's own share shows).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
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

SIZES = (10_000, 100_000, 1_000_000)
TASKS = ("generate", "validate")
ROOT = Path(__file__).resolve().parents[1]


def _child(task: str, rows: int, repeats: int) -> None:
    import pipelines  # noqa: F401  (telemetry off before the libraries load)
    from core.config import SyntheticSourceConfig, ValidateConfig
    from features.contract import load_contract
    from features.synthetic import generate_process_data

    config = SyntheticSourceConfig(rows=rows, seed=7)
    if task == "generate":
        baseline = peak_rss_mib()
        times = time_repeats(lambda: generate_process_data(config), repeats)
        child_report(times, baseline, rows=rows)
        return
    from features.quarantine import check_dataset

    contract = load_contract(ROOT / "features/contracts/milling.yaml")
    frame = generate_process_data(config)
    validate_config = ValidateConfig()
    baseline = peak_rss_mib()
    outcomes = []
    times = time_repeats(
        lambda: outcomes.append(check_dataset(frame, contract, validate_config)), repeats
    )
    assert all(o.success for o in outcomes), "benchmark data must pass the gate"
    child_report(times, baseline, rows=rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("TASK", "ROWS"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]), args.repeats)
        return
    rows = []
    for size in SIZES:
        for task in TASKS:
            result = run_child(Path(__file__), task, str(size), "--repeats", str(args.repeats))
            rows.append({"task": task, **result})
            print(
                f"{task:9s} {size:>9,d} rows: median {result['median_s']:.3f} s, "
                f"peak RSS {result['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
    results = {
        "benchmark": "data: synthetic generation and the validation gate",
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "results": rows,
    }
    lines = [
        "# Data benchmark: generator and validation gate",
        "",
        f"Measured {results['measured_at']} on {machine()['cpus']} CPUs, Python "
        f"{machine()['python']}; each cell in a fresh process, median of {args.repeats} repeats.",
        "",
        "| task | rows | median s | min s | max s | rows/s (median) | peak RSS MiB "
        "| RSS before task MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['rows']:,} | {r['median_s']:.3f} | {r['min_s']:.3f} | "
            f"{r['max_s']:.3f} | {r['rows'] / r['median_s']:,.0f} | {r['peak_rss_mib']:.0f} | "
            f"{r['rss_before_task_mib']:.0f} |"
        )
    write_results("data", results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
