"""One watch at a time, stopped gently: the single-instance lock and the stop signals.

`acquire_watch_lock` holds `monitor.watch.lock` for the life of the process, or fails at
once naming it. `StopSignal`: the first SIGTERM or Ctrl-C asks the loop to stop after the
current iteration; a second one also stops the running `dvc repro`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from filelock import FileLock, Timeout

logger = logging.getLogger(__name__)


class WatchLockedError(RuntimeError):
    """Another `lifecycle watch` holds the lock."""


def acquire_watch_lock(path: Path) -> FileLock:
    """Hold `path` exclusively, or fail at once naming it: one watch at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, blocking=False)
    try:
        lock.acquire()
    except Timeout:
        raise WatchLockedError(
            f"another lifecycle watch is running (lock {path.resolve()})"
        ) from None
    return lock


class StopSignal:
    """SIGTERM/SIGINT: the first asks to stop after this iteration, the second stops dvc too."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.child: subprocess.Popen[str] | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def watch_child(self, child: subprocess.Popen[str] | None) -> None:
        self.child = child

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not self.event.is_set():
            self.event.set()
            logger.warning(
                "%s: finishing the current iteration, then exiting (send it again to stop now)",
                name,
            )
            return
        child = self.child
        if child is not None and child.poll() is None:
            logger.warning("%s again: stopping the running dvc repro", name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
