"""`lifecycle export --to dagster`: the lifecycle as Dagster definitions (Dagster 1.13).

`render` writes two files: `definitions.py`, the module a user points `dagster dev -f` (or a
code location) at, and `dagster.yaml`, the instance settings that keep runs from overlapping.
What Dagster gets (retry policies, cron, asset names) is worked out in `dagster_mapping`;
the code of the definitions after the imports is written by `dagster_code`.

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

import textwrap

from lifecycle.orchestrators.dagster_code import (
    EXCLUSIVE_TAG,
    LINE,
    render_asset,
    render_constants,
    render_defs,
    render_lifecycle_job,
    render_run_stage_helpers,
    render_watch,
)
from lifecycle.orchestrators.dagster_mapping import (
    IMPORTED,
    asset_names,
    cron_schedule,
    identifier,
    retry_policy,
)
from lifecycle.orchestrators.export import ExportSettings, header
from lifecycle.orchestrators.graph import Pipeline

ENGINE = "dagster"
DEFINITIONS = "definitions.py"
INSTANCE = "dagster.yaml"
DAGSTER_VERSION = "1.13.28"  # requirements/dagster.txt; dagster-webserver (the UI) has it too


def render(pipeline: Pipeline, settings: ExportSettings) -> dict[str, str]:
    """The export's Dagster files, from the pipeline and the settings. Pure."""
    return {
        DEFINITIONS: render_definitions(pipeline, settings),
        INSTANCE: render_instance(pipeline, settings),
    }


# --- definitions.py -------------------------------------------------------------------------


def render_definitions(pipeline: Pipeline, settings: ExportSettings) -> str:
    """The text of `definitions.py`."""
    workers = settings.mode == "workers"
    names = asset_names(pipeline)
    group = identifier(pipeline.name)
    crons, cron_note = cron_schedule(pipeline.watch.interval_minutes)
    top = [_docstring(pipeline, settings, names), _imports(pipeline, workers)]
    body = [
        render_constants(pipeline, group, workers),
        render_run_stage_helpers(pipeline, workers),
        *(render_asset(stage, names, workers) for stage in pipeline.stages),
        render_lifecycle_job(pipeline, group, workers),
        render_watch(pipeline, group, crons, cron_note),
        render_defs(names),
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
