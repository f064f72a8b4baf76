"""A model card for a promoted version: what it predicts, from what data, how well, and how
it is watched.

Pure: the deploy stage gathers the records (the data contract, the model's training facts,
the training params, the evaluate stage's holdout metrics, the calibration measured on the
holdout, the gate's decision with its infra check, and the monitor profile) and calls
`build_model_card`; it logs the Markdown and `render_card_html`'s page to MLflow and sets
`fit_card` of it as the registry version's description. Every name in the card comes from
the contract and the records; the card says nothing about a domain the data does not.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.config import SearchValue, TrainConfig
from core.records import Record
from core.records.deploy import DeployDecision, InfraCheck, Metrics
from core.records.drift_calibration import ColumnCalibration, DriftCalibration
from core.records.estimation import ProbabilityCalibration
from core.records.evaluation import EvaluationReport, segment_key
from core.records.profile import MonitorProfile
from features.contract import Column, DataContract
from models.probability_calibration import (
    apply_probability_calibration,
    measure_calibration_error,
)

CARD_FILE = "card.md"
CARD_HTML_FILE = "card.html"
SHORTENED_NOTE = (
    "_Shortened to fit the registry's description; the full card is `{artifact}` in this "
    "version's MLflow run, and `lifecycle champion --card` prints it._"
)
_PREDICTION = "predicted probability (prediction drift)"


class ModelCardError(ValueError):
    """Records that cannot make one card; the message says which and why."""


class TrainingFacts(Record):
    """The trained model's own facts, as the train stage wrote them in its `meta.json`."""

    family: str
    hyperparameters: dict[str, SearchValue]  # the effective ones (a search's choice included)
    content_sha256: str
    mlflow_run_id: str
    data_md5: str  # of the validated dataset the splits came from
    train_rows: int
    sklearn_version: str

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> TrainingFacts:
        """The fields of `meta.json` the card shows; a missing one is named."""
        missing = [name for name in cls.model_fields if name not in meta]
        if missing:
            raise ModelCardError(
                f"the model's meta.json lacks {missing}; retrain (dvc repro train) to rewrite it"
            )
        return cls(**{name: meta[name] for name in cls.model_fields})


class HoldoutCalibration(Record):
    """Expected calibration error on the holdout: the model's probabilities, and after the
    calibrator the monitor applies (None when the monitor uses them as they are)."""

    rows: int
    bins: int
    error: float
    calibrated_error: float | None


@dataclass(frozen=True)
class CardInputs:
    contract: DataContract
    training: TrainingFacts
    train: TrainConfig
    seed: int
    evaluation: EvaluationReport
    holdout_calibration: HoldoutCalibration
    decision: DeployDecision  # the gate's verdict, promoted, with its infra check
    profile: MonitorProfile


@dataclass(frozen=True)
class ModelCard:
    title: str
    markdown: str


def measure_holdout_calibration(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    calibration: ProbabilityCalibration,
    bins: int,
) -> HoldoutCalibration:
    """The holdout's calibration error before and after `calibration` (the monitor's map)."""
    y = np.asarray(y_true).ravel()
    scores = np.asarray(probabilities, dtype=float).ravel()
    calibrated = None
    if calibration.method != "none":
        mapped = apply_probability_calibration(calibration, scores)
        calibrated = round(measure_calibration_error(y, mapped, bins), 6)
    return HoldoutCalibration(
        rows=len(y),
        bins=bins,
        error=round(measure_calibration_error(y, scores, bins), 6),
        calibrated_error=calibrated,
    )


def build_model_card(inputs: CardInputs) -> ModelCard:
    """The card of the version `inputs.decision` promoted, as Markdown."""
    decision, training = inputs.decision, inputs.training
    if not decision.promote or decision.registered_version is None:
        raise ModelCardError(
            "a model card is built for a promoted version; this decision of "
            f"{decision.registered_model!r} promoted none"
        )
    if training.content_sha256 != decision.challenger.content_sha256:
        raise ModelCardError(
            f"the training facts are of model {training.content_sha256[:12]} but the decision "
            f"promoted {decision.challenger.content_sha256[:12]}: records of different models"
        )
    title = f"Model card: {decision.registered_model} v{decision.registered_version}"
    sections = [
        f"# {title}",
        _summary(inputs),
        _data(inputs),
        _training(inputs),
        _performance(inputs),
        _calibration(inputs),
        _gate(decision),
        _serving(decision.infra_check),
        _drift(inputs.profile.drift),
    ]
    return ModelCard(title=title, markdown="\n\n".join(sections) + "\n")


def fit_card(markdown: str, limit: int, artifact: str) -> str:
    """`markdown` if it fits in `limit` characters; else its leading whole sections that fit,
    with a note naming the full card's `artifact` (the registry keeps a bounded text)."""
    if len(markdown) <= limit:
        return markdown
    note = "\n\n" + SHORTENED_NOTE.format(artifact=artifact) + "\n"
    room = limit - len(note)
    if room <= 0:
        raise ModelCardError(f"a description limit of {limit} characters leaves no room")
    parts = markdown.split("\n\n## ")
    kept = parts[0]
    for part in parts[1:]:
        candidate = f"{kept}\n\n## {part}"
        if len(candidate.rstrip()) > room:
            break
        kept = candidate
    if len(kept) > room:  # even the first section is too long: whole lines of it
        lines, kept = kept.splitlines(), ""
        for line in lines:
            if len(kept) + len(line) + 1 > room:
                break
            kept += line + "\n"
    return kept.rstrip() + note


def card_from_markdown(markdown: str) -> ModelCard:
    """A card read back as text (from the registry); its title is its first heading."""
    first = markdown.lstrip().splitlines()[0] if markdown.strip() else ""
    if not first.startswith("# "):
        raise ModelCardError("not a model card: its text does not start with a '# ' heading")
    return ModelCard(title=first[2:].strip(), markdown=markdown)


def unpromoted_card(decision: DeployDecision, problem: str | None = None) -> ModelCard:
    """The page in place of a card when no card can be shown: why, with the gate's reasons."""
    name, champion = decision.registered_model, decision.champion_after
    if champion is None:
        why = f"No version of `{name}` is champion: none was promoted yet."
    else:
        why = f"`{name}` v{champion.version} is champion, but its card cannot be shown: {problem}."
    reasons = "\n".join(f"- {reason}" for reason in decision.reasons)
    title = f"Model card: {name}"
    markdown = f"# {title}\n\n{why}\n\nThe last deploy decision (not promoted):\n\n{reasons}\n"
    return ModelCard(title=title, markdown=markdown)


def render_card_html(card: ModelCard) -> str:
    """The card as one self-contained HTML page (no scripts, no links to fetch)."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(card.markdown)
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(card.title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}</main>\n</body>\n</html>\n"
    )


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2rem;line-height:1.45;color:#222}"
    "main{max-width:60rem}table{border-collapse:collapse;margin:.5rem 0 1rem}"
    "th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}code{background:#f6f6f6;padding:0 .2rem}"
)


# --- sections -------------------------------------------------------------------------


def _summary(inputs: CardInputs) -> str:
    contract, training, decision = inputs.contract, inputs.training, inputs.decision
    threshold = inputs.evaluation.operating_point.threshold
    label = contract.by_name[contract.label]
    rows = [
        (
            "Registered model",
            f"`{decision.registered_model}` version {decision.registered_version}",
        ),
        ("Predicts", f"the probability that `{label.name}` is 1" + _suffix(label.description)),
        ("Decision", f"`{label.name}` = 1 when the probability is at least {threshold:.4g}"),
        ("Model", f"{training.family} (scikit-learn {training.sklearn_version})"),
        ("Content sha256", f"`{training.content_sha256}`"),
        ("MLflow run", f"`{training.mlflow_run_id}`"),
        ("Served as", f"`{decision.bento}`" if decision.bento else "-"),
    ]
    intro = (
        f"{contract.description.strip()}\n\n" if contract.description.strip() else ""
    ) + f"Data contract `{contract.name}`."
    return intro + "\n\n" + _table(("Item", "Value"), rows)


def _data(inputs: CardInputs) -> str:
    contract, training, profile = inputs.contract, inputs.training, inputs.profile
    holdout = inputs.evaluation.holdout
    reference = profile.reference
    shares = profile.importance.shares
    rows = [
        (
            f"`{column.name}`",
            column.role,
            column.dtype,
            _rules(column),
            f"{shares[column.name]:.0%}" if column.name in shares else "",
            column.description,
        )
        for column in contract.columns
    ]
    importance = profile.importance
    note = (
        f"Importance: permutation importance on the holdout ({importance.scoring}, "
        f"{importance.repeats} repeats), as shares."
        if importance.computed
        else f"Importance not measured: {importance.note}"
    )
    return "\n\n".join(
        [
            "## Data",
            f"Validated dataset md5 `{training.data_md5}`: {training.train_rows} training rows "
            f"({_positives(reference.positives, reference.rows)}) and "
            f"{_int(holdout.get('rows'))} holdout rows "
            f"({_positives(holdout.get('positives'), holdout.get('rows'))}), a stratified "
            f"split of {inputs.train.holdout_size:g} with seed {inputs.seed}.",
            _table(("Column", "Role", "Type", "Rules", "Importance", "Description"), rows),
            note,
        ]
    )


def _training(inputs: CardInputs) -> str:
    train, training = inputs.train, inputs.training
    settings = ", ".join(
        f"{key}={value}" for key, value in sorted(training.hyperparameters.items())
    )
    search = (
        f"a randomized search of {train.search.n_iter} settings x {train.search.cv_folds} folds "
        "chose them"
        if train.search.enabled
        else "no search (params.yaml's values)"
    )
    return (
        f"## Training\n\n{training.family}: {settings}; {search}. Out-of-fold predictions "
        f"over {train.cv_folds} folds gave the threshold and the reference data; seed "
        f"{inputs.seed}."
    )


def _performance(inputs: CardInputs) -> str:
    evaluation, profile = inputs.evaluation, inputs.profile
    holdout, point, oof = evaluation.holdout, evaluation.operating_point, profile.reference
    rows = [
        ("ROC AUC", _num(holdout.get("roc_auc")), _num(oof.roc_auc)),
        ("Average precision", _num(holdout.get("average_precision")), _num(oof.average_precision)),
        ("Brier score", _num(holdout.get("brier")), _num(profile.probabilities.check.brier)),
        ("Precision", _num(holdout.get("precision")), ""),
        ("Recall", _num(holdout.get("recall")), ""),
        ("F1", _num(holdout.get("f1")), ""),
    ]  # fmt: skip
    goal = point.goal if point.at_least is None else f"{point.goal} >= {point.at_least:g}"
    parts = [
        "## Performance",
        f"Operating threshold {point.threshold:.4g}, chosen on out-of-fold predictions for "
        f"{goal} ({'met' if point.met else 'NOT met'} there).",
        _table(("Metric", "Holdout", "Out-of-fold (training split)"), rows),
    ]
    for name in inputs.contract.categorical_features:
        groups = evaluation.segments.get(segment_key(name))
        if groups:
            parts.append(f"Holdout by `{name}`:\n\n" + _segment_table(groups))
    return "\n\n".join(parts)


def _segment_table(groups: Mapping[str, Metrics]) -> str:
    rows = [
        (
            f"`{value}`",
            _int(metrics.get("rows")),
            _int(metrics.get("positives")),
            _num(metrics.get("roc_auc")),
            _num(metrics.get("average_precision")),
            _num(metrics.get("precision")),
            _num(metrics.get("recall")),
        )
        for value, metrics in groups.items()
    ]
    return _table(("Value", "Rows", "Positives", "ROC AUC", "AP", "Precision", "Recall"), rows)


def _calibration(inputs: CardInputs) -> str:
    calibration, measured = inputs.profile.probabilities, inputs.holdout_calibration
    check = calibration.check
    after = (
        f", {measured.calibrated_error:.4f} after the {calibration.method} map"
        if measured.calibrated_error is not None
        else ""
    )
    use = (
        "Estimates of quality before labels use the calibrated probabilities."
        if calibration.trusted
        else "Estimates of quality before labels are NOT trusted: the calibration could not "
        "be checked."
    )
    return (
        f"## Calibration\n\nOut-of-fold, {check.rows} training rows: {check.reason}.\n\n"
        f"Holdout, {measured.rows} rows: expected calibration error {measured.error:.4f} "
        f"({measured.bins} quantile bins){after}. {use}"
    )


def _gate(decision: DeployDecision) -> str:
    before = decision.champion_before
    replaced = f"replacing v{before.version}" if before else "the first champion"
    rows = [
        (f"`{check.name}`", _num(check.value), _num(check.bound), "yes" if check.passed else "no")
        for check in decision.checks
    ]
    parts = [
        f"## Deploy gate\n\nPromoted to alias `champion`, {replaced}.",
        _table(("Check", "Value", "Bound", "Passed"), rows) if rows else "",
        "\n".join(f"- {reason}" for reason in decision.reasons),
    ]
    comparison = decision.comparison
    if comparison is not None:
        compared = decision.comparison_rows
        where = (
            f" on {compared.rows} holdout rows"
            + (
                f" ({compared.champion_training_rows_left_out} of the champion's training "
                "rows left out)"
                if compared.champion_training_rows_left_out
                else ""
            )
            if compared
            else ""
        )
        parts.append(
            f"Paired bootstrap{where}: {comparison.resamples} resamples, seed {comparison.seed}."
        )
    return "\n\n".join(part for part in parts if part)


def _serving(infra: InfraCheck | None) -> str:
    if infra is None:
        return "## Serving check\n\nNo infra check was recorded."
    return (
        f"## Serving check\n\n`{infra.tag}` loaded as the service loads it answered "
        f"{infra.rows} single-row requests: p50 {infra.p50_ms:.1f} ms, p99 {infra.p99_ms:.1f} "
        f"ms, max {infra.max_ms:.1f} ms (p99 budget {infra.budget_ms:g} ms); "
        f"{infra.rejected_rows} rejected, {infra.mismatched_rows} differing from the model's "
        f"own predictions. {'Passed' if infra.passed else 'Failed'}."
    )


def _drift(drift: DriftCalibration) -> str:
    head = "## Drift monitoring"
    if not drift.calibrated:
        return (
            f"{head}\n\nThresholds not calibrated: {drift.reason}. Evidently's default tests "
            "and thresholds apply."
        )
    named: dict[str, ColumnCalibration] = dict(drift.columns)
    if drift.prediction is not None:
        named[_PREDICTION] = drift.prediction
    sizes = drift.block_rows
    rows = [
        (
            name if name == _PREDICTION else f"`{name}`",
            column.method,
            *(f"{column.threshold_at(size):.4g}" for size in sizes),
        )
        for name, column in named.items()
    ]
    return (
        f"{head}\n\nDrift thresholds calibrated on {drift.training_rows} training rows, at "
        f"a false-alarm rate of {drift.false_alarm_rate:g} per window shared by {drift.tests} "
        f"columns ({drift.column_alpha:.3g} each): {drift.reason}.\n\n"
        + _table(("Column", "Method", *(f"{size} rows" for size in sizes)), rows)
    )


# --- formatting -----------------------------------------------------------------------


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = [_row(header), "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join([*lines, *(_row(row) for row in rows)])


def _row(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _rules(column: Column) -> str:
    rules = []
    if column.min is not None and column.max is not None:
        rules.append(f"{column.min:g}..{column.max:g}")
    elif column.min is not None:
        rules.append(f">= {column.min:g}")
    elif column.max is not None:
        rules.append(f"<= {column.max:g}")
    if column.categories:
        rules.append(", ".join(column.categories))
    if column.pattern:
        rules.append(f"`{column.pattern}`")
    if column.unique:
        rules.append("unique")
    if column.nullable:
        rules.append("nullable")
    if column.monotonic:
        rules.append(f"monotonic {column.monotonic}")
    return "; ".join(rules)


def _num(value: Any, digits: int = 4) -> str:
    if value is None or isinstance(value, bool):
        return "n/a"
    number = float(value)
    if not math.isfinite(number):
        return "n/a"
    text = f"{number:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _int(value: Any) -> str:
    return "n/a" if value is None else str(int(value))


def _positives(positives: Any, rows: Any) -> str:
    if positives is None or not rows:
        return "positives unknown"
    return f"{int(positives)} positives, {int(positives) / int(rows):.1%}"


def _suffix(description: str) -> str:
    text = " ".join(description.split())
    return f" ({text})" if text else ""
