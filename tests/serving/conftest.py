"""Fixtures shared by the serving tests."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from tests.serving.server import ROOT


@pytest.fixture(scope="module")
def service_module() -> Any:
    """serving.service imported in this process (it reads the repository's params.yaml)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LIFECYCLE_PARAMS", str(ROOT / "params.yaml"))
        return importlib.import_module("serving.service")
