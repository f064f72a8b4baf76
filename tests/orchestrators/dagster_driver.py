"""Drive the exported Dagster definitions in process, for tests/orchestrators/test_dagster.py.

Runs in Dagster's own environment (`.venv-dagster/bin/python dagster_driver.py ...`), never in
the project's: Dagster does not install beside the project's lock. The instance is the
persistent one in $DAGSTER_HOME (re-execution from failure reads the parent run from it).
Commands, several separated by `--` (Dagster takes seconds to import on a busy machine),
print one JSON list on stdout, an object per command:

    execute DEFINITIONS JOB [ASSET...] execute_job on the job (only these assets, if given)
    reexecute DEFINITIONS JOB RUN_ID   ReexecutionOptions.from_failure(RUN_ID): the failed
                                       steps and the ones after them (RUN_ID `last`: the
                                       latest run of JOB)
    run RUN_ID                         what a run did, step by step (`last`: the latest run)
    schedule DEFINITIONS NAME JOB      the schedule's cron, and its tick with nothing in
                                       progress, then while a run of JOB is in progress
    instance                           the run queue's tag limits from $DAGSTER_HOME/dagster.yaml
    load DEFINITIONS                   what Dagster makes of the file: each asset's upstream
                                       assets, the values it takes, its retry policy; each
                                       job's executor and run tags
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    ReexecutionOptions,
    RunsFilter,
    build_schedule_context,
    execute_job,
)
from dagster._core.definitions.reconstruct import ReconstructableRepository


def main(argv: list[str]) -> list[dict[str, Any]]:
    commands: list[list[str]] = [[]]
    for arg in argv:
        if arg == "--":
            commands.append([])
        else:
            commands[-1].append(arg)
    with DagsterInstance.get() as instance:
        return [run_command(instance, command) for command in commands if command]


def run_command(instance: DagsterInstance, argv: list[str]) -> dict[str, Any]:
    command, *args = argv
    if command == "execute":
        definitions, job, *assets = args
        return _execute(instance, definitions, job, None, assets)
    if command == "reexecute":
        definitions, job, parent = args
        parent = _latest(instance, job) if parent == "last" else parent
        options = ReexecutionOptions.from_failure(parent, instance)
        return _execute(instance, definitions, job, options)
    if command == "run":
        return describe_run(instance, _latest(instance, None) if args[0] == "last" else args[0])
    if command == "schedule":
        definitions, name, job = args
        return _schedule(instance, definitions, name, job)
    if command == "instance":
        return _instance(instance)
    if command == "load":
        return _load(args[0])
    raise SystemExit(f"unknown command {command!r}")


def _latest(instance: DagsterInstance, job: str | None) -> str:
    runs = instance.get_runs(RunsFilter(job_name=job) if job else None, limit=1)
    if not runs:
        raise SystemExit(f"no run of {job or 'any job'} in the instance")
    return runs[0].run_id


def _repository(definitions: str) -> ReconstructableRepository:
    """The `defs` of a definitions file, as `dagster job execute -f FILE` loads it."""
    return ReconstructableRepository.for_file(
        definitions, "defs", working_directory=str(Path(definitions).parent)
    )


def _execute(
    instance: DagsterInstance,
    definitions: str,
    job: str,
    options: ReexecutionOptions | None,
    assets: list[str] | None = None,
) -> dict[str, Any]:
    recon_job = _repository(definitions).get_reconstructable_job(job)
    result = execute_job(
        recon_job,
        instance=instance,
        reexecution_options=options,
        asset_selection=[AssetKey(asset) for asset in assets] if assets else None,
    )
    return describe_run(instance, result.run_id)


def describe_run(instance: DagsterInstance, run_id: str) -> dict[str, Any]:
    """A run's status, tags and each step it executed: attempts, retries, outcome, error."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise SystemExit(f"no run {run_id} in the instance")
    steps: dict[str, dict[str, Any]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        step = steps.setdefault(
            event.step_key, {"starts": 0, "retries": 0, "status": None, "metadata": {}}
        )
        kind = event.event_type
        if kind in (DagsterEventType.STEP_START, DagsterEventType.STEP_RESTARTED):
            step["starts"] += 1  # a retry restarts the step
        elif kind == DagsterEventType.STEP_UP_FOR_RETRY:
            step["retries"] += 1
        elif kind == DagsterEventType.STEP_SUCCESS:
            step["status"] = "success"
        elif kind == DagsterEventType.STEP_FAILURE:
            step["status"] = "failure"
            data = event.step_failure_data
            messages = [data.user_failure_data.description] if data.user_failure_data else []
            error = data.error
            while error is not None:  # Dagster's wrapper, then the exception the step raised
                messages.append(error.message.strip())
                error = error.cause
            step["error"] = "\n".join(message for message in messages if message)
        elif kind == DagsterEventType.STEP_SKIPPED:
            step["status"] = "skipped"
        elif kind == DagsterEventType.ASSET_MATERIALIZATION:
            metadata = event.step_materialization_data.materialization.metadata
            step["metadata"] = {key: value.value for key, value in metadata.items()}
    return {
        "run_id": run.run_id,
        "job": run.job_name,
        "status": run.status.value,
        "parent_run_id": run.parent_run_id,
        "root_run_id": run.root_run_id,
        "tags": dict(run.tags),
        "steps": steps,
    }


def _schedule(instance: DagsterInstance, definitions: str, name: str, job: str) -> dict[str, Any]:
    repository = _repository(definitions).get_definition()
    schedule = repository.get_schedule_def(name)
    job_def = repository.get_job(job)

    def tick() -> dict[str, Any]:
        with build_schedule_context(instance=instance) as context:
            data = schedule.evaluate_tick(context)
        return {
            "runs": len(data.run_requests or []),
            "run_tags": [dict(request.tags) for request in data.run_requests or []],
            "skipped": data.skip_message,
        }

    free = tick()
    running = instance.create_run_for_job(  # what a launched run of the job carries
        job_def=job_def, status=DagsterRunStatus.STARTED, tags=job_def.run_tags
    )
    try:
        busy = tick()
    finally:
        instance.delete_run(running.run_id)
    return {
        "cron": schedule.cron_schedule,
        "timezone": schedule.execution_timezone,
        "job": schedule.job_name,
        "free": free,
        "busy": busy,
    }


def _load(definitions: str) -> dict[str, Any]:
    repository = _repository(definitions).get_definition()
    graph = repository.asset_graph
    assets = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        ins = node.assets_def.op.ins if node.assets_def else {}
        assets[key.to_user_string()] = {
            "upstream": sorted(parent.to_user_string() for parent in node.parent_keys),
            # the upstream values the asset's function takes (not `deps`, typed Nothing)
            "inputs": sorted(name for name, put in ins.items() if not put.dagster_type.is_nothing),
            "retry_policy": node.assets_def.op.retry_policy._asdict()
            if node.assets_def and node.assets_def.op.retry_policy
            else None,
        }
    jobs = {
        job.name: {"executor": job.executor_def.name, "run_tags": dict(job.run_tags)}
        for job in repository.get_all_jobs()
        if not job.name.startswith("__")  # Dagster's implicit asset job
    }
    return {"assets": assets, "jobs": jobs}


def _instance(instance: DagsterInstance) -> dict[str, Any]:
    config = instance.get_concurrency_config().run_queue_config
    return {
        "max_concurrent_runs": config.max_concurrent_runs if config else None,
        "tag_concurrency_limits": list(config.tag_concurrency_limits) if config else None,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), default=str))
