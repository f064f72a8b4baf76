"""The Evidently workspace edge: windows recorded over time, read back by Evidently itself
and served by a real `evidently ui` process."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.config import MonitorConfig
from features.contract import DataContract
from monitoring.dashboard import build_dashboard_panels, build_window_snapshot
from monitoring.drift import DriftResult, detect_drift
from pipelines.edges.workspace import WorkspaceError, record_window
from tests.mlflow_server import free_port, stop_process_group, tail_of, wait_until_up
from tests.monitoring.test_drift import make_window

PROJECT = "ai4i-failure"
T0 = dt.datetime(2026, 11, 5, 8, 0, tzinfo=dt.UTC)
WINDOWS = [  # (the window's last logged time, our numbers)
    (T0, {"estimated_roc_auc": 0.93, "realized_roc_auc": None, "floor_roc_auc": 0.85}),
    (T0 + dt.timedelta(hours=1), {"estimated_roc_auc": 0.90, "realized_roc_auc": 0.88}),
    (T0 + dt.timedelta(hours=2), {"estimated_roc_auc": 0.84, "realized_roc_auc": 0.80}),
]
EVIDENTLY = Path(sys.executable).parent / "evidently"
START_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def drift(contract: DataContract) -> DriftResult:
    return detect_drift(
        make_window(600, 1), make_window(600, 2, shift_sd={"Torque [Nm]": 1.0}), contract,
        MonitorConfig(),
    )  # fmt: skip


def _record(folder: Path, drift: DriftResult, windows=WINDOWS, project: str = PROJECT) -> list:
    return [
        record_window(
            folder,
            project,
            build_window_snapshot(drift.snapshot, values, moment),
            build_dashboard_panels(),
        )
        for moment, values in windows
    ]


def _estimated(model: Any) -> float | None:
    return next(
        (
            result.value
            for result in model.metric_results.values()
            if result.metric_value_location.metric.params.get("column") == "estimated_roc_auc"
        ),
        None,
    )


def test_three_windows_make_one_project_with_three_snapshots_and_panels_once(
    tmp_path: Path, drift: DriftResult
) -> None:
    from evidently.ui.workspace import Workspace

    folder = tmp_path / "workspace"
    recorded = _record(folder, drift)
    assert [r.created_project for r in recorded] == [True, False, False]
    expected_panels = sum(len(tab) for tab in build_dashboard_panels().values())
    assert [r.panels_added for r in recorded] == [expected_panels, 0, 0]

    workspace = Workspace(str(folder))  # reopened by Evidently's own public API
    projects = workspace.list_projects()
    assert [p.name for p in projects] == [PROJECT]
    project = projects[0]
    runs = {str(i): workspace.get_run(project.id, i) for i in workspace.list_runs(project.id)}
    assert set(runs) == {r.snapshot_id for r in recorded}
    by_time = sorted(runs.values(), key=lambda model: model.timestamp)
    assert [m.timestamp for m in by_time] == [t.replace(tzinfo=None) for t, _ in WINDOWS]
    assert [_estimated(m) for m in by_time] == [0.93, 0.90, 0.84]
    dashboard = workspace.get_dashboard(project.id)
    titles = [panel.title for panel in dashboard.panels]
    assert len(titles) == expected_panels == len(set(titles))
    assert {tab.title for tab in dashboard.tabs} == {"Drift", "Quality"}
    assert sorted(i for tab in dashboard.tabs for i in tab.panels) == sorted(
        p.id for p in dashboard.panels
    )
    # another registered model gets a project of its own; the first one is untouched
    _record(folder, drift, WINDOWS[:1], project="other-model")
    assert sorted(p.name for p in Workspace(str(folder)).list_projects()) == [
        PROJECT,
        "other-model",
    ]
    assert len(workspace.list_runs(project.id)) == 3


def test_a_window_judged_again_replaces_its_point(tmp_path: Path, drift: DriftResult) -> None:
    from evidently.ui.workspace import Workspace

    folder = tmp_path / "workspace"
    moment, values = WINDOWS[0]
    (first,) = _record(folder, drift, [(moment, values)])
    (again,) = _record(folder, drift, [(moment, {**values, "estimated_roc_auc": 0.95})])
    assert (first.replaced, again.replaced) == (False, True)
    assert again.snapshot_id == first.snapshot_id
    workspace = Workspace(str(folder))
    project = workspace.list_projects()[0]
    (only,) = workspace.list_runs(project.id)
    assert _estimated(workspace.get_run(project.id, only)) == 0.95
    assert sorted(p.name for p in (folder / first.project_id / "snapshots").iterdir()) == [
        f"{first.snapshot_id}.json"  # no temporary file left behind
    ]


def test_a_panel_the_user_removed_or_added_is_respected_by_title(
    tmp_path: Path, drift: DriftResult
) -> None:
    from evidently.ui.workspace import Workspace

    folder = tmp_path / "workspace"
    _record(folder, drift, WINDOWS[:1])
    workspace = Workspace(str(folder))
    project = workspace.list_projects()[0]
    dashboard = workspace.get_dashboard(project.id)
    mine = dashboard.panels[0].copy(update={"title": "My own panel"})
    dashboard.panels.append(mine)
    dashboard.tabs[0].panels.append(mine.id)
    dashboard.panels = [p for p in dashboard.panels if p.title != "Drift score per column"]
    workspace.save_dashboard(project.id, dashboard)
    # a later run adds back only the missing panel and keeps the user's
    (later,) = _record(folder, drift, WINDOWS[1:2])
    assert later.panels_added == 1
    titles = [p.title for p in workspace.get_dashboard(project.id).panels]
    assert "My own panel" in titles and titles.count("Drift score per column") == 1


def test_a_workspace_folder_that_is_a_file_is_refused_in_one_line(
    tmp_path: Path, drift: DriftResult
) -> None:
    folder = tmp_path / "workspace"
    folder.write_text("not a folder")
    with pytest.raises(WorkspaceError) as caught:
        _record(folder, drift, WINDOWS[:1])
    assert str(caught.value) == (
        f"monitor.workspace.directory {folder} is a file, not a folder: move the file away "
        "or point monitor.workspace.directory at a folder"
    )


def test_a_workspace_folder_that_cannot_be_created_is_refused_in_one_line(
    tmp_path: Path, drift: DriftResult
) -> None:
    (tmp_path / "plain-file").write_text("x")
    folder = tmp_path / "plain-file" / "workspace"  # unwritable even for root
    with pytest.raises(WorkspaceError) as caught:
        _record(folder, drift, WINDOWS[:1])
    assert str(caught.value) == (
        f"monitor.workspace.directory {folder} cannot be created (Not a directory): point "
        "monitor.workspace.directory at a writable folder"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_workspace_folder_is_refused_in_one_line(
    tmp_path: Path, drift: DriftResult
) -> None:
    folder = tmp_path / "workspace"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(WorkspaceError, match=r"is not writable: give this user write"):
            _record(folder, drift, WINDOWS[:1])
    finally:
        folder.chmod(0o700)


def test_a_damaged_project_file_is_named_in_one_line(tmp_path: Path, drift: DriftResult) -> None:
    folder = tmp_path / "workspace"
    (first,) = _record(folder, drift, WINDOWS[:1])
    metadata = folder / first.project_id / "metadata.json"
    metadata.write_text("{truncated")
    with pytest.raises(WorkspaceError) as caught:
        _record(folder, drift, WINDOWS[1:2])
    message = str(caught.value)
    assert message.startswith(f"{metadata} is not a readable Evidently project (")
    assert message.endswith("): repair or remove that project folder")
    assert "\n" not in message


# --- the real `evidently ui` server ------------------------------------------------------


@pytest.fixture
def ui_server(tmp_path: Path, drift: DriftResult) -> Iterator[tuple[str, Path]]:
    """Two windows recorded, then `evidently ui` on them; stopped at the end."""
    folder = tmp_path / "workspace"
    _record(folder, drift, WINDOWS[:2])
    port, log = free_port(), tmp_path / "ui.log"
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DO_NOT_TRACK": "1"}  # no telemetry from tests
    command = [str(EVIDENTLY), "ui", "--workspace", str(folder), "--port", str(port)]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until_up(
            process, lambda: _answers(f"{url}/api/version"), f"evidently ui ({url})", log,
            START_TIMEOUT_S,
        )  # fmt: skip
        yield url, folder
    finally:
        stop_process_group(process)
    assert process.poll() is not None, f"evidently ui still runs:\n{tail_of(log)}"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _post(url: str, body: dict) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _series(url: str, project_id: str, panel: dict) -> dict[str, list[float | None]]:
    """What the dashboard draws for `panel`: one list of values per series, in time order."""
    filters = [
        {
            "tags": v["tags"],
            "metadata": v["metadata"],
            "metric": v["metric"],
            "metric_labels": v["metric_labels"],
        }
        for v in panel["values"]
    ]
    answer = _post(
        f"{url}/api/v2/snapshots/{project_id}/data_series_batch", {"series_filter": filters}
    )
    return {
        series["params"].get("column", series["params"].get("value_type", "")): series["values"]
        for series in answer["series"]
    }


@pytest.mark.slow
def test_evidently_ui_serves_the_windows_over_time_and_picks_up_a_new_one(
    ui_server: tuple[str, Path], drift: DriftResult
) -> None:
    url, folder = ui_server
    projects = _get(f"{url}/api/projects")
    assert [p["name"] for p in projects] == [PROJECT]
    project_id = projects[0]["id"]
    dashboard = _get(f"{url}/api/v2/dashboards/{project_id}")
    panels = {panel["title"]: panel for panel in dashboard["panels"]}
    assert {tab["title"] for tab in dashboard["tabs"]} == {"Drift", "Quality"}

    roc_auc = _series(url, project_id, panels["ROC AUC"])
    assert roc_auc["estimated_roc_auc"] == [0.93, 0.90]
    assert roc_auc["realized_roc_auc"] == [None, 0.88]  # no labels yet for the first window
    share = _series(url, project_id, panels["Share of drifted feature columns"])
    assert share["share"] == [pytest.approx(drift.drifted_share)] * 2
    scores = _series(url, project_id, panels["Drift score per column"])
    assert set(scores) == {c.name for c in drift.columns}
    torque = next(c for c in drift.columns if c.name == "Torque [Nm]")
    assert scores["Torque [Nm]"][0] == pytest.approx(torque.score)

    # a window recorded while the server runs shows without a restart
    _record(folder, drift, WINDOWS[2:])
    deadline = time.monotonic() + 30
    while len(_get(f"{url}/api/projects/{project_id}/snapshots")) < 3:
        assert time.monotonic() < deadline, "the running server did not pick up the new window"
        time.sleep(0.25)
    roc_auc = _series(url, project_id, panels["ROC AUC"])
    assert roc_auc["estimated_roc_auc"] == [0.93, 0.90, 0.84]
    # the newest window judged again once its labels arrived: its point changes in place
    moment, values = WINDOWS[2]
    _record(folder, drift, [(moment, {**values, "realized_roc_auc": 0.79})])
    while _series(url, project_id, panels["ROC AUC"])["realized_roc_auc"][-1] != 0.79:
        assert time.monotonic() < deadline + 30, "the running server kept the replaced window"
        time.sleep(0.25)
    snapshots = _get(f"{url}/api/projects/{project_id}/snapshots")
    assert len(snapshots) == 3
    newest = max(snapshots, key=lambda s: s["timestamp"])
    assert newest["timestamp"] == "2026-11-05T10:00:00"
    page = _get(f"{url}/api/projects/{project_id}/{newest['id']}/data")  # the window's page
    assert any("estimated roc auc" in json.dumps(w) for w in page["widgets"])
