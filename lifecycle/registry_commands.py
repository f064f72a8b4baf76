"""`lifecycle champion` and `lifecycle rollback`: the registry's aliases, and the serving store's
pointer that follows them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from core.paths import ALIAS_HISTORY
from lifecycle.exits import fail, fail_registry
from pipelines.edges import registry  # light: it imports mlflow only when called
from pipelines.edges.mlflow_connection import redacted_tracking_uri


def champion_command(
    model: Annotated[
        str | None,
        typer.Option(
            help="Registered model name (default: deploy.registered_model, else the contract's)."
        ),
    ] = None,
    card: Annotated[
        bool, typer.Option("--card", help="Print the champion's model card (Markdown).")
    ] = False,
) -> None:
    """Show the registered model's champion and previous versions, or the champion's card."""
    name = model or _registered_model_name()
    if card:
        from pipelines.edges.model_card import champion_card

        try:
            registry.require_model(name)
            typer.echo(champion_card(name), nl=False)
        except registry.RegistryError as exc:
            fail_registry(exc)
        return
    try:
        registry.require_model(name)
        held = {"champion": registry.champion(name), "previous": registry.previous(name)}
    except registry.RegistryError as exc:
        fail_registry(exc)
    typer.echo(f"{name} (tracking URI {redacted_tracking_uri()})")
    for alias, info in held.items():
        if info is None:
            typer.echo(f"  {alias:<8}  none")
        else:
            typer.echo(
                f"  {alias:<8}  v{info.version}  sha256 {info.sha256 or '-'}  "
                f"run {info.run_id or '-'}"
            )


def rollback_command(
    model: Annotated[
        str | None,
        typer.Option(
            help="Registered model name (default: deploy.registered_model, else the contract's)."
        ),
    ] = None,
    reason: Annotated[str, typer.Option(help="Why: recorded with the move.")] = "manual rollback",
    history: Annotated[
        Path, typer.Option(help="The alias history file (JSON lines) to append to.")
    ] = ALIAS_HISTORY,
) -> None:
    """Serve the previous version again: `champion` and `previous` swap places.

    Running it twice rolls forward again. The serving store's champion pointer follows, so
    a running `lifecycle serve` switches to the rolled-back model without a restart.
    """
    name = model or _registered_model_name()
    evidence = {"reason": reason, "requested_by": _user(), "command": "lifecycle rollback"}
    try:
        move = registry.rollback(name, evidence, history=history)
    except registry.RegistryError as exc:
        fail_registry(exc)
    typer.echo(move.describe())
    _point_serving_at(name, move.to_version)


def _point_serving_at(name: str, version: int) -> None:
    """Move the serving store's champion pointer to `name` v`version` (running servers follow)."""
    from core.config import ConfigError, load_params
    from serving.model_store import (
        ModelStoreError,
        load_served_model,
        model_tag,
        read_champion_pointer,
        write_champion_pointer,
    )

    try:
        serving = load_params().serving
    except ConfigError as exc:
        typer.echo(f"the serving store was not updated: {exc}", err=True)
        return
    store, shared_env = serving.store, serving.shared_store_env
    if read_champion_pointer(store) is None:
        typer.echo(f"nothing is deployed to the serving store {store}; it was left alone")
        return
    tag = model_tag(name, version)
    try:
        served = load_served_model(tag, store)
        write_champion_pointer(store, served)
    except ModelStoreError as exc:
        fail(f"the registry moved, but the serving store cannot follow: {exc}")
    typer.echo(f"serving store {store} now points at {tag}; running services switch to it")
    _point_shared_store_at(served, store, shared_env)


def _point_shared_store_at(served: Any, store: Path, shared_env: str) -> None:
    """Move the shared store's pointer too, when one is configured: every replica follows."""
    from serving.model_store import ModelStoreError
    from serving.shared_store import (
        display_url,
        open_shared_store,
        publish_model,
        shared_store_url,
        write_shared_pointer,
    )

    try:
        url = shared_store_url(shared_env)
        if url is None:
            return
        shared = open_shared_store(url)
        publish_model(shared, served, store)  # a no-op: deploy published it
        write_shared_pointer(shared, served)
    except ModelStoreError as exc:
        fail(f"the registry and the local pointer moved, but the shared store did not: {exc}")
    typer.echo(
        f"shared store {display_url(shared.url)} now points at {served.tag}; replicas follow"
    )


def _registered_model_name() -> str:
    """`deploy.registered_model`, or the contract's name when it is unset."""
    from core.config import ConfigError, load_params, registered_model_name
    from features.contract import ContractError, load_contract

    try:
        params = load_params()
        contract = params.data.contract
        return registered_model_name(
            params.deploy.registered_model, lambda: load_contract(contract).name
        )
    except (ConfigError, ContractError) as exc:
        fail(f"{exc}; or pass --model")
    raise AssertionError("unreachable")


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "unknown"
