"""Evidently's two drift distances of the calibration, without importing Evidently.

Importing Evidently takes seconds, and the train stage needs only two of its stattests to
score training blocks: the normed Wasserstein distance (numeric columns) and the
Jensen-Shannon distance (categorical columns). They are computed here as Evidently computes
them, call for call; the monitor stage (`monitoring.drift`) still runs Evidently's report
with the same methods, by the names below. Checked against Evidently 0.7.23
(`evidently/legacy/calculations/stattests/`: `wasserstein_distance_norm.py`,
`jensenshannon.py` and `utils.get_binned_data`); tests/monitoring/test_stattests.py compares
both with Evidently's own functions.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance  # already imported by scipy.stats: no extra cost

Kind = Literal["numerical", "categorical"]

WASSERSTEIN = "wasserstein"  # Evidently's registered name of the normed Wasserstein distance
JENSENSHANNON = "jensenshannon"  # and of the Jensen-Shannon distance
METHODS: dict[str, str] = {
    "numerical": WASSERSTEIN,  # normed by the reference's sd: units of sd
    "categorical": JENSENSHANNON,  # bounded in [0, 1]
}
DISPLAY_NAMES: dict[str, str] = {  # Evidently's `StatTest.display_name` of each method
    WASSERSTEIN: "Wasserstein distance (normed)",
    JENSENSHANNON: "Jensen-Shannon distance",
}
_NORM_FLOOR = 0.001  # Evidently's least norm of the Wasserstein distance
_NUMERIC_BINNED_ABOVE = 20  # reference values more distinct than this are binned (Sturges)


def wasserstein_norm(reference: pd.Series, current: pd.Series) -> float:
    """The first Wasserstein distance of `current` from `reference`, divided by the
    reference's standard deviation (population, at least 0.001), as Evidently's."""
    norm = max(float(np.std(reference)), _NORM_FLOOR)
    return float(stats.wasserstein_distance(reference, current) / norm)


def jensenshannon(reference: pd.Series, current: pd.Series, kind: Kind) -> float:
    """The Jensen-Shannon distance (natural log) of the two samples' shares, as Evidently's:
    a numeric column with over 20 distinct reference values in Sturges bins over both
    samples, anything else per value (NaN left out of the values, not of the counts)."""
    reference_shares, current_shares = binned_shares(reference, current, kind)
    return float(distance.jensenshannon(reference_shares, current_shares, None))


def binned_shares(
    reference: pd.Series, current: pd.Series, kind: Kind
) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's share of rows per bin or value: Evidently's `get_binned_data` without
    its zero filling (which the Jensen-Shannon distance does not ask for)."""
    if kind == "numerical" and reference.nunique() > _NUMERIC_BINNED_ABOVE:
        combined = np.asarray(pd.concat([reference, current], axis=0).values)
        bins = np.histogram_bin_edges(combined, bins="sturges")
        return (
            np.histogram(reference, bins)[0] / len(reference),
            np.histogram(current, bins)[0] / len(current),
        )
    keys = list(set(reference.dropna().unique()) | set(current.dropna().unique()))
    reference_counts = {**dict.fromkeys(keys, 0), **dict(reference.value_counts())}
    current_counts = {**dict.fromkeys(keys, 0), **dict(current.value_counts())}
    return (
        np.array([reference_counts[key] / len(reference) for key in keys]),
        np.array([current_counts[key] / len(current) for key in keys]),
    )


def drift_score(reference: pd.Series, current: pd.Series, kind: Kind, method: str) -> float:
    """`method`'s distance of `current` from `reference`; a one-line error for another."""
    if method == WASSERSTEIN:
        return wasserstein_norm(reference, current)
    if method == JENSENSHANNON:
        return jensenshannon(reference, current, kind)
    raise ValueError(f"unknown drift method {method!r}: expected one of {sorted(DISPLAY_NAMES)}")
