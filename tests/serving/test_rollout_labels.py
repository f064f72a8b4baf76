"""A candidate worse on labelled live rows, over real HTTP: shadow, labels, the watch's judge.

One `lifecycle serve` serves v1 (a real gradient-boosting model) with v5 in shadow: the same
family fitted on labels shuffled out of their rows (a corrupted label feed), so its scores
agree with the champion's no better than chance would. Real requests carry row ids; their
ground truth arrives later as a labels batch in `monitor.labels.directory`, written the way
`lifecycle simulate` writes it. The watch's own reader (`rollout_control.rollout_rows`: the
prediction log since the rollout started, labels joined by the contract's id) and the pure
judge decide: the labelled guard (the deploy gate's paired bootstrap, on the live rows
both scored) breaks, the verdict is abort, and its reason names it. No request fails.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from core.clock import format_time, utc_now
from core.columns import SHADOW_PROBABILITY
from core.config import DeployConfig, SyntheticSourceConfig
from core.records.rollout import RolloutSlot
from features.contract import load_contract
from features.synthetic import generate_process_data
from lifecycle.simulate import write_labels
from models.rollout import judge_rollout
from pipelines.edges.rollout_control import rollout_rows
from serving.model_store import export_model, load_served_model, slot_model
from serving.model_store import write_champion_pointer as point
from tests.serving.server import (
    CONTRACT_PATH,
    MODEL_NAME,
    serve,
    train_tiny_model,
    write_project,
)

pytestmark = pytest.mark.slow

CONTRACT = load_contract(CONTRACT_PATH)
ROWS = 1500  # about 50 failures at the published rate: beyond labelled.min_positives (5)


def _scored_rows(slot: RolloutSlot, root: Path) -> tuple[pd.DataFrame, pd.Series | None]:
    """The rollout's rows as the watch reads them, once the shadow has scored all ROWS (its
    rows reach the log when scored, within its CPU budget)."""
    deadline = time.monotonic() + 60
    while True:
        rows, labels = rollout_rows(slot, root / "predictions", root / "labels", CONTRACT)
        scored = rows[SHADOW_PROBABILITY].notna().sum() if SHADOW_PROBABILITY in rows else 0
        if scored >= ROWS or time.monotonic() > deadline:
            return rows, labels
        time.sleep(0.2)


def test_a_candidate_worse_on_labelled_live_rows_is_aborted_with_its_reason(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    champion = train_tiny_model(tmp_path / "m1")
    worse = train_tiny_model(tmp_path / "m5", shuffled_labels=True)
    tags = {
        version: export_model(
            model.directory,
            MODEL_NAME,
            version,
            f"run-v{version}",
            model.content_sha256,
            0.5,
            store,
        )
        for version, model in ((1, champion), (5, worse))
    }
    slot = RolloutSlot(
        id="shadow-v5-labelled",
        kind="shadow",
        model=slot_model(load_served_model(tags[5], store)),
        started_at=format_time(utc_now()),
    )
    point(store, load_served_model(tags[1], store), slot)
    write_project(
        tmp_path,
        {
            "store": "store",
            "workers": 1,
            "max_batch_rows": ROWS,
            "max_body_bytes": 4_000_000,
            "prediction_log": {"directory": "predictions", "flush_interval_s": 0.2},
        },
    )
    traffic = generate_process_data(SyntheticSourceConfig(rows=ROWS, seed=23))
    traffic["UDI"] = range(300_000, 300_000 + ROWS)
    records = json.loads(traffic[[*CONTRACT.ids, *CONTRACT.features]].to_json(orient="records"))

    with serve(tmp_path) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        answers = [
            client.post("/predict_batch", json={"records": records[i : i + 500]})
            for i in range(0, ROWS, 500)
        ]
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
        assert {p["model_version"] for a in answers for p in a.json()["predictions"]} == {"v1"}
        rows, labels = _scored_rows(slot, tmp_path)
    assert len(rows) == ROWS and rows[SHADOW_PROBABILITY].notna().all()
    assert labels is None  # no ground truth yet: the labelled guard waits

    pending = judge_rollout(rows, labels, slot, "v1", DeployConfig(), utc_now())
    labelled = next(g for g in pending.guards if g.name.startswith("labelled_"))
    assert labelled.holds is None, labelled.detail

    write_labels(traffic[[*CONTRACT.ids, CONTRACT.label]], tmp_path / "labels", "none")
    rows, labels = rollout_rows(slot, tmp_path / "predictions", tmp_path / "labels", CONTRACT)
    assert labels is not None and int(labels.notna().sum()) == ROWS
    verdict = judge_rollout(rows, labels, slot, "v1", DeployConfig(), utc_now())
    labelled = next(g for g in verdict.guards if g.name.startswith("labelled_"))
    assert labelled.holds is False, labelled.detail
    assert verdict.outcome == "abort", verdict
    assert any(labelled.name in reason for reason in verdict.reasons), verdict.reasons
    # the unlabelled guards could not tell: it never raised, and it answers as fast
    assert next(g for g in verdict.guards if g.name == "error_rate").holds is True
