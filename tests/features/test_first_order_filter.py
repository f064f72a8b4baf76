"""The generator's first-order recurrence is scipy.signal.lfilter's, bit for bit, and the
ingest stage's modules no longer import scipy.signal (the reason for the copy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter

from features.synthetic import first_order_filter
from tests.factories import modules_loaded


@pytest.mark.parametrize("seed", range(40))
def test_the_recurrence_is_lfilters_bit_for_bit(seed: int) -> None:
    """Random lengths, scales, poles (the walks' exp(-1/time constant) and any in (-1, 1)),
    gains and initial states; exact equality, not a tolerance."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(rng.integers(1, 30_000))) * 10 ** rng.uniform(-3, 3)
    pole = float(np.exp(-1.0 / rng.uniform(1.0, 5000.0))) if seed % 2 else rng.uniform(-1, 1)
    gain = float(rng.uniform(-2.0, 2.0))
    state = float(rng.normal(0.0, 3.0))
    assert np.array_equal(first_order_filter(x, 1.0, pole), lfilter([1.0], [1.0, -pole], x))
    expected = lfilter([gain], [1.0, -pole], x, zi=[state])[0]
    found = first_order_filter(x, gain, pole, state)
    assert found.dtype == expected.dtype and np.array_equal(found, expected)


def test_edge_inputs_match_lfilter() -> None:
    x = np.array([0.0, -0.0, 1e-300, -1e300, 1e300, 5.0, np.inf, 2.0, np.nan, 1.0])
    for pole in (0.0, 0.5, -0.999, 1.0):
        assert np.array_equal(
            first_order_filter(x, 0.3, pole, -0.0),
            lfilter([0.3], [1.0, -pole], x, zi=[-0.0])[0],
            equal_nan=True,
        )
    assert first_order_filter(np.array([]), 1.0, 0.5).shape == (0,)


def test_the_ingest_stage_imports_no_scipy() -> None:
    assert modules_loaded("pipelines.ingest, features.synthetic", "scipy") == []
    assert modules_loaded("monitoring.quality_bounds", "scipy")  # the check can fail
