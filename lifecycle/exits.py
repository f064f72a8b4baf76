"""How a `lifecycle` command fails: one line on stderr, then its exit code.

2 for bad input or config (what to fix is in the line), 1 for what may pass on a retry.
"""

from __future__ import annotations

import typer

from pipelines.edges import registry  # light: it imports mlflow only when called


def fail_registry(exc: registry.RegistryError) -> None:
    """Exit 1 when the tracking server is unavailable (retry later), 2 for anything else."""
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=1 if isinstance(exc, registry.RegistryUnavailableError) else 2)


def fail(message: str) -> None:
    fail_with(message, code=2)


def fail_with(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=code)
