"""The `lifecycle` command: helpers around the DVC pipeline (`dvc repro` runs the stages)."""

from __future__ import annotations

import logging
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from core.config import Scenario
from core.paths import ALIAS_HISTORY
from lifecycle.stack.commands import app as stack_app
from pipelines.edges import registry  # light: it imports mlflow only when called
from pipelines.edges.mlflow_connection import redacted_tracking_uri
from pipelines.edges.runtime import configure_logging

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
logger = logging.getLogger(__name__)
app.add_typer(stack_app, name="stack")  # lifecycle stack up|down|status|env (docs/stack.md)


@app.callback()
def _setup() -> None:
    configure_logging()


@app.command("draft-contract")
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
            _fail(f"cannot make a contract name from {sample.name!r}; pass --name")
    elif not name.strip():
        _fail("--name must not be empty")
    out = out if out is not None else Path("features/contracts") / f"{slugify(name) or name}.yaml"
    if out.exists() and not force:
        _fail(f"{out} exists; pass --force to overwrite it")
    try:
        frame = read_table(sample)
    except FileNotFoundError:
        _fail(f"{sample}: no such file")
    except ValueError as exc:
        _fail(str(exc))
    try:
        draft = draft_contract(frame, label=label, name=name, ignore=tuple(ignore or ()))
    except DraftError as exc:
        _fail(str(exc))
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


@app.command("champion")
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
            _fail_registry(exc)
        return
    try:
        registry.require_model(name)
        held = {"champion": registry.champion(name), "previous": registry.previous(name)}
    except registry.RegistryError as exc:
        _fail_registry(exc)
    typer.echo(f"{name} (tracking URI {redacted_tracking_uri()})")
    for alias, info in held.items():
        if info is None:
            typer.echo(f"  {alias:<8}  none")
        else:
            typer.echo(
                f"  {alias:<8}  v{info.version}  sha256 {info.sha256 or '-'}  "
                f"run {info.run_id or '-'}"
            )


@app.command("rollback")
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
        _fail_registry(exc)
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
        _fail(f"the registry moved, but the serving store cannot follow: {exc}")
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
        _fail(f"the registry and the local pointer moved, but the shared store did not: {exc}")
    typer.echo(
        f"shared store {display_url(shared.url)} now points at {served.tag}; replicas follow"
    )


# `lifecycle serve`: what it starts, and the thread counts it sets for the numeric libraries
SERVICE = "serving.service:Predictor"
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


@app.command("serve")
def serve_command(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default: serving.host).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default: serving.port).")
    ] = None,
) -> None:
    """Serve the champion from the project's model store over HTTP (BentoML).

    With a shared store configured (`$LIFECYCLE_SHARED_STORE`, see serving.shared_store_env)
    the service follows the shared champion pointer instead, and starts (not ready) even
    before there is one or while the store is unreachable.

    Replaces this process with `bentoml serve serving.service:Predictor`, with
    BENTOML_HOME set to `serving.store`, the numeric libraries' thread counts set to
    `serving.numeric_threads` and BentoML's usage tracking off. The service itself reads
    the rest of the `serving` block of params.yaml.
    """
    from core.config import ConfigError, load_params
    from serving.model_store import ModelStoreError, read_champion_pointer
    from serving.prediction_log.shared import replica_id
    from serving.shared_store import display_url, shared_store_url

    params_path = Path("params.yaml").resolve()
    try:
        config = load_params(params_path).serving
    except ConfigError as exc:
        _fail(str(exc))
    store = config.store.resolve()
    try:
        shared = shared_store_url(config.shared_store_env)  # a bad URL: one line, exit 2
        pointer = read_champion_pointer(store) if shared is None else None
    except ModelStoreError as exc:
        _fail(str(exc))
    if shared is None and pointer is None:
        _fail(
            f"no champion in the model store {store}: run `dvc repro` first "
            "(the deploy stage exports the champion there)"
        )
    host, port = host or config.host, port or config.port
    argv, env = _serve_invocation(host, port, config.numeric_threads, store, params_path)
    try:  # the shared prediction log names this replica by the port it really listens on
        env[config.replica_id_env] = replica_id(config.replica_id_env, port)
    except ModelStoreError as exc:
        _fail(str(exc))
    source = display_url(shared) if shared else f"{pointer['tag']} from {store}"
    logger.info("serving %s on http://%s:%d", source, host, port)
    os.execvpe(argv[0], argv, env)


def _serve_invocation(
    host: str, port: int, numeric_threads: int, store: Path, params_path: Path
) -> tuple[list[str], dict[str, str]]:
    """The `bentoml serve` command line and its environment."""
    env = dict(os.environ)
    env.update({name: str(numeric_threads) for name in THREAD_VARIABLES})
    env.update(
        {
            "BENTOML_HOME": str(store),
            "BENTOML_DO_NOT_TRACK": "true",
            "LIFECYCLE_PARAMS": str(params_path),
        }
    )
    argv = [sys.executable, "-m", "bentoml", "serve", SERVICE]
    argv += ["--timeout-graceful-shutdown", "30", "--host", host, "--port", str(port)]
    return argv, env


@app.command("watch")
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
        _fail(str(exc))
    try:
        record = run_watch(params, root, once=once, interval_s=interval)
    except WatchLockedError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    except (ValueError, WatchError, FeedbackError) as exc:  # a bad contract, or no row id
        _fail(str(exc))
    if once and record is not None and record.error:
        typer.echo(f"error: iteration {record.iteration} failed: {record.error}", err=True)
        raise typer.Exit(code=1)


ROWS_FROM_HELP = (
    "Where the rows come from: 'synthetic' (the milling generator, features/synthetic.py), "
    "'holdout' (the train stage's holdout split, else the validated data), or a CSV or "
    "Parquet file in the contract's shape. Default: synthetic when ingest.source is "
    "synthetic, else holdout."
)


@app.command("simulate")
def simulate_command(
    scenario: Annotated[
        Scenario,
        typer.Option(
            help="Drift to simulate (features/synthetic.py describes each); on replayed rows "
            "it shifts or re-mixes the columns it changes, and the labels stay the rows' own."
        ),
    ] = "none",
    rows: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="How many rows to send (needed for synthetic rows; default for a file: each "
            "row once). Past a file's last row the replay cycles back to its first.",
        ),
    ] = None,
    rows_from: Annotated[str | None, typer.Option(help=ROWS_FROM_HELP)] = None,
    shuffle: Annotated[
        bool,
        typer.Option(
            "--shuffle", help="Replay a file's rows in a seeded random order, not file order."
        ),
    ] = False,
    seed: Annotated[
        int | None, typer.Option(help="Random seed (default: a fresh one, shown).")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(help="The service (default: http://<serving.host>:<serving.port>)."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Rows per request; 1 sends each row to /predict.")
    ] = 100,
    label_delay: Annotated[
        float, typer.Option(min=0, help="Seconds to wait before writing the labels.")
    ] = 0.0,
    first_udi: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="The first row id (default: after every id in the labels, the prediction "
            "log, the feedback batches and the replayed file, and at least 10000001).",
        ),
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(help="Variable holding the API key to send (default: serving.api_key_env)."),
    ] = None,
    labels: Annotated[
        bool,
        typer.Option(
            "--labels/--no-labels",
            help="Write the answered rows' ground truth to monitor.labels.directory.",
        ),
    ] = True,
    ramp_rows: Annotated[
        int,
        typer.Option(min=0, help="Rows over which the scenario grows from none; 0: a step."),
    ] = 0,
) -> None:
    """Send production rows to a running service, then write their ground truth.

    The rows come from the synthetic process (with `ingest.synthetic`'s daily cycle) or
    replay your own data (--rows-from): in file order, which is time order, cycling past
    the last row, each with a fresh id when the contract's row id is an integer. The
    scenario starts at the first row, or ramps in over --ramp-rows rows. Labels need the
    contract's row id and the rows' label; without them the traffic is sent all the same.
    """
    import secrets

    from core.config import ConfigError, load_params
    from features.contract import load_contract
    from lifecycle.simulate import (
        Replay,
        SimulateError,
        check_url,
        first_free_id,
        largest_known_id,
        read_rows,
        replayed_file,
        simulate,
    )

    try:
        params = load_params()
        contract = load_contract(params.data.contract)
    except (ConfigError, ValueError) as exc:
        _fail(str(exc))
    serving = params.serving
    host = "127.0.0.1" if serving.host in ("0.0.0.0", "::") else serving.host
    try:
        url = check_url(url or f"http://{host}:{serving.port}")
    except ValueError as exc:
        _fail(f"--url: {exc}")
    source = rows_from or ("synthetic" if params.ingest.source == "synthetic" else "holdout")
    replay = None
    try:
        if source != "synthetic":
            path = replayed_file(source)
            replay = Replay(str(path), read_rows(path, contract), shuffle, ramp_rows)
    except SimulateError as exc:
        _fail(str(exc))
    if replay is None and rows is None:
        _fail("--rows: say how many synthetic rows to send (a replayed file sends its own)")
    if replay is None and shuffle:
        _fail("--shuffle reorders a replayed file's rows; synthetic rows have no file order")
    rows = rows or len(replay.frame)
    key = contract.row_id
    if first_udi is None:
        largest = None
        if key is not None:
            largest = largest_known_id(
                key,
                params.monitor.labels.directory,
                params.ingest.feedback.directory,
                serving.prediction_log.directory,
                replayed=None if replay is None else replay.frame,
            )
        first_udi = first_free_id(largest)
    seed = secrets.randbelow(2**31) if seed is None else seed
    try:
        done = simulate(
            contract,
            scenario,
            rows,
            seed,
            url,
            batch_size,
            first_udi,
            api_key_env or serving.api_key_env,
            params.monitor.labels.directory if labels else None,
            label_delay,
            process=params.ingest.synthetic.model_copy(update={"ramp_rows": ramp_rows}),
            replay=replay,
        )
    except SimulateError as exc:
        _fail(str(exc))
    for line in done.summary():
        typer.echo(line)
    if done.report.fatal:
        _fail_with(done.report.fatal, code=1)
    if done.unanswered:
        _fail_with(f"{done.unanswered} of {rows} rows were not answered", code=1)


class Engine(StrEnum):
    airflow = "airflow"
    prefect = "prefect"
    dagster = "dagster"
    kubeflow = "kubeflow"
    stepfunctions = "stepfunctions"


class ExportMode(StrEnum):
    shared = "shared"
    workers = "workers"


@app.command("export")
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
        _fail(str(exc))
    if mode is ExportMode.workers and repository is None and not (root / ".git").exists():
        _fail("--mode workers: this folder is not a Git repository; pass --repository URL")
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
        _fail(str(exc))
    for path in write_export(files, target):
        typer.echo(str(path))
    try:
        notes = finish(to.value, target, root)
    except ExportError as exc:
        _fail_with(str(exc), code=exc.code)
    for note in notes:
        typer.echo(note, err=True)


@app.command("task", hidden=True)
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
        _fail("--run-id must not be empty")
    try:
        stages = (yaml.safe_load((root / DVC_FILE).read_text(encoding="utf-8")) or {})["stages"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        _fail(f"{DVC_FILE}: cannot read its stages ({exc}); run from the project root")
    if stage not in stages:
        _fail(f"no stage {stage!r} in {DVC_FILE}; known: {', '.join(stages)}")
    for path in upstream_lock or ():
        if not path.is_file():
            _fail(f"--upstream-lock {path}: no such file")
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
        _fail(f"--upstream-lock: {exc}")
    typer.echo(result.to_json())
    raise typer.Exit(code=result.exit_code)


@app.command("status")
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
        _fail(f"{exc}; or pass --model")
    raise AssertionError("unreachable")


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "unknown"


def _fail_registry(exc: registry.RegistryError) -> None:
    """Exit 1 when the tracking server is unavailable (retry later), 2 for anything else."""
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=1 if isinstance(exc, registry.RegistryUnavailableError) else 2)


def _fail(message: str) -> None:
    _fail_with(message, code=2)


def _fail_with(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=code)


if __name__ == "__main__":
    app()
