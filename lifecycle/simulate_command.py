"""`lifecycle simulate`: production traffic for a running service, then its ground truth.

The traffic itself is `lifecycle.simulate`; this is the command's options and checks.
"""

from __future__ import annotations

from typing import Annotated

import typer

from core.config import Scenario
from lifecycle.exits import fail, fail_with

ROWS_FROM_HELP = (
    "Where the rows come from: 'synthetic' (the milling generator, features/synthetic.py), "
    "'holdout' (the train stage's holdout split, else the validated data), or a CSV or "
    "Parquet file in the contract's shape. Default: synthetic when ingest.source is "
    "synthetic, else holdout."
)


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
        fail(str(exc))
    serving = params.serving
    host = "127.0.0.1" if serving.host in ("0.0.0.0", "::") else serving.host
    try:
        url = check_url(url or f"http://{host}:{serving.port}")
    except ValueError as exc:
        fail(f"--url: {exc}")
    source = rows_from or ("synthetic" if params.ingest.source == "synthetic" else "holdout")
    replay = None
    try:
        if source != "synthetic":
            path = replayed_file(source)
            replay = Replay(str(path), read_rows(path, contract), shuffle, ramp_rows)
    except SimulateError as exc:
        fail(str(exc))
    if replay is None and rows is None:
        fail("--rows: say how many synthetic rows to send (a replayed file sends its own)")
    if replay is None and shuffle:
        fail("--shuffle reorders a replayed file's rows; synthetic rows have no file order")
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
        fail(str(exc))
    for line in done.summary():
        typer.echo(line)
    if done.report.fatal:
        fail_with(done.report.fatal, code=1)
    if done.unanswered:
        fail_with(f"{done.unanswered} of {rows} rows were not answered", code=1)
