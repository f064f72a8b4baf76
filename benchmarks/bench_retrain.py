"""Check: does retraining on a feedback batch beat the champion where the process changed?

    python benchmarks/bench_retrain.py        # writes benchmarks/results/retrain.{json,md}

What the closed loop does, without MLflow or files: a champion trained on the base data
(scenario `none`), a challenger trained on the base data plus one labelled feedback batch
from a changed process (scenario `failure_mechanism`, ids far above the base's), both with
the project's split and model from `params.yaml`. They are compared the way deploy's
recent-window check compares them: on the combined holdout's rows from the feedback batch,
rows neither model trained on. Also reported: both on the whole combined holdout (the
champion trained on some of its base rows, so it is flattered there) and the challenger's
absolute thresholds. Repeated over feedback sizes and feedback seeds.

"unseen" rows are the combined holdout's rows the champion did not train on: deploy runs
its non-inferiority bootstrap on them. "promoted" applies deploy's whole gate with the
default params (thresholds, non-inferiority on unseen rows or on the whole holdout, the
recent window). No infra check, MLflow or files: about 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._measure import RESULTS, machine

if TYPE_CHECKING:
    from core.config import RecentWindowConfig

ROOT = Path(__file__).resolve().parents[1]
BASE_ROWS, BASE_SEED = 20_000, 2020
FEEDBACK_SIZES = (1000, 2000, 3000, 5000, 10_000)
FEEDBACK_SEEDS = (11, 12, 13, 14, 15)
FIRST_FEEDBACK_UDI = 10_000_001


def run(sizes: tuple[int, ...], seeds: tuple[int, ...]) -> list[dict]:
    import pandas as pd
    from sklearn.metrics import average_precision_score, roc_auc_score

    import pipelines  # noqa: F401  (telemetry off before the libraries load)
    from core.config import SyntheticSourceConfig, load_params
    from features.contract import load_contract
    from features.synthetic import generate_process_data
    from models.bootstrap import paired_bootstrap
    from models.evaluation import predict_probability
    from models.training import fit_model, split_data

    params = load_params(ROOT / "params.yaml")
    contract = load_contract(ROOT / params.data.contract)
    config, seed, label, udi = params.train, params.data.seed, contract.label, contract.ids[0]
    base = generate_process_data(SyntheticSourceConfig(rows=BASE_ROWS, seed=BASE_SEED))
    champion_train, _ = split_data(base, contract, config.holdout_size, seed)
    champion = fit_model(champion_train, contract, config, seed)

    rows = []
    for size in sizes:
        for feedback_seed in seeds:
            feedback = generate_process_data(
                SyntheticSourceConfig(rows=size, seed=feedback_seed, scenario="failure_mechanism"),
                first_udi=FIRST_FEEDBACK_UDI,
            )
            combined = pd.concat([base, feedback], ignore_index=True)
            train, holdout = split_data(combined, contract, config.holdout_size, seed)
            challenger = fit_model(train, contract, config, seed)
            recent = holdout[holdout[udi] >= FIRST_FEEDBACK_UDI]
            unseen = holdout[~holdout[udi].isin(champion_train[udi])]
            result = {"feedback_rows": size, "feedback_seed": feedback_seed}
            parts = (("recent", recent), ("holdout", holdout), ("unseen", unseen))
            for part, frame in parts:
                y = frame[label].to_numpy()
                for name, model in (("challenger", challenger), ("champion", champion)):
                    proba = predict_probability(model, frame, contract)
                    result[f"{part}_{name}_ap"] = round(float(average_precision_score(y, proba)), 4)
                    result[f"{part}_{name}_roc_auc"] = round(float(roc_auc_score(y, proba)), 4)
                result[f"{part}_rows"], result[f"{part}_positives"] = len(y), int(y.sum())
                result[f"{part}_delta_ap"] = round(
                    result[f"{part}_challenger_ap"] - result[f"{part}_champion_ap"], 4
                )
                if part != "recent":  # deploy's non-inferiority test on these rows
                    comparison = paired_bootstrap(
                        y,
                        predict_probability(challenger, frame, contract),
                        predict_probability(champion, frame, contract),
                        params.deploy.primary_metric,
                        resamples=params.deploy.bootstrap.resamples,
                        confidence=params.deploy.bootstrap.confidence,
                        seed=seed,
                    )
                    result[f"{part}_ci_low"] = round(comparison.ci_low, 4)
                    result[f"{part}_non_inferior"] = comparison.ci_low >= -params.deploy.tolerance
            result["challenger_meets_thresholds"] = all(
                result[f"holdout_challenger_{'ap' if metric == 'average_precision' else metric}"]
                >= minimum
                for metric, minimum in params.deploy.thresholds.items()
            )
            rows.append(result)
            print(json.dumps(result), flush=True)
    return rows


def _promoted(row: dict, compared_on: str, window: RecentWindowConfig) -> bool:
    """Deploy's gate with the default params, the non-inferiority test on `compared_on`."""
    return (
        row["challenger_meets_thresholds"]
        and row[f"{compared_on}_non_inferior"]
        and row["recent_rows"] >= window.min_rows
        and row["recent_positives"] >= window.min_positives
        and row["recent_delta_ap"] > window.margin
    )


def summarise(rows: list[dict]) -> str:
    from core.config import load_params

    window = load_params(ROOT / "params.yaml").deploy.recent_window
    lines = [
        "| feedback rows | recent rows / positives (median) | recent AP champion / challenger "
        "(median) | recent delta min / median | whole holdout delta (median) | unseen delta "
        "(median) | challenger holdout AP / ROC AUC (min) | recent wins | promoted: unseen rows "
        "/ whole holdout |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size in sorted({r["feedback_rows"] for r in rows}):
        group = [r for r in rows if r["feedback_rows"] == size]

        def med(key: str, group: list[dict] = group) -> float:
            return statistics.median(r[key] for r in group)

        lines.append(
            f"| {size} | {med('recent_rows'):.0f} / {med('recent_positives'):.0f} "
            f"| {med('recent_champion_ap'):.3f} / {med('recent_challenger_ap'):.3f} "
            f"| {min(r['recent_delta_ap'] for r in group):+.3f} / "
            f"{med('recent_delta_ap'):+.3f} | {med('holdout_delta_ap'):+.3f} "
            f"| {med('unseen_delta_ap'):+.3f} "
            f"| {min(r['holdout_challenger_ap'] for r in group):.3f} / "
            f"{min(r['holdout_challenger_roc_auc'] for r in group):.3f} "
            f"| {sum(r['recent_delta_ap'] > 0 for r in group)} of {len(group)} "
            f"| {sum(_promoted(r, 'unseen', window) for r in group)} / "
            f"{sum(_promoted(r, 'holdout', window) for r in group)} of {len(group)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(FEEDBACK_SIZES))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(FEEDBACK_SEEDS))
    args = parser.parse_args()
    rows = run(tuple(args.sizes), tuple(args.seeds))
    table = summarise(rows)
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    (RESULTS / "retrain.json").write_text(
        json.dumps({"machine": machine(), "measured_at": stamp, "rows": rows}, indent=2) + "\n"
    )
    (RESULTS / "retrain.md").write_text(
        f"# Retrain on feedback: champion vs challenger ({stamp})\n\n"
        f"Base: {BASE_ROWS} rows, scenario none, seed {BASE_SEED}. Feedback: scenario "
        f"failure_mechanism, seeds {list(args.seeds)}. Recent = the combined holdout's rows "
        "from the feedback batch.\n\n" + table + "\n"
    )
    print(table)


if __name__ == "__main__":
    main()
