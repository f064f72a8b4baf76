"""`lifecycle export` (the lifecycle as an orchestrator's definition) and the hidden
`lifecycle task` its tasks call.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from lifecycle.exits import fail, fail_with


class Engine(StrEnum):
    airflow = "airflow"
    prefect = "prefect"
    dagster = "dagster"
    kubeflow = "kubeflow"
    stepfunctions = "stepfunctions"


class ExportMode(StrEnum):
    shared = "shared"
    workers = "workers"


def export_command(
    to: Annotated[Engine, typer.Option("--to", help="The orchestrator to export for.")],
    out: Annotated[
        Path | None,
        typer.Option(help="The folder to write into [default: orchestrators/ENGINE]."),
    ] = None,
    mode: Annotated[
        ExportMode,
        typer.Option(
            help="shared: every task runs in this project folder (one machine or volume). "
            "workers: each task runs in a fresh clone, `dvc repro --pull` then `dvc push` "
            "(needs a DVC remote)."
        ),
    ] = ExportMode.shared,
    repository: Annotated[
        str | None,
        typer.Option(help="workers mode: the Git URL or path a worker clones [default: here]."),
    ] = None,
) -> None:
    """Write the lifecycle as ENGINE's own definition, generated from dvc.yaml and params.yaml.

    One task per stage with dvc.yaml's edges, the retry block as the engine's native retries
    (on exit code 75 only), and a second job running `lifecycle watch --once` every
    monitor.watch.interval_s. Regenerate after changing dvc.yaml or params.yaml; do not edit.
    """
    from core.config import ConfigError
    from lifecycle.orchestrators.export import (
        ExportError,
        ExportSettings,
        finish,
        render,
        write_export,
    )
    from lifecycle.orchestrators.graph import load_pipeline

    root = Path.cwd()
    try:
        pipeline = load_pipeline(root)
    except ConfigError as exc:
        fail(str(exc))
    if mode is ExportMode.workers and repository is None and not (root / ".git").exists():
        fail("--mode workers: this folder is not a Git repository; pass --repository URL")
    settings = ExportSettings(
        engine=to.value,
        mode=mode.value,
        project=str(root.resolve()),
        python=sys.executable,
        repository=repository or str(root.resolve()),
    )
    target = out if out is not None else Path("orchestrators") / to.value
    try:
        files = render(pipeline, settings)
    except ValueError as exc:  # a dvc.yaml the engine's renderer cannot express
        fail(str(exc))
    for path in write_export(files, target):
        typer.echo(str(path))
    try:
        notes = finish(to.value, target, root)
    except ExportError as exc:
        fail_with(str(exc), code=exc.code)
    for note in notes:
        typer.echo(note, err=True)


def task_command(
    stage: Annotated[str, typer.Argument(help="The dvc.yaml stage to run.")],
    run_id: Annotated[
        str, typer.Option(help="The orchestrator's run id: the ledger and MLflow group by it.")
    ],
    pull: Annotated[
        bool, typer.Option(help="A fresh worker: `dvc repro --pull STAGE` (needs a remote).")
    ] = False,
    push: Annotated[bool, typer.Option(help="`dvc push` after the stage succeeded.")] = False,
    upstream_lock: Annotated[
        list[Path] | None,
        typer.Option(help="An upstream task's dvc.lock to merge in first (repeatable)."),
    ] = None,
    stage_retries: Annotated[
        bool,
        typer.Option(
            help="The stage retries its transient errors itself (`retry` in params.yaml): "
            "for an engine that cannot retry on exit code 75 only and so sets no retries."
        ),
    ] = False,
) -> None:
    """Run one stage as an orchestrator's task (what `lifecycle export`'s tasks call).

    Exit code: 0 done or skipped by DVC, 75 transient, 1 permanent, 2 bad config or contract.
    The last line of stdout is the result as JSON.
    """
    import yaml

    from core.paths import DVC_FILE
    from lifecycle.orchestrators.task import run_task

    root = Path.cwd()
    if not run_id.strip():
        fail("--run-id must not be empty")
    try:
        stages = (yaml.safe_load((root / DVC_FILE).read_text(encoding="utf-8")) or {})["stages"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        fail(f"{DVC_FILE}: cannot read its stages ({exc}); run from the project root")
    if stage not in stages:
        fail(f"no stage {stage!r} in {DVC_FILE}; known: {', '.join(stages)}")
    for path in upstream_lock or ():
        if not path.is_file():
            fail(f"--upstream-lock {path}: no such file")
    try:
        result = run_task(
            stage,
            root,
            run_id,
            pull=pull,
            push=push,
            upstream_locks=upstream_lock or (),
            stage_retries=stage_retries,
        )
    except (ValueError, yaml.YAMLError) as exc:
        fail(f"--upstream-lock: {exc}")
    typer.echo(result.to_json())
    raise typer.Exit(code=result.exit_code)
