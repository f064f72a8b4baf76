"""Benchmark: does the monitor retrain when drift matters, and only then?

    python benchmarks/bench_drift.py                    # benchmarks/results/drift.{json,md}
    python benchmarks/bench_drift.py --folds 4 --seeds 5   # a quick look (same files)

Every window is judged by `monitoring.assessment.assess_window` and
`monitoring.verdict.decide_window` at the defaults of `params.yaml`: exactly what the
monitor stage decides. Two data sets:

- **The real AI4I 2020 file** (`../shared/datasets/ai4i2020.csv`, one series of 10,000 rows
  in time order). `--folds` folds each hold out 5,000 consecutive rows (circular) and train
  a champion on the other rows, read through the `file` source and trained as the train
  stage trains (profile included). The held-out rows give windows of 5,000 and 1,000
  consecutive rows (the no-drift case), and the perturbations of `benchmarks/_drift_cases.py`
  applied to those windows give the drifted cases. Each perturbation is labelled harmful or
  benign once, on all held-out rows of all folds pooled: harmful when the champions'
  realized average precision falls by more than `deploy.tolerance`.
- **The synthetic process** (the default source): one champion on 20,000 rows (seed 2020);
  windows of each generator scenario with fresh seeds, labelled harmful or benign the same
  way on 50,000 rows.

Both are judged on consecutive rows (what production traffic is) and on rows sampled at
random from the same stretch ("independent", what the benchmark measured before). Each
window is judged twice: before its labels arrive, and with them. Detected = a retrain or an
alert; a false alarm = a retrain verdict on an unperturbed window.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._drift_cases import PERTURBATIONS, make_folds
from benchmarks._measure import machine, write_results

ROOT = Path(__file__).resolve().parents[1]
REAL_FILE = ROOT.parent / "shared" / "datasets" / "ai4i2020.csv"
# what each generator scenario changes, in the kinds of benchmarks/_drift_cases.py
SCENARIO_KINDS = {
    "sensor_offset": "sensor",  # readings shift, the process does not
    "product_mix": "covariate",  # the mix of types, each with its own physics
    "tool_change_policy": "mixed",  # more worn tools and more tool failures at replacement
    "failure_mechanism": "concept",  # the inputs shift and the failure rules change
}
SCENARIOS = tuple(SCENARIO_KINDS)
TRAIN_ROWS, TRAIN_SEED, HARM_ROWS = 20_000, 2020, 50_000
WINDOW_SEED_BASE = 10_000  # never the champion's training seed
HELD_OUT_ROWS, WINDOW_SIZES = 5_000, (5_000, 1_000)
ACTIONS = ("keep", "drift", "alert", "retrain")
TARGET_FALSE_ALARMS, TARGET_DETECTION, TARGET_AUC_ERROR = 0.05, 0.95, 0.05


@dataclasses.dataclass(frozen=True)
class Champion:
    model: Any
    basis: Any  # monitoring.assessment.ChampionBasis
    threshold: float


def train_champion(frame: pd.DataFrame, contract: Any, params: Any, tag: str) -> Champion:
    """Train as the train stage does, choose the threshold as evaluate does."""
    from models.evaluation import choose_threshold
    from models.training import fit_model, predict_out_of_fold, split_data
    from monitoring.assessment import ChampionBasis
    from monitoring.profile import build_monitor_profile
    from pipelines.train import reference_data

    seed = params.data.seed
    train, holdout = split_data(frame, contract, params.train.holdout_size, seed)
    oof = predict_out_of_fold(train, contract, params.train, seed, {})
    model = fit_model(train, contract, params.train, seed, {})
    reference = reference_data(train, oof, contract)
    profile = build_monitor_profile(model, reference, holdout, contract, params)
    point = choose_threshold(
        reference["label"].to_numpy(),
        reference["probability"].to_numpy(),
        params.evaluate.operating_point,
    )
    return Champion(model, ChampionBasis(tag, "v1", reference, profile), point.threshold)


def as_log(window: pd.DataFrame, champion: Champion, contract: Any) -> pd.DataFrame:
    """The window as the prediction log holds it, with its labels beside (same rows)."""
    from models.evaluation import predict_probability

    scores = predict_probability(champion.model, window, contract)
    log = window[[*contract.ids, *contract.features, contract.label]].copy()
    log["time"] = pd.Timestamp("2026-11-01", tz="UTC") + pd.to_timedelta(
        np.arange(len(log)), unit="s"
    )
    log["request_id"] = [f"r{i}" for i in range(len(log))]
    log["model_version"] = champion.basis.label
    log["probability"] = scores
    log["predicted"] = scores >= champion.threshold
    log["threshold"] = champion.threshold
    return log


def judge(log: pd.DataFrame, champion: Champion, contract: Any, params: Any) -> dict[str, Any]:
    """The verdict before the labels arrive and with them, from one drift computation."""
    from models.evaluation import score_ranking
    from monitoring.assessment import assess_window
    from monitoring.quality import assess_quality
    from monitoring.verdict import decide_window

    config, seed = params.monitor, params.data.seed
    start = time.perf_counter()
    labelled = assess_window(log, log, champion.basis, contract, config, seed)
    empty = log.iloc[:0]
    unlabelled = dataclasses.replace(
        labelled,
        labelled_rows=0,
        quality=assess_quality(empty, contract.label, config, seed),
    )
    seconds = time.perf_counter() - start
    before, after = decide_window(unlabelled, config), decide_window(labelled, config)
    y = log[contract.label].to_numpy()
    realized = score_ranking(y, log["probability"].to_numpy()) if 0 < y.sum() < len(y) else {}
    estimate = labelled.estimate
    drift = labelled.drift
    return {
        "before": before.action,
        "before_by": before.decided_by,
        "after": after.action,
        "after_by": after.decided_by,
        "drifted_columns": list(drift.drifted_columns) if drift else [],
        "prediction_drift": bool(drift and drift.prediction and drift.prediction.drifted),
        "data_quality_failed": list(labelled.data_quality.failed) if labelled.data_quality else [],
        "estimated_roc_auc": estimate.roc_auc.value if estimate else None,
        "realized_roc_auc": realized.get("roc_auc"),
        "estimated_ap": estimate.average_precision.value if estimate else None,
        "realized_ap": realized.get("average_precision"),
        "seconds": round(seconds, 3),
    }


def pooled_ap(pairs: list[tuple[Champion, pd.DataFrame]], contract: Any) -> float:
    from models.evaluation import predict_probability, score_ranking

    y = np.concatenate([frame[contract.label].to_numpy() for _, frame in pairs])
    p = np.concatenate([predict_probability(c.model, frame, contract) for c, frame in pairs])
    return float(score_ranking(y, p)["average_precision"])


# --- cases ----------------------------------------------------------------------------------


Variant = Callable[[np.ndarray], pd.DataFrame]  # the rows at these positions, changed


def run_cases(
    champions: list[tuple[Champion, dict[str, Variant]]],
    kinds: dict[str, str],
    held_rows: int,
    contract: Any,
    params: Any,
    log: Callable[[str], None],
    data: str,
) -> dict[str, Any]:
    """Every window of every champion's held-out rows, clean and changed, both samplings.

    `champions` pairs each champion with its cases: name -> the held-out rows at given
    positions under that case ("none": unchanged). Windows of consecutive positions and of
    positions drawn at random (seeded) are judged under every case.
    """
    everything = np.arange(held_rows)
    base = pooled_ap([(c, cases["none"](everything)) for c, cases in champions], contract)
    harm = {}
    for name, kind in kinds.items():
        ap = pooled_ap([(c, cases[name](everything)) for c, cases in champions], contract)
        harm[name] = {
            "kind": kind,
            "ap": round(ap, 4),
            "delta": round(ap - base, 4),
            "harmful": bool(ap < base - params.deploy.tolerance),
        }
    windows = []
    for index, (champion, cases) in enumerate(champions):
        for size in WINDOW_SIZES:
            count = held_rows // size
            cuts = {
                "consecutive": [np.arange(k * size, (k + 1) * size) for k in range(count)],
                "independent": [
                    np.sort(
                        np.random.default_rng(1000 * index + k).choice(
                            held_rows, size, replace=False
                        )
                    )
                    for k in range(count)
                ],
            }
            for sampling, positions in cuts.items():
                for k, at in enumerate(positions):
                    for name in ("none", *kinds):
                        row = judge(
                            as_log(cases[name](at), champion, contract), champion, contract, params
                        )
                        row.update(
                            data=data,
                            fold=index,
                            size=size,
                            sampling=sampling,
                            window=k,
                            case=name,
                            kind=kinds.get(name, "none"),
                            harmful=False if name == "none" else harm[name]["harmful"],
                        )
                        windows.append(row)
                        log(
                            f"{data} {sampling} {size} #{index}.{k} {name}: {row['before']}/"
                            f"{row['after']} {row['drifted_columns']} {row['data_quality_failed']}"
                        )
    return {"baseline_ap": round(base, 4), "harm": harm, "windows": windows}


def real_cases(
    contract: Any, params: Any, folds: int, log: Callable[[str], None]
) -> dict[str, Any]:
    from core.config import IngestConfig
    from pipelines.edges.sources import fetch

    frame = fetch(IngestConfig(source="file", file={"path": REAL_FILE}))
    champions = []
    for fold in make_folds(frame, HELD_OUT_ROWS, folds):
        with tempfile.TemporaryDirectory() as tmp:  # the training rows through the file source
            path = Path(tmp) / "train.csv"
            fold.train.to_csv(path, index=False)
            rows = fetch(IngestConfig(source="file", file={"path": path}))
        champion = train_champion(rows, contract, params, f"fold{fold.index}")
        champions.append((champion, _perturbed(fold.held_out)))
        log(f"real fold {fold.index}: champion trained on {len(rows)} rows")
    kinds = {name: kind for name, (kind, _) in PERTURBATIONS.items()}
    return run_cases(champions, kinds, HELD_OUT_ROWS, contract, params, log, "real")


def _perturbed(held: pd.DataFrame) -> dict[str, Variant]:
    """Each perturbation applied to the rows a window takes (seeded by their first position)."""

    def case(perturb: Callable | None) -> Variant:
        def rows(at: np.ndarray) -> pd.DataFrame:
            window = held.iloc[at].reset_index(drop=True)
            return window if perturb is None else perturb(window, np.random.default_rng(int(at[0])))

        return rows

    return {"none": case(None), **{name: case(p) for name, (_, p) in PERTURBATIONS.items()}}


def synthetic_cases(
    contract: Any, params: Any, seeds: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Fresh series of the generator; each scenario re-draws the same seed, so its rows differ
    from the clean ones only by what the scenario changes."""
    from core.config import SyntheticSourceConfig
    from features.synthetic import generate_process_data

    def series(scenario: str, rows: int, seed: int) -> pd.DataFrame:
        return generate_process_data(SyntheticSourceConfig(rows=rows, seed=seed, scenario=scenario))

    champion = train_champion(series("none", TRAIN_ROWS, TRAIN_SEED), contract, params, "synthetic")
    log("synthetic champion trained")
    champions = []
    for i in range(seeds):
        drawn = {
            name: series(name, HELD_OUT_ROWS, WINDOW_SEED_BASE + i) for name in ("none", *SCENARIOS)
        }
        champions.append(
            (
                champion,
                {
                    name: (lambda at, f=frame: f.iloc[at].reset_index(drop=True))
                    for name, frame in drawn.items()
                },
            )
        )
    kinds = SCENARIO_KINDS
    return run_cases(champions, kinds, HELD_OUT_ROWS, contract, params, log, "synthetic")


# --- summary ------------------------------------------------------------------------------


def summarise(windows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per data set, sampling and window size: false alarms, detection, estimation error."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in windows:
        groups.setdefault((row["data"], row["sampling"], row["size"]), []).append(row)
    out = []
    for (data, sampling, size), rows in groups.items():
        clean = [r for r in rows if r["case"] == "none"]
        harmful = [r for r in rows if r["harmful"]]
        benign = [r for r in rows if r["case"] != "none" and not r["harmful"]]
        judged = [
            r
            for r in rows
            if r["estimated_roc_auc"] is not None and r["realized_roc_auc"] is not None
        ]

        def share(group: list[dict[str, Any]], when: str, actions: tuple[str, ...]) -> float | None:
            return round(sum(r[when] in actions for r in group) / len(group), 4) if group else None

        def auc_error(group: list[dict[str, Any]]) -> dict[str, Any] | None:
            if not group:
                return None
            errors = [abs(r["estimated_roc_auc"] - r["realized_roc_auc"]) for r in group]
            return {
                "windows": len(group),
                "median": round(statistics.median(errors), 4),
                "within_0.05": round(sum(e <= TARGET_AUC_ERROR for e in errors) / len(errors), 4),
            }

        out.append(
            {
                "data": data,
                "sampling": sampling,
                "size": size,
                "oracle_detection": {
                    "realized_ap": oracle(clean, harmful, "realized_ap"),
                    "estimated_ap": oracle(clean, harmful, "estimated_ap"),
                },
                "clean_windows": len(clean),
                "harmful_windows": len(harmful),
                "benign_windows": len(benign),
                "false_retrains_before_labels": share(clean, "before", ("retrain",)),
                "false_retrains_with_labels": share(clean, "after", ("retrain",)),
                "clean_alerts_with_labels": share(clean, "after", ("alert",)),
                "clean_drift_reported": share(clean, "after", ("drift",)),
                "harmful_detected_before_labels": share(harmful, "before", ("retrain", "alert")),
                "harmful_detected_with_labels": share(harmful, "after", ("retrain", "alert")),
                "benign_retrained_with_labels": share(benign, "after", ("retrain",)),
                "drifted_reported_with_labels": share(
                    [r for r in rows if r["case"] != "none"], "after", ("drift", "alert", "retrain")
                ),
                "auc_error": {
                    kind: auc_error([r for r in judged if r["kind"] == kind])
                    for kind in sorted({r["kind"] for r in judged})
                },
                "median_s": round(statistics.median(r["seconds"] for r in rows), 3),
            }
        )
    return out


def oracle(clean: list[dict[str, Any]], harmful: list[dict[str, Any]], key: str) -> float | None:
    """The ceiling of any test on one window's `key` (realized or estimated average
    precision) at the target false-alarm rate: the share of harmful windows below the
    clean windows' `TARGET_FALSE_ALARMS` quantile. The quantile is read on the very clean
    windows it is scored against, so the ceiling is optimistic."""
    values = [r[key] for r in clean if r[key] is not None]
    judged = [r[key] for r in harmful if r[key] is not None]
    if not values or not judged:
        return None
    cut = float(np.quantile(values, TARGET_FALSE_ALARMS))
    return round(sum(value < cut for value in judged) / len(judged), 4)


def by_case(windows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, int, str], list[dict[str, Any]]] = {}
    for row in windows:
        groups.setdefault((row["data"], row["sampling"], row["size"], row["case"]), []).append(row)
    out = []
    for (data, sampling, size, case), rows in groups.items():
        deciders: dict[str, int] = {}
        for r in rows:
            deciders[str(r["after_by"])] = deciders.get(str(r["after_by"]), 0) + 1
        out.append(
            {
                "data": data,
                "sampling": sampling,
                "size": size,
                "case": case,
                "harmful": rows[0]["harmful"],
                "windows": len(rows),
                "before": {
                    a: sum(r["before"] == a for r in rows)
                    for a in ("keep", "drift", "alert", "retrain")
                },
                "after": {
                    a: sum(r["after"] == a for r in rows)
                    for a in ("keep", "drift", "alert", "retrain")
                },
                "decided_by": deciders,
            }
        )
    return out


def table(results: dict[str, Any]) -> str:
    lines = [
        "# Drift that matters: the monitor's verdicts on real, time-correlated traffic",
        "",
        f"Produced by `python benchmarks/bench_drift.py` on {results['date']} "
        f"({results['machine']['cpus']} CPUs), defaults of params.yaml. Detected = retrain or "
        "alert; false alarm = a retrain verdict on an unperturbed window. Oracle ceiling = the "
        "share of harmful windows whose estimated (before labels) or realized (with labels) "
        "average precision falls below the 5 % quantile of the clean windows' of the same row, "
        "the best any test on that one number can do at 5 % false alarms (optimistic: the "
        "quantile is read on the clean windows it is scored against). Harm labels (pooled "
        "realized average precision of the champions, perturbed vs unperturbed rows, harmful "
        f"below -{results['tolerance']}):",
        "",
        "| data | case | kind | pooled AP | change | harmful |",
        "| --- | --- | --- | ---: | ---: | --- |",
    ]
    for data, part in results["parts"].items():
        for name, h in part["harm"].items():
            lines.append(
                f"| {data} | {name} | {h['kind']} | {h['ap']} | {h['delta']:+.4f} | "
                f"{'yes' if h['harmful'] else 'no'} |"
            )
    lines += [
        "",
        "| data | sampling | rows | clean | false retrains (before / with labels) | harmful | "
        "detected (before / with labels) | oracle ceiling (estimated / realized AP) | "
        "benign retrained | estimated ROC AUC error by kind (median; share within 0.05) | "
        "s/window |",
        "| --- | --- | ---: | ---: | --- | ---: | --- | --- | --- | --- | ---: |",
    ]

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    def err(value: dict[str, Any] | None) -> str:
        return (
            "-"
            if value is None
            else f"{value['median']:.3f}, {value['within_0.05']:.0%} of {value['windows']}"
        )

    for s in results["summary"]:
        lines.append(
            f"| {s['data']} | {s['sampling']} | {s['size']:,} | {s['clean_windows']} | "
            f"{pct(s['false_retrains_before_labels'])} / {pct(s['false_retrains_with_labels'])} "
            f"| {s['harmful_windows']} | {pct(s['harmful_detected_before_labels'])} / "
            f"{pct(s['harmful_detected_with_labels'])} | "
            f"{pct(s['oracle_detection']['estimated_ap'])} / "
            f"{pct(s['oracle_detection']['realized_ap'])} | "
            f"{pct(s['benign_retrained_with_labels'])} | "
            + "; ".join(f"{kind} {err(e)}" for kind, e in s["auc_error"].items())
            + f" | {s['median_s']} |"
        )
    lines += [
        "",
        "Verdicts by case (with labels: keep/drift/alert/retrain; deciding signal):",
        "",
        "| data | sampling | rows | case | harmful | before labels | with labels | decided by |",
        "| --- | --- | ---: | --- | --- | --- | --- | --- |",
    ]
    for c in results["by_case"]:
        counts = ["/".join(str(c[when][a]) for a in ACTIONS) for when in ("before", "after")]
        deciders = ", ".join(f"{k} {v}" for k, v in sorted(c["decided_by"].items()))
        lines.append(
            f"| {c['data']} | {c['sampling']} | {c['size']:,} | {c['case']} | "
            f"{'yes' if c['harmful'] else 'no'} | {counts[0]} | {counts[1]} | {deciders} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=10, help="folds of the real file")
    parser.add_argument("--seeds", type=int, default=10, help="fresh synthetic series")
    parser.add_argument("--only", choices=("real", "synthetic"), default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from core.config import load_params
    from features.contract import load_contract

    params = load_params(ROOT / "params.yaml")
    contract = load_contract(ROOT / params.data.contract)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {message}", flush=True)

    parts = {}
    if args.only in (None, "real"):
        if not REAL_FILE.is_file():
            raise SystemExit(f"{REAL_FILE} is absent: run with --only synthetic")
        parts["real"] = real_cases(contract, params, args.folds, log)
    if args.only in (None, "synthetic"):
        parts["synthetic"] = synthetic_cases(contract, params, args.seeds, log)
    windows = [row for part in parts.values() for row in part["windows"]]
    results = {
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "tolerance": params.deploy.tolerance,
        "folds": args.folds,
        "seeds": args.seeds,
        "summary": summarise(windows),
        "by_case": by_case(windows),
        "parts": {
            name: {k: v for k, v in part.items() if k != "windows"} for name, part in parts.items()
        },
        "windows": windows,
    }
    write_results("drift", results, table(results))
    print(table(results))


if __name__ == "__main__":
    main()
