"""Build the fixed windows on which our CBPE is checked against NannyML's.

    python benchmarks/cbpe_windows.py      # tests/monitoring/data/cbpe_windows.parquet
    python benchmarks/cbpe_windows.py --data PATH/ai4i2020.csv

From the real AI4I 2020 file (`../shared/datasets/ai4i2020.csv`): the first 5,000 rows
(time order) are the training period; the champion is trained on its training split the way
the train stage trains it (default `train` config, `data.seed`), and the reference is that
split's labels and out-of-fold probabilities. The other 5,000 rows are the pool the windows
come from: consecutive blocks of 1,000 and 5,000 rows, and covariate-shifted windows of
1,500 rows drawn without replacement with weights on one input (P(label | inputs) stays
the real one). The operating threshold is chosen on the out-of-fold probabilities as the
evaluate stage chooses it. The file is committed: the test that compares with NannyML's
stored numbers (`tests/monitoring/test_estimation.py`) needs neither the real file nor a
training run. `benchmarks/cbpe_nannyml.py` (in `.venv-nannyml`) reads it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import DataConfig, OperatingPointConfig, TrainConfig
from features.contract import load_contract
from models.evaluation import choose_threshold, predict_probability
from models.training import fit_model, predict_out_of_fold, split_data

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
REAL_FILE = ROOT.parent / "shared" / "datasets" / "ai4i2020.csv"
WINDOWS_FILE = ROOT / "tests" / "monitoring" / "data" / "cbpe_windows.parquet"
TRAINING_ROWS = 5000
SHIFTED_ROWS = 1500
SHIFT_STRENGTH = 1.0  # weight exp(strength * z) on the shifted input


def build_windows(real: pd.DataFrame) -> pd.DataFrame:
    """Reference and pool rows with their label and probability, one bool column per window."""
    contract = load_contract(ROOT / "features" / "contracts" / "milling.yaml")
    seed = DataConfig().seed
    config = TrainConfig()
    period, pool = real.iloc[:TRAINING_ROWS], real.iloc[TRAINING_ROWS:].reset_index(drop=True)
    train, _ = split_data(period, contract, 0.2, seed)
    labels = train[contract.label].to_numpy()
    oof = predict_out_of_fold(train, contract, config, seed)
    model = fit_model(train, contract, config, seed)
    threshold = choose_threshold(labels, oof, OperatingPointConfig()).threshold
    reference = pd.DataFrame({"part": "reference", "label": labels, "probability": oof})
    served = pd.DataFrame(
        {
            "part": "pool",
            "label": pool[contract.label].to_numpy(),
            "probability": predict_probability(model, pool, contract),
        }
    )
    windows = _window_members(pool, np.random.default_rng(seed))
    for name, members in windows.items():
        reference[name] = False
        served[name] = members
    frame = pd.concat([reference, served], ignore_index=True)
    frame["threshold"] = threshold
    return frame


def _window_members(pool: pd.DataFrame, rng: np.random.Generator) -> dict[str, np.ndarray]:
    rows = np.arange(len(pool))
    members = {
        "consecutive_1000_first": rows < 1000,
        "consecutive_1000_last": rows >= len(pool) - 1000,
        "consecutive_5000": rows >= 0,
    }
    shifts = {
        "shift_torque_up": _z(pool["Torque [Nm]"]),
        "shift_tool_wear_up": _z(pool["Tool wear [min]"]),
        "shift_speed_down": -_z(pool["Rotational speed [rpm]"]),
        "shift_type_h": np.where(pool["Type"] == "H", 1.5, 0.0),
    }
    for name, z in shifts.items():
        weights = np.exp(SHIFT_STRENGTH * z)
        chosen = rng.choice(len(pool), SHIFTED_ROWS, replace=False, p=weights / weights.sum())
        members[name] = np.isin(rows, chosen)
    return members


def _z(values: pd.Series) -> np.ndarray:
    numbers = values.to_numpy(dtype=float)
    return (numbers - numbers.mean()) / numbers.std()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REAL_FILE, help="the real AI4I 2020 CSV")
    data = parser.parse_args().data
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not data.exists():
        raise SystemExit(f"{data} not found: the windows are built from the real AI4I file")
    frame = build_windows(pd.read_csv(data))
    WINDOWS_FILE.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(WINDOWS_FILE, index=False)
    logger.info("wrote %s: %d rows, threshold %.6g", WINDOWS_FILE, len(frame), frame.threshold[0])


if __name__ == "__main__":
    main()
