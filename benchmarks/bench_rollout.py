"""Benchmark: what a rollout costs the service: no candidate, shadow and canary, side by side.

    python benchmarks/bench_rollout.py                  # benchmarks/results/rollout.*
    python benchmarks/bench_rollout.py --duration 3 --rounds 1   # a quick look (same files)

A child process trains two models the way the train stage trains them (the repository's
`params.yaml` train block on 20,000 synthetic rows; the candidate with another seed, so the
same family and size) and exports them to a temporary BentoML store as v1 and v2. Then ONE
`lifecycle serve` (the repository's params.yaml, serving as shipped: two workers, batching,
the prediction log; `deploy.rollout` at its defaults: canary share 0.1, shadow queue 10,000
rows, shadow batches of 256, the shadow's budget `max_cpu_share` 0.25 per worker and
`max_lag_s` 30, paired timing every 4th batch) serves:

- `none`: v1 alone (the pointer without a rollout block);
- `shadow`: v1 answers, v2 scores every row in shadow (`serving/shadow.py`);
- `canary`: v2 answers 10 % of the requests, v1 scores those in shadow and v2 the rest.

The scenario changes by rewriting the champion pointer; the benchmark then waits until
`/readyz` (each worker answers its own) shows the rollout on 20 answers in a row. Rounds are
interleaved (none, shadow, canary, none, ...) so a disturbance of the machine hits every
scenario alike; each run is `wrk -t2 -c8 -d{duration}s --latency` with one single-row JSON
POST per request (benchmarks/wrk_post.lua). The body has no row id, so a canary routes each
request by its request id (a new one per request): 10 % of the requests, not of the ids.
A scenario's row is its median run by requests/s. After each run the service's
`lifecycle_shadow_rows` counters give how many rows the shadow scored, how many it had
to log unscored (queue full) and how many over its budget (waited beyond `max_lag_s`): a
shadow that keeps up within its budget leaves none of either.

Target (issue 15): shadow costs at most 25 % of the throughput at 8 connections
(shadow requests/s >= 0.75 x none), zero errors.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._measure import machine, run_child, write_results
from benchmarks.bench_serving import Scenario, one_run, run_wrk, start_server, stop_server

CONNECTIONS = 8
TARGET_RATIO = 0.75  # shadow at least 75 % of the requests/s without a candidate
TRAIN_ROWS = 20_000
MODEL_NAME = "milling-failure"
SCENARIOS = ("none", "shadow", "canary")
WARMUP_S = 4
SWITCH_TIMEOUT_S = 30.0
OUTCOMES = ("scored", "error", "unscored", "over_budget")  # lifecycle_shadow_rows outcomes


def _child_build(workdir: Path) -> None:
    """Train v1 and v2, export both to the store, point the champion at v1; write the body."""
    import pipelines  # noqa: F401  (telemetry off before the libraries load)
    from core.config import SyntheticSourceConfig, load_params
    from core.model_files import save_model
    from features.contract import load_contract
    from features.synthetic import generate_process_data
    from models.training import SKOPS_TRUSTED_TYPES, fit_model, split_data
    from serving.model_store import export_model, load_served_model, write_champion_pointer
    from serving.schema import field_name

    root = Path(__file__).resolve().parents[1]
    params = load_params(root / "params.yaml")
    contract = load_contract(root / params.data.contract)
    config, seed = params.train, params.data.seed
    frame = generate_process_data(
        SyntheticSourceConfig(rows=TRAIN_ROWS, seed=params.ingest.synthetic.seed)
    )
    train, holdout = split_data(frame, contract, config.holdout_size, seed)
    store = workdir / "store"
    tags = {}
    for version, model_seed in ((1, seed), (2, seed + 1)):
        model = fit_model(train, contract, config, model_seed)
        meta = {"family": config.model, "features": contract.features, "label": contract.label}
        folder = workdir / f"model-v{version}"
        content = save_model(model, folder, meta, SKOPS_TRUSTED_TYPES[config.model])
        tags[version] = export_model(
            folder, MODEL_NAME, version, f"run-{version}", content, 0.5, store
        )
    write_champion_pointer(store, load_served_model(tags[1], store))
    row = holdout[contract.features].head(1).reset_index(drop=True)
    record = {
        field_name(name): (
            float(row.at[0, name]) if name in contract.numeric_features else str(row.at[0, name])
        )
        for name in contract.features
    }
    (workdir / "body-bentoml.json").write_text(json.dumps(record))
    print(json.dumps({"tags": tags, "model": config.model, "train_rows": len(train)}))


def point(store: Path, scenario: str, share: float) -> None:
    """Write the champion pointer of `scenario` (v1, with v2 in shadow or canary)."""
    from core.clock import format_time, utc_now
    from core.records.rollout import RolloutSlot
    from serving.model_store import load_served_model, slot_model, write_champion_pointer

    champion = load_served_model(f"{MODEL_NAME}:v1", store)
    slot = None
    if scenario != "none":
        slot = RolloutSlot(
            id=f"bench-{scenario}-{time.time_ns()}",
            kind=scenario,
            model=slot_model(load_served_model(f"{MODEL_NAME}:v2", store)),
            share=share if scenario == "canary" else 0.0,
            started_at=format_time(utc_now()),
        )
    write_champion_pointer(store, champion, slot)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.read().decode("utf-8")


def wait_for(base: str, scenario: str) -> float:
    """Seconds until 20 /readyz answers in a row (any worker) show the scenario's rollout."""
    began, streak = time.monotonic(), 0
    while streak < 20:
        rollout = json.loads(_get(f"{base}/readyz")).get("rollout")
        kind = rollout["kind"] if rollout else "none"
        streak = streak + 1 if kind == scenario else 0
        if time.monotonic() - began > SWITCH_TIMEOUT_S:
            raise RuntimeError(f"the service did not switch to {scenario} in time")
        time.sleep(0.05)
    return time.monotonic() - began


def shadow_counts(base: str) -> dict[str, float]:
    """The service's lifecycle_shadow_rows totals by outcome (all workers)."""
    totals: dict[str, float] = dict.fromkeys(OUTCOMES, 0.0)
    for line in _get(f"{base}/metrics").splitlines():
        match = re.match(r"lifecycle_shadow_rows_total\{([^}]*)\} ([0-9.e+]+)", line)
        if match:
            outcome = re.search(r'outcome="(\w+)"', match[1])
            if outcome:
                totals[outcome[1]] = totals.get(outcome[1], 0.0) + float(match[2])
    return totals


def settled_counts(base: str, quiet_s: float = 1.0, limit_s: float = 20.0) -> dict[str, float]:
    """The shadow counters once they stop moving for `quiet_s` (the shadow, pacing itself
    within its budget, may still be scoring the end of a run), or after `limit_s`."""
    began, last = time.monotonic(), shadow_counts(base)
    while time.monotonic() - began < limit_s:
        time.sleep(quiet_s)
        now = shadow_counts(base)
        if now == last:
            return now
        last = now
    return last


def _shadow_config() -> dict[str, Any]:
    """The repository's `deploy.rollout.shadow` block: the service's shadow settings here."""
    from core.config import load_params

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    return params.deploy.rollout.shadow.model_dump()


def _loads(loads: Any) -> str:
    return "/".join(f"{value:.2f}" for value in loads)


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ranked = sorted(runs, key=lambda run: run["requests_per_s"])
    return ranked[(len(ranked) - 1) // 2]


def markdown(report: dict[str, Any]) -> str:
    rows, ratio = report["scenarios"], report["ratios"]
    lines = [
        "# Rollout benchmark",
        "",
        f"Measured {report['measured_at']} on {report['machine']['cpus']} CPUs (wrk shares "
        f"them); model `{report['model']}` ({report['train_rows']:,} training rows), v1 "
        "champion and v2 candidate of the same family and size. One `lifecycle serve` as "
        "shipped (two workers, batching, the prediction log; `deploy.rollout` defaults: "
        f"canary share {report['share']}, shadow batches of 256, queue 10,000 rows, budget "
        f"{report['shadow_config']['max_cpu_share']} of a core per worker, max lag "
        f"{report['shadow_config']['max_lag_s']:g} s), "
        f"switched between scenarios by rewriting its pointer; `wrk -t2 -c{CONNECTIONS} "
        f"-d{report['duration_s']}s --latency`, one single-row JSON POST per request without "
        f"a row id (the canary routes by request id), {report['rounds']} interleaved rounds "
        "after a warm-up; each row is the scenario's median run by requests/s. `shadow "
        "rows` are the rows the other model scored, logged unscored (queue full) and logged "
        "over budget (waited beyond max_lag_s) during the runs of that scenario. Load "
        f"averages (1, 5, 15 min) at the start {_loads(report['load_average']['start'])}, at "
        f"the end {_loads(report['load_average']['end'])}; each run's `cpu_share` in the JSON "
        "says how much of the CPU the server, wrk and other jobs took.",
        "",
        "| scenario | requests/s | p50 ms | p99 ms | errors | shadow rows scored "
        "| shadow rows unscored | shadow rows over budget | each run: req/s, p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name in SCENARIOS:
        row = rows[name]
        each = ", ".join(f"{r['requests_per_s']:.0f} / {r['p99_ms']:.1f}" for r in row["runs"])
        lines.append(
            f"| {name} | {row['requests_per_s']:.1f} | {row['p50_ms']:.1f} | "
            f"{row['p99_ms']:.1f} | {row['errors']} | {row['shadow']['scored']:.0f} | "
            f"{row['shadow']['unscored']:.0f} | {row['shadow']['over_budget']:.0f} | {each} |"
        )
    met = "met" if report["target_met"] else "NOT met"
    lines += [
        "",
        f"Ratios to `none` (medians): shadow {ratio['shadow_rps']:.2f}x requests/s, "
        f"{ratio['shadow_p99']:.2f}x p99; canary {ratio['canary_rps']:.2f}x requests/s, "
        f"{ratio['canary_p99']:.2f}x p99.",
        "",
        f"Target: shadow keeps at least {TARGET_RATIO:.0%} of the requests/s at "
        f"{CONNECTIONS} connections, zero errors: **{met}**.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (odd)")
    parser.add_argument("--share", type=float, default=0.1, help="the canary's share")
    parser.add_argument("--name", default="rollout", help="results file name")
    args = parser.parse_args()
    if args.child:
        _child_build(Path(args.child[1]))
        return
    if shutil.which("wrk") is None:
        parser.error("needs wrk on PATH: `make wrk` installs it (Debian's package)")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as folder:
        workdir = Path(folder)
        print("training v1 and v2", flush=True)
        build = run_child(Path(__file__), "build", str(workdir))
        server = start_server(Scenario("rollout", "bentoml", (CONNECTIONS,)), workdir, {})
        base = server.url.rsplit("/", 1)[0]
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SCENARIOS}
        shadow: dict[str, dict[str, float]] = {
            name: dict.fromkeys(OUTCOMES, 0.0) for name in SCENARIOS
        }
        switch_s: list[float] = []
        try:
            run_wrk(server, CONNECTIONS, WARMUP_S)
            for round_number in range(args.rounds):
                for name in SCENARIOS:
                    point(workdir / "store", name, args.share)
                    switch_s.append(wait_for(base, name))
                    print(f"round {round_number + 1}: {name}", flush=True)
                    before = shadow_counts(base)
                    _, result = one_run(server, CONNECTIONS, args.duration)
                    after = settled_counts(base)  # the shadow finishes what it queued
                    for key in shadow[name]:
                        shadow[name][key] += after.get(key, 0.0) - before.get(key, 0.0)
                    runs[name].append(result)
        finally:
            stopped = stop_server(server)
    scenarios = {}
    for name in SCENARIOS:
        median = median_run(runs[name])
        scenarios[name] = {
            "requests_per_s": median["requests_per_s"],
            "p50_ms": median["p50_ms"],
            "p99_ms": median["p99_ms"],
            "errors": sum(run["errors"] for run in runs[name]),
            "shadow": shadow[name],
            "runs": [
                {k: run[k] for k in ("requests_per_s", "p50_ms", "p99_ms", "errors", "cpu_share")}
                for run in runs[name]
            ],
        }
    none = scenarios["none"]
    ratios = {
        f"{name}_{key}": scenarios[name][field] / none[field]
        for name in ("shadow", "canary")
        for key, field in (("rps", "requests_per_s"), ("p99", "p99_ms"))
    }
    report = {
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "model": build["model"],
        "train_rows": build["train_rows"],
        "duration_s": args.duration,
        "rounds": args.rounds,
        "connections": CONNECTIONS,
        "share": args.share,
        "shadow_config": _shadow_config(),
        "switch_s_median": round(statistics.median(switch_s), 2),
        "scenarios": scenarios,
        "ratios": ratios,
        "target": f"shadow requests/s >= {TARGET_RATIO} x none at {CONNECTIONS} connections",
        "target_met": ratios["shadow_rps"] >= TARGET_RATIO
        and all(s["errors"] == 0 for s in scenarios.values()),
        "stopped": stopped,
        # the machine's 1-, 5- and 15-min load averages (other jobs share it)
        "load_average": {"start": load_before, "end": os.getloadavg()},
    }
    write_results(args.name, report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
