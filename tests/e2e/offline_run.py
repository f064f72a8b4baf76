"""The lifecycle with the network cut: run by tests/e2e/test_offline.py, often inside a
network namespace (`unshare --net`), where the test process cannot reach a server.

`python -m tests.e2e.offline_run PROJECT RESULT AUDIT_DIR [--bring-up-loopback]` runs
`dvc repro` in the project copy, then `lifecycle serve` and one POST /predict with a
holdout row, and writes what happened to RESULT (JSON). Every Python process it starts
has AUDIT_DIR on PYTHONPATH, whose `sitecustomize` (written by `write_audit_hook`) records
each attempt to reach a host other than loopback, and each command that installs a package,
in AUDIT_DIR/attempts.log: the test fails on any line there, even one a library swallowed.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd

# An unroutable proxy, so that even without a network namespace a client that honours
# the proxy variables (pip, uv, requests, httpx, urllib) cannot get out.
BLACKHOLE_PROXY = "http://10.255.255.1:9"
OFFLINE_ENV = {
    "HTTP_PROXY": BLACKHOLE_PROXY,
    "HTTPS_PROXY": BLACKHOLE_PROXY,
    "http_proxy": BLACKHOLE_PROXY,
    "https_proxy": BLACKHOLE_PROXY,
    "ALL_PROXY": BLACKHOLE_PROXY,
    "all_proxy": BLACKHOLE_PROXY,
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
    "PIP_NO_INDEX": "1",
    "UV_OFFLINE": "1",
}
AUDIT_LOG_VARIABLE = "OFFLINE_AUDIT_LOG"  # not LIFECYCLE_*: the test helpers drop those

_AUDIT_HOOK = '''
"""Records network use and package installs of this Python process (tests/e2e/offline_run.py)."""
import os
import re
import sys

_LOG = os.environ.get("OFFLINE_AUDIT_LOG")
_INSTALL = re.compile(
    r"\\bpip\\b.*\\binstall\\b|\\buv\\b.*\\b(pip install|sync|add|tool install)\\b"
)


def _local(host):
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host is None or host in ("", "localhost", "::1", "0.0.0.0", "::"):
        return True
    host = str(host)
    return host.startswith("127.") or host.endswith(".localhost")


def _record(line):
    with open(_LOG, "a", encoding="utf-8") as log:
        log.write(f"pid {os.getpid()} {' '.join(sys.argv)[:200]}: {line}\\n")


def _hook(event, args):
    try:
        if event in ("socket.connect", "socket.sendto") and isinstance(args[1], tuple):
            if not _local(args[1][0]):
                _record(f"{event} {args[1]!r}")
        elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
            if not _local(args[0]):
                _record(f"{event} {args[0]!r}")
        elif event == "subprocess.Popen":
            command = args[1]
            text = command if isinstance(command, str) else " ".join(map(str, command or ()))
            if _INSTALL.search(text):
                _record(f"installs: {text[:300]}")
    except Exception:  # an audit hook must never break the process it watches
        pass


if _LOG:
    sys.addaudithook(_hook)
'''


def write_audit_hook(directory: Path) -> Path:
    """The `sitecustomize` that records network use; its log file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(_AUDIT_HOOK, encoding="utf-8")
    return directory / "attempts.log"


def network_is_cut() -> bool:
    """True when a direct connection to a public address fails at once (no route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(3)
        return probe.connect_ex(("1.1.1.1", 80)) in (errno.ENETUNREACH, errno.EHOSTUNREACH)


def _holdout_record(project: Path) -> dict[str, object]:
    """One holdout row, its features under the contract's own names, as a request body."""
    from core.config import load_params
    from features.contract import load_contract

    contract = load_contract(project / load_params(project / "params.yaml").data.contract)
    row = pd.read_parquet(project / "data/split/holdout.parquet").iloc[[0]]
    return json.loads(row[contract.features].to_json(orient="records"))[0]


def main(project: Path, result_path: Path, audit_dir: Path, bring_up_loopback: bool) -> None:
    from tests.e2e.conftest import ProjectCopy
    from tests.serving.server import serve

    if bring_up_loopback:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    log = write_audit_hook(audit_dir)
    env = {
        **OFFLINE_ENV,
        AUDIT_LOG_VARIABLE: str(log),
        "PYTHONPATH": os.pathsep.join([str(audit_dir), str(project)]),
    }
    os.environ.update(OFFLINE_ENV)  # this process's own client, too (NO_PROXY lets it reach us)
    result: dict[str, object] = {"network_cut": network_is_cut()}
    repro = ProjectCopy(project).repro(env=env, timeout=1800)
    result["repro"] = {"returncode": repro.returncode, "ran": repro.ran, "output": repro.output}
    if repro.returncode == 0:
        record = _holdout_record(project)
        with serve(project, env=env) as server:
            answer = httpx.post(f"{server.url}/predict", json=record, timeout=30)
            result["predict"] = {"status": answer.status_code, "body": answer.text}
        result["serve_log"] = server.log.read_text(errors="replace")  # complete once stopped
    result["attempts"] = log.read_text().splitlines() if log.exists() else []
    result_path.write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), "--bring-up-loopback" in sys.argv)
