"""The stage ledger: hashes as DVC makes them, one lifecycle id per run, tolerant reading."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from core.hashing import path_md5
from core.records.ledger import AttemptStarted, read_ledger
from pipelines.edges.ledger import (
    lifecycle_run,
    lifecycle_run_id,
    other_dvc_repros,
    stage_inputs,
)

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def test_inputs_are_the_stage_s_deps_hashed_as_dvc_hashes_them(tmp_path: Path) -> None:
    (tmp_path / "code.py").write_text("print('hello')\n")
    (tmp_path / "lib" / "inner").mkdir(parents=True)
    (tmp_path / "lib" / "a.py").write_text("A = 1\n")
    (tmp_path / "lib" / "inner" / "b.yaml").write_text("b: 2\n")
    (tmp_path / "contract.yaml").write_text("name: x\n")
    dvc_yaml = {
        "stages": {
            "train": {
                "cmd": "python code.py",
                "deps": ["code.py", "lib", "${data.contract}", "absent.parquet", "${no.such}"],
            }
        }
    }
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": {"contract": "contract.yaml"}}))
    # DVC's own hash of the same directory, from a real `dvc add` in a repository of its own
    repo = tmp_path / "dvc-repo"
    repo.mkdir()
    shutil.copytree(tmp_path / "lib", repo / "lib")
    for command in (["init", "--no-scm", "-q"], ["add", "-q", "lib"]):
        subprocess.run([str(BIN / "dvc"), *command], cwd=repo, check=True, timeout=120)
    dvc_lib_md5 = yaml.safe_load((repo / "lib.dvc").read_text())["outs"][0]["md5"]

    inputs = stage_inputs("train", tmp_path / "dvc.yaml", tmp_path / "params.yaml")

    assert inputs == {
        "code.py": hashlib.md5(b"print('hello')\n").hexdigest(),
        "lib": dvc_lib_md5,
        "contract.yaml": hashlib.md5(b"name: x\n").hexdigest(),
        "absent.parquet": None,
        "${no.such}": None,  # a key params.yaml lacks stays as written (DVC refuses it too)
    }
    assert dvc_lib_md5.endswith(".dir")


def test_hashing_the_project_s_largest_inputs_is_quick(tmp_path: Path) -> None:
    """Inputs are hashed on every stage: 64 MB (more than a 1M-row parquet) well under 1 s."""

    big = tmp_path / "big.parquet"
    big.write_bytes(os.urandom(1 << 20) * 64)
    start = time.perf_counter()
    digest = path_md5(big)
    elapsed = time.perf_counter() - start
    assert digest == hashlib.md5(big.read_bytes()).hexdigest()
    assert elapsed < 1.0, f"hashing 64 MB took {elapsed:.2f} s"


def test_the_lifecycle_id_prefers_the_environment_then_the_running_stage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LIFECYCLE_RUN_ID", raising=False)
    with lifecycle_run("chosen-by-the-stage"):
        assert lifecycle_run_id() == "chosen-by-the-stage"
        monkeypatch.setenv("LIFECYCLE_RUN_ID", "from-watch")
        assert lifecycle_run_id() == "from-watch"
        monkeypatch.delenv("LIFECYCLE_RUN_ID")
    assert lifecycle_run_id() != "chosen-by-the-stage"  # outside a stage: a fresh id
    assert lifecycle_run_id() != lifecycle_run_id()


def test_stages_under_one_dvc_repro_derive_one_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two stage processes started by the same `dvc repro` (a stand-in named dvc, run as
    `dvc repro`, starting each through `sh -c` like DVC) agree; another repro differs."""
    monkeypatch.delenv("LIFECYCLE_RUN_ID", raising=False)
    code = "from pipelines.edges.ledger import lifecycle_run_id as i; print(i())"
    stage = f"{sys.executable} -c '{code}'"
    fake_dvc = tmp_path / "dvc"
    fake_dvc.write_text(
        f"#!{sys.executable}\n"
        "import subprocess\n"
        f"for _ in range(2): subprocess.run(['sh', '-c', {stage!r}], check=True)\n"
    )
    fake_dvc.chmod(fake_dvc.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ids = [
        subprocess.run(
            [str(fake_dvc), "repro"], capture_output=True, text=True, check=True, env=env
        ).stdout.split()
        for _ in range(2)
    ]
    assert len(ids[0]) == 2 and ids[0][0] == ids[0][1]
    assert ids[1][0] == ids[1][1] != ids[0][0]


def test_reading_skips_a_torn_line_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    good = {
        "event": "started",
        "stage": "train",
        "attempt": 1,
        "lifecycle_run": "r",
        "max_attempts": 1,
        "pid": 42,
        "pid_start": None,
        "repro_pid": None,
        "repro_pid_start": None,
        "started_at": "2026-12-01T14:27:34.123Z",
    }
    ledger.write_text(json.dumps(good) + "\n" + '{"event": "finis' + "\n")
    with caplog.at_level(logging.WARNING):
        assert read_ledger(ledger) == [AttemptStarted.model_validate(good)]
    assert caplog.messages == [f"{ledger} line 2: not a ledger record; skipped"]


def test_another_repro_counts_but_a_wrapper_around_this_stage_s_own_does_not(
    tmp_path: Path,
) -> None:
    """`/usr/bin/time -v dvc repro` made a stage refuse to run, naming the `time` wrapper (its
    command line holds `dvc repro`) as another repro. A stand-in wrapper (named time) runs a
    stand-in `dvc repro`, which runs the check through `sh -c` like DVC: the wrapper, an
    ancestor of the stage, does not count; an unrelated `dvc repro` in the project does."""
    project, bin_ = tmp_path / "project", tmp_path / "bin"
    (project / ".dvc").mkdir(parents=True)
    bin_.mkdir()
    code = "from pipelines.edges.ledger import other_dvc_repros as o; print([p for p, _ in o()])"
    stage = f"{sys.executable} -c '{code}'"
    wrapper, fake_dvc, busy_dvc = bin_ / "time", bin_ / "dvc", tmp_path / "busy" / "dvc"
    wrapper.write_text(
        f"#!{sys.executable}\nimport subprocess, sys\n"
        "sys.exit(subprocess.run(sys.argv[2:]).returncode)\n"
    )
    fake_dvc.write_text(
        f"#!{sys.executable}\nimport subprocess\n"
        f"subprocess.run(['sh', '-c', {stage!r}], check=True)\n"
    )
    busy_dvc.parent.mkdir()
    ready = tmp_path / "ready"
    busy_dvc.write_text(
        f"#!{sys.executable}\nimport pathlib, time\n"
        f"pathlib.Path({str(ready)!r}).touch()\ntime.sleep(60)\n"
    )
    for script in (wrapper, fake_dvc, busy_dvc):
        script.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def found() -> list[int]:
        done = subprocess.run(
            [str(wrapper), "-v", str(fake_dvc), "repro"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return json.loads(done.stdout)

    assert found() == []  # the wrapper and the repro are this stage's ancestors
    other = subprocess.Popen([str(busy_dvc), "repro"], cwd=project / ".dvc")
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():  # running, not half-way through exec
            assert other.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        assert found() == [other.pid]  # in the same project (a subfolder of it): counts
        assert other_dvc_repros(tmp_path / "busy") == []  # another folder: no matter
    finally:
        other.kill()
        other.wait(timeout=30)
