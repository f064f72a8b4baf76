"""Quarantine: set aside the rows that break row-level rules, and decide pass or fail.

The row masks follow the suite's semantics, so their counts equal Great Expectations'; they
need only pandas. `check_dataset` runs the suite (importing Great Expectations when called)
and applies the policy of `validate.quarantine`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.config import ValidateConfig
from features.contract import Column, DataContract
from features.validation import ValidationReport, format_range


def row_rule_masks(frame: pd.DataFrame, contract: DataContract) -> dict[tuple[str, str], pd.Series]:
    """For each row-level rule, keyed (rule, column): True where a row breaks it.

    Same semantics as the suite, so the counts equal GE's: nulls count only for `not_null`,
    patterns are searched (`re.search`: anchor them). Missing columns are left out, and
    values of the wrong type are not counted here (that is a column-level failure).
    """
    masks: dict[tuple[str, str], pd.Series] = {}
    for column in contract.columns:
        if column.name not in frame.columns:
            continue
        values = frame[column.name]
        present = values.notna()
        if not column.nullable:
            masks[("not_null", column.name)] = ~present
        if column.min is not None or column.max is not None:
            numbers = pd.to_numeric(values, errors="coerce")
            low = numbers < column.min if column.min is not None else False
            high = numbers > column.max if column.max is not None else False
            masks[("range", column.name)] = (low | high) & present
        if column.categories is not None:
            masks[("categories", column.name)] = ~values.isin(column.categories) & present
        if column.pattern is not None:
            matches = values.astype(str).str.contains(re.compile(column.pattern), regex=True)
            masks[("pattern", column.name)] = ~matches.astype(bool) & present
    return {key: mask.fillna(False).astype(bool) for key, mask in masks.items()}


def quarantine_rows(
    frame: pd.DataFrame, contract: DataContract
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a frame into (good, bad): bad rows break at least one row-level rule."""
    bad = np.zeros(len(frame), dtype=bool)
    for mask in row_rule_masks(frame, contract).values():
        bad |= mask.to_numpy()
    return frame[~bad], frame[bad]


def _broken_rule_text(rule: str, column: Column) -> str:
    if rule == "not_null":
        return f"'{column.name}' is null"
    if rule == "range":
        return f"'{column.name}' out of range {format_range(column)}"
    if rule == "categories":
        return f"'{column.name}' not in {list(column.categories or ())}"
    return f"'{column.name}' not matching {column.pattern!r}"


def quarantine_reasons(frame: pd.DataFrame, contract: DataContract) -> dict[str, int]:
    """How many rows break each row-level rule (a row may break several)."""
    return {
        _broken_rule_text(rule, contract.by_name[column]): int(mask.sum())
        for (rule, column), mask in row_rule_masks(frame, contract).items()
        if mask.any()
    }


# --- the decision: pass, quarantine, or fail ------------------------------------------------


@dataclass(frozen=True, eq=False)
class ValidationOutcome:
    """What validation decided: the rows to pass on, the rows set aside, and why."""

    report: ValidationReport  # on the whole frame
    validated: pd.DataFrame | None = field(repr=False)  # None when validation failed
    quarantined: pd.DataFrame = field(repr=False)
    quarantine_enabled: bool = False
    max_share: float = 0.0
    reasons: Mapping[str, int] = field(default_factory=dict)
    after_quarantine: ValidationReport | None = None  # the rows kept, validated again
    problem: str | None = None  # why quarantine could not be used, when it was tried

    @property
    def success(self) -> bool:
        return self.validated is not None

    @property
    def reports(self) -> tuple[ValidationReport, ...]:
        if self.after_quarantine is None:
            return (self.report,)
        return (self.report, self.after_quarantine)

    @property
    def quarantined_share(self) -> float:
        return len(self.quarantined) / self.report.rows if self.report.rows else 0.0

    def message(self) -> str:
        """The report's message, plus what quarantine did or why it could not help."""
        lines = [self.report.message()]
        if self.problem:
            lines.append(self.problem)
        elif len(self.quarantined):
            reasons = ", ".join(f"{text}: {n}" for text, n in sorted(self.reasons.items()))
            lines.append(
                f"quarantined {len(self.quarantined)} of {self.report.rows} rows "
                f"({self.quarantined_share:.2%}, validate.quarantine.max_share "
                f"{self.max_share:.2%}): {reasons}"
            )
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        """Deterministic, JSON-ready summary (the validate stage's DVC metric)."""
        applied = self.success and len(self.quarantined) > 0
        return {
            "success": self.success,
            "rows": self.report.rows,
            "rows_validated": 0 if self.validated is None else len(self.validated),
            "rows_quarantined": len(self.quarantined) if applied else 0,
            "label_rate": (self.after_quarantine or self.report).label_rate,
            "quarantine": {
                "enabled": self.quarantine_enabled,
                "applied": applied,
                "share": round(self.quarantined_share, 6),
                "max_share": self.max_share,
                "reasons": dict(sorted(self.reasons.items())),
                "problem": self.problem,
            },
            "validation": self.report.summary(),
            "after_quarantine": None
            if self.after_quarantine is None
            else self.after_quarantine.summary(),
        }


def check_dataset(
    frame: pd.DataFrame, contract: DataContract, config: ValidateConfig
) -> ValidationOutcome:
    """Validate a frame and apply the quarantine policy of `validate.quarantine`.

    Passes when every expectation holds. With quarantine enabled, a frame whose only failures
    are row-level rules passes with the offending rows set aside, provided they are at most
    `max_share` of the rows and the rows kept pass the whole suite again (row count and label
    rate included).
    """
    from features.expectations import validate_frame  # Great Expectations: only when called

    policy = config.quarantine
    report = validate_frame(frame, contract, config)
    none = frame.iloc[0:0]
    base = {"report": report, "quarantine_enabled": policy.enabled, "max_share": policy.max_share}
    if report.success:
        return ValidationOutcome(validated=frame, quarantined=none, **base)
    if not policy.enabled:
        return ValidationOutcome(validated=None, quarantined=none, **base)
    if not report.quarantinable:
        return ValidationOutcome(
            validated=None,
            quarantined=none,
            **base,
            problem="quarantine cannot help: column- or dataset-level rules failed "
            "(only null, range, category and pattern failures are quarantined)",
        )
    good, bad = quarantine_rows(frame, contract)
    reasons = quarantine_reasons(frame, contract)
    share = len(bad) / len(frame)
    if share > policy.max_share:
        return ValidationOutcome(
            validated=None,
            quarantined=bad,
            reasons=reasons,
            **base,
            problem=f"quarantine refused: {len(bad)} of {len(frame)} rows ({share:.2%}) break "
            f"row-level rules, more than validate.quarantine.max_share "
            f"({policy.max_share:.2%})",
        )
    after = validate_frame(good, contract, config, run_name="after_quarantine")
    if not after.success:
        return ValidationOutcome(
            validated=None,
            quarantined=bad,
            reasons=reasons,
            after_quarantine=after,
            **base,
            problem="the rows kept after quarantine still fail:\n" + after.message(),
        )
    return ValidationOutcome(
        validated=good, quarantined=bad, reasons=reasons, after_quarantine=after, **base
    )
