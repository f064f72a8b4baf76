"""What the Prefect tests ask of Prefect itself; runs in `.venv-prefect`, never the project's.

    python prefect_driver.py task-runs FLOW_RUN_ID   the flow run's task runs, from its API
    python prefect_driver.py inspect EXPORT_DIR      the exported module's tasks, deployments
                                                     and retry condition, as Prefect built them

Each prints one JSON document on stdout. `task-runs` talks to PREFECT_API_URL, or starts
the ephemeral server on PREFECT_HOME's database like every other Prefect command.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from uuid import UUID


def task_runs(flow_run_id: str) -> list[dict]:
    """Every task run of the flow run, oldest first: its task's name, state and start."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)]))
        )
        flow_run = client.read_flow_run(UUID(flow_run_id))
    rows = [
        {
            "task": run.name.rsplit("-", 1)[0],
            "state_type": run.state_type.value if run.state_type else None,
            "state_name": run.state_name,
            "run_count": run.run_count,
            "created": run.created.isoformat() if run.created else None,
        }
        for run in runs
    ]
    rows.sort(key=lambda row: row["created"] or "")
    return [{"flow_run": flow_run.state_name, "run_count": flow_run.run_count}, *rows]


def inspect(export_dir: str) -> dict:
    """The module's stage tasks, deployments and `only_transient` verdicts, from Prefect's
    own objects (the module imported as Prefect's runner would import it)."""
    from prefect import Task
    from prefect.states import Failed

    sys.path.insert(0, export_dir)
    import lifecycle_flow
    import lifecycle_tasks

    tasks = {
        value.name: {
            "retries": value.retries,
            "retry_delay_seconds": value.retry_delay_seconds,
            "retry_jitter_factor": value.retry_jitter_factor,
            "has_condition": value.retry_condition_fn is not None,
        }
        for value in vars(lifecycle_flow).values()
        if isinstance(value, Task)
    }
    verdicts = {}
    for error in ("TransientStageFailure", "PermanentStageFailure", "BadConfigFailure"):
        exception = getattr(lifecycle_tasks, error)("stage", 0, {"message": "m"})
        state = Failed(data=exception)
        verdicts[error] = lifecycle_flow.only_transient(None, None, state)
    deployments = []
    for deployment in lifecycle_flow.deployments():
        limit = deployment.concurrency_limit
        options = deployment.concurrency_options
        deployments.append(
            {
                "name": deployment.name,
                "flow": deployment.flow_name,
                "intervals_s": [
                    schedule.schedule.interval.total_seconds()
                    for schedule in deployment.schedules or []
                ],
                "concurrency_limit": limit,
                "collision_strategy": options.collision_strategy.value if options else None,
            }
        )
    return {"tasks": tasks, "only_transient": verdicts, "deployments": deployments}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("task-runs", "inspect"):
        print(__doc__, file=sys.stderr)
        return 2
    command, argument = argv
    if command == "task-runs":
        print(json.dumps(task_runs(argument)))
    else:
        print(json.dumps(inspect(str(Path(argument).resolve())), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
