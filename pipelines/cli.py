"""The `lifecycle` command: helpers around the DVC pipeline (`dvc repro` runs the stages)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from pipelines.runtime import configure_logging

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
logger = logging.getLogger(__name__)


@app.callback()
def _setup() -> None:
    configure_logging()


@app.command("draft-contract")
def draft_contract_command(
    sample: Annotated[Path, typer.Argument(help="A CSV or Parquet sample of your data.")],
    label: Annotated[str, typer.Option(help="The binary (0/1) label column.")],
    out: Annotated[Path, typer.Option(help="Where to write the contract YAML.")] = Path(
        "features/contracts/my-data.yaml"
    ),
    name: Annotated[str, typer.Option(help="A name for the dataset.")] = "my-data",
    ignore: Annotated[
        list[str] | None,
        typer.Option(help="A column that must never be a model input (repeatable)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Draft a data contract from a sample file; review it, then set data.contract to it."""
    from features.contract import dump_contract
    from features.drafting import DraftError, draft_contract
    from pipelines.io import read_table, write_text

    if out.exists() and not force:
        _fail(f"{out} exists; pass --force to overwrite it")
    try:
        frame = read_table(sample)
    except FileNotFoundError:
        _fail(f"{sample}: no such file")
    except ValueError as exc:
        _fail(str(exc))
    try:
        contract = draft_contract(frame, label=label, name=name, ignore=tuple(ignore or ()))
    except DraftError as exc:
        _fail(str(exc))
    write_text(dump_contract(contract), out)
    roles = {
        role: [c.name for c in contract.columns if c.role == role]
        for role in ("id", "feature", "ignore")
    }
    logger.info("wrote %s: %d columns from %d sample rows", out, len(contract.columns), len(frame))
    for role, names in roles.items():
        logger.info("  %-7s %s", role, ", ".join(names) or "-")
    logger.info(
        "review it: columns known only after the label must be role: ignore; "
        "then set data.contract: %s in params.yaml",
        out,
    )


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


if __name__ == "__main__":
    app()
