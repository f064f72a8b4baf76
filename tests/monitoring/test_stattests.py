"""Our copies of Evidently's two calibration distances give Evidently's numbers, and the
train stage's modules import no Evidently (the reason for the copies)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from evidently.legacy.calculations.stattests import (
    jensenshannon_stat_test,
    wasserstein_stat_test,
)
from evidently.legacy.core import ColumnType

from monitoring.calibration import score_block
from monitoring.stattests import (
    DISPLAY_NAMES,
    JENSENSHANNON,
    METHODS,
    WASSERSTEIN,
    drift_score,
    jensenshannon,
    wasserstein_norm,
)
from tests.factories import modules_loaded

EVIDENTLY = {WASSERSTEIN: wasserstein_stat_test, JENSENSHANNON: jensenshannon_stat_test}
TYPES = {"numerical": ColumnType.Numerical, "categorical": ColumnType.Categorical}


def evidently_score(reference: pd.Series, current: pd.Series, kind: str, method: str) -> float:
    return float(EVIDENTLY[method](reference, current, TYPES[kind], None).drift_score)


def _numeric(rng: np.random.Generator, rows: int, shift: float = 0.0) -> pd.Series:
    return pd.Series(rng.normal(10.0 + shift, 3.0, rows))


def numeric_pairs() -> dict[str, tuple[pd.Series, pd.Series]]:
    rng = np.random.default_rng(7)
    with_nans = _numeric(rng, 3000)
    with_nans[rng.choice(3000, 300, replace=False)] = np.nan
    return {
        "large": (_numeric(rng, 20_000), _numeric(rng, 5000, shift=0.4)),
        "small": (_numeric(rng, 7), _numeric(rng, 3, shift=1.0)),
        "with NaNs": (with_nans, _numeric(rng, 800)),
        "constant reference": (pd.Series(np.full(500, 4.0)), _numeric(rng, 300)),
        "both constant": (pd.Series(np.full(50, 4.0)), pd.Series(np.full(20, 4.5))),
        "few distinct values": (
            pd.Series(rng.integers(0, 15, 2000).astype(float)),
            pd.Series(rng.integers(0, 18, 900).astype(float)),
        ),
        "integers": (pd.Series(rng.integers(0, 1000, 4000)), pd.Series(rng.integers(0, 900, 600))),
    }


def categorical_pairs() -> dict[str, tuple[pd.Series, pd.Series]]:
    rng = np.random.default_rng(11)
    letters = np.array(list("LMHXYZ"))
    with_nans = pd.Series(rng.choice(letters[:3], 2000), dtype=object)
    with_nans[rng.choice(2000, 150, replace=False)] = np.nan
    return {
        "strings, large": (
            pd.Series(rng.choice(letters[:3], 20_000, p=(0.6, 0.3, 0.1))),
            pd.Series(rng.choice(letters[:3], 5000, p=(0.5, 0.3, 0.2))),
        ),
        "strings, small": (pd.Series(["L", "M", "L"]), pd.Series(["H", "L"])),
        "unseen in the current": (
            pd.Series(rng.choice(letters, 1000)),
            pd.Series(rng.choice(letters[:2], 300)),
        ),
        "unseen in the reference": (
            pd.Series(rng.choice(letters[:2], 1000)),
            pd.Series(rng.choice(letters, 300)),
        ),
        "with NaNs": (with_nans, pd.Series(rng.choice(letters[:4], 700))),
        "integer categories": (
            pd.Series(rng.integers(0, 5, 3000)),
            pd.Series(rng.integers(2, 8, 400)),
        ),
        "one category": (pd.Series(["L"] * 40), pd.Series(["L"] * 9)),
    }


@pytest.mark.parametrize("case", list(numeric_pairs()))
def test_wasserstein_is_evidentlys(case: str) -> None:
    reference, current = numeric_pairs()[case]
    expected = evidently_score(reference.dropna(), current.dropna(), "numerical", WASSERSTEIN)
    assert wasserstein_norm(reference.dropna(), current.dropna()) == pytest.approx(
        expected, rel=1e-12, abs=1e-15
    )
    assert score_block(current, reference, "numerical") == pytest.approx(
        expected, rel=1e-12, abs=1e-15
    )


@pytest.mark.parametrize(
    ("case", "kind"),
    [(c, "numerical") for c in numeric_pairs()] + [(c, "categorical") for c in categorical_pairs()],
)
def test_jensenshannon_is_evidentlys(case: str, kind: str) -> None:
    """Numbers binned (Sturges) or per value, categories per value; NaNs kept in, as
    Evidently's function takes them, and dropped, as its report and `score_block` do."""
    reference, current = {**numeric_pairs(), **categorical_pairs()}[case]
    for ref, cur in ((reference, current), (reference.dropna(), current.dropna())):
        expected = evidently_score(ref, cur, kind, JENSENSHANNON)
        assert jensenshannon(ref, cur, kind) == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert drift_score(ref, cur, kind, JENSENSHANNON) == pytest.approx(
            expected, rel=1e-12, abs=1e-15
        )
    assert score_block(current, reference, kind, JENSENSHANNON) == pytest.approx(
        evidently_score(reference.dropna(), current.dropna(), kind, JENSENSHANNON),
        rel=1e-12,
        abs=1e-15,
    )


def test_the_default_method_of_a_categorical_column_is_jensenshannon() -> None:
    reference, current = categorical_pairs()["unseen in the current"]
    expected = evidently_score(reference, current, "categorical", JENSENSHANNON)
    assert expected > 0.1
    assert score_block(current, reference, "categorical") == pytest.approx(expected, rel=1e-12)


def test_names_are_evidentlys() -> None:
    assert METHODS == {"numerical": WASSERSTEIN, "categorical": JENSENSHANNON}
    for method, test in EVIDENTLY.items():
        assert test.name == method
        assert DISPLAY_NAMES[method] == test.display_name


def test_an_unknown_method_is_named() -> None:
    series = pd.Series([1.0, 2.0])
    with pytest.raises(ValueError, match="unknown drift method 'psi': expected one of"):
        drift_score(series, series, "numerical", "psi")


def test_the_train_stage_imports_no_evidently() -> None:
    """In a fresh interpreter: the train stage's modules, and the monitor profile it builds
    with, leave `evidently` out of `sys.modules` (its import takes seconds)."""
    train = "pipelines.train, monitoring.profile, monitoring.calibration"
    assert modules_loaded(train, "evidently") == []
    assert "evidently" in modules_loaded("monitoring.drift", "evidently")  # the check can fail
