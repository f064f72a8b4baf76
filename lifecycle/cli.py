"""The `lifecycle` command: helpers around the DVC pipeline (`dvc repro` runs the stages)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from lifecycle.exits import fail
from lifecycle.orchestrators.commands import export_command, task_command
from lifecycle.registry_commands import champion_command, rollback_command
from lifecycle.rollout_command import app as rollout_app
from lifecycle.serve_command import serve_command
from lifecycle.simulate_command import simulate_command
from lifecycle.stack.commands import app as stack_app
from pipelines.edges.runtime import configure_logging

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
logger = logging.getLogger(__name__)
app.add_typer(stack_app, name="stack")  # lifecycle stack up|down|status|env (docs/stack.md)
app.add_typer(
    rollout_app, name="rollout"
)  # lifecycle rollout status|promote|abort (docs/rollout.md)


@app.callback()
def _setup() -> None:
    configure_logging()


def draft_contract_command(
    sample: Annotated[Path, typer.Argument(help="A CSV or Parquet sample of your data.")],
    label: Annotated[str, typer.Option(help="The binary (0/1) label column.")],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the contract YAML [default: features/contracts/NAME.yaml]."
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="The contract's name [default: the sample file's name, as a slug]."),
    ] = None,
    ignore: Annotated[
        list[str] | None,
        typer.Option(help="A column that must never be a model input (repeatable)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Draft a data contract from a sample file; review it, then set data.contract to it.

    The contract's name (and so, unless deploy.registered_model is set, the registered
    model's and the Bento's) defaults to the sample's file name: data/wdbc.csv -> wdbc.
    """
    from core.io import read_table, write_text
    from core.names import slugify
    from features.contract import dump_contract
    from features.drafting import DraftError, draft_contract

    if name is None:
        name = slugify(sample.stem)
        if not name:
            fail(f"cannot make a contract name from {sample.name!r}; pass --name")
    elif not name.strip():
        fail("--name must not be empty")
    out = out if out is not None else Path("features/contracts") / f"{slugify(name) or name}.yaml"
    if out.exists() and not force:
        fail(f"{out} exists; pass --force to overwrite it")
    try:
        frame = read_table(sample)
    except FileNotFoundError:
        fail(f"{sample}: no such file")
    except ValueError as exc:
        fail(str(exc))
    try:
        draft = draft_contract(frame, label=label, name=name, ignore=tuple(ignore or ()))
    except DraftError as exc:
        fail(str(exc))
    contract = draft.contract
    write_text(dump_contract(contract), out)
    roles = {
        role: [c.name for c in contract.columns if c.role == role]
        for role in ("id", "feature", "ignore")
    }
    logger.info(
        "wrote %s: contract '%s', %d columns from %d sample rows",
        out,
        contract.name,
        len(contract.columns),
        len(frame),
    )
    for role, names in roles.items():
        logger.info("  %-7s %s", role, ", ".join(names) or "-")
    for note in draft.notes:
        if note.warning:
            logger.warning("  check %s: %s", note.column, note.text)
        else:
            logger.info("  %s: %s", note.column, note.text)
    if contract.row_id is None:
        logger.warning(
            "  no unique id column: the monitor judges drift and estimated quality, but "
            "cannot join labels to predictions until a column has role: id, unique: true"
        )
    logger.info(
        "review it: columns known only after the label must be role: ignore; "
        "then set data.contract: %s in params.yaml",
        out,
    )


def watch_command(
    once: Annotated[
        bool, typer.Option("--once", help="Run one iteration, then exit (non-zero if it failed).")
    ] = False,
    interval: Annotated[
        float | None,
        typer.Option(
            help="Seconds between iterations (default: monitor.watch.interval_s).",
            callback=lambda value: _positive(value, "seconds"),
        ),
    ] = None,
) -> None:
    """Run `dvc repro` on an interval and retrain when the monitor and the policy say so.

    Each iteration reruns what changed (the monitor stage, when the prediction log or the
    labels did), weighs the monitor's verdict against earlier iterations (monitor.policy),
    and to retrain writes the window's new labelled rows as a feedback batch and runs
    `dvc repro` again. Only a `retrain` verdict (a quality breach) retrains; `drift` is
    reported, and an `alert` (broken data, or a breach waiting for labels) is logged as a
    WARNING with its reason and never retrains: a person looks. The log line and the record
    name the signal that decided. Every iteration appends one JSON line to monitor.watch.log
    and is recorded in MLflow as a run named `watch`. One watch at a time
    (monitor.watch.lock); SIGTERM or Ctrl-C finishes the current iteration, then exits.
    """
    from core.config import ConfigError, load_params
    from lifecycle.process_guard import WatchLockedError
    from lifecycle.watch import WatchError, run_watch
    from pipelines.edges.feedback import FeedbackError

    root = Path.cwd()
    try:
        params = load_params(root / "params.yaml")
    except ConfigError as exc:
        fail(str(exc))
    try:
        record = run_watch(params, root, once=once, interval_s=interval)
    except WatchLockedError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    except (ValueError, WatchError, FeedbackError) as exc:  # a bad contract, or no row id
        fail(str(exc))
    if once and record is not None and record.error:
        typer.echo(f"error: iteration {record.iteration} failed: {record.error}", err=True)
        raise typer.Exit(code=1)


def status_command(
    run: Annotated[
        str | None,
        typer.Option("--run", help="A lifecycle run id (default: the latest in the ledger)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")] = False,
) -> None:
    """Show the latest lifecycle run stage by stage, and which model serves.

    Each stage of dvc.yaml, in order: succeeded, failed (with the error), interrupted
    (killed or Ctrl-C), running, or not run (DVC skipped it as unchanged: the last run where
    it succeeded is shown; or an earlier stage failed). Then the serving store's champion,
    the registry champion the deploy stage recorded, the monitor's last verdict (its action,
    the signal that decided it, the estimated and realized quality against their floors, the
    data quality and the drifted columns with their share of the champion's importance), and
    the last `lifecycle watch` iteration. Read from the stage ledger,
    .lifecycle/ledger.jsonl, which every stage attempt appends to.

    One `dvc repro` at a time: a second one started while the first runs stops at once,
    exit code 255, with "ERROR: failed to reproduce '<stage>': '<output>' is busy, it is
    being blocked by: (PID <n>): dvc repro". Wait for it (this command shows its stages
    as running), or stop it.
    """
    import json

    from core.config import ConfigError, load_params
    from lifecycle.status import StatusError, format_status, lifecycle_status

    try:
        params = load_params()
        store, watch_log = params.serving.store, params.monitor.watch.log
        floors = params.monitor.quality.thresholds
    except ConfigError as exc:
        typer.echo(f"warning: {exc}", err=True)
        store = watch_log = floors = None
    try:
        status = lifecycle_status(run, store=store, watch_log=watch_log, quality_floors=floors)
    except StatusError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from None
    if as_json:
        typer.echo(json.dumps(status.to_dict(), indent=2, default=str))
    else:
        typer.echo("\n".join(format_status(status)))


def _positive(value: float | None, unit: str) -> float | None:
    if value is not None and value <= 0:
        raise typer.BadParameter(f"must be more than 0 {unit}, got {value:g}")
    return value


# Every command, in the order `lifecycle --help` lists them (`lifecycle stack` comes last)
app.command("draft-contract")(draft_contract_command)
app.command("champion")(champion_command)
app.command("rollback")(rollback_command)
app.command("serve")(serve_command)
app.command("watch")(watch_command)
app.command("simulate")(simulate_command)
app.command("export")(export_command)
app.command("task", hidden=True)(task_command)
app.command("status")(status_command)

if __name__ == "__main__":
    app()
