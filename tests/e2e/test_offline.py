"""No install and no network at run time: the whole lifecycle and `lifecycle serve` offline.

A temporary copy of the repository runs `dvc repro` (every stage), then `lifecycle serve`
and one POST /predict, in a network namespace of its own (`unshare --net`, loopback only):
any connection to another host fails at once, as on a machine with no network. Where
`unshare --net` is not allowed (not root), the same run happens with the network reachable
but every proxy variable set to an unroutable proxy, `PIP_NO_INDEX=1` and `UV_OFFLINE=1`
(those variables are set in the namespace too). Either way, an audit hook in each Python
process records every attempt to resolve or reach a host other than loopback and every
command that installs a package (`tests/e2e/offline_run.py`); the test fails on any, even
one a library caught and ignored, and on any output that speaks of installing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, ProjectCopy
from tests.e2e.offline_run import AUDIT_LOG_VARIABLE, write_audit_hook
from tests.e2e.test_dvc_repro import STAGES

INSTALLING = re.compile(r"installing|pip install", re.IGNORECASE)


def _namespace_available() -> bool:
    try:
        done = subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def test_the_audit_hook_records_lookups_connections_and_installs(tmp_path: Path) -> None:
    """The hook the offline run relies on does see what it must (and not loopback)."""
    log = write_audit_hook(tmp_path / "audit")
    script = """
import socket, subprocess
socket.getaddrinfo("localhost", 80)
with socket.socket() as sock:
    sock.settimeout(0.2)
    sock.connect_ex(("127.0.0.1", 9))
try:
    socket.getaddrinfo("pypi.org", 443)
except OSError:
    pass
with socket.socket() as sock:
    sock.settimeout(0.2)
    sock.connect_ex(("10.255.255.1", 9))
subprocess.run(["true", "-m", "pip", "install", "-q", "uv"])
"""
    env = {AUDIT_LOG_VARIABLE: str(log), "PYTHONPATH": str(tmp_path / "audit"), "PATH": "/bin"}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    recorded = [line.split(": ", 1)[1] for line in log.read_text().splitlines()]
    assert recorded == [
        "socket.getaddrinfo 'pypi.org'",
        "socket.connect ('10.255.255.1', 9)",
        "installs: true -m pip install -q uv",
    ]


@pytest.fixture(scope="module")
def offline(project_copy: ProjectCopy, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The driver's record of the offline run (see tests/e2e/offline_run.py)."""
    work = tmp_path_factory.mktemp("offline")
    result = work / "result.json"
    driver = [sys.executable, "-m", "tests.e2e.offline_run"]
    driver += [str(project_copy.path), str(result), str(work / "audit")]
    namespace = _namespace_available()
    command = ["unshare", "--net", *driver, "--bring-up-loopback"] if namespace else driver
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=2400,
        env={"PATH": str(Path(sys.executable).parent) + ":/usr/sbin:/usr/bin:/sbin:/bin",
             "PYTHONPATH": str(ROOT), "HOME": str(work)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {**json.loads(result.read_text()), "namespace": namespace}


@pytest.mark.slow
def test_the_network_is_really_cut_in_the_namespace(offline: dict) -> None:
    if not offline["namespace"]:
        pytest.skip("`unshare --net` is not allowed here: the proxy variant ran instead")
    assert offline["network_cut"] is True


@pytest.mark.slow
def test_every_stage_runs_offline_and_nothing_is_installed(offline: dict) -> None:
    repro = offline["repro"]
    assert repro["returncode"] == 0, repro["output"][-4000:]
    assert repro["ran"] == STAGES
    assert not INSTALLING.findall(repro["output"]), [
        line for line in repro["output"].splitlines() if INSTALLING.search(line)
    ]


@pytest.mark.slow
def test_the_served_champion_answers_offline(offline: dict) -> None:
    predict = offline["predict"]
    assert predict["status"] == 200, predict["body"]
    answer = json.loads(predict["body"])
    assert answer["model_version"] == "v1"
    assert not INSTALLING.findall(offline["serve_log"]), offline["serve_log"][-3000:]


@pytest.mark.slow
def test_no_process_tried_to_reach_another_host_or_install(offline: dict) -> None:
    assert offline["attempts"] == []
