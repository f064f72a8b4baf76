"""Benchmark: the prediction service under HTTP load (wrk), next to `mlflow models serve`.

    python benchmarks/bench_serving.py --with-proposed-fix  # benchmarks/results/serving.*
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
  store, the prediction log and the contract pointed into place (the default tuning), and
  again with `serving.batching.enabled: false` at 8 connections;
- with `--with-proposed-fix`, `lifecycle serve` again with the change these results propose
  for serving/service.py simulated (see PROPOSED_FIX);
- `mlflow models serve --env-manager local -w 1` of the same model, with the environment a
  user has (no thread variables), and again with `OMP_NUM_THREADS=1` at 8 connections;
- each `--variant` (serving params, BentoML's traffic timeout, environment) at 8 connections.

Each server is checked with curl (HTTP 200, and the answer matches the in-process model),
warmed up with a short wrk run, then loaded with `wrk -t{min(2,c)} -c{c} -d{duration}s
--latency -s benchmarks/wrk_post.lua` for c in 1, 8 and 32: one single-row JSON request per
call. It is stopped with SIGTERM to its process group; then none of its processes (found by
parent pid) may be left, nor anything listening on its port.

A child process also measures the in-process limit: `predict_proba` on one-row frames,
the service's whole scoring path for one JSON row, and batched throughput.

Target (2-core machine): at 8 connections, at least 5x the requests/s of
`mlflow models serve`, p99 under 100 ms, zero errors (socket errors and non-2xx).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import json
import os
import re
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
SERVICE_NAME = "FailurePredictor"  # the BentoML service class in serving/service.py
BENTOML_OVERRIDES = "BENTOML_CONFIG_OVERRIDES"
TRAIN_ROWS = 20_000
THREAD_VARIABLES = (  # the same list `lifecycle serve` sets (pipelines.cli)
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
    proposed_fix: str = ""  # simulate the proposed service change: "timer,freeze" (or a part)
    duration_s: int | None = None  # seconds per wrk run, when not --duration

    @property
    def slug(self) -> str:
        """The name as a file name."""
        return re.sub(r"[^A-Za-z0-9._=-]+", "_", self.name)


def default_scenarios() -> list[Scenario]:
    return [
        Scenario("bentoml", "bentoml", CONNECTIONS, note="`lifecycle serve`, params.yaml as is"),
        Scenario(
            "bentoml-no-batching",
            "bentoml",
            (TARGET_CONNECTIONS,),
            serving={"batching": {"enabled": False}},
            note="`lifecycle serve` with serving.batching.enabled: false",
        ),
        Scenario("mlflow", "mlflow", CONNECTIONS, note="`mlflow models serve`, user's environment"),
        Scenario(
            "mlflow-omp1",
            "mlflow",
            (TARGET_CONNECTIONS,),
            env=dict.fromkeys(THREAD_VARIABLES, "1"),
            note="`mlflow models serve` with OMP_NUM_THREADS=1 and friends",
        ),
    ]


def proposed_fix_scenario(connections: tuple[int, ...] = CONNECTIONS) -> Scenario:
    return Scenario(
        "bentoml-proposed-fix",
        "bentoml",
        connections,
        note="`lifecycle serve` plus the proposed serving/service.py change, simulated",
        proposed_fix=FIX_PARTS,
    )


# What the results propose for serving/service.py, simulated without touching it: loaded
# into the server's processes as a `sitecustomize` module (PYTHONPATH), for the
# `bentoml-proposed-fix` row only. Two parts, both about garbage-collector pauses:
#
# 1. BentoML 1.4.40's TimeoutMiddleware schedules `loop.call_later(traffic.timeout, ...)`
#    for every request and never cancels it. The timer handle holds a copy of the request's
#    contextvars (its OpenTelemetry span and the rest), so every request's objects stay
#    alive for traffic.timeout (60 s): the heap grows by ~25 objects per request, and each
#    full collection takes longer (measured: 90 ms at start, over 300 ms after a minute at
#    370 requests/s). The fix cancels the timer when the request is over.
# 2. `gc.freeze()` once the model is loaded: the start-up heap (~250,000 objects: the
#    libraries, the model) is never scanned again by full collections (~80 ms each here).
PROPOSED_FIX = """\
import asyncio, gc, os, sys, threading, time


def _cancel_timeout_timers():
    from bentoml._internal.server.http import traffic
    from starlette.responses import JSONResponse

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        handle = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message):
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        fut = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
        try:
            await waiter
        except asyncio.TimeoutError:
            if fut.cancel():
                error = f"Not able to process the request in {self.timeout} seconds"
                await JSONResponse({"error": error}, status_code=504)(scope, receive, send)
        else:
            await fut
        finally:
            handle.cancel()  # the one change: the timer and the request context it holds go

    traffic.TimeoutMiddleware.__call__ = __call__


def _freeze_after_load():  # stands in for gc.freeze() at the end of FailurePredictor.__init__
    while True:
        time.sleep(0.5)
        store = sys.modules.get("serving.model_store")
        kind = getattr(store, "ServedModel", None)
        if kind is not None and any(isinstance(o, kind) for o in gc.get_objects()):
            time.sleep(0.5)
            gc.collect()
            gc.freeze()
            sys.stderr.write(f"proposed fix: froze {gc.get_freeze_count()} objects\\n")
            return


_parts = os.environ.get("BENCH_PROPOSED_FIX", "timer,freeze").split(",")
if "timer" in _parts:
    _cancel_timeout_timers()
if "freeze" in _parts:
    threading.Thread(target=_freeze_after_load, daemon=True).start()
"""
FIX_PARTS = "timer,freeze"


# --- children: build the fixtures, measure in-process ---------------------------------


def _child_build(workdir: Path) -> None:
    """Train, save, export to a store, log to MLflow; write the request bodies."""
    import pipelines  # noqa: F401  (telemetry off before the libraries load)

    start = time.perf_counter()
    import mlflow
    import numpy as np

    from features.contract import load_contract
    from features.synthetic import generate_process_data
    from models.evaluation import choose_threshold, predict_failure_probability
    from models.training import SKOPS_TRUSTED_TYPES, fit_model, predict_out_of_fold, split_data
    from pipelines.config import SyntheticSourceConfig, load_params
    from pipelines.model_files import save_model
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
    probability = float(predict_failure_probability(model, row, contract)[0])
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
    from features.contract import load_contract
    from models.evaluation import predict_failure_probability
    from pipelines.config import load_params
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

    one_row_predict = per_call(lambda: predict_failure_probability(pipeline, one_row, contract))

    def service_path() -> None:  # what the service does per row, minus HTTP and the log
        record = record_model.model_validate_json(body)
        predict_failure_probability(pipeline, records_to_frame([record], contract), contract)

    one_row_service_path = per_call(service_path)

    big = pd.concat([one_row] * 10_000, ignore_index=True)
    batched = []
    for rows in (8, 64, 1000, 10_000):
        frame = big.head(rows)
        stats = per_call(lambda f=frame: predict_failure_probability(pipeline, f, contract), 2.0, 5)
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
    if scenario.proposed_fix:
        site = workdir / "proposed-fix"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(PROPOSED_FIX)
        env["PYTHONPATH"] = str(site)
        env["BENCH_PROPOSED_FIX"] = scenario.proposed_fix
    if scenario.server == "bentoml":
        project, serving = write_project(workdir, scenario)
        command = [str(BIN / "lifecycle"), "serve", "--port", str(port)]
        cwd, path, ready = project, "/predict", "/readyz"
        keys = ("workers", "threads", "numeric_threads", "batching", "prediction_log")
        tuning = {key: copy.deepcopy(serving[key]) for key in keys}
        tuning["prediction_log"].pop("directory")  # a temporary folder
        tuning["traffic_timeout_s"] = "60 (serving/service.py REQUEST_TIMEOUT_S)"
        if BENTOML_OVERRIDES in scenario.env:
            tuning["traffic_timeout_s"] = json.loads(scenario.env[BENTOML_OVERRIDES])["services"][
                SERVICE_NAME
            ]["traffic"]["timeout"]
        # lifecycle serve sets these itself, from serving.numeric_threads
        shown = {
            **dict.fromkeys(THREAD_VARIABLES, str(serving["numeric_threads"])),
            **scenario.env,
        }
        if scenario.proposed_fix:
            shown["PYTHONPATH"] = "<tmp>/proposed-fix"  # its sitecustomize.py: PROPOSED_FIX
            shown["BENCH_PROPOSED_FIX"] = scenario.proposed_fix
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
    return server


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


def measure(scenario: Scenario, workdir: Path, build: dict[str, Any], duration_s: int) -> dict:
    print(f"{scenario.name}: starting", flush=True)
    server = start_server(scenario, workdir, build)
    runs = []
    try:
        check = curl_check(server, build)
        _, warmup = run_wrk(server, TARGET_CONNECTIONS, WARMUP_S)
        for connections in scenario.connections:
            load_before = os.getloadavg()[0]
            seconds = scenario.duration_s or duration_s
            command, result = run_wrk(server, connections, seconds)
            result.update(
                connections=connections,
                duration_s=seconds,
                loadavg_1m_before=round(load_before, 2),
                server_rss_mib_after=tree_rss_mib(server.process.pid),
            )
            runs.append(result)
            print(
                f"  c={connections:>2}: {result['requests_per_s']:8.1f} req/s, "
                f"p50 {result['p50_ms']:7.2f} ms, p99 {result['p99_ms']:7.2f} ms, "
                f"errors {result['errors']}",
                flush=True,
            )
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


# --- the report -----------------------------------------------------------------------


def parse_variant(text: str) -> Scenario:
    """`threads=2,batching.max_batch_size=16` -> a bentoml scenario at 8 connections.

    Keys are dotted keys of the `serving` block, plus four that are not params:
    `traffic_timeout=S` (BentoML's request timeout, through `BENTOML_CONFIG_OVERRIDES`),
    `proposed_fix=timer|freeze|both` (PROPOSED_FIX, or one of its two parts),
    `env.NAME=VALUE` (an environment variable for the server), and `duration=S` (seconds of
    load for this variant instead of --duration: a long run shows the steady state).
    """
    import yaml

    overrides: dict[str, Any] = {}
    env: dict[str, str] = {}
    fix = ""
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
        if key == "proposed_fix":
            if value not in ("timer", "freeze", "both"):
                raise ValueError(f"proposed_fix is timer, freeze or both, not {value!r}")
            fix = FIX_PARTS if value == "both" else value
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
    return Scenario(name, "bentoml", (TARGET_CONNECTIONS,), overrides, env, text, fix, seconds)


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
        "errors": ours["errors"],
        "zero_errors": ours["errors"] == 0,
    }
    tuned = run_at(results, "mlflow-omp1", TARGET_CONNECTIONS)
    if tuned is not None:
        out["speedup_vs_mlflow_omp1"] = round(ours["requests_per_s"] / tuned["requests_per_s"], 2)
    out["met"] = out["speedup_at_least_5x"] and out["p99_under_100_ms"] and out["zero_errors"]
    return out


def verdict(results: list[dict]) -> dict[str, Any]:
    """The acceptance verdict is the service as it is; the proposed fix is shown beside it."""
    service = judge(results, "bentoml")
    if service is None:
        return {"complete": False}
    out = {"complete": True, **service}
    fixed = judge(results, "bentoml-proposed-fix")
    if fixed is not None:
        out["with_proposed_fix"] = fixed
    return out


def _met(flag: bool) -> str:
    return "met" if flag else "NOT met"


def _verdict_line(v: dict[str, Any], what: str) -> str:
    line = (
        f"{what} at {v['connections']} connections: {v['requests_per_s']:.1f} req/s, "
        f"{v['speedup_vs_mlflow']:.2f}x `mlflow models serve` ({v['mlflow_requests_per_s']:.1f}"
        f" req/s; target {TARGET_SPEEDUP:.0f}x: {_met(v['speedup_at_least_5x'])}), p99 "
        f"{v['p99_ms']:.1f} ms (target < {TARGET_P99_MS:.0f} ms: {_met(v['p99_under_100_ms'])}), "
        f"{v['errors']} errors ({_met(v['zero_errors'])}): **{_met(v['met'])}**."
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
        "the connection counts in order on the same server. Latencies are wrk's (corrected for "
        "coordinated omission: a stall counts for the requests it held back); errors are "
        "socket errors plus non-2xx answers.",
        "",
        "| server | connections | seconds | requests/s | p50 ms | p99 ms | max ms | errors "
        "| server RSS MiB after |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        for run in result["runs"]:
            errors = run["errors"]
            detail = ""
            if errors:
                detail = f" ({run['non_2xx']} non-2xx, {sum(run['socket_errors'].values())} socket)"
            peak = run["exact"]["latency_us"]["max"] / 1000 if run.get("exact") else float("nan")
            lines.append(
                f"| {result['scenario']} | {run['connections']} | {run['duration_s']} | "
                f"{run['requests_per_s']:.1f} | "
                f"{run['p50_ms']:.1f} | {run['p99_ms']:.1f} | {peak:.0f} | {errors}{detail} | "
                f"{run['server_rss_mib_after']:.0f} |"
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
        lines.append(_verdict_line(v, "The service as it is (params.yaml, serving/service.py)"))
        if "with_proposed_fix" in v:
            lines += ["", _verdict_line(v["with_proposed_fix"], "With the proposed fix")]
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
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
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
    parser.add_argument(
        "--with-proposed-fix",
        action="store_true",
        help="also run lifecycle serve with the proposed service.py change simulated "
        "(see PROPOSED_FIX)",
    )
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
        parser.error("needs wrk and curl on PATH")

    scenarios = default_scenarios()
    if args.with_proposed_fix:
        scenarios.insert(2, proposed_fix_scenario())
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
                s.proposed_fix,
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
        results = [measure(s, workdir, build, args.duration) for s in scenarios]
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
    fixed = [
        (run_at(results, "bentoml", run["connections"]), run)
        for result in results
        if result["scenario"] == "bentoml-proposed-fix"
        for run in result["runs"]
    ]
    pairs = [
        f"{run['connections']} connections p99 {now['p99_ms']:.1f} -> {run['p99_ms']:.1f} ms "
        f"(max {now['exact']['latency_us']['max'] / 1000:.0f} -> "
        f"{run['exact']['latency_us']['max'] / 1000:.0f} ms), "
        f"{now['requests_per_s']:.0f} -> {run['requests_per_s']:.0f} req/s"
        for now, run in fixed
        if now is not None and now.get("exact") and run.get("exact")
    ]
    if pairs:
        out.append(
            "The proposed fix (PROPOSED_FIX in this script: cancel BentoML's per-request "
            "timeout timer, and gc.freeze() after the model loads), as is -> with it: "
            + "; ".join(pairs)
            + ". Why: BentoML's TimeoutMiddleware never cancels its per-request timer, whose "
            "handle holds the request's context (its OpenTelemetry span and more) for the "
            "60 s traffic timeout; the heap grows with the request rate (server RSS above) "
            "and each full garbage collection stops the event loop for longer (hundreds of "
            "ms; see a long run). Batching and thread settings do not move p99 (variant rows)."
        )
    return out


if __name__ == "__main__":
    main()
