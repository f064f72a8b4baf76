"""What Airflow itself makes of the exported DAGs: run with .venv-airflow's Python, never the
project's (`python airflow_probe.py DAGS_FOLDER`); prints one JSON object.

For every task of the lifecycle DAG: its retry settings as Airflow holds them, the decision
its retry policy takes on each kind of failure, and the waits Airflow's own
`TaskInstance.next_retry_datetime` computes before each retry (over 50 logical dates, so
the jitter shows). For the watch DAG: its schedule and its one-at-a-time settings.
"""

from __future__ import annotations

import importlib
import json
import sys
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace


def main(dags_folder: str) -> None:
    sys.path.insert(0, dags_folder)
    from airflow.models.taskinstance import TaskInstance

    module = importlib.import_module("lifecycle_dag")
    tasks_module = importlib.import_module("lifecycle_tasks")
    failures = {
        "transient": tasks_module.TransientStageFailure("s", 75, {}),
        "permanent": tasks_module.PermanentStageFailure("s", 1, {}),
        "bad_config": tasks_module.BadConfigFailure("s", 2, {}),
        "other": RuntimeError("the project's Python could not start"),
    }
    lifecycle, watch = module.lifecycle(), module.watch()
    tasks = {}
    for task in lifecycle.tasks:
        decisions = {
            name: task.retry_policy.evaluate(failure, 1, task.retries + 1).action.value
            for name, failure in failures.items()
        }
        tasks[task.task_id] = {
            "upstream": sorted(task.upstream_task_ids),
            "retries": task.retries,
            "retry_delay_s": task.retry_delay.total_seconds(),
            "retry_exponential_backoff": task.retry_exponential_backoff,
            "max_retry_delay_s": task.max_retry_delay.total_seconds(),
            "policy": decisions,
            "waits_s": _waits(TaskInstance, lifecycle.dag_id, task),
        }
    print(
        json.dumps(
            {
                "dag_id": lifecycle.dag_id,
                "max_active_runs": lifecycle.max_active_runs,
                "max_active_tasks": lifecycle.max_active_tasks,
                "tasks": tasks,
                "watch": {
                    "dag_id": watch.dag_id,
                    "tasks": [task.task_id for task in watch.tasks],
                    "retries": [task.retries for task in watch.tasks],
                    "interval_s": watch.timetable.delta.total_seconds(),
                    "max_active_runs": watch.max_active_runs,
                    "catchup": watch.catchup,
                },
            }
        )
    )


def _waits(task_instance: type, dag_id: str, task: object) -> list[list[float]]:
    """The waits before retries 1..retries, each as seen on 50 logical dates."""
    end = datetime(2026, 1, 1, tzinfo=UTC)
    waits = []
    for try_number in range(1, task.retries + 1):
        seen = set()
        for day in range(50):
            failed = SimpleNamespace(  # the fields next_retry_datetime reads
                retry_delay_override=None,
                task=task,
                try_number=try_number,
                dag_id=dag_id,
                task_id=task.task_id,
                logical_date=end - timedelta(days=day),
                end_date=end,
                log=None,
            )
            seen.add((task_instance.next_retry_datetime(failed) - end).total_seconds())
        waits.append(sorted(seen))
    return waits


if __name__ == "__main__":
    main(sys.argv[1])
