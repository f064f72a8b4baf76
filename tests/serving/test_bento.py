"""A Bento built as deploy builds it, served outside the project, serves its packed model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from serving.model_store import export_model, use_store
from tests.mlflow_server import free_port
from tests.serving.server import (
    BIN,
    MODEL_NAME,
    ROOT,
    request_rows,
    serve_command,
    train_tiny_model,
)

BENTOFILE = ROOT / "serving" / "bentofile.yaml"
# our modules serving.service imports, as paths relative to the project root
_IMPORTED = """
import json, sys
from pathlib import Path
import serving.service
root = Path(sys.argv[1])
files = [getattr(m, "__file__", None) for m in list(sys.modules.values())]
ours = {Path(f).resolve() for f in files if f}
print(json.dumps(sorted(str(p.relative_to(root)) for p in ours if p.is_relative_to(root)
      and ".venv" not in p.parts and p.suffix == ".py")))
"""


@pytest.fixture(scope="module")
def bento(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A store holding one model and a Bento built from the repository with it packed."""
    import bentoml

    base = tmp_path_factory.mktemp("bento")
    store = use_store(base / "store")
    model = train_tiny_model(base / "model", max_iter=5, rows=400)
    tag = export_model(model.directory, MODEL_NAME, 3, "run-3", model.content_sha256, 0.4, store)
    options = yaml.safe_load(BENTOFILE.read_text(encoding="utf-8"))
    built = bentoml.bentos.build(
        **options, name=MODEL_NAME, models=[tag], version="v3", build_ctx=str(ROOT)
    )
    return store, str(built.tag)


def test_the_bento_holds_every_module_the_service_imports(bento: tuple[Path, str]) -> None:
    store, tag = bento
    name, version = tag.split(":")
    source = store / "bentos" / name / version / "src"
    imported = json.loads(
        subprocess.run(
            [sys.executable, "-c", _IMPORTED, str(ROOT)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env={"LIFECYCLE_PARAMS": str(ROOT / "params.yaml"), "PATH": str(BIN)},
        ).stdout
    )
    assert "core/config/serving.py" in imported and "serving/service.py" in imported
    missing = [path for path in imported if not (source / path).is_file()]
    assert not missing, f"serving/bentofile.yaml leaves out {missing}"


@pytest.mark.slow
def test_a_bento_served_from_anywhere_serves_its_packed_model(
    bento: tuple[Path, str], tmp_path: Path
) -> None:
    store, tag = bento
    port = free_port()
    argv = [sys.executable, "-m", "bentoml", "serve", tag, "--port", str(port)]
    env = {"BENTOML_HOME": str(store), "BENTOML_DO_NOT_TRACK": "true", "OMP_NUM_THREADS": "1"}
    with serve_command(argv, tmp_path, port, env) as server:  # tmp_path: not the project
        ready = httpx.get(f"{server.url}/readyz", timeout=5)
        record = request_rows(1).iloc[0].to_dict()
        answer = httpx.post(f"{server.url}/predict", json=record, timeout=10)

    assert ready.status_code == 200, server.tail()
    assert ready.json() == {"ready": True, "model": tag, "source": "packed", "rollout": None}
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == "v3"
