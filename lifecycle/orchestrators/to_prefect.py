"""`lifecycle export --to prefect`: the lifecycle as a Prefect 3 flow module.

One file, `lifecycle_flow.py`: a `@task` per dvc.yaml stage (its retry block as Prefect's
`retries`, a capped `exponential_backoff`, `retry_jitter_factor` and a `retry_condition_fn`
that retries `TransientStageFailure` only), a `@flow` submitting them along dvc.yaml's
edges, a second `@flow` for one `lifecycle watch --once` iteration, and `serve` of both as
deployments (the watch every `monitor.watch.interval_s`, one run at a time).

A failed flow run is re-run with Prefect's own `prefect flow-run retry`: every stage task's
result is persisted and cached under its flow run and stage, so the retry finds the stages
that completed in cache and runs the failed one and those after it. The module is what
`ruff format` would leave as it is. Pure: text in, text out.
"""

from __future__ import annotations

import keyword
import re
import textwrap

from lifecycle.orchestrators.export import CLIENT_FILE, ExportSettings, header
from lifecycle.orchestrators.graph import Pipeline, Retry, Stage

FLOW_FILE = "lifecycle_flow.py"
PREFECT_REQUIREMENT = "prefect==3.9.1"  # lifecycle/orchestrators/requirements/prefect.txt
_WIDTH = 92  # the docstrings' prose

# Names the generated module defines or imports; a stage named like one gets a suffix.
_TAKEN = frozenset(
    {
        "annotations",
        "argparse",
        "capped_backoff",
        "ConcurrencyLimitConfig",
        "ConcurrencyLimitStrategy",
        "deployments",
        "exponential_backoff",
        "flow",
        "flow_run",
        "json",
        "lifecycle",
        "main",
        "once_per_flow_run",
        "only_transient",
        "run_stage",
        "run_watch_once",
        "serve",
        "summary",
        "sys",
        "task",
        "TaskRunContext",
        "ThreadPoolTaskRunner",
        "TransientStageFailure",
        "wait",
        "watch",
    }
)


def render(pipeline: Pipeline, settings: ExportSettings) -> dict[str, str]:
    """The flow module, by file name. Pure and deterministic."""
    names = function_names(pipeline)
    code = [
        _imports(settings),
        _HELPERS,
        *(_task(stage, names, settings) for stage in pipeline.stages),
        _lifecycle_flow(pipeline, names, settings),
        _watch_flow(pipeline),
        _deployments(pipeline),
        *([_RUN_LOCK] if settings.mode == "workers" else []),
        _MAIN_WORKERS if settings.mode == "workers" else _MAIN,
    ]
    text = (
        header("prefect")
        + _docstring(pipeline, settings)
        + "\n"
        + "\n\n\n".join(part.strip("\n") for part in code)
        + "\n"
    )
    return {FLOW_FILE: text}


def function_names(pipeline: Pipeline) -> dict[str, str]:
    """Each stage's Python name in the module: the stage's, made an identifier, distinct."""
    names: dict[str, str] = {}
    for stage in pipeline.stages:
        name = re.sub(r"\W", "_", stage.name)
        if not name or name[0].isdigit():
            name = f"stage_{name}"
        while keyword.iskeyword(name) or name in _TAKEN or name in names.values():
            name = f"{name}_stage"
        names[stage.name] = name
    return names


def jitter_factor(retry: Retry) -> float | None:
    """Prefect's `retry_jitter_factor` for our `jitter_s`, or None (no jitter).

    Ours adds a random 0..jitter_s seconds to each wait; Prefect's spreads each wait around
    itself (a clamped Poisson interval, at most `delay * (1 + factor)`). The factor is
    jitter_s over the first wait, so the first retry waits at most backoff_initial_s +
    jitter_s, as ours does; later, longer waits spread proportionally more."""
    if retry.jitter_s <= 0 or retry.backoff_initial_s <= 0:
        return None
    return round(retry.jitter_s / retry.backoff_initial_s, 4)


def delays(retry: Retry) -> list[float]:
    """The waits before each retry, as the generated `capped_backoff` computes them."""
    count = min(retry.retries, 50)  # Prefect takes at most 50 delays and repeats the last
    return [min(retry.backoff_initial_s * 2**n, retry.backoff_max_s) for n in range(count)]


def _fill(text: str, indent: str = "") -> str:
    return textwrap.fill(
        " ".join(text.split()),
        width=_WIDTH,
        initial_indent=indent,
        subsequent_indent=indent,
        break_on_hyphens=False,
        break_long_words=False,
    )


_WORKERS_NEEDS = [
    f"After a run, commit its dvc.lock where the workers clone from: `python {FLOW_FILE} run "
    "--dvc-lock CHECKOUT/dvc.lock`, then commit and push it; the next run's tasks start from "
    "it, and DVC skips the stages it describes as unchanged (without it they re-run what the "
    "committed lock does not describe).",
    "Share-nothing needs: the DVC remote in the committed .dvc/config (not config.local), "
    "reachable with credentials from every worker; MLFLOW_TRACKING_URI naming a tracking "
    "server whose artifacts it serves or keeps in an object store (a sqlite file or ./mlruns "
    "would stay in a clone and vanish with it); serving.store an absolute folder on a volume "
    "the deploy and monitor workers and the service share; the prediction log and the labels "
    "reach the monitor stage only through the repository, so the watch flow runs in the "
    "project folder. Each clone's ledger (.lifecycle/ledger.jsonl) goes with the clone: the "
    "flow run's task results are the run's record. Independent stages run side by side in "
    "this process's threads; to spread them over machines give the flow a distributed task "
    "runner (prefect-dask, prefect-ray).",
]


def _docstring(pipeline: Pipeline, settings: ExportSettings) -> str:
    edges = ", ".join(f"{up} -> {down}" for up, down in pipeline.edges)
    watch = pipeline.watch
    if settings.mode == "workers":
        where = (
            f"Mode workers (share-nothing): each task clones {settings.repository} into a fresh "
            "folder, runs `lifecycle task STAGE --pull --push` there (`dvc repro --pull STAGE`, "
            "then `dvc push` to the project's DVC remote) and returns the new dvc.lock, which "
            "the downstream tasks merge into their own clone (their `upstream`). The watch flow "
            f"runs in the project folder {settings.project}: it keeps the prediction log and "
            "the labels."
        )
    else:
        where = (
            "Mode shared: every task runs `lifecycle task STAGE` in the project folder "
            f"{settings.project}, one stage at a time (one DVC repository, one DVC lock)."
        )
    paragraphs = [
        f"Graph (dvc.yaml): {edges}.",
        where,
        f"The project's Python: {settings.python} (LIFECYCLE_PYTHON overrides it, "
        "LIFECYCLE_PROJECT the project folder).",
        f"Run it where {PREFECT_REQUIREMENT} is installed "
        "(lifecycle/orchestrators/requirements/prefect.txt):",
        None,
        "Without PREFECT_API_URL each command starts Prefect's ephemeral server on "
        "PREFECT_HOME's database; with it (`prefect server start`, or Prefect Cloud) the runs "
        "show in its UI. `serve` needs that server: the ephemeral one runs no scheduler, so "
        "no watch run would ever be scheduled.",
        "Re-run a failed run, once its cause is fixed:",
        f"    prefect flow-run retry FLOW_RUN_ID --entrypoint {FLOW_FILE}:lifecycle",
        "A flow run of the served deployment needs no --entrypoint: `serve` picks the retry "
        "up. The retry is the same flow run (the same run id in the ledger and in MLflow). "
        "Each stage's result is persisted and cached under its flow run and stage "
        "(`once_per_flow_run`), so the stages that completed are not run again; the failed "
        "one and those after it run. The retry must see the run's result storage "
        "(PREFECT_LOCAL_STORAGE_PATH, by default PREFECT_HOME/storage; on several machines a "
        "shared `result_storage` block).",
        *(_WORKERS_NEEDS if settings.mode == "workers" else []),
        f"Deploy: keep this file and {CLIENT_FILE} together where the project's Python can "
        f"run, and keep `python {FLOW_FILE} serve` running there (a systemd unit, a "
        "container) against your Prefect server: it runs the lifecycle on demand (`prefect "
        f"deployment run '{pipeline.name}/lifecycle'`) and the watch on its schedule.",
        "Retries are Prefect's (the stage makes one attempt: LIFECYCLE_RETRY_OWNER="
        "orchestrator), on exit code 75 only (`TransientStageFailure`: "
        f"{', '.join(pipeline.transient_errors)}); exit codes 1 and 2 fail the task at once. "
        f"The watch iteration keeps its own guardrails: one at a time ({watch.lock}), "
        f"{watch.cooldown_minutes:g} minutes of cooldown after a retrain, at most "
        f"{watch.max_retrains_per_day} retrains a day.",
    ]
    commands = (
        f"    python {FLOW_FILE}          one lifecycle run; prints each stage's outcome\n"
        f"    python {FLOW_FILE} watch    one `lifecycle watch --once` iteration\n"
        f"    python {FLOW_FILE} serve    both as deployments, the watch every "
        f"{watch.interval_s:g} s"
    )
    body = []
    for paragraph in paragraphs:
        if paragraph is None:
            body[-1] += "\n" + commands
        elif paragraph.startswith("    "):
            body[-1] += "\n" + paragraph
        else:
            body.append(_fill(paragraph))
    title = f"The {pipeline.name} lifecycle as a Prefect 3 flow: one task per dvc.yaml stage."
    return f'"""{title}\n\n' + "\n\n".join(body) + '\n"""\n'


def _imports(settings: ExportSettings) -> str:
    workers = settings.mode == "workers"
    return f"""
from __future__ import annotations

import argparse
import json
import sys
{"from pathlib import Path" + chr(10) if workers else ""}
{"import yaml" + chr(10) if workers else ""}from prefect import flow, serve, task
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.context import TaskRunContext
from prefect.futures import wait
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from {CLIENT_FILE.removesuffix(".py")} import TransientStageFailure, run_stage, run_watch_once
"""


_HELPERS = '''
def capped_backoff(initial_s: float, max_s: float, retries: int) -> list[float]:
    """Prefect's exponential backoff (initial_s, doubling), each wait capped at max_s."""
    return [min(wait_s, max_s) for wait_s in exponential_backoff(initial_s)(retries)]


def only_transient(task, task_run, state) -> bool:
    """Retry on exit code 75 only (`TransientStageFailure`); 1 and 2 fail the task at once."""
    return isinstance(state.result(raise_on_failure=False), TransientStageFailure)


def once_per_flow_run(context: TaskRunContext, parameters: dict) -> str:
    """A stage's cache key: its flow run and its name. A retry of the flow run finds the
    stages that completed in cache and does not run them again; a new flow run runs every
    task (and DVC skips the stages whose inputs are unchanged)."""
    return f"{context.task_run.flow_run_id}-{context.task.name}"
'''


def _task(stage: Stage, names: dict[str, str], settings: ExportSettings) -> str:
    retry = stage.retry
    options: list[tuple[str, str]] = [
        (f'name="{stage.name}"', ""),
        (f"retries={retry.retries}", ""),
    ]
    if retry.retries:
        waits = ", ".join(f"{wait:g}" for wait in delays(retry)[:6])
        if retry.retries > 6:
            waits += f", ... {retry.retries} in all"
        initial, cap = retry.backoff_initial_s, retry.backoff_max_s
        backoff = f"capped_backoff({initial!r}, {cap!r}, retries={retry.retries})"
        options.append((f"retry_delay_seconds={backoff}", f"[{waits}] s"))
        factor = jitter_factor(retry)
        if factor is not None:
            comment = f"jitter_s {retry.jitter_s:g} s / first wait {initial:g} s"
            options.append((f"retry_jitter_factor={factor!r}", comment))
        options.append(("retry_condition_fn=only_transient", ""))
    options += [
        ("cache_key_fn=once_per_flow_run", ""),
        ("persist_result=True", ""),
        ('result_serializer="json"', ""),
    ]
    lines = [
        f"    {code},  # {comment}" if comment else f"    {code}," for code, comment in options
    ]
    name = names[stage.name]
    workers = settings.mode == "workers" and stage.upstream
    signature = "run_id: str, upstream: list[dict]" if workers else "run_id: str"
    call = (
        f'run_stage("{stage.name}", run_id, [result["dvc_lock"] for result in upstream])'
        if workers
        else f'run_stage("{stage.name}", run_id)'
    )
    attempts = "1 attempt: never retried" if retry.attempts == 1 else f"{retry.attempts} attempts"
    doc = f'    """dvc.yaml stage {stage.name}: `{stage.cmd}`; {attempts}."""'
    if len(doc) > 100:
        command = _fill(f"`{stage.cmd}`", "    ")
        doc = f'    """dvc.yaml stage {stage.name}; {attempts}:\n\n{command}\n    """'
    return (
        "@task(\n" + "\n".join(lines) + "\n)\n"
        f"def {name}({signature}) -> dict:\n{doc}\n    return {call}\n"
    )


def _lifecycle_flow(pipeline: Pipeline, names: dict[str, str], settings: ExportSettings) -> str:
    workers = settings.mode == "workers"
    runner, why = (
        ("ThreadPoolTaskRunner()", "workers: independent stages run side by side")
        if workers
        else (
            "ThreadPoolTaskRunner(max_workers=1)",
            "shared: one DVC repository, one stage at a time",
        )
    )
    body = []
    for stage in pipeline.stages:
        name = names[stage.name]
        upstream = ", ".join(f"{names[up]}_future" for up in stage.upstream)
        if not stage.upstream:
            call = f"{name}.submit(run_id)"
        elif workers:
            call = f"{name}.submit(run_id, upstream=[{upstream}])"
        else:
            call = f"{name}.submit(run_id, wait_for=[{upstream}])"
        body.append(_assign(f"{name}_future", call))
    futures = "".join(
        f'        "{stage.name}": {names[stage.name]}_future,\n' for stage in pipeline.stages
    )
    return f'''
@flow(
    name="{pipeline.name}",
    # {why}
    task_runner={runner},
)
def lifecycle() -> dict[str, dict]:
    """The lifecycle: dvc.yaml's stages along its edges; each stage's `lifecycle task` result."""
    run_id = str(flow_run.id)  # the ledger, MLflow's parent run and `lifecycle status` group by it
{chr(10).join(body)}
    futures = {{
{futures}    }}
    wait(list(futures.values()))
    return {{stage: future.result() for stage, future in futures.items()}}
'''


def _assign(target: str, call: str) -> str:
    """`target = call` in the flow's body, split as ruff format splits a long call."""
    line = f"    {target} = {call}"
    if len(line) <= 100:
        return line
    function, _, arguments = call.partition("(")
    hugged = f"    {target} = {function}(\n        {arguments.removesuffix(')')}\n    )"
    if max(len(part) for part in hugged.splitlines()) <= 100:
        return hugged
    first, _, rest = arguments.removesuffix(")").partition(", ")
    keyword_, _, items = rest.partition("=[")
    listed = "".join(f"            {item},\n" for item in items.removesuffix("]").split(", "))
    return (
        f"    {target} = {function}(\n        {first},\n        {keyword_}=[\n"
        f"{listed}        ],\n    )"
    )


def _watch_flow(pipeline: Pipeline) -> str:
    watch = pipeline.watch
    doc = _fill(
        "One `lifecycle watch --once` iteration in the project: the monitor, and a retrain "
        "when the policy says so. Its guardrails are its own: a lock "
        f"({watch.lock}), a cooldown of {watch.cooldown_minutes:g} minutes after a "
        f"retrain, at most {watch.max_retrains_per_day} retrains a day.",
        "    ",
    )
    return f'''
@flow(name="{pipeline.name}-watch")
def watch() -> dict:
    """{doc.lstrip()}"""
    return run_watch_once(str(flow_run.id))
'''


def _deployments(pipeline: Pipeline) -> str:
    doc = _fill(
        "What `serve` runs: the lifecycle on demand and the watch every "
        f"{pipeline.watch.interval_s:g} s, each one run at a time (a lifecycle run asked for "
        "while one runs waits; a watch iteration due while one runs is cancelled, the next "
        "comes on schedule).",
        "    ",
    )
    return f'''
def deployments() -> list:
    """{doc.lstrip()}"""
    return [
        lifecycle.to_deployment(name="lifecycle", concurrency_limit=1),
        watch.to_deployment(
            name="watch",
            interval={pipeline.watch.interval_s!r},  # monitor.watch.interval_s
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
            ),
        ),
    ]
'''


_SUMMARY = '''
def summary(command: str, state) -> dict:
    """The run's one-line report: its flow run id, its state, each stage's outcome."""
    report = {"flow_run": str(state.state_details.flow_run_id), "state": state.name}
    if not state.is_completed():
        report["message"] = state.message
    elif command == "run":
        report["stages"] = {stage: result["outcome"] for stage, result in state.result().items()}
    else:
        report["watch"] = state.result()
    return report
'''

_MAIN = (
    _SUMMARY
    + """

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="run", choices=("run", "watch", "serve"))
    command = parser.parse_args(argv).command
    if command == "serve":
        serve(*deployments())
        return 0
    state = (lifecycle if command == "run" else watch)(return_state=True)
    print(json.dumps(summary(command, state)))
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main())
"""
)

_MAIN_WORKERS = (
    _SUMMARY
    + """

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="run", choices=("run", "watch", "serve"))
    parser.add_argument(
        "--dvc-lock",
        type=Path,
        help="run: write the run's dvc.lock here, to commit for the next run's workers",
    )
    arguments = parser.parse_args(argv)
    command, lock = arguments.command, arguments.dvc_lock
    if lock is not None and command != "run":
        parser.error(f"--dvc-lock goes with run, not {command}")
    if lock is not None and not lock.parent.is_dir():
        parser.error(f"--dvc-lock {lock}: no such folder {lock.parent}")
    if command == "serve":
        serve(*deployments())
        return 0
    state = (lifecycle if command == "run" else watch)(return_state=True)
    if lock is not None and state.is_completed():
        lock.write_text(run_lock(state.result()), encoding="utf-8")
    print(json.dumps(summary(command, state)))
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main())
"""
)

_RUN_LOCK = '''
def run_lock(results: dict[str, dict]) -> str:
    """The run's dvc.lock: each stage's entry from the lock its own task returned. The
    workers clone the repository, so commit it there: the next run's tasks start from it,
    and DVC skips what it describes as unchanged."""
    stages = {}
    for stage, result in results.items():
        entry = (yaml.safe_load(result["dvc_lock"] or "") or {}).get("stages", {}).get(stage)
        if entry is not None:
            stages[stage] = entry
    return yaml.safe_dump({"schema": "2.0", "stages": stages}, sort_keys=False)
'''
