"""Benchmark: from a bad candidate's first failed shadow score to its removal from the service.

    python benchmarks/bench_rollout_removal.py            # benchmarks/results/rollout_removal.*
    python benchmarks/bench_rollout_removal.py --runs 1   # a quick look (same files)

Issue 15's target: at the defaults, the removal comes within one `lifecycle watch` iteration
plus a poll interval (`monitor.watch.interval_s` + `serving.reload_poll_s`, 300 + 2 s as
shipped). Every part is real and at the repository's defaults. Per run, in a fresh
temporary copy of the repository (its git-listed files in a new git repo):

1. `dvc repro` makes v1 champion; `lifecycle serve` serves it (as shipped: two workers); a
   steady client posts one /predict about every 50 ms (varied rows of the default process:
   product types L, M and H as they come);
2. `lifecycle watch` starts (the loop, not `--once`; its first iteration runs at once, the
   next `interval_s` after);
3. after a delay drawn uniformly within the interval (seeded per run), the bad candidate goes
   live the way deploy makes a challenger live with `deploy.rollout.strategy: shadow`: a
   child process logs a real model to the copy's MLflow, registers it (v2), exports it to
   the serving store and calls deploy's own `pipelines.edges.rollout_release.release`
   (registry alias `candidate`, the pointer's rollout block). The model is a logistic
   regression whose one-hot encoder never saw product type H and refuses it
   (`handle_unknown="error"`): a candidate trained on a period without H, which raises on
   the H rows of live traffic (about 10 % at the published mix). It skips the deploy gate
   on purpose: the gate's infra check replays holdout rows and would refuse it; what is
   timed here is what catches a candidate that the gate let through;
4. t_fail is the prediction log's time of the first row whose shadow score failed; t_gone
   the first moment `/readyz` shows no rollout on 10 answers in a row (both workers, polled
   every 0.2 s). The run reports t_gone - t_fail, the watch's verdict (from
   `reports/deploy/rollout_history.jsonl`), and the steady client's failed requests
   (target 0). The run's target is t_gone - t_fail <= interval_s + reload_poll_s.

Where t_fail falls in the watch's cycle decides most of the number: just after an iteration's
judge, the failure waits a whole interval; just before, a few seconds. The random delay
samples that, and the median of a few runs says little about the worst case, which is the
target: the table gives each run's wait for the next iteration beside the rest.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._loop_parts import (
    BIN,
    Server,
    SteadyClient,
    child_env,
    copy_project,
    logged_rows,
    row_time,
    run,
    steady_records,
    wait_quiet,
)
from benchmarks._measure import machine, write_results
from core.paths import ROLLOUT_HISTORY
from core.records.rollout import read_verdicts
from lifecycle.stack.services import spawn, stop_group

MODEL_NAME = "milling-failure"
GONE_ANSWERS = 10  # /readyz answers in a row without a rollout: both workers have dropped it
POLL_S = 0.2


def _child_candidate(project: Path) -> None:
    """In the copy (cwd): log, register, export and release the raising candidate as v2."""
    import mlflow
    import pandas as pd

    from core.clock import format_time, utc_now
    from core.config import TrainConfig, load_params
    from core.model_files import save_model
    from core.paths import ALIAS_HISTORY
    from features.contract import load_contract
    from models.training import SKOPS_TRUSTED_TYPES, build_pipeline
    from pipelines.edges import registry
    from pipelines.edges.rollout_release import release
    from serving.model_store import export_model, load_served_model

    params = load_params(project / "params.yaml")
    contract = load_contract(project / params.data.contract)
    frame = pd.read_parquet(project / "data/split/train.parquet")
    frame = frame[frame["Type"] != "H"].reset_index(drop=True)
    pipeline = build_pipeline(contract, TrainConfig(model="logistic_regression"), seed=0)
    pipeline.set_params(
        preprocess__categorical__categories=[sorted(frame["Type"].unique())],
        preprocess__categorical__handle_unknown="error",
    )
    pipeline.fit(frame[contract.features], frame[contract.label].to_numpy())
    directory = Path(tempfile.mkdtemp()) / "model"
    meta = {"family": "logistic_regression", "features": contract.features, "label": contract.label}
    sha256 = save_model(pipeline, directory, meta, SKOPS_TRUSTED_TYPES["logistic_regression"])
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    mlflow.set_experiment(params.tracking.experiment)
    with mlflow.start_run(run_name="bench: a candidate that refuses product type H") as active:
        logged = mlflow.sklearn.log_model(pipeline, name="model")
    version, _ = registry.register(MODEL_NAME, logged.model_uri, active.info.run_id, sha256)
    tag = export_model(
        directory,
        MODEL_NAME,
        int(version.version),
        active.info.run_id,
        sha256,
        0.5,
        project / params.serving.store,
    )
    store = project / params.serving.store
    served = load_served_model(tag, store)
    config = params.deploy.rollout.model_copy(update={"strategy": "shadow"})
    slot = release(
        MODEL_NAME,
        store,
        None,
        config,
        int(version.version),
        served,
        {"source": "benchmarks/bench_rollout_removal.py"},
        format_time(utc_now()),
        project / ALIAS_HISTORY,
        project / ROLLOUT_HISTORY,
    )
    print(json.dumps({"tag": tag, "rollout_id": slot.id if slot else None}))


def _rollout_gone(url: str, deadline: float) -> float | None:
    """Wall time of the first of GONE_ANSWERS /readyz answers in a row with no rollout."""
    streak, first = 0, None
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            try:
                body = client.get(f"{url}/readyz").json()
            except (httpx.HTTPError, ValueError):
                body = {"rollout": "unknown"}
            if body.get("rollout") is None:
                first = first or time.time()
                streak += 1
                if streak >= GONE_ANSWERS:
                    return first
            else:
                streak, first = 0, None
            time.sleep(POLL_S)
    return None


def _first_failed_shadow(project: Path, params: dict[str, Any]) -> float | None:
    times = [
        row_time(r)
        for r in logged_rows(project, params)
        if r.get("shadow_version") == "v2" and r.get("shadow_error")
    ]
    return min(times, default=None)


def one_run(seed: int) -> dict[str, Any]:
    waited = wait_quiet()
    result: dict[str, Any] = {"seed": seed, "waited_for_quiet_s": waited}
    with tempfile.TemporaryDirectory(prefix="bench-removal-") as tmp:
        project = Path(tmp)
        copy_project(project)
        params = yaml.safe_load((project / "params.yaml").read_text())
        interval = float(params["monitor"]["watch"]["interval_s"])
        poll = float(params["serving"]["reload_poll_s"])
        result.update(interval_s=interval, reload_poll_s=poll)
        code, out, took = run(project, "dvc", "repro")
        if code != 0:
            return {**result, "error": f"initial dvc repro failed: {out[-500:]}"}
        server = Server(project)
        client, watch = None, None
        try:
            if (why := server.wait_ready()) is not None:
                return {**result, "error": why}
            client = SteadyClient(server.url, steady_records())
            client.start()
            command = [str(BIN / "lifecycle"), "watch"]
            watch = spawn(command, child_env(project), project / "watch.out", project)
            delay = random.Random(seed).uniform(0, interval)
            time.sleep(delay)
            # the copy's own script, so the child imports the copy's code (PYTHONPATH)
            script = project / "benchmarks" / Path(__file__).name
            code, out, _ = run(project, "python", str(script), "--child", str(project))
            if code != 0:
                return {**result, "error": f"candidate release failed: {out[-800:]}"}
            released = time.time()
            started = json.loads(out.strip().splitlines()[-1])
            deadline = time.monotonic() + interval + 10 * poll + 180
            gone = _rollout_gone(server.url, deadline)
            client.stopping.set()
            client.join(timeout=30)
            failed = _first_failed_shadow(project, params)
            verdict = next(
                (
                    v
                    for v in read_verdicts(project / ROLLOUT_HISTORY)
                    if v.rollout_id == started["rollout_id"]
                ),
                None,
            )
            failures = sum(1 for _, status, _, _ in client.answers if status != 200)
            result.update(
                initial_lifecycle_s=round(took, 1),
                release_delay_s=round(delay, 1),
                rollout_id=started["rollout_id"],
                first_failed_shadow_after_release_s=round(failed - released, 2) if failed else None,
                removal_s=round(gone - failed, 2) if gone and failed else None,
                verdict=verdict.outcome if verdict else None,
                verdict_reasons=verdict.reasons if verdict else None,
                steady_requests=len(client.answers),
                steady_failed=failures,
                target_s=interval + poll,
            )
        finally:
            if client is not None:
                client.stopping.set()
            stop_group(watch, timeout_s=120)  # SIGTERM (the watch ends its iteration), SIGKILL
            server.stop()
    return result


def _table(results: dict[str, Any]) -> str:
    runs = results["runs"]
    good = [r["removal_s"] for r in runs if r.get("removal_s") is not None]
    lines = [
        "# Rollout: a bad candidate's first failed shadow score to its removal",
        "",
        f"Produced by `python benchmarks/bench_rollout_removal.py` on {results['measured_at']} "
        f"({results['machine']['cpus']} CPUs, shared). Every part at the repository's defaults: "
        "`lifecycle serve` as shipped, `lifecycle watch` as a loop (`monitor.watch.interval_s` "
        f"= {runs[0].get('interval_s')} s), `serving.reload_poll_s` = "
        f"{runs[0].get('reload_poll_s')} s. "
        "The candidate (a logistic regression that refuses product type H) goes live through "
        "deploy's own `release` with `strategy: shadow` at a random point of the watch's cycle; "
        "see the script's docstring.",
        "",
        f"- **Median removal {statistics.median(good):.1f} s, worst {max(good):.1f} s** over "
        f"{len(good)} of {len(runs)} runs; target: under {runs[0].get('target_s')} s "
        "(one interval plus a poll): "
        f"**{'met' if good and max(good) <= runs[0]['target_s'] else 'not met'}** in every run."
        if good
        else "- No run measured a removal.",
        "",
        "The first failed shadow score can come a fraction of a second before `release after "
        "watch start` ends: that is when the child process that released the candidate exited, "
        "after it wrote the pointer.",
        "",
        "| run | release after watch start s | first failed shadow after release s | removal s | "
        "verdict | steady requests / failed | reasons |",
        "| ---: | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for i, r in enumerate(runs, 1):
        said = r.get("verdict_reasons") or [r.get("error", "")]
        reasons = "; ".join(dict.fromkeys([said[0][:200], said[-1][:200]]))  # first guard, outcome
        lines.append(
            f"| {i} | {r.get('release_delay_s')} | {r.get('first_failed_shadow_after_release_s')} "
            f"| {r.get('removal_s')} | {r.get('verdict')} | {r.get('steady_requests')} / "
            f"{r.get('steady_failed')} | {reasons} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.child is not None:
        _child_candidate(args.child)
        return
    runs = [one_run(seed) for seed in range(1, args.runs + 1)]
    results = {
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "runs": runs,
    }
    write_results("rollout_removal", results, _table(results))
    print(_table(results))


if __name__ == "__main__":
    main()
