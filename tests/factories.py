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
