"""Small in-memory frames for unit tests."""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_valid_frame(rows: int = 2000, seed: int = 0) -> pd.DataFrame:
    """A frame within the milling contract, from simple numpy draws."""
    rng = np.random.default_rng(seed)
    quality = rng.choice(["L", "M", "H"], rows, p=[0.6, 0.3, 0.1])
    air = rng.normal(300, 2, rows)
    failure = (rng.random(rows) < 0.034).astype(np.int64)
    modes = {
        m: (failure & (rng.random(rows) < 0.3)).astype(np.int64)
        for m in ("TWF", "HDF", "PWF", "OSF", "RNF")
    }
    serials = rng.integers(10_000, 99_999, rows).astype(str)
    return pd.DataFrame(
        {
            "UDI": np.arange(1, rows + 1),
            "Product ID": [q + s for q, s in zip(quality, serials, strict=True)],
            "Type": quality,
            "Air temperature [K]": air,
            "Process temperature [K]": air + 10 + rng.normal(0, 1, rows),
            "Rotational speed [rpm]": rng.normal(1539, 179, rows).round(),
            "Torque [Nm]": rng.normal(40, 10, rows).clip(0.5, None),
            "Tool wear [min]": rng.integers(0, 250, rows).astype(float),
            "Machine failure": failure,
            **modes,
        }
    )


def make_card_inputs(frame: pd.DataFrame, contract, params, registered_model: str = "model"):
    """Every record a model card is built from, made by the real code on `frame`: split,
    fit, out-of-fold scores, monitor profile, evaluation, the gate's decision (no champion)
    and the infra check's replay through the service's request path."""
    from dataclasses import asdict

    from core.model_files import model_content_hash
    from core.records.deploy import Challenger
    from core.records.evaluation import EvaluationReport, segment_key
    from models.evaluation import (
        choose_threshold,
        predict_probability,
        score_by_group,
        score_predictions,
    )
    from models.model_card import CardInputs, TrainingFacts, measure_holdout_calibration
    from models.promotion import decide_deployment, record_infra_check
    from models.training import family_params, fit_model, predict_out_of_fold, split_data
    from monitoring.profile import build_monitor_profile
    from pipelines.train import reference_data
    from serving.infra_check import replay_rows
    from serving.model_store import ServedModel

    seed, config = params.data.seed, params.train
    train, holdout = split_data(frame, contract, config.holdout_size, seed)
    oof = predict_out_of_fold(train, contract, config, seed, {})
    model = fit_model(train, contract, config, seed, {})
    reference = reference_data(train, oof, contract)
    profile = build_monitor_profile(model, reference, holdout, contract, params)
    point = choose_threshold(reference["label"].to_numpy(), oof, params.evaluate.operating_point)
    y, proba = (
        holdout[contract.label].to_numpy(),
        predict_probability(model, holdout, contract),
    )
    evaluation = EvaluationReport.model_validate(
        {
            "holdout": score_predictions(y, proba, point.threshold),
            "operating_point": asdict(point),
            **{
                segment_key(name): score_by_group(holdout, y, proba, name, point.threshold)
                for name in contract.categorical_features
            },
        }
    )
    content = model_content_hash(model)
    training = TrainingFacts(
        family=config.model,
        hyperparameters=family_params(config),
        content_sha256=content,
        mlflow_run_id="0123456789abcdef0123456789abcdef",
        data_md5="0" * 32,
        train_rows=len(train),
        sklearn_version="1.9.1",
    )
    challenger = Challenger(
        family=config.model, content_sha256=content, mlflow_run_id=training.mlflow_run_id,
        holdout=evaluation.holdout,
    )  # fmt: skip
    decision = decide_deployment(registered_model, challenger, None, None, params.deploy)
    served = ServedModel(
        pipeline=model, tag=f"{registered_model}:v1", version="v1", threshold=point.threshold,
        content_sha256=content, run_id=training.mlflow_run_id, meta={},
    )  # fmt: skip
    rows = holdout.head(20)
    infra = replay_rows(
        served, rows, contract, params.deploy.infra_validation.p99_budget_ms, proba[:20]
    )
    decision = record_infra_check(decision, 1, True, infra, f"{registered_model}_service:v1")
    return CardInputs(
        contract=contract,
        training=training,
        train=config,
        seed=seed,
        evaluation=evaluation,
        holdout_calibration=measure_holdout_calibration(
            y, proba, profile.probabilities, profile.probabilities.check.bins
        ),
        decision=decision,
        profile=profile,
    )


def modules_loaded(imports: str, package: str) -> list[str]:
    """The modules of `package` in `sys.modules` after a fresh interpreter, in the project
    root, runs `import <imports>` (e.g. "pipelines.train, monitoring.profile")."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        f"import sys, {imports}; "
        f"print('\\n'.join(sorted(m for m in sys.modules if m.split('.')[0] == {package!r})))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    )
    return found.stdout.split()
