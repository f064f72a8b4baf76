"""`lifecycle serve`: start the BentoML service with the environment it needs before it loads."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from lifecycle.exits import fail

logger = logging.getLogger(__name__)


# What `lifecycle serve` starts, and the thread counts it sets for the numeric libraries
SERVICE = "serving.service:Predictor"
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


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
        fail(str(exc))
    store = config.store.resolve()
    try:
        shared = shared_store_url(config.shared_store_env)  # a bad URL: one line, exit 2
        pointer = read_champion_pointer(store) if shared is None else None
    except ModelStoreError as exc:
        fail(str(exc))
    if shared is None and pointer is None:
        fail(
            f"no champion in the model store {store}: run `dvc repro` first "
            "(the deploy stage exports the champion there)"
        )
    host, port = host or config.host, port or config.port
    argv, env = _serve_invocation(host, port, config.numeric_threads, store, params_path)
    try:  # the shared prediction log names this replica by the port it really listens on
        env[config.replica_id_env] = replica_id(config.replica_id_env, port)
    except ModelStoreError as exc:
        fail(str(exc))
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
