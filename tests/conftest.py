"""Shared fixtures: the project's contract and the real AI4I 2020 file (when present)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from features.contract import DataContract, load_contract

pytest_plugins = [
    "tests.mlflow_server",  # the real `mlflow server` fixture
    "tests.stack_servers",  # the production stack: PostgreSQL, moto_server, mlflow server
]

# One numeric thread in every test process and the stages they start: the suite runs several
# workers on this machine's cores (pytest-xdist), and OpenMP's spinning threads oversubscribed
# make a cross-validation 15 times slower (measured: 15 s against 1 s). Speed is measured
# in benchmarks/, which keep the libraries' defaults.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

ROOT = Path(__file__).resolve().parents[1]
CONTRACT_PATH = ROOT / "features" / "contracts" / "milling.yaml"
REAL_AI4I = ROOT.parent / "shared" / "datasets" / "ai4i2020.csv"


# The longest files, longest first (worker-seconds from a junit profile of the whole suite,
# 3 workers, 2026-12-02, fresh clone, 20 min in all): scheduled first, so no long file starts
# last and keeps one worker busy alone at the end.
LONGEST_FILES = (
    "tests/e2e/test_loop.py",  # ~383 s
    "tests/orchestrators/test_airflow.py",  # ~240 s
    "tests/e2e/test_stack_lifecycle.py",  # ~226 s
    "tests/e2e/test_dvc_repro.py",  # ~210 s
    "tests/orchestrators/test_prefect.py",  # ~187 s
    "tests/orchestrators/test_dagster.py",  # ~186 s
    "tests/e2e/test_champion_challenger.py",  # ~183 s
    "tests/orchestrators/test_stepfunctions.py",  # ~151 s
    "tests/orchestrators/test_prefect_workers.py",  # ~151 s
    "tests/orchestrators/test_kubeflow.py",  # ~135 s
    "tests/faults/test_tracking_outage.py",  # ~122 s
    "tests/faults/test_pipeline_faults.py",  # ~116 s
    "tests/lifecycle/test_watch.py",  # ~104 s
    "tests/browser/test_pages.py",  # ~99 s
    "tests/e2e/test_byod.py",  # ~83 s
    "tests/e2e/test_offline.py",  # ~80 s
    "tests/e2e/test_tracking_server.py",  # ~54 s
    "tests/serving/test_rollout_service.py",  # ~48 s
    "tests/faults/test_service_faults.py",  # ~46 s
    "tests/lifecycle/test_stack.py",  # ~44 s
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first, then the other files with slow tests, then the rest.
    `make test` runs `pytest -n N --dist loadfile`: each worker takes whole files (a
    module's project copy, lifecycle run or server is built once) in this order."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> int:
        relative = item.path.relative_to(ROOT).as_posix()
        if relative in LONGEST_FILES:
            return LONGEST_FILES.index(relative)
        return len(LONGEST_FILES) + (item.path not in slow_files)

    items.sort(key=rank)  # stable: the order within a file is kept


@pytest.fixture(scope="session")
def contract() -> DataContract:
    return load_contract(CONTRACT_PATH)


@pytest.fixture(scope="session")
def real_ai4i_path() -> Path:
    if not REAL_AI4I.exists():
        pytest.skip(f"real AI4I 2020 data not found at {REAL_AI4I} (../shared is absent)")
    return REAL_AI4I


_MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")


@pytest.fixture(autouse=True)
def _mlflow_state_restored() -> Iterator[None]:
    """Put MLflow's process-wide state back after each test.

    Stages run in-process by tests call `mlflow.set_tracking_uri` and `set_experiment`,
    which change module globals and environment variables; without this, a later test in
    the same process would talk to an earlier test's (deleted) store.
    """
    import sys

    environment = {name: os.environ.get(name) for name in _MLFLOW_ENV}
    if "mlflow" not in sys.modules:
        yield
        saved = None
    else:
        saved = _mlflow_globals()
        yield
    if "mlflow" not in sys.modules:
        return
    from mlflow.tracking import fluent
    from mlflow.tracking._tracking_service import utils

    uri, experiment = saved or (None, None)
    utils._tracking_uri = uri
    fluent._active_experiment_id = experiment
    for name, value in environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _mlflow_globals() -> tuple[object, object]:
    from mlflow.tracking import fluent
    from mlflow.tracking._tracking_service import utils

    return utils._tracking_uri, fluent._active_experiment_id
