"""What the monitor keeps of each window for the `evidently ui` dashboard, and that dashboard.

One Evidently snapshot per window, stamped with the window's time: the drift report's own
metrics (the count and share of drifted columns, each column's drift score, the served
probabilities' drift) merged with our numbers, the champion's estimated quality (CBPE),
its realized quality once labels arrived and the floors. Stock dashboard panels plot only
metric results, so each of our numbers is Evidently's `MeanValue` of a one-row column named
after it: the `evidently ui` server reads the snapshot without any code of ours, and the
window's page shows the numbers beside the drift tests. A number that is None (no labels
yet, an undefined metric) is left out, so the panel shows a gap, never a made-up value.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from core.clock import as_utc

if TYPE_CHECKING:
    from evidently.core.report import Snapshot
    from evidently.sdk.models import DashboardPanelPlot

    from core.records.monitor import QualitySummary

ValueKind = Literal["estimated", "realized", "floor"]

VALUE_KINDS: tuple[ValueKind, ...] = ("estimated", "realized", "floor")
# The quality metrics the dashboard plots, by the names QualitySummary and the floors use.
QUALITY_METRICS: dict[str, str] = {
    "roc_auc": "ROC AUC",
    "average_precision": "Average precision",
    "precision": "Precision at the operating threshold",
    "recall": "Recall at the operating threshold",
}
_EVIDENTLY = "evidently:metric_v2:"
_SHARE = {"value_type": "share"}  # which of DriftedColumnsCount's two values a panel plots
_COUNT = {"value_type": "count"}
_NAME = re.compile(r"[a-z][a-z0-9_]*")


class WindowSnapshotError(ValueError):
    """A value or timestamp that cannot go into the window's snapshot; the message names it."""


def value_name(kind: ValueKind, metric: str) -> str:
    """The column (and panel series) name of one of our numbers, e.g. `estimated_roc_auc`."""
    return f"{kind}_{metric}"


def window_values(
    estimated: Mapping[str, float | None] | None,
    realized: QualitySummary | None,
    floors: Mapping[str, float],
) -> dict[str, float | None]:
    """Our numbers for one window, named by `value_name`, for `build_window_snapshot`.

    `estimated`: the CBPE estimate by metric name (None: not estimated). `realized`: the
    window's `QualitySummary`; its metrics count only when it was judged (enough labelled
    rows with both classes), as the verdict counts them. `floors`: monitor.quality.thresholds.
    """
    values: dict[str, float | None] = {}
    for metric in QUALITY_METRICS:
        values[value_name("estimated", metric)] = (estimated or {}).get(metric)
        judged = realized is not None and realized.judged
        values[value_name("realized", metric)] = getattr(realized, metric) if judged else None
        values[value_name("floor", metric)] = floors.get(metric)
    return values


def build_window_snapshot(
    drift: Snapshot,
    values: Mapping[str, float | None],
    timestamp: dt.datetime,
    *,
    include_report: bool = False,
    name: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Snapshot:
    """The window's snapshot: `drift`'s results and `values`, stamped `timestamp`.

    `drift` is the Evidently run of the window's drift report (`DriftResult.snapshot`); it
    is not changed. `values` are our numbers by lower-case name (None or NaN: left out).
    `timestamp` is the window's time (its last logged prediction), stored as naive UTC (a
    naive one is taken as UTC already): Evidently stamps its own snapshots naive, and its
    server compares the stamps with naive times. The window's page shows the drift tests
    and our numbers; with `include_report`, the whole drift report too (0.24 MB a window
    against 16 kB, six features; the monitor's MLflow run keeps each drift.html anyway).
    Per-metric widgets, which the page does not show, are dropped. `metadata` (string
    values) shows on the window's page and can filter panels.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.core.report import Snapshot
    from evidently.core.serialization import SnapshotModel
    from evidently.metrics import MeanValue

    kept = _finite_values(values)
    base = drift.to_snapshot_model()
    metric_results = dict(base.metric_results)
    top_level = list(base.top_level_metrics)
    widgets = list(base.widgets) if include_report else []
    if kept:
        frame = pd.DataFrame([kept], dtype=float)
        ours = (
            Report([MeanValue(column=column) for column in kept])
            .run(
                Dataset.from_pandas(
                    frame, data_definition=DataDefinition(numerical_columns=list(kept))
                ),
                None,
            )
            .to_snapshot_model()
        )
        metric_results.update(ours.metric_results)
        top_level += ours.top_level_metrics
        widgets.append(_values_widget(kept))
    model = SnapshotModel(
        report=base.report,
        name=name,
        timestamp=_naive_utc(timestamp),
        metadata={**base.metadata, **_strings(metadata or {})},
        tags=list(base.tags),
        metric_results={key: _without_widget(result) for key, result in metric_results.items()},
        top_level_metrics=top_level,
        widgets=widgets,
        tests_widgets=list(base.tests_widgets),
    )
    return Snapshot.load_model(model)


def build_dashboard_panels() -> dict[str, list[DashboardPanelPlot]]:
    """The project's dashboard by tab title: panels that plot one quantity per window.

    "Drift": the share and the number of drifted feature columns (Evidently's
    `DriftedColumnsCount`) and every column's drift score (`ValueDrift`, one line per
    column, the served probability among them). "Quality": per metric of
    `QUALITY_METRICS`, the estimated, realized and floor values. Panel titles are unique
    across tabs, so a workspace can add the ones it lacks by title.
    """
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    drifted = f"{_EVIDENTLY}DriftedColumnsCount"
    drift = [
        line_plot_panel(
            title="Share of drifted feature columns",
            description="drifted feature columns, each against its own (calibrated) threshold",
            size="half",
            values=[PanelMetric(legend="share", metric=drifted, metric_labels=_SHARE)],
        ),
        line_plot_panel(
            title="Number of drifted feature columns",
            description="Evidently's verdict per column",
            size="half",
            values=[PanelMetric(legend="count", metric=drifted, metric_labels=_COUNT)],
        ),
        line_plot_panel(
            title="Drift score per column",
            description="the test the window's report names per column: a distance (higher: "
            "more drift) or a p-value (lower: more drift)",
            values=[PanelMetric(legend="{{column}}", metric=f"{_EVIDENTLY}ValueDrift")],
        ),
    ]
    quality = [
        line_plot_panel(
            title=title,
            description="estimated before labels (CBPE), realized once labels arrive, and "
            "the floor (monitor.quality.thresholds)",
            size="half",
            values=[
                PanelMetric(
                    legend=kind,
                    metric=f"{_EVIDENTLY}MeanValue",
                    metric_labels={"column": value_name(kind, metric)},
                )
                for kind in VALUE_KINDS
            ],
        )
        for metric, title in QUALITY_METRICS.items()
    ]
    return {"Drift": drift, "Quality": quality}


def _values_widget(values: Mapping[str, float]) -> Any:
    """One small counter widget with our numbers (a one-point plot per value says less)."""
    from evidently.legacy.renderers.html_widgets import CounterData, counter

    return counter(
        title="This window's quality: estimated (CBPE), realized (labels), floors",
        counters=[
            CounterData(name.replace("_", " "), f"{value:.4g}") for name, value in values.items()
        ],
    )


def _without_widget(result: Any) -> Any:
    """`result` without its own widget: the window's page draws the report's widgets only."""
    return result.copy(update={"widget": None})


def _finite_values(values: Mapping[str, float | None]) -> dict[str, float]:
    kept: dict[str, float] = {}
    for name, value in values.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise WindowSnapshotError(
                f"value name {name!r} is not a lower-case identifier (e.g. estimated_roc_auc)"
            )
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise WindowSnapshotError(f"value {name} is {value!r}, not a number or None")
        if math.isfinite(value):
            kept[name] = float(value)
    return kept


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    if not isinstance(moment, dt.datetime) or pd.isna(moment):  # pandas' NaT is a datetime
        raise WindowSnapshotError(f"the window's timestamp is {moment!r}, not a datetime")
    return as_utc(pd.Timestamp(moment).to_pydatetime()).replace(tzinfo=None)


def _strings(metadata: Mapping[str, str]) -> dict[str, str]:
    return {str(key): str(value) for key, value in metadata.items()}
