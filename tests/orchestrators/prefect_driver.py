"""What the Prefect tests ask of Prefect itself; runs in `.venv-prefect`, never the project's.

    python prefect_driver.py inspect EXPORT_DIR

prints, as one JSON document, the exported module's stage tasks (retries, waits, jitter),
its retry condition's verdict on each failure class and its deployments (schedule,
concurrency), as Prefect itself built them. No server is needed for that.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from prefect import Task
from prefect.states import Failed


def inspect(export_dir: str) -> dict:
    """The module's stage tasks, deployments and `only_transient` verdicts, from Prefect's
    own objects (the module imported as Prefect's runner would import it)."""
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
    if len(argv) != 2 or argv[0] != "inspect":
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(inspect(str(Path(argv[1]).resolve())), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
