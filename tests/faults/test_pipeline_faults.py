"""Faults in a real `dvc repro`: two runs at once, a killed training, damaged or failing data.

One temporary copy of the repository goes through the faults in order, each test starting
from the state the one before left:

1. two runs at once: the copy's first run, and a second `dvc repro` started while it
   trains (refused by DVC's lock; the first completes);
2. SIGKILL of the train process while it fits (nothing half-written; the next run resumes
   at train and completes);
3. the raw dataset damaged on disk after a good run; a flaky HTTP source; a source that
   stays down; a source answering garbage; a truncated Parquet file; a label column that
   is all null. Each stops where it should, with a message naming the problem, and leaves
   the champion and every later output as they were.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from core.config import SyntheticSourceConfig
from core.model_files import load_model
from features.synthetic import generate_process_data
from tests.e2e.conftest import BIN, ProjectCopy
from tests.faults.conftest import (
    AFTER_INGEST,
    AFTER_VALIDATE,
    ROWS,
    STAGES,
    Champion,
    assert_consistent,
    champion,
    digests,
    dvc,
    fast_lifecycle,
    lifecycle_status,
    start_repro,
)
from tests.pipelines.edges.test_sources import Reply, ScriptedServer

pytestmark = pytest.mark.slow

LABEL = "Machine failure"
LOOPBACK = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
FAST_RETRY = {"attempts": 3, "backoff_initial_s": 0.05, "backoff_max_s": 0.2, "jitter_s": 0.05}


@pytest.fixture(scope="module")
def copy(project_copy: ProjectCopy) -> ProjectCopy:
    project_copy.edit_params(fast_lifecycle)
    return project_copy


@pytest.fixture(scope="module")
def source() -> Iterator[ScriptedServer]:
    """A real local HTTP server answering scripted replies per path."""
    with ScriptedServer() as running:
        yield running


def _good_rows() -> pd.DataFrame:
    """The rows the synthetic source gives with the copy's params."""
    return generate_process_data(SyntheticSourceConfig(rows=ROWS))


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode()


def _use_http(copy: ProjectCopy, url: str) -> None:
    def edit(raw: dict) -> None:
        raw["ingest"]["source"] = "http"
        raw["ingest"]["http"].update(url=url, retry=FAST_RETRY)

    copy.edit_params(edit)


def _use_file(copy: ProjectCopy, path: Path) -> None:
    def edit(raw: dict) -> None:
        raw["ingest"]["source"] = "file"
        raw["ingest"]["file"]["path"] = str(path)

    copy.edit_params(edit)


def _snapshot(copy: ProjectCopy, paths: list[str]) -> tuple[dict[str, str | None], Champion]:
    return digests(copy, paths), champion(copy)


# --- 1. two runs at once ----------------------------------------------------------------


def test_a_second_run_while_the_first_trains_is_refused(copy: ProjectCopy) -> None:
    first = start_repro(copy, name="first")
    try:
        first.wait_for("stage train: started")
        second = copy.repro()
        first_result = first.finish()
    finally:
        first.kill()

    # DVC releases its repository lock while a stage's command runs and keeps a lock per
    # output: the second run gets as far as the first stage whose files the first run holds.
    assert second.returncode != 0
    assert second.ran == []
    assert "is busy, it is being blocked by:" in second.output, second.output
    assert f"(PID {first.process.pid}): {BIN / 'dvc'} repro" in second.output, second.output
    assert "If there are no processes with such PIDs, you can manually remove" in second.output

    assert first_result.returncode == 0, first_result.output[-3000:]
    assert first_result.ran == STAGES
    state = champion(copy)
    assert state.aliases == {"champion": 1}
    assert_consistent(state)
    status = dvc(copy, "status")
    assert "Data and pipelines are up to date." in status.stdout, status.stdout + status.stderr


# --- 2. SIGKILL while training ----------------------------------------------------------


def test_sigkill_while_training_leaves_no_half_written_model(copy: ProjectCopy) -> None:
    before, state = _snapshot(copy, AFTER_VALIDATE)
    old_meta = json.loads(copy.read("artifacts/model/meta.json"))
    # a bigger model: cross-validation and fit last a few seconds, time to kill inside them
    copy.edit_params(lambda raw: raw["train"]["hist_gradient_boosting"].update(max_iter=150))
    run = start_repro(copy, name="killed")
    try:
        run.wait_for("3-fold out-of-fold predictions: started")
        run.stage_process("train").kill()  # SIGKILL, as the OOM killer sends it
        killed = run.finish()
    finally:
        run.kill()

    assert killed.returncode != 0
    assert killed.ran == ["train"]
    # DVC runs the command through $SHELL: bash execs it and reports the signal (-9);
    # dash (/bin/sh, used when SHELL is unset, as in CI) forks and reports 128 + 9
    assert re.search(
        r"ERROR: failed to reproduce 'train': failed to run: python -m pipelines\.train, "
        r"exited with (-9|137)\n",
        killed.output,
    ), killed.output[-3000:]

    # nothing half-written: DVC deleted train's outputs before running it, and the killed
    # process wrote no model; the splits, written before the fits, are identical bytes
    model_dir = copy.path / "artifacts/model"
    assert not model_dir.exists()
    assert not (copy.path / "reports/train/metrics.json").exists()
    kept = [p for p in AFTER_VALIDATE if not p.startswith(("artifacts/model", "reports/train"))]
    assert digests(copy, kept) == {p: before[p] for p in kept}
    assert champion(copy) == state  # the service's model lives in the store, not here

    status = dvc(copy, "status").stdout
    assert "train:\n\tchanged deps:\n\t\tparams.yaml:\n\t\t\tmodified:           train" in status
    assert "\tchanged outs:\n\t\tdeleted:            artifacts/model" in status
    assert [line[:-1] for line in status.splitlines() if not line.startswith("\t")] == [
        "train",
        "evaluate",
        "deploy",
    ], status

    train = lifecycle_status(copy)["train"]  # the stage ledger saw it start, never finish
    assert train["state"] == "interrupted" and "killed: no finish recorded" in train["note"]

    # the last complete model is in DVC's cache, intact
    restored = dvc(copy, "checkout", "artifacts/model")
    assert restored.returncode == 0, restored.stderr
    assert load_model(model_dir).meta["content_sha256"] == old_meta["content_sha256"]


def test_the_run_after_the_kill_resumes_at_train(copy: ProjectCopy) -> None:
    result = copy.repro()

    assert result.returncode == 0, result.output[-3000:]
    assert result.ran[:3] == ["train", "evaluate", "deploy"]  # ingest and validate kept
    assert set(result.ran) <= {"train", "evaluate", "deploy", "monitor"}
    loaded = load_model(copy.path / "artifacts/model")
    assert loaded.meta["hyperparameters"]["max_iter"] == 150
    assert_consistent(champion(copy))  # promoted or not, every record agrees
    assert "Data and pipelines are up to date." in dvc(copy, "status").stdout


# --- 3. damaged or failing data ---------------------------------------------------------


def test_a_raw_dataset_damaged_on_disk_is_rebuilt_by_ingest(copy: ProjectCopy) -> None:
    raw = copy.path / "data/raw/dataset.parquet"
    good = raw.read_bytes()
    before, state = _snapshot(copy, AFTER_INGEST)
    raw.write_bytes(good[: len(good) // 2])  # a truncated write, a bad disk, a stray editor

    status = dvc(copy, "status").stdout
    assert "ingest:\n\tchanged outs:\n\t\tmodified:           data/raw/dataset.parquet" in status
    result = copy.repro()

    # DVC sees the output no longer matches dvc.lock and re-runs ingest; the source gives
    # the same bytes, so validate and everything after it are up to date
    assert result.returncode == 0, result.output[-3000:]
    assert result.ran == ["ingest"]
    assert "Stage 'validate' didn't change, skipping" in result.output
    assert raw.read_bytes() == good
    assert _snapshot(copy, AFTER_INGEST) == (before, state)


def test_a_flaky_http_source_is_retried_until_it_answers(
    copy: ProjectCopy, source: ScriptedServer
) -> None:
    rows = _good_rows()
    url = source.route(
        "/flaky.csv", Reply(503, b"busy"), Reply(503, b"busy"), Reply(body=_csv_bytes(rows))
    )
    _use_http(copy, url)
    before, state = _snapshot(copy, AFTER_INGEST)

    result = copy.repro("ingest", env=LOOPBACK)

    assert result.returncode == 0, result.output[-3000:]
    assert result.ran == ["ingest"]
    for attempt in (1, 2):
        assert (
            f"GET {url}: attempt {attempt} of 3 failed: HTTP 503 Service Unavailable; retrying in"
        ) in result.output, result.output
    assert source.hits["/flaky.csv"] == 3
    metadata = json.loads(copy.read("data/raw/metadata.json"))
    assert metadata["source"]["url"] == url and metadata["rows"] == len(rows)
    assert _snapshot(copy, AFTER_INGEST) == (before, state)  # `dvc repro ingest` stops there


def test_a_source_down_past_the_retries_stops_at_ingest(
    copy: ProjectCopy, source: ScriptedServer
) -> None:
    url = source.route("/down.csv", Reply(503, b"maintenance"))
    _use_http(copy, url)
    before, state = _snapshot(copy, AFTER_INGEST)

    result = copy.repro(env=LOOPBACK)

    assert result.returncode != 0
    assert result.ran == ["ingest"]
    assert (
        f"stage ingest failed: GET {url}: gave up after 3 attempt(s); "
        "last error: HTTP 503 Service Unavailable"
    ) in result.output, result.output
    assert source.hits["/down.csv"] == 3  # a source that gave up is not retried again
    _assert_stopped_at_ingest(copy, before, state)


def test_a_source_answering_garbage_stops_at_ingest(
    copy: ProjectCopy, source: ScriptedServer
) -> None:
    garbage = bytes(range(256)) * 64  # HTTP 200, but binary noise where a CSV should be
    url = source.route("/garbage.csv", Reply(body=garbage))
    _use_http(copy, url)
    before, state = _snapshot(copy, AFTER_INGEST)

    result = copy.repro(env=LOOPBACK)

    assert result.returncode != 0
    assert result.ran == ["ingest"]
    assert f"stage ingest failed: {url}: not a text CSV file (not valid UTF-8" in result.output
    assert source.hits["/garbage.csv"] == 1  # a complete answer is not retried
    _assert_stopped_at_ingest(copy, before, state)


def test_a_truncated_parquet_file_stops_at_ingest(copy: ProjectCopy, tmp_path: Path) -> None:
    whole = io.BytesIO()
    _good_rows().to_parquet(whole, index=False)
    truncated = tmp_path / "dataset.parquet"
    truncated.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    _use_file(copy, truncated)
    before, state = _snapshot(copy, AFTER_INGEST)

    result = copy.repro()

    assert result.returncode != 0
    assert result.ran == ["ingest"]
    assert (
        f"stage ingest failed: {truncated}: cannot be parsed as parquet: "
        "Could not open Parquet input source '<Buffer>': Parquet magic bytes not found in footer"
    ) in result.output, result.output
    _assert_stopped_at_ingest(copy, before, state)


def _assert_stopped_at_ingest(
    copy: ProjectCopy, before: dict[str, str | None], state: Champion
) -> None:
    """Validate and every later stage did not run; their outputs and the champion stay."""
    assert _snapshot(copy, AFTER_INGEST) == (before, state)
    # DVC deletes a stage's outputs before running it: a failed ingest leaves no raw
    # dataset (the last good one stays in DVC's cache), so nothing can read a partial one
    assert not (copy.path / "data/raw/dataset.parquet").exists()


def test_a_label_column_all_null_stops_at_validate(copy: ProjectCopy, tmp_path: Path) -> None:
    rows = _good_rows()
    rows[LABEL] = None
    path = tmp_path / "no-labels.csv"
    path.write_bytes(_csv_bytes(rows))
    _use_file(copy, path)
    before, state = _snapshot(copy, AFTER_VALIDATE)

    result = copy.repro()

    assert result.returncode != 0
    assert result.ran == ["ingest", "validate"]
    for line in (
        "stage validate failed: data contract 'milling': 2 of 65 expectations failed on "
        f"{ROWS} rows",
        f"  - column '{LABEL}': {ROWS} null values (the column is not nullable)",
        f"  - column '{LABEL}': no label rate: the column has no non-null values, expected "
        "within [0.005, 0.25] (validate.label_rate)",
    ):
        assert line in result.output, result.output
    assert "Traceback" not in result.output
    assert _snapshot(copy, AFTER_VALIDATE) == (before, state)
    assert not (copy.path / "data/validated/dataset.parquet").exists()  # nothing to train on
