"""Benchmark: the prediction service under HTTP load (wrk), next to `mlflow models serve`.

    python benchmarks/bench_serving.py                      # benchmarks/results/serving.*
    python benchmarks/bench_serving.py --duration 3         # a quick look (same files)
    python benchmarks/bench_serving.py --name serving-tuning --only bentoml \\
        --connections 8 --variant threads=2 --variant batching.max_latency_ms=5

Everything is built in a temporary folder, in a fresh child process: one model trained the
way the train stage trains it (the repository's `params.yaml` train block on 20,000
synthetic rows), saved with skops, exported to a temporary BentoML store with a champion
pointer, and logged with `mlflow.sklearn.log_model` (skops, exact trusted types) to a
temporary SQLite tracking store. So both servers serve the same fitted pipeline.

Then, one server at a time (this machine has two cores; wrk shares them):

- `lifecycle serve` in a temporary project whose `params.yaml` is the repository's with the
  store, the prediction log and the contract pointed into place: the service as shipped
  (serving/service.py, the default tuning); again with `serving.batching.enabled: false`
  at 8 connections;
- `lifecycle serve` again without the service's two garbage-collector fixes (an ablation,
  see WITHOUT_GC_FIXES): BentoML 1.4.40's per-request timeout timers left uncancelled
  (serving/bentoml_patches.py not applied) and no `gc.freeze()` after the model loads;
- `mlflow models serve --env-manager local -w 1` of the same model, with the environment a
  user has (no thread variables), and again with `OMP_NUM_THREADS=1` at 8 connections;
- each `--variant` (serving params, BentoML's traffic timeout, the ablation, environment)
  at 8 connections.

Each server is checked with curl (HTTP 200, and the answer matches the in-process model),
warmed up with a short wrk run, then loaded with `wrk -t{min(2,c)} -c{c} -d{duration}s
--latency -s benchmarks/wrk_post.lua` for c in 1, 8 and 32: one single-row JSON request per
call. Each count runs `--repeats` times (3) with a fresh wrk; its row is the median run.
The server is stopped with SIGTERM to its process group; then none of its processes (found
by parent pid) may be left, nor anything listening on its port.

A child process also measures the in-process limit: `predict_proba` on one-row frames,
the service's whole scoring path for one JSON row, and batched throughput.

Target (2-core machine), judged on the service as shipped (the `bentoml` row): at 8
connections, at least 5x the requests/s of `mlflow models serve`, p99 under 100 ms, zero
errors (socket errors and non-2xx). The ablation row is shown beside it, not judged.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._measure import machine, run_child, write_results

ROOT = Path(__file__).resolve().parents[1]
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_post.lua"
BIN = Path(sys.executable).parent
CONNECTIONS = (1, 8, 32)
TARGET_CONNECTIONS = 8
TARGET_SPEEDUP = 5.0
TARGET_P99_MS = 100.0
WARMUP_S = 4  # a short wrk run at 8 connections: several hundred requests
WRK_TIMEOUT = "2s"  # wrk counts a slower answer as a timeout (a socket error)
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
MODEL_NAME = "milling-failure"
SERVICE_NAME = "Predictor"  # the BentoML service class in serving/service.py
BENTOML_OVERRIDES = "BENTOML_CONFIG_OVERRIDES"
TRAIN_ROWS = 20_000
THREAD_VARIABLES = (  # the same list `lifecycle serve` sets (lifecycle.serve_command)
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
TELEMETRY_OFF = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
}


@dataclass(frozen=True)
class Scenario:
    """One server configuration and the connection counts it is loaded with."""

    name: str
    server: str  # "bentoml" (lifecycle serve) or "mlflow" (mlflow models serve)
    connections: tuple[int, ...]
    serving: dict[str, Any] = field(default_factory=dict)  # overrides of the serving block
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the server
    note: str = ""
    without: str = ""  # undo the service's GC fixes: "timer,freeze" (or one of them)
    duration_s: int | None = None  # seconds per wrk run, when not --duration

    @property
    def slug(self) -> str:
        """The name as a file name."""
        return re.sub(r"[^A-Za-z0-9._=-]+", "_", self.name)


def default_scenarios() -> list[Scenario]:
    return [
        Scenario(
            "bentoml",
            "bentoml",
            CONNECTIONS,
            note="`lifecycle serve` as shipped: params.yaml and serving/service.py as they are",
        ),
        Scenario(
            "bentoml-no-batching",
            "bentoml",
            (TARGET_CONNECTIONS,),
            serving={"batching": {"enabled": False}},
            note="`lifecycle serve` with serving.batching.enabled: false",
        ),
        without_gc_fixes_scenario(),
        Scenario("mlflow", "mlflow", CONNECTIONS, note="`mlflow models serve`, user's environment"),
        Scenario(
            "mlflow-omp1",
            "mlflow",
            (TARGET_CONNECTIONS,),
            env=dict.fromkeys(THREAD_VARIABLES, "1"),
            note="`mlflow models serve` with OMP_NUM_THREADS=1 and friends",
        ),
    ]


def without_gc_fixes_scenario(connections: tuple[int, ...] = CONNECTIONS) -> Scenario:
    return Scenario(
        "bentoml-without-gc-fixes",
        "bentoml",
        connections,
        note="`lifecycle serve` with the service's two GC fixes undone (WITHOUT_GC_FIXES): "
        "an ablation, not what ships",
        without=GC_FIXES,
    )


# The ablation: serving/service.py as shipped has two fixes for garbage-collector pauses,
# both in Predictor.__init__; this undoes them without touching the code. It is
# loaded into the server's processes as a `sitecustomize` module (PYTHONPATH), before the
# service module is imported, for the `bentoml-without-gc-fixes` row (and `without=`
# variants) only:
#
# 1. `timer`: serving.bentoml_patches.cancel_request_timeout_timers becomes a no-op, so
#    BentoML 1.4.40's TimeoutMiddleware keeps its per-request `loop.call_later(timeout)`
#    handle for the 60 s traffic timeout. The handle holds the request's objects (through
#    its future and the request's contextvars), so the heap grows with the request rate and
#    each full collection takes longer (measured: 90 ms at start, over 300 ms after a
#    minute at 370 requests/s).
# 2. `freeze`: gc.freeze becomes a no-op, so full collections rescan the start-up heap
#    (~250,000 objects: the libraries, the model; ~80 ms per collection here).
#
# Each no-op says on stderr (the server log) that it ran and in which process;
# start_server() refuses to measure until every expected line is there.
WITHOUT_GC_FIXES = """\
import gc, os, sys

_parts = os.environ.get("BENCH_WITHOUT", "timer,freeze").split(",")


def _say(text):
    sys.stderr.write(f"ablation (pid {os.getpid()}): {text}\\n")
    sys.stderr.flush()


if "timer" in _parts:
    import serving.bentoml_patches as _patches

    def _leave_timers():
        _say("cancel_request_timeout_timers skipped: BentoML's timers are left running")
        return False

    _patches.cancel_request_timeout_timers = _leave_timers

if "freeze" in _parts:

    def _no_freeze():
        _say(f"gc.freeze() skipped ({len(gc.get_objects())} objects left unfrozen)")

    gc.freeze = _no_freeze
"""
GC_FIXES = "timer,freeze"
GC_FIXES_WHY = (
    "Why the fixes: BentoML 1.4.40's TimeoutMiddleware schedules a timer for the 60 s "
    "traffic timeout on every request and never cancels it; the timer's handle keeps the "
    "request's objects alive for that minute, so the heap grows with the request rate (the "
    "server RSS column) and every full garbage collection stops the event loop for longer. "
    "serving/bentoml_patches.py cancels the timer when the request is over, and gc.freeze() "
    "keeps the ~250,000-object start-up heap (libraries, model) out of full collections. "
    "Before the fixes were applied (benchmarks/results/serving.md as of commit f8394db) the "
    "service measured p99 373 ms at 8 connections (1,176 req/s), 846 ms after 90 s of load, "
    "against 17 ms with the two fixes simulated."
)
ABLATION_MARKERS = {
    "timer": "cancel_request_timeout_timers skipped",
    "freeze": "gc.freeze() skipped",
}


# --- children: build the fixtures, measure in-process ---------------------------------


def _child_build(workdir: Path) -> None:
    """Train, save, export to a store, log to MLflow; write the request bodies."""
    import pipelines  # noqa: F401  (telemetry off before the libraries load)

    start = time.perf_counter()
    import mlflow
    import numpy as np

    from core.config import SyntheticSourceConfig, load_params
    from core.model_files import save_model
    from features.contract import load_contract
    from features.synthetic import generate_process_data
    from models.evaluation import choose_threshold, predict_probability
    from models.training import SKOPS_TRUSTED_TYPES, fit_model, predict_out_of_fold, split_data
    from pipelines.train import _log_model  # exactly how the train stage logs the model
    from serving.model_store import export_model, load_served_model, write_champion_pointer
    from serving.schema import field_name

    params = load_params(ROOT / "params.yaml")
    contract = load_contract(ROOT / params.data.contract)
    config, seed = params.train, params.data.seed
    source = SyntheticSourceConfig(rows=TRAIN_ROWS, seed=params.ingest.synthetic.seed)
    frame = generate_process_data(source)
    train, holdout = split_data(frame, contract, config.holdout_size, seed)
    oof = predict_out_of_fold(train, contract, config, seed)
    point = choose_threshold(train[contract.label].to_numpy(), oof, params.evaluate.operating_point)
    model = fit_model(train, contract, config, seed)
    fitted_s = time.perf_counter() - start

    tracking_uri = f"sqlite:///{workdir / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.create_experiment(
        "bench-serving", artifact_location=(workdir / "mlartifacts").as_uri()
    )
    with mlflow.start_run(experiment_id=experiment) as run:
        info = _log_model(mlflow, model, train[contract.features], config.model)
    meta = {
        "family": config.model,
        "features": contract.features,
        "label": contract.label,
        "contract": contract.name,
        "mlflow_run_id": run.info.run_id,
        "mlflow_model_uri": info.model_uri,
    }
    content = save_model(model, workdir / "model", meta, SKOPS_TRUSTED_TYPES[config.model])
    store = workdir / "store"
    tag = export_model(
        workdir / "model", MODEL_NAME, 1, run.info.run_id, content, point.threshold, store
    )
    write_champion_pointer(store, load_served_model(tag, store))

    # one real row, features only, numbers as JSON floats: the same row for both servers
    row = holdout[contract.features].head(1).reset_index(drop=True)
    values = [
        float(row.at[0, name]) if name in contract.numeric_features else str(row.at[0, name])
        for name in contract.features
    ]
    record = {
        field_name(name): value for name, value in zip(contract.features, values, strict=True)
    }
    split = {"dataframe_split": {"columns": contract.features, "data": [values]}}
    (workdir / "body-bentoml.json").write_text(json.dumps(record))
    (workdir / "body-mlflow.json").write_text(json.dumps(split))
    probability = float(predict_probability(model, row, contract)[0])
    print(
        json.dumps(
            {
                "tag": tag,
                "content_sha256": content,
                "threshold": point.threshold,
                "train_rows": len(train),
                "model": config.model,
                "hyperparameters": config.model_dump(mode="json")[config.model],
                "mlflow_tracking_uri": tracking_uri,
                "mlflow_model_uri": info.model_uri,
                "expected_probability": probability,
                "expected_label": int(np.asarray(model.predict(row[contract.features]))[0]),
                "build_s": round(time.perf_counter() - start, 1),
                "fit_s": round(fitted_s, 1),
            }
        )
    )


def _child_inprocess(workdir: Path, numeric_threads: int) -> None:
    """The in-process limit, with the service's thread settings and its loading path."""
    for name in THREAD_VARIABLES:  # before numpy and scikit-learn load, as lifecycle serve
        os.environ[name] = str(numeric_threads)
    import pandas as pd
    from threadpoolctl import threadpool_info

    import pipelines  # noqa: F401
    from core.config import load_params
    from features.contract import load_contract
    from models.evaluation import predict_probability
    from serving.model_store import load_served_model, read_champion_pointer
    from serving.schema import build_record_model, records_to_frame

    params = load_params(ROOT / "params.yaml")
    contract = load_contract(ROOT / params.data.contract)
    store = workdir / "store"
    served = load_served_model(read_champion_pointer(store)["tag"], store)
    pipeline = served.pipeline
    body = (workdir / "body-bentoml.json").read_bytes()
    record_model = build_record_model(contract)
    one_row = records_to_frame([record_model.model_validate_json(body)], contract)

    def per_call(call: Any, budget_s: float = 3.0, least: int = 200) -> dict[str, float]:
        for _ in range(20):  # warm-up
            call()
        times: list[float] = []
        began = time.perf_counter()
        while len(times) < least or time.perf_counter() - began < budget_s:
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        times.sort()
        return {
            "calls": len(times),
            "median_ms": round(statistics.median(times) * 1000, 3),
            "p99_ms": round(times[int(0.99 * (len(times) - 1))] * 1000, 3),
            "calls_per_s": round(len(times) / sum(times), 1),
        }

    one_row_predict = per_call(lambda: predict_probability(pipeline, one_row, contract))

    def service_path() -> None:  # what the service does per row, minus HTTP and the log
        record = record_model.model_validate_json(body)
        predict_probability(pipeline, records_to_frame([record], contract), contract)

    one_row_service_path = per_call(service_path)

    big = pd.concat([one_row] * 10_000, ignore_index=True)
    batched = []
    for rows in (8, 64, 1000, 10_000):
        frame = big.head(rows)
        stats = per_call(lambda f=frame: predict_probability(pipeline, f, contract), 2.0, 5)
        batched.append(
            {
                "rows": rows,
                "median_ms": stats["median_ms"],
                "rows_per_s": round(rows / (stats["median_ms"] / 1000), 0),
            }
        )
    print(
        json.dumps(
            {
                "numeric_threads": numeric_threads,
                "threadpools": [
                    {"api": p.get("internal_api"), "threads": p.get("num_threads")}
                    for p in threadpool_info()
                ],
                "one_row_predict_proba": one_row_predict,
                "one_row_service_path": one_row_service_path,
                "batched_predict_proba": batched,
            }
        )
    )


# --- servers --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _processes() -> dict[int, tuple[int, str]]:
    """Every live process: pid -> (parent pid, start time), zombies left out."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat[0] != "Z":  # fields 3, 4 and 22 of /proc/<pid>/stat: state, ppid, start time
            found[int(entry.name)] = (int(stat[1]), stat[19])
    return found


def process_tree(root: int) -> dict[int, str]:
    """The server and everything it started, by parent pid: pid -> start time.

    Not by session or process group: BentoML's arbiter starts its workers in sessions of
    their own, so `killpg` on the server reaches the arbiter only.
    """
    table = _processes()
    tree, frontier = {}, [root]
    while frontier:
        pid = frontier.pop()
        if pid in table and pid not in tree:
            tree[pid] = table[pid][1]
            frontier += [child for child, (parent, _) in table.items() if parent == pid]
    return tree


def still_alive(tree: dict[int, str]) -> list[int]:
    """The pids of `tree` that still run (the same processes: start times must match)."""
    table = _processes()
    return [pid for pid, started in tree.items() if pid in table and table[pid][1] == started]


def tree_rss_mib(root: int) -> float:
    """Resident memory of the server's processes, summed (MiB)."""
    total_kib = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
    return round(total_kib / 1024, 1)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(root: int) -> dict[str, float]:
    """CPU time so far: the machine's busy time, the server's processes, this process, and
    its reaped children (wrk)."""
    ticks = list(map(int, Path("/proc/stat").read_text().splitlines()[0].split()[1:9]))
    busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
    server = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError, IndexError):
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            server += int(stat[11]) + int(stat[12])  # fields 14 and 15: utime, stime
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "machine": busy / CLOCK_TICKS,
        "server": server / CLOCK_TICKS,
        "self": me.ru_utime + me.ru_stime,
        "wrk": children.ru_utime + children.ru_stime,
    }


def cpu_share(before: dict[str, float], after: dict[str, float], seconds: float) -> dict:
    """Where the machine's CPU went during one wrk run, as shares of all its cores.

    `other` is what no process of this benchmark used: another program on the machine (the
    run was disturbed when it is more than a few per cent).
    """
    used = {key: after[key] - before[key] for key in before}
    capacity = seconds * (os.cpu_count() or 1)
    other = used["machine"] - used["server"] - used["wrk"] - used["self"]
    return {
        "server": round(used["server"] / capacity, 3),
        "wrk": round(used["wrk"] / capacity, 3),
        "other": round(max(other, 0.0) / capacity, 3),
    }


def base_environment() -> dict[str, str]:
    """The caller's environment without anything that would steer a server."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BENTOML_", "LIFECYCLE_", "MLFLOW_")) and key not in THREAD_VARIABLES
    }
    env.update(TELEMETRY_OFF)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # mlflow runs `uvicorn` by name
    return env


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def write_project(workdir: Path, scenario: Scenario) -> tuple[Path, dict[str, Any]]:
    """A project folder for `lifecycle serve`: the repository's params, paths put in place."""
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["data"]["contract"] = str((ROOT / params["data"]["contract"]).resolve())
    serving = merged(params["serving"], scenario.serving)
    serving["store"] = str(workdir / "store")
    serving["prediction_log"]["directory"] = str(workdir / f"predictions-{scenario.slug}")
    params["serving"] = serving
    project = workdir / f"project-{scenario.slug}"
    project.mkdir(exist_ok=True)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project, serving


@dataclass
class Server:
    scenario: Scenario
    url: str
    port: int
    body: Path
    process: subprocess.Popen
    log: Path
    command: list[str]
    env: dict[str, str]  # what the scenario sets on top of the caller's environment
    tuning: dict[str, Any]

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no output)"


def start_server(scenario: Scenario, workdir: Path, build: dict[str, Any]) -> Server:
    port = free_port()
    env = base_environment()
    env.update(scenario.env)
    if scenario.without:
        site = workdir / "without-gc-fixes"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(WITHOUT_GC_FIXES)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
        env["BENCH_WITHOUT"] = scenario.without
    if scenario.server == "bentoml":
        project, serving = write_project(workdir, scenario)
        command = [str(BIN / "lifecycle"), "serve", "--port", str(port)]
        cwd, path, ready = project, "/predict", "/readyz"
        keys = ("workers", "threads", "numeric_threads", "batching", "prediction_log")
        tuning = {key: copy.deepcopy(serving[key]) for key in keys}
        tuning["prediction_log"].pop("directory")  # a temporary folder
        tuning["traffic_timeout_s"] = "60 (serving/service.py REQUEST_TIMEOUT_S)"
        tuning["gc_fixes_undone"] = scenario.without or "none (as shipped)"
        if BENTOML_OVERRIDES in scenario.env:
            tuning["traffic_timeout_s"] = json.loads(scenario.env[BENTOML_OVERRIDES])["services"][
                SERVICE_NAME
            ]["traffic"]["timeout"]
        # lifecycle serve sets these itself, from serving.numeric_threads
        shown = {
            **dict.fromkeys(THREAD_VARIABLES, str(serving["numeric_threads"])),
            **scenario.env,
        }
        if scenario.without:
            shown["PYTHONPATH"] = "<tmp>/without-gc-fixes"  # sitecustomize.py: WITHOUT_GC_FIXES
            shown["BENCH_WITHOUT"] = scenario.without
    else:
        command = [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            build["mlflow_model_uri"],
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            "1",
        ]
        env["MLFLOW_TRACKING_URI"] = build["mlflow_tracking_uri"]
        cwd, path, ready = workdir, "/invocations", "/ping"
        tuning = {"workers": 1, "env_manager": "local"}
        shown = {**scenario.env, "MLFLOW_TRACKING_URI": "sqlite:///<tmp>/mlflow.db"}
    log = workdir / f"server-{scenario.slug}.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group; stop() finds its workers by parent pid
        )
    server = Server(
        scenario=scenario,
        url=f"http://127.0.0.1:{port}{path}",
        port=port,
        body=workdir / f"body-{scenario.server}.json",
        process=process,
        log=log,
        command=["<port>" if c == str(port) else c for c in command],
        env=shown,
        tuning=tuning,
    )
    began = time.monotonic()
    while True:
        if _answers_200(f"http://127.0.0.1:{port}{ready}"):
            break
        if process.poll() is not None or time.monotonic() - began > START_TIMEOUT_S:
            stop_server(server)
            raise RuntimeError(f"{scenario.name} did not come up; its output:\n{server.tail()}")
        time.sleep(0.2)
    server.tuning["start_s"] = round(time.monotonic() - began, 1)
    if scenario.without:
        server.tuning["without"] = confirm_ablation(server)
    return server


def confirm_ablation(server: Server) -> list[str]:
    """The server log's lines saying each undone fix was undone, in the service's process.

    A ready service has run Predictor.__init__, so the lines are there or the
    ablation did not take effect (and the row would measure the service as shipped).
    """
    text = server.log.read_text(errors="replace")
    wanted = [ABLATION_MARKERS[part] for part in server.scenario.without.split(",")]
    missing = [marker for marker in wanted if marker not in text]
    if missing:
        stop_server(server)
        raise RuntimeError(
            f"{server.scenario.name}: the ablation did not take effect (no {missing} in the "
            f"server log):\n{server.tail()}"
        )
    found = [line for line in text.splitlines() if line.startswith("ablation (pid ")]
    return [re.sub(r"\(pid \d+\)", "(service process)", line) for line in found]


def _answers_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def stop_server(server: Server) -> dict[str, Any]:
    """SIGTERM the server (a graceful stop of it and its workers), SIGKILL what is left.

    Then check that none of its processes runs and nothing listens on its port.
    """
    pid = server.process.pid
    tree = process_tree(pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.process.wait(timeout=STOP_TIMEOUT_S)
    graceful = server.process.returncode
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while still_alive(tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    leftovers = still_alive(tree)
    for leftover in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(leftover, signal.SIGKILL)
    if server.process.returncode is None:
        server.process.wait(timeout=STOP_TIMEOUT_S)
    time.sleep(0.5)
    port_open = listening(server.port)
    if port_open or still_alive(tree):
        raise RuntimeError(f"{server.scenario.name}: something is left after stopping it")
    return {
        "exit_code": graceful,
        "processes": len(tree),
        "killed_leftovers": len(leftovers),
        "port_closed": not port_open,
    }


def curl_check(server: Server, build: dict[str, Any]) -> dict[str, Any]:
    """POST the body once with curl: HTTP 200 and the in-process model's answer."""
    done = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            f"@{server.body}",
            "-w",
            "\n%{http_code}",
            server.url,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    text, _, status = done.stdout.rpartition("\n")
    if status != "200":
        raise RuntimeError(f"{server.scenario.name}: curl got {status!r}: {text} {done.stderr}")
    answer = json.loads(text)
    if server.scenario.server == "bentoml":
        got, want = answer["failure_probability"], build["expected_probability"]
        agrees = abs(got - want) < 1e-9
    else:
        got, want = answer["predictions"][0], build["expected_label"]
        agrees = int(got) == want
    if not agrees:
        raise RuntimeError(f"{server.scenario.name}: answered {got}, in-process model {want}")
    return {"status": 200, "answer": answer if server.scenario.server == "mlflow" else got}


# --- wrk ------------------------------------------------------------------------------


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/sec, the 50 %/99 % latencies, socket errors and non-2xx from wrk's report."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total = re.search(r"^\s*(\d+) requests in ([\d.]+\w+)", output, re.M)
    if rps is None or total is None:
        raise ValueError(f"no wrk summary in:\n{output}")
    percentiles = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", output, re.M))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = dict(
        zip(
            ("connect", "read", "write", "timeout"),
            map(int, socket_errors.groups()) if socket_errors else (0, 0, 0, 0),
            strict=True,
        )
    )
    exact = re.search(r"^wrk-json (\{.*\})$", output, re.M)
    return {
        "requests_per_s": float(rps[1]),
        "requests": int(total[1]),
        "p50_ms": _ms(percentiles["50"]),
        "p99_ms": _ms(percentiles["99"]),
        "socket_errors": sockets,
        "non_2xx": int(non_2xx[1]) if non_2xx else 0,
        "errors": sum(sockets.values()) + (int(non_2xx[1]) if non_2xx else 0),
        "exact": json.loads(exact[1]) if exact else None,
    }


def run_wrk(server: Server, connections: int, duration_s: int) -> tuple[list[str], dict]:
    command = [
        "wrk",
        f"-t{min(2, connections)}",
        f"-c{connections}",
        f"-d{duration_s}s",
        f"--timeout={WRK_TIMEOUT}",
        "--latency",
        "-s",
        str(WRK_SCRIPT),
        server.url,
        "--",
        str(server.body),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + 60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr}\n{done.stdout}")
    return command, parse_wrk(done.stdout)


def measure(
    scenario: Scenario, workdir: Path, build: dict[str, Any], duration_s: int, repeats: int
) -> dict:
    """Each connection count `repeats` times (a fresh wrk, so fresh connections, each time).

    The row a count gets is its median run by requests/s (an odd `repeats` makes it a real
    run, with its own latencies); every run's requests/s and CPU share are kept beside it.
    With several workers the kernel places each new connection on one of them, so a run
    whose connections all land on one worker is a real outcome, and the repeats show how
    often it happens.
    """
    print(f"{scenario.name}: starting", flush=True)
    server = start_server(scenario, workdir, build)
    runs = []
    try:
        check = curl_check(server, build)
        _, warmup = run_wrk(server, TARGET_CONNECTIONS, WARMUP_S)
        for connections in scenario.connections:
            tries = []
            for _ in range(repeats):
                command, result = one_run(server, connections, scenario.duration_s or duration_s)
                tries.append(result)
            ranked = sorted(tries, key=lambda result: result["requests_per_s"])
            median = dict(ranked[(len(ranked) - 1) // 2])
            median["repeats"] = [
                {key: result[key] for key in ("requests_per_s", "p99_ms", "errors", "cpu_share")}
                for result in tries
            ]
            median["errors_all_repeats"] = sum(result["errors"] for result in tries)
            runs.append(median)
    finally:
        stopped = stop_server(server)
    return {
        "scenario": scenario.name,
        "server": scenario.server,
        "note": scenario.note,
        "command": server.command,
        "environment": server.env,
        "tuning": server.tuning,
        "curl_check": check,
        "warmup": {"seconds": WARMUP_S, "requests": warmup["requests"], "errors": warmup["errors"]},
        "wrk_command": [*command[:-3], "<url>", "--", "<body.json>"],
        "runs": runs,
        "stopped": stopped,
    }


def one_run(server: Server, connections: int, seconds: int) -> tuple[list[str], dict]:
    """One wrk run on `server`, with the CPU shares and the server's memory after it."""
    load_before = os.getloadavg()[0]
    before = cpu_seconds(server.process.pid)
    began = time.monotonic()
    command, result = run_wrk(server, connections, seconds)
    cpu = cpu_share(before, cpu_seconds(server.process.pid), time.monotonic() - began)
    result.update(
        connections=connections,
        duration_s=seconds,
        loadavg_1m_before=round(load_before, 2),
        cpu_share=cpu,
        server_rss_mib_after=tree_rss_mib(server.process.pid),
    )
    print(
        f"  c={connections:>2}: {result['requests_per_s']:8.1f} req/s, "
        f"p50 {result['p50_ms']:7.2f} ms, p99 {result['p99_ms']:7.2f} ms, "
        f"errors {result['errors']}, CPU server {cpu['server']:.0%} "
        f"wrk {cpu['wrk']:.0%} other {cpu['other']:.0%}",
        flush=True,
    )
    return command, result


# --- the report -----------------------------------------------------------------------


def parse_variant(text: str) -> Scenario:
    """`threads=2,batching.max_batch_size=16` -> a bentoml scenario at 8 connections.

    Keys are dotted keys of the `serving` block, plus four that are not params:
    `traffic_timeout=S` (BentoML's request timeout, through `BENTOML_CONFIG_OVERRIDES`),
    `without=timer|freeze|both` (undo one or both of the service's GC fixes:
    WITHOUT_GC_FIXES),
    `env.NAME=VALUE` (an environment variable for the server), and `duration=S` (seconds of
    load for this variant instead of --duration: a long run shows the steady state).
    """
    import yaml

    overrides: dict[str, Any] = {}
    env: dict[str, str] = {}
    without = ""
    seconds = None
    for part in text.split(","):
        key, _, value = (piece.strip() for piece in part.partition("="))
        if key == "traffic_timeout":
            traffic = {"traffic": {"timeout": float(value)}}
            env[BENTOML_OVERRIDES] = json.dumps({"services": {SERVICE_NAME: traffic}})
            continue
        if key == "duration":
            seconds = int(value)
            continue
        if key == "without":
            if value not in ("timer", "freeze", "both"):
                raise ValueError(f"without is timer, freeze or both, not {value!r}")
            without = GC_FIXES if value == "both" else value
            continue
        if key.startswith("env."):
            env[key.removeprefix("env.")] = value
            continue
        node = overrides
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = yaml.safe_load(value)
    name = "bentoml[" + text.replace(" ", "") + "]"
    return Scenario(name, "bentoml", (TARGET_CONNECTIONS,), overrides, env, text, without, seconds)


def run_at(results: list[dict], scenario: str, connections: int) -> dict | None:
    for result in results:
        if result["scenario"] == scenario:
            for run in result["runs"]:
                if run["connections"] == connections:
                    return run
    return None


def judge(results: list[dict], scenario: str) -> dict[str, Any] | None:
    """One service row at 8 connections against `mlflow models serve`, on the targets."""
    ours = run_at(results, scenario, TARGET_CONNECTIONS)
    theirs = run_at(results, "mlflow", TARGET_CONNECTIONS)
    if ours is None or theirs is None:
        return None
    speedup = ours["requests_per_s"] / theirs["requests_per_s"]
    out = {
        "scenario": scenario,
        "connections": TARGET_CONNECTIONS,
        "requests_per_s": ours["requests_per_s"],
        "mlflow_requests_per_s": theirs["requests_per_s"],
        "speedup_vs_mlflow": round(speedup, 2),
        "speedup_at_least_5x": speedup >= TARGET_SPEEDUP,
        "p99_ms": ours["p99_ms"],
        "p99_under_100_ms": ours["p99_ms"] < TARGET_P99_MS,
        "errors": ours.get("errors_all_repeats", ours["errors"]),
        "zero_errors": ours.get("errors_all_repeats", ours["errors"]) == 0,
        "speedups_each_repeat": [
            round(mine["requests_per_s"] / theirs["requests_per_s"], 2)
            for mine in ours.get("repeats", [ours])
        ],
    }
    tuned = run_at(results, "mlflow-omp1", TARGET_CONNECTIONS)
    if tuned is not None:
        out["speedup_vs_mlflow_omp1"] = round(ours["requests_per_s"] / tuned["requests_per_s"], 2)
    out["met"] = out["speedup_at_least_5x"] and out["p99_under_100_ms"] and out["zero_errors"]
    return out


def verdict(results: list[dict]) -> dict[str, Any]:
    """The acceptance verdict is the service as shipped; the ablation is shown beside it."""
    service = judge(results, "bentoml")
    if service is None:
        return {"complete": False}
    out = {"complete": True, **service}
    ablation = judge(results, "bentoml-without-gc-fixes")
    if ablation is not None:
        out["without_gc_fixes"] = ablation  # for comparison only: not what ships
    return out


def _met(flag: bool) -> str:
    return "met" if flag else "NOT met"


def _verdict_line(v: dict[str, Any], what: str) -> str:
    line = (
        f"{what} at {v['connections']} connections: {v['requests_per_s']:.1f} req/s, "
        f"{v['speedup_vs_mlflow']:.2f}x `mlflow models serve` ({v['mlflow_requests_per_s']:.1f}"
        f" req/s; target {TARGET_SPEEDUP:.0f}x: {_met(v['speedup_at_least_5x'])}), p99 "
        f"{v['p99_ms']:.1f} ms (target < {TARGET_P99_MS:.0f} ms: {_met(v['p99_under_100_ms'])}), "
        f"{v['errors']} errors in all runs ({_met(v['zero_errors'])}): **{_met(v['met'])}**."
    )
    if len(v.get("speedups_each_repeat", [])) > 1:
        line += (
            " Each run against mlflow's median: "
            + ", ".join(f"{x:.2f}x" for x in v["speedups_each_repeat"])
            + "."
        )
    if "speedup_vs_mlflow_omp1" in v:
        line += (
            f" Against `mlflow models serve` with `OMP_NUM_THREADS=1`: "
            f"{v['speedup_vs_mlflow_omp1']:.2f}x."
        )
    return line


def markdown(report: dict[str, Any]) -> str:
    results, inproc, v = report["servers"], report["in_process"], report["verdict"]
    lines = [
        "# Serving benchmark",
        "",
        f"Measured {report['measured_at']} on {report['machine']['cpus']} CPUs (wrk shares "
        f"them); model `{report['model']['model']}` ({report['model']['train_rows']:,} training "
        f"rows), one single-row JSON POST per request on loopback, "
        f"`wrk -t{{min(2,c)}} -c{{c}} -d{report['duration_s']}s --latency --timeout "
        f"{WRK_TIMEOUT}` after a {WARMUP_S} s warm-up at 8 connections; one server at a time, "
        "the connection counts in order on the same server. Each count is run "
        f"{report.get('repeats', 1)} times, a fresh wrk (so fresh connections) each time; the "
        "row is the median run by requests/s, with every run's requests/s and server CPU "
        "share in the last column. Latencies are wrk's (corrected for "
        "coordinated omission: a stall counts for the requests it held back); errors are "
        "socket errors plus non-2xx answers. CPU columns: shares of all cores during the "
        "run, used by the server's processes, by wrk, and by anything else on the machine "
        "(`other`: above a few per cent, another program disturbed the run).",
        "",
        "| server | connections | seconds | requests/s | p50 ms | p99 ms | max ms | errors "
        "| server RSS MiB after | CPU server | CPU wrk | CPU other "
        "| each run: req/s (CPU server) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| --- |",
    ]
    for result in results:
        for run in result["runs"]:
            errors = run["errors"]
            detail = ""
            if errors:
                detail = f" ({run['non_2xx']} non-2xx, {sum(run['socket_errors'].values())} socket)"
            peak = run["exact"]["latency_us"]["max"] / 1000 if run.get("exact") else float("nan")
            cpu = run.get("cpu_share")
            shares = (
                " | ".join(f"{cpu[key]:.0%}" for key in ("server", "wrk", "other"))
                if cpu
                else "- | - | -"
            )
            each = ", ".join(
                f"{r['requests_per_s']:.0f} ({r['cpu_share']['server']:.0%})"
                for r in run.get("repeats", [run])
            )
            if run.get("errors_all_repeats", errors) != errors:
                each += f"; errors in all runs: {run['errors_all_repeats']}"
            lines.append(
                f"| {result['scenario']} | {run['connections']} | {run['duration_s']} | "
                f"{run['requests_per_s']:.1f} | "
                f"{run['p50_ms']:.1f} | {run['p99_ms']:.1f} | {peak:.0f} | {errors}{detail} | "
                f"{run['server_rss_mib_after']:.0f} | {shares} | {each} |"
            )
    lines += ["", "Rows:", ""]
    lines += [f"- {result['scenario']}: {result['note']}" for result in results]
    one, path = inproc["one_row_predict_proba"], inproc["one_row_service_path"]
    lines += [
        "",
        f"In process (`OMP_NUM_THREADS={inproc['numeric_threads']}`, one core): "
        f"`predict_proba` on a one-row frame {one['median_ms']:.2f} ms median "
        f"({one['calls_per_s']:.0f} calls/s); the service's scoring path for one JSON row "
        f"(validate, frame, predict) {path['median_ms']:.2f} ms ({path['calls_per_s']:.0f}/s). "
        "Batched `predict_proba`: "
        + ", ".join(
            f"{b['rows']:,} rows {b['median_ms']:.1f} ms ({b['rows_per_s']:,.0f} rows/s)"
            for b in inproc["batched_predict_proba"]
        )
        + ". A single row is almost all per-call overhead: that is what the batcher removes.",
        "",
        "## Verdict",
        "",
    ]
    if v.get("complete"):
        lines.append(
            _verdict_line(
                v,
                "The service as shipped (params.yaml; serving/service.py with both GC fixes: "
                "serving/bentoml_patches.py and gc.freeze() after the model loads)",
            )
        )
        if "without_gc_fixes" in v:
            lines += [
                "",
                _verdict_line(
                    v["without_gc_fixes"],
                    "For comparison, not judged: the same service with both GC fixes undone "
                    "(bentoml-without-gc-fixes)",
                ),
                "",
                GC_FIXES_WHY,
            ]
    else:
        lines.append("No verdict: this run has no bentoml and mlflow rows at 8 connections.")
    for note in report.get("notes", []):
        lines += ["", note]
    lines += ["", "## Reproduce", "", "```", report["command"], "```", "", "Servers:", ""]
    for result in results:
        env = " ".join(f"{k}={v}" for k, v in result["environment"].items())
        shown = f"{env} " if env else ""
        lines.append(f"- {result['scenario']}: `{shown}{' '.join(result['command'])}`")
        if result["server"] == "bentoml":
            lines.append(f"  - tuning: `{json.dumps(result['tuning'])}`")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="wrk runs per connection count; the row is the median run (odd counts)",
    )
    parser.add_argument(
        "--only", nargs="+", metavar="SCENARIO", help="run only these scenarios (by name)"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="also run lifecycle serve with these serving overrides at 8 connections, "
        "e.g. threads=2,batching.max_latency_ms=5",
    )
    parser.add_argument("--connections", type=int, nargs="+", help="override the connection counts")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--name", default="serving", help="results file name (benchmarks/results/NAME.json)"
    )
    args = parser.parse_args()
    if args.child:
        kind, workdir = args.child[0], Path(args.child[1])
        if kind == "build":
            _child_build(workdir)
        else:
            _child_inprocess(workdir, int(args.child[2]))
        return
    if shutil.which("wrk") is None or shutil.which("curl") is None:
        parser.error("needs wrk and curl on PATH: `make wrk` installs wrk (Debian's package)")

    scenarios = default_scenarios()
    scenarios += [parse_variant(text) for text in args.variant]
    if args.only:
        scenarios = [s for s in scenarios if s.name in args.only or s.name.startswith("bentoml[")]
    if args.connections:
        scenarios = [
            Scenario(
                s.name,
                s.server,
                tuple(args.connections),
                s.serving,
                s.env,
                s.note,
                s.without,
                s.duration_s,
            )
            for s in scenarios
        ]
    import yaml

    numeric_threads = int(
        yaml.safe_load((ROOT / "params.yaml").read_text())["serving"].get("numeric_threads", 1)
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    load_start = os.getloadavg()
    try:
        build = run_child(Path(__file__), "build", str(workdir), timeout=900)
        print(
            f"built {build['tag']} in {build['build_s']:.0f} s "
            f"(threshold {build['threshold']:.4f}); MLflow model {build['mlflow_model_uri']}",
            flush=True,
        )
        inproc = run_child(Path(__file__), "inprocess", str(workdir), str(numeric_threads))
        one = inproc["one_row_predict_proba"]
        print(
            f"in process: one-row predict_proba {one['median_ms']:.2f} ms "
            f"({one['calls_per_s']:.0f}/s)",
            flush=True,
        )
        results = [measure(s, workdir, build, args.duration, args.repeats) for s in scenarios]
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    command = "python benchmarks/bench_serving.py " + " ".join(sys.argv[1:])
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    report: dict[str, Any] = {
        "benchmark": "single-row POST under wrk: lifecycle serve vs mlflow models serve",
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command.strip(),
        "machine": {
            **machine(),
            "cpu_model": cpu_model,
            "wrk": wrk_version.stdout.splitlines()[0] if wrk_version.stdout else "unknown",
            "loadavg_at_start": [round(x, 2) for x in load_start],
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
            "caller_thread_variables": {k: os.environ.get(k) for k in THREAD_VARIABLES},
        },
        "duration_s": args.duration,
        "repeats": args.repeats,
        "targets": {
            "connections": TARGET_CONNECTIONS,
            "speedup_vs_mlflow": TARGET_SPEEDUP,
            "p99_ms": TARGET_P99_MS,
            "errors": 0,
        },
        "model": {
            key: build[key]
            for key in ("tag", "model", "hyperparameters", "train_rows", "threshold")
        },
        "in_process": inproc,
        "servers": results,
    }
    report["verdict"] = verdict(results)
    report["notes"] = notes(results)
    write_results(args.name, report, markdown(report))
    print(markdown(report))


def notes(results: list[dict]) -> list[str]:
    """What the side-by-side rows show, in numbers."""
    out = []
    on = run_at(results, "bentoml", TARGET_CONNECTIONS)
    off = run_at(results, "bentoml-no-batching", TARGET_CONNECTIONS)
    if on and off:
        out.append(
            f"Batching at {TARGET_CONNECTIONS} connections: {on['requests_per_s']:.1f} req/s "
            f"(p99 {on['p99_ms']:.1f} ms) with it, {off['requests_per_s']:.1f} req/s "
            f"(p99 {off['p99_ms']:.1f} ms) without: "
            f"{on['requests_per_s'] / off['requests_per_s']:.2f}x the throughput."
        )
    ablated = [
        (run, run_at(results, "bentoml", run["connections"]))
        for result in results
        if result["scenario"] == "bentoml-without-gc-fixes"
        for run in result["runs"]
    ]
    pairs = [
        f"{run['connections']} connections p99 {run['p99_ms']:.1f} -> {now['p99_ms']:.1f} ms "
        f"(max {run['exact']['latency_us']['max'] / 1000:.0f} -> "
        f"{now['exact']['latency_us']['max'] / 1000:.0f} ms), "
        f"{run['requests_per_s']:.0f} -> {now['requests_per_s']:.0f} req/s, "
        f"server RSS {run['server_rss_mib_after']:.0f} -> {now['server_rss_mib_after']:.0f} MiB"
        for run, now in ablated
        if now is not None and now.get("exact") and run.get("exact")
    ]
    if pairs:
        out.append(
            "The two GC fixes, without them (bentoml-without-gc-fixes: WITHOUT_GC_FIXES in this "
            "script undoes them in the server process) -> as shipped (bentoml): "
            + "; ".join(pairs)
            + "."
        )
    mlflow = run_at(results, "mlflow", TARGET_CONNECTIONS)
    variants = [
        (result["scenario"], run)
        for result in results
        if result["scenario"].startswith("bentoml[")
        for run in result["runs"]
        if run["connections"] == TARGET_CONNECTIONS
    ]
    if variants and mlflow:
        out.append(
            f"Variants at {TARGET_CONNECTIONS} connections (the shipped params with one change): "
            + "; ".join(
                f"{name}: {run['requests_per_s']:.0f} req/s, "
                f"{run['requests_per_s'] / mlflow['requests_per_s']:.2f}x mlflow, "
                f"p99 {run['p99_ms']:.1f} ms, server CPU per run "
                + ", ".join(f"{r['cpu_share']['server']:.0%}" for r in run.get("repeats", [run]))
                for name, run in variants
            )
            + ". A server CPU share near 50% with two workers means one worker held every "
            "connection: the other core sat idle."
        )
    return out


if __name__ == "__main__":
    main()
