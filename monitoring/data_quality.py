"""Data quality of the served traffic: nulls, values outside the contract, stuck sensors,
categories never seen in training and one record resent again and again, each judged against
the training profile.

Drift says the world moved; these checks say the data is broken (a dead sensor repeating its
last reading, a column that stopped arriving, a product type the model never saw), which no
retrain on that data can fix: a failure here alerts. The profile is taken at training time
on the training split in the source's row order, so run lengths compare like with like; the
window is the logged traffic in log order.

What reaches the prediction log through the service: the request schema is derived from the
contract, so out-of-range numbers, categories outside the contract and nulls in required
features are refused at request time; nulls in nullable features, stuck readings and contract
categories unseen in training do reach it. A contract feature absent from the log reads back
as all null. The checks still work on any frame (older logs, other writers, a changed contract).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from core.config import DataQualityConfig
from core.records.data_quality import (
    ColumnProfile,
    DataProfile,
    DataQualityCheck,
    DataQualitySummary,
)
from features.contract import Column, DataContract

_EXAMPLES = 3  # offending values quoted in a check


class DataQualityError(ValueError):
    """A frame or profile the checks cannot use; the message says what to do."""


# --- train time ---------------------------------------------------------------------------


def profile_training_data(train: pd.DataFrame, contract: DataContract) -> DataProfile:
    """Per feature: null share, distinct values, longest run of one value, range or categories.

    `train` is the training split in the source's row order (`models.training.split_data`).
    """
    missing = [name for name in contract.features if name not in train.columns]
    if missing:
        raise DataQualityError(
            f"data profile: the training data lacks feature column(s) {missing} of the "
            f"contract '{contract.name}'; profile the training split the model was fitted on"
        )
    columns = {
        name: _profile_column(train[name], contract.by_name[name]) for name in contract.features
    }
    return DataProfile(rows=len(train), columns=columns)


def _profile_column(values: pd.Series, column: Column) -> ColumnProfile:
    present = values.notna().to_numpy()
    null_share = float(1.0 - present.mean()) if len(values) else 0.0
    if column.is_numeric:
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)[present]
        numbers = numbers[np.isfinite(numbers)]
        return ColumnProfile(
            name=column.name,
            numeric=True,
            null_share=round(null_share, 6),
            distinct=len(np.unique(numbers)),
            longest_run=_longest_run(numbers)[0],
            minimum=float(numbers.min()) if len(numbers) else None,
            maximum=float(numbers.max()) if len(numbers) else None,
        )
    texts = values[present].astype(str).to_numpy(dtype=object)
    seen = tuple(sorted(set(texts))) if column.dtype == "categorical" else None
    return ColumnProfile(
        name=column.name,
        numeric=False,
        null_share=round(null_share, 6),
        distinct=len(set(texts)),
        longest_run=_longest_run(texts)[0],
        categories=seen,
    )


def _longest_run(values: np.ndarray) -> tuple[int, int]:
    """The length of the longest run of one value, and the index where it starts."""
    if len(values) == 0:
        return 0, 0
    starts = np.concatenate(([0], np.flatnonzero(values[1:] != values[:-1]) + 1))
    lengths = np.diff(np.concatenate((starts, [len(values)])))
    longest = int(np.argmax(lengths))
    return int(lengths[longest]), int(starts[longest])


# --- monitor time -------------------------------------------------------------------------


def assess_data_quality(
    window: pd.DataFrame, profile: DataProfile, contract: DataContract, config: DataQualityConfig
) -> DataQualitySummary:
    """Every check on every contract feature of `window` (log order), failed checks first."""
    rows = len(window)
    if rows == 0:
        return DataQualitySummary(
            judged=False,
            passed=True,
            rows=0,
            failed=(),
            checks=(),
            reason="data quality not judged: the window holds no rows",
        )
    unprofiled = [name for name in contract.features if name not in profile.columns]
    if unprofiled:
        raise DataQualityError(
            f"data quality: the champion's training profile has no column(s) {unprofiled} of "
            f"the contract '{contract.name}': the contract changed after training; retrain"
        )
    fresh = _fresh_records(window, contract.features)
    checks: list[DataQualityCheck] = [_check_repeated(fresh, config)]
    for name in contract.features:
        column, trained = contract.by_name[name], profile.columns[name]
        absent = name not in window.columns
        values = pd.Series([None] * rows, dtype=object) if absent else window[name]
        checks.append(_check_nulls(values, column, trained, config, absent))
        checks.append(_check_contract(values, column, config))
        checks.append(_check_stuck(values, column, trained, config, fresh))
        if column.dtype == "categorical":
            checks.append(_check_new_categories(values, column, trained, config))
    ordered = tuple([c for c in checks if not c.passed] + [c for c in checks if c.passed])
    failed = tuple(f"{c.kind}:{c.column}" for c in ordered if not c.passed)
    if failed:
        reason = f"data quality fails on {rows:,} rows: " + "; ".join(
            c.message for c in ordered if not c.passed
        )
    else:
        reason = f"data quality: all {len(ordered)} checks pass on {rows:,} rows"
    return DataQualitySummary(
        judged=True, passed=not failed, rows=rows, failed=failed, checks=ordered, reason=reason
    )


def _check_nulls(
    values: pd.Series,
    column: Column,
    trained: ColumnProfile,
    config: DataQualityConfig,
    absent: bool,
) -> DataQualityCheck:
    rows = len(values)
    share = float(values.isna().mean())
    limit = min(1.0, trained.null_share + config.null_allowance)
    passed = share <= limit
    allowed = "" if column.nullable else "; the contract does not allow nulls here"
    if absent:
        message = (
            f"{column.name} is absent from the window: all {rows:,} rows are null (in training: "
            f"{trained.null_share:.1%}){allowed}"
        )
    elif passed:
        message = (
            f"{column.name}: {share:.1%} null in {rows:,} rows (in training: "
            f"{trained.null_share:.1%}; allowed up to {limit:.1%})"
        )
    else:
        message = (
            f"{column.name} is null in {share:.1%} of the window's {rows:,} rows (in training: "
            f"{trained.null_share:.1%}; allowed up to {limit:.1%}){allowed}"
        )
    return DataQualityCheck(
        kind="nulls",
        column=column.name,
        passed=passed,
        value=round(share, 6),
        limit=round(limit, 6),
        training=trained.null_share,
        message=message,
    )


def _check_contract(
    values: pd.Series, column: Column, config: DataQualityConfig
) -> DataQualityCheck:
    present = values[values.notna()]
    outside = _outside_contract(present, column)
    count = int(outside.sum())
    share = count / len(present) if len(present) else 0.0
    limit = config.max_outside_share
    passed = share <= limit
    rule = _rule(column)
    examples = tuple(_shown(value) for value in pd.unique(present[outside].to_numpy())[:_EXAMPLES])
    if count == 0:
        message = (
            f"{column.name}: every one of {len(present):,} values keeps to the contract ({rule})"
        )
    else:
        verdict = f"allowed up to {limit:.1%}" if passed else f"more than the {limit:.1%} allowed"
        message = (
            f"{column.name}: {count:,} of {len(present):,} values ({share:.1%}) break the "
            f"contract ({rule}), {verdict}; e.g. {', '.join(examples)}"
        )
    return DataQualityCheck(
        kind="outside_contract",
        column=column.name,
        passed=passed,
        value=round(share, 6),
        limit=limit,
        training=None,
        examples=examples,
        message=message,
    )


def _outside_contract(present: pd.Series, column: Column) -> np.ndarray:
    """True for each non-null value the contract refuses: range, dtype, categories, pattern."""
    if column.is_numeric:
        numbers = pd.to_numeric(present, errors="coerce").to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(numbers)  # not a number at all, or infinite
            if column.min is not None:
                bad |= numbers < column.min
            if column.max is not None:
                bad |= numbers > column.max
            if column.dtype == "integer":
                bad |= np.isfinite(numbers) & (numbers != np.round(numbers))
        return bad
    texts = present.astype(str)
    if column.categories is not None:
        return ~texts.isin(column.categories).to_numpy()
    if column.pattern is not None:
        pattern = re.compile(column.pattern)
        return ~texts.map(lambda text: pattern.search(text) is not None).to_numpy(dtype=bool)
    return np.zeros(len(present), dtype=bool)


def _rule(column: Column) -> str:
    if column.is_numeric:
        low = "-inf" if column.min is None else f"{column.min:g}"
        high = "inf" if column.max is None else f"{column.max:g}"
        kind = "whole numbers" if column.dtype == "integer" else "numbers"
        return f"{kind} from {low} to {high}"
    if column.categories is not None:
        return "one of " + ", ".join(column.categories)
    return f"text matching {column.pattern}" if column.pattern else "text"


def _fresh_records(window: pd.DataFrame, features: tuple[str, ...]) -> np.ndarray:
    """True for each row whose features differ from the row before it (the first row: true).

    A row equal to its predecessor in every feature (nulls equal nulls) is the same record
    sent again, e.g. a client retrying one request, not a new reading.
    """
    present = [name for name in features if name in window.columns]
    if not present or window.empty:
        return np.ones(len(window), dtype=bool)
    frame = window[present].reset_index(drop=True)
    before = frame.shift()
    same = (frame == before) | (frame.isna() & before.isna())
    fresh = ~same.all(axis=1).to_numpy()
    fresh[0] = True
    return fresh


def _check_repeated(fresh: np.ndarray, config: DataQualityConfig) -> DataQualityCheck:
    """One record arriving many times in a row: traffic that is not live readings.

    Judged on whole records, so it is told apart from a stuck sensor (one column repeating
    while the rest of the record changes); the run limit is `stuck_min_rows`, since identical
    consecutive records of continuous readings do not occur in live traffic.
    """
    starts = np.flatnonzero(fresh)
    lengths = np.diff(np.concatenate((starts, [len(fresh)])))
    longest = int(np.argmax(lengths)) if len(lengths) else 0
    run = int(lengths[longest]) if len(lengths) else 0
    limit = config.stuck_min_rows - 1
    passed = run <= limit
    if passed:
        message = f"records: longest run of one identical record {run:,} (repeated above {limit:g})"
    else:
        first, last = int(starts[longest]) + 1, int(starts[longest]) + run
        message = (
            f"one identical record arrived {run:,} times in a row (rows {first:,} to {last:,} "
            f"of {len(fresh):,}): a client resending one request, not live readings"
        )
    return DataQualityCheck(
        kind="repeated",
        column="record",
        passed=passed,
        value=float(run),
        limit=float(limit),
        training=None,
        message=message,
    )


def _check_stuck(
    values: pd.Series,
    column: Column,
    trained: ColumnProfile,
    config: DataQualityConfig,
    fresh: np.ndarray,
) -> DataQualityCheck:
    """A value repeated far longer than any run in training (nulls between do not break it).

    Numeric columns are judged on their longest run in log order; categorical ones only when
    the window holds one category, since a long run of the commonest type is a change in the
    product mix (drift), not a broken reading. Records that repeat the one before them whole
    are left out (`_check_repeated` judges those), so a resent request is not a stuck sensor.
    """
    present = values.notna().to_numpy() & fresh
    positions = np.flatnonzero(present)
    if column.is_numeric:
        kept = pd.to_numeric(values[present], errors="coerce").to_numpy(dtype=float)
    else:
        kept = values[present].astype(str).to_numpy(dtype=object)
    run, start = _longest_run(kept)
    limit = max(config.stuck_factor * trained.longest_run, config.stuck_min_rows - 1)
    one_value = len(kept) > 0 and run == len(kept)
    judged = column.is_numeric or one_value
    passed = not (judged and run > limit and trained.distinct > 1)
    reading = _shown(kept[start]) if run else "-"
    if passed:
        message = (
            f"{column.name}: longest run of one value {run:,} rows (in training: "
            f"{trained.longest_run:,}; stuck above {limit:g})"
        )
    else:
        first, last = positions[start] + 1, positions[start + run - 1] + 1
        if last == len(values):
            where = f"for the last {run:,} rows ("
        else:
            where = f"for {run:,} rows (rows {first:,} to {last:,} of {len(values):,}; "
        message = (
            f"{column.name} is stuck at {reading} {where}longest run in training: "
            f"{trained.longest_run:,})"
        )
    return DataQualityCheck(
        kind="stuck",
        column=column.name,
        passed=passed,
        value=float(run),
        limit=float(limit),
        training=float(trained.longest_run),
        examples=(reading,) if run else (),
        message=message,
    )


def _check_new_categories(
    values: pd.Series, column: Column, trained: ColumnProfile, config: DataQualityConfig
) -> DataQualityCheck:
    texts = values[values.notna()].astype(str)
    seen = set(trained.categories or ())
    counts = texts[~texts.isin(seen)].value_counts()
    rows = int(counts.sum())
    passed = rows == 0 or not config.new_category_fails
    examples = tuple(str(name) for name in counts.index[:_EXAMPLES])
    if rows == 0:
        message = f"{column.name}: every category was seen in training"
    else:
        contract = set(column.categories or ())
        listed = ", ".join(
            f"'{name}' ({count:,} rows, {'in' if name in contract else 'not in'} the contract)"
            for name, count in counts.items()
        )
        message = f"{column.name} has categories never seen in training: {listed}"
        if passed:
            message += " (reported only: monitor.data_quality.new_category_fails is false)"
    return DataQualityCheck(
        kind="new_category",
        column=column.name,
        passed=passed,
        value=float(rows),
        limit=0.0,
        training=float(trained.distinct),
        examples=examples,
        message=message,
    )


def _shown(value: object) -> str:
    """A value as a message quotes it: 40.0, 'X'."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float | np.floating):
        return repr(float(value))
    return str(value)
