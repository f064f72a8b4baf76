"""`lifecycle simulate`: production traffic for a running service, then its ground truth.

Takes rows from the synthetic process (`features.synthetic`, with a drift scenario) or
replays recorded rows in the contract's shape (`features.replay`: the holdout split, any
file, with the scenario applied to the columns it changes), sends their id and feature
columns to the service (`POST /predict_batch`, or `/predict` one row at a time), counts the
answers by model version and, after a delay, writes the true outcome of every answered row
as a label batch, which the monitor stage joins to the prediction log by the id. Integer ids
start after every known one, so they never collide with earlier or training rows. Without a
row id in the contract the traffic is sent and no labels are written (nothing to join on).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from tenacity import (
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
)

from core.clock import utc_now
from core.config import Scenario, SyntheticSourceConfig
from core.io import read_table, table_format, write_parquet
from core.paths import HOLDOUT_SPLIT, VALIDATED_DATA
from features.contract import DataContract
from features.replay import ReplayError, fit_to_contract, number_rows, replay_rows
from features.synthetic import generate_process_data
from pipelines.edges.feedback import batch_file_name
from serving.prediction_log import read_prediction_log
from serving.schema import SERVED_ROLES, served_columns

logger = logging.getLogger(__name__)

MIN_FIRST_ID = 10_000_001  # far above any training row's id
API_KEY_HEADER = "X-API-Key"
ATTEMPTS = 3  # for requests the service cannot have processed
RETRIED_STATUS = frozenset({429, 503})
BODY_SHOWN_CHARS = 1000
PROGRESS_EVERY_S = 5.0
TIMEOUT = httpx.Timeout(connect=5.0, read=60.0, write=60.0, pool=5.0)


class SimulateError(RuntimeError):
    """A simulation that cannot run; the message is meant for the user."""


@dataclass
class SendReport:
    """What the service answered."""

    requests: int = 0
    answered: list[int] = field(default_factory=list)  # positions of the answered records
    by_version: Counter[str] = field(default_factory=Counter)
    failed_rows: int = 0
    errors: list[str] = field(default_factory=list)  # the first few, for the summary
    fatal: str | None = None  # why sending stopped early
    fatal_status: int | None = None  # the HTTP status that stopped it, if one did


@dataclass
class Simulation:
    """One run of `lifecycle simulate`, for the summary."""

    scenario: str
    seed: int
    rows: int
    first_id: int
    url: str
    key: str | None  # the contract's row id; None: it declares none
    report: SendReport
    labels_path: Path | None = None
    labels_rows: int = 0
    labels_note: str = ""  # why no labels were written
    replayed: Replay | None = None  # None: synthetic rows
    ids: str = ""  # the ids sent, e.g. "UDI 10000001..10000250"; empty: none
    changes: tuple[str, ...] = ()  # what the scenario did to replayed rows

    @property
    def unanswered(self) -> int:
        return self.rows - len(self.report.answered)

    def summary(self) -> list[str]:
        """What `lifecycle simulate` prints."""
        report = self.report
        versions = ", ".join(f"{v}: {n}" for v, n in sorted(report.by_version.items()))
        failed = f" (first: {report.errors[0]})" if report.errors else ""
        if self.labels_path is not None:
            labels = f"{self.labels_path} ({self.labels_rows} rows)"
        else:
            labels = f"not written ({self.labels_note})"
        what = [f"scenario {self.scenario}", f"seed {self.seed}", *([self.ids] if self.ids else [])]
        rows = f"{self.rows} rows"
        if self.replayed is not None:
            rows += f" of {self.replayed.source}"
            what.insert(0, "shuffled" if self.replayed.shuffle else "in file order")
        lines = [
            f"sent {rows} ({', '.join(what)}) to {self.url} in {report.requests} request(s)",
        ]
        if self.changes:
            lines.append(
                f"scenario {self.scenario}: {', '.join(self.changes)} "
                "(the labels are the rows' own)"
            )
        return [
            *lines,
            f"answered: {len(report.answered)} (by model version: {versions or 'none'})",
            f"failed: {report.failed_rows} rows{failed}",
            f"labels: {labels}",
        ]


@dataclass(frozen=True)
class Replay:
    """Recorded rows to replay, as `lifecycle simulate --rows-from` names them."""

    source: str  # the file, as the user or the default named it
    frame: pd.DataFrame  # in the contract's shape (`fit_to_contract`)
    shuffle: bool = False  # False: in file order (time order, as production sends)
    ramp_rows: int = 0  # rows over which the scenario grows from none; 0: a step


# --- pure -----------------------------------------------------------------------------


def label_key(contract: DataContract) -> str:
    """The id that names a row in requests and labels: the contract's row id.

    The monitor stage joins the label batches to the prediction log by this id.
    """
    return contract.require_row_id(" to join labels on")


def served_records(frame: pd.DataFrame, contract: DataContract) -> list[dict[str, Any]]:
    """The request records: each row's id and feature columns, by contract names, as JSON.

    An id column the rows do not hold is left out (ids are optional in a request).
    """
    names = [c.name for c in served_columns(contract) if c.name in frame.columns]
    return json.loads(frame[names].to_json(orient="records"))


def label_rows(frame: pd.DataFrame, contract: DataContract, answered: list[int]) -> pd.DataFrame:
    """The ground truth of the answered rows (positions): the key id and every unserved column.

    Unserved: every column a request does not carry (the label and the failure modes); those
    the rows do not hold are left out.
    """
    key = label_key(contract)
    unserved = [c.name for c in contract.columns if c.role not in SERVED_ROLES]
    truth = [key, *(name for name in unserved if name in frame.columns)]
    return frame.iloc[sorted(set(answered))][truth].reset_index(drop=True)


def labels_unavailable(frame: pd.DataFrame, contract: DataContract) -> str:
    """Why no labels can be written for these rows; empty when they can."""
    if contract.row_id is None:
        return (
            f"the data contract '{contract.name}' declares no unique id column (role id, "
            "unique: true), so labels cannot be joined to the predictions"
        )
    if contract.label not in frame.columns:
        return f"the rows have no '{contract.label}' column, the contract's label"
    return ""


def first_free_id(largest_known: int | None) -> int:
    """The first id after every known one, and never below `MIN_FIRST_ID`.

    The known ids are those of the label batches, the prediction log and the feedback
    batches (`largest_known_id`), so simulated rows cannot collide with earlier ones or with
    training rows.
    """
    return max(MIN_FIRST_ID, (largest_known or 0) + 1)


def check_url(url: str) -> str:
    """An http(s) URL with a host, without a trailing slash; ValueError otherwise."""
    parsed = httpx.URL(url) if "://" in url else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"not an http:// or https:// URL with a host: {url!r}")
    return url.rstrip("/")


# --- edges ----------------------------------------------------------------------------


def largest_known_id(
    key: str,
    labels_dir: Path,
    feedback_dir: Path,
    prediction_log_dir: Path,
    replayed: pd.DataFrame | None = None,
) -> int | None:
    """The largest `key` in the label batches, feedback batches, prediction log and the
    `replayed` rows (their file's own ids: training rows when it is the holdout)."""
    found: list[int] = []
    if replayed is not None and key in replayed.columns:
        found.extend(_largest(replayed[key]))
    tables = [
        *sorted(labels_dir.glob("batch-*.parquet")),
        *sorted(labels_dir.glob("batch-*.csv")),
        *sorted(feedback_dir.glob("batch-*.parquet")),
    ]
    for path in tables:
        frame = read_table(path)
        if key in frame.columns:
            found.extend(_largest(frame[key]))
    log = read_prediction_log(prediction_log_dir)
    if key in log.columns:
        found.extend(_largest(log[key]))
    return max(found, default=None)


def _largest(values: pd.Series) -> list[int]:
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    return [int(numbers.max())] if len(numbers) else []


def send_rows(client: httpx.Client, records: list[dict[str, Any]], batch_size: int) -> SendReport:
    """Post the records in batches (one at a time to /predict when `batch_size` is 1).

    Only requests that cannot have been processed are retried (connection refused, HTTP 429
    and 503), so no row is logged twice. A 4xx other than 429, or a service that cannot be
    reached, stops the run (`fatal`); other failures are counted and the run goes on.
    """
    report = SendReport()
    last_progress = time.perf_counter()
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        path = "/predict" if batch_size == 1 else "/predict_batch"
        body: Any = chunk[0] if batch_size == 1 else {"records": chunk}
        shown = f"POST {client.base_url.join(path)}"
        report.requests += 1
        try:
            response = _post(client, path, body)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            report.fatal = (
                f"cannot reach the service at {client.base_url} ({type(exc).__name__}: "
                f"{_first_line(exc)}); is `lifecycle serve` running there?"
            )
            break
        except httpx.TransportError as exc:  # read timeout, reset: it may have been served
            _count_failure(report, len(chunk), f"{shown}: {type(exc).__name__}: {exc}")
            continue
        status = response.status_code
        if 400 <= status < 500 and status not in RETRIED_STATUS:
            report.fatal = f"{shown}: HTTP {status} {response.reason_phrase}: {_shown(response)}"
            report.fatal_status = status
            break
        if not 200 <= status < 300:
            _count_failure(
                report,
                len(chunk),
                f"{shown}: HTTP {status} {response.reason_phrase}: {_shown(response)}",
            )
            continue
        answer = response.json()
        report.by_version[str(answer.get("model_version"))] += len(chunk)
        report.answered.extend(range(start, start + len(chunk)))
        if time.perf_counter() - last_progress >= PROGRESS_EVERY_S:
            last_progress = time.perf_counter()
            logger.info("answered %d of %d rows", len(report.answered), len(records))
    return report


def _post(client: httpx.Client, path: str, body: Any) -> httpx.Response:
    retrying = Retrying(
        stop=stop_after_attempt(ATTEMPTS),
        wait=wait_exponential(multiplier=0.5, max=5),
        retry=retry_if_exception_type((httpx.ConnectError, httpx.ConnectTimeout))
        | retry_if_result(lambda response: response.status_code in RETRIED_STATUS),
        retry_error_callback=lambda state: state.outcome.result(),  # the last answer
        reraise=True,
    )
    return retrying(client.post, path, json=body)


def _count_failure(report: SendReport, rows: int, message: str) -> None:
    report.failed_rows += rows
    if len(report.errors) < 5:
        report.errors.append(message)
    logger.warning("%s (%d rows not answered)", message, rows)


def _shown(response: httpx.Response) -> str:
    text = response.text.strip() or "(empty body)"
    return text if len(text) <= BODY_SHOWN_CHARS else f"{text[:BODY_SHOWN_CHARS]}..."


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def write_labels(labels: pd.DataFrame, directory: Path, scenario: str) -> Path:
    """Write a label batch atomically as `batch-<UTC time>-<scenario>.parquet`.

    `directory` is `monitor.labels.directory`, where the monitor stage reads label batches.
    """
    path = directory / batch_file_name(utc_now(), scenario)
    return write_parquet(labels, path)


def replayed_file(rows_from: str) -> Path:
    """The file `--rows-from` names: 'holdout' is the train stage's holdout split, else the
    validated data; anything else is a path."""
    if rows_from != "holdout":
        return Path(rows_from)
    for path in (HOLDOUT_SPLIT, VALIDATED_DATA):
        if path.is_file():
            return path
    raise SimulateError(
        f"no rows to replay: neither {HOLDOUT_SPLIT} nor {VALIDATED_DATA} exists; run "
        "`dvc repro` first, or pass --rows-from PATH (a CSV or Parquet file in the "
        "contract's shape)"
    )


def read_rows(path: Path, contract: DataContract) -> pd.DataFrame:
    """The rows of a CSV or Parquet file, in the contract's shape; SimulateError otherwise."""
    shown = str(path)
    if not path.is_file():
        raise SimulateError(f"{shown}: no such file")
    try:
        fmt = table_format(path)
    except ValueError as exc:  # neither .csv nor .parquet
        raise SimulateError(str(exc)) from None
    try:
        frame = read_table(path, fmt)
    except (OSError, ValueError) as exc:  # not a table of that format
        raise SimulateError(f"{shown}: cannot be read as {fmt}: {_first_line(exc)}") from None
    try:
        return fit_to_contract(frame, contract, shown)
    except ReplayError as exc:
        raise SimulateError(str(exc)) from None


def synthetic_rows(
    contract: DataContract,
    scenario: Scenario,
    rows: int,
    seed: int,
    first_id: int,
    process: SyntheticSourceConfig | None = None,
) -> pd.DataFrame:
    """Rows of the synthetic milling process; SimulateError when the contract is another's.

    `process` gives the plant's other settings (a ramp, a daily cycle); its rows, seed and
    scenario are replaced by these.
    """
    settings = (process or SyntheticSourceConfig()).model_dump()
    config = SyntheticSourceConfig.model_validate(
        {**settings, "rows": rows, "seed": seed, "scenario": scenario}
    )
    frame = generate_process_data(config, first_udi=first_id)
    needed = [*([contract.row_id] if contract.row_id else []), *contract.features]
    missing = [name for name in needed if name not in frame.columns]
    if missing:
        shown = ", ".join(f"'{name}'" for name in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise SimulateError(
            f"the synthetic generator makes the milling process's rows, which lack {shown}"
            f"{more} of the contract '{contract.name}'; replay your own rows instead: "
            "--rows-from holdout, or --rows-from PATH (CSV or Parquet)"
        )
    return frame


def simulate(
    contract: DataContract,
    scenario: Scenario,
    rows: int,
    seed: int,
    url: str,
    batch_size: int,
    first_id: int,
    api_key_env: str,
    labels_dir: Path | None,
    label_delay_s: float = 0.0,
    process: SyntheticSourceConfig | None = None,
    replay: Replay | None = None,
) -> Simulation:
    """Generate (or replay), send, wait, write the labels (unless `labels_dir` is None).

    Synthetic rows unless `replay` names recorded ones; `process` gives the synthetic
    plant's other settings (`synthetic_rows`). The API key is read from the environment
    variable `api_key_env`, when it is set. Labels are written only when the contract has
    a row id and the rows hold the label; otherwise the summary says why.
    """
    key = contract.row_id
    changes: tuple[str, ...] = ()
    if replay is None:
        frame = synthetic_rows(contract, scenario, rows, seed, first_id, process)
    else:
        try:
            replayed = replay_rows(
                replay.frame, contract, scenario, rows, seed, replay.shuffle, replay.ramp_rows
            )
            frame = number_rows(replayed.frame, contract, first_id)
        except ReplayError as exc:
            raise SimulateError(str(exc)) from None
        changes = replayed.changes
    ids = ""
    if key is not None:
        numbered = contract.by_name[key].dtype == "integer" or replay is None
        ids = f"{key} {first_id}..{first_id + rows - 1}" if numbered else f"{key} as recorded"
    api_key = os.environ.get(api_key_env)
    headers = {API_KEY_HEADER: api_key} if api_key else {}
    source = "synthetic" if replay is None else replay.source
    logger.info(
        "sending %d rows (%s, scenario %s, seed %d%s) to %s",
        rows, source, scenario, seed, f", {ids}" if ids else "", url,
    )  # fmt: skip
    with httpx.Client(base_url=url, timeout=TIMEOUT, headers=headers) as client:
        report = send_rows(client, served_records(frame, contract), batch_size)
    if report.fatal_status == 401 and not api_key:
        report.fatal += f" (no API key was sent: {api_key_env} is not set; see --api-key-env)"
    result = Simulation(scenario, seed, rows, first_id, url, key, report, replayed=replay)
    result.ids, result.changes = ids, changes
    unavailable = labels_unavailable(frame, contract)
    if labels_dir is None:
        result.labels_note = "--no-labels"
        return result
    if unavailable:
        result.labels_note = unavailable
        return result
    if not report.answered:
        result.labels_note = "no row was answered"
        return result
    if label_delay_s > 0:
        logger.info("waiting %g s before writing the labels (--label-delay)", label_delay_s)
        time.sleep(label_delay_s)
    labels = label_rows(frame, contract, report.answered)
    result.labels_path = write_labels(labels, labels_dir, scenario)
    result.labels_rows = len(labels)
    return result
