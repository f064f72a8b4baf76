"""The model card, built from records the real code makes: what it shows, in whose words."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from core.config import Params, SyntheticSourceConfig
from features.contract import DataContract, parse_contract
from features.synthetic import generate_process_data
from models.model_card import (
    SHORTENED_NOTE,
    CardInputs,
    ModelCardError,
    TrainingFacts,
    build_model_card,
    card_from_markdown,
    fit_card,
    render_card_html,
    unpromoted_card,
)
from tests.factories import make_card_inputs

PARAMS = Params.model_validate(
    {
        "train": {"model": "logistic_regression", "cv_folds": 3},
        "deploy": {
            "thresholds": {"roc_auc": 0.8},  # a logistic regression on 3,000 rows: the gate
            "infra_validation": {"replay_rows": 20, "p99_budget_ms": 1000},
        },
        "monitor": {"window": {"rows": 400, "min_rows": 150}},
    }
)


@pytest.fixture(scope="module")
def milling(contract: DataContract) -> CardInputs:
    frame = generate_process_data(SyntheticSourceConfig(rows=3000, seed=1))
    return make_card_inputs(frame, contract, PARAMS, registered_model="milling-failure")


def _breast_cancer() -> tuple[pd.DataFrame, DataContract]:
    """scikit-learn's copy of a public medical table (569 rows), with a row counter and a
    categorical column to segment by."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True).frame
    features = ["mean radius", "mean texture", "mean smoothness", "worst area"]
    frame = data[features].copy()
    frame.insert(0, "case_no", np.arange(1, len(data) + 1))
    frame["clinic"] = np.random.default_rng(0).choice(["north", "south"], len(data))
    frame["malignant"] = (data["target"] == 0).astype(np.int64)
    contract = parse_contract(
        {
            "name": "breast-cancer",
            "description": "Measurements of breast masses from digitised images.",
            "columns": [
                {"name": "case_no", "dtype": "integer", "role": "id", "unique": True, "min": 1},
                *(
                    {"name": name, "dtype": "float", "min": 0, "description": f"{name} | cells"}
                    for name in features
                ),
                {"name": "clinic", "dtype": "categorical", "categories": ["north", "south"]},
                {"name": "malignant", "dtype": "integer", "role": "label", "min": 0, "max": 1,
                 "description": "The mass is malignant."},
            ],
        }
    )  # fmt: skip
    return frame, contract


@pytest.fixture(scope="module")
def medical() -> CardInputs:
    frame, contract = _breast_cancer()
    params = PARAMS.model_copy(update={"monitor": Params().monitor})  # windows of 1,000 rows
    return make_card_inputs(frame, contract, params, registered_model="breast-cancer")


def _section(markdown: str, heading: str) -> str:
    return markdown.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_the_card_shows_every_record_it_is_built_from(milling: CardInputs) -> None:
    card = build_model_card(milling)
    text, decision, profile = card.markdown, milling.decision, milling.profile
    assert card.title == "Model card: milling-failure v1"
    assert text.startswith("# Model card: milling-failure v1\n")
    # the contract: its name, description, every column with its role
    assert f"Data contract `{milling.contract.name}`." in text
    assert milling.contract.description in text
    for column in milling.contract.columns:
        assert f"| `{column.name}` | {column.role} | {column.dtype} |" in text
    assert "| `UDI` | id | integer | >= 1; unique |" in text
    assert "| `Type` | feature | categorical | L, M, H |" in text
    # the training data and params
    assert f"md5 `{milling.training.data_md5}`: {milling.training.train_rows} training rows" in text
    assert f"{milling.evaluation.holdout['rows']} holdout rows" in text
    assert f"C={milling.train.logistic_regression.C}" in text
    assert f"over {milling.train.cv_folds} folds" in text
    # holdout metrics, and each product type's
    holdout = milling.evaluation.holdout
    assert f"| ROC AUC | {holdout['roc_auc']:.4f} | {profile.reference.roc_auc:.4f} |" in text
    for value, metrics in milling.evaluation.segments["by_type"].items():
        assert f"| `{value}` | {metrics['rows']} | {metrics['positives']} |" in text
    # calibration, the gate's evidence, the infra check's latency
    assert profile.probabilities.check.reason in text
    assert f"error {milling.holdout_calibration.error:.4f}" in text
    for check in decision.checks:
        assert f"| `{check.name}` | {check.value:.4f} | {check.bound:.4f} | yes |" in text
    for reason in decision.reasons:
        assert f"- {reason}" in text
    infra = decision.infra_check
    assert f"p99 {infra.p99_ms:.1f} ms" in text and f"budget {infra.budget_ms:g} ms" in text
    # the drift thresholds, per column and window size, as the monitor reads them
    drift = _section(text, "Drift monitoring")
    assert profile.drift.calibrated and profile.drift.reason in drift
    for name, column in profile.drift.columns.items():
        cells = " | ".join(f"{column.threshold_at(size):.4g}" for size in profile.drift.block_rows)
        assert f"| `{name}` | {column.method} | {cells} |" in drift


def test_the_card_speaks_the_datas_words(medical: CardInputs) -> None:
    card = build_model_card(medical)
    page = render_card_html(card)
    for text in (card.markdown, page):
        assert not re.search("milling|failure", text, re.IGNORECASE)
    assert "the probability that `malignant` is 1 (The mass is malignant.)" in card.markdown
    assert "Holdout by `clinic`:" in card.markdown
    # 455 training rows are too few to calibrate drift for the default windows: it says so
    assert "Thresholds not calibrated: 455 training rows are too few" in card.markdown


def test_the_html_page_is_self_contained_and_keeps_table_cells(medical: CardInputs) -> None:
    page = render_card_html(build_model_card(medical))
    assert page.startswith("<!doctype html>")
    assert "<title>Model card: breast-cancer v1</title>" in page
    assert "<script" not in page and "http" not in page
    assert "<td>mean radius | cells</td>" in page  # a pipe in a description stays in its cell
    # summary, columns, metrics, one segment, gate checks; drift is uncalibrated: no table
    assert page.count("<table>") == 5


def test_a_long_card_keeps_its_leading_whole_sections(milling: CardInputs) -> None:
    markdown = build_model_card(milling).markdown
    assert fit_card(markdown, len(markdown), "model_card/card.md") == markdown
    limit = len(markdown) // 2
    short = fit_card(markdown, limit, "model_card/card.md")
    assert len(short) <= limit
    assert short.endswith(SHORTENED_NOTE.format(artifact="model_card/card.md") + "\n")
    kept = short.split("\n\n_Shortened", 1)[0]
    assert markdown.startswith(kept) and markdown[len(kept) :].startswith("\n\n## ")


def test_a_card_is_for_a_promoted_version_only(milling: CardInputs) -> None:
    refused = milling.decision.model_copy(update={"promote": False})
    inputs = CardInputs(**{**milling.__dict__, "decision": refused})
    message = "built for a promoted version; this decision of 'milling-failure' promoted none"
    with pytest.raises(ModelCardError, match=message):
        build_model_card(inputs)


def test_records_of_another_model_are_refused(milling: CardInputs) -> None:
    other = milling.training.model_copy(update={"content_sha256": "f" * 64})
    with pytest.raises(ModelCardError, match="records of different models"):
        build_model_card(CardInputs(**{**milling.__dict__, "training": other}))


def test_training_facts_name_what_meta_json_lacks(milling: CardInputs) -> None:
    meta = milling.training.model_dump()
    del meta["data_md5"]
    with pytest.raises(ModelCardError, match=r"meta.json lacks \['data_md5'\]; retrain"):
        TrainingFacts.from_meta(meta)


def test_without_a_card_the_page_says_why(milling: CardInputs) -> None:
    decision = milling.decision.model_copy(update={"promote": False, "champion_after": None})
    page = unpromoted_card(decision)
    assert "No version of `milling-failure` is champion: none was promoted yet." in page.markdown
    assert card_from_markdown(page.markdown).title == "Model card: milling-failure"
    with pytest.raises(ModelCardError, match="not a model card"):
        card_from_markdown("some description a user typed")
