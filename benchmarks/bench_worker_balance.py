"""Benchmark: do two serving workers both get connections? With and without recycling.

    python benchmarks/bench_worker_balance.py            # benchmarks/results/worker_balance.*
    python benchmarks/bench_worker_balance.py --runs 5   # a quick look (same files)

BentoML's workers share one listening socket, and a burst of keep-alive connections can
all be accepted by one worker and stay there (BentoML issue #5426); the other core then
sits idle. `serving.recycle_connection_every` makes every Nth answer of a worker say
`Connection: close`, so clients reconnect and an idle worker can take connections over.

The same model and project as `bench_serving.py` (its build and server helpers), two
workers, one server per setting; then `--runs` times a fresh `wrk -c8 -d{seconds}s`
(fresh connections each time). A run counts as lopsided when the server's processes used
less than 70% of the machine's two cores: one worker did all the work. Reported per
setting: lopsided runs, and the median, lowest and highest requests/s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_serving as serving
from benchmarks._measure import machine, run_child, write_results

CONNECTIONS = 8
LOPSIDED_BELOW = 0.70  # server CPU share of all cores; one busy worker is about 0.5
SETTINGS = {
    "recycle every 200 (shipped)": {},
    "no recycling": {"recycle_connection_every": 0},
}


def measure(name: str, overrides: dict[str, Any], workdir: Path, build: dict, args) -> dict:
    scenario = serving.Scenario(
        name, "bentoml", (CONNECTIONS,), serving={"workers": 2, **overrides}
    )
    server = serving.start_server(scenario, workdir, build)
    runs = []
    try:
        serving.run_wrk(server, CONNECTIONS, serving.WARMUP_S)
        for _ in range(args.runs):
            _, result = serving.one_run(server, CONNECTIONS, args.seconds)
            runs.append(
                {
                    "requests_per_s": result["requests_per_s"],
                    "p99_ms": result["p99_ms"],
                    "errors": result["errors"],
                    "cpu_server": result["cpu_share"]["server"],
                    "cpu_other": result["cpu_share"]["other"],
                }
            )
    finally:
        serving.stop_server(server)
    rates = [run["requests_per_s"] for run in runs]
    return {
        "setting": name,
        "serving_overrides": {"workers": 2, **overrides},
        "runs": runs,
        "lopsided_runs": sum(run["cpu_server"] < LOPSIDED_BELOW for run in runs),
        "median_requests_per_s": statistics.median(rates),
        "lowest_requests_per_s": min(rates),
        "highest_requests_per_s": max(rates),
        "errors": sum(run["errors"] for run in runs),
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Two workers: where the connections land",
        "",
        f"Measured {report['measured_at']} on {report['machine']['cpus']} CPUs; "
        f"`lifecycle serve` with `serving.workers: 2`, {report['runs']} runs per setting of "
        f"`wrk -c{CONNECTIONS} -d{report['seconds']}s` (fresh connections each run) on one "
        f"server. Lopsided: the server used under {LOPSIDED_BELOW:.0%} of all cores, so one "
        "worker held every connection.",
        "",
        "| setting | runs | lopsided runs | median req/s | lowest | highest | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in report["settings"]:
        lines.append(
            f"| {result['setting']} | {len(result['runs'])} | {result['lopsided_runs']} | "
            f"{result['median_requests_per_s']:.0f} | {result['lowest_requests_per_s']:.0f} | "
            f"{result['highest_requests_per_s']:.0f} | {result['errors']} |"
        )
    lines += ["", "Server CPU share per run:", ""]
    for result in report["settings"]:
        shares = ", ".join(f"{run['cpu_server']:.0%}" for run in result["runs"])
        lines.append(f"- {result['setting']}: {shares}")
    lines += ["", "## Reproduce", "", "```", report["command"], "```"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="wrk runs per setting")
    parser.add_argument("--seconds", type=int, default=3, help="seconds per wrk run")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-balance-"))
    build = run_child(Path(serving.__file__), "build", str(workdir), timeout=900)
    results = [measure(name, o, workdir, build, args) for name, o in SETTINGS.items()]
    report = {
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "runs": args.runs,
        "seconds": args.seconds,
        "command": "python " + " ".join(["benchmarks/bench_worker_balance.py", *sys.argv[1:]]),
        "settings": results,
    }
    write_results("worker_balance", report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
