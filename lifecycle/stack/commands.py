"""`lifecycle stack up|down|status|env`: the local production stack (docs/stack.md)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from lifecycle.stack.settings import DEFAULT_BUCKET, StackError, render_env_file
from lifecycle.stack.stack import MOTO_NOTE, StackOptions, down, running_stack, status, up

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="The local production stack: PostgreSQL, S3 (moto_server), an MLflow server on both.",
)
logger = logging.getLogger(__name__)

Root = Annotated[
    Path, typer.Option(help="The state folder (data, logs, pids, env file).", file_okay=False)
]
DEFAULT_ROOT = Path(".stack")


@app.command("up")
def up_command(
    root: Root = DEFAULT_ROOT,
    postgres_port: Annotated[
        int | None, typer.Option(help="PostgreSQL's port [default: 55432].")
    ] = None,
    s3_port: Annotated[
        int | None, typer.Option(help="moto_server's port [default: 59000].")
    ] = None,
    mlflow_port: Annotated[
        int | None, typer.Option(help="The MLflow server's port [default: 55000].")
    ] = None,
    bucket: Annotated[str, typer.Option(help="The S3 bucket (MLflow artifacts, DVC, serving).")] = (
        DEFAULT_BUCKET
    ),
    dvc: Annotated[
        bool, typer.Option(help="Make the stack the default DVC remote (.dvc/config.local).")
    ] = True,
) -> None:
    """Start the stack (or reuse what runs); then `eval "$(lifecycle stack env)"`."""
    repo = Path.cwd() if dvc and (Path.cwd() / ".dvc").is_dir() else None
    options = StackOptions(
        root=root,
        postgres_port=postgres_port,
        s3_port=s3_port,
        mlflow_port=mlflow_port,
        bucket=bucket,
        dvc_repo=repo,
    )
    try:
        stack = up(options)
    except StackError as exc:
        _fail(str(exc))
    typer.echo(f"stack up under {stack.root}")
    typer.echo(f"  MLflow   {stack.env['MLFLOW_TRACKING_URI']}")
    typer.echo(f"  S3       {stack.env['AWS_ENDPOINT_URL']} (bucket {stack.state.bucket})")
    typer.echo(f'  env      source {stack.root}/env   (or: eval "$(lifecycle stack env)")')
    typer.echo(f"  note     {MOTO_NOTE}")


@app.command("down")
def down_command(
    root: Root = DEFAULT_ROOT,
    purge: Annotated[
        bool, typer.Option(help="Also delete the state folder: PostgreSQL's data, logs, secrets.")
    ] = False,
) -> None:
    """Stop the stack (graceful, then kill). Keeps the state folder unless --purge."""
    try:
        stopped = down(root, purge=purge)
    except StackError as exc:
        _fail(str(exc))
    typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    if purge:
        typer.echo(f"removed {root}")


@app.command("status")
def status_command(root: Root = DEFAULT_ROOT) -> None:
    """What runs: each component, its pid and URL. Exit 1 if any is stopped."""
    try:
        components = status(root)
    except StackError as exc:
        _fail(str(exc))
    for component in components:
        state = f"running  pid {component.pid}" if component.running else "stopped"
        typer.echo(f"  {component.name:<10} {state:<18} {component.url}")
    typer.echo(f"  note: {MOTO_NOTE}")
    if not all(component.running for component in components):
        raise typer.Exit(code=1)


@app.command("env")
def env_command(root: Root = DEFAULT_ROOT) -> None:
    """Print `export NAME=value` lines for the stack: eval "$(lifecycle stack env)"."""
    try:
        stack = running_stack(root)
    except StackError as exc:
        _fail(str(exc))
    typer.echo(render_env_file(stack.env), nl=False)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)
