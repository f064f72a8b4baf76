"""`lifecycle export --to kubeflow`: the lifecycle as a Kubeflow Pipelines (KFP v2) pipeline.

`render` writes `lifecycle_pipeline.py`, the module a KFP user writes by hand: one
lightweight `@dsl.component` per dvc.yaml stage calling `lifecycle_tasks.run_stage`, and two
`@dsl.pipeline`s: `<model>-lifecycle` (a task per stage with dvc.yaml's edges and KFP's run
id, `dsl.PIPELINE_JOB_ID_PLACEHOLDER`; in workers mode each task hands its `dvc_lock` output
to its downstream tasks) and `<model>-watch` (one `lifecycle watch --once`, for a recurring
run every `monitor.watch.interval_s`, `max_concurrency` 1). Run with kfp, the module compiles
both to KFP's YAML; `after_write` does that at export with kfp's own environment
(`.venv-kubeflow`), by subprocess: the project's environment never imports kfp.

Retries: KFP's `set_retry` retries any failure of a task (the pipeline spec's RetryPolicy is
a count and a backoff, with no condition, in kfp 2.17), so it would retry a bad config
(exit 2) as readily as a lost tracking server (exit 75). The tasks set no KFP retry and the
stage keeps its own (`lifecycle task --stage-retries`: the `retry` block of params.yaml,
transient errors only, exponential backoff and jitter): one owner of retries, as under
`dvc repro`. KFP's cache is off on every task: DVC decides what is unchanged.

`render` is pure: the same `Pipeline` and settings give the same text.
"""

from __future__ import annotations

import json
import keyword
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from lifecycle.orchestrators.export import ExportError, ExportSettings, header
from lifecycle.orchestrators.graph import Pipeline, Retry, Stage

MODULE = "lifecycle_pipeline.py"
LIFECYCLE_YAML = "lifecycle_pipeline.yaml"
WATCH_YAML = "lifecycle_watch.yaml"
PYTHON_ENV = "LIFECYCLE_KUBEFLOW_PYTHON"  # the kfp interpreter export compiles with
VENV = ".venv-kubeflow"
COMPILE_TIMEOUT_S = 300
WIDTH = 99  # the generated code's lines, within ruff's 100 here

# Names the generated module defines or imports: a stage's component must not take one.
_TAKEN = frozenset(
    {"argparse", "os", "sys", "Path", "NamedTuple", "dsl", "compiler", "components", "local"}
    | {"HERE", "IMAGE", "TASKS_DIR", "LIFECYCLE_YAML", "WATCH_YAML", "watch_once"}
    | {"lifecycle_pipeline", "watch_pipeline", "compile_pipelines", "run_locally", "main"}
)
_UNBROKEN = re.compile(r"`[^`]*`|\S+ -> \S+|\S+ s\b")
_OUTPUTS = 'NamedTuple("Outputs", [("outcome", str), ("dvc_lock", str)])'


def render(pipeline: Pipeline, settings: ExportSettings) -> dict[str, str]:
    """`{"lifecycle_pipeline.py": text}` for `pipeline`. Pure."""
    if not pipeline.stages:
        raise ValueError("a pipeline with no stages has nothing to export")
    workers = settings.mode == "workers"
    parts = [
        _docstring(pipeline, settings) + "\n\n" + _imports(workers).strip("\n"),
        *(_component(pipeline, stage, workers) for stage in pipeline.stages),
        _WATCH_COMPONENT,
        _lifecycle_pipeline(pipeline, workers),
        _watch_pipeline(pipeline),
        _MAIN,
    ]
    text = "\n\n\n".join(part.strip("\n") for part in parts)
    return {MODULE: header("kubeflow") + text + "\n"}


def component_name(stage: str) -> str:
    """The Python name of a stage's component: the stage's, made an identifier."""
    name = re.sub(r"\W", "_", stage)
    if not name or name[0].isdigit():
        name = f"stage_{name}"
    if keyword.iskeyword(name) or name in _TAKEN:
        name = f"{name}_stage"
    return name


def pipeline_name(model: str, suffix: str) -> str:
    """A KFP pipeline name (lowercase letters, digits and dashes) from the model's name."""
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-") or "lifecycle"
    return f"{slug}-{suffix}"


def describe_retry(retry: Retry, transient: tuple[str, ...]) -> str:
    """A stage's own retries in words, for its component's docstring."""
    if retry.attempts == 1:
        return "none (attempts: 1)"
    return (
        f"{retry.attempts} attempts in all on {', '.join(transient) or 'no error class'}, "
        f"waiting {retry.backoff_initial_s:g} s doubling up to {retry.backoff_max_s:g} s, "
        f"plus 0-{retry.jitter_s:g} s of jitter"
    )


def _fill(text: str, indent: str = "", first: str | None = None) -> str:
    """`text` wrapped to the generated code's line length; `first` begins its first line.

    A `code span`, an edge `a -> b` and a number with its unit stay on one line."""
    kept = _UNBROKEN.sub(lambda found: found.group().replace(" ", "\0"), text)
    wrapped = textwrap.fill(
        kept,
        width=WIDTH,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_on_hyphens=False,
        break_long_words=False,
    )
    return wrapped.replace("\0", " ")


def _docstring(pipeline: Pipeline, settings: ExportSettings) -> str:
    lifecycle = pipeline_name(pipeline.name, "lifecycle")
    watch = pipeline_name(pipeline.name, "watch")
    interval = max(1, round(pipeline.watch.interval_s))
    edges = ", ".join(f"{up} -> {down}" for up, down in pipeline.edges) or "none"
    if settings.mode == "workers":
        mode = (
            f"Mode workers: each task runs its stage in a fresh clone of {settings.repository} "
            "(`dvc repro --pull`, then `dvc push`: it needs a DVC remote) and returns the "
            "clone's dvc.lock as its `dvc_lock` output; its downstream tasks take those as "
            "inputs and merge them into their own clone first. A clone or push that fails "
            "fails the task (KFP retries nothing here, see Retries): start a new run."
        )
    else:
        mode = (
            f"Mode shared: every task runs its stage in {settings.project} (one machine, or "
            "one volume that every task's pod mounts there)."
        )
    intro = (
        f"Two pipelines: {lifecycle}, the stages, and {watch}, one watch iteration. "
        "One lightweight component per dvc.yaml stage; each runs `lifecycle task STAGE` in "
        "the project through lifecycle_tasks.py (beside this file) with KFP's run id, so "
        "the stage ledger, MLflow's parent run and `lifecycle status` group the stages by "
        f"the KFP run. Edges: {edges}."
    )
    return f'''"""The {pipeline.name} lifecycle on Kubeflow Pipelines (KFP v2), from dvc.yaml.

{_fill(intro)}

{_fill(mode)}

Compile (kfp 2.17 in its own environment, .venv-kubeflow: `make orchestrators` builds it):

    .venv-kubeflow/bin/python {MODULE}

writes {LIFECYCLE_YAML} and {WATCH_YAML} beside this file (`lifecycle export --to
kubeflow` does it when it finds .venv-kubeflow). Deploy: upload the YAML to the cluster
(the UI's "Upload pipeline") and start a run, or with kfp's command:

    kfp --endpoint URL pipeline create -p {lifecycle} {LIFECYCLE_YAML}
    kfp --endpoint URL run create -e {pipeline.name} -f {LIFECYCLE_YAML}

The tasks' image (IMAGE below: LIFECYCLE_KFP_IMAGE when compiling) must hold the project
and its .venv where lifecycle_tasks.py says (or set LIFECYCLE_PROJECT and LIFECYCLE_PYTHON
in it), kfp itself (`install_kfp_package=False`: nothing installs at run time), and this
folder at the pipelines' `tasks_dir` parameter (this folder by default; where the image
keeps it elsewhere, add `tasks_dir=PATH` to `kfp run create`). In shared mode every task's
pod mounts the project's volume.

The watch job: one `lifecycle watch --once` every monitor.watch.interval_s, never two at
once (the iteration keeps its own lock, cooldown and daily retrain budget):

    kfp --endpoint URL recurring-run create --experiment-name {pipeline.name} \\
        --job-name {watch} --pipeline-package-path {WATCH_YAML} \\
        --interval-second {interval} --max-concurrency 1 --no-catchup

Retries: KFP's `set_retry` retries every failure of a task (its retry policy is a count and
a backoff, with no condition), a bad config (exit code 2) as readily as a lost tracking
server (75). So no task sets one, and each stage retries its own transient errors
(`lifecycle task --stage-retries`: the `retry` block of params.yaml, as under `dvc repro`;
each component's docstring says how): one owner of retries. KFP's cache is off on every
task: DVC decides what is unchanged. A task lost with its pod is not retried either. After
a failure, fix the cause and start a new run (or retry the failed one): DVC skips every
stage whose inputs did not change.

Try it here without a cluster (kfp.local runs each task as a subprocess of this Python):

    .venv-kubeflow/bin/python {MODULE} --run lifecycle   # or: --run watch
"""'''


def _imports(workers: bool) -> str:
    typing = "from typing import NamedTuple\n" if workers else ""
    return f"""
import argparse
import os
import sys
from pathlib import Path
{typing}
from kfp import compiler, components, dsl, local

HERE = Path(__file__).resolve().parent
# The tasks' image: the project with its .venv, kfp, and this folder (see above).
IMAGE = os.environ.get("LIFECYCLE_KFP_IMAGE", "python:3.11")
# Where lifecycle_tasks.py is in the tasks' image: the pipelines' `tasks_dir` parameter.
TASKS_DIR = str(HERE)
LIFECYCLE_YAML = HERE / "{LIFECYCLE_YAML}"
WATCH_YAML = HERE / "{WATCH_YAML}"
"""


def _component(pipeline: Pipeline, stage: Stage, workers: bool) -> str:
    name = component_name(stage.name)
    inputs = ["run_id: str", "tasks_dir: str"]
    stage_name = json.dumps(stage.name)
    if workers:
        locks = [f"{component_name(up)}_dvc_lock" for up in stage.upstream]
        inputs += [f"{lock}: str" for lock in locks]
        returns = _OUTPUTS
        outcome = "its outcome (ran, or skipped by DVC) and the worker's dvc.lock after it"
        call = f"run_stage({stage_name}, run_id, [{', '.join(locks)}], stage_retries=True)"
        imports = ["    import sys", "    from typing import NamedTuple"]
        body = (
            "    class Outputs(NamedTuple):\n"
            "        outcome: str\n"
            "        dvc_lock: str\n\n"
            f"    result = {call}\n"
            '    return Outputs(result["outcome"], result.get("dvc_lock") or "")'
        )
    else:
        returns = "str"
        imports = ["    import sys"]
        outcome = "its outcome, ran or skipped (by DVC: nothing it depends on changed)"
        body = f'    return run_stage({stage_name}, run_id, stage_retries=True)["outcome"]'
    line = f"def {name}({', '.join(inputs)}) -> {returns}:"
    if len(line) > WIDTH:
        line = f"def {name}(\n" + "".join(f"    {i},\n" for i in inputs) + f") -> {returns}:"
    summary = _fill(f"dvc.yaml stage `{stage.name}`, `{stage.cmd}`: {outcome}.", "    ", '    """')
    retry = describe_retry(stage.retry, pipeline.transient_errors)
    retries = _fill(f"Retries (the stage's own, params.yaml `retry`): {retry}.", "    ")
    return "\n".join(
        [
            "@dsl.component(base_image=IMAGE, install_kfp_package=False)",
            line,
            f'{summary}\n\n{retries}\n    """',
            *imports,
            "",
            "    sys.path.insert(0, tasks_dir)  # a component runs as its source alone",
            "    from lifecycle_tasks import run_stage",
            "",
            body,
        ]
    )


_WATCH_COMPONENT = '''
@dsl.component(base_image=IMAGE, install_kfp_package=False)
def watch_once(run_id: str, tasks_dir: str) -> int:
    """One `lifecycle watch --once` iteration: its exit code (a failure fails the task)."""
    import sys

    sys.path.insert(0, tasks_dir)
    from lifecycle_tasks import run_watch_once

    return run_watch_once(run_id)["exit_code"]
'''


def _lifecycle_pipeline(pipeline: Pipeline, workers: bool) -> str:
    name = pipeline_name(pipeline.name, "lifecycle")
    lines = [
        f'@dsl.pipeline(name="{name}", description="The lifecycle, from dvc.yaml.")',
        "def lifecycle_pipeline(tasks_dir: str = TASKS_DIR):",
        '    """A task per dvc.yaml stage, with its edges; every task gets KFP\'s run id."""',
        "    run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER",
    ]
    for stage in pipeline.stages:
        component = component_name(stage.name)
        task = f"{component}_task"
        arguments = ["run_id=run_id", "tasks_dir=tasks_dir"]
        if workers:  # the data dependencies are the edges
            arguments += [
                f'{component_name(up)}_dvc_lock={component_name(up)}_task.outputs["dvc_lock"]'
                for up in stage.upstream
            ]
        call = f"    {task} = {component}({', '.join(arguments)})"
        if len(call) > WIDTH:
            call = f"    {task} = {component}(\n"
            call += "".join(f"        {argument},\n" for argument in arguments) + "    )"
        lines.append(call)
        if stage.upstream and not workers:
            upstream = ", ".join(f"{component_name(up)}_task" for up in stage.upstream)
            lines.append(f"    {task}.after({upstream})")
        display = json.dumps(stage.name)
        lines.append(f"    {task}.set_display_name({display}).set_caching_options(False)")
    return "\n".join(lines)


def _watch_pipeline(pipeline: Pipeline) -> str:
    name = pipeline_name(pipeline.name, "watch")
    watch = pipeline.watch
    guardrails = _fill(
        f"Run it as a recurring run every {watch.interval_s:g} s (monitor.watch.interval_s), "
        "max_concurrency 1. Its guardrails are the iteration's own: the lock "
        f"{watch.lock}, no retrain for {watch.cooldown_minutes:g} minutes after one, at most "
        f"{watch.max_retrains_per_day} retrains a day.",
        "    ",
    )
    return "\n".join(
        [
            f'@dsl.pipeline(name="{name}", description="One lifecycle watch iteration.")',
            "def watch_pipeline(tasks_dir: str = TASKS_DIR):",
            f'    """`lifecycle watch --once`, with KFP\'s run id.\n\n{guardrails}\n    """',
            "    task = watch_once(run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, tasks_dir=tasks_dir)",
            '    task.set_display_name("watch").set_caching_options(False)',
        ]
    )


_MAIN = '''
def compile_pipelines() -> list[Path]:
    """Both pipelines compiled to KFP's YAML beside this file: what a cluster runs."""
    compiler.Compiler().compile(lifecycle_pipeline, str(LIFECYCLE_YAML))
    compiler.Compiler().compile(watch_pipeline, str(WATCH_YAML))
    return [LIFECYCLE_YAML, WATCH_YAML]


def run_locally(package: Path) -> None:
    """Run a compiled pipeline with kfp.local, each task a subprocess of this Python."""
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(HERE / "local_outputs"),
    )
    components.load_component_from_file(str(package))()


def main() -> None:
    parser = argparse.ArgumentParser(description="Compile the pipelines; --run: run one here.")
    parser.add_argument("--run", choices=["lifecycle", "watch"], help="run it with kfp.local")
    run = parser.parse_args().run
    for path in compile_pipelines():
        print(path, file=sys.stderr)
    if run is not None:
        run_locally(LIFECYCLE_YAML if run == "lifecycle" else WATCH_YAML)


if __name__ == "__main__":
    main()
'''


def after_write(out: Path, project: Path) -> list[str]:
    """Compile the written module to its YAML with kfp's own Python; what to tell the user.

    kfp lives in .venv-kubeflow (the project's environment cannot hold it): found at
    $LIFECYCLE_KUBEFLOW_PYTHON, in the project, or beside the project's environment. Without
    it the module is written and the one command that compiles it is said."""
    python = kfp_python(project)
    out = out.resolve()
    module = out / MODULE
    if python is None:
        return [
            f"{out / LIFECYCLE_YAML} not compiled: no {VENV} here; run `make orchestrators`, "
            f"then `{VENV}/bin/python {module}`"
        ]
    try:
        done = subprocess.run(
            [str(python), str(module)],
            cwd=out,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMPILE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ExportError(f"{python} {module}: no answer in {COMPILE_TIMEOUT_S} s") from None
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ExportError(f"{python} {module} could not compile it: {tail}")
    return [f"compiled with {python}: {out / LIFECYCLE_YAML}, {out / WATCH_YAML}"]


def kfp_python(project: Path) -> Path | None:
    """kfp's interpreter: $LIFECYCLE_KUBEFLOW_PYTHON, else .venv-kubeflow in the project or
    beside the project's own environment (where `make orchestrators` builds it)."""
    chosen = os.environ.get(PYTHON_ENV)
    if chosen:
        if not Path(chosen).is_file():
            raise ExportError(f"{PYTHON_ENV}={chosen}: no such file", code=2)
        return Path(chosen)
    for folder in (project, Path(sys.prefix).parent):
        python = folder / VENV / "bin" / "python"
        if python.is_file():
            return python
    return None
