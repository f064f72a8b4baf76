"""Process set-up shared by every entry point: logging, timing, retries, the ledger, clean failure.

`run_stage` runs a stage's body under the `retry` block of `params.yaml`: an exception whose
class (or a base class) is named in `retry.transient` is retried with exponential backoff
and jitter, anything else fails the stage at once. Every attempt is recorded in the stage
ledger (`pipelines.edges.ledger`). When params.yaml cannot be used, the default retry settings
apply and the stage's own reading of it fails at once with the `ConfigError`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from core import OUR_PACKAGES, exit_codes
from core.config import ConfigError, RetryConfig, StageRetryConfig, load_params
from pipelines.edges import ledger

logger = logging.getLogger(__name__)


def configure_logging(level: str | None = None) -> None:
    """Configure logging once, in the entry point."""
    logging.basicConfig(
        level=(level or os.environ.get("LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # httpx logs every request's full URL at INFO, credentials and query tokens included
    logging.getLogger("httpx").setLevel(logging.WARNING)


@contextlib.contextmanager
def timed(what: str) -> Iterator[None]:
    """Log the start of a block and how long it took."""
    start = time.perf_counter()
    logger.info("%s: started", what)
    try:
        yield
    finally:
        logger.info("%s: done in %.2f s", what, time.perf_counter() - start)


def run_stage(name: str, body: Callable[[], None]) -> None:
    """Run a stage's body, retrying transient failures; on failure log why and exit non-zero.

    The exit code says what kind of failure it was (`core.exit_codes`): 75 transient with the
    attempts used up, 2 bad config or contract, 1 anything else. Under an orchestrator that
    owns the retries (`LIFECYCLE_RETRY_OWNER=orchestrator`) the stage makes one attempt.
    """
    configure_logging()
    retry, transient = _retry_settings(name)
    if os.environ.get(exit_codes.RETRY_OWNER_ENV) == exit_codes.ORCHESTRATOR:
        retry = retry.model_copy(update={"attempts": 1})  # the orchestrator retries on 75
    start = time.perf_counter()
    logger.info("stage %s: started", name)
    _refuse_a_second_lifecycle_run(name)
    stage = _StageAttempts(name, retry.attempts, transient)
    retrying = Retrying(
        stop=stop_after_attempt(retry.attempts),
        wait=wait_exponential(multiplier=retry.backoff_initial_s, max=retry.backoff_max_s)
        + wait_random(0, retry.jitter_s),
        retry=retry_if_exception(stage.is_transient),
        before_sleep=stage.log_retry,
        reraise=True,
    )
    with ledger.lifecycle_run(ledger.lifecycle_run_id()):
        try:
            for attempt in retrying:
                with attempt:
                    stage.run(body, attempt.retry_state.attempt_number)
        except Exception as exc:  # the edge of the process: report, then exit non-zero
            after = f" after {stage.attempts} attempts" if stage.attempts > 1 else ""
            # errors raised by our own packages carry a message meant for the user
            if type(exc).__module__.split(".")[0] in OUR_PACKAGES:
                logger.error("stage %s failed%s: %s", name, after, exc)
            else:
                logger.exception("stage %s failed%s with an unexpected error", name, after)
            code = exit_codes.exit_code_for(exc, transient)
            logger.info(
                "stage %s: failed after %.2f s (exit code %d: %s)",
                name,
                time.perf_counter() - start,
                code,
                _EXIT_MEANING[code],
            )
            end_stage_process(name, code)
    logger.info("stage %s: succeeded in %.2f s", name, time.perf_counter() - start)
    end_stage_process(name, 0)


_EXIT_MEANING = {
    exit_codes.TRANSIENT: "transient, worth another attempt later",
    exit_codes.FAILED: "permanent, retrying will not help",
    exit_codes.BAD_CONFIG: "fix params.yaml or the data contract",
}


def end_stage_process(stage: str, code: int) -> None:
    """Exit with `code`; at once when this stage is the process (`python -m pipelines.<stage>`).

    Tearing the interpreter down after MLflow, scikit-learn or Great Expectations were
    imported takes 1 to 2 s here (freeing thousands of objects of hundreds of modules),
    more than some stages' work. Every output is written and fsynced by then (`core.io`) and
    the ledger has the outcome, so the process runs its exit handlers, flushes its streams
    and leaves with `os._exit`. Run in-process (tests, other code), it returns on success and
    raises SystemExit otherwise, as `sys.exit` would.
    """
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is None or spec.name != f"pipelines.{stage}":
        if code:
            sys.exit(code)
        return
    atexit._run_exitfuncs()  # logging.shutdown and the libraries' own handlers
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


class _StageAttempts:
    """One stage's attempts: each runs the body and is recorded in the ledger."""

    def __init__(self, name: str, max_attempts: int, transient: frozenset[str]) -> None:
        self.name = name
        self.max_attempts = max_attempts
        self.transient = transient
        self.attempts = 0
        self._inputs: dict[str, str | None] | None = None

    def run(self, body: Callable[[], None], number: int) -> None:
        self.attempts = number
        run_id = ledger.lifecycle_run_id()
        started = ledger.start_attempt(run_id, self.name, number, self.max_attempts)
        try:
            body()
        except KeyboardInterrupt as exc:
            ledger.finish_attempt(started, "interrupted", exc, self._hashed_inputs())
            raise
        except Exception as exc:
            error = _as_tracking_error(exc)
            retrying = self.is_transient(error) and number < self.max_attempts
            ledger.finish_attempt(
                started, "failed", error, self._hashed_inputs(), retrying=retrying
            )
            _end_leftover_mlflow_run()
            if error is exc:
                raise
            raise error from exc
        ledger.finish_attempt(started, "succeeded", None, self._hashed_inputs())

    def is_transient(self, error: BaseException) -> bool:
        """True when the error's class or one of its bases is named in `retry.transient`."""
        return any(cls.__name__ in self.transient for cls in type(error).__mro__)

    def log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait_s = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning(
            "stage %s: attempt %d of %d failed (%s: %s); retrying in %.1f s",
            self.name,
            state.attempt_number,
            self.max_attempts,
            type(error).__name__,
            error,
            wait_s,
        )

    def _hashed_inputs(self) -> dict[str, str | None] | None:
        """The stage's deps hashed once per stage (they do not change between attempts)."""
        if self._inputs is None:
            start = time.perf_counter()
            try:
                self._inputs = ledger.stage_inputs(self.name)
            except Exception as exc:  # the ledger must never fail the stage
                logger.warning(
                    "ledger: cannot hash the inputs of stage %s (%s: %s)",
                    self.name,
                    type(exc).__name__,
                    exc,
                )
                return None
            logger.debug(
                "hashed %d inputs in %.2f s", len(self._inputs), time.perf_counter() - start
            )
        return self._inputs


def _refuse_a_second_lifecycle_run(stage: str) -> None:
    """Exit when another `dvc repro` works on this project (it is not the one that started
    this stage): DVC locks only the files of the stage it runs, so a second repro would run
    the stages whose files are free at the time, overwriting what the first one uses. The
    refusal is not a ledger attempt: `lifecycle status` keeps showing the running one."""
    try:
        others = ledger.other_dvc_repros()
    except Exception as exc:  # the check must never be why a stage fails
        logger.debug("cannot look for other dvc repro processes: %s", exc)
        return
    if others:
        pid, command = others[0]
        logger.error(
            "stage %s refused: another `dvc repro` is running in this project (pid %d: %s); "
            "two lifecycle runs at once overwrite each other's files. Wait for it to finish "
            "(`lifecycle status` shows its stages) or stop it, then run dvc repro again",
            stage,
            pid,
            command,
        )
        sys.exit(1)


def _retry_settings(stage: str) -> tuple[RetryConfig, frozenset[str]]:
    """The stage's retry settings from params.yaml; the defaults when it cannot be used."""
    try:
        config = load_params().retry
    except ConfigError as exc:
        logger.debug("default retry settings: %s", exc)  # the stage itself reports the error
        config = StageRetryConfig()
    return config.for_stage(stage), frozenset(config.transient)


def _as_tracking_error(exc: Exception) -> BaseException:
    """MLflow's connection failures as `TrackingUnavailableError`, for MLflow calls a stage
    makes outside `Tracking.stage_run` (where they are converted already)."""
    tracking = sys.modules.get("pipelines.edges.tracking")  # only a stage that tracks imports it
    if tracking is None:
        return exc
    return tracking.unavailable_error(exc) or exc


def _end_leftover_mlflow_run() -> None:
    """End an MLflow run a failed attempt left active, so the next one can start its own."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is None or mlflow.active_run() is None:
        return
    with contextlib.suppress(Exception):  # MLflow drops the run first, then tells the server
        mlflow.end_run("FAILED")
