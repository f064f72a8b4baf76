"""The local Evidently workspace at the edge: each judged window's snapshot, kept over time.

`evidently ui --workspace <folder>` serves the folder; its server watches it, so a running
dashboard shows a new window without a restart. One project per registered model, found
again by name on later runs. Its dashboard panels are added by title when absent, so they
are added once, panels added later by this code reach existing projects, and panels a user
added in the UI stay.

The files are written through the workspace's own file layer (`LocalState`, what
`Workspace` stores with), not by opening a `Workspace`: opening one parses every snapshot
already stored (here 0.1 s with 50 compact windows, 1.1 s with 50 full reports, growing with
each window), while recording this way stays near 10 ms. A snapshot appears whole (written
aside, then linked into place): a half-written one would stop `evidently ui` from starting.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evidently.core.report import Snapshot
    from evidently.sdk.models import DashboardPanelPlot, ProjectModel
    from evidently.ui.service.type_aliases import ProjectID
    from evidently.ui.storage.local.base import LocalState

logger = logging.getLogger(__name__)

_WINDOW_IDS = uuid.UUID("6f1d2c4e-8a57-4b0e-9c1a-3e5f7d9b2a64")  # namespace of snapshot ids


class WorkspaceError(RuntimeError):
    """The workspace folder cannot be used; the message names it and what to do."""


@dataclass(frozen=True)
class RecordedWindow:
    """Where a window's snapshot went, for the stage's log."""

    project_id: str
    snapshot_id: str
    snapshot_path: Path  # the snapshot's JSON file in the workspace
    created_project: bool
    panels_added: int
    replaced: bool  # the window's time had a snapshot already: this one took its place


def record_window(
    workspace_dir: Path,
    project: str,
    snapshot: Snapshot,
    panels: Mapping[str, Sequence[DashboardPanelPlot]],
    *,
    description: str | None = None,
) -> RecordedWindow:
    """Add `snapshot` to the project named `project` in the workspace at `workspace_dir`.

    Creates the folder and the project when absent; adds the `panels` (by tab title, from
    `monitoring.dashboard.build_dashboard_panels`) the project's dashboard lacks, by panel
    title. A folder that is a file or cannot be written raises `WorkspaceError`, naming
    monitor.workspace.directory.
    """
    folder = _usable_folder(Path(workspace_dir))
    from evidently.ui.storage.local.base import LocalState  # Evidently: only when recording

    state = LocalState(str(folder))
    model = snapshot.to_snapshot_model()
    # one snapshot per window time: a window judged again (a re-run, labels arrived since)
    # replaces its point instead of adding a second one at the same time
    snapshot_id = str(uuid.uuid5(_WINDOW_IDS, model.timestamp.isoformat()))
    try:
        found, created = _find_or_create_project(state, project, description)
        added = _add_missing_panels(state, found, panels)
        path = folder / str(found.id) / "snapshots" / f"{snapshot_id}.json"
        replaced = path.exists()
        _publish(path, json.dumps(model.dict(), cls=_numpy_encoder()))
    except OSError as exc:
        raise WorkspaceError(
            f"monitor.workspace.directory {folder}: writing the window failed "
            f"({exc.strerror or exc}): free space or give this user write access there"
        ) from None
    logger.info(
        "workspace %s: window of %s %s project %s (%s)%s",
        folder,
        model.timestamp.isoformat(),
        "replaced in" if replaced else "added to",
        project,
        "created" if created else "found",
        f", {added} panel(s) added" if added else "",
    )
    return RecordedWindow(
        project_id=str(found.id),
        snapshot_id=snapshot_id,
        snapshot_path=path,
        created_project=created,
        panels_added=added,
        replaced=replaced,
    )


def _usable_folder(folder: Path) -> Path:
    """`folder`, created when absent; a file or an unwritable folder is refused in one line."""
    where = f"monitor.workspace.directory {folder}"
    if folder.exists() and not folder.is_dir():
        raise WorkspaceError(
            f"{where} is a file, not a folder: move the file away or point "
            "monitor.workspace.directory at a folder"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkspaceError(
            f"{where} cannot be created ({exc.strerror or exc}): point "
            "monitor.workspace.directory at a writable folder"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise WorkspaceError(
            f"{where} is not writable: give this user write access or point "
            "monitor.workspace.directory at a writable folder"
        )
    return folder


def _find_or_create_project(
    state: LocalState, name: str, description: str | None
) -> tuple[ProjectModel, bool]:
    """The project named `name` (the oldest, should there be several), or a new one."""
    from evidently.sdk.models import ProjectModel

    found = sorted(
        (project for project in map(_reader(state), state.list_projects()) if project.name == name),
        key=lambda project: str(project.id),  # UUID7s: creation order
    )
    if len(found) > 1:
        logger.warning(
            "the workspace has %d projects named %s; adding to the oldest, %s",
            len(found),
            name,
            found[0].id,
        )
    if found:
        return found[0], False
    return state.write_project(ProjectModel(name=name, description=description)), True


def _reader(state: LocalState) -> Callable[[ProjectID], ProjectModel]:
    """`state.read_project`, with a damaged project file refused in one line."""

    def read(project_id: ProjectID) -> ProjectModel:
        try:
            return state.read_project(project_id)
        except ValueError as exc:  # JSON and pydantic errors alike
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise WorkspaceError(
                f"{Path(state.path) / str(project_id) / 'metadata.json'} is not a readable "
                f"Evidently project ({first}): repair or remove that project folder"
            ) from None

    return read


def _add_missing_panels(
    state: LocalState, project: ProjectModel, panels: Mapping[str, Sequence[DashboardPanelPlot]]
) -> int:
    """Add each panel whose title the dashboard lacks to its tab; save once; the count added."""
    from evidently.sdk.models import DashboardTabModel

    dashboard = state.read_dashboard(project.id)
    titles = {panel.title for panel in dashboard.panels}
    added = 0
    for tab_title, tab_panels in panels.items():
        missing = [panel for panel in tab_panels if panel.title not in titles]
        if not missing:
            continue
        tab = next((tab for tab in dashboard.tabs if tab.title == tab_title), None)
        if tab is None:
            tab = DashboardTabModel(title=tab_title, panels=[])
            dashboard.tabs.append(tab)
        for panel in missing:
            dashboard.panels.append(panel)
            tab.panels.append(panel.id)
            titles.add(panel.title)
            added += 1
    if added:
        state.write_dashboard(project.id, dashboard)
    return added


def _publish(path: Path, text: str) -> None:
    """Write `text` aside, then make it appear at `path` whole, replacing what was there.

    A hard link, not a rename: the `evidently ui` server loads a snapshot when its file is
    created or modified, and ignores one renamed into place (a replaced file is unlinked
    first, which the server sees as a deletion, then linked anew). Where hard links are not
    supported, a rename (the server then shows it after a restart).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; honour the umask
        try:
            path.unlink(missing_ok=True)
            os.link(tmp, path)
        except OSError:
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _numpy_encoder() -> type[json.JSONEncoder]:
    from evidently.legacy.utils import NumpyEncoder  # what Evidently writes snapshots with

    return NumpyEncoder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
