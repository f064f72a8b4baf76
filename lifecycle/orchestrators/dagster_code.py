"""The top-level definitions of the exported `definitions.py`, as text (`to_dagster`).

The constants, the stage-running helpers, one asset per stage, the lifecycle job, the watch
job with its schedule, and `defs`: each a function of the pipeline graph returning the code
as ruff would format it. `to_dagster.render_definitions` puts them together under the
docstring and the imports.
"""

from __future__ import annotations

import json
import textwrap

from lifecycle.orchestrators.dagster_mapping import retry_policy
from lifecycle.orchestrators.graph import Pipeline, Stage

EXCLUSIVE_TAG = "lifecycle/workspace"  # runs carrying it: one at a time per value
LINE = 100  # the generated code's line length (ruff's, as in pyproject.toml)


def render_constants(pipeline: Pipeline, group: str, workers: bool) -> str:
    """GROUP, the EXCLUSIVE run tag that keeps runs in the project folder apart, IN_PROGRESS."""
    if workers:
        why = (
            "# The watch iteration works in the project folder: one at a time (the lifecycle\n"
            "# job's runs work in clones and may overlap). dagster.yaml limits each value of\n"
            "# this tag to one run in progress; the schedule also skips while one is."
        )
    else:
        why = (
            "# Both jobs work in the project folder: one run at a time. dagster.yaml limits\n"
            "# each value of this tag to one run in progress; the schedule also skips while\n"
            "# one is."
        )
    return f"""
GROUP = {_str(group)}
{why}
EXCLUSIVE = {{{_str(EXCLUSIVE_TAG)}: {_str(pipeline.name)}}}
IN_PROGRESS = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]
"""


def render_run_stage_helpers(pipeline: Pipeline, workers: bool) -> str:
    """`_run_stage` (exit codes to Dagster's retry or failure), `_metadata`, `_materialize`."""
    if workers:
        materialize = '''
def _materialize(
    context: AssetExecutionContext, stage: str, upstream_locks: list[str | None]
) -> Output[str | None]:
    """Run `stage` in a fresh clone; its dvc.lock is the asset's value, for the next ones."""
    result = _run_stage(context, stage, upstream_locks)
    return Output(result.get("dvc_lock"), metadata=_metadata(result))
'''
    else:
        materialize = '''
def _materialize(context: AssetExecutionContext, stage: str) -> MaterializeResult:
    """Run `stage` in the project folder; whether DVC ran or skipped it is in the metadata."""
    return MaterializeResult(metadata=_metadata(_run_stage(context, stage)))
'''
    retried, failed, bad_config = (
        pipeline.exit_transient,
        pipeline.exit_failed,
        pipeline.exit_bad_config,
    )
    return f'''
def _run_stage(
    context: AssetExecutionContext, stage: str, upstream_locks: list[str | None] | None = None
) -> dict:
    """`lifecycle task STAGE` under this run's id: only exit code {retried} is retried."""
    try:
        return lifecycle_tasks.run_stage(stage, context.run_id, upstream_locks or ())
    except lifecycle_tasks.TransientStageFailure:
        raise  # exit code {retried}: the asset's RetryPolicy retries it
    except Exception as exc:  # exit code {failed} or {bad_config}, or the project unreachable
        result = exc.result if isinstance(exc, lifecycle_tasks.StageFailure) else {{}}
        raise Failure(
            description=str(exc), metadata=_metadata(result), allow_retries=False
        ) from exc


def _metadata(result: dict) -> dict:
    """The task's result (outcome ran or skipped, seconds, error) as the step's metadata."""
    shown = {{key: value for key, value in result.items() if value is not None}}
    shown.pop("dvc_lock", None)  # workers mode: the asset's value, not its metadata
    return shown


{materialize.strip()}
'''


def render_asset(stage: Stage, names: dict[str, str], workers: bool) -> str:
    """One stage's `@asset`: its upstream assets, its RetryPolicy, the call that runs it."""
    name = names[stage.name]
    upstream = [names[up] for up in stage.upstream]
    arguments = ["group_name=GROUP", 'kinds={"dvc"}', f"description={_str(_description(stage))}"]
    if upstream and not workers:
        arguments.insert(0, f"deps=[{', '.join(upstream)}]")
    policy = retry_policy(stage.retry)
    decorator = "@asset(\n" + "".join(f"    {argument},\n" for argument in arguments)
    if policy is None:
        decorator += f"    # retry.attempts {stage.retry.attempts}: never retried\n"
    else:
        jitter = "        jitter=Jitter.PLUS_MINUS,\n" if policy.jitter else ""
        backoff = "        backoff=Backoff.EXPONENTIAL,\n" if policy.exponential else ""
        note = textwrap.fill(
            f"retry.attempts {stage.retry.attempts}: {policy.note}",
            width=LINE,
            initial_indent="    # ",
            subsequent_indent="    # ",
        )
        decorator += (
            f"{note}\n"
            "    retry_policy=RetryPolicy(\n"
            f"        max_retries={policy.max_retries},\n"
            f"        delay={policy.delay!r},\n"
            f"{backoff}"
            f"{jitter}"
            "    ),\n"
        )
    decorator += ")"
    parameters = ["context: AssetExecutionContext"]
    if workers:
        parameters += [f"{up}: str | None" for up in upstream]
        signature = _wrap(f"def {name}", parameters, " -> Output[str | None]:")
        body = _wrap(
            "    return _materialize", ["context", _str(stage.name), f"[{', '.join(upstream)}]"]
        )
    else:
        signature = _wrap(f"def {name}", parameters, " -> MaterializeResult:")
        body = _wrap("    return _materialize", ["context", _str(stage.name)])
    return f"{decorator}\n{signature}\n{body}\n"


def _str(text: str) -> str:
    """A Python string literal in double quotes, as ruff formats them."""
    return json.dumps(text)


def _wrap(head: str, items: list[str], tail: str = "") -> str:
    """`head(items)tail` as ruff formats it: on one line, or the items on their own line,
    or one item a line with a trailing comma."""
    indent = " " * (len(head) - len(head.lstrip()))
    one_line = f"{head}({', '.join(items)}){tail}"
    if len(one_line) <= LINE:
        return one_line
    inner = f"{indent}    {', '.join(items)}"
    if len(inner) <= LINE:
        return f"{head}(\n{inner}\n{indent}){tail}"
    listed = "".join(f"{indent}    {item},\n" for item in items)
    return f"{head}(\n{listed}{indent}){tail}"


def _description(stage: Stage) -> str:
    return f"dvc.yaml stage {stage.name}: {stage.cmd}"


def render_lifecycle_job(pipeline: Pipeline, group: str, workers: bool) -> str:
    """The asset job over every stage: in process in shared mode, in parallel in workers mode."""
    if workers:
        executor = (
            "    # Dagster's default executor: a process per step, in parallel where it can\n"
        )
        tags = ""
    else:
        executor = (
            "    executor_def=in_process_executor,  # one `dvc repro` at a time in a folder\n"
        )
        tags = "    run_tags=EXCLUSIVE,\n"
    description = f"The {pipeline.name} lifecycle: every dvc.yaml stage, in the graph's order."
    return (
        "lifecycle_job = define_asset_job(\n"
        f"    name={_str(group + '_lifecycle')},\n"
        "    selection=AssetSelection.groups(GROUP),\n"
        f"    description={_str(description)},\n"
        f"{executor}{tags})\n"
    )


def render_watch(pipeline: Pipeline, group: str, crons: list[str], cron_note: str | None) -> str:
    """The watch op and job, and the schedule that runs it every `crons` unless a run is on."""
    watch = pipeline.watch
    cron = _str(crons[0]) if len(crons) == 1 else "[" + ", ".join(map(_str, crons)) + "]"
    if len(f"    cron_schedule={cron},") > LINE:
        cron = "[\n" + "".join(f"        {_str(c)},\n" for c in crons) + "    ]"
    about = f"monitor.watch.interval_s {watch.interval_s:g} s"
    if cron_note:
        about += f"; {cron_note}"
    comment = textwrap.fill(about, width=LINE, initial_indent="    # ", subsequent_indent="    # ")
    return f'''
@op(description="One `lifecycle watch --once` iteration in the project folder.")
def watch_once(context: OpExecutionContext) -> None:
    """Re-judge the served traffic; retrain when the monitor and the policy say so."""
    try:
        result = lifecycle_tasks.run_watch_once(context.run_id)
    except Exception as exc:  # a failed iteration: not retried, the next tick is the retry
        raise Failure(description=str(exc), allow_retries=False) from exc
    context.log.info("watch iteration: exit code %s", result["exit_code"])


@job(
    name={_str(group + "_watch")},
    description="One watch iteration; guardrails: lock {watch.lock}, cooldown "
    "{watch.cooldown_minutes:g} min, at most {watch.max_retrains_per_day} retrain(s) a day.",
    executor_def=in_process_executor,
    run_tags=EXCLUSIVE,
)
def watch_job() -> None:
    watch_once()


def _nothing_in_progress(context: ScheduleEvaluationContext) -> bool:
    """Skip the tick while a run using the project folder is in progress: no pile-up."""
    running = context.instance.get_run_records(
        RunsFilter(tags=EXCLUSIVE, statuses=IN_PROGRESS), limit=1
    )
    return not running


watch_schedule = ScheduleDefinition(
    name={_str(group + "_watch_schedule")},
    job=watch_job,
{comment}
    cron_schedule={cron},
    execution_timezone="UTC",
    should_execute=_nothing_in_progress,
)
'''


def render_defs(names: dict[str, str]) -> str:
    """`defs`: the assets (named `names`), the two jobs and the schedule."""
    assets = ", ".join(names.values())
    return f"""
defs = Definitions(
    assets=[{assets}],
    jobs=[lifecycle_job, watch_job],
    schedules=[watch_schedule],
)
"""
