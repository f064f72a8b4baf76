"""`lifecycle export --to dagster`: the lifecycle as Dagster definitions (Dagster 1.13).

`render` writes two files: `definitions.py`, the module a user points `dagster dev -f` (or a
code location) at, and `dagster.yaml`, the instance settings that keep runs from overlapping.

What maps to what:
- a dvc.yaml stage -> a software-defined asset (`@asset`) whose `deps` are the stages whose
  outs it depends on (`Pipeline.edges`); the whole graph -> one asset job. Assets, not ops,
  because every stage writes files that DVC tracks: that is what Dagster's assets model (the
  UI's lineage is dvc.yaml's graph), and what Dagster's own integrations of external tools
  (dbt, Sling, dlt) do. The files stay where DVC writes them: shared mode passes nothing
  between steps (`deps`); workers mode passes each stage's `dvc.lock` as the asset's value.
- a stage's `Retry` -> a `RetryPolicy(max_retries, delay, Backoff.EXPONENTIAL, jitter)`
  that only `TransientStageFailure` (exit code 75) reaches: exit codes 1 and 2 raise
  `Failure(allow_retries=False)`. Dagster's backoff has no cap: see `retry_policy`.
- the watch iteration -> a second job (one op, `run_watch_once`) on a `ScheduleDefinition`
  every `monitor.watch.interval_s`, whose ticks skip while a run holding the project folder
  is in progress, and a run tag limited to one run at a time in `dagster.yaml`.
- the engine's run id -> `context.run_id`, handed to every stage.
"""

from __future__ import annotations

import builtins
import json
import keyword
import math
import re
import textwrap
from collections import defaultdict
from dataclasses import dataclass

from lifecycle.orchestrators.export import ExportSettings, header
from lifecycle.orchestrators.graph import Pipeline, Retry, Stage

ENGINE = "dagster"
DEFINITIONS = "definitions.py"
INSTANCE = "dagster.yaml"
DAGSTER_VERSION = "1.13.28"  # requirements/dagster.txt; dagster-webserver (the UI) has it too
EXCLUSIVE_TAG = "lifecycle/workspace"  # runs carrying it: one at a time per value
MINUTES_PER_DAY = 24 * 60
LINE = 100  # the generated code's line length (ruff's, as in pyproject.toml)
IMPORTED = (  # from dagster, those a definitions file may use
    "AssetExecutionContext",
    "AssetSelection",
    "Backoff",
    "DagsterRunStatus",
    "Definitions",
    "Failure",
    "Jitter",
    "MaterializeResult",
    "OpExecutionContext",
    "Output",
    "RetryPolicy",
    "RunsFilter",
    "ScheduleDefinition",
    "ScheduleEvaluationContext",
    "asset",
    "define_asset_job",
    "in_process_executor",
    "job",
    "op",
)


def render(pipeline: Pipeline, settings: ExportSettings) -> dict[str, str]:
    """The export's Dagster files, from the pipeline and the settings. Pure."""
    return {
        DEFINITIONS: render_definitions(pipeline, settings),
        INSTANCE: render_instance(pipeline, settings),
    }


# --- retries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DagsterRetry:
    """A stage's `Retry` as Dagster's `RetryPolicy` arguments, and why they are what they are."""

    max_retries: int
    delay: float
    exponential: bool  # Backoff.EXPONENTIAL: (2**n - 1) * delay before retry n; else delay
    jitter: bool  # Jitter.PLUS_MINUS: a random -delay..+delay added to each wait
    note: str  # the waits this gives, for the generated comment

    def waits(self) -> list[float]:
        """The wait before each retry, jitter aside (Dagster's `calculate_delay`)."""
        factors = [(2**n - 1) if self.exponential else 1 for n in range(1, self.max_retries + 1)]
        return [factor * self.delay for factor in factors]

    def longest(self) -> float:
        """The longest wait, jitter included."""
        return max(self.waits()) + (self.delay if self.jitter else 0)


def retry_policy(retry: Retry) -> DagsterRetry | None:
    """The `RetryPolicy` for a stage's `Retry`; None when it makes one attempt only.

    Dagster's exponential backoff waits `(2**n - 1) * delay` before retry n and has no cap;
    `Jitter.PLUS_MINUS` adds a random -delay..+delay (Dagster's jitter scales with the delay:
    `jitter_s` says only whether there is one). The attempts are kept exactly (the contract
    every engine honours). When the longest wait would pass `backoff_max_s`, the policy is
    the one of two that keep every wait within it whose total wait (the outage the retries
    ride out) is nearest the project's own: exponential from a lowered delay, or a constant
    wait at the cap.
    """
    retries = retry.retries
    if retries <= 0:
        return None
    jitter = retry.jitter_s > 0
    cap = retry.backoff_max_s
    spread = 1 if jitter else 0  # PLUS_MINUS adds up to one more delay
    exact = DagsterRetry(retries, retry.backoff_initial_s, True, jitter, "")
    if exact.longest() <= cap:
        return _noted(exact, "")
    exponential = DagsterRetry(
        retries, _floor_ms(cap / (2**retries - 1 + spread)), True, jitter, ""
    )
    constant = DagsterRetry(retries, _floor_ms(cap / (1 + spread)), False, jitter, "")
    own = sum(
        min(retry.backoff_initial_s * 2 ** (n - 1), cap) for n in range(1, retries + 1)
    )  # the project's waits (core.config.RetryConfig): doubling, capped
    chosen = min((exponential, constant), key=lambda policy: abs(sum(policy.waits()) - own))
    how = "the delay lowered" if chosen.exponential else "a constant wait"
    why = f"; Dagster's backoff has no cap: {how} keeps every wait within backoff_max_s {cap:g} s"
    return _noted(chosen, why)


def _noted(policy: DagsterRetry, why: str) -> DagsterRetry:
    waits = [_seconds(wait) for wait in policy.waits()]
    if len(waits) > 4:
        waits = [*waits[:3], "...", waits[-1]]
    note = f"waits {', '.join(waits)} s" if policy.exponential else f"waits {waits[0]} s each"
    if policy.jitter:
        note += f" ± {_seconds(policy.delay)} s"
    return DagsterRetry(
        policy.max_retries, policy.delay, policy.exponential, policy.jitter, note + why
    )


def _floor_ms(seconds: float) -> float:
    return math.floor(seconds * 1000) / 1000


def _seconds(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.0f}"


# --- the watch schedule -------------------------------------------------------------------


def cron_schedule(minutes: int) -> tuple[list[str], str | None]:
    """Cron expressions for a run every `minutes`, and a note when cron cannot say it exactly.

    Dagster takes a list of cron strings (a tick at any of them). An interval that divides a
    day is exact: `*/m` within an hour, `0 */h` within a day, else one expression per minute
    of the hour. One that does not divide a day becomes the nearest that does."""
    if minutes < 1:
        raise ValueError(f"a schedule needs at least one minute, not {minutes}")
    if minutes >= MINUTES_PER_DAY:
        days = round(minutes / MINUTES_PER_DAY)
        if minutes == MINUTES_PER_DAY:
            return ["0 0 * * *"], None
        cron = "0 0 * * *" if days == 1 else f"0 0 */{days} * *"
        return [cron], f"every {minutes} min is no cron interval: {cron} (from each month's 1st)"
    note = None
    if MINUTES_PER_DAY % minutes:
        nearest = min(
            (d for d in range(1, MINUTES_PER_DAY) if MINUTES_PER_DAY % d == 0),
            key=lambda d: (abs(d - minutes), -d),
        )
        note = f"{minutes} min does not divide a day: every {nearest} min instead"
        minutes = nearest
    if 60 % minutes == 0:
        return ["* * * * *" if minutes == 1 else f"*/{minutes} * * * *"], note
    if minutes % 60 == 0:
        hours = minutes // 60
        return ["0 * * * *" if hours == 1 else f"0 */{hours} * * *"], note
    by_minute: dict[int, list[int]] = defaultdict(list)
    for start in range(0, MINUTES_PER_DAY, minutes):
        by_minute[start % 60].append(start // 60)
    return [
        f"{minute} {','.join(str(hour) for hour in hours)} * * *"
        for minute, hours in sorted(by_minute.items())
    ], note


# --- names ----------------------------------------------------------------------------------


def identifier(name: str) -> str:
    """A Python identifier and Dagster name for `name` (Dagster takes [A-Za-z0-9_])."""
    text = re.sub(r"[^0-9A-Za-z_]", "_", name)
    if not text or text[0].isdigit():
        text = f"_{text}"
    return f"{text}_" if keyword.iskeyword(text) else text


def asset_names(pipeline: Pipeline) -> dict[str, str]:
    """Each stage's asset (and function) name: its identifier, numbered when two collide."""
    names: dict[str, str] = {}
    for stage in pipeline.stages:
        base = candidate = identifier(stage.name)
        number = 1
        while candidate in names.values() or candidate in _RESERVED:
            number += 1
            candidate = f"{base}_{number}"
        names[stage.name] = candidate
    return names


# Names the generated module uses besides the assets': a stage's asset must not shadow them.
_RESERVED = frozenset(
    {"defs", "lifecycle_job", "watch_job", "watch_once", "watch_schedule", "lifecycle_tasks"}
    | {"_run_stage", "_metadata", "_materialize", "_nothing_in_progress", "context"}
    | {"GROUP", "EXCLUSIVE", "IN_PROGRESS", "Path", "sys", "annotations"}
    | set(IMPORTED)
    | set(dir(builtins))
)


# --- definitions.py -------------------------------------------------------------------------


def render_definitions(pipeline: Pipeline, settings: ExportSettings) -> str:
    """The text of `definitions.py`."""
    workers = settings.mode == "workers"
    names = asset_names(pipeline)
    group = identifier(pipeline.name)
    crons, cron_note = cron_schedule(pipeline.watch.interval_minutes)
    top = [_docstring(pipeline, settings, names), _imports(pipeline, workers)]
    body = [
        _constants(pipeline, group, workers),
        _run_stage_helpers(pipeline, workers),
        *(_asset(stage, names, workers) for stage in pipeline.stages),
        _lifecycle_job(pipeline, group, workers),
        _watch(pipeline, group, crons, cron_note),
        _definitions(names),
    ]
    # ruff's layout: one blank line after the docstring and after the imports, two between
    # top-level definitions
    return (
        header(ENGINE, comment="#")
        + "\n\n".join(part.strip("\n") for part in top)
        + "\n\n"
        + "\n\n\n".join(part.strip("\n") for part in body)
        + "\n"
    )


def _docstring(pipeline: Pipeline, settings: ExportSettings, names: dict[str, str]) -> str:
    group = identifier(pipeline.name)
    watch = pipeline.watch
    edges = "\n".join(f"    {names[up]} -> {names[down]}" for up, down in pipeline.edges)
    if settings.mode == "workers":
        mode = (
            "Workers mode: each asset runs its stage in a fresh clone of the project's Git "
            "repository (`dvc repro --pull STAGE`, then `dvc push`: it needs a DVC remote), "
            "and its value is the clone's dvc.lock, which the assets after it merge into "
            "theirs. Dagster's IO manager carries that value from step to step: its default "
            "keeps it under DAGSTER_HOME/storage, which does for steps sharing one disk; for "
            "steps on separate machines (the Kubernetes or ECS executors) give Definitions an "
            "IO manager on shared storage, e.g. `resources={'io_manager': "
            "S3PickleIOManager(...)}` (dagster-aws). The steps run in parallel where the "
            "graph allows (Dagster's default executor)."
        )
    else:
        mode = (
            "Shared mode: every asset runs its stage in the project folder, so the steps run "
            "one after another in the run's process (DVC takes one `dvc repro` at a time in a "
            "folder), and runs that use the folder never overlap (dagster.yaml)."
        )
    transient = ", ".join(pipeline.transient_errors) or "none listed"
    paragraphs = [
        f"The {pipeline.name} lifecycle as Dagster definitions: one asset per dvc.yaml stage.",
        "Each asset runs `python -m lifecycle task STAGE --run-id <the Dagster run id>` in "
        "the project's own environment (through lifecycle_tasks.py, beside this file): DVC "
        "runs the stage, or skips it when its deps, params and outs are unchanged (the asset "
        'is still materialized, with outcome "skipped" in its metadata). The ledger, '
        "MLflow's parent run and `lifecycle status` group the stages by the Dagster run id. "
        "The graph, from dvc.yaml:",
        _VERBATIM + (edges or "    (no edges)"),
        mode,
        "Deploy. Dagster runs in its own environment (it shares no package with the project's):",
        _VERBATIM + "    uv venv .venv-dagster\n"
        "    uv pip install -p .venv-dagster "
        "-r lifecycle/orchestrators/requirements/dagster.txt\n"
        "    uv pip install -p .venv-dagster "
        f"dagster-webserver=={DAGSTER_VERSION}  # the UI\n"
        "    export DAGSTER_HOME=$HOME/dagster_home && mkdir -p $DAGSTER_HOME\n"
        "    cp orchestrators/dagster/dagster.yaml $DAGSTER_HOME/\n"
        "    .venv-dagster/bin/dagster dev -f orchestrators/dagster/definitions.py -p 3001",
        f"(`lifecycle serve` takes port 3000.) In the UI, materialize the job "
        f"{group}_lifecycle and turn on the schedule {group}_watch_schedule (schedules start "
        "stopped). In production the same file is a code location (workspace.yaml: "
        "`python_file: .../definitions.py`) served to `dagster-webserver` and `dagster-daemon "
        "run` (the daemon runs the schedules and the run queue). Without a UI: `dagster job "
        f"execute -f definitions.py -j {group}_lifecycle`.",
        f"Retries. A stage makes one attempt and exits {pipeline.exit_transient} on a "
        f"transient error ({transient}): that raises TransientStageFailure, which the asset's "
        f"RetryPolicy retries after its backoff. Exit code {pipeline.exit_failed} (permanent) "
        f"or {pipeline.exit_bad_config} (bad config or contract) raises "
        "Failure(allow_retries=False): never retried. Fix the cause, then on the run's page "
        "Re-execute > From failure: only the failed asset and the ones after it run.",
        f"Watch. The job {group}_watch runs one `lifecycle watch --once` iteration every "
        f"{watch.interval_s:g} s (monitor.watch.interval_s): it judges the served traffic "
        "and retrains when the monitor and the policy say so, within its own guardrails: the "
        f"lock {watch.lock}, a cooldown of {watch.cooldown_minutes:g} min after a retrain and "
        f"at most {watch.max_retrains_per_day} retrain(s) a day (monitor.policy).",
    ]
    text = "\n\n".join(
        paragraph.removeprefix(_VERBATIM)
        if paragraph.startswith(_VERBATIM)
        else textwrap.fill(paragraph, width=LINE - 8, break_on_hyphens=False)
        for paragraph in paragraphs
    )
    return f'"""{text}\n"""'


_VERBATIM = "\0"  # a paragraph kept as written (code, the graph), not re-wrapped


def _imports(pipeline: Pipeline, workers: bool) -> str:
    policies = [retry_policy(stage.retry) for stage in pipeline.stages]
    unused = {"MaterializeResult"} if workers else {"Output"}
    used = [policy for policy in policies if policy is not None]
    if not used:
        unused.add("RetryPolicy")
    if not any(policy.exponential for policy in used):
        unused.add("Backoff")
    if not any(policy.jitter for policy in used):
        unused.add("Jitter")
    names = [name for name in IMPORTED if name not in unused]
    listed = "\n".join(f"    {name}," for name in sorted(names, key=_isort_key))
    # No `from __future__ import annotations`: Dagster reads the annotations at definition
    # time (`context: AssetExecutionContext` must be the class, not a string).
    return f"""
import sys
from pathlib import Path

from dagster import (
{listed}
)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # lifecycle_tasks.py is beside us
import lifecycle_tasks
"""


def _isort_key(name: str) -> tuple[int, str]:
    """isort's order within a `from` import: constants, then classes, then functions."""
    kind = 0 if name.isupper() else 1 if name[0].isupper() else 2
    return kind, name.lower()


def _constants(pipeline: Pipeline, group: str, workers: bool) -> str:
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


def _run_stage_helpers(pipeline: Pipeline, workers: bool) -> str:
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


def _asset(stage: Stage, names: dict[str, str], workers: bool) -> str:
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


def _lifecycle_job(pipeline: Pipeline, group: str, workers: bool) -> str:
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


def _watch(pipeline: Pipeline, group: str, crons: list[str], cron_note: str | None) -> str:
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


def _definitions(names: dict[str, str]) -> str:
    assets = ", ".join(names.values())
    return f"""
defs = Definitions(
    assets=[{assets}],
    jobs=[lifecycle_job, watch_job],
    schedules=[watch_schedule],
)
"""


# --- dagster.yaml -----------------------------------------------------------------------------


def render_instance(pipeline: Pipeline, settings: ExportSettings) -> str:
    """The text of `dagster.yaml`: runs with the same EXCLUSIVE_TAG value, one at a time."""
    jobs = "the watch job" if settings.mode == "workers" else "the lifecycle and watch jobs"
    group = identifier(pipeline.name)
    about = (
        f"The Dagster instance's settings for the {pipeline.name} lifecycle: copy this file "
        "into $DAGSTER_HOME (the webserver and the daemon read $DAGSTER_HOME/dagster.yaml), or "
        f"merge its `concurrency` block into yours. Runs of {jobs} carry the tag "
        f"{EXCLUSIVE_TAG}={pipeline.name}: the run queue starts one of them at a time, the "
        f"others wait (the schedule {group}_watch_schedule also skips its tick while one runs)."
    )
    comment = textwrap.fill(about, width=LINE - 8, initial_indent="# ", subsequent_indent="# ")
    return f"""{header(ENGINE, comment="#")}{comment}
concurrency:
  runs:
    tag_concurrency_limits:
      - key: {EXCLUSIVE_TAG}
        value:
          applyLimitPerUniqueValue: true
        limit: 1
"""
