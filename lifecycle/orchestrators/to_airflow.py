"""`lifecycle export --to airflow`: the lifecycle as an Apache Airflow 3.3 DAG file.

`render` writes `lifecycle_dag.py`, two TaskFlow DAGs a user could have written by hand:

- `<model>`: one `@task` per dvc.yaml stage, wired by passing each upstream task's result to
  its downstream ones (dvc.yaml's edges; in workers mode the results carry `dvc_lock`). The
  retry block becomes Airflow's own `retries`, `retry_delay`, `retry_exponential_backoff` and
  `max_retry_delay` (the most common retry of the stages in `default_args`, the others on
  their tasks), with an `ExceptionRetryPolicy` that retries `TransientStageFailure` (exit 75)
  only; a permanent failure raises `AirflowFailException`, which Airflow never retries.
- `<model>-watch`: one `lifecycle watch --once` iteration every `monitor.watch.interval_s`,
  `max_active_runs=1`, `catchup=False`.

Pure: a function of the `Pipeline` and the `ExportSettings`; the same inputs, the same text.
"""

from __future__ import annotations

import json
import keyword
import math
import re
from collections import Counter
from collections.abc import Iterable

from lifecycle.orchestrators.export import ExportSettings, header
from lifecycle.orchestrators.graph import Pipeline, Retry, Stage

DAG_FILE = "lifecycle_dag.py"
REQUIREMENTS = "lifecycle/orchestrators/requirements/airflow.txt"


def render(pipeline: Pipeline, settings: ExportSettings) -> dict[str, str]:
    """`{"lifecycle_dag.py": text}` for `pipeline`. Pure; ValueError when two stage names
    make one Python name."""
    _check_names(pipeline.stages)
    default = default_retry(pipeline.stages)
    parts = [
        header("airflow"),
        _docstring(pipeline, settings),
        _IMPORTS,
        _retry_block(pipeline, default),
        _RUN_HELPER,
        _lifecycle_dag(pipeline, default, settings.mode),
        _watch_dag(pipeline),
    ]
    return {DAG_FILE: "\n".join(parts)}


def default_retry(stages: Iterable[Stage]) -> Retry:
    """The retry most stages share (the first stage's on a tie): the DAG's `default_args`."""
    counts = Counter(stage.retry for stage in stages)
    if not counts:
        raise ValueError("a pipeline with no stages has nothing to export")
    best = max(counts.values())
    return next(retry for retry, count in counts.items() if count == best)


def airflow_waits(retry: Retry) -> list[tuple[int, int]]:
    """The (shortest, longest) whole-second wait before each retry, as Airflow 3.3 computes it.

    `TaskInstance.next_retry_datetime` with `retry_exponential_backoff=2.0`: after try n,
    w = ceil(retry_delay * 2 ** (n - 1)) (at least 1), plus a jitter of `hash % w` seconds
    (deterministic per DAG, task, logical date and try), the sum capped at max_retry_delay."""
    waits = []
    cap = retry.backoff_max_s
    for number in range(1, retry.attempts):
        shortest = max(1, math.ceil(retry.backoff_initial_s * 2 ** (number - 1)))
        longest = 2 * shortest - 1
        waits.append((_capped(shortest, cap), _capped(longest, cap)))
    return waits


def _capped(seconds: int, cap: float) -> int:
    return min(seconds, math.floor(cap)) if cap >= 1 else seconds


def python_name(stage: str) -> str:
    """A Python identifier for a stage name (dvc.yaml allows `-`; Python does not)."""
    name = re.sub(r"\W", "_", stage)
    if not name or name[0].isdigit():
        name = f"stage_{name}"
    return f"{name}_" if keyword.iskeyword(name) else name


def _check_names(stages: Iterable[Stage]) -> None:
    seen: dict[str, str] = {}
    for stage in stages:
        name = python_name(stage.name).rstrip("_")
        if name in seen:
            raise ValueError(
                f"dvc.yaml: stages {seen[name]!r} and {stage.name!r} make one Python name, "
                f"{name!r}; rename one"
            )
        seen[name] = stage.name


def _docstring(pipeline: Pipeline, settings: ExportSettings) -> str:
    watch_id = f"{pipeline.name}-watch"
    if settings.mode == "workers":
        where = (
            f"   Workers mode: each task clones {settings.repository}, runs\n"
            "   `dvc repro --pull STAGE` and `dvc push` there (a DVC remote is needed), and\n"
            "   returns the new dvc.lock, which Airflow hands to the downstream tasks as XCom.\n"
            "   The watch DAG runs in that project folder.\n"
        )
    else:
        where = (
            "   Shared mode: every task runs in that project folder, so every Airflow\n"
            "   worker must see it (LocalExecutor on that machine, or a shared volume).\n"
        )
    return f'''"""The {pipeline.name} lifecycle as two Airflow DAGs, from the project's dvc.yaml.

`{pipeline.name}`: one task per dvc.yaml stage ({", ".join(s.name for s in pipeline.stages)}),
each `lifecycle task STAGE` in the project (`dvc repro --single-item STAGE` with Airflow's run
id: the project's ledger, MLflow's parent run and `lifecycle status` group by it; DVC still
skips a stage whose inputs are unchanged). `{watch_id}`: one `lifecycle watch --once`
iteration every {_number(pipeline.watch.interval_s)} s (monitor.watch.interval_s).

Deploy:
1. Airflow 3.3 in an environment of its own, not the project's:
   `uv pip install -r {REQUIREMENTS}`
   (in the project, `make orchestrators` builds it as .venv-airflow).
2. Put this file and lifecycle_tasks.py (the stdlib-only client every task imports) in
   Airflow's DAGs folder, or point AIRFLOW__CORE__DAGS_FOLDER at this folder.
3. Project: {settings.project}
   Its Python: {settings.python}
   (LIFECYCLE_PROJECT and LIFECYCLE_PYTHON override them where a worker mounts it elsewhere.)
{where}4. Run: `airflow dags trigger {pipeline.name}` (or `airflow dags test {pipeline.name}`
   without a scheduler); start the watch: `airflow dags unpause {watch_id}`.
5. A stage failed for good (exit code 1 or 2: no retry): fix the cause, then clear the failed
   task and its downstream tasks in the same run, in the UI (Clear, "Only failed",
   "Downstream") or `airflow tasks clear {pipeline.name} --only-failed --downstream --yes`;
   the scheduler re-runs only those, under the same run id.
"""
'''


_IMPORTS = """from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import (
    ExceptionRetryPolicy,
    RetryAction,
    RetryRule,
    dag,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowFailException

import lifecycle_tasks
from lifecycle_tasks import PermanentStageFailure, TransientStageFailure

START = datetime(2025, 1, 1, tzinfo=timezone.utc)
"""


def _retry_block(pipeline: Pipeline, default: Retry) -> str:
    waits = "; ".join(
        f"retry {n}: {lo} s" if lo == hi else f"retry {n}: {lo}-{hi} s"
        for n, (lo, hi) in enumerate(airflow_waits(default), start=1)
    )
    return f"""# One owner of retries: Airflow. A stage makes one attempt per task try and exits
# {pipeline.exit_transient} on a transient error, which lifecycle_tasks raises as
# TransientStageFailure, the only exception retried. Transient (params.yaml retry.transient):
{_comment_list(pipeline.transient_errors)}
# Exit {pipeline.exit_failed} (permanent) and {pipeline.exit_bad_config} (bad config or contract) \
raise PermanentStageFailure, turned
# into AirflowFailException: failed at once, retries left unused. Any other error fails too.
ONLY_TRANSIENT = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception=TransientStageFailure,
            action=RetryAction.RETRY,
            reason="exit code {pipeline.exit_transient}: a transient error, worth another attempt",
        ),
    ],
    default=RetryAction.FAIL,
)

# params.yaml's retry block: attempts = 1 + retries; the wait starts at backoff_initial_s
# (retry_delay), doubles (retry_exponential_backoff=2.0) and is capped at backoff_max_s
# (max_retry_delay). jitter_s ({_number(default.jitter_s)} s) has no Airflow setting: Airflow's \
exponential
# backoff adds its own jitter, a deterministic 0 to w-1 whole seconds on a wait of w, so
# here the waits are {waits or "none (no retries)"}.
DEFAULT_ARGS = {{
{_retry_arguments(default, indent="    ", dict_style=True)}
    "retry_policy": ONLY_TRANSIENT,
}}
"""


_RUN_HELPER = '''
def run(stage: str, *upstream: dict) -> dict:
    """Run one dvc.yaml stage under this DAG run's id; its `lifecycle task` result.

    `upstream` are the upstream tasks' results: in workers mode each carries the dvc.lock
    its worker wrote, merged into this worker's before the stage runs."""
    run_id = get_current_context()["run_id"]
    locks = [result.get("dvc_lock") for result in upstream]
    try:
        return lifecycle_tasks.run_stage(stage, run_id, locks)
    except PermanentStageFailure as failure:
        raise AirflowFailException(str(failure)) from failure
'''


def _lifecycle_dag(pipeline: Pipeline, default: Retry, mode: str) -> str:
    if mode == "workers":  # each task in a clone of its own: branches may run side by side
        concurrency = [
            "    max_active_runs=1,  # one lifecycle at a time: runs share the registry's champion",
        ]
    else:
        concurrency = [
            "    max_active_runs=1,  # one lifecycle at a time: runs share the project's DVC state",
            "    max_active_tasks=1,  # one stage at a time: DVC locks the shared workspace",
        ]
    lines = [
        "",
        "@dag(",
        f"    dag_id={_q(pipeline.name)},",
        "    schedule=None,  # on demand; the watch DAG retrains by itself on drift",
        "    start_date=START,",
        "    catchup=False,",
        *concurrency,
        "    default_args=DEFAULT_ARGS,",
        '    tags=["lifecycle", "dvc"],',
        "    doc_md=__doc__,",
        ")",
        "def lifecycle():",
        "    # Each task returns its stage's result, one XCom that the next tasks take as an",
        "    # argument (no `-> dict` annotation: TaskFlow would push each key as an XCom).",
    ]
    for number, stage in enumerate(pipeline.stages):
        lines += _task(stage, default)[1 if number == 0 else 0 :]
    lines.append("")
    feeding = {up for stage in pipeline.stages for up in stage.upstream}
    for stage in pipeline.stages:
        call = f"{python_name(stage.name)}({', '.join(_result(up) for up in stage.upstream)})"
        kept = f"{_result(stage.name)} = " if stage.name in feeding else ""
        lines.append(f"    {kept}{call}")
    lines += ["", "", "lifecycle()", ""]
    return "\n".join(lines)


def _task(stage: Stage, default: Retry) -> list[str]:
    name = python_name(stage.name)
    arguments = [] if name == stage.name else [f"task_id={_q(stage.name)}"]
    if stage.retry != default:
        arguments.append(_retry_arguments(stage.retry, indent="", dict_style=False, only=default))
    decorator = f"    @task({', '.join(arguments)})" if arguments else "    @task"
    parameters = ", ".join(f"{_result(up)}: dict" for up in stage.upstream)
    passed = "".join(f", {_result(up)}" for up in stage.upstream)
    lines = ["", decorator]
    if stage.retry != default:
        lines[-1] += f"  # params.yaml retry.stages.{stage.name}"
    return [
        *lines,
        f"    def {name}({parameters}):",
        f'        """dvc.yaml stage `{stage.name}`: {_escape(stage.cmd)}"""',
        f"        return run({_q(stage.name)}{passed})",
    ]


def _retry_arguments(
    retry: Retry, *, indent: str, dict_style: bool, only: Retry | None = None
) -> str:
    """The retry settings as Airflow arguments; with `only`, those that differ from it."""
    values = {
        "retries": (retry.retries, str(retry.retries)),
        "retry_delay": (retry.backoff_initial_s, _seconds(retry.backoff_initial_s)),
        "retry_exponential_backoff": (2.0, "2.0"),
        "max_retry_delay": (retry.backoff_max_s, _seconds(retry.backoff_max_s)),
    }
    if only is not None:
        base = {
            "retries": only.retries,
            "retry_delay": only.backoff_initial_s,
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": only.backoff_max_s,
        }
        values = {key: value for key, value in values.items() if value[0] != base[key]}
    if dict_style:
        return "\n".join(f'{indent}"{key}": {text},' for key, (_, text) in values.items())
    return ", ".join(f"{key}={text}" for key, (_, text) in values.items())


def _watch_dag(pipeline: Pipeline) -> str:
    watch = pipeline.watch
    cooldown = _number(watch.cooldown_minutes)
    return f'''
@dag(
    dag_id={_q(f"{pipeline.name}-watch")},
    schedule=timedelta(seconds={_number(watch.interval_s)}),  # monitor.watch.interval_s
    start_date=START,
    catchup=False,  # no backlog of missed iterations: the next one looks at the latest data
    max_active_runs=1,  # never two iterations at once
    tags=["lifecycle", "watch"],
    doc_md=__doc__,
)
def watch():
    @task(retries=0)  # the next scheduled iteration is the retry
    def watch_once():
        """One `lifecycle watch --once` iteration: drift and feedback checked, a retrain when
        the policy says so. Its guardrails are the iteration's own: the lock
        {watch.lock}, a cooldown of {cooldown} minutes after a retrain
        and at most {watch.max_retrains_per_day} retrains a day (monitor.policy)."""
        try:
            return lifecycle_tasks.run_watch_once(get_current_context()["run_id"])
        except PermanentStageFailure as failure:
            raise AirflowFailException(str(failure)) from failure

    watch_once()


watch()
'''


def _comment_list(names: Iterable[str]) -> str:
    """`# a, b, c` comment lines of at most ~90 characters."""
    lines, line = [], "#"
    for name in names:
        if len(line) + len(name) > 90:
            lines.append(line.rstrip(","))
            line = "#"
        line += f" {name},"
    lines.append(line.rstrip(",") if line != "#" else "# (none)")
    return "\n".join(lines)


def _result(stage: str) -> str:
    return f"{python_name(stage).rstrip('_')}_done"


def _q(text: str) -> str:
    """`text` as a double-quoted Python string literal."""
    return json.dumps(text)


def _seconds(value: float) -> str:
    return f"timedelta(seconds={_number(value)})"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
