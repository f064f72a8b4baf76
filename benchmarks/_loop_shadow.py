"""The shadow arm of `benchmarks/bench_loop.py`: from the candidate in shadow to champion.

After the retrain's deploy started a shadow rollout (the champion pointer's `rollout`
block names v2 beside the unchanged champion v1), `lifecycle watch --once` runs again and
again, back to back (not every `monitor.watch.interval_s`), while the steady client keeps
posting: each iteration judges the rollout on the traffic logged since it started, and
promotes v2 once every guard holds over `deploy.rollout.min_rows` and `min_duration_s` (or
aborts it on a breach). The defaults are kept: the benchmark does not shorten them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks._loop_parts import first_shadow_score, run, watch_records

JUDGE_LIMIT_S = 1800.0  # the shadow arm gives up on a verdict after this long
TERMINAL = ("promote", "abort")


def use_strategy(project: Path, strategy: str) -> dict[str, Any]:
    """Set `deploy.rollout.strategy` in the copy's params.yaml; the rollout block as set."""
    path = project / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["deploy"]["rollout"]["strategy"] = strategy
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return raw["deploy"]["rollout"]


def candidate_started(project: Path, store: str) -> tuple[dict[str, Any] | None, float]:
    """The serving pointer's rollout block after the retrain and the pointer's mtime."""
    pointer = project / store / "champion.json"
    return json.loads(pointer.read_text()).get("rollout"), pointer.stat().st_mtime


def judge_until_done(project: Path, params: dict[str, Any], t0_wall: float) -> dict[str, Any]:
    """`lifecycle watch --once` back to back until the rollout's verdict is promote or
    abort (or JUDGE_LIMIT_S): what the iterations did, times from `t0_wall`."""
    started = time.monotonic()
    out: dict[str, Any] = {"judge_iterations": 0, "judge_watch_s": [], "judge_errors": []}
    shadow_at = None
    verdict: dict[str, Any] = {}
    while time.monotonic() - started < JUDGE_LIMIT_S:
        code, tail, seconds = run(project, "lifecycle", "watch", "--once")
        out["judge_iterations"] += 1
        out["judge_watch_s"].append(round(seconds, 1))
        if shadow_at is None:
            shadow_at = first_shadow_score(project, params, "v2")
        record = watch_records(project, params)[-1] if code == 0 else {}
        step = record.get("rollout") or {}
        if code != 0 or step.get("error") or record.get("error"):
            out["judge_errors"].append((step.get("error") or record.get("error") or tail)[-300:])
        if record.get("action") not in (None, "none", "skipped"):
            out.setdefault("judge_other_actions", []).append(record["action"])
        verdict = step.get("verdict") or {}
        if verdict.get("outcome") in TERMINAL:
            out["verdict_moved_s"] = round(time.time() - t0_wall, 1)
            break
    out.update(
        first_shadow_score_s=None if shadow_at is None else round(shadow_at - t0_wall, 1),
        judge_s=round(time.monotonic() - started, 1),
        outcome=verdict.get("outcome"),
        verdict_rows=verdict.get("rows"),
        verdict_elapsed_s=verdict.get("elapsed_s"),
        verdict_reasons=verdict.get("reasons"),
        verdict_guards={
            g["name"]: g["value"] for g in verdict.get("guards", []) if g.get("value") is not None
        },
    )
    return out
