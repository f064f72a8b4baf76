"""The train stage's reference data, and evaluate reading it: real stages on a small project."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from core.config import EvaluateConfig, SyntheticSourceConfig
from core.io import read_json
from core.paths import (
    EVALUATION,
    MODEL_DIR,
    TRAIN_METRICS,
    TRAIN_SPLIT,
    VALIDATED_DATA,
    VALIDATION_PREDICTIONS,
)
from features.contract import DataContract
from features.synthetic import generate_process_data
from models.evaluation import choose_threshold
from pipelines import evaluate, train
from tests.conftest import CONTRACT_PATH


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project folder after `train` and `evaluate` ran on 3,000 synthetic rows."""
    folder = tmp_path_factory.mktemp("project")
    params = {
        "data": {"contract": str(CONTRACT_PATH), "seed": 42},
        "train": {"cv_folds": 2, "hist_gradient_boosting": {"max_iter": 30}},
    }
    (folder / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    import mlflow.tracking.fluent
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    # the stages set MLflow's global URI and active experiment (and their environment
    # variables): the contexts put all of them back for the tests that follow
    with pytest.MonkeyPatch.context() as patch, _use_tracking_uri(uri):
        patch.chdir(folder)
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
        patch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
        VALIDATED_DATA.parent.mkdir(parents=True)
        generate_process_data(SyntheticSourceConfig(rows=3000, seed=5)).to_parquet(
            VALIDATED_DATA, index=False
        )
        train.main()
        evaluate.main()
        yield folder


def test_reference_data_holds_ids_features_label_and_probability(
    trained: Path, contract: DataContract
) -> None:
    reference = pd.read_parquet(trained / VALIDATION_PREDICTIONS)
    split = pd.read_parquet(trained / TRAIN_SPLIT)
    assert list(reference.columns) == [
        "UDI",
        "Product ID",
        "Type",
        "Air temperature [K]",
        "Process temperature [K]",
        "Rotational speed [rpm]",
        "Torque [Nm]",
        "Tool wear [min]",
        "label",
        "probability",
    ]
    columns = [*contract.ids, *contract.features]
    pd.testing.assert_frame_equal(reference[columns], split[columns])
    np.testing.assert_array_equal(reference["label"], split[contract.label])
    assert reference["probability"].between(0, 1).all()
    # the probabilities are out-of-fold: the CV metric is scored on exactly these
    cv = read_json(trained / TRAIN_METRICS)["cv"]
    assert cv["rows"] == len(reference) and cv["positives"] == int(reference["label"].sum())


def test_evaluate_reads_the_reference_for_its_threshold(trained: Path) -> None:
    reference = pd.read_parquet(trained / VALIDATION_PREDICTIONS)
    expected = choose_threshold(
        reference["label"].to_numpy(),
        reference["probability"].to_numpy(),
        EvaluateConfig().operating_point,
    )
    metrics = read_json(trained / EVALUATION)
    assert metrics["operating_point"]["threshold"] == expected.threshold
    assert metrics["holdout"]["rows"] == 600
    assert set(metrics) >= {"holdout", "operating_point", "by_type"}
    assert (trained / MODEL_DIR / "model.skops").is_file()


def test_reference_data_refuses_names_it_needs_itself(contract: DataContract) -> None:
    frame = generate_process_data(SyntheticSourceConfig(rows=10, seed=1))
    oof = np.linspace(0, 1, 10)
    reference = train.reference_data(frame, oof, contract)
    assert reference.index.tolist() == list(range(10))
    renamed = contract.model_copy(
        update={
            "columns": tuple(
                c.model_copy(update={"name": "probability"}) if c.name == "Torque [Nm]" else c
                for c in contract.columns
            )
        }
    )
    with pytest.raises(ValueError) as error:
        train.reference_data(frame.rename(columns={"Torque [Nm]": "probability"}), oof, renamed)
    assert str(error.value) == (
        "the contract names an id or feature ['probability'], which the reference data uses "
        "for the label and the probability; rename it in the contract"
    )
    with pytest.raises(ValueError, match="9 out-of-fold probabilities for 10 training rows"):
        train.reference_data(frame, oof[:9], contract)
