"""`lifecycle rollout status|promote|abort`: the rollout in progress, for a person.

`status` judges the rollout now and prints its guards (nothing moves). `promote` and
`abort` end it by hand, with `--reason`, exactly as `lifecycle watch` would apply the
verdict: the registry's aliases, both pointers, the rollout history and MLflow
(`pipelines.edges.rollout_control`). On a `watch` (after a promotion) `promote` keeps the
champion and `abort` rolls it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from core.clock import utc_now
from core.paths import ROLLOUT_HISTORY
from core.records.rollout import GuardResult, RolloutSlot, RolloutVerdict, read_verdicts
from lifecycle.exits import fail, fail_registry, fail_with
from pipelines.edges import registry

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="The rollout in progress: judge it now (status), or end it by hand (promote, abort).",
)


@dataclass(frozen=True)
class _Rollout:
    ctx: Any  # pipelines.edges.rollout_control.RolloutContext
    pointer: dict[str, Any]
    slot: RolloutSlot
    verdict: RolloutVerdict  # the judgement now


@app.command("status")
def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
) -> None:
    """Judge the rollout in progress now and print each guard; nothing moves."""
    rollout = _judge_now()
    if as_json:
        typer.echo(rollout.verdict.model_dump_json(indent=2))
        return
    for line in describe_verdict(rollout.verdict, rollout.slot):
        typer.echo(line)
    typer.echo("nothing moved: `lifecycle watch` applies verdicts, or promote/abort by hand")


@app.command("promote")
def promote_command(
    reason: Annotated[str, typer.Option(help="Why: recorded with the verdict and the move.")],
) -> None:
    """End the rollout by making the candidate champion (on a watch: keep the champion)."""
    _by_hand("promote", reason)


@app.command("abort")
def abort_command(
    reason: Annotated[str, typer.Option(help="Why: recorded with the verdict and the move.")],
) -> None:
    """End the rollout by removing the candidate (on a watch: roll the champion back)."""
    _by_hand("abort", reason)


def describe_verdict(verdict: RolloutVerdict, slot: RolloutSlot | None = None) -> list[str]:
    """The verdict as lines for a terminal: the rollout, each guard, the outcome's reasons."""
    share = f", share {slot.share:g}" if slot is not None and slot.kind == "canary" else ""
    lines = [
        f"rollout {verdict.rollout_id}: {verdict.kind}{share} of v{verdict.other_version} "
        f"beside the champion v{verdict.champion_version}, since {verdict.since} "
        f"({verdict.elapsed_s:.0f} s; {verdict.rows} rows both scored, "
        f"{verdict.labelled_rows} labelled)",
    ]
    lines.extend(f"  {_state(guard):<7}  {guard.detail}" for guard in verdict.guards)
    extra = verdict.reasons[len(verdict.guards) :]
    lines.append(f"outcome: {verdict.outcome}" + (f": {'; '.join(extra)}" if extra else ""))
    return lines


def _state(guard: GuardResult) -> str:
    return {True: "holds", False: "BREACH", None: "pending"}[guard.holds]


def _by_hand(action: str, reason: str) -> None:
    from pipelines.edges.rollout_control import apply_verdict, by_hand

    if not reason.strip():
        fail("--reason must say why; it is recorded with the move")
    rollout = _judge_now()
    verdict = by_hand(rollout.verdict, action, reason)
    try:
        actions = apply_verdict(rollout.ctx, verdict, rollout.slot, rollout.pointer)
    except registry.RegistryError as exc:
        fail_registry(exc)
    except (RuntimeError, OSError) as exc:  # a store that cannot follow
        fail_with(f"the rollout was not ended completely: {exc}; run the command again", 1)
    typer.echo(f"rollout {verdict.rollout_id}: {verdict.outcome} ({reason})")
    for line in actions:
        typer.echo(f"  {line}")


def _judge_now() -> _Rollout:
    """The rollout in progress judged now; one line and exit 2 when there is none."""
    from core.config import ConfigError, load_params
    from features.contract import ContractError, load_contract
    from models.rollout import RolloutInputError
    from pipelines.edges.rollout_control import (
        RolloutContext,
        RolloutError,
        current_rollout,
        judge,
        resume,
        rollout_rows,
    )
    from serving.model_store import ModelStoreError

    root = Path.cwd()
    try:
        params = load_params(root / "params.yaml")
        contract = load_contract(root / params.data.contract)
        ctx = RolloutContext.from_params(params, contract, root)
    except (ConfigError, ContractError, ModelStoreError) as exc:
        fail(str(exc))
    try:
        resume(ctx)
        pointer, slot = current_rollout(ctx.store)
        if pointer is None or slot is None:
            last = read_verdicts(root / ROLLOUT_HISTORY)
            ended = (
                f"; the last one, {last[-1].rollout_id}, ended {last[-1].outcome}" if last else ""
            )
            fail(
                f"no rollout in progress: the champion pointer in {ctx.store} names none{ended}; "
                "deploy with deploy.rollout.strategy shadow or canary starts one"
            )
        rows, labels = rollout_rows(
            slot,
            root / params.serving.prediction_log.directory,
            root / params.monitor.labels.directory,
            contract,
        )
        verdict = judge(ctx, pointer, slot, rows, labels, utc_now())
    except registry.RegistryError as exc:
        fail_registry(exc)
    except (RolloutError, RolloutInputError, ModelStoreError, ValueError) as exc:
        fail(str(exc))
    return _Rollout(ctx=ctx, pointer=pointer, slot=slot, verdict=verdict)
